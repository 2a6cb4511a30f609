#!/usr/bin/env node
// Rehearses one docker/gateway.Dockerfile target without a Docker engine:
//   node scripts/rehearse-image.mjs <target> [--keep]      (pnpm rehearse:image <target>; run `pnpm build` first)
// 1. parses the Dockerfile for the target's stages: its ENV, EXPOSE, WORKDIR, USER, HEALTHCHECK and CMD;
// 2. performs the install steps into <tmp>/usr/src/app: the build stage's `pnpm deploy ... /out` and its pruning
//    (into ./gateway, as `COPY --from=build /out ./gateway` does), then the runtime stages' RUN steps, verbatim (an
//    `apt-get install` step only when one of its packages is missing on this machine: it installs system libraries);
// 3. writes an AVR tool module (CommonJS, requiring axios as AVR's tools do) into tools/;
// 4. starts the server with the image's CMD and ENV, from the WORKDIR, as the image's USER when run as root
//    (otherwise as the current, non-root, user), with the testkit emulators standing in for the provider (for a
//    cascade, for each of its ASR, LLM and TTS stages; the `cascade` target's stages, which the operator sets, are
//    rehearsed as Soniox ASR + OpenAI LLM + Speechmatics TTS);
// 5. runs the image's HEALTHCHECK command (exit 0 required); for STS targets, a simulated AVR call (agent audio, and
//    with a provider the caller's transcript and a reply); for ASR, TTS and LLM targets, a request in AVR's HTTP
//    protocol (the emulator's transcript of the audio; speech of the length the emulator synthesises; the emulator's
//    answer); checks the tool was loaded (the server's "tools loaded" log line, or AVR's require() from the tools
//    folder when the provider takes no tools), SIGTERMs the server (exit 0 required);
// 6. without onnxruntime, checks that a provider needing the VAD stops start-up with the reason (exit 2);
// 7. prints {target, sizeMB, onnxruntime, healthcheck, call, request, toolLoaded, preloaded (each LD_PRELOAD library
//    found in the server's /proc/<pid>/maps), vadRefused, ...} and exits 1 on any
//    failure.
// The folder's size is the app only: the image adds the node:22-bookworm-slim base.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
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
for (const run of image.runs) {
  // A system package step (apt-get install) installs into the machine, not the app: run it only when a package is
  // missing (as the image would; it needs root), so the server below runs with the image's libraries.
  const packages = /apt-get install ([^&]*)/.exec(run)?.[1].split(/\s+/).filter((word) => word !== '' && !word.startsWith('-'));
  if (packages !== undefined) {
    const missing = packages.filter((name) => spawnSync('dpkg-query', ['-W', '-f=${Status}', name], { encoding: 'utf8' }).stdout !== 'install ok installed');
    if (missing.length === 0) continue;
    if (process.getuid?.() !== 0) {
      log(`the image installs Debian packages missing here (${missing.join(' ')}): install them, or run as root`);
      process.exit(2);
    }
  }
  execFileSync('sh', ['-c', run], { cwd: app, stdio: packages === undefined ? 'inherit' : ['ignore', 'ignore', 'inherit'] });
}
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
const noProvider = Object.values(provider).every((id) => id === undefined);
// A cascade's stages: the presets' ASR and TTS are their vendor's (@stsgate/cascade's SPEECHMATICS_PRESET and
// SONIOX_PRESET) and their LLM is the one the Dockerfile tells the operator to set; the `cascade` target leaves all three
// to the operator, rehearsed here as a mix of both vendors (as e2e-cascade-mixed.test.ts runs it).
const CASCADE_STAGES = {
  speechmatics: { asr: 'speechmatics', llm: 'openai', tts: 'speechmatics' },
  soniox: { asr: 'soniox', llm: 'openai', tts: 'soniox' },
  cascade: { asr: 'soniox', llm: 'openai', tts: 'speechmatics' },
};
const stages = CASCADE_STAGES[provider.sts];
/** What the operator adds to the image's ENV (`docker run -e`): the stage providers a cascade target leaves open. */
let operatorEnv = {};
if (provider.sts === 'cascade') operatorEnv = { ASR_PROVIDER: stages.asr, LLM_PROVIDER: stages.llm, TTS_PROVIDER: stages.tts };
else if (stages !== undefined) operatorEnv = { LLM_PROVIDER: stages.llm };
/**
 * The emulator standing in for each provider (by kind, then id): starts it and returns the variables that point the
 * adapter at it (the same ones as `stsgate emulate`, apps/gateway/src/dev-commands.ts), how to stop it and, for those
 * that hear the caller, the user transcript they make of the test kit's `short` fixture. The emulators check the API
 * key, so a key the gateway does not send fails the call.
 */
const EMULATORS = {
  sts: {
    openai: async () => {
      const apiKey = 'sk-emulator-key';
      const emulator = await testkit.startOpenAiRealtimeEmulator({ apiKey });
      // The realtime emulators find the caller's turn with their server VAD and name it; they recognise no words.
      return { env: { OPENAI_API_KEY: apiKey, OPENAI_REALTIME_URL: emulator.url }, close: () => emulator.close(), heard: 'Caller turn 1.' };
    },
    xai: async () => {
      const apiKey = 'xai-emulator-key';
      const emulator = await testkit.startXaiRealtimeEmulator({ apiKey });
      return { env: { XAI_API_KEY: apiKey, XAI_REALTIME_URL: emulator.url }, close: () => emulator.close(), heard: 'Caller turn 1.' };
    },
    'speechmatics-flow': async () => {
      // Flow connects with a temporary key from the management API, which mints Flow keys for accounts that have Flow.
      const apiKey = 'sm-emulator-key';
      const auth = await testkit.startSpeechmaticsAuthEmulator({ apiKey, allowFlowKeys: true });
      const flow = await testkit.startSpeechmaticsFlowEmulator({ verifyToken: (jwt) => auth.verify(jwt, 'flow') });
      return {
        env: { SPEECHMATICS_API_KEY: apiKey, SPEECHMATICS_FLOW_URL: flow.baseUrl, SPEECHMATICS_MANAGEMENT_URL: auth.baseUrl },
        close: async () => {
          await flow.close();
          await auth.close();
        },
        heard: testkit.FIXTURE_TEXT['short.wav'],
      };
    },
  },
  asr: {
    speechmatics: async () => {
      const apiKey = 'sm-emulator-key';
      const emulator = await testkit.startSpeechmaticsRtEmulator({ apiKey });
      const env = { SPEECHMATICS_API_KEY: apiKey, SPEECHMATICS_RT_URL: emulator.url };
      return { env, close: () => emulator.close(), heard: testkit.FIXTURE_TEXT['short.wav'] };
    },
    soniox: async () => {
      const apiKey = 'soniox-emulator-key';
      // Header auth, as Soniox requires from 2027-01-15.
      const emulator = await testkit.startSonioxSttEmulator({ apiKey, requireHeaderAuth: true });
      const env = { SONIOX_API_KEY: apiKey, SONIOX_WEBSOCKET_URL: emulator.url };
      return { env, close: () => emulator.close(), heard: testkit.FIXTURE_TEXT['short.wav'] };
    },
  },
  llm: {
    openai: async () => {
      const apiKey = 'sk-emulator-key';
      const emulator = await testkit.startOpenAiRestEmulator({ apiKey });
      return { env: { OPENAI_API_KEY: apiKey, OPENAI_BASE_URL: emulator.baseUrl }, close: () => emulator.close() };
    },
  },
  tts: {
    speechmatics: async () => {
      const apiKey = 'sm-emulator-key';
      const emulator = await testkit.startSpeechmaticsTtsEmulator({ apiKey });
      return { env: { SPEECHMATICS_API_KEY: apiKey, SPEECHMATICS_TTS_URL: emulator.baseUrl }, close: () => emulator.close() };
    },
    soniox: async () => {
      const apiKey = 'soniox-emulator-key';
      const emulator = await testkit.startSonioxTtsEmulator({ apiKey });
      const env = { SONIOX_API_KEY: apiKey, SONIOX_TTS_URL: emulator.url, SONIOX_TTS_WEBSOCKET_URL: emulator.wsUrl };
      return { env, close: () => emulator.close() };
    },
  },
};
// A cascade's providers are its stages; no provider at all is the loopback, which needs none.
const emulated = Object.entries(stages ?? provider).filter(([, id]) => id !== undefined);
const missing = emulated.filter(([kind, id]) => EMULATORS[kind][id] === undefined);
if (missing.length > 0) {
  log(`no emulator for ${missing.map(([kind, id]) => `${kind} provider "${id}"`).join(', ')} here: add one to EMULATORS`);
  rmSync(scratch, { recursive: true, force: true });
  process.exit(2);
}
const closers = [];
const emulatorEnv = {};
/** The user transcript the provider makes of the call's caller audio (none: the loopback, which only echoes audio). */
let heard;
for (const [kind, id] of emulated) {
  const started = await EMULATORS[kind][id]();
  Object.assign(emulatorEnv, started.env);
  closers.push(started.close);
  heard ??= started.heard;
}

const serverEnv = { PATH: process.env.PATH, HOME: app, ...image.env, ...operatorEnv, ...emulatorEnv };
const [command, ...commandArgs] = image.cmd;
const resolveCommand = (name) => (name === 'node' ? nodeBinary : name);
const server = spawn(resolveCommand(command), commandArgs, { cwd: app, env: serverEnv, stdio: ['ignore', 'pipe', 'pipe'], ...spawnAs });
let output = '';
server.stdout.on('data', (chunk) => (output += chunk));
server.stderr.on('data', (chunk) => (output += chunk));
const exited = new Promise((resolve) => server.on('exit', (code, signal) => resolve(code ?? signal)));
let serverExit;
void exited.then((code) => (serverExit = code));

// AVR Core's requests to an ASR, TTS or LLM container (its pipeline mode), each returning its result and the problem, if
// any, with what the emulators make of the request as the measure.
/** The caller's audio streamed as AVR Core does (20 ms chunks, in real time); the answer is one text write per utterance. */
async function requestAsr(base) {
  const pcm = testkit.concatPcm(testkit.readWavAs8k(testkit.fixturePath('short')), testkit.silence(1200));
  const bytes = Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength);
  const { status, writes } = await new Promise((resolve, reject) => {
    const headers = { 'content-type': 'application/octet-stream', 'x-uuid': 'rehearsal-asr' };
    const req = httpRequest(`${base}/speech-to-text-stream`, { method: 'POST', headers }, (res) => {
      const writes = [];
      res.on('data', (data) => writes.push(data.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode, writes }));
    });
    req.on('error', reject);
    void (async () => {
      for (let i = 0; i < bytes.length; i += 320) {
        req.write(bytes.subarray(i, i + 320));
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      req.end();
    })();
  });
  const text = writes.join('');
  const problem = status === 200 && text === heard ? undefined : `ASR answered ${status} ${JSON.stringify(text)} where "${heard}" was due`;
  return { route: '/speech-to-text-stream', status, text, ...(problem === undefined ? {} : { problem }) };
}
/** `{"text"}` in, raw 8 kHz s16le PCM out. */
async function requestTts(base) {
  const text = 'Sure, which day works for you?';
  const headers = { 'content-type': 'application/json', 'x-uuid': 'rehearsal-tts' };
  const response = await fetch(`${base}/text-to-speech-stream`, { method: 'POST', headers, body: JSON.stringify({ text }) });
  const audio = Buffer.from(await response.arrayBuffer());
  // The emulators speak a text for a set time (defaultSonioxSpeech; Speechmatics' lasts as long): AVR Core must get that
  // much 8 kHz PCM, give or take the resampler's edges, with no WAV header, and not silence.
  const expectedBytes = 2 * testkit.defaultSonioxSpeech(text, 8000).length;
  let peak = 0;
  for (let i = 0; i + 1 < audio.length; i += 2) peak = Math.max(peak, Math.abs(audio.readInt16LE(i)));
  const plausible =
    response.status === 200 && audio.length % 2 === 0 && Math.abs(audio.length - expectedBytes) <= 160 && audio.subarray(0, 4).toString('latin1') !== 'RIFF' && peak > 1000;
  return {
    route: '/text-to-speech-stream',
    status: response.status,
    bytes: audio.length,
    expectedBytes,
    peak,
    ...(plausible ? {} : { problem: `TTS answered ${response.status} with ${audio.length} bytes (peak ${peak}) for ${expectedBytes} bytes of speech` }),
  };
}
/** `{"uuid", "message", "messages"}` in; out, `{"type": "text", "content"}` objects one after another, no delimiter. */
async function requestLlm(base) {
  const message = 'What time do you open on Saturday?';
  const expected = `You said: ${message}.`; // the emulator's answer, streamed in pieces
  const headers = { 'content-type': 'application/json', 'x-uuid': 'rehearsal-llm' };
  const body = JSON.stringify({ uuid: 'rehearsal-llm', message, messages: [{ role: 'user', content: message }] });
  const response = await fetch(`${base}/prompt-stream`, { method: 'POST', headers, body });
  const raw = await response.text();
  // A 200's objects, split at each brace that closes an outermost one (outside strings); any other status has an error.
  const objects = [];
  for (let i = 0, depth = 0, start = 0, inString = false; response.status === 200 && i < raw.length; i++) {
    if (inString) {
      if (raw[i] === '\\') i++;
      else if (raw[i] === '"') inString = false;
    } else if (raw[i] === '"') inString = true;
    else if (raw[i] === '{' && depth++ === 0) start = i;
    else if (raw[i] === '}' && --depth === 0) objects.push(JSON.parse(raw.slice(start, i + 1)));
  }
  const text = objects.map((object) => (object.type === 'text' ? object.content : `<${object.type}>`)).join('');
  return {
    route: '/prompt-stream',
    status: response.status,
    objects: objects.length,
    text,
    ...(response.status === 200 && text === expected ? {} : { problem: `LLM answered ${response.status} ${JSON.stringify(text || raw)} where "${expected}" was due` }),
  };
}

const report = { target, sizeMB: 0, onnxruntime, user, env: image.env, operatorEnv, port: undefined, exposed: image.expose, healthcheck: 'not run', call: 'not run', toolLoaded: false, exit: undefined };
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
  // Libraries the image preloads (LD_PRELOAD: jemalloc) are really in the server's process.
  const preloaded = (image.env.LD_PRELOAD ?? '').split(/[\s:]+/).filter((name) => name !== '');
  const maps = readFileSync(`/proc/${server.pid}/maps`, 'utf8');
  report.preloaded = Object.fromEntries(preloaded.map((name) => [name, maps.includes(`/${name}`)]));
  for (const [name, loaded] of Object.entries(report.preloaded)) if (!loaded) problems.push(`LD_PRELOAD ${name} is not loaded in the server`);
  if (!image.expose.includes(port)) problems.push(`the server listens on ${port}, which the image does not EXPOSE (${image.expose.join(' ')})`);

  if (provider.sts !== undefined || noProvider) {
    const call = await testkit.simulateCall({
      url: `ws://127.0.0.1:${port}/`,
      input: testkit.readWavAs8k(testkit.fixturePath('short')),
      tailMs: 5000,
      idleMs: 1200,
    });
    const transcripts = call.transcripts.map((t) => `${t.role}: ${t.text}`);
    report.call = { endReason: call.endReason, audioMessages: call.received.audioMessages, transcripts, errors: call.received.errors, durationMs: call.durationMs };
    if (call.received.audioMessages === 0 || call.received.errors > 0 || call.errors.length > 0) problems.push(`the call got ${call.received.audioMessages} audio messages, ${call.received.errors} errors`);
    // The caller's audio reached the provider through the gateway (its transcript of it came back), and a reply followed.
    const turn = heard === undefined ? -1 : transcripts.indexOf(`user: ${heard}`);
    if (heard !== undefined && !(turn >= 0 && transcripts.slice(turn + 1).some((line) => /^agent: \S/.test(line)))) {
      problems.push(`the call's transcripts lack "user: ${heard}" followed by an agent reply`);
    }
  } else {
    report.call = 'not an STS target';
    // An ASR, TTS or LLM target bakes in that one provider.
    report.request = await (provider.asr !== undefined ? requestAsr : provider.tts !== undefined ? requestTts : requestLlm)(`http://127.0.0.1:${port}`);
    if (report.request.problem !== undefined) problems.push(report.request.problem);
  }

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
