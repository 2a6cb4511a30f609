// A new ASR adapter package from templates/asr-adapter: the template copied, with its package name, adapter id, env
// variable prefix and identifiers renamed after <name>.
//   pnpm create:adapter <name> [--dir <path>] [--dry-run]
//   <name>     the adapter id (ASR_PROVIDER=<name>): lower-case words joined by "-", e.g. acme or acme-stt
//   --dir      where to create it (default packages/<name>); it must not exist or be empty
//   --dry-run  print what would be made (JSON) and write nothing
// Inside the workspace (packages/*, apps/*, templates/*), `workspace:^` dependencies stay; anywhere else they become
// the current version range of the workspace package (e.g. "@stsgate/core": "^0.1.0"). Exit status 2 on bad usage.
import { cpSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const template = join(root, 'templates', 'asr-adapter');
const USAGE = 'usage: pnpm create:adapter <name> [--dir <path>] [--dry-run]   (<name>: lower-case words joined by "-", e.g. acme-stt)';
/** Never copied: installed, built or cached. */
const SKIP = new Set(['node_modules', 'dist', '.turbo']);

function usage(problem) {
  process.stderr.write(`create-adapter: ${problem}\n${USAGE}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const options = { name: undefined, dir: undefined, dryRun: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--dir') {
      options.dir = argv[++i];
      if (options.dir === undefined || options.dir === '') usage('--dir needs a path');
    } else if (arg === '--dry-run') options.dryRun = true;
    else if (arg === '--help' || arg === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else if (arg.startsWith('-')) usage(`unknown option ${arg}`);
    else if (options.name === undefined) options.name = arg;
    else usage(`one name only (got "${options.name}" and "${arg}")`);
  }
  if (options.name === undefined) usage('a name is required');
  if (!/^[a-z][a-z0-9]*(-[a-z0-9]+)*$/.test(options.name)) usage(`"${options.name}" is not lower-case words joined by "-"`);
  if (options.name === 'example-asr') usage('"example-asr" is the template\'s own name');
  return options;
}

/** Every spelling of the template's name, and the new one (longest first, so the package name goes before the id). */
function renames(name) {
  const words = name.split('-');
  const capital = (word) => word[0].toUpperCase() + word.slice(1);
  const pascal = words.map(capital).join('');
  return [
    ['stsgate-adapter-example-asr', `stsgate-adapter-${name}`],
    ['example-asr', name],
    ['EXAMPLE_ASR', words.join('_').toUpperCase()],
    ['ExampleAsr', pascal],
    ['exampleAsr', pascal[0].toLowerCase() + pascal.slice(1)],
    ['Example ASR', words.map(capital).join(' ')],
  ];
}

/** name -> version of every package in the workspace. */
function workspaceVersions() {
  const versions = new Map();
  for (const group of ['packages', 'apps']) {
    for (const dir of readdirSync(join(root, group))) {
      const manifest = join(root, group, dir, 'package.json');
      if (!existsSync(manifest)) continue;
      const { name, version } = JSON.parse(readFileSync(manifest, 'utf8'));
      versions.set(name, version);
    }
  }
  return versions;
}

function insideWorkspace(target) {
  const path = relative(root, target).split(sep).join('/');
  return /^(packages|apps|templates)\/[^/]+$/.test(path);
}

/** The template's files (relative paths), without what is installed or built. */
function templateFiles(dir = template, prefix = '') {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    if (SKIP.has(entry.name) || entry.name.endsWith('.tsbuildinfo')) return [];
    const path = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
    return entry.isDirectory() ? templateFiles(join(dir, entry.name), path) : [path];
  });
}

const options = parseArgs(process.argv.slice(2));
// Run as `pnpm create:adapter`, the working directory is the repository root: --dir is relative to where pnpm was run.
const base = process.env.npm_lifecycle_event === 'create:adapter' ? (process.env.INIT_CWD ?? process.cwd()) : process.cwd();
const target = options.dir === undefined ? join(root, 'packages', options.name) : resolve(base, options.dir);
if (existsSync(target) && readdirSync(target).length > 0) usage(`${target} exists and is not empty`);
const inside = insideWorkspace(target);
const pairs = [...renames(options.name), ...(inside ? [['templates/asr-adapter', relative(root, target).split(sep).join('/')]] : [])];
const rename = (text) => pairs.reduce((out, [from, to]) => out.split(from).join(to), text);
const files = templateFiles();

// The package manifest: renamed, and outside the workspace with real version ranges.
const manifest = JSON.parse(rename(readFileSync(join(template, 'package.json'), 'utf8')));
if (!inside) {
  const versions = workspaceVersions();
  for (const field of ['dependencies', 'devDependencies']) {
    for (const [dependency, range] of Object.entries(manifest[field] ?? {})) {
      if (!range.startsWith('workspace:')) continue;
      const version = versions.get(dependency);
      if (version === undefined) throw new Error(`${dependency} is not a package of this workspace`);
      manifest[field][dependency] = `^${version}`;
    }
  }
}
const plan = {
  target,
  insideWorkspace: inside,
  package: manifest.name,
  id: options.name,
  envPrefix: `${pairs[2][1]}_`,
  dependencies: manifest.dependencies,
  devDependencies: manifest.devDependencies,
  files,
};
if (options.dryRun) {
  process.stdout.write(`${JSON.stringify(plan, null, 2)}\n`);
  process.exit(0);
}

cpSync(template, target, { recursive: true, filter: (source) => !SKIP.has(source.split(sep).at(-1)) && !source.endsWith('.tsbuildinfo') });
for (const file of files) {
  const path = join(target, file);
  writeFileSync(path, file === 'package.json' ? `${JSON.stringify(manifest, null, 2)}\n` : rename(readFileSync(path, 'utf8')));
}
const shown = relative(base, target) || '.';
const next = inside
  ? [`pnpm install`, `pnpm vitest run ${relative(root, target).split(sep).join('/')}`, `pnpm --filter ${manifest.name} typecheck`]
  : [`cd ${shown}`, 'pnpm install', 'pnpm test', 'pnpm typecheck'];
process.stdout.write(
  `created ${manifest.name} (ASR_PROVIDER=${options.name}, ${plan.envPrefix}* variables) in ${shown}: ${files.length} files\nnext:\n${next.map((line) => `  ${line}\n`).join('')}`,
);
