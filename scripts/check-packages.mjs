// Packs every public workspace package as npm would receive it (`pnpm pack`: workspace:^ ranges become ^<version>)
// and checks each tarball with publint (package.json fields, exports, files) and @arethetypeswrong/cli (its types
// resolve for ESM consumers; the packages are ESM-only, so CommonJS `require` is out of scope). Needs `pnpm build` first.
//   node scripts/check-packages.mjs [--keep <dir>]    (--keep: leave the tarballs in <dir>)
// Exit status 1 if any check fails. Prints one line per package, then the failures' output.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const keepAt = process.argv.indexOf('--keep');
const outDir = keepAt >= 0 ? process.argv[keepAt + 1] : mkdtempSync(join(tmpdir(), 'stsgate-packs-'));
if (outDir === undefined) throw new Error('--keep needs a directory');

const packageDirs = ['packages', 'apps'].flatMap((group) =>
  readdirSync(join(root, group), { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => join(root, group, entry.name)),
);

function run(command, args, cwd) {
  try {
    return { ok: true, output: execFileSync(command, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) };
  } catch (error) {
    return { ok: false, output: `${error.stdout ?? ''}${error.stderr ?? ''}` };
  }
}

const failures = [];
for (const dir of packageDirs) {
  const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  if (manifest.private === true) continue;
  const packed = run('pnpm', ['pack', '--pack-destination', outDir], dir);
  const tarball = packed.output.trim().split('\n').at(-1);
  if (!packed.ok || tarball === undefined) {
    failures.push({ name: manifest.name, check: 'pnpm pack', output: packed.output });
    continue;
  }
  const ranges = JSON.parse(execFileSync('tar', ['-xOzf', tarball, 'package/package.json'], { encoding: 'utf8' }));
  const workspaceRanges = Object.entries({ ...ranges.dependencies, ...ranges.peerDependencies }).filter(([, range]) => String(range).startsWith('workspace:'));
  const publint = run('pnpm', ['exec', 'publint', 'run', tarball, '--strict'], root);
  const attw = run('pnpm', ['exec', 'attw', tarball, '--profile', 'esm-only', '--format', 'table-flipped'], root);
  if (workspaceRanges.length > 0) failures.push({ name: manifest.name, check: 'ranges', output: `unresolved: ${JSON.stringify(workspaceRanges)}` });
  if (!publint.ok) failures.push({ name: manifest.name, check: 'publint', output: publint.output });
  if (!attw.ok) failures.push({ name: manifest.name, check: 'attw', output: attw.output });
  process.stdout.write(`${manifest.name}@${manifest.version}: publint ${publint.ok ? 'ok' : 'FAILED'}, attw ${attw.ok ? 'ok' : 'FAILED'}\n`);
}
for (const failure of failures) process.stdout.write(`\n--- ${failure.name}: ${failure.check}\n${failure.output}\n`);
if (keepAt < 0) rmSync(outDir, { recursive: true, force: true });
process.exitCode = failures.length > 0 ? 1 : 0;
