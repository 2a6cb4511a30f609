// The npm user's path, end to end, outside the workspace: pack every public package (scripts/check-packages.mjs, which
// also runs publint and attw), install @stsgate/core, @stsgate/loopback and @stsgate/gateway from the tarballs plus a
// third-party adapter package (apps/gateway/test/fixtures/third-party-adapter) into a scratch project, then:
//   1. run the README's ten-line custom build (builtinRegistry() + the third-party adapter) and make a call through it;
//   2. run the installed `stsgate serve` with STSGATE_ADAPTERS naming the third-party package, and make the same call;
//   3. check the scratch project's installed tree has no @stsgate/testkit (the server does not need it).
// Needs `pnpm build` first. Exit status 1 on any failure.
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'stsgate-custom-build-'));
const packs = join(scratch, 'packs');
const log = (line) => process.stdout.write(`custom-build: ${line}\n`);

function fail(message) {
  log(`FAILED: ${message}`);
  process.exitCode = 1;
}

execFileSync(process.execPath, [join(root, 'scripts/check-packages.mjs'), '--keep', packs], { stdio: 'inherit' });
const tarballs = Object.fromEntries(
  readdirSync(packs).map((file) => [`@stsgate/${file.replace(/^stsgate-/, '').replace(/-\d+\.\d+\.\d+.*\.tgz$/, '')}`, `file:${join(packs, file)}`]),
);
const project = join(scratch, 'app');
cpSync(join(root, 'apps/gateway/test/fixtures/third-party-adapter'), join(scratch, 'stsgate-adapter-parrot'), { recursive: true });
execFileSync('mkdir', ['-p', project]);
writeFileSync(
  join(project, 'package.json'),
  JSON.stringify(
    {
      name: 'custom-build',
      private: true,
      type: 'module',
      dependencies: {
        '@stsgate/core': tarballs['@stsgate/core'],
        '@stsgate/loopback': tarballs['@stsgate/loopback'],
        '@stsgate/gateway': tarballs['@stsgate/gateway'],
        'stsgate-adapter-parrot': `file:${join(scratch, 'stsgate-adapter-parrot')}`,
      },
      // The packages' own ranges (^0.1.0) point at the registry, where they are not published: use the tarballs.
      pnpm: { overrides: tarballs, onlyBuiltDependencies: [] },
    },
    null,
    2,
  ),
);
// The README's ten-line custom build.
writeFileSync(
  join(project, 'custom.mjs'),
  `import { builtinRegistry, resolveServeSetup, serve } from '@stsgate/gateway';
import { adapters } from 'stsgate-adapter-parrot';

const registry = builtinRegistry();
for (const adapter of adapters) registry.add(adapter);
const gateway = await serve(resolveServeSetup(process.env, registry));
await gateway.stopped;
process.exit(0);
`,
);
log(`installing into ${project}`);
execFileSync('pnpm', ['install', '--prefer-offline', '--config.confirmModulesPurge=false', '--reporter=append-only'], { cwd: project, stdio: ['ignore', 'ignore', 'inherit'] });

if (existsSync(join(project, 'node_modules/.pnpm')) && readdirSync(join(project, 'node_modules/.pnpm')).some((name) => name.startsWith('@stsgate+testkit'))) {
  fail('@stsgate/testkit was installed with the gateway');
} else log('no @stsgate/testkit in the installed tree');

const freePort = () =>
  new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });

/** Starts a gateway process, makes one call (init + 20 frames), expects the parrot's transcript and audio, then SIGTERM. */
async function checkCall(label, args, env) {
  const port = await freePort();
  const child = spawn(process.execPath, args, { cwd: project, env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn' }, stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    for (let i = 0; i < 100; i++) {
      if (await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.ok, () => false)) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const got = await new Promise((resolve, reject) => {
      const socket = new WebSocket(`ws://127.0.0.1:${port}/`); // Node's own WebSocket client
      const received = { transcripts: [], audio: 0 };
      const timer = setTimeout(() => reject(new Error(`${label}: no reply within 5 s (${JSON.stringify(received)})`)), 5000);
      socket.addEventListener('error', () => reject(new Error(`${label}: WebSocket error`)));
      socket.addEventListener('open', () => {
        socket.send(JSON.stringify({ type: 'init', uuid: `custom-${label}` }));
        for (let i = 0; i < 20; i++) socket.send(JSON.stringify({ type: 'audio', audio: Buffer.alloc(320, i).toString('base64') }));
      });
      socket.addEventListener('message', (event) => {
        const message = JSON.parse(String(event.data));
        if (message.type === 'transcript') received.transcripts.push(message.text);
        if (message.type === 'audio') received.audio++;
        if (received.transcripts.length > 0 && received.audio >= 20) {
          clearTimeout(timer);
          socket.close();
          resolve(received);
        }
      });
    });
    log(`${label}: transcript ${JSON.stringify(got.transcripts)}, ${got.audio} audio frames back`);
    if (got.transcripts[0] !== 'hello from a third-party adapter') fail(`${label}: unexpected transcript ${JSON.stringify(got.transcripts)}`);
  } catch (error) {
    fail(error instanceof Error ? error.message : String(error));
  } finally {
    child.kill('SIGTERM');
    const code = await exited;
    if (code !== 0) fail(`${label}: exit status ${code} after SIGTERM`);
  }
}

await checkCall('ten-line build', ['custom.mjs'], { STS_PROVIDER: 'parrot' });
await checkCall('STSGATE_ADAPTERS', ['node_modules/@stsgate/gateway/dist/cli.js', 'serve'], { STS_PROVIDER: 'parrot', STSGATE_ADAPTERS: 'stsgate-adapter-parrot' });
if (process.exitCode !== 1) rmSync(scratch, { recursive: true, force: true });
log(process.exitCode === 1 ? `failed (scratch project kept in ${scratch})` : 'ok');
