import type { z } from 'zod';
import type { AdapterContext } from '../contracts/common.js';
import type { AsrAdapter } from '../contracts/asr.js';
import type { LlmAdapter } from '../contracts/llm.js';
import type { StsAdapter } from '../contracts/sts.js';
import type { TtsAdapter } from '../contracts/tts.js';
import type { VadAdapter } from '../contracts/vad.js';

export interface AdapterKinds {
  sts: StsAdapter;
  asr: AsrAdapter;
  llm: LlmAdapter;
  tts: TtsAdapter;
  vad: VadAdapter;
}
export type AdapterKind = keyof AdapterKinds;

export type Env = Readonly<Record<string, string | undefined>>;

/** Raised when an adapter's configuration is invalid; lists every problem at once. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  /** The problems already name the adapter they belong to (e.g. `soniox: SONIOX_API_KEY is required`). */
  readonly scoped: boolean;
  constructor(
    readonly scope: string,
    readonly problems: readonly string[],
    options: { readonly scoped?: boolean } = {},
  ) {
    super(`invalid configuration for ${scope}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.scoped = options.scoped ?? false;
  }
}

export function zodProblems(error: z.ZodError): string[] {
  return error.issues.map((issue) => (issue.path.length > 0 ? `${issue.path.join('.')}: ${issue.message}` : issue.message));
}

/** What a definition gets when it builds its adapter. */
export interface BuildContext extends AdapterContext {
  /**
   * Another adapter of this build, configured from the same environment and built once however often it is asked
   * for: composite adapters (the cascade) assemble their stages with it. Throws a ConfigError (unknown id, invalid
   * settings). Absent when a definition is used outside a registry.
   */
  readonly resolve?: <K extends AdapterKind>(kind: K, id: string) => AdapterKinds[K];
}

export interface AdapterDefinition<K extends AdapterKind = AdapterKind> {
  readonly kind: K;
  readonly id: string;
  readonly description: string;
  /** The port the AVR container this adapter replaces listens on (drop-in default). */
  readonly defaultPort?: number;
  /** Parses this adapter's environment variables, then builds the adapter. Throws ConfigError. */
  fromEnv(env: Env, context: BuildContext): AdapterKinds[K];
}

export interface AdapterSpec<K extends AdapterKind, S extends z.ZodType> {
  readonly kind: K;
  readonly id: string;
  readonly description: string;
  readonly defaultPort?: number;
  /** Reads the adapter's settings from environment variables (AVR's names where they exist). */
  readonly envSchema: S;
  create(config: z.output<S>, context: BuildContext): AdapterKinds[K];
}

export function defineAdapter<K extends AdapterKind, S extends z.ZodType>(spec: AdapterSpec<K, S>): AdapterDefinition<K> {
  return {
    kind: spec.kind,
    id: spec.id,
    description: spec.description,
    ...(spec.defaultPort === undefined ? {} : { defaultPort: spec.defaultPort }),
    fromEnv(env, context) {
      const parsed = spec.envSchema.safeParse(env);
      if (!parsed.success) throw new ConfigError(`${spec.kind} provider "${spec.id}"`, zodProblems(parsed.error));
      return spec.create(parsed.data, context);
    },
  };
}

/** An explicit list of adapters, built at the composition root. Nothing registers itself on import. */
export class AdapterRegistry {
  private readonly definitions = new Map<string, AdapterDefinition>();

  constructor(definitions: readonly AdapterDefinition[] = []) {
    for (const definition of definitions) this.add(definition);
  }

  add(definition: AdapterDefinition): this {
    const key = `${definition.kind}:${definition.id}`;
    if (this.definitions.has(key)) throw new Error(`adapter ${key} is registered twice`);
    this.definitions.set(key, definition);
    return this;
  }

  get<K extends AdapterKind>(kind: K, id: string): AdapterDefinition<K> | undefined {
    return this.definitions.get(`${kind}:${id}`) as AdapterDefinition<K> | undefined;
  }

  ids(kind: AdapterKind): string[] {
    return [...this.definitions.values()].filter((d) => d.kind === kind).map((d) => d.id);
  }
}

/**
 * Builds the adapters of one configuration, each at most once: the host and composite adapters asking for the same
 * `kind:id` share one instance. A definition's ConfigError is remembered and thrown again to every asker, scoped:
 * each problem starts with the adapter's id (`soniox: SONIOX_API_KEY is required`), so the same problem reached
 * through two askers reads the same and can be reported once.
 */
export class AdapterResolver {
  private readonly built = new Map<string, { adapter: AdapterKinds[AdapterKind] } | { error: unknown }>();
  private readonly building = new Set<string>();

  constructor(
    private readonly registry: AdapterRegistry,
    private readonly env: Env,
    private readonly context: AdapterContext,
  ) {}

  /** The adapters of `kind` built so far (those the chosen providers use), in the order they were built. */
  builtOf<K extends AdapterKind>(kind: K): AdapterKinds[K][] {
    const adapters: AdapterKinds[K][] = [];
    for (const [key, done] of this.built) if (key.startsWith(`${kind}:`) && 'adapter' in done) adapters.push(done.adapter as AdapterKinds[K]);
    return adapters;
  }

  resolve<K extends AdapterKind>(kind: K, id: string): AdapterKinds[K] {
    const key = `${kind}:${id}`;
    const done = this.built.get(key);
    if (done !== undefined) {
      if ('error' in done) throw done.error;
      return done.adapter as AdapterKinds[K];
    }
    if (this.building.has(key)) throw new Error(`adapter ${key} depends on itself`);
    const definition = this.registry.get(kind, id);
    if (definition === undefined) {
      const available = this.registry.ids(kind);
      // Worded as the host reports its own choices (`<KIND>_PROVIDER` selects a kind), so the two read the same.
      throw new ConfigError(`${kind} provider "${id}"`, [`${kind.toUpperCase()}_PROVIDER: unknown provider "${id}" (available: ${available.join(', ') || 'none'})`], {
        scoped: true,
      });
    }
    this.building.add(key);
    try {
      const adapter = definition.fromEnv(this.env, {
        ...this.context,
        logger: this.context.logger.child({ provider: id, kind }),
        resolve: (k, i) => this.resolve(k, i),
      });
      this.built.set(key, { adapter });
      return adapter;
    } catch (error) {
      const scoped =
        error instanceof ConfigError && !error.scoped
          ? new ConfigError(error.scope, error.problems.map((problem) => `${id}: ${problem}`), { scoped: true })
          : error;
      this.built.set(key, { error: scoped });
      throw scoped;
    } finally {
      this.building.delete(key);
    }
  }
}
