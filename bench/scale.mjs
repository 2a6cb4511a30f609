// The OpenAI Realtime path at scale, in real time: the built gateway (`stsgate serve`, STS_PROVIDER=openai) pinned to
// core 1; in this process, pinned to core 0, the load (bench/lib/scale-load.mjs): N AVR Core calls sending a 20 ms
// caller frame every 20 ms, and the fake OpenAI Realtime GA server the gateway connects to for each of them, which
// streams 100 ms of agent audio every 100 ms while it speaks and starts a caller turn during every second reply
// (speech_started: a barge-in at a known moment). One process for the load on purpose: its core is the only one left,
// more processes on it would only add context switches, and a call's AVR client and provider connection in one
// process share one clock. The generator's own CPU is reported; over 80% of its core the step is not valid.
//
// Per audio format (OPENAI_AUDIO_FORMAT pcmu | pcm24), a fresh gateway: warm-up calls, the idle baseline, then each
// step (default 100 and 500 calls): ramp-up, warm-up (one script pattern: every call in its cycle), a 15 s window,
// hang-up; after the last step, 30 s of quiet and the RSS against the idle baseline. Reported per step: gateway CPU
// per call-second, the generator's CPU, RSS per added call, agent frame lateness and frames lost, caller audio
// latency (AVR frame written -> its bytes at the provider; minus the bare two loopback hops, measured first with the
// same generator against bench/lib/ws-relay.mjs on the gateway's core), speech_started -> AVR `interruption`
// latency; and a `goals` block (the performance issue's targets, met or not).
//
// Run: pnpm build && node bench/scale.mjs [--quick] [--steps=100,300,500] [--formats=pcmu,pcm24] [--window=15]
//      [--after=30] [--no-relay] [--profile[=<dir>]] [--batch=<ms>] [--arrivals=<calls/s>] [--max-elu=<share>]
//      [--caller-batch=<share>|off]
//   --batch: OPENAI_INPUT_BATCH_MS for the gateway (caller audio per append: fewer writes, more caller-audio latency).
//   --arrivals: a step's calls arrive at this rate (default: as fast as 25 parallel connects go).
//   --max-elu: MAX_EVENT_LOOP_UTILIZATION for the gateway (admission by load; with --arrivals, what it refuses).
//   --caller-batch: CALLER_AUDIO_BATCH_UTILIZATION for the gateway (default: its own; off: caller audio frame by frame
//   at any load).
//   --profile: a V8 CPU profile of the gateway over each window (inspector Profiler.start/stop, 1 ms sampling), written
//   to <dir> (default bench/results/profiles/) as gateway-<format>-<calls>.cpuprofile, with the top frames as
//   .txt beside it (bench/lib/profile-summary.mjs). The profiler costs the gateway CPU: those steps say `profiled`.
// or node bench/run.mjs --only=scale [--quick]
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { freePort, gatewayNodeFlags, startGateway } from './lib/gateway-process.mjs';
import { collectGarbage, startProfiler } from './lib/inspector.mjs';
import { formatProfileSummary, summarizeProfile } from './lib/profile-summary.mjs';
import { SCRIPT, SCRIPT_FACTS, ScaleLoad, UUID_MARK } from './lib/scale-load.mjs';
import { cpuPercentBetween, cpuTimes, procCpuMs, procCpuSplitMs, procRssKb, round, setAffinity, sleep, summarize, which, windowLoad } from './lib/util.mjs';

const RELAY = fileURLToPath(new URL('./lib/ws-relay.mjs', import.meta.url));
const DEFAULT_PROFILE_DIR = fileURLToPath(new URL('./results/profiles/', import.meta.url));
const API_KEY = 'sk-scale-0123456789';
const GOALS = {
  cpuMsPerCallSecond: { pcmu: 1.0, pcm24: 1.5 },
  cpuAtCalls: [100, 500],
  realTimeCalls: 500,
  lateLimitMs: 20,
  onTimeShare: 0.99,
  rssPerAddedCallKB: 200,
  rssAfterCallsEndedRatio: 1.1,
  callerAudioAddedP99Ms: 2,
  // ../shared/docs/performance-targets.md: a provider audio chunk -> the first AVR frame carrying it, p99 at 100 calls.
  firstFrameAddedP99Ms: 2,
  firstFrameAtCalls: 100,
  interruptionP99Ms: 5,
  generatorCpuPercent: 80,
};
/** Other work above this share of a core during a window disturbs its numbers (`disturbed`). */
const DISTURBANCE_PERCENT = 10;
const WARM_UP_CALLS = 20;
/** The gateway's idle memory release (`stsgate serve`: one full GC after this long without a call). */
const IDLE_RELEASE_MS = 10_000;

function parseOptions(argv) {
  const quick = argv.includes('--quick');
  const value = (name) => argv.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3);
  const profileArg = argv.find((arg) => arg === '--profile' || arg.startsWith('--profile='));
  const options = {
    quick,
    steps: value('steps')?.split(',').map(Number) ?? (quick ? [20, 100] : [100, 500]),
    formats: value('formats')?.split(',') ?? ['pcmu', 'pcm24'],
    windowSeconds: Number(value('window') ?? (quick ? 5 : 15)),
    afterSeconds: Number(value('after') ?? (quick ? 15 : 30)),
    relay: !argv.includes('--no-relay'),
    // OPENAI_INPUT_BATCH_MS for the gateway (default: its own, 0: every caller frame is an append of its own).
    inputBatchMs: value('batch'),
    arrivalsPerSecond: value('arrivals') === undefined ? undefined : Number(value('arrivals')),
    maxEventLoopUtilization: value('max-elu'),
    callerAudioBatchUtilization: value('caller-batch'),
    // The gateway's malloc: the image's (jemalloc, preloaded) when this machine has it, else glibc's.
    allocator: value('allocator') ?? (jemallocInstalled() ? 'jemalloc' : 'glibc'),
    profileDir: profileArg === undefined ? undefined : profileArg === '--profile' ? DEFAULT_PROFILE_DIR : profileArg.slice('--profile='.length),
  };
  if (options.arrivalsPerSecond !== undefined && !(options.arrivalsPerSecond > 0)) throw new Error('--arrivals: calls per second, a number above 0');
  if (!(options.allocator in ALLOCATOR_ENV)) throw new Error(`--allocator: jemalloc or glibc, not "${options.allocator}"`);
  if (options.allocator === 'jemalloc' && !jemallocInstalled()) throw new Error('--allocator=jemalloc: libjemalloc.so.2 is not installed (Debian: libjemalloc2)');
  return options;
}

const log = (line) => process.stderr.write(`[scale] ${line}\n`);

/** Debian's libjemalloc2, which the gateway image preloads (docker/gateway.Dockerfile), is on this machine. */
function jemallocInstalled() {
  try {
    return execFileSync('/sbin/ldconfig', ['-p'], { encoding: 'utf8' }).includes('libjemalloc.so.2');
  } catch {
    return false;
  }
}

/** The image's allocator settings (docker/gateway.Dockerfile's runtime ENV) for `--allocator=jemalloc`. */
const ALLOCATOR_ENV = { jemalloc: { LD_PRELOAD: 'libjemalloc.so.2', MALLOC_CONF: 'background_thread:true' }, glibc: {} };
const mb = (kb) => round(kb / 1024, 1);

/**
 * Prometheus text -> { 'name{labels}': value }, histogram buckets left out; {} when the gateway does not answer within
 * 10 s (an overloaded gateway may not: its numbers are then null, the step goes on).
 */
async function scrapeMetrics(port) {
  let text;
  try {
    text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
  } catch {
    return {};
  }
  const values = {};
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#') || line.includes('_bucket')) continue;
    const space = line.lastIndexOf(' ');
    values[line.slice(0, space)] = Number(line.slice(space + 1));
  }
  return values;
}

/**
 * The gateway's GC pauses between two scrapes (prom-client's `nodejs_gc_duration_seconds`, from V8's GC events), in ms
 * by kind (minor: scavenges; major: mark-compact; incremental: marking steps; weakcb: weak callbacks) and in total.
 */
function gcMsBetween(before, after) {
  const byKind = {};
  let total = 0;
  for (const [key, value] of Object.entries(after)) {
    const kind = /^stsgate_nodejs_gc_duration_seconds_sum\{kind="(\w+)"\}$/.exec(key)?.[1];
    if (kind === undefined) continue;
    const ms = (value - (before[key] ?? 0)) * 1000;
    byKind[kind] = round(ms, 1);
    total += ms;
  }
  return { total: round(total, 1), byKind };
}

/** Waits (up to `timeoutMs`) until the gateway reports no active call; returns the last count seen. */
async function untilNoCalls(port, timeoutMs = 15_000) {
  const deadline = performance.now() + timeoutMs;
  let active = Number.NaN;
  while (performance.now() < deadline) {
    active = (await scrapeMetrics(port))['stsgate_active_calls'];
    if (active === 0) break;
    await sleep(200);
  }
  return active;
}

function stopChild(child, graceMs = 8000) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/**
 * Measures `ms` of a running load: gateway (pid) and generator CPU, machine load, generator event-loop delay.
 * `samplerTid`: the gateway's profiler thread, moved to the generator's core: its CPU is counted there, not as the
 * gateway's.
 */
async function measureWindow(load, pid, ms, samplerTid) {
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  const cores = cpuTimes();
  const own = process.cpuUsage();
  // The thread's own times are in /proc/<pid>/task/<tid>/stat (/proc/<tid>/stat has the whole process's).
  const samplerStat = `${pid}/task/${samplerTid}`;
  const noTimes = { userMs: 0, systemMs: 0 };
  const gatewayBefore = procCpuSplitMs(pid);
  const samplerBefore = samplerTid === undefined ? noTimes : procCpuSplitMs(samplerStat);
  const start = performance.now();
  load.openWindow(start, start + ms);
  await sleep(ms);
  const samplerAfter = samplerTid === undefined ? noTimes : procCpuSplitMs(samplerStat);
  const gatewayAfter = procCpuSplitMs(pid);
  const samplerCpuMs = samplerAfter.userMs + samplerAfter.systemMs - samplerBefore.userMs - samplerBefore.systemMs;
  // In the kernel: system calls, and on loopback the receiving side's TCP processing, which runs on the sender's core.
  const gatewaySystemMs = gatewayAfter.systemMs - gatewayBefore.systemMs - (samplerAfter.systemMs - samplerBefore.systemMs);
  const gatewayCpuMs = gatewayAfter.userMs - gatewayBefore.userMs + gatewaySystemMs - (samplerAfter.userMs - samplerBefore.userMs);
  const benchCpu = process.cpuUsage(own);
  const machine = cpuPercentBetween(cores, cpuTimes());
  const windowMs = performance.now() - start;
  loopDelay.disable();
  const context = windowLoad({ machine, gatewayPinned: true, gatewayCpuMs, benchCpu, loopDelay, windowMs });
  const generatorPercent = context.benchProcess.cpuPercentOfOneCore;
  const samplerPercent = round((samplerCpuMs / windowMs) * 100, 1);
  const cpu0 = context.machineCpuPercent.cpu0;
  if (cpu0 !== undefined) cpu0.otherThanGenerator = round(cpu0.busy - generatorPercent - samplerPercent, 1);
  const other = [context.machineCpuPercent.cpu1?.otherThanGateway, cpu0?.otherThanGenerator];
  return {
    windowMs,
    gatewayCpuMs,
    gatewaySystemMs,
    generatorPercent,
    context,
    ...(samplerTid === undefined ? {} : { profilerSamplerCpuPercent: samplerPercent }),
    disturbed: other.some((v) => v !== undefined && v > DISTURBANCE_PERCENT),
  };
}

/** After the window, the load goes on until the whole replies of the window have all their frames (or 5 s). */
async function tail(w) {
  await sleep(1500);
  const deadline = performance.now() + 3500;
  while (performance.now() < deadline && w.wholeReplies.some((r) => r.framesReceived < SCRIPT_FACTS.framesPerWholeReply)) await sleep(250);
}

function stats(values, digits = 2) {
  const s = summarize(values, digits);
  return { n: s.n, p50: s.p50, p99: s.p99, max: s.max, mean: s.mean };
}

/** What one window says about the agent audio, the caller audio and barge-ins. */
function evaluate(w) {
  let lost = 0;
  let extra = 0;
  for (const reply of w.wholeReplies) {
    lost += Math.max(0, SCRIPT_FACTS.framesPerWholeReply - reply.framesReceived);
    extra += Math.max(0, reply.framesReceived - SCRIPT_FACTS.framesPerWholeReply);
  }
  const over = (ms) => (w.lateness.length === 0 ? null : round((w.lateness.filter((l) => l > ms).length / w.lateness.length) * 100, 3));
  const interruptions = w.barges.filter((b) => b.interruptedAt !== undefined).map((b) => b.interruptedAt - b.t0);
  return {
    agentFrames: {
      received: w.agentFrames,
      latenessMs: stats(w.lateness),
      laterThan20msPercent: over(GOALS.lateLimitMs),
      // The same with a 20 ms prebuffer (AVR Core's playout starting one frame after the first frame arrived).
      laterThan20msWith20msPrebufferPercent: over(GOALS.lateLimitMs + 20),
      // AVR Core's own playout (it resumes with a late frame): how often and how long its buffer ran dry.
      underrunGapMs: stats(w.underrunGaps),
      // The provider writes a reply's first delta -> AVR Core reads the reply's first frame (same clock, one process).
      firstFrameAddedMs: stats(w.firstFrameAdded),
      wholeReplies: w.wholeReplies.length,
      lost,
      extra,
      irregular: w.irregularFrames,
      afterInterruption: w.strayFrames,
      withoutReply: w.orphanFrames,
    },
    callerAudio: {
      framesSent: w.callerFramesSent,
      framesSkippedGatewayNotReading: w.callerFramesSkipped,
      // Under 1: the gateway sent several frames in one append (its batch, or frames that arrived in one turn).
      appendsPerFrame: round(w.appendsReceived / Math.max(1, w.callerFramesSent), 3),
      latencyMs: stats(w.callerLatency),
      appendCompletingLatencyMs: stats(w.callerLatencyCompleting),
    },
    bargeIns: {
      sent: w.barges.length,
      interruptionLatencyMs: stats(interruptions),
      withoutInterruption: w.barges.length - interruptions.length,
      unexpectedInterruptions: w.unexpectedInterruptions,
    },
    avrControlMessages: w.avrControl,
    ...(w.avrErrorSamples.length > 0 ? { avrErrorSamples: w.avrErrorSamples } : {}),
    generatorClockLagMs: stats(w.clockLag),
  };
}

/** The relay calibration: caller frames through two bare `ws` hops, same generator, same call counts. */
async function runRelay(options) {
  const load = new ScaleLoad({ format: 'relay', apiKey: API_KEY });
  await load.start();
  const relay = track(spawn(process.execPath, [RELAY, load.providerUrl, API_KEY], { stdio: ['ignore', 'pipe', 'inherit'] }));
  const steps = [];
  try {
    const port = await new Promise((resolve, reject) => {
      let out = '';
      relay.stdout.on('data', (chunk) => {
        out += chunk;
        const match = /listening (\d+)/.exec(out);
        if (match) resolve(Number(match[1]));
      });
      relay.once('exit', (code) => reject(new Error(`relay exited with ${code}`)));
    });
    setAffinity(relay.pid, '1');
    for (const calls of options.steps) {
      log(`relay calibration: ${calls} calls`);
      const { calls: connected, failures } = await load.connectCalls({ port, count: calls, prefix: `relay-${calls}` });
      await sleep(2000);
      const m = await measureWindow(load, relay.pid, options.quick ? 3000 : 10_000);
      await sleep(500);
      const w = load.closeWindow();
      await load.hangUp(connected);
      steps.push({
        calls,
        connected: connected.length,
        connectFailures: failures.length,
        latencyMs: stats(w.callerLatency),
        framesSent: w.callerFramesSent,
        relayCpuPercentOfOneCore: round((m.gatewayCpuMs / m.windowMs) * 100, 1),
        relayCpuMsPerCallSecond: round(m.gatewayCpuMs / ((Math.max(1, connected.length) * m.windowMs) / 1000), 3),
        relayKernelPercentOfItsCpu: round((m.gatewaySystemMs / Math.max(1, m.gatewayCpuMs)) * 100, 1),
        loadGeneratorCpuPercentOfOneCore: m.generatorPercent,
        generatorClockLagMs: stats(w.clockLag),
        machineCpuPercent: m.context.machineCpuPercent,
        disturbed: m.disturbed,
      });
    }
  } finally {
    await stopChild(relay);
    await load.close();
  }
  return { checks: load.checks, steps };
}

/** One audio format: a fresh gateway, warm-up, idle baseline, the steps, memory after the calls. */
async function runFormat(format, options, loopback) {
  const load = new ScaleLoad({ format, apiKey: API_KEY });
  await load.start();
  const inspectPort = await freePort();
  const gatewayLog = { warnings: 0, errors: 0, tail: [] };
  const gateway = await startGateway(
    {
      STS_PROVIDER: 'openai',
      OPENAI_API_KEY: API_KEY,
      OPENAI_REALTIME_URL: load.providerUrl,
      OPENAI_AUDIO_FORMAT: format,
      OPENAI_GREETING: 'false',
      ...(options.inputBatchMs === undefined ? {} : { OPENAI_INPUT_BATCH_MS: options.inputBatchMs }),
      // Unset unless asked for: the bench measures the gateway past its capacity too.
      MAX_EVENT_LOOP_UTILIZATION: options.maxEventLoopUtilization ?? '',
      ...(options.callerAudioBatchUtilization === undefined ? {} : { CALLER_AUDIO_BATCH_UTILIZATION: options.callerAudioBatchUtilization }),
      ...ALLOCATOR_ENV[options.allocator],
      // The fake provider pairs each provider connection with its call by the uuid in the instructions.
      OPENAI_INSTRUCTIONS: `You are the scale bench's agent. ${UUID_MARK('{{uuid}}')}`,
      MAX_CALLS: '5000',
      LOG_PRETTY: 'false',
    },
    {
      // The inspector serves the forced GC after the calls and --profile; no session is attached otherwise.
      nodeArgs: [`--inspect=127.0.0.1:${inspectPort}`],
      onLog: (line) => {
        if (/^(Debugger (listening|attached|ending)|For help, see)/.test(line)) return;
        if (line.includes('"level":40')) gatewayLog.warnings++;
        if (line.includes('"level":50') || line.includes('"level":60')) gatewayLog.errors++;
        gatewayLog.tail.push(line.length > 300 ? `${line.slice(0, 300)}...` : line);
        if (gatewayLog.tail.length > 6) gatewayLog.tail.shift();
      },
    },
  );
  track(gateway.child);
  const pid = gateway.child.pid;
  const result = { format, pinnedToCore1: gateway.pinned, steps: [], failedSteps: [] };
  let rssIdleKb;
  try {
    await sleep(2000);
    const rssFreshKb = procRssKb(pid);
    log(`${format}: warm-up (${WARM_UP_CALLS} calls)`);
    const warm = await load.connectCalls({ port: gateway.port, count: WARM_UP_CALLS, prefix: `${format}-warm` });
    await sleep(SCRIPT_FACTS.patternMs + 1000);
    await load.hangUp(warm.calls);
    await untilNoCalls(gateway.port);
    // The gateway gives the ended calls' memory back after 10 s without a call: the idle baseline is after that.
    await sleep(IDLE_RELEASE_MS + 3000);
    const idleCpu = procCpuMs(pid);
    await sleep(2000);
    const idleCpuPercent = round((procCpuMs(pid) - idleCpu) / 20, 2);
    rssIdleKb = procRssKb(pid);
    result.idle = { rssFreshMB: mb(rssFreshKb), rssBaselineMB: mb(rssIdleKb), gatewayCpuPercent: idleCpuPercent };

    for (const [i, calls] of options.steps.entries()) {
      try {
        result.steps.push(await runStep(calls, i === options.steps.length - 1));
      } catch (error) {
        // An overloaded gateway can fail a step (or die): the step is reported as failed, the part goes on.
        const exited = gateway.child.exitCode !== null || gateway.child.signalCode !== null;
        result.failedSteps.push({ format, calls, error: error instanceof Error ? error.message : String(error), gatewayExited: exited });
        log(`${format} ${calls}: FAILED (${error instanceof Error ? error.message : String(error)})${exited ? ', the gateway exited' : ''}`);
        if (exited) break;
        await load.hangUp([...load.calls.values()]);
      }
    }
  } finally {
    result.checks = load.checks;
    result.gatewayLog = gatewayLog;
    await stopChild(gateway.child);
    await load.close();
  }
  return result;

  /** One step of `calls` calls on this gateway (`last`: then the memory 30 s after the calls). */
  async function runStep(calls, last) {
    log(`${format}: ${calls} calls`);
    const rampStart = performance.now();
    const { calls: connected, failures, notStarted } = await load.connectCalls({ port: gateway.port, count: calls, prefix: `${format}-${calls}`, arrivalsPerSecond: options.arrivalsPerSecond });
    const rampSeconds = round((performance.now() - rampStart) / 1000, 1);
    // Every call's script starts within one pattern of its connect: after that, the mix is steady.
    await sleep(SCRIPT_FACTS.patternMs + 1000);
    const metricsBefore = await scrapeMetrics(gateway.port); // also resets the gateway's event-loop delay histogram
    const profiler = options.profileDir === undefined ? undefined : await startProfiler(inspectPort);
    const samplerTid = profiler === undefined ? undefined : moveProfilerThread(pid);
    const m = await measureWindow(load, pid, options.windowSeconds * 1000, samplerTid);
    const rssAtLoadKb = procRssKb(pid);
    const metricsAtLoad = await scrapeMetrics(gateway.port);
    // After the scrape: building the profile blocks the gateway, which is not the window's event-loop delay.
    const profile = await profiler?.stop();
    const activeAtWindowEnd = metricsAtLoad['stsgate_active_calls'];
    const gc = gcMsBetween(metricsBefore, metricsAtLoad);
    await tail(load.window);
    const w = load.closeWindow();
    await load.hangUp(connected);
    const activeAfterHangUp = await untilNoCalls(gateway.port);
    const endedAt = performance.now();
    const step = {
      format,
      calls,
      connected: connected.length,
      connectFailures: failures.length,
      ...(failures.length > 0 ? { connectFailureSample: failures[0] } : {}),
      notStartedWithin30sRamp: notStarted,
      rampSeconds,
      windowSeconds: round(m.windowMs / 1000, 2),
      profiled: profile !== undefined,
      gateway: {
        // Per call that connected (an overloaded gateway may not take them all).
        cpuMsPerCallSecond: round(m.gatewayCpuMs / ((Math.max(1, connected.length) * m.windowMs) / 1000), 3),
        cpuPercentOfOneCore: round((m.gatewayCpuMs / m.windowMs) * 100, 1),
        kernelPercentOfItsCpu: round((m.gatewaySystemMs / Math.max(1, m.gatewayCpuMs)) * 100, 1),
        // The event loop's thread collects (--single-threaded-gc): its pauses are CPU the gateway spent on GC.
        gcPercentOfItsCpu: round((gc.total / Math.max(1, m.gatewayCpuMs)) * 100, 1),
        gcMsInWindow: gc,
        // The generator's work is fixed by the step: this ratio is less sensitive to the VM's speed of the moment.
        cpuRelativeToGenerator: round(m.gatewayCpuMs / m.windowMs / Math.max(0.001, m.generatorPercent / 100), 3),
        eventLoopDelayP99Ms: round((metricsAtLoad['stsgate_nodejs_eventloop_lag_p99_seconds'] ?? Number.NaN) * 1000, 1),
        eventLoopDelayMaxMs: round((metricsAtLoad['stsgate_nodejs_eventloop_lag_max_seconds'] ?? Number.NaN) * 1000, 1),
        // The gateway's own measure over its last 3 s (what MAX_EVENT_LOOP_UTILIZATION compares), at the window's end.
        eventLoopUtilizationAtWindowEnd: round(metricsAtLoad['stsgate_event_loop_utilization'] ?? Number.NaN, 3),
        // 1 when the gateway was sending caller audio two frames per provider message at the window's end (CALLER_AUDIO_BATCH_UTILIZATION).
        callerAudioBatchedAtWindowEnd: metricsAtLoad['stsgate_caller_audio_batched'] ?? null,
        activeCallsAtWindowEnd: activeAtWindowEnd,
        activeCallsAfterHangUp: activeAfterHangUp,
        rssAtLoadMB: mb(rssAtLoadKb),
        rssPerAddedCallKB: round((rssAtLoadKb - rssIdleKb) / Math.max(1, connected.length), 1),
        heapUsedAtLoadMB: mb((metricsAtLoad['stsgate_nodejs_heap_size_used_bytes'] ?? Number.NaN) / 1024),
        externalAtLoadMB: mb((metricsAtLoad['stsgate_nodejs_external_memory_bytes'] ?? Number.NaN) / 1024),
        framesInDuringWindow: metricsAtLoad['stsgate_frames_in_total'] - metricsBefore['stsgate_frames_in_total'],
      },
      loadGenerator: {
        cpuPercentOfOneCore: m.generatorPercent,
        eventLoopDelayP99Ms: m.context.benchProcess.eventLoopDelayP99Ms,
        eventLoopDelayMaxMs: m.context.benchProcess.eventLoopDelayMaxMs,
      },
      ...evaluate(w),
      machineCpuPercent: m.context.machineCpuPercent,
      disturbed: m.disturbed,
    };
    const hop = loopback?.steps.find((s) => s.calls === calls);
    step.callerAudio.loopbackHopLatencyMs = hop === undefined ? null : hop.latencyMs;
    // Agent audio takes the same two loopback hops the other way: the relay's p99 stands in for them (an estimate).
    step.agentFrames.firstFrameAddedOverHopsP99Ms =
      hop === undefined || step.agentFrames.firstFrameAddedMs.p99 === null ? null : round(step.agentFrames.firstFrameAddedMs.p99 - hop.latencyMs.p99, 2);
    // The same two hops as a first frame (provider -> gateway -> AVR Core): what the gateway adds to a barge-in.
    step.bargeIns.interruptionOverHopsP99Ms =
      hop === undefined || step.bargeIns.interruptionLatencyMs.p99 === null ? null : round(step.bargeIns.interruptionLatencyMs.p99 - hop.latencyMs.p99, 2);
    step.callerAudio.addedP99Ms = hop === undefined || step.callerAudio.latencyMs.p99 === null ? null : round(step.callerAudio.latencyMs.p99 - hop.latencyMs.p99, 2);
    step.callerAudio.appendCompletingAddedP99Ms =
      hop === undefined || step.callerAudio.appendCompletingLatencyMs.p99 === null ? null : round(step.callerAudio.appendCompletingLatencyMs.p99 - hop.latencyMs.p99, 2);
    if (profile !== undefined) {
      step.profile = { samplerOnGeneratorCore: samplerTid !== undefined, samplerCpuPercent: m.profilerSamplerCpuPercent ?? null, ...writeProfile(options.profileDir, format, calls, profile) };
    }
    // Memory after the calls: 3 s after each step; after the last one the goal's 30 s, then a forced GC (diagnostic:
    // what an idle process that runs no GC still holds vs what is really retained).
    await sleep(Math.max(0, (last ? options.afterSeconds : 3) * 1000 - (performance.now() - endedAt)));
    const rssAfterKb = procRssKb(pid);
    step.gateway.rssAfterCallsEndedMB = mb(rssAfterKb);
    step.gateway.rssAfterCallsEndedSeconds = last ? options.afterSeconds : 3;
    step.gateway.rssAfterCallsEndedRatioToIdle = round(rssAfterKb / rssIdleKb, 3);
    if (last) {
      const metricsAfter = await scrapeMetrics(gateway.port);
      step.gateway.heapUsedAfterCallsEndedMB = mb(metricsAfter['stsgate_nodejs_heap_size_used_bytes'] / 1024);
      step.gateway.externalAfterCallsEndedMB = mb(metricsAfter['stsgate_nodejs_external_memory_bytes'] / 1024);
      await collectGarbage(inspectPort).catch(() => undefined);
      await sleep(1000);
      const metricsGc = await scrapeMetrics(gateway.port);
      step.gateway.rssAfterForcedGcMB = mb(procRssKb(pid));
      step.gateway.heapUsedAfterForcedGcMB = mb(metricsGc['stsgate_nodejs_heap_size_used_bytes'] / 1024);
      step.gateway.externalAfterForcedGcMB = mb(metricsGc['stsgate_nodejs_external_memory_bytes'] / 1024);
    }
    log(
      `${format} ${calls}: gateway ${step.gateway.cpuMsPerCallSecond} ms/call-s (${step.gateway.cpuPercentOfOneCore}% of core), generator ${step.loadGenerator.cpuPercentOfOneCore}%, ` +
        `late>20ms ${step.agentFrames.laterThan20msPercent}%, lost ${step.agentFrames.lost}, caller p99 ${step.callerAudio.latencyMs.p99} ms, ` +
        `interruption p99 ${step.bargeIns.interruptionLatencyMs.p99} ms${step.disturbed ? ' (disturbed)' : ''}`,
    );
    return step;
  }
}

/**
 * Moves the V8 profiler's sampling thread (created by Profiler.start, on the gateway's core like every thread of it)
 * to the generator's core. Sharing one core with the main thread it runs mostly when that thread yields, so nearly
 * every sample lands in (idle): a gateway 12% busy showed 2% busy samples. Returns its thread id once moved.
 */
function moveProfilerThread(pid) {
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    if (readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim() !== 'v8:ProfEvntProc') continue;
    try {
      execFileSync('taskset', ['-c', '-p', '0', tid], { stdio: 'ignore' });
      return Number(tid);
    } catch {
      return undefined;
    }
  }
  return undefined;
}

function writeProfile(dir, format, calls, profile) {
  mkdirSync(dir, { recursive: true });
  const base = `${dir.replace(/\/$/, '')}/gateway-${format}-${calls}`;
  writeFileSync(`${base}.cpuprofile`, JSON.stringify(profile));
  const summary = summarizeProfile(profile);
  writeFileSync(`${base}.txt`, formatProfileSummary(summary, `gateway ${format} ${calls} calls`));
  return { file: `${base}.cpuprofile`, topSelf: summary.bySelf.slice(0, 10), topModules: summary.byModule.slice(0, 8) };
}

/**
 * The performance issue's targets against the steps (met: true / false; null when the step did not run). Beside the
 * CPU goals, the bare relay's CPU per call-second at the same call counts when it ran (`loopback`): what forwarding
 * each caller frame over the same two loopback hops costs on this machine with nothing else, a floor below which no
 * gateway that forwards 20 ms frames one message each can go.
 */
function evaluateGoals(formats, lastCalls, loopback) {
  const step = (format, calls) => formats[format]?.steps.find((s) => s.calls === calls);
  const failed = (format, calls) => formats[format]?.failedSteps.find((s) => s.calls === calls);
  const goal = (target, entries) => {
    const values = Object.fromEntries(entries.map(([key, value]) => [key, value]));
    const verdicts = entries.map(([, , ok]) => ok);
    return { target, measured: values, met: verdicts.length === 0 || verdicts.includes(null) ? null : verdicts.every(Boolean) };
  };
  const each = (fn) => Object.keys(formats).flatMap((format) => formats[format].steps.map((s) => fn(format, s)));
  // A step that failed (overloaded gateway) does not meet its goals; one that did not run has no verdict.
  const at = (calls, fn) =>
    Object.keys(formats).map((format) => {
      const s = step(format, calls);
      if (s !== undefined) return fn(format, s);
      return failed(format, calls) === undefined ? [`${format}_${calls}`, null, null] : [`${format}_${calls}`, 'step failed', false];
    });
  const relayFloor = Object.fromEntries(
    GOALS.cpuAtCalls.map((calls) => [`${calls}`, loopback?.steps.find((s) => s.calls === calls)?.relayCpuMsPerCallSecond ?? null]),
  );
  const cpu = (format) => ({
    ...goal(
      `${format}: <= ${GOALS.cpuMsPerCallSecond[format]} ms gateway CPU per call-second at ${GOALS.cpuAtCalls.join(' and ')} calls`,
      GOALS.cpuAtCalls.map((calls) => {
        const s = step(format, calls);
        if (s === undefined) return failed(format, calls) === undefined ? [`${calls}`, null, null] : [`${calls}`, 'step failed', false];
        return [`${calls}`, s.gateway.cpuMsPerCallSecond, s.gateway.cpuMsPerCallSecond <= GOALS.cpuMsPerCallSecond[format]];
      }),
    ),
    relayFloorMsPerCallSecond: relayFloor,
  });
  const n = GOALS.realTimeCalls;
  return {
    cpuPcmu: formats.pcmu === undefined ? null : cpu('pcmu'),
    cpuPcm24: formats.pcm24 === undefined ? null : cpu('pcm24'),
    realTimeAt500Calls: goal(
      `>= ${n} calls on one core: >= ${GOALS.onTimeShare * 100}% of agent frames no later than ${GOALS.lateLimitMs} ms behind schedule, none lost, every call connected and kept`,
      at(n, (format, s) => [
        `${format}_${n}`,
        { laterThan20msPercent: s.agentFrames.laterThan20msPercent, latenessP99Ms: s.agentFrames.latenessMs.p99, lost: s.agentFrames.lost, connected: s.connected },
        s.agentFrames.laterThan20msPercent !== null &&
          s.agentFrames.laterThan20msPercent <= (1 - GOALS.onTimeShare) * 100 &&
          s.agentFrames.lost === 0 &&
          s.connected === n &&
          s.gateway.activeCallsAtWindowEnd === n,
      ]),
    ),
    memoryPerCall: goal(
      `<= ${GOALS.rssPerAddedCallKB} KB of RSS per added call at ${n} calls`,
      at(n, (format, s) => [`${format}_${n}`, s.gateway.rssPerAddedCallKB, s.gateway.rssPerAddedCallKB <= GOALS.rssPerAddedCallKB]),
    ),
    memoryAfterCalls: goal(
      `RSS back within ${Math.round((GOALS.rssAfterCallsEndedRatio - 1) * 100)}% of the idle baseline 30 s after the calls of the last step end (no forced GC)`,
      at(lastCalls, (format, s) => [`${format}_${s.calls}`, s.gateway.rssAfterCallsEndedRatioToIdle, s.gateway.rssAfterCallsEndedRatioToIdle <= GOALS.rssAfterCallsEndedRatio]),
    ),
    callerAudioAdded: goal(
      `caller frame written -> its bytes at the provider, minus the bare loopback hops: <= ${GOALS.callerAudioAddedP99Ms} ms p99 (every frame: any wait for the adapter's append batch included)`,
      each((format, s) => [`${format}_${s.calls}`, s.callerAudio.addedP99Ms, s.callerAudio.addedP99Ms === null ? null : s.callerAudio.addedP99Ms <= GOALS.callerAudioAddedP99Ms]),
    ),
    interruptionAt500Calls: goal(
      `provider speech_started -> AVR interruption <= ${GOALS.interruptionP99Ms} ms p99 at ${n} calls, none missing`,
      at(n, (format, s) => [
        `${format}_${n}`,
        { p99: s.bargeIns.interruptionLatencyMs.p99, overHopsP99: s.bargeIns.interruptionOverHopsP99Ms, missing: s.bargeIns.withoutInterruption },
        s.bargeIns.interruptionLatencyMs.p99 !== null && s.bargeIns.interruptionLatencyMs.p99 <= GOALS.interruptionP99Ms && s.bargeIns.withoutInterruption === 0,
      ]),
    ),
    agentFirstFrameAt100Calls: goal(
      `a reply's first provider delta -> its first AVR frame, minus the bare loopback hops: <= ${GOALS.firstFrameAddedP99Ms} ms p99 at ${GOALS.firstFrameAtCalls} calls (performance-targets.md)`,
      at(GOALS.firstFrameAtCalls, (format, s) => [
        `${format}_${s.calls}`,
        { p99: s.agentFrames.firstFrameAddedMs.p99, overHopsP99: s.agentFrames.firstFrameAddedOverHopsP99Ms },
        s.agentFrames.firstFrameAddedOverHopsP99Ms === null ? null : s.agentFrames.firstFrameAddedOverHopsP99Ms <= GOALS.firstFrameAddedP99Ms,
      ]),
    ),
    loadGeneratorBelowLimit: goal(
      `validity: the load generator under ${GOALS.generatorCpuPercent}% of its core at every step`,
      each((format, s) => [`${format}_${s.calls}`, s.loadGenerator.cpuPercentOfOneCore, s.loadGenerator.cpuPercentOfOneCore < GOALS.generatorCpuPercent]),
    ),
  };
}

/** Child processes to kill if this process is told to stop (run.mjs forwards SIGINT/SIGTERM). */
const children = new Set();
function track(child) {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    for (const child of children) child.kill('SIGKILL');
    process.exit(130);
  });
}

export async function benchScale(options) {
  const started = performance.now();
  const pinned = which('taskset') !== undefined && setAffinity(process.pid, '0');
  const loopback = options.relay ? await runRelay(options) : undefined;
  const formats = {};
  for (const format of options.formats) formats[format] = await runFormat(format, options, loopback);
  return {
    method:
      'built gateway (STS_PROVIDER=openai) pinned to core 1; load generator (AVR Core calls + fake OpenAI Realtime GA server, bench/lib/scale-load.mjs) in one process pinned to core 0',
    loadGeneratorPinnedToCore0: pinned,
    settings: { steps: options.steps, formats: options.formats, windowSeconds: options.windowSeconds, afterSeconds: options.afterSeconds, warmUpCalls: WARM_UP_CALLS, profiled: options.profileDir !== undefined, inputBatchMs: options.inputBatchMs === undefined ? 'gateway default' : Number(options.inputBatchMs), arrivalsPerSecond: options.arrivalsPerSecond ?? null, maxEventLoopUtilization: options.maxEventLoopUtilization === undefined ? null : Number(options.maxEventLoopUtilization), callerAudioBatchUtilization: options.callerAudioBatchUtilization ?? 'gateway default', allocator: options.allocator, gatewayNodeFlags: gatewayNodeFlags() },
    script: { ...SCRIPT, ...SCRIPT_FACTS },
    loopbackHop: loopback ?? null,
    formats,
    goals: evaluateGoals(formats, options.steps.at(-1), loopback),
    wallSeconds: round((performance.now() - started) / 1000, 1),
  };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await benchScale(parseOptions(process.argv.slice(2)));
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}
