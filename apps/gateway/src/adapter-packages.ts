import { pathToFileURL } from 'node:url';
import { resolve as resolveImport } from 'import-meta-resolve';
import { z } from 'zod';
import { ConfigError, blankToUndefined, type AdapterDefinition, type AdapterRegistry, type Env } from '@stsgate/core';

/** The variable naming npm packages whose adapters join the built-in ones (comma-separated package names). */
export const ADAPTER_PACKAGES_VARIABLE = 'STSGATE_ADAPTERS';

const definitionSchema = z.object({
  kind: z.enum(['sts', 'asr', 'llm', 'tts', 'vad']),
  id: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, 'must be lower-case letters, digits, ".", "_" or "-"'),
  fromEnv: z.custom<AdapterDefinition['fromEnv']>((value) => typeof value === 'function', 'must be a function'),
});
const PACKAGE_NAME = /^(@[a-z0-9][\w.-]*\/)?[a-z0-9][\w.-]*$/;

/**
 * Adds the adapters of the packages named in `STSGATE_ADAPTERS` to `registry`. A package exports its adapter
 * definitions as `adapters` (an array) or as its default export (one definition or an array). Packages are looked up
 * from `baseDir` first (the working directory: /usr/src/app in the image, like AVR's tools), then from the gateway's
 * own node_modules. Every problem (not installed, nothing exported, an id already taken) is one ConfigError.
 */
export async function addAdapterPackages(env: Env, registry: AdapterRegistry, baseDir = process.cwd()): Promise<AdapterRegistry> {
  const raw = blankToUndefined(env[ADAPTER_PACKAGES_VARIABLE]);
  if (typeof raw !== 'string') return registry;
  const names = raw.split(',').map((name) => name.trim()).filter((name) => name !== '');
  const problems: string[] = [];
  for (const name of names) {
    if (!PACKAGE_NAME.test(name)) {
      problems.push(`${ADAPTER_PACKAGES_VARIABLE}: "${name}" is not an npm package name`);
      continue;
    }
    const entry = resolvePackage(name, baseDir);
    if (entry === undefined) {
      problems.push(`${ADAPTER_PACKAGES_VARIABLE}: package "${name}" is not installed (looked in ${baseDir} and the gateway's node_modules)`);
      continue;
    }
    const exported = (await import(entry)) as { adapters?: unknown; default?: unknown };
    const candidates = [exported.adapters ?? exported.default].flat().filter((value) => value !== undefined);
    if (candidates.length === 0) problems.push(`${ADAPTER_PACKAGES_VARIABLE}: package "${name}" exports no adapter definitions (export "adapters")`);
    for (const candidate of candidates) {
      const parsed = definitionSchema.safeParse(candidate);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        problems.push(`${ADAPTER_PACKAGES_VARIABLE}: package "${name}" exports an invalid adapter definition (${issue?.path.join('.') || 'definition'}: ${issue?.message})`);
        continue;
      }
      if (registry.get(parsed.data.kind, parsed.data.id) !== undefined) {
        problems.push(`${ADAPTER_PACKAGES_VARIABLE}: package "${name}" defines ${parsed.data.kind} provider "${parsed.data.id}", which is already taken`);
        continue;
      }
      registry.add(candidate as AdapterDefinition);
    }
  }
  if (problems.length > 0) throw new ConfigError('the gateway', problems);
  return registry;
}

/** The package's ESM entry URL (its `exports` with the `import` condition), as `import` would resolve it from `baseDir`. */
function resolvePackage(name: string, baseDir: string): string | undefined {
  for (const parent of [pathToFileURL(`${baseDir}/`).href, import.meta.url]) {
    try {
      return resolveImport(name, parent);
    } catch {
      // not installed there: try the next place
    }
  }
  return undefined;
}
