// CPU cost of call recording (RECORDINGS_DIR): the real writer (apps/gateway/dist/recording: CallRecordings +
// CallRecording, files in a temporary directory) fed N calls' worth of audio the way CallRuntime feeds it: every 20 ms
// each call gets one caller frame (speech) and, while its agent talks (2 s out of every 5 s), one agent frame scheduled
// 100 ms ahead; a transcript per turn, an interruption every third turn, a tool call every tenth. Calls start staggered
// over the flush interval. Time is a virtual call clock advanced in 20 ms ticks, as fast as the disk keeps up: after
// each tick the bench waits for the writes its flush timers started (real fs.promises writes, WAV header patches,
// sidecar temp + rename), so every byte of every call is written as in production, only faster than real time.
//
// CPU is process.cpuUsage() (user + system, libuv's file-system threads included) over the whole run, closes and
// retention included. The same schedule is run once into a recorder that does nothing, to report what the harness
// itself costs; `cpuMsPerCallSecond` is the recorder's share (total - harness), the median of 5 rounds (1 in --quick)
// each running the harness then the writer, `totalCpuMsPerCallSecond` the last round's total.
// Measured warm (after 3000 call-seconds of warm-up: a fresh process pays 2-4x more for its first call-seconds).
// Target: < 0.2 ms of CPU per call-second. Pinned to one CPU (when taskset exists), like bench/gateway-path.mjs.
//
// Run: pnpm build && node bench/recording.mjs [--quick]

import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { CallRecordings, RECORDING_FLUSH_INTERVAL_MS } from '../apps/gateway/dist/recording/index.js';
import { ManualClock, fixturePath, readWavAs8k } from '../packages/testkit/dist/index.js';
import { affinityOf, median, round, setAffinity, which } from './lib/util.mjs';

const TICK_MS = 20;
const FRAME = 160;
const AGENT_CYCLE_MS = 5000;
const AGENT_TALKS_MS = 2000;
const AGENT_LEAD_MS = 100;
const FLUSH_INTERVAL_MS = RECORDING_FLUSH_INTERVAL_MS;
const PINNED_CPU = '1';
const TARGET_CPU_MS_PER_CALL_SECOND = 0.2;

/** A silent pino-compatible logger (the writer logs nothing on the happy path). */
const quietLogger = { child: () => quietLogger, trace() {}, debug() {}, info() {}, warn() {}, error() {}, fatal() {} };

/** Does what a recorder is told to do: nothing (the harness's own cost). */
class NullRecorder {
  start() {}
  callerAudio() {}
  agentAudio() {}
  controlSent() {}
  toolCall() {}
  end() {}
  close() {
    return Promise.resolve();
  }
  whenWritten() {
    return Promise.resolve();
  }
}

function speechFrames() {
  const speech = readWavAs8k(fixturePath('greeting'));
  const frames = [];
  for (let i = 0; i + FRAME <= speech.length && frames.length < 100; i += FRAME) frames.push(speech.slice(i, i + FRAME));
  return frames;
}

/** Runs `calls` calls of `seconds` each through recorders made by `makeRecorder`; returns CPU ms and wall ms. */
async function runSchedule({ calls, seconds, makeRecorder }) {
  const frames = speechFrames();
  // One clock for every call: advancing it runs the timers that come due, in order.
  const clock = new ManualClock();
  const staggerTicks = Math.round(FLUSH_INTERVAL_MS / TICK_MS);
  const ticksPerCall = (seconds * 1000) / TICK_MS;
  const totalTicks = ticksPerCall + staggerTicks;
  const live = [];
  /** Recorders whose flush timer ran in this tick. */
  const flushed = [];
  const cpu0 = process.cpuUsage();
  const wall0 = performance.now();
  for (let tick = 0; tick < totalTicks; tick++) {
    const now = clock.now();
    // Calls start one per tick over the first flush interval (so their flushes are spread like real calls').
    if (tick < staggerTicks) {
      for (let c = tick; c < calls; c += staggerTicks) {
        // The call's own view of the clock notes when its flush timer ran, so the tick waits only for those writes.
        const call = { recorder: undefined, startTick: tick, turns: 0 };
        const callClock = {
          now: () => clock.now(),
          setTimeout: (callback, ms) => clock.setTimeout(callback, ms),
          setInterval: (callback, ms) =>
            clock.setInterval(() => {
              callback();
              flushed.push(call.recorder);
            }, ms),
        };
        const recorder = makeRecorder(callClock);
        call.recorder = recorder;
        recorder.start({ callId: `bench-${c}`, providerId: 'bench', metadata: { from: '2000', to: '5001' } }, now);
        live.push(call);
      }
    }
    for (const call of live) {
      const age = tick - call.startTick;
      if (age >= ticksPerCall) continue;
      const frame = frames[(age + call.startTick) % frames.length];
      const callMs = age * TICK_MS;
      call.recorder.callerAudio(frame, now);
      const inCycle = callMs % AGENT_CYCLE_MS;
      if (inCycle >= AGENT_CYCLE_MS - AGENT_TALKS_MS) {
        if (inCycle === AGENT_CYCLE_MS - AGENT_TALKS_MS) {
          call.turns++;
          call.recorder.controlSent({ type: 'transcript', role: 'user', text: 'What time do you open on Saturday?' }, now);
          call.recorder.controlSent({ type: 'transcript', role: 'agent', text: 'We open at nine on Saturdays.' }, now);
          if (call.turns % 10 === 0) {
            call.recorder.toolCall({ name: 'lookup_hours', argumentsJson: '{"day":"saturday"}', output: 'Open 9 to 17', status: 'ok', startedAtMs: now, endedAtMs: now });
          }
        }
        call.recorder.agentAudio(frames[(age * 7) % frames.length], now + AGENT_LEAD_MS);
        if (call.turns % 3 === 0 && inCycle === AGENT_CYCLE_MS - TICK_MS) call.recorder.controlSent({ type: 'interruption' }, now);
      }
      if (age === ticksPerCall - 1) call.recorder.end('completed', now + TICK_MS);
    }
    clock.advance(TICK_MS);
    if (flushed.length > 0) await Promise.all(flushed.splice(0).map((recorder) => recorder.whenWritten()));
  }
  await Promise.all(live.map((call) => call.recorder.close()));
  const used = process.cpuUsage(cpu0);
  return { cpuMs: (used.user + used.system) / 1000, systemMs: used.system / 1000, wallMs: performance.now() - wall0 };
}

/**
 * @param {{ quick?: boolean, calls?: number, seconds?: number, rounds?: number }} [options]
 */
export async function benchRecording(options = {}) {
  const pin = which('taskset') !== undefined && cpus().length >= 2;
  const originalAffinity = pin ? affinityOf(process.pid) : undefined;
  const pinned = pin && setAffinity(process.pid, PINNED_CPU);
  try {
    return { pinnedToCpu: pinned ? Number(PINNED_CPU) : null, ...(await measure(options)) };
  } finally {
    if (pinned && originalAffinity !== undefined) setAffinity(process.pid, originalAffinity);
  }
}

async function measure(options) {
  const quick = options.quick ?? false;
  // Calls of a minute: a recording's fixed cost (creating the WAV, the first and last sidecar) is spread over the call
  // as in production, where calls last minutes. The whole part takes a few seconds; --quick halves the calls.
  const calls = options.calls ?? (quick ? 50 : 100);
  const seconds = options.seconds ?? 60;
  const rounds = options.rounds ?? (quick ? 1 : 5);
  const callSeconds = calls * seconds;
  const dir = mkdtempSync(join(tmpdir(), 'bench-recording-'));
  try {
    // Warm-up (JIT, file system caches), then the harness alone, then the real writer.
    // The cost falls over the first few thousand call-seconds of a fresh process (V8 optimising the writer and Node's
    // fs promises, its young generation growing, libuv's threads starting): a gateway runs warm, so the measured runs
    // come after 3000 call-seconds of warm-up.
    await runSchedule({ calls: 20, seconds: 10, makeRecorder: () => new NullRecorder() });
    const warm = await CallRecordings.open({ dir: join(dir, 'warm-up'), maxBytes: 2 ** 40, maxAgeDays: 365 }, { logger: quietLogger });
    for (let round = 0; round < 3; round++) await runSchedule({ calls: 50, seconds: 20, makeRecorder: (clock) => warm.createRecorder(clock, quietLogger) });
    await warm.close();
    rmSync(join(dir, 'warm-up'), { recursive: true, force: true });
    // Rounds of (harness, recorder) back to back: a disturbance (another process, the VM's host) hits both of a pair.
    const perRound = [];
    let last;
    for (let round = 0; round < rounds; round++) {
      const harness = await runSchedule({ calls, seconds, makeRecorder: () => new NullRecorder() });
      const roundDir = join(dir, `recordings-${round}`);
      const recordings = await CallRecordings.open({ dir: roundDir, maxBytes: 2 ** 40, maxAgeDays: 365 }, { logger: quietLogger });
      const recorded = await runSchedule({ calls, seconds, makeRecorder: (clock) => recordings.createRecorder(clock, quietLogger) });
      await recordings.close();
      const files = readdirSync(roundDir);
      const bytes = files.reduce((sum, name) => sum + statSync(join(roundDir, name)).size, 0);
      rmSync(roundDir, { recursive: true, force: true });
      perRound.push(Math.max(0, recorded.cpuMs - harness.cpuMs) / callSeconds);
      last = { harness, recorded, files: files.length, bytes };
    }
    const cpuMsPerCallSecond = round(median(perRound), 4);
    return {
      calls,
      secondsPerCall: seconds,
      callSeconds,
      rounds,
      flushIntervalMs: FLUSH_INTERVAL_MS,
      files: last.files,
      bytesWritten: last.bytes,
      bytesPerCallSecond: Math.round(last.bytes / callSeconds),
      xRealTime: round((seconds * 1000) / last.recorded.wallMs, 1),
      harnessCpuMs: round(last.harness.cpuMs, 1),
      totalCpuMs: round(last.recorded.cpuMs, 1),
      systemCpuMs: round(last.recorded.systemMs, 1),
      cpuMsPerCallSecondByRound: perRound.map((value) => round(value, 4)),
      cpuMsPerCallSecond,
      totalCpuMsPerCallSecond: round(last.recorded.cpuMs / callSeconds, 4),
      target: `< ${TARGET_CPU_MS_PER_CALL_SECOND} ms of CPU per call-second`,
      meetsTarget: cpuMsPerCallSecond < TARGET_CPU_MS_PER_CALL_SECOND,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const result = await benchRecording({ quick: process.argv.includes('--quick') });
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}
