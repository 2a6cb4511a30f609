#!/usr/bin/env node
// Rehearses one docker/gateway.Dockerfile target without a Docker engine:
//   node scripts/rehearse-image.mjs <target> [--keep]      (pnpm rehearse:image <target>; run `pnpm build` first)
// 1. parses the Dockerfile for the target's stages: its ENV, EXPOSE, WORKDIR, USER, HEALTHCHECK and CMD;
// 2. performs the install steps into <tmp>/usr/src/app: the build stage's `pnpm deploy ... /out` and its pruning
//    (into ./gateway, as `COPY --from=build /out ./gateway` does), then the runtime stages' RUN steps, verbatim;
// 3. writes an AVR tool module (CommonJS, requiring axios as AVR's tools do) into tools/;
// 4. starts the server with the image's CMD and ENV, from the WORKDIR, as the image's USER when run as root
//    (otherwise as the current, non-root, user), with the testkit emulators standing in for the provider;
// 5. runs the image's HEALTHCHECK command (exit 0 required), a simulated AVR call for STS targets, checks the tool was
//    loaded (the server's "tools loaded" log line, or AVR's require() from the tools folder when the provider takes no
//    tools), SIGTERMs the server (exit 0 required);
// 6. without onnxruntime, checks that a provider needing the VAD stops start-up with the reason (exit 2);
// 7. prints {target, sizeMB, onnxruntime, healthcheck, call, toolLoaded, vadRefused, ...} and exits 1 on any failure.
// The folder's size is the app only: the image adds the node:22-bookworm-slim base.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const keep = args.includes('--keep');
const target = args.find((arg) => !arg.startsWith('--'));
const log = (message) => process.stderr.write(`rehearse-image: ${message}\n`);
if (target === undefined) {
  log('usage: node scripts/rehearse-image.mjs <target> [--keep]');
  process.exit(2);
}

// ---- 1. the Dockerfile's stages ----
/** name -> { from, instructions: [{ keyword, rest }] }, continuation lines joined; and the stage order. */
function parseDockerfile(text) {
  const stages = new Map();
  const order = [];
  let current;
  const logical = text.replace(/\\\n/g, ' ').split('\n');
  for (const line of logical) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const [, keyword, rest] = /^(\w+)\s+(.*)$/.exec(trimmed) ?? [];
    if (keyword === undefined) continue;
    if (keyword.toUpperCase() === 'FROM') {
      const [, from, name] = /^(\S+)(?:\s+AS\s+(\S+))?/i.exec(rest);
      current = { from, instructions: [] };
      const id = name ?? `#${order.length}`;
      stages.set(id, current);
      order.push(id);
    } else current?.instructions.push({ keyword: keyword.toUpperCase(), rest: rest.trim() });
  }
  return { stages, order };
}
const dockerfile = parseDockerfile(readFileSync(join(root, 'docker/gateway.Dockerfile'), 'utf8'));
if (!dockerfile.stages.has(target)) {
  log(`no target "${target}" in docker/gateway.Dockerfile (targets: ${dockerfile.order.join(', ')})`);
  process.exit(2);
}
/** The target's stages, base first (stages built FROM another stage inherit its instructions). */
const chain = [];
for (let name = target; dockerfile.stages.has(name); name = dockerfile.stages.get(name).from) chain.unshift(dockerfile.stages.get(name));
const instructions = chain.flatMap((stage) => stage.instructions);
const image = { env: {}, expose: [], workdir: '/', user: 'root', healthcheck: undefined, cmd: undefined, runs: [], copies: [] };
for (const { keyword, rest } of instructions) {
  if (keyword === 'ENV') for (const [, key, value] of rest.matchAll(/(\w+)=(\S+)/g)) image.env[key] = value;
  if (keyword === 'EXPOSE') image.expose.push(...rest.split(/\s+/).map(Number));
  if (keyword === 'WORKDIR') image.workdir = rest;
  if (keyword === 'USER') image.user = rest;
  if (keyword === 'HEALTHCHECK') image.healthcheck = JSON.parse(/CMD\s+(\[.*\])$/.exec(rest)[1]);
  if (keyword === 'CMD') image.cmd = JSON.parse(rest);
  if (keyword === 'RUN') image.runs.push(rest);
  if (keyword === 'COPY') image.copies.push(rest);
}
const buildRun = dockerfile.stages.get('build')?.instructions.find((i) => i.keyword === 'RUN' && i.rest.includes('pnpm deploy'))?.rest;
if (buildRun === undefined || image.cmd === undefined || image.healthcheck === undefined) {
  log('the Dockerfile has no build stage `pnpm deploy` RUN, CMD or HEALTHCHECK for this target');
  process.exit(2);
}

// ---- 2. the install steps, into <tmp>/usr/src/app ----
const scratch = mkdtempSync(join(tmpdir(), `stsgate-image-${target}-`));
const app = join(scratch, image.workdir);
mkdirSync(app, { recursive: true });
// `COPY --from=build /out ./gateway` (or /out-novad: the same tree without onnxruntime).
const copy = image.copies.map((rest) => /^--from=build\s+\/out(\S*)\s+(\S+)$/.exec(rest)).find((match) => match !== null);
if (copy === undefined) throw new Error('no COPY --from=build /out… in the target');
const [, outSuffix, copyTarget] = copy;
const gatewayDir = join(app, copyTarget);
if (!existsSync(join(root, 'apps/gateway/dist/cli.js'))) {
  log('apps/gateway/dist is missing: run `pnpm build` first (the image runs it in its build stage)');
  process.exit(2);
}
// The build stage's steps after the install and build (done by `pnpm build` in this workspace), /out -> ./gateway.
for (const step of buildRun.split('&&').map((part) => part.trim()).filter((part) => !/^pnpm (install|build)\b/.test(part))) {
  execFileSync('sh', ['-c', step.replaceAll('/out', gatewayDir)], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
}
// The build stage may make several trees (/out, /out-novad): this target's becomes ./gateway, the others go.
for (const suffix of new Set([...buildRun.matchAll(/\/out([\w-]*)/g)].map((match) => match[1]))) {
  if (suffix !== outSuffix) rmSync(`${gatewayDir}${suffix}`, { recursive: true, force: true });
}
if (outSuffix !== '') renameSync(`${gatewayDir}${outSuffix}`, gatewayDir);
for (const run of image.runs) execFileSync('sh', ['-c', run], { cwd: app, stdio: 'inherit' });
const onnxruntime = spawnSync('sh', ['-c', 'ls -d node_modules/.pnpm/onnxruntime-node@* >/dev/null 2>&1'], { cwd: gatewayDir }).status === 0;

// ---- 3. an AVR tool (CommonJS), as mounted at /usr/src/app/tools ----
const TOOL = 'rehearsal_probe';
writeFileSync(
  join(app, 'tools', `${TOOL}.js`),
  `const axios = require('axios'); // AVR's tools require axios; /usr/src/app/node_modules resolves it
module.exports = {
  name: '${TOOL}',
  description: 'Rehearsal probe: answers with the axios version.',
  input_schema: { type: 'object', properties: {} },
  handler: async (uuid) => 'ok ' + uuid + ' axios ' + axios.VERSION,
};
`,
);

// The image's user: `node` when this runs as root (and the user exists), else the current non-root user.
let nodeBinary = process.execPath;
let user = process.getuid?.() === 0 ? 'root' : (process.env.USER ?? String(process.getuid?.()));
const spawnAs = {};
if (process.getuid?.() === 0 && image.user !== 'root') {
  // `node` is node's images' user; where it does not exist, `nobody` stands in (still non-root).
  const name = [image.user, 'nobody'].find((candidate) => spawnSync('id', ['-u', candidate]).status === 0);
  const id = spawnSync('id', ['-u', name ?? image.user], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', name ?? image.user], { encoding: 'utf8' });
  if (name !== undefined) {
    Object.assign(spawnAs, { uid: Number(id.stdout), gid: Number(gid.stdout) });
    execFileSync('chown', ['-R', `${spawnAs.uid}:${spawnAs.gid}`, scratch]);
    chmodSync(scratch, 0o755);
    chownSync(scratch, spawnAs.uid, spawnAs.gid);
    user = name;
    // The image's node is /usr/local/bin/node; this one may sit where that user cannot reach (under /root).
    mkdirSync(join(scratch, 'usr/local/bin'), { recursive: true });
    copyFileSync(process.execPath, (nodeBinary = join(scratch, 'usr/local/bin/node')));
    chmodSync(nodeBinary, 0o755);
  } else log(`no user "${image.user}" here: running as root`);
}

// ---- 4. emulators for the provider, and the server started as the image's CMD ----
const testkit = await import(join(root, 'packages/testkit/dist/index.js'));
const provider = { sts: image.env.STS_PROVIDER, asr: image.env.ASR_PROVIDER, llm: image.env.LLM_PROVIDER, tts: image.env.TTS_PROVIDER };
const closers = [];
const emulatorEnv = {};
async function emulate(kind) {
  if (kind === 'openai-realtime' || kind === 'openai-rest') {
    const apiKey = 'sk-emulator-key';
    emulatorEnv.OPENAI_API_KEY = apiKey;
    const emulator = kind === 'openai-realtime' ? await testkit.startOpenAiRealtimeEmulator({ apiKey }) : await testkit.startOpenAiRestEmulator({ apiKey });
    if (kind === 'openai-realtime') emulatorEnv.OPENAI_REALTIME_URL = emulator.url;
    else emulatorEnv.OPENAI_BASE_URL = emulator.baseUrl;
    closers.push(() => emulator.close());
  } else if (kind === 'xai-realtime') {
    const apiKey = 'xai-emulator-key';
    const emulator = await testkit.startXaiRealtimeEmulator({ apiKey });
    Object.assign(emulatorEnv, { XAI_API_KEY: apiKey, XAI_REALTIME_URL: emulator.url });
    closers.push(() => emulator.close());
  }
}
const noProvider = Object.values(provider).every((id) => id === undefined);
if (provider.sts === 'openai') await emulate('openai-realtime');
else if (provider.sts === 'xai') await emulate('xai-realtime');
else if (provider.llm === 'openai' && provider.sts === undefined && provider.asr === undefined && provider.tts === undefined) await emulate('openai-rest');
else if (!noProvider) {
  log(`no emulator set-up for ${JSON.stringify(provider)} here: rehearse default, openai, xai or llm-openai`);
  rmSync(scratch, { recursive: true, force: true });
  process.exit(2);
}

const serverEnv = { PATH: process.env.PATH, HOME: app, ...image.env, ...emulatorEnv };
const [command, ...commandArgs] = image.cmd;
const resolveCommand = (name) => (name === 'node' ? nodeBinary : name);
const server = spawn(resolveCommand(command), commandArgs, { cwd: app, env: serverEnv, stdio: ['ignore', 'pipe', 'pipe'], ...spawnAs });
let output = '';
server.stdout.on('data', (chunk) => (output += chunk));
server.stderr.on('data', (chunk) => (output += chunk));
const exited = new Promise((resolve) => server.on('exit', (code, signal) => resolve(code ?? signal)));
let serverExit;
void exited.then((code) => (serverExit = code));

const report = { target, sizeMB: 0, onnxruntime, user, env: image.env, port: undefined, exposed: image.expose, healthcheck: 'not run', call: 'not run', toolLoaded: false, exit: undefined };
const problems = [];
const runHealthcheck = () => {
  const [hc, ...hcArgs] = image.healthcheck;
  return spawnSync(resolveCommand(hc), hcArgs, { cwd: app, env: serverEnv, stdio: 'ignore', timeout: 5000, ...spawnAs }).status;
};
try {
  // ---- 5. HEALTHCHECK (within the start period), the call, the tool ----
  let status;
  for (let i = 0; i < 50 && serverExit === undefined; i++) {
    status = runHealthcheck();
    if (status === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  report.healthcheck = status === 0 ? 'ok' : `exit ${status}`;
  if (status !== 0) throw new Error(`HEALTHCHECK failed (${report.healthcheck}); the server${serverExit === undefined ? ' is running' : ` exited (${serverExit})`}`);
  // The port the server really listens on (the health check found it on its own: same resolution as serve's). Its log
  // line may reach this process after the health check passed: wait for it a little.
  const listening = () => /stsgate listening on port (\d+)/.exec(output)?.[1];
  for (let i = 0; i < 50 && listening() === undefined; i++) await new Promise((resolve) => setTimeout(resolve, 100));
  const port = Number(listening());
  report.port = port;
  if (!image.expose.includes(port)) problems.push(`the server listens on ${port}, which the image does not EXPOSE (${image.expose.join(' ')})`);

  const isSts = provider.sts !== undefined || noProvider;
  if (isSts) {
    const call = await testkit.simulateCall({
      url: `ws://127.0.0.1:${port}/`,
      input: testkit.readWavAs8k(testkit.fixturePath('short')),
      tailMs: 5000,
      idleMs: 1200,
    });
    report.call = { endReason: call.endReason, audioMessages: call.received.audioMessages, transcripts: call.received.transcripts, errors: call.received.errors, durationMs: call.durationMs };
    if (call.received.audioMessages === 0 || call.received.errors > 0 || call.errors.length > 0) problems.push(`the call got ${call.received.audioMessages} audio messages, ${call.received.errors} errors`);
  } else report.call = 'not an STS target';

  const toolsLine = output.split('\n').find((line) => line.includes('"tools loaded"'));
  if (toolsLine !== undefined) {
    report.toolLoaded = JSON.parse(toolsLine).tools?.includes(TOOL) ? 'by the server' : false;
  } else {
    // The provider takes no tools (loopback), so the server loads none: load it as AVR's loaders do, from the app.
    const probe = spawnSync(
      nodeBinary,
      ['-e', `require('./tools/${TOOL}.js').handler('probe').then((text) => { console.log(text); })`],
      { cwd: app, encoding: 'utf8', timeout: 5000, ...spawnAs },
    );
    report.toolLoaded = probe.status === 0 && probe.stdout.startsWith('ok probe axios') ? 'by require() (the provider takes no tools)' : false;
  }
  if (report.toolLoaded === false) problems.push('the tool module did not load');
} catch (error) {
  problems.push(error instanceof Error ? error.message : String(error));
} finally {
  if (serverExit === undefined) server.kill('SIGTERM');
  report.exit = await exited;
  if (report.exit !== 0) problems.push(`the server exited with ${report.exit} after SIGTERM`);
  for (const close of closers) await close();
}

// A tree without onnxruntime: a provider that needs the VAD (loopback) must stop start-up with the reason, not crash.
if (!onnxruntime) {
  const withVad = spawnSync(resolveCommand(command), commandArgs, { cwd: app, env: { ...serverEnv, STS_PROVIDER: 'loopback' }, encoding: 'utf8', timeout: 15_000, ...spawnAs });
  report.vadRefused = withVad.status === 2 && withVad.stderr.includes('onnxruntime-node is not installed');
  if (!report.vadRefused) problems.push(`STS_PROVIDER=loopback without onnxruntime: exit ${withVad.status}, ${withVad.stderr.trim().split('\n')[0] ?? ''}`);
}

// ---- 6. size and report ----
report.sizeMB = Math.round(Number(execFileSync('du', ['-s', '--apparent-size', '--block-size=1', app], { encoding: 'utf8' }).split(/\s/)[0]) / 1e5) / 10;
if (problems.length > 0) {
  report.problems = problems;
  log(`server output:\n${output.split('\n').slice(-30).join('\n')}`);
}
process.stdout.write(`${JSON.stringify(report)}\n`);
if (keep || problems.length > 0) log(`folder kept: ${scratch}`);
else rmSync(scratch, { recursive: true, force: true });
process.exit(problems.length > 0 ? 1 : 0);
