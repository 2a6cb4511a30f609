// Reliability against hostile clients: what one misbehaving connection does to the gateway's memory, its /health
// latency and a normal call in progress; slowloris POSTs; and how long SIGTERM takes with calls and a hanging request.
//
// Every run uses the BUILT gateway (`stsgate serve`, its own process pinned to CPU 1, LOG_LEVEL=warn) and the test
// kit's hostile-client drivers (packages/testkit/dist attacks.js). This process pins itself to CPU 0; each attack runs
// in a worker thread, so its busy loop does not delay this thread's /health probe and normal call.
//
// attacks: per kind, a fresh gateway (loopback provider), one normal `echoCall` (question.wav, short.wav with --quick)
//   and `probeHealth` (GET /health every 50 ms on a fresh connection), and the attack from ONE connection at full speed
//   for 5 s (1.5 s with --quick), 200 ms after the call started; then ~1 s of quiet. VmRSS (/proc/<pid>/status) every
//   100 ms. pass = RSS growth (peak - before) < 50 MB && /health worst < 200 ms && the normal call's echo complete.
//   Kinds: dtmf-flood ({"type":"dtmf_digit"} after init: the loopback plays a tone per digit), invalid-after-init (1-byte
//   messages), invalid-before-init, binary-frames (320-byte binary frames after init), raw-<abuse> for each
//   RawFrameAbuse (hand-made frames after a masked init), non-reading-client (init + question.wav at full speed so the
//   loopback echoes, then 1-byte invalid messages, and the client never reads: the gateway's writes pile up).
// trickle: gateway with STSGATE_AUTH_TOKEN and TTS_PROVIDER=soniox (the testkit's Soniox TTS emulator) + loopback STS;
//   20,000 unauthenticated POSTs to /text-to-speech-stream (2,000 with --quick), chunked, one body byte per second,
//   at most 4,000 open at once (2,000 with --quick), each given up after 10 s (5 s); an authorised echo call at the
//   same time. pass = every request got a status (not 2xx) or was closed by the gateway (none still open at hold)
//   && the normal call complete. Also the gateway's RSS and open fds (/proc/<pid>/fd) peak.
// sigterm: gateway with SHUTDOWN_GRACE_MS=2000, loopback STS + Soniox TTS (emulator), STSGATE_AUTH_TOKEN; 20 echo calls
//   still running at the deadline and one authorised hanging POST /text-to-speech-stream; SIGTERM, then the time to the
//   child's exit. pass = exitAfterMs - graceMs < 300. A gateway still running grace + 8 s (4 s --quick) is SIGKILLed.
//
// No criterion throws: a failed one is pass=false in the JSON (stdout); progress on stderr.
// Run: pnpm build && node bench/reliability.mjs [--quick] [--only=attacks,trickle,sigterm] [--kinds=dtmf-flood,raw-ping-flood]
//      [--trickle-count=N] [--trickle-concurrency=N] [--trickle-hold-ms=N]
// or node bench/run.mjs --only=reliability [--quick]
import { readdirSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { startGateway } from './lib/gateway-process.mjs';
import { procCpuMs, procRssKb, round, setAffinity, sleep, which } from './lib/util.mjs';
import { encodeAvrAudio, AVR_FRAME_SAMPLES } from '../packages/core/dist/index.js';
import {
  RAW_FRAME_ABUSES,
  echoCall,
  fixturePath,
  floodRawFrames,
  floodWebSocket,
  hangingRequest,
  probeHealth,
  readWavAs8k,
  startSonioxTtsEmulator,
  tricklePosts,
} from '../packages/testkit/dist/index.js';

const TOKEN = 'reliability-bench-token-0123456789';
const SONIOX_KEY = 'soniox-reliability-key';
const RSS_LIMIT_MB = 50;
const HEALTH_LIMIT_MS = 200;
const OVERRUN_LIMIT_MS = 300;
const GRACE_MS = 2000;
const SIGTERM_CALLS = 20;
const ATTACK_KINDS = [
  'dtmf-flood',
  'invalid-after-init',
  'invalid-before-init',
  'binary-frames',
  ...RAW_FRAME_ABUSES.map((abuse) => `raw-${abuse}`),
  'non-reading-client',
];
const PARTS = ['attacks', 'trickle', 'sigterm'];

const log = (line) => process.stderr.write(`[bench] reliability: ${line}\n`);
const mb = (kb) => (Number.isFinite(kb) ? round(kb / 1024, 1) : null);

// ---- the attacks (run in a worker thread) -------------------------------------------------------------------------

/** A fixture as AVR audio messages (question.wav: the non-reading client's speech, so the loopback has something to echo). */
function speechMessages(fixture = 'question') {
  const pcm = readWavAs8k(fixturePath(fixture));
  const messages = [];
  for (let at = 0; at < pcm.length; at += AVR_FRAME_SAMPLES) {
    const frame = new Int16Array(AVR_FRAME_SAMPLES);
    frame.set(pcm.subarray(at, at + AVR_FRAME_SAMPLES));
    messages.push(encodeAvrAudio(frame));
  }
  return messages;
}

function runAttack(kind, url, durationMs) {
  const uuid = 'attacker';
  if (kind.startsWith('raw-')) return floodRawFrames(url, { kind: kind.slice(4), durationMs, uuid });
  switch (kind) {
    case 'dtmf-flood':
      return floodWebSocket(url, { uuid, message: '{"type":"dtmf_digit","digit":"5"}', durationMs });
    case 'invalid-after-init':
      return floodWebSocket(url, { uuid, message: 'x', durationMs });
    case 'invalid-before-init':
      return floodWebSocket(url, { message: 'x', durationMs });
    case 'binary-frames':
      return floodWebSocket(url, { uuid, message: new Uint8Array(320), binary: true, durationMs });
    case 'non-reading-client': {
      const speech = speechMessages();
      return floodWebSocket(url, { uuid, message: (i) => speech[i] ?? 'x', readReplies: false, durationMs });
    }
    default:
      throw new Error(`unknown attack ${kind}`);
  }
}

async function workerMain() {
  const { task } = workerData;
  try {
    const result = task.type === 'attack' ? await runAttack(task.kind, task.url, task.durationMs) : await tricklePosts(task.baseUrl, task.options);
    parentPort.postMessage({ result });
  } catch (error) {
    parentPort.postMessage({ error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  }
}

/** Runs one attack or trickle task in a worker thread; resolves with its report. */
function inWorker(task) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: { task } });
    let settled = false;
    worker.once('message', (message) => {
      settled = true;
      if (message.error !== undefined) reject(new Error(message.error));
      else resolve(message.result);
      void worker.terminate();
    });
    worker.once('error', (error) => {
      if (!settled) reject(error);
      settled = true;
    });
    worker.once('exit', (code) => {
      if (!settled) reject(new Error(`attack worker exited with ${code}`));
      settled = true;
    });
  });
}

// ---- gateway processes --------------------------------------------------------------------------------------------

const children = new Set();

async function launchGateway(env) {
  const gateway = await startGateway(env);
  children.add(gateway.child);
  gateway.child.once('exit', () => children.delete(gateway.child));
  return gateway;
}

function alive(child) {
  return child.exitCode === null && child.signalCode === null;
}

async function killGateway(gateway) {
  const { child } = gateway;
  if (!alive(child)) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await Promise.race([exited, sleep(3000)]);
}

function killAll() {
  for (const child of children) if (alive(child)) child.kill('SIGKILL');
}

/** VmRSS and open fds of a process every 100 ms; `stop()` returns the peaks (null once the process is gone). */
function sampleProcess(pid, { fds = false } = {}) {
  let peakRssKb = Number.NaN;
  let peakFds = 0;
  let gone = false;
  const sample = () => {
    try {
      const rss = procRssKb(pid);
      if (!(rss <= peakRssKb)) peakRssKb = rss;
      if (fds) peakFds = Math.max(peakFds, readdirSync(`/proc/${pid}/fd`).length);
    } catch {
      gone = true;
    }
  };
  sample();
  const timer = setInterval(sample, 100);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return { peakRssKb, peakFds: fds ? peakFds : undefined, gone };
    },
  };
}

function rssKb(pid) {
  try {
    return procRssKb(pid);
  } catch {
    return Number.NaN;
  }
}

function cpuMs(pid) {
  try {
    return procCpuMs(pid);
  } catch {
    return Number.NaN;
  }
}

const callSummary = (call) => ({
  complete: call.complete,
  agentAudioMs: call.agentAudioMs,
  expectedMs: call.expectedMs,
  maxGapMs: call.maxGapMs,
  errors: call.errors.slice(0, 5),
  closeCode: call.closeCode ?? null,
});

// ---- part: attacks ------------------------------------------------------------------------------------------------

/**
 * One short call before measuring: the first call loads the Silero VAD model (tens of MB, and an event-loop stall), which
 * is not the attack's doing. Speech frames at full speed (the loopback runs its VAD on them), then a normal close.
 */
async function warmUp(url, headers) {
  const frames = speechMessages('short');
  const silenceFrame = encodeAvrAudio(new Int16Array(AVR_FRAME_SAMPLES));
  await floodWebSocket(url, {
    uuid: 'warm-up',
    message: (i) => frames[i] ?? silenceFrame,
    maxMessages: frames.length + 50,
    durationMs: 3000,
    ...(headers === undefined ? {} : { headers }),
  });
  await sleep(500);
}

async function attackRun(kind, { quick, speech }) {
  const durationMs = quick ? 1500 : 5000;
  const gateway = await launchGateway({});
  const { pid } = gateway.child;
  const base = `http://127.0.0.1:${gateway.port}`;
  const url = `ws://127.0.0.1:${gateway.port}/`;
  try {
    await warmUp(url);
    const rssBeforeKb = rssKb(pid);
    const cpuBefore = cpuMs(pid);
    const sampler = sampleProcess(pid);
    const health = probeHealth(base, { intervalMs: 50, timeoutMs: 1000 });
    const normal = echoCall(url, { uuid: 'normal-call', speech, trailingSilenceMs: 1500, timeoutMs: (speech.length / 8) + 8000 });
    await sleep(200);
    let attack;
    try {
      attack = await inWorker({ type: 'attack', kind, url, durationMs });
    } catch (error) {
      attack = { driverError: error instanceof Error ? error.message : String(error) };
    }
    const call = await normal;
    await sleep(quick ? 700 : 1000);
    const rssAfterKb = rssKb(pid);
    const healthReport = await health.stop();
    const peaks = sampler.stop();
    const cpuAfter = cpuMs(pid);
    const rssGrowthMB = mb(peaks.peakRssKb - rssBeforeKb);
    const gatewayAlive = alive(gateway.child);
    const pass = gatewayAlive && rssGrowthMB !== null && rssGrowthMB < RSS_LIMIT_MB && healthReport.worstMs < HEALTH_LIMIT_MS && call.complete;
    return {
      kind,
      durationMs,
      attack,
      rssBeforeMB: mb(rssBeforeKb),
      rssPeakMB: mb(peaks.peakRssKb),
      rssAfterMB: mb(rssAfterKb),
      rssGrowthMB,
      gatewayCpuMs: Number.isFinite(cpuAfter - cpuBefore) ? round(cpuAfter - cpuBefore, 0) : null,
      gatewayAlive,
      health: { worstMs: healthReport.worstMs, p99Ms: healthReport.p99Ms, failures: healthReport.failures, samples: healthReport.samples },
      normalCall: callSummary(call),
      pass,
    };
  } finally {
    await killGateway(gateway);
  }
}

async function attacksPart(options) {
  const results = [];
  for (const kind of options.kinds) {
    const started = performance.now();
    const result = await attackRun(kind, options);
    results.push(result);
    log(
      `${kind}: ${result.pass ? 'pass' : 'FAIL'} (rss +${result.rssGrowthMB} MB, health worst ${result.health.worstMs} ms / ${result.health.failures} failures, ` +
        `call ${result.normalCall.agentAudioMs}/${result.normalCall.expectedMs} ms${result.gatewayAlive ? '' : ', gateway DIED'}) in ${round((performance.now() - started) / 1000, 1)} s`,
    );
  }
  return results;
}

// ---- part: trickle ------------------------------------------------------------------------------------------------

async function withTtsEmulator(run) {
  const tts = await startSonioxTtsEmulator({ apiKey: SONIOX_KEY });
  try {
    return await run({ SONIOX_API_KEY: SONIOX_KEY, SONIOX_TTS_URL: tts.url, SONIOX_TTS_WEBSOCKET_URL: tts.wsUrl });
  } finally {
    await tts.close();
  }
}

async function tricklePart({ quick, speech, trickle }) {
  const count = trickle.count ?? (quick ? 2000 : 20000);
  const concurrency = trickle.concurrency ?? (quick ? 2000 : 4000);
  const holdMs = trickle.holdMs ?? (quick ? 5000 : 10000);
  return withTtsEmulator(async (ttsEnv) => {
    const gateway = await launchGateway({ ...ttsEnv, STS_PROVIDER: 'loopback', TTS_PROVIDER: 'soniox', STSGATE_AUTH_TOKEN: TOKEN });
    const { pid } = gateway.child;
    const base = `http://127.0.0.1:${gateway.port}`;
    try {
      await warmUp(`ws://127.0.0.1:${gateway.port}/`, { authorization: `Bearer ${TOKEN}` });
      const rssBeforeKb = rssKb(pid);
      const fdsBefore = readdirSync(`/proc/${pid}/fd`).length;
      const sampler = sampleProcess(pid, { fds: true });
      const health = probeHealth(base, { intervalMs: 50, timeoutMs: 1000 });
      const trickleReport = inWorker({ type: 'trickle', baseUrl: base, options: { path: '/text-to-speech-stream', count, concurrency, holdMs, bytesEveryMs: 1000 } });
      await sleep(500);
      const call = await echoCall(`ws://127.0.0.1:${gateway.port}/`, {
        uuid: 'normal-call',
        speech,
        headers: { authorization: `Bearer ${TOKEN}` },
        trailingSilenceMs: 1500,
        timeoutMs: speech.length / 8 + 8000,
      });
      let report;
      try {
        report = await trickleReport;
      } catch (error) {
        report = { driverError: error instanceof Error ? error.message : String(error) };
      }
      await sleep(1000);
      const healthReport = await health.stop();
      const peaks = sampler.stop();
      const served = Object.keys(report.statuses ?? {}).filter((status) => status.startsWith('2'));
      const pass = report.stillOpenAtHold === 0 && served.length === 0 && call.complete && alive(gateway.child);
      return {
        requests: count,
        concurrency,
        holdMs,
        bytesEveryMs: 1000,
        report,
        rssBeforeMB: mb(rssBeforeKb),
        rssPeakMB: mb(peaks.peakRssKb),
        rssGrowthMB: mb(peaks.peakRssKb - rssBeforeKb),
        fdsBefore,
        fdsPeak: peaks.peakFds,
        health: { worstMs: healthReport.worstMs, p99Ms: healthReport.p99Ms, failures: healthReport.failures, samples: healthReport.samples },
        normalCall: callSummary(call),
        gatewayAlive: alive(gateway.child),
        pass,
      };
    } finally {
      await killGateway(gateway);
    }
  });
}

// ---- part: sigterm ------------------------------------------------------------------------------------------------

async function sigtermPart({ quick, speech }) {
  const killAfterMs = GRACE_MS + (quick ? 4000 : 8000);
  return withTtsEmulator(async (ttsEnv) => {
    const gateway = await launchGateway({
      ...ttsEnv,
      STS_PROVIDER: 'loopback',
      TTS_PROVIDER: 'soniox',
      STSGATE_AUTH_TOKEN: TOKEN,
      SHUTDOWN_GRACE_MS: String(GRACE_MS),
    });
    const { child } = gateway;
    const headers = { authorization: `Bearer ${TOKEN}` };
    try {
      // Long calls: the speech, then 20 s of silence; still running when the grace period ends.
      const calls = Array.from({ length: SIGTERM_CALLS }, (_, i) =>
        echoCall(`ws://127.0.0.1:${gateway.port}/`, { uuid: `sigterm-${i}`, speech, headers, trailingSilenceMs: 20000, timeoutMs: 30000 }),
      );
      const hanging = hangingRequest(`http://127.0.0.1:${gateway.port}`, { path: '/text-to-speech-stream', headers });
      await sleep(speech.length / 8 + 1000); // every call has spoken and its echo has started
      const exited = new Promise((resolve) => child.once('exit', () => resolve(performance.now())));
      const signalledAt = performance.now();
      child.kill('SIGTERM');
      const exitAt = await Promise.race([exited, sleep(killAfterMs).then(() => undefined)]);
      let forcedKill = false;
      if (exitAt === undefined) {
        forcedKill = true;
        await killGateway(gateway);
      }
      const exitAfterMs = exitAt === undefined ? null : round(exitAt - signalledAt, 0);
      const reports = await Promise.all(calls);
      const hangingResult = await Promise.race([hanging.closed, sleep(1000).then(() => undefined)]);
      hanging.abort();
      const callsClosedWith = {};
      for (const report of reports) {
        const key = report.closedBy === 'server' ? String(report.closeCode) : `client-${report.closeCode}`;
        callsClosedWith[key] = (callsClosedWith[key] ?? 0) + 1;
      }
      const overrunMs = exitAfterMs === null ? null : exitAfterMs - GRACE_MS;
      return {
        graceMs: GRACE_MS,
        calls: SIGTERM_CALLS,
        exitAfterMs,
        overrunMs,
        forcedKill,
        forcedKillAfterMs: forcedKill ? killAfterMs : null,
        exitCode: child.exitCode,
        callsClosedWith,
        callsWithShutdownError: reports.filter((r) => r.errors.some((e) => /shutting down/.test(e))).length,
        hangingRequest: hangingResult === undefined ? { status: null, afterMs: null, closedByGateway: false } : { status: hangingResult.status ?? null, afterMs: hangingResult.afterMs, closedByGateway: true },
        pass: overrunMs !== null && overrunMs < OVERRUN_LIMIT_MS,
      };
    } finally {
      await killGateway(gateway);
    }
  });
}

// ---- main ---------------------------------------------------------------------------------------------------------

function parseArgs(argv) {
  const arg = (name) => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const list = (value, allowed, what) => {
    if (value === undefined) return allowed;
    const items = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
    const bad = items.filter((item) => !allowed.includes(item));
    if (bad.length > 0) throw new Error(`unknown ${what}: ${bad.join(', ')} (${allowed.join(', ')})`);
    return items;
  };
  const number = (name) => (arg(name) === undefined ? undefined : Number(arg(name)));
  return {
    quick: argv.includes('--quick'),
    parts: list(arg('only'), PARTS, 'part'),
    kinds: list(arg('kinds'), ATTACK_KINDS, 'attack kind'),
    trickle: { count: number('trickle-count'), concurrency: number('trickle-concurrency'), holdMs: number('trickle-hold-ms') },
  };
}

export async function benchReliability(options) {
  const speech = readWavAs8k(fixturePath(options.quick ? 'short' : 'question'));
  const out = {
    method:
      'built gateway in its own process pinned to CPU 1 (fresh per run); hostile client in a worker thread of the bench process (CPU 0); ' +
      'normal call = testkit echoCall against the loopback provider; /health probed every 50 ms on fresh connections; RSS = VmRSS every 100 ms',
    tasksetAvailable: which('taskset') !== undefined,
    quick: options.quick,
    criteria: {
      attacks: `rssGrowthMB < ${RSS_LIMIT_MB} && health.worstMs < ${HEALTH_LIMIT_MS} && normalCall.complete (agent audio >= 0.9 x the speech span)`,
      trickle: 'no request still open at holdMs, none served (2xx), normal call complete',
      sigterm: `exitAfterMs - graceMs < ${OVERRUN_LIMIT_MS}`,
    },
    normalCallSpeech: options.quick ? 'short.wav' : 'question.wav',
  };
  if (options.parts.includes('attacks')) out.attacks = await attacksPart({ ...options, speech });
  if (options.parts.includes('trickle')) {
    log('trickle ...');
    out.trickle = await tricklePart({ ...options, speech });
    log(`trickle: ${out.trickle.pass ? 'pass' : 'FAIL'} ${JSON.stringify(out.trickle.report)}`);
  }
  if (options.parts.includes('sigterm')) {
    log('sigterm ...');
    out.sigterm = await sigtermPart({ ...options, speech });
    log(`sigterm: ${out.sigterm.pass ? 'pass' : 'FAIL'} exit after ${out.sigterm.exitAfterMs} ms (grace ${GRACE_MS})${out.sigterm.forcedKill ? ', SIGKILLed' : ''}`);
  }
  const verdicts = [...(out.attacks ?? []).map((a) => a.pass), ...(out.trickle ? [out.trickle.pass] : []), ...(out.sigterm ? [out.sigterm.pass] : [])];
  out.pass = verdicts.every(Boolean);
  return out;
}

if (!isMainThread) {
  await workerMain();
} else if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const onSignal = (signal) => {
    killAll();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('exit', killAll);
  if (which('taskset') !== undefined) setAffinity(process.pid, '0');
  try {
    const result = await benchReliability(parseArgs(process.argv.slice(2)));
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } catch (error) {
    killAll();
    process.stderr.write(`[bench] reliability: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  }
}
