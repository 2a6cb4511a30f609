// The Speechmatics Flow path end to end: the built gateway (`stsgate serve`, STS_PROVIDER=speechmatics-flow) in its own
// process, pinned to core 1; in this process (core 0) the testkit's Speechmatics Flow and management-platform
// (temporary keys) emulators and N simulated AVR Core calls. Each call loops "question.wav, then 3.5 s of
// silence" (5.66 s); the emulator answers every caller turn (its energy VAD ends a turn after 700 ms of silence)
// with 2.5 s of 16 kHz agent audio, which the gateway resamples to 8 kHz (core's resampler) and paces to AVR Core
// as 20 ms frames.
// Pacing: real time (the emulator's default, 40 ms binary frames every 40 ms), the most plausible for Flow: it
// streams its TTS about in real time (its exact burst behaviour is UNCONFIRMED, see the emulator's header), and
// clients report their playback `buffering` in AudioReceived. A faster-than-real-time burst (what openai-path uses
// for OpenAI) would hide the real-time case, where the gateway forwards each 40 ms chunk as it arrives and AVR's
// playout buffer stays shallow. Barge-in is disabled (`bargeInMs: Infinity`): bench calls have no echo, and replies
// end before the next question anyway.
// For 10, 50 and 100 calls it reports:
// - gateway CPU per call-second (utime+stime from /proc/<pid>/stat over a steady window of exactly 3 loops), RSS at
//   load and per call (RSS at load - RSS of the fresh gateway before the calls, / calls);
// - added latency: the emulator sends the first binary agent-audio frame of a response -> the first AVR audio frame
//   of that reply reaches the client (both ends live in this process, one clock; this process's own event-loop
//   delay is included, so it is an upper bound; `benchProcess` shows how busy core 0 was);
// - agent audio delivered on time: per call, AVR Core's playout buffer starts at a reply's first frame and plays
//   20 ms per 20 ms; a frame arriving after it ran dry is late by that gap (playout resumes with it). Delivered on
//   time = on-time agent audio / what real time allows (calls x window x 2.5 s per 5.66 s loop). The same model with
//   a 20 and a 40 ms prebuffer (playout starts that much after the first frame) shows how much slack the real-time
//   stream needs, and `emulatorSendLagMs` how late this process sent the agent frames against their real-time
//   schedule (its own event loop: lateness the gateway did not cause);
// - 16k -> 8k timing: every reply that started in the window, measured at AVR Core (samples received / 8), must
//   last 2.5 s +- one 20 ms frame.
// Part-level `problems` lists failed checks (reply length, missing replies, gateway errors or exit); a step where no
// agent audio reaches AVR Core at all fails the part.
// Run: pnpm build && node bench/flow-path.mjs [--quick] [--pacing=<factor>]   (or node bench/run.mjs --only=flow-path)
// --pacing=N (diagnostic) sends agent audio N times faster than real time, like the OpenAI emulator's bursts.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';
import { startGateway } from './lib/gateway-process.mjs';
import { cpuPercentBetween, cpuTimes, percentile, procCpuMs, procRssKb, round, setAffinity, sleep, which, windowLoad } from './lib/util.mjs';
import { encodeAvrAudio } from '../packages/core/dist/index.js';
import {
  concatPcm,
  fixturePath,
  readWavAs8k,
  silence,
  startSpeechmaticsAuthEmulator,
  startSpeechmaticsFlowEmulator,
} from '../packages/testkit/dist/index.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const WebSocket = createRequire(`${root}packages/testkit/package.json`)('ws');
const API_KEY = 'sm-bench-0123456789';
const REPLY_MS = 2500;
/** The emulator's agent audio frame (its default `chunkMs`). */
const FLOW_CHUNK_MS = 40;
const FRAME_MS = 20;
/** A pause longer than this between two AVR audio frames starts a new reply (replies are >= 2.5 s apart). */
const REPLY_GAP_MS = 300;
/** After the window, caller audio goes on this long so that replies started in the window end (2.5 s + margin). */
const TAIL_MS = 3200;
const WARM_UP_MS = 6000;
const AUDIO_PREFIX = Buffer.from('{"type":"audio","audio":"');
const AUDIO_SUFFIX = Buffer.from('"}');

const LOOP = concatPcm(readWavAs8k(fixturePath('question')), silence(3500));
/** The caller loop as sent: whole 20 ms frames (the last partial frame of LOOP is dropped). */
const LOOP_FRAMES = [];
for (let i = 0; i + 160 <= LOOP.length; i += 160) LOOP_FRAMES.push(encodeAvrAudio(LOOP.subarray(i, i + 160)));
const LOOP_MS = LOOP_FRAMES.length * FRAME_MS;

let current; // the step's gateway and emulators, for cleanup on a signal

async function cleanup(step) {
  if (step === undefined) return;
  if (step.gateway !== undefined && step.gateway.child.exitCode === null && step.gateway.child.signalCode === null) {
    const exited = new Promise((resolve) => step.gateway.child.once('exit', resolve));
    step.gateway.child.kill('SIGTERM');
    await Promise.race([exited, sleep(3000)]);
    if (step.gateway.child.exitCode === null && step.gateway.child.signalCode === null) step.gateway.child.kill('SIGKILL');
  }
  await step.flow?.close();
  await step.auth?.close();
}

/**
 * AVR Core playout buffers with these prebuffers (ms of delay before a reply starts playing): 0 is the model of
 * `concurrency` and `openai-path` (playout starts on the first frame); 20 and 40 show how much slack the real-time
 * stream needs.
 */
const PREBUFFERS_MS = [0, 20, 40];

/** One AVR Core call as the bench sees it: caller frames out, agent frames timed through playout models. */
function attachClient(socket, window) {
  const client = {
    socket,
    replies: [],
    controls: {},
    windowBytes: 0,
    frames: 0,
    irregularFrames: 0,
    // Per prebuffer: when the buffer runs dry, on-time bytes in the window, lateness of each late frame.
    playout: PREBUFFERS_MS.map((prebufferMs) => ({ prebufferMs, playEnd: 0, onTimeBytes: 0, lateness: [], lateAtReplyStart: 0 })),
  };
  socket.on('message', (data, isBinary) => {
    const t = performance.now();
    const isAudio =
      !isBinary &&
      data.length > AUDIO_PREFIX.length + AUDIO_SUFFIX.length &&
      data.compare(AUDIO_PREFIX, 0, AUDIO_PREFIX.length, 0, AUDIO_PREFIX.length) === 0 &&
      data.compare(AUDIO_SUFFIX, 0, 2, data.length - 2, data.length) === 0;
    if (!isAudio) {
      let type = 'unparsable';
      try {
        type = String(JSON.parse(data.toString('utf8'))?.type);
      } catch {
        // counted as unparsable
      }
      client.controls[type] = (client.controls[type] ?? 0) + 1;
      if (type === 'interruption') for (const model of client.playout) model.playEnd = 0;
      return;
    }
    // Payload bytes from the base64 length (no decode needed to time and count the frame).
    const b64 = data.length - AUDIO_PREFIX.length - AUDIO_SUFFIX.length;
    const padding = data[data.length - 3] === 0x3d ? (data[data.length - 4] === 0x3d ? 2 : 1) : 0;
    const bytes = (b64 / 4) * 3 - padding;
    const frameMs = bytes / 16;
    let reply = client.replies.at(-1);
    const newReply = reply === undefined || t - reply.lastAt > REPLY_GAP_MS;
    if (newReply) {
      reply = { firstAt: t, lastAt: t, bytes: 0, frames: 0 };
      client.replies.push(reply);
    }
    const inWindow = t >= window.start && t < window.end;
    for (const model of client.playout) {
      let lateness = 0;
      if (newReply) model.playEnd = t + model.prebufferMs + frameMs; // a new reply starts playing after the prebuffer
      else if (t <= model.playEnd) model.playEnd += frameMs;
      else {
        lateness = t - model.playEnd; // the buffer ran dry: underrun, playout resumes with this frame
        model.playEnd = t + frameMs;
      }
      if (!inWindow) continue;
      if (lateness === 0) model.onTimeBytes += bytes;
      else {
        model.lateness.push(lateness);
        if (reply.frames < 3) model.lateAtReplyStart++;
      }
    }
    reply.lastAt = t;
    reply.bytes += bytes;
    reply.frames++;
    if (!inWindow) return;
    client.frames++;
    client.windowBytes += bytes;
    if (bytes !== 320) client.irregularFrames++;
  });
  return client;
}

/**
 * Time-stamps the first binary agent-audio frame of each response of a Flow connection, and how late the emulator
 * sent each frame against its own real-time schedule (bench-only instrumentation).
 */
function instrument(connection, window, sendLag) {
  const firstFrameSent = [];
  // The emulator pushes a response record at ResponseStarted and bumps its `framesSent` right after each binary
  // frame went to the socket (`ws.send`): the 0 -> 1 step is the moment the first agent audio left.
  const push = connection.responses.push.bind(connection.responses);
  connection.responses.push = (...records) => {
    // The emulator takes its schedule's t0 right after pushing the record: frame k is due at t0 + k x 40 ms.
    const t0 = performance.now();
    for (const record of records) {
      let framesSent = record.framesSent;
      Object.defineProperty(record, 'framesSent', {
        enumerable: true,
        get: () => framesSent,
        set: (value) => {
          const at = performance.now();
          if (framesSent === 0 && value > 0) firstFrameSent.push(at);
          // A late send is this process's event loop (timers, GC, the other calls), not the gateway.
          if (value > 0 && at >= window.start && at < window.end) sendLag.push(at - t0 - (value - 1) * FLOW_CHUNK_MS);
          framesSent = value;
        },
      });
    }
    return push(...records);
  };
  return firstFrameSent;
}

/** One step: `calls` concurrent calls, measured over `loops` caller loops of steady state. */
async function runStep(calls, loops, pacing = 'realtime') {
  const step = {};
  current = step;
  try {
    step.auth = await startSpeechmaticsAuthEmulator({ apiKey: API_KEY, allowFlowKeys: true });
    step.flow = await startSpeechmaticsFlowEmulator({
      verifyToken: (token) => step.auth.verify(token, 'flow'),
      reply: () => ({ text: 'Agent reply.', ms: REPLY_MS }),
      pacing,
      chunkMs: FLOW_CHUNK_MS,
      bargeInMs: Number.POSITIVE_INFINITY,
    });
    const { flow } = step;
    step.gateway = await startGateway({
      STS_PROVIDER: 'speechmatics-flow',
      SPEECHMATICS_API_KEY: API_KEY,
      SPEECHMATICS_FLOW_URL: flow.baseUrl,
      SPEECHMATICS_MANAGEMENT_URL: step.auth.baseUrl,
      // Which Flow connection serves which call: the template variable carries the call's uuid.
      SPEECHMATICS_TEMPLATE_VARIABLES: '{"call":"{{uuid}}"}',
    });
    const { gateway } = step;
    await sleep(500);
    const rssIdleKb = procRssKb(gateway.child.pid);

    const frames = LOOP_FRAMES;
    const window = { start: Number.POSITIVE_INFINITY, end: Number.POSITIVE_INFINITY };
    const clients = [];
    const sendLag = [];
    for (let c = 0; c < calls; c++) {
      const socket = new WebSocket(`ws://127.0.0.1:${gateway.port}/`, { perMessageDeflate: false });
      await new Promise((resolve, reject) => {
        socket.once('open', resolve);
        socket.once('error', reject);
      });
      const uuid = `bench-${c}`;
      socket.send(JSON.stringify({ type: 'init', uuid }));
      const connection = await flow.waitFor(
        () => flow.connections.find((conn) => conn.startConversation?.conversation_config.template_variables?.call === uuid),
        { timeoutMs: 20_000 },
      );
      const client = attachClient(socket, window);
      client.connection = connection;
      client.firstFrameSent = instrument(connection, window, sendLag);
      client.offset = Math.floor((c * frames.length) / calls); // load spread evenly over the loop
      clients.push(client);
    }

    let tick = 0;
    const started = performance.now();
    const timer = setInterval(() => {
      const due = Math.floor((performance.now() - started) / FRAME_MS);
      for (; tick < due; tick++) for (const client of clients) client.socket.send(frames[(client.offset + tick) % frames.length]);
    }, 5);
    await sleep(WARM_UP_MS); // warm-up: every call has had a turn
    const loopDelay = monitorEventLoopDelay({ resolution: 10 });
    const agentMsBefore = clients.reduce((n, c) => n + c.connection.agentAudioMs, 0);
    const benchCpuBefore = process.cpuUsage();
    const machineBefore = cpuTimes();
    const cpuBefore = procCpuMs(gateway.child.pid);
    window.start = performance.now();
    loopDelay.enable();
    await sleep(loops * LOOP_MS);
    const cpuAfter = procCpuMs(gateway.child.pid);
    window.end = performance.now();
    const machine = cpuPercentBetween(machineBefore, cpuTimes());
    loopDelay.disable();
    const benchCpu = process.cpuUsage(benchCpuBefore);
    const agentMsSent = clients.reduce((n, c) => n + c.connection.agentAudioMs, 0) - agentMsBefore;
    const rssKb = procRssKb(gateway.child.pid);
    const windowMs = window.end - window.start;
    await sleep(TAIL_MS); // replies started in the window play to their end
    clearInterval(timer);
    const gatewayAlive = gateway.child.exitCode === null && gateway.child.signalCode === null;

    // Added latency: each reply that started in the window against the emulator's first frame of that response
    // (the latest first frame sent before the reply arrived; replies are >= 3 s apart, so the match is unique).
    const latencies = [];
    const durations = [];
    let unmatchedReplies = 0;
    let responsesInWindow = 0;
    for (const client of clients) {
      const matched = new Set();
      for (const reply of client.replies) {
        if (reply.firstAt < window.start || reply.firstAt >= window.end) continue;
        durations.push(reply.bytes / 16);
        let k = client.firstFrameSent.length - 1;
        while (k >= 0 && client.firstFrameSent[k] > reply.firstAt) k--;
        if (k < 0 || matched.has(k) || reply.firstAt - client.firstFrameSent[k] > REPLY_GAP_MS) {
          unmatchedReplies++;
          continue;
        }
        matched.add(k);
        latencies.push(reply.firstAt - client.firstFrameSent[k]);
      }
      responsesInWindow += client.firstFrameSent.filter((at) => at >= window.start && at < window.end).length;
    }
    latencies.sort((a, b) => a - b);
    durations.sort((a, b) => a - b);
    const receivedMs = clients.reduce((n, c) => n + c.windowBytes, 0) / 16;
    const framesInWindow = clients.reduce((n, c) => n + c.frames, 0);
    const expectedMs = (calls * windowMs * REPLY_MS) / LOOP_MS;
    const controls = {};
    for (const client of clients) for (const [type, n] of Object.entries(client.controls)) controls[type] = (controls[type] ?? 0) + n;
    const outcomes = {};
    for (const client of clients) for (const r of client.connection.responses) outcomes[r.outcome] = (outcomes[r.outcome] ?? 0) + 1;
    const withinTolerance = durations.filter((ms) => Math.abs(ms - REPLY_MS) <= FRAME_MS).length;
    const callSeconds = (calls * windowMs) / 1000;
    sendLag.sort((a, b) => a - b);
    const playout = PREBUFFERS_MS.map((prebufferMs, m) => {
      const lateness = clients.flatMap((c) => c.playout[m].lateness).sort((a, b) => a - b);
      const onTimeMs = clients.reduce((n, c) => n + c.playout[m].onTimeBytes, 0) / 16;
      return {
        prebufferMs,
        onTimePercentOfReceived: receivedMs === 0 ? null : round((onTimeMs / receivedMs) * 100, 2),
        deliveredOnTimePercent: round((onTimeMs / expectedMs) * 100, 2),
        lateFrames: lateness.length,
        lateFramesAtReplyStart: clients.reduce((n, c) => n + c.playout[m].lateAtReplyStart, 0),
        latenessMsOfLateFrames:
          lateness.length === 0 ? null : { p50: round(percentile(lateness, 50), 2), p99: round(percentile(lateness, 99), 2), max: round(lateness.at(-1), 2) },
      };
    });

    for (const client of clients) client.socket.close();
    await sleep(300);
    return {
      calls,
      pinnedToCore1: gateway.pinned,
      windowSeconds: round(windowMs / 1000, 1),
      gatewayAlive,
      gatewayCpuMsPerCallSecond: round((cpuAfter - cpuBefore) / callSeconds, 3),
      gatewayCpuPercentOfOneCore: round(((cpuAfter - cpuBefore) / windowMs) * 100, 1),
      gatewayRssIdleMB: round(rssIdleKb / 1024, 1),
      gatewayRssMB: round(rssKb / 1024, 1),
      gatewayRssPerCallKB: round((rssKb - rssIdleKb) / calls, 0),
      addedLatencyMs:
        latencies.length === 0
          ? null
          : { samples: latencies.length, p50: round(percentile(latencies, 50), 2), p99: round(percentile(latencies, 99), 2), max: round(latencies.at(-1), 2) },
      agentAudio: {
        expectedSecondsPerCall: round(expectedMs / 1000 / calls, 2),
        receivedSecondsPerCall: round(receivedMs / 1000 / calls, 2),
        sentByEmulatorSecondsPerCall: round(agentMsSent / 1000 / calls, 2),
        deliveredPercent: round((receivedMs / expectedMs) * 100, 2),
        onTimePercentOfReceived: playout[0].onTimePercentOfReceived,
        deliveredOnTimePercent: playout[0].deliveredOnTimePercent,
        framesReceived: framesInWindow,
        irregularFrames: clients.reduce((n, c) => n + c.irregularFrames, 0),
        lateFrames: playout[0].lateFrames,
        lateFramesAtReplyStart: playout[0].lateFramesAtReplyStart,
        latenessMsOfLateFrames: playout[0].latenessMsOfLateFrames,
        withPrebuffer: playout.slice(1),
        emulatorSendLagMs: sendLag.length === 0 ? null : { p50: round(percentile(sendLag, 50), 2), p99: round(percentile(sendLag, 99), 2), max: round(sendLag.at(-1), 2) },
      },
      replyDurationMs: {
        expected: REPLY_MS,
        tolerance: FRAME_MS,
        replies: durations.length,
        withinTolerance,
        ok: durations.length > 0 && withinTolerance === durations.length,
        min: durations.length === 0 ? null : round(durations[0], 2),
        p50: durations.length === 0 ? null : round(percentile(durations, 50), 2),
        max: durations.length === 0 ? null : round(durations.at(-1), 2),
      },
      replies: {
        perCall: round(latencies.length / calls, 2),
        emulatorResponsesStartedInWindow: responsesInWindow,
        unmatchedAtAvr: unmatchedReplies,
        emulatorOutcomes: outcomes,
        callsWithoutReplyInWindow: clients.filter((c) => !c.replies.some((r) => r.firstAt >= window.start && r.firstAt < window.end)).length,
      },
      gatewayControlMessages: controls,
      flowAckIssues: clients.reduce((n, c) => n + c.connection.ackIssues.length, 0),
      ...windowLoad({ machine, gatewayPinned: gateway.pinned, gatewayCpuMs: cpuAfter - cpuBefore, benchCpu, loopDelay, windowMs }),
    };
  } finally {
    await cleanup(step);
    current = undefined;
  }
}

export { runStep };
export async function benchFlowPath({ quick = false, pacing = 'realtime' } = {}) {
  const steps = quick ? [10] : [10, 50, 100];
  const loops = quick ? 1 : 3;
  const results = [];
  for (const calls of steps) {
    process.stderr.write(`[bench] flow-path: ${calls} calls ...\n`);
    const result = await runStep(calls, loops, pacing);
    // RSS per call vs the fresh gateway includes its one-off warm-up (JIT, heap growth): large at 10 calls. The
    // increase from the previous step per added call is the marginal cost of a call.
    const previous = results.at(-1);
    result.gatewayRssMarginalPerCallKB = previous === undefined ? null : round(((result.gatewayRssMB - previous.gatewayRssMB) * 1024) / (calls - previous.calls), 0);
    results.push(result);
    if (result.agentAudio.framesReceived === 0) throw new Error(`flow-path: no agent audio reached AVR Core at ${calls} calls (${JSON.stringify(result.gatewayControlMessages)})`);
  }
  const problems = [];
  for (const r of results) {
    const at = `${r.calls} calls`;
    if (!r.gatewayAlive) problems.push(`${at}: the gateway exited`);
    if (!r.replyDurationMs.ok) problems.push(`${at}: ${r.replyDurationMs.replies - r.replyDurationMs.withinTolerance} of ${r.replyDurationMs.replies} replies not 2500 +- 20 ms at AVR (min ${r.replyDurationMs.min}, max ${r.replyDurationMs.max} ms)`);
    if (r.replies.callsWithoutReplyInWindow > 0) problems.push(`${at}: ${r.replies.callsWithoutReplyInWindow} calls got no reply in the window`);
    if (r.replies.unmatchedAtAvr > 0) problems.push(`${at}: ${r.replies.unmatchedAtAvr} replies at AVR matched no emulator response`);
    if (r.replies.emulatorOutcomes.interrupted !== undefined) problems.push(`${at}: ${r.replies.emulatorOutcomes.interrupted} responses interrupted`);
    for (const type of ['error', 'interruption', 'unparsable']) if (r.gatewayControlMessages[type] !== undefined) problems.push(`${at}: ${r.gatewayControlMessages[type]} AVR ${type} messages`);
    if (r.agentAudio.irregularFrames > 0) problems.push(`${at}: ${r.agentAudio.irregularFrames} AVR frames not 20 ms`);
    if (r.flowAckIssues > 0) problems.push(`${at}: ${r.flowAckIssues} AudioReceived ack issues`);
  }
  return {
    method:
      'gateway (STS_PROVIDER=speechmatics-flow) in its own process pinned to core 1; Speechmatics Flow + temporary-key emulators and simulated AVR Core calls in the bench process (core 0)',
    tasksetAvailable: which('taskset') !== undefined,
    pacing: pacing === 'realtime' ? 'realtime (40 ms binary frames of 16 kHz PCM every 40 ms)' : `${pacing}x real time (40 ms binary frames every ${round(40 / pacing, 2)} ms)`,
    replyMs: REPLY_MS,
    loopMs: round(LOOP_MS, 1),
    windowLoops: loops,
    problems,
    steps: results,
  };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const onSignal = (signal) => {
    void cleanup(current).finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  if (which('taskset') !== undefined) setAffinity(process.pid, '0');
  // --pacing=<factor> (diagnostic only, not used by run.mjs): agent audio N times faster than real time.
  const pacingArg = process.argv.find((arg) => arg.startsWith('--pacing='))?.slice('--pacing='.length);
  const pacing = pacingArg === undefined || pacingArg === 'realtime' ? 'realtime' : Number(pacingArg);
  if (pacing !== 'realtime' && !(pacing > 0)) throw new Error(`--pacing must be realtime or a number > 0, got ${pacingArg}`);
  const result = await benchFlowPath({ quick: process.argv.includes('--quick'), pacing });
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}
