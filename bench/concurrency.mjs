// Concurrent loopback calls one gateway process sustains in real time.
//
// The built gateway (`node apps/gateway/dist/cli.js serve`, loopback provider with a real Silero VAD per
// call, LOG_LEVEL=warn) runs pinned to CPU 1; this process is the load generator, pinned to CPU 0 (both
// with taskset when available). Each call is one WebSocket acting as AVR Core: `init`, then caller audio
// in real time, 20 ms frames, all calls driven by one shared drift-free timer (calls are spread over 4
// phases 5 ms apart so frames do not all arrive in one burst). The caller audio is a loop over the
// speech fixtures: utterance, then silence long enough for the loopback's reply to play out in full
// plus 1.5 s (no barge-in by design). Each call starts at a different point of the loop.
//
// Per step of N calls: ramp-up (staggered connects), settle, then a measured steady-state window.
// Outbound lateness: every call models AVR Core's playout buffer. A reply's first frame starts playout
// (a reply starts with the first agent frame after the caller's utterance ended); the buffer then
// consumes 20 ms per 20 ms. A frame arriving after the buffer ran dry is late by (arrival - time the
// buffer ran dry), and playout resumes with it (underrun); otherwise its lateness is 0 (on time).
// Gateway CPU: utime + stime from /proc/<pid>/stat over the window (all threads, incl. VAD inference).
// Memory: VmRSS from /proc/<pid>/status with no calls (before the step), at the end of the window, and
// after all calls of the step have ended and the gateway reports 0 active calls (+2 s).
//
// --provider=emulated runs the same load against bench/lib/emulated-gateway.mjs (the gateway's serve()
// path with a 24 kHz provider emulator instead of the loopback; no VAD model), to show the gateway's
// own cost on a Realtime-like path.
//
// Run: pnpm build && node bench/concurrency.mjs [--quick] [--provider=loopback|emulated] [--steps=10,50,100]
//      [--window=<s>] [--budget=<s>]

import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { cpus } from 'node:os';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { AVR_FRAME_BYTES, AVR_FRAME_MS, AVR_FRAME_SAMPLES, encodeAvrAudio } from '../packages/core/dist/index.js';
import { detectSpeechSegments, fixturePath, readWavAs8k } from '../packages/testkit/dist/index.js';
import { affinityOf, cpuPercentBetween, cpuTimes, procCpuMs, procRssKb, round, setAffinity, sleep, summarize, which } from './lib/util.mjs';
import { gatewayNodeFlags } from './lib/gateway-process.mjs';

const WebSocket = createRequire(new URL('../packages/testkit/package.json', import.meta.url))('ws');

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const GATEWAY_CLI = fileURLToPath(new URL('../apps/gateway/dist/cli.js', import.meta.url));
const EMULATED_GATEWAY = fileURLToPath(new URL('./lib/emulated-gateway.mjs', import.meta.url));
const FIXTURES = ['greeting', 'short', 'question'];
/** Silence after each utterance: its reply (speech + 2 x 200 ms VAD pad), ~0.6 s reply latency, then 1.5 s. */
const REPLY_PAD_MS = 400;
const REPLY_LATENCY_ALLOWANCE_MS = 600;
const QUIET_AFTER_REPLY_MS = 1500;
const PHASES = 4;
/** After the last call started its first utterance, before the window opens. */
const SETTLE_MARGIN_MS = 500;
const SLOT_MS = AVR_FRAME_MS / PHASES;
const LATENESS_LIMIT_MS = 20;
const ON_TIME_LIMIT = 0.99;
const AUDIO_PREFIX = Buffer.from('{"type":"audio","audio":"');
const AUDIO_SUFFIX = Buffer.from('"}');
const GATEWAY_CPU = '1';
const GENERATOR_CPU = '0';

// ---- caller audio -------------------------------------------------------------------------------

/** The caller loop as pre-encoded AVR audio messages, with the frames where an utterance ends. */
function buildCallerLoop() {
  const parts = [];
  const utterances = [];
  const blockStarts = [];
  let offset = 0;
  for (const name of FIXTURES) {
    blockStarts.push(Math.floor(offset / AVR_FRAME_SAMPLES));
    const samples = readWavAs8k(fixturePath(name));
    const segments = detectSpeechSegments(samples);
    if (segments.length === 0) throw new Error(`no speech found in fixture ${name}`);
    const startMs = segments[0].startMs;
    const endMs = segments[segments.length - 1].endMs;
    const speechMs = endMs - startMs;
    const silenceMs = speechMs + REPLY_PAD_MS + REPLY_LATENCY_ALLOWANCE_MS + QUIET_AFTER_REPLY_MS;
    const silence = new Int16Array(Math.round((silenceMs * 8000) / 1000));
    utterances.push({ fixture: name, speechStartMs: (offset * 1000) / 8000 + startMs, speechEndMs: (offset * 1000) / 8000 + endMs, speechMs });
    parts.push(samples, silence);
    offset += samples.length + silence.length;
  }
  const frameCount = Math.ceil(offset / AVR_FRAME_SAMPLES);
  const loop = new Int16Array(frameCount * AVR_FRAME_SAMPLES);
  let at = 0;
  for (const part of parts) {
    loop.set(part, at);
    at += part.length;
  }
  const messages = [];
  for (let f = 0; f < frameCount; f++) {
    messages.push(Buffer.from(encodeAvrAudio(loop.subarray(f * AVR_FRAME_SAMPLES, (f + 1) * AVR_FRAME_SAMPLES))));
  }
  // The frame holding the last voiced sample of each utterance: once sent, the utterance has ended.
  const speechEndFrame = new Uint8Array(frameCount);
  for (const u of utterances) speechEndFrame[Math.min(frameCount - 1, Math.floor(u.speechEndMs / AVR_FRAME_MS))] = 1;
  // The first frame of each fixture (its leading silence): a call starts sending speech only from one of
  // these, so every utterance it sends is whole and every reply it gets is a full one.
  const blockStartFrame = new Uint8Array(frameCount);
  for (const f of blockStarts) blockStartFrame[f] = 1;
  let longestBlockFrames = 0;
  for (let i = 0; i < blockStarts.length; i++) {
    const next = i + 1 < blockStarts.length ? blockStarts[i + 1] : frameCount + blockStarts[0];
    longestBlockFrames = Math.max(longestBlockFrames, next - blockStarts[i]);
  }
  return {
    messages,
    silence: Buffer.from(encodeAvrAudio(new Int16Array(AVR_FRAME_SAMPLES))),
    speechEndFrame,
    blockStartFrame,
    longestBlockMs: longestBlockFrames * AVR_FRAME_MS,
    frameCount,
    loopMs: frameCount * AVR_FRAME_MS,
    utterances: utterances.map((u) => ({ ...u, speechStartMs: round(u.speechStartMs, 1), speechEndMs: round(u.speechEndMs, 1) })),
    speechMsPerLoop: utterances.reduce((sum, u) => sum + u.speechMs, 0),
  };
}

// ---- one simulated AVR Core call ---------------------------------------------------------------

class BenchCall {
  constructor(index, loop, phaseFrame, stats) {
    this.index = index;
    this.loop = loop;
    this.position = phaseFrame;
    this.stats = stats;
    this.ws = undefined;
    this.open = false;
    this.closed = false;
    this.connectError = undefined;
    this.closing = false;
    this.pendingReply = false;
    this.speaking = false;
    this.speechEndAt = 0;
    this.playing = false;
    this.playEnd = 0;
    this.windowAgentBytes = 0;
    this.windowOnTimeBytes = 0;
    this.windowReplies = 0;
    this.totalAgentBytes = 0;
    this.totalReplies = 0;
    this.closedPromise = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  connect(url, uuid) {
    return new Promise((resolve) => {
      const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: 10_000 });
      this.ws = ws;
      ws.on('open', () => {
        this.open = true;
        ws.send(JSON.stringify({ type: 'init', uuid }));
        resolve();
      });
      ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
      ws.on('error', (error) => {
        if (!this.open) this.connectError = error.message;
        else this.stats.current?.socketErrors.push(error.message);
      });
      ws.on('close', (code) => {
        const wasOpen = this.open;
        this.open = false;
        this.closed = true;
        if (!wasOpen) this.connectError ??= `closed during handshake (${code})`;
        else if (!this.closing && this.stats.current !== undefined) this.stats.current.serverCloses++;
        this.resolveClosed();
        resolve();
      });
    });
  }

  /** One 20 ms caller frame (called by the shared scheduler). */
  tick(now) {
    if (!this.open) return;
    const position = this.position;
    // Silence until the loop reaches the start of an utterance: a call never begins mid-utterance.
    if (!this.speaking && this.loop.blockStartFrame[position] === 1) this.speaking = true;
    this.ws.send(this.speaking ? this.loop.messages[position] : this.loop.silence, { binary: false });
    if (this.speaking && this.loop.speechEndFrame[position] === 1) {
      this.pendingReply = true;
      this.speechEndAt = now;
    }
    this.position = position + 1 === this.loop.frameCount ? 0 : position + 1;
  }

  onMessage(data, isBinary) {
    const t = performance.now();
    const w = this.stats.current;
    const inWindow = w !== undefined && t >= w.start && t < w.end;
    const isAudio =
      !isBinary &&
      data.length > AUDIO_PREFIX.length + AUDIO_SUFFIX.length &&
      data.compare(AUDIO_PREFIX, 0, AUDIO_PREFIX.length, 0, AUDIO_PREFIX.length) === 0 &&
      data.compare(AUDIO_SUFFIX, 0, 2, data.length - 2, data.length) === 0;
    if (!isAudio) {
      this.onControl(data, t, inWindow);
      return;
    }
    // Payload bytes from the base64 length (no decode needed to time and count the frame).
    const b64 = data.length - AUDIO_PREFIX.length - AUDIO_SUFFIX.length;
    const padding = data[data.length - 3] === 0x3d ? (data[data.length - 4] === 0x3d ? 2 : 1) : 0;
    const bytes = (b64 / 4) * 3 - padding;
    const frameMs = bytes / 16;
    this.totalAgentBytes += bytes;
    let lateness = 0;
    let replyStart = false;
    if (this.pendingReply || !this.playing) {
      // First frame of a reply: playout starts now.
      replyStart = true;
      this.playing = true;
      this.playEnd = t + frameMs;
      if (this.pendingReply) {
        this.totalReplies++;
        if (inWindow) {
          this.windowReplies++;
          w.replyLatencies.push(t - this.speechEndAt);
        }
      }
      this.pendingReply = false;
    } else if (t <= this.playEnd) {
      this.playEnd += frameMs;
    } else {
      lateness = t - this.playEnd;
      this.playEnd = t + frameMs;
    }
    if (!inWindow) return;
    this.windowAgentBytes += bytes;
    if (lateness === 0) this.windowOnTimeBytes += bytes;
    w.frames++;
    w.agentBytes += bytes;
    if (bytes !== AVR_FRAME_BYTES) w.irregularFrames++;
    if (replyStart) w.replyStartFrames++;
    if (lateness > 0) w.lateness.push(lateness);
  }

  onControl(data, t, inWindow) {
    let message;
    try {
      message = JSON.parse(data.toString('utf8'));
    } catch {
      if (inWindow) this.stats.current.protocolProblems++;
      return;
    }
    switch (message?.type) {
      case 'interruption':
        // AVR Core drops its queue: playout stops.
        this.playing = false;
        if (inWindow) this.stats.current.interruptions++;
        return;
      case 'error':
        if (this.stats.current !== undefined) {
          this.stats.current.gatewayErrors++;
          if (this.stats.current.errorSamples.length < 5) this.stats.current.errorSamples.push(String(message.message));
        }
        return;
      case 'transcript':
        return;
      default:
        if (inWindow) this.stats.current.protocolProblems++;
    }
  }

  close() {
    this.closing = true;
    if (this.ws !== undefined && (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING)) {
      this.ws.close(1000, 'bench step over');
    }
  }

  terminate() {
    this.closing = true;
    this.ws?.terminate();
  }
}

// ---- the shared real-time clock ------------------------------------------------------------------

/**
 * One timer for every call: slot k is due at t0 + k * 5 ms and sends the next frame of the calls in phase
 * k mod 4, so each call sends exactly one frame every 20 ms. Drift-free: after a late wake-up every due slot
 * runs (catch-up), like AVR Core's own clock would.
 */
class Scheduler {
  constructor() {
    this.phases = Array.from({ length: PHASES }, () => new Set());
    this.t0 = performance.now();
    this.slot = 0;
    this.timer = undefined;
    this.lagSink = undefined;
    this.stopped = false;
    this.schedule();
  }

  add(call, phase) {
    this.phases[phase % PHASES].add(call);
  }

  remove(call) {
    for (const set of this.phases) set.delete(call);
  }

  schedule() {
    if (this.stopped) return;
    const due = this.t0 + this.slot * SLOT_MS;
    this.timer = setTimeout(this.run, Math.max(0, due - performance.now()));
  }

  run = () => {
    const now = performance.now();
    while (this.t0 + this.slot * SLOT_MS <= now) {
      const due = this.t0 + this.slot * SLOT_MS;
      this.lagSink?.push(now - due);
      for (const call of this.phases[this.slot % PHASES]) call.tick(now);
      this.slot++;
    }
    this.schedule();
  };

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}

// ---- the gateway process -------------------------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

class GatewayProcess {
  constructor(pin, launcher) {
    this.pin = pin;
    this.launcher = launcher;
    this.child = undefined;
    this.exited = undefined;
    this.logTail = [];
    this.warnings = 0;
    this.errors = 0;
    this.exitInfo = undefined;
  }

  async start() {
    this.port = await freePort();
    this.inspectPort = await freePort();
    const env = {
      ...process.env,
      PORT: String(this.port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      LOG_PRETTY: 'false',
      MAX_CALLS: '20000',
      SHUTDOWN_GRACE_MS: '2000',
    };
    delete env.STS_PROVIDER;
    delete env.STSGATE_AUTH_TOKEN;
    // Diagnostics only, e.g. BENCH_GATEWAY_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof".
    // The inspector (no session attached while measuring) lets the bench force a full GC after calls
    // end, to tell memory still in use from garbage V8 has not collected yet (an idle process runs no GC).
    // BENCH_NO_INSPECT=1 leaves it out (no forced GC then: those fields are null).
    this.inspect = process.env.BENCH_NO_INSPECT !== '1';
    const nodeArgs = [
      ...gatewayNodeFlags(),
      ...(this.inspect ? [`--inspect=127.0.0.1:${this.inspectPort}`] : []),
      ...(process.env.BENCH_GATEWAY_NODE_ARGS ?? '').split(' ').filter((arg) => arg !== ''),
    ];
    const [command, args] = this.pin
      ? ['taskset', ['-c', GATEWAY_CPU, process.execPath, ...nodeArgs, ...this.launcher]]
      : [process.execPath, [...nodeArgs, ...this.launcher]];
    const child = spawn(command, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        resolve();
      });
    });
    const onLine = (chunk) => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line.trim() === '' || /^(Debugger (listening|attached|ending)|For help, see)/.test(line)) continue;
        if (line.includes('"level":40')) this.warnings++;
        if (line.includes('"level":50') || line.includes('"level":60')) this.errors++;
        this.logTail.push(line.length > 400 ? `${line.slice(0, 400)}...` : line);
        if (this.logTail.length > 8) this.logTail.shift();
      }
    };
    child.stdout.on('data', onLine);
    child.stderr.on('data', onLine);
    await new Promise((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    this.pid = child.pid;
    const deadline = performance.now() + 30_000;
    for (;;) {
      if (this.exitInfo !== undefined) throw new Error(`gateway exited during start-up (${JSON.stringify(this.exitInfo)}): ${this.logTail.join('\n')}`);
      try {
        const response = await fetch(`http://127.0.0.1:${this.port}/health`);
        if (response.ok) break;
      } catch {
        // not listening yet
      }
      if (performance.now() > deadline) throw new Error(`gateway did not become healthy within 30 s: ${this.logTail.join('\n')}`);
      await sleep(100);
    }
  }

  get url() {
    return `ws://127.0.0.1:${this.port}/`;
  }

  cpuMs() {
    return procCpuMs(this.pid);
  }

  rssKb() {
    return procRssKb(this.pid);
  }

  /** A full, synchronous GC in the gateway (HeapProfiler.collectGarbage over the inspector). */
  async collectGarbage() {
    if (!this.inspect) return false;
    const targets = await (await fetch(`http://127.0.0.1:${this.inspectPort}/json/list`)).json();
    const url = targets[0]?.webSocketDebuggerUrl;
    if (url === undefined) throw new Error('gateway inspector has no target');
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      const timer = setTimeout(() => {
        ws.terminate();
        reject(new Error('forced GC timed out'));
      }, 15_000);
      ws.on('open', () => ws.send(JSON.stringify({ id: 1, method: 'HeapProfiler.collectGarbage' })));
      ws.on('message', (data) => {
        if (JSON.parse(data.toString('utf8')).id !== 1) return;
        clearTimeout(timer);
        ws.close();
        resolve(true);
      });
      ws.on('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
  }

  async metricsText() {
    const response = await fetch(`http://127.0.0.1:${this.port}/metrics`);
    return response.text();
  }

  async metrics() {
    return parseMetrics(await this.metricsText());
  }

  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  async stop(graceMs = 5000) {
    const child = this.child;
    if (child === undefined || this.exitInfo !== undefined) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  killNow() {
    if (this.child !== undefined && this.exitInfo === undefined) this.child.kill('SIGKILL');
  }
}

/** Prometheus text -> { 'name{labels}': value }, histogram buckets left out. */
export function parseMetrics(text) {
  const values = {};
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    const key = line.slice(0, space);
    if (key.includes('_bucket{') || key.endsWith('_bucket')) continue;
    values[key] = Number(line.slice(space + 1));
  }
  return values;
}

// ---- one step ------------------------------------------------------------------------------------

function newWindowStats() {
  return {
    start: Number.POSITIVE_INFINITY,
    end: Number.POSITIVE_INFINITY,
    frames: 0,
    agentBytes: 0,
    lateness: [],
    replyLatencies: [],
    replyStartFrames: 0,
    irregularFrames: 0,
    interruptions: 0,
    gatewayErrors: 0,
    errorSamples: [],
    protocolProblems: 0,
    socketErrors: [],
    serverCloses: 0,
    schedulerLag: [],
  };
}

const MEMORY_METRICS = {
  heapUsedMB: 'stsgate_nodejs_heap_size_used_bytes',
  heapTotalMB: 'stsgate_nodejs_heap_size_total_bytes',
  externalMB: 'stsgate_nodejs_external_memory_bytes',
};

function memoryFrom(metrics) {
  return Object.fromEntries(Object.entries(MEMORY_METRICS).map(([name, key]) => [name, mb(metrics[key])]));
}

/** Gateway CPU with no calls over `ms` (a per-call timer left behind would show here). */
async function idleCpu(gateway, ms) {
  const before = gateway.cpuMs();
  const start = performance.now();
  await sleep(ms);
  return round(((gateway.cpuMs() - before) / (performance.now() - start)) * 100, 2);
}

/** More than this much CPU used by other processes on either core during the window disturbs a step. */
const DISTURBANCE_PERCENT = 15;
/** A failed step that was disturbed is run up to this many times in all. */
const MAX_ATTEMPTS = 3;
const GENERATOR_CPU_LIMIT = 80;
const GENERATOR_LAG_LIMIT_MS = 10;

function isDisturbed(step) {
  const cores = step.machineCpuPercent;
  if (cores === undefined) return false;
  const other = [cores[`cpu${GATEWAY_CPU}`]?.otherThanGateway, cores[`cpu${GENERATOR_CPU}`]?.otherThanGenerator];
  return other.some((v) => typeof v === 'number' && v > DISTURBANCE_PERCENT);
}

/** Hang up every call, then wait (up to 10 s) until the gateway reports no active call. */
async function tearDown(calls, scheduler, gateway) {
  for (const call of calls) {
    scheduler.remove(call);
    call.close();
  }
  const closed = await Promise.race([Promise.all(calls.map((call) => call.closedPromise)).then(() => true), sleep(5000).then(() => false)]);
  if (!closed) for (const call of calls) if (!call.closed) call.terminate();
  let active = Number.NaN;
  for (let i = 0; i < 100; i++) {
    active = (await gateway.metrics())['stsgate_active_calls'];
    if (active === 0) break;
    await sleep(100);
  }
  return active;
}

async function runStep(n, ctx) {
  const { gateway, loop, scheduler, settings, reference } = ctx;
  const stats = { current: newWindowStats() };
  const w = stats.current;
  const calls = [];
  const rssBeforeKb = gateway.rssKb();
  const metricsBefore = await gateway.metrics();
  const stepStart = performance.now();
  try {
    // Ramp-up: staggered connects; each call joins the shared clock as soon as it is open.
    const spacingMs = Math.min(20, settings.rampMs / n);
    const connects = [];
    for (let i = 0; i < n; i++) {
      const call = new BenchCall(i, loop, Math.floor((i * loop.frameCount) / n), stats);
      calls.push(call);
      connects.push(
        call.connect(gateway.url + `?from=bench&to=step${n}&uniqueid=${i}`, `bench-${n}-${i}`).then(() => {
          if (call.open) scheduler.add(call, i);
        }),
      );
      if (spacingMs >= 1) await sleep(spacingMs);
    }
    await Promise.all(connects);
    const failed = calls.filter((call) => call.connectError !== undefined);
    if (failed.length > 0) {
      const active = await tearDown(calls, scheduler, gateway);
      await sleep(settings.afterMs);
      return {
        calls: n,
        pass: false,
        failure: `${failed.length} of ${n} calls could not connect: ${failed[0].connectError}`,
        gateway: { activeCallsAfterClose: active, rssAfterCallsEndedMB: round(gateway.rssKb() / 1024, 1) },
      };
    }
    // Settle: every call has started its first whole utterance (so the window holds full replies only,
    // in their periodic steady state), and at least settleMs have passed.
    const settleStart = performance.now();
    await sleep(settings.settleMs);
    while (calls.some((call) => call.open && !call.speaking) && performance.now() - settleStart < loop.loopMs + 5000) await sleep(50);
    await sleep(SETTLE_MARGIN_MS);

    // Steady-state window.
    await gateway.metrics(); // resets the gateway's event-loop delay histogram
    const ownBefore = process.cpuUsage();
    const cpuBefore = gateway.cpuMs();
    const coresBefore = cpuTimes();
    const wallStart = performance.now();
    w.start = wallStart;
    w.end = wallStart + settings.windowMs;
    scheduler.lagSink = w.schedulerLag;
    ctx.gcSink.current = [];
    for (const call of calls) {
      call.windowAgentBytes = 0;
      call.windowOnTimeBytes = 0;
      call.windowReplies = 0;
    }
    await sleep(settings.windowMs);
    const cpuAfter = gateway.cpuMs();
    const coresAfter = cpuTimes();
    const wallMs = performance.now() - wallStart;
    const own = process.cpuUsage(ownBefore);
    scheduler.lagSink = undefined;
    const gcPauses = ctx.gcSink.current;
    ctx.gcSink.current = undefined;
    const rssLoadKb = gateway.rssKb();
    const metricsLoad = await gateway.metrics();
    const openAtEnd = calls.filter((call) => call.open).length;

    // Tear down and watch memory come back.
    const active = await tearDown(calls, scheduler, gateway);
    await sleep(settings.afterMs);
    const rssAfterKb = gateway.rssKb();
    const metricsAfter = await gateway.metrics();
    const collected = await gateway.collectGarbage();
    await sleep(500);
    const rssAfterGcKb = collected ? gateway.rssKb() : Number.NaN;
    const metricsAfterGc = collected ? await gateway.metrics() : {};

    // Results.
    const windowSeconds = wallMs / 1000;
    const cpuMs = cpuAfter - cpuBefore;
    const latenessAll = new Float64Array(w.frames);
    latenessAll.set(w.lateness);
    const lateness = summarize(latenessAll);
    const onTime = w.frames === 0 ? 0 : (w.frames - w.lateness.length) / w.frames;
    const agentSecondsPerCall = calls.map((call) => call.windowAgentBytes / 16000);
    const onTimeSeconds = calls.reduce((sum, call) => sum + call.windowOnTimeBytes / 16000, 0);
    const repliesPerCall = calls.map((call) => call.windowReplies);
    const callsWithoutAgentAudio = agentSecondsPerCall.filter((s) => s === 0).length;
    const schedulerLag = summarize(w.schedulerLag);
    const ownCpuPercent = ((own.user + own.system) / 1000 / wallMs) * 100;
    const agentPerCallSecond = w.agentBytes / 16000 / (n * windowSeconds);
    // Agent audio that real time allows: the per-call amount of the reference (lightest) step. With a
    // window of exactly one caller loop every call should receive the same amount whatever its phase.
    const expectedPerCall = reference?.agentSecondsPerCall;
    const delivered = expectedPerCall === undefined ? undefined : agentSecondsPerCall.reduce((a, b) => a + b, 0) / (n * expectedPerCall);
    const deliveredOnTime = expectedPerCall === undefined ? undefined : Math.min(1, onTimeSeconds / (n * expectedPerCall));
    const worstCallDelivered = expectedPerCall === undefined ? undefined : Math.min(...agentSecondsPerCall) / expectedPerCall;
    const rssBaselineKb = ctx.baselineRssKb ?? rssBeforeKb;
    const step = {
      calls: n,
      windowSeconds: round(windowSeconds, 2),
      latenessMs: { p50: lateness.p50, p99: lateness.p99, max: lateness.max, mean: lateness.mean },
      agentFrames: w.frames,
      lateFrames: w.lateness.length,
      onTimePercentOfReceived: round(onTime * 100, 3),
      agentAudioDeliveredPercent: delivered === undefined ? null : round(delivered * 100, 2),
      agentAudioDeliveredOnTimePercent: deliveredOnTime === undefined ? null : round(deliveredOnTime * 100, 2),
      worstCallDeliveredPercent: worstCallDelivered === undefined ? null : round(worstCallDelivered * 100, 1),
      agentSecondsPerCall: summarize(agentSecondsPerCall, 2),
      agentSecondsPerCallSecond: round(agentPerCallSecond, 4),
      callsWithoutAgentAudio,
      repliesPerCall: summarize(repliesPerCall, 2),
      replyLatencyMs: summarize(w.replyLatencies, 1),
      interruptions: w.interruptions,
      irregularFrames: w.irregularFrames,
      gatewayErrorMessages: w.gatewayErrors,
      ...(w.errorSamples.length > 0 ? { gatewayErrorSamples: w.errorSamples } : {}),
      protocolProblems: w.protocolProblems,
      socketErrors: w.socketErrors.length,
      serverClosedCalls: w.serverCloses,
      callsOpenAtWindowEnd: openAtEnd,
      gateway: {
        cpuPercentOfOneCore: round((cpuMs / wallMs) * 100, 1),
        cpuMsPerCallSecond: round(cpuMs / (n * windowSeconds), 3),
        eventLoopDelayP99Ms: msOf(metricsLoad['stsgate_nodejs_eventloop_lag_p99_seconds']),
        eventLoopDelayMaxMs: msOf(metricsLoad['stsgate_nodejs_eventloop_lag_max_seconds']),
        rssBeforeMB: round(rssBeforeKb / 1024, 1),
        rssAtLoadMB: round(rssLoadKb / 1024, 1),
        rssAfterCallsEndedMB: round(rssAfterKb / 1024, 1),
        rssPerCallKB: round((rssLoadKb - rssBeforeKb) / n, 1),
        rssGrowthPerCallKB: round((rssLoadKb - rssBaselineKb) / n, 1),
        memoryBefore: memoryFrom(metricsBefore),
        memoryAtLoad: memoryFrom(metricsLoad),
        memoryAfterCallsEnded: memoryFrom(metricsAfter),
        rssAfterForcedGcMB: Number.isNaN(rssAfterGcKb) ? null : round(rssAfterGcKb / 1024, 1),
        memoryAfterForcedGc: memoryFrom(metricsAfterGc),
        activeCallsAfterClose: active,
        framesInDuringStep: metricsAfter['stsgate_frames_in_total'] - metricsBefore['stsgate_frames_in_total'],
        framesOutDuringStep: metricsAfter['stsgate_frames_out_total'] - metricsBefore['stsgate_frames_out_total'],
      },
      loadGenerator: {
        cpuPercentOfOneCore: round(ownCpuPercent, 1),
        clockLagMs: { p50: schedulerLag.p50, p99: schedulerLag.p99, max: schedulerLag.max },
        gcPauses: gcPauses.length,
        gcPauseMaxMs: gcPauses.length === 0 ? 0 : round(Math.max(...gcPauses), 1),
        gcPauseTotalMs: round(gcPauses.reduce((a, b) => a + b, 0), 1),
      },
      stepWallSeconds: round((performance.now() - stepStart) / 1000, 1),
    };
    // Whole-machine view over the window: CPU busy per core and what is left after this bench's two
    // processes (other work on the machine disturbs the measurement).
    const cores = cpuPercentBetween(coresBefore, coresAfter);
    if (ctx.pinned && cores[`cpu${GATEWAY_CPU}`] !== undefined && cores[`cpu${GENERATOR_CPU}`] !== undefined) {
      cores[`cpu${GATEWAY_CPU}`].otherThanGateway = round(cores[`cpu${GATEWAY_CPU}`].busy - step.gateway.cpuPercentOfOneCore, 1);
      cores[`cpu${GENERATOR_CPU}`].otherThanGenerator = round(cores[`cpu${GENERATOR_CPU}`].busy - ownCpuPercent, 1);
    }
    step.machineCpuPercent = cores;
    const problems = [];
    if (!(lateness.p99 <= LATENESS_LIMIT_MS)) problems.push(`p99 lateness ${lateness.p99} ms > ${LATENESS_LIMIT_MS} ms`);
    if (!(onTime >= ON_TIME_LIMIT)) problems.push(`${round(onTime * 100, 2)}% of received agent frames on time < ${ON_TIME_LIMIT * 100}%`);
    if (settings.gateDelivered && deliveredOnTime !== undefined && !(deliveredOnTime >= ON_TIME_LIMIT)) {
      problems.push(`agent audio delivered on time ${round(deliveredOnTime * 100, 2)}% < ${ON_TIME_LIMIT * 100}% of what real time allows`);
    }
    if (callsWithoutAgentAudio > 0) problems.push(`${callsWithoutAgentAudio} calls received no agent audio in the window`);
    if (openAtEnd < n) problems.push(`${n - openAtEnd} calls were closed before the end of the window`);
    // The generator must keep real time itself. A busy generator is a hard limit of this set-up; a
    // lagging clock (e.g. after a burst the overloaded gateway released at once, or other work on CPU 0)
    // delays its timestamps, so a narrow failure next to it is not conclusive (the step is repeated).
    step.loadGeneratorLimited = ownCpuPercent > GENERATOR_CPU_LIMIT;
    step.loadGeneratorLagged = schedulerLag.p99 > GENERATOR_LAG_LIMIT_MS;
    if (step.loadGeneratorLimited) problems.push(`the load generator used ${round(ownCpuPercent, 1)}% of its core (results not trustworthy)`);
    step.pass = problems.length === 0;
    if (problems.length > 0) step.failure = problems.join('; ');
    // A narrow failure: within reach of the generator's own clock lag / noise.
    step.marginal = !step.pass && lateness.p99 <= 100 && (deliveredOnTime === undefined || deliveredOnTime >= 0.95) && onTime >= 0.95;
    return step;
  } finally {
    for (const call of calls) {
      scheduler.remove(call);
      if (!call.closed) call.terminate();
    }
  }
}

function mb(bytes) {
  return typeof bytes === 'number' && Number.isFinite(bytes) ? round(bytes / 1048576, 1) : null;
}

function msOf(seconds) {
  return typeof seconds === 'number' && Number.isFinite(seconds) ? round(seconds * 1000, 1) : null;
}

// ---- the whole part ------------------------------------------------------------------------------

const PROVIDERS = {
  loopback: {
    launcher: [GATEWAY_CLI, 'serve'],
    description: 'node apps/gateway/dist/cli.js serve, STS_PROVIDER unset: loopback provider (8 kHz, Silero VAD per call, no resampling)',
    steps: [10, 50, 100, 150, 200, 250, 300, 400, 500, 600, 800, 1000],
  },
  emulated: {
    launcher: [EMULATED_GATEWAY],
    description:
      'node bench/lib/emulated-gateway.mjs: the gateway serve() path with a bench-only 24 kHz provider emulator ' +
      '(energy turn detection, replies streamed in real time as 100 ms deltas; 8k->24k and 24k->8k resampling in the gateway)',
    steps: [10, 50, 100, 200, 300, 400, 500, 600, 800, 1000, 1200, 1500],
  },
};

/**
 * @param {{ quick?: boolean, provider?: 'loopback' | 'emulated', steps?: number[], windowSeconds?: number,
 *           settleSeconds?: number, budgetSeconds?: number, log?: (line: string) => void }} [options]
 */
export async function benchConcurrency(options = {}) {
  const quick = options.quick ?? false;
  const providerName = options.provider ?? 'loopback';
  const provider = PROVIDERS[providerName];
  if (provider === undefined) throw new Error(`unknown provider "${providerName}" (loopback, emulated)`);
  const log = options.log ?? ((line) => process.stderr.write(`[concurrency:${providerName}] ${line}\n`));
  const loop = buildCallerLoop();
  // A window of exactly one caller loop: every call then receives the same agent audio whatever its phase.
  const windowMs = options.windowSeconds !== undefined ? options.windowSeconds * 1000 : quick ? 8000 : loop.loopMs;
  const settings = {
    steps: options.steps ?? (quick ? [10, 40] : provider.steps),
    windowMs,
    gateDelivered: Math.abs(windowMs - loop.loopMs) < 1,
    settleMs: (options.settleSeconds ?? 2) * 1000,
    rampMs: quick ? 1000 : 2500,
    afterMs: 1500,
    budgetMs: (options.budgetSeconds ?? (quick ? 60 : 230)) * 1000,
  };
  const started = performance.now();
  const pin = which('taskset') !== undefined && cpus().length >= 2;
  const originalAffinity = pin ? affinityOf(process.pid) : undefined;
  const pinnedGenerator = pin && setAffinity(process.pid, GENERATOR_CPU);
  const gateway = new GatewayProcess(pin, provider.launcher);
  let scheduler;
  // The generator's own GC pauses (they delay its clock and its arrival timestamps).
  const gcSink = { current: undefined };
  const gcObserver = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) gcSink.current?.push(entry.duration);
  });
  gcObserver.observe({ entryTypes: ['gc'] });
  const onSignal = (signal) => {
    gateway.killNow();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  const onExit = () => gateway.killNow();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.on('exit', onExit);
  try {
    await gateway.start();
    log(`gateway pid ${gateway.pid} on ${gateway.url} (pinned: ${pin ? `CPU ${GATEWAY_CPU}` : 'no'})`);
    const rssStartKb = gateway.rssKb();
    scheduler = new Scheduler();
    const ctx = { gateway, loop, scheduler, settings, gcSink, pinned: pin, reference: undefined, baselineRssKb: undefined };

    // Warm-up: load models, JIT the paths (only its audio check is reported).
    const warm = await runStep(4, { ...ctx, settings: { ...settings, windowMs: quick ? 3000 : 6000, settleMs: 500, afterMs: 1000 } });
    if (!(warm.agentSecondsPerCall?.max > 0)) {
      throw new Error(`warm-up calls received no agent audio: the bench would measure nothing (${JSON.stringify(warm)})`);
    }
    log(`warm-up: ${warm.agentFrames} agent frames, reply latency p50 ${warm.replyLatencyMs?.p50} ms`);
    await gateway.collectGarbage();
    await sleep(500);
    ctx.baselineRssKb = gateway.rssKb();
    const memoryBaseline = memoryFrom(await gateway.metrics());
    const idleCpuAfterWarmUp = await idleCpu(gateway, 2000);

    const steps = [];
    let stoppedBy;
    const ladder = [...settings.steps];
    let refined = false;
    const attempts = new Map();
    for (let i = 0; i < ladder.length; i++) {
      const n = ladder[i];
      const estimateMs = settings.rampMs + Math.max(settings.settleMs, loop.longestBlockMs) + settings.windowMs + settings.afterMs + 3000;
      if (performance.now() - started + estimateMs > settings.budgetMs) {
        const last = steps.at(-1);
        if (last?.superseded === true && last.calls === n) {
          // No time to repeat it: its result stands (flagged inconclusive).
          last.superseded = false;
          last.inconclusive = true;
        } else {
          stoppedBy = `time budget (${settings.budgetMs / 1000} s) before ${n} calls`;
        }
        break;
      }
      log(`step: ${n} calls ...`);
      const step = await runStep(n, ctx);
      step.disturbed = isDisturbed(step);
      step.attempt = (attempts.get(n) ?? 0) + 1;
      attempts.set(n, step.attempt);
      steps.push(step);
      if (ctx.reference === undefined && step.pass) {
        // The lightest step defines what real time allows per call (it passed every other check).
        ctx.reference = { calls: n, agentSecondsPerCall: step.agentSecondsPerCall.mean };
        step.agentAudioDeliveredPercent = 100;
        step.agentAudioDeliveredOnTimePercent = round(Math.min(100, step.onTimePercentOfReceived), 2);
        step.worstCallDeliveredPercent = round((100 * step.agentSecondsPerCall.min) / step.agentSecondsPerCall.mean, 1);
        step.isReference = true;
      }
      log(
        `  ${n} calls: ${step.pass ? 'PASS' : 'FAIL'} lateness p99 ${step.latenessMs?.p99} ms (max ${step.latenessMs?.max}), ` +
          `delivered on time ${step.agentAudioDeliveredOnTimePercent}%, reply latency p99 ${step.replyLatencyMs?.p99} ms, ` +
          `gateway CPU ${step.gateway?.cpuPercentOfOneCore}% (${step.gateway?.cpuMsPerCallSecond} ms/call-s), ` +
          `RSS ${step.gateway?.rssAtLoadMB} MB, agent ${step.agentSecondsPerCall?.mean} s/call` +
          (step.failure ? ` -- ${step.failure}` : ''),
      );
      if (!step.pass) {
        // Other work on the machine, or a lagging generator next to a narrow failure, can fail a step
        // that would pass: repeat it (up to MAX_ATTEMPTS runs in all).
        const why = step.disturbed ? 'other load on the machine' : step.loadGeneratorLagged && step.marginal ? 'generator clock lag next to a narrow failure' : undefined;
        if (why !== undefined && !step.loadGeneratorLimited && step.attempt < MAX_ATTEMPTS) {
          step.superseded = true;
          log(`  ${n} calls: disturbed (${why}); repeating the step`);
          i--;
          continue;
        }
        if (why !== undefined) step.inconclusive = true;
        if (step.loadGeneratorLimited) {
          stoppedBy = `load generator limited at ${n} calls`;
          break;
        }
        if (!steps.some((s) => s.pass)) {
          stoppedBy = `the lightest step failed: ${step.failure}`;
          break;
        }
        const lastPass = steps.filter((s) => s.pass).at(-1)?.calls ?? 0;
        // One refinement between the last passing step and this one when the gap is wide.
        if (!refined && lastPass > 0 && n - lastPass > Math.max(20, lastPass * 0.25)) {
          refined = true;
          const mid = Math.round((lastPass + n) / 2 / 10) * 10;
          if (mid > lastPass && mid < n) {
            ladder.splice(i + 1, ladder.length, mid);
            continue;
          }
        }
        break;
      }
      if (refined) break; // the refinement step was the last one
    }
    const final = steps.filter((s) => !s.superseded);
    const passing = final.filter((s) => s.pass).map((s) => s.calls);
    const failing = final.filter((s) => !s.pass);
    const firstFail = failing.length > 0 ? Math.min(...failing.map((s) => s.calls)) : Number.POSITIVE_INFINITY;
    const maxSustained = passing.filter((n) => n < firstFail).reduce((a, b) => Math.max(a, b), 0);
    if (stoppedBy === undefined) {
      const limiting = failing.find((s) => s.calls === firstFail);
      stoppedBy = limiting === undefined ? 'all steps passed' : `limit reached at ${limiting.calls} calls: ${limiting.failure}`;
    }

    await sleep(1000);
    const idleCpuAtEnd = await idleCpu(gateway, 2000);
    const rssEndKb = gateway.rssKb();
    const collectedAtEnd = await gateway.collectGarbage();
    await sleep(500);
    const rssEndGcKb = collectedAtEnd ? gateway.rssKb() : Number.NaN;
    const memoryEndGc = memoryFrom(collectedAtEnd ? await gateway.metrics() : {});
    const metricsText = await gateway.metricsText();
    const finalMetrics = parseMetrics(metricsText);
    const selected = Object.fromEntries(
      Object.entries(finalMetrics).filter(([key]) =>
        /^stsgate_(active_calls|calls_total|frames_|errors_total|interruptions|early_audio|provider_connect_seconds_(sum|count)|process_resident|process_cpu_seconds|nodejs_heap_size_(used|total)|nodejs_external|nodejs_eventloop_lag_(p99|max)|nodejs_gc_duration_seconds_(sum|count))/.test(key),
      ),
    );

    return {
      provider: providerName,
      method: {
        gateway: `${provider.description}, LOG_LEVEL=warn, node ${gatewayNodeFlags().join(' ') || '(default GC)'}, ${pin ? `taskset -c ${GATEWAY_CPU}` : 'not pinned'}`,
        loadGenerator: `this process${pinnedGenerator ? ` (taskset -c ${GENERATOR_CPU})` : ' (not pinned)'}, ws client, one shared drift-free clock, ${PHASES} phases ${SLOT_MS} ms apart`,
        callerAudio: `loop of ${FIXTURES.join(', ')} (${round(loop.loopMs / 1000, 2)} s, ${round(loop.speechMsPerLoop / 1000, 2)} s of speech): each utterance followed by its expected reply time + ${QUIET_AFTER_REPLY_MS / 1000} s of silence; call i of N starts at loop frame floor(i*L/N)`,
        window: settings.gateDelivered ? 'exactly one caller loop per step' : `${settings.windowMs / 1000} s (not a whole loop: delivered % reported, not gated)`,
        lateness:
          'per call, a playout buffer starts at the first agent frame after each caller utterance end and consumes 20 ms per 20 ms; ' +
          'a frame arriving after the buffer ran dry is late by that gap (playout resumes with it); otherwise 0',
        delivered:
          'agent audio received (on time) in the window / (calls x agent seconds per call of the reference step, the lightest passing one)',
        pass: `p99 lateness <= ${LATENESS_LIMIT_MS} ms, >= ${ON_TIME_LIMIT * 100}% of received frames on time, >= ${ON_TIME_LIMIT * 100}% of the agent audio real time allows delivered on time${settings.gateDelivered ? '' : ' (not gated in this run)'}, every call received agent audio, no call dropped, generator kept real time`,
        cpu: 'gateway utime+stime from /proc/<pid>/stat over the window (all threads); ms per call-second = CPU ms / (calls x window s)',
        memory:
          'VmRSS of the gateway: before the step (no calls), at the end of the window, after every call ended + 1.5 s; ' +
          'rssPerCallKB = (at load - before step) / calls; rssGrowthPerCallKB = (at load - after warm-up, no calls) / calls',
        settings: { ...settings, steps: ladder },
      },
      loop: { seconds: round(loop.loopMs / 1000, 2), utterances: loop.utterances },
      maxSustainedCalls: maxSustained,
      stoppedBy,
      reference: ctx.reference ?? null,
      steps,
      warmUp: { calls: 4, agentFrames: warm.agentFrames, replyLatencyMs: warm.replyLatencyMs },
      gatewayIdleCpuPercent: { afterWarmUp: idleCpuAfterWarmUp, afterAllSteps: idleCpuAtEnd },
      gatewayRss: {
        atStartMB: round(rssStartKb / 1024, 1),
        afterWarmUpNoCallsMB: round(ctx.baselineRssKb / 1024, 1),
        memoryAfterWarmUp: memoryBaseline,
        atEndNoCallsMB: round(rssEndKb / 1024, 1),
        atEndAfterForcedGcMB: Number.isNaN(rssEndGcKb) ? null : round(rssEndGcKb / 1024, 1),
        memoryAtEndAfterForcedGc: memoryEndGc,
      },
      gatewayLog: { warnings: gateway.warnings, errors: gateway.errors, tail: gateway.logTail },
      finalMetrics: selected,
      wallSeconds: round((performance.now() - started) / 1000, 1),
    };
  } finally {
    scheduler?.stop();
    gcObserver.disconnect();
    await gateway.stop().catch(() => gateway.killNow());
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('exit', onExit);
    if (pinnedGenerator && originalAffinity !== undefined) setAffinity(process.pid, originalAffinity);
  }
}

function parseArgs(argv) {
  const options = { quick: argv.includes('--quick') };
  for (const arg of argv) {
    const [key, value] = arg.split('=');
    if (key === '--steps' && value) options.steps = value.split(',').map(Number);
    if (key === '--window' && value) options.windowSeconds = Number(value);
    if (key === '--budget' && value) options.budgetSeconds = Number(value);
    if (key === '--provider' && value) options.provider = value;
  }
  return options;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await benchConcurrency(parseArgs(process.argv.slice(2)));
  console.log(JSON.stringify(result, null, 2));
}
