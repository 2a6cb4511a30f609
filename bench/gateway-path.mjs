// Per-frame CPU cost of the gateway's audio hot path, measured on the built packages (dist/).
//
// Each step is one 20 ms frame's worth of work, run in a tight loop on real speech (greeting.wav, cycled
// through 50 distinct frames) after a warm-up; CPU time is process.cpuUsage() (user + system) over
// `rounds` rounds of >= minMs/rounds each, and the reported ns/frame is the median round.
//
// Per call-second (50 frames each way), what a call on a 24 kHz provider (OpenAI Realtime) costs:
//   inbound : decodeAvrInbound(JSON text of a 20 ms frame) + resample 8k -> 24k (160 samples in)
//   outbound: resample 24k -> 8k (480 samples in) + Framer (push 160, take one 20 ms frame) + encodeAvrAudio
// Not included (measured end-to-end by bench/concurrency.mjs): WebSocket framing and socket I/O, the
// provider's own protocol (e.g. base64 + JSON of Realtime events), logging, metrics.
//
// Run: pnpm build && node bench/gateway-path.mjs [--quick]

import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import {
  AVR_FRAME_SAMPLES,
  Framer,
  PlayoutClock,
  createResampler,
  decodeAvrInbound,
  decodeMulaw,
  encodeAvrAudio,
  encodeMulaw,
} from '../packages/core/dist/index.js';
import { OutboundQueue } from '../apps/gateway/dist/outbound.js';
import { fixturePath, readWavAs8k } from '../packages/testkit/dist/index.js';
import { cpus } from 'node:os';
import { affinityOf, round, setAffinity, which } from './lib/util.mjs';

const FRAMES_PER_SECOND = 50;
const DISTINCT_FRAMES = 50;
const PINNED_CPU = '1';

/**
 * CPU ns per call of `op` (one call = one unit of work). `op` returns a number that is accumulated in a
 * sink so the work cannot be optimised away.
 */
function measure(op, { minMs, warmupMs, rounds }) {
  let sink = 0;
  const warmEnd = performance.now() + warmupMs;
  let warmCalls = 0;
  while (performance.now() < warmEnd) {
    for (let i = 0; i < 64; i++) sink += op();
    warmCalls += 64;
  }
  // Batches of about 2 ms between clock reads.
  const warmNsPerCall = (warmupMs * 1e6) / Math.max(1, warmCalls);
  const batch = Math.max(16, Math.round(2e6 / warmNsPerCall));
  const roundMs = minMs / rounds;
  const perRound = [];
  let iterations = 0;
  for (let r = 0; r < rounds; r++) {
    let calls = 0;
    const wallEnd = performance.now() + roundMs;
    const before = process.cpuUsage();
    do {
      for (let i = 0; i < batch; i++) sink += op();
      calls += batch;
    } while (performance.now() < wallEnd);
    const used = process.cpuUsage(before);
    perRound.push(((used.user + used.system) * 1000) / calls);
    iterations += calls;
  }
  perRound.sort((a, b) => a - b);
  return {
    nsPerOp: perRound[Math.floor(perRound.length / 2)],
    minNsPerOp: perRound[0],
    maxNsPerOp: perRound[perRound.length - 1],
    iterations,
    sink,
  };
}

/** Speech frames: `count` consecutive 20 ms frames of greeting.wav starting in its speech. */
function speechFrames(samples8k, count) {
  const frames = [];
  const start = Math.round(0.3 * 8000);
  for (let i = 0; i < count; i++) {
    frames.push(samples8k.slice(start + i * AVR_FRAME_SAMPLES, start + (i + 1) * AVR_FRAME_SAMPLES));
  }
  return frames;
}

function chop(samples, size) {
  const out = [];
  for (let at = 0; at + size <= samples.length; at += size) out.push(samples.slice(at, at + size));
  return out;
}

/**
 * @param {{ quick?: boolean, minMs?: number, warmupMs?: number, rounds?: number, vad?: boolean }} [options]
 */
export async function benchGatewayPath(options = {}) {
  // Pinned to one core, like the gateway in bench/concurrency.mjs: with a second core free, V8's parallel
  // GC helper threads add CPU time (2-3x for the allocating steps) that a one-core gateway does not have.
  const pin = which('taskset') !== undefined && cpus().length >= 2;
  const originalAffinity = pin ? affinityOf(process.pid) : undefined;
  const pinned = pin && setAffinity(process.pid, PINNED_CPU);
  try {
    return { pinnedToCpu: pinned ? Number(PINNED_CPU) : null, ...(await measureAll(options)) };
  } finally {
    if (pinned && originalAffinity !== undefined) setAffinity(process.pid, originalAffinity);
  }
}

async function measureAll(options) {
  const quick = options.quick ?? false;
  const settings = {
    minMs: options.minMs ?? (quick ? 150 : 1000),
    warmupMs: options.warmupMs ?? (quick ? 50 : 300),
    rounds: options.rounds ?? (quick ? 3 : 5),
  };
  const speech8k = readWavAs8k(fixturePath('greeting'));
  const frames8k = speechFrames(speech8k, DISTINCT_FRAMES);
  // The same speech at 24 kHz (as a 24 kHz provider would send it), made with our own resampler once.
  const up = createResampler(8000, 24000);
  const speech24k = new Int16Array([...up.process(speech8k), ...up.flush()]);
  const frames24k = chop(speech24k.subarray(0.3 * 24000), 480).slice(0, DISTINCT_FRAMES);
  const chunks24k100ms = chop(speech24k.subarray(0.3 * 24000), 2400).slice(0, 10);
  const inboundTexts = frames8k.map((frame) => encodeAvrAudio(frame));
  const mulawFrames = frames8k.map((frame) => encodeMulaw(frame));

  const steps = {};
  const run = (name, description, makeOp, framesPerOp = 1) => {
    const op = makeOp();
    const m = measure(op, settings);
    steps[name] = {
      description,
      nsPerFrame: round(m.nsPerOp / framesPerOp, 1),
      minNsPerFrame: round(m.minNsPerOp / framesPerOp, 1),
      maxNsPerFrame: round(m.maxNsPerOp / framesPerOp, 1),
      iterations: m.iterations,
    };
  };

  run('decodeInbound', 'decodeAvrInbound(JSON text of one 20 ms AVR audio message): JSON.parse + zod + base64 -> Int16Array', () => {
    let i = 0;
    return () => {
      const result = decodeAvrInbound(inboundTexts[i++ % DISTINCT_FRAMES]);
      return result.ok && result.message.type === 'audio' ? result.message.samples.length : -1;
    };
  });
  run('resample8kTo24k', 'streaming resampler 8 kHz -> 24 kHz, 160 samples in per call', () => {
    const r = createResampler(8000, 24000);
    let i = 0;
    return () => r.process(frames8k[i++ % DISTINCT_FRAMES]).length;
  });
  run('resample24kTo8k', 'streaming resampler 24 kHz -> 8 kHz, 480 samples (20 ms) in per call', () => {
    const r = createResampler(24000, 8000);
    let i = 0;
    return () => r.process(frames24k[i++ % frames24k.length]).length;
  });
  run(
    'resample24kTo8k100msChunks',
    'same, fed 100 ms provider chunks (2400 samples); cost per 20 ms of audio',
    () => {
      const r = createResampler(24000, 8000);
      let i = 0;
      return () => r.process(chunks24k100ms[i++ % chunks24k100ms.length]).length;
    },
    5,
  );
  run('framer', 'Framer: push 160 samples + nextFrame() (a fresh 20 ms frame)', () => {
    const framer = new Framer(AVR_FRAME_SAMPLES);
    let i = 0;
    return () => {
      framer.push(frames8k[i++ % DISTINCT_FRAMES]);
      return framer.nextFrame()?.length ?? -1;
    };
  });
  run('encodeOutbound', 'encodeAvrAudio(20 ms frame): base64 + JSON text', () => {
    let i = 0;
    return () => encodeAvrAudio(frames8k[i++ % DISTINCT_FRAMES]).length;
  });
  run('mulawEncode', 'G.711 mu-law encode of 160 samples', () => {
    let i = 0;
    return () => encodeMulaw(frames8k[i++ % DISTINCT_FRAMES]).length;
  });
  run('mulawDecode', 'G.711 mu-law decode of 160 bytes', () => {
    let i = 0;
    return () => decodeMulaw(mulawFrames[i++ % DISTINCT_FRAMES]).length;
  });
  // The gateway's own outbound bookkeeping around the Framer (apps/gateway OutboundQueue, core PlayoutClock).
  run('outboundQueue', "gateway OutboundQueue: push 160 samples + shift() one frame (wraps a Framer, tracks reply ids)", () => {
    const queue = new OutboundQueue();
    let i = 0;
    return () => {
      queue.push('response-1', frames8k[i++ % DISTINCT_FRAMES]);
      return queue.shift()?.samples.length ?? -1;
    };
  });
  run('playoutClock', 'PlayoutClock: queuedMs() + enqueue(20 ms) + queuedMs(), as pump() does per frame', () => {
    let t = 0;
    const clock = new PlayoutClock(() => t);
    return () => {
      const before = clock.queuedMs();
      clock.enqueue('response-1', 20);
      t += 20;
      return before + clock.queuedMs();
    };
  });

  const ns = (name) => steps[name].nsPerFrame;
  const total = (inbound, outbound) => {
    const inNs = inbound.reduce((sum, name) => sum + ns(name), 0);
    const outNs = outbound.reduce((sum, name) => sum + ns(name), 0);
    const perCallSecondNs = FRAMES_PER_SECOND * (inNs + outNs);
    return {
      inboundPerFrame: inbound,
      outboundPerFrame: outbound,
      inboundNsPerFrame: round(inNs, 1),
      outboundNsPerFrame: round(outNs, 1),
      cpuUsPerCallSecond: round(perCallSecondNs / 1000, 2),
      cpuMsPerCallSecond: round(perCallSecondNs / 1e6, 4),
    };
  };
  const totals = {
    provider24kPcm: {
      description: 'a 24 kHz PCM provider (OpenAI Realtime): the hot path the brief specifies',
      ...total(['decodeInbound', 'resample8kTo24k'], ['resample24kTo8k', 'framer', 'encodeOutbound']),
    },
    provider24kPcmWithBookkeeping: {
      description: 'same, with the gateway OutboundQueue (instead of a bare Framer) and PlayoutClock per outbound frame',
      ...total(['decodeInbound', 'resample8kTo24k'], ['resample24kTo8k', 'outboundQueue', 'playoutClock', 'encodeOutbound']),
    },
    provider8kPcm: {
      description: 'an 8 kHz PCM provider (e.g. the loopback): no resampling',
      ...total(['decodeInbound'], ['framer', 'encodeOutbound']),
    },
    provider8kMulaw: {
      description: 'an 8 kHz G.711 mu-law provider: mu-law instead of resampling',
      ...total(['decodeInbound', 'mulawEncode'], ['mulawDecode', 'framer', 'encodeOutbound']),
    },
  };

  const result = {
    method:
      'process.cpuUsage (user+system) around a tight loop of each step on real speech frames, after warm-up; ' +
      `median of ${settings.rounds} rounds totalling >= ${settings.minMs} ms per step; per call-second = 50 inbound + 50 outbound frames`,
    settings,
    steps,
    totals,
  };
  if (options.vad ?? true) result.loopbackVad = await benchLoopbackVad(speech8k, quick);
  return result;
}

/**
 * The loopback provider runs a Silero VAD per call on all caller audio; that is provider work, not gateway
 * work, but it is in the gateway process during bench/concurrency.mjs. Measured the same way: one stream fed
 * 20 ms frames of speech + silence, each process() awaited (inference runs 256-sample windows).
 */
async function benchLoopbackVad(speech8k, quick) {
  const { createSileroVad } = await import('../packages/silero-vad/dist/index.js');
  const vad = createSileroVad();
  await vad.prepare();
  const stream = await vad.open(8000);
  try {
    const loop = new Int16Array(speech8k.length + 1.5 * 8000);
    loop.set(speech8k);
    const frames = chop(loop, AVR_FRAME_SAMPLES);
    const feed = async (count) => {
      for (let i = 0; i < count; i++) await stream.process(frames[i % frames.length]);
    };
    await feed(quick ? 100 : 250);
    const seconds = quick ? 4 : 20;
    const before = process.cpuUsage();
    const wallStart = performance.now();
    await feed(seconds * FRAMES_PER_SECOND);
    const used = process.cpuUsage(before);
    const wallMs = performance.now() - wallStart;
    const cpuMs = (used.user + used.system) / 1000;
    return {
      description: 'Silero VAD (loopback provider) per call: CPU per second of caller audio, 20 ms frames, speech + silence',
      audioSeconds: seconds,
      cpuMsPerCallSecond: round(cpuMs / seconds, 3),
      wallMsPerCallSecond: round(wallMs / seconds, 3),
    };
  } finally {
    await stream.close();
    await vad.close();
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await benchGatewayPath({ quick: process.argv.includes('--quick') });
  console.log(JSON.stringify(result, null, 2));
}
