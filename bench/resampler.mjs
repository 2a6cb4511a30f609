// Resampler benchmark: our polyphase FIR (@stsgate/core, built dist) against libsamplerate (WASM port,
// @alexanderolsen/libsamplerate-js: SRC_SINC_FASTEST, _MEDIUM_QUALITY, _BEST_QUALITY) in streaming ("full"
// API) mode, fed the way the gateway feeds it: Int16 PCM in 20 ms or 100 ms chunks, Int16 PCM out (round +
// clamp; libsamplerate gets the Int16 <-> float conversion a gateway would need).
//
// Quality metrics use tones at integer frequencies and single-bin DFTs over whole seconds of steady state
// (from 0.5 s on, past any warm-up), so bins are exact and no window is needed:
//   - stopband (downsampling): level of the alias of a tone above the new Nyquist, dB re. the input tone,
//     over 4 s of TPDF-dithered input (see tone()); plus the output/input RMS ratio for an undithered tone,
//     as the unit tests measure it (Int16 rounding floors that near -92..-100 dB; -999 = all-zero output);
//   - images (upsampling): level of the images at k*inputRate +- f, dB re. the output fundamental;
//   - passband: max - min gain over 100..3400 Hz (the telephony band), gains at 1000 and 3400 Hz.
// Throughput: x real time (median of >= 5 slices) and input samples/s over >= `minSeconds` of work after a
// warm-up, plus x real time by process CPU time. `winner` per metric; near-equal results tie (an array).
//
// Run: pnpm --filter @stsgate/core build && node bench/resampler.mjs

import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import LibSampleRate from '@alexanderolsen/libsamplerate-js';
import { createResampler } from '../packages/core/dist/index.js';

const { create, ConverterType } = LibSampleRate;

const DIRECTIONS = [
  [24000, 8000],
  [16000, 8000],
  [8000, 24000],
];
const TONE_AMPLITUDE = 0.9 * 32767;
/** Seconds analysed for alias/image levels (longer = lower measurement floor). */
const REJECTION_SECONDS = 4;

function toInt16(samples) {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const v = samples[i] * 32768;
    out[i] = v >= 32767 ? 32767 : v <= -32768 ? -32768 : Math.round(v);
  }
  return out;
}

function toFloat(pcm) {
  const out = new Float32Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) out[i] = pcm[i] / 32768;
  return out;
}

/** A streaming converter under test: Int16 chunk in, Int16 out. */
async function makeCandidate(name, inRate, outRate) {
  if (name === 'stsgate') {
    const r = createResampler(inRate, outRate);
    return { process: (chunk) => r.process(chunk), close: () => {} };
  }
  const converterType = {
    'libsamplerate-fastest': ConverterType.SRC_SINC_FASTEST,
    'libsamplerate-medium': ConverterType.SRC_SINC_MEDIUM_QUALITY,
    'libsamplerate-best': ConverterType.SRC_SINC_BEST_QUALITY,
  }[name];
  const src = await create(1, inRate, outRate, { converterType });
  return {
    process: (chunk) => toInt16(src.full(toFloat(chunk))),
    // Float I/O only (no Int16 conversion), to show what the conversions cost.
    processFloat: (chunk) => src.full(chunk),
    close: () => src.destroy(),
  };
}

/**
 * A tone plus TPDF dither of +-2 LSB (deterministic). Enough dither survives the filter to keep the Int16
 * output rounding linear (with +-1 LSB, sub-LSB aliases at 8 kHz out would read several dB too low), so a
 * 4 s single-bin DFT resolves alias/image levels far below 1 LSB (measurement floor about -130 dB at 8 kHz
 * out) instead of reporting rounding noise or an all-zero output.
 */
function tone(rate, freq, seconds, dithered = true, amplitude = TONE_AMPLITUDE) {
  const n = Math.round(rate * seconds);
  const x = new Int16Array(n);
  let seed = 0x9e3779b9 ^ freq;
  const uniform = () => {
    seed = (seed * 1664525 + 1013904223) >>> 0;
    return seed / 4294967296 - 0.5;
  };
  for (let i = 0; i < n; i++) {
    const dither = dithered ? 2 * (uniform() + uniform()) : 0; // TPDF, +-2 LSB
    x[i] = Math.round(amplitude * Math.sin((2 * Math.PI * freq * i) / rate) + dither);
  }
  return x;
}

async function runStream(name, inRate, outRate, input, chunkMs = 20) {
  const c = await makeCandidate(name, inRate, outRate);
  const step = (inRate * chunkMs) / 1000;
  const parts = [];
  let total = 0;
  for (let i = 0; i < input.length; i += step) {
    const y = c.process(input.subarray(i, Math.min(input.length, i + step)));
    parts.push(y);
    total += y.length;
  }
  c.close();
  const out = new Int16Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Amplitude of the integer frequency `freq` over `seconds` whole seconds of x from `from` (exact DFT bin). */
function toneAmplitude(x, rate, freq, from, seconds = 1) {
  let re = 0;
  let im = 0;
  const w = (2 * Math.PI * freq) / rate;
  const n = rate * seconds;
  for (let i = 0; i < n; i++) {
    const v = x[from + i];
    re += v * Math.cos(w * i);
    im -= v * Math.sin(w * i);
  }
  return (2 * Math.hypot(re, im)) / n;
}

function rms(x, from, to) {
  let s = 0;
  for (let i = from; i < to; i++) s += x[i] * x[i];
  return Math.sqrt(s / (to - from));
}

const db = (ratio) => (ratio > 0 ? 20 * Math.log10(ratio) : -Infinity);
const round2 = (v) => (Number.isFinite(v) ? Math.round(v * 100) / 100 : v === -Infinity ? -999 : v);

/** Output sample where steady-state analysis starts (0.5 s: well past any filter warm-up). */
const analysisStart = (outRate) => outRate / 2;

async function stopbandRejection(name, inRate, outRate) {
  const outNyquist = outRate / 2;
  const tones = [1.025, 1.1, 1.25, 1.5, 1.75, 2.5].map((k) => Math.round(k * outNyquist)).filter((f) => f < inRate / 2);
  const results = [];
  for (const f of tones) {
    const x = tone(inRate, f, REJECTION_SECONDS + 1);
    const y = await runStream(name, inRate, outRate, x);
    const from = analysisStart(outRate);
    // RMS ratio as the unit tests measure it: undithered input, so Int16 rounding sets the floor.
    const plain = tone(inRate, f, 2, false);
    const plainOut = await runStream(name, inRate, outRate, plain);
    // Where the tone folds to in the output band.
    let alias = f % outRate;
    if (alias > outNyquist) alias = outRate - alias;
    const aliasDb = db(toneAmplitude(y, outRate, alias, from, REJECTION_SECONDS) / TONE_AMPLITUDE);
    const rmsDb = db(rms(plainOut, from, from + outRate) / rms(plain, 0, plain.length));
    results.push({ toneHz: f, aliasHz: alias, aliasDb: round2(aliasDb), rmsDb: round2(rmsDb) });
  }
  const worst = Math.max(...results.map((r) => r.aliasDb));
  return { worstDb: worst, tones: results };
}

async function imageRejection(name, inRate, outRate) {
  // Not divisors of 8000, so no harmonic of the tone (from Int16 rounding) lands on an image bin.
  const tones = [317, 1009, 2003, 3001, 3407];
  const results = [];
  for (const f of tones) {
    const x = tone(inRate, f, REJECTION_SECONDS + 1);
    const y = await runStream(name, inRate, outRate, x);
    const from = analysisStart(outRate);
    const fundamental = toneAmplitude(y, outRate, f, from, REJECTION_SECONDS);
    let worstImage = 0;
    const images = [];
    for (let k = 1; k * inRate - f < outRate / 2; k++) {
      for (const img of [k * inRate - f, k * inRate + f]) {
        if (img >= outRate / 2) continue;
        const a = toneAmplitude(y, outRate, img, from, REJECTION_SECONDS);
        images.push({ imageHz: img, db: round2(db(a / fundamental)) });
        worstImage = Math.max(worstImage, a);
      }
    }
    results.push({ toneHz: f, worstImageDb: round2(db(worstImage / fundamental)), images });
  }
  return { worstDb: Math.max(...results.map((r) => r.worstImageDb)), tones: results };
}

async function passband(name, inRate, outRate) {
  const gains = [];
  for (let f = 100; f <= 3400; f += 100) {
    const x = tone(inRate, f, 2);
    const y = await runStream(name, inRate, outRate, x);
    gains.push({ hz: f, db: db(toneAmplitude(y, outRate, f, analysisStart(outRate)) / TONE_AMPLITUDE) });
  }
  const values = gains.map((g) => g.db);
  return {
    rippleDb: round2(Math.max(...values) - Math.min(...values)),
    gainAt3400Db: round2(gains[gains.length - 1].db),
    gainAt1000Db: round2(gains.find((g) => g.hz === 1000).db),
  };
}

async function throughput(name, inRate, outRate, chunkMs, minSeconds, useFloat = false) {
  const c = await makeCandidate(name, inRate, outRate);
  const step = (inRate * chunkMs) / 1000;
  // 1 s of noise (a tone would favour nothing here; content does not change the work).
  const noise = new Int16Array(inRate);
  let seed = 12345;
  for (let i = 0; i < noise.length; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    noise[i] = ((seed >>> 16) & 0x7fff) - 16384;
  }
  const chunks = [];
  for (let i = 0; i + step <= noise.length; i += step) {
    const chunk = noise.subarray(i, i + step);
    chunks.push(useFloat ? toFloat(chunk) : chunk);
  }
  const run = useFloat ? c.processFloat : c.process;
  // Warm-up: 0.25 s of work.
  let sink = 0;
  const warmEnd = performance.now() + 250;
  while (performance.now() < warmEnd) for (const ch of chunks) sink += run(ch).length;
  // >= minSeconds of work in >= 5 slices; the median slice rate shrugs off a noisy neighbour on a shared
  // machine, the CPU-time rate (whole process, incl. GC threads) over all slices is given alongside.
  const slices = [];
  let samples = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const sliceSeconds = minSeconds / 5;
  while (slices.length < 5 || performance.now() - t0 < minSeconds * 1000) {
    const s0 = performance.now();
    let sliceSamples = 0;
    do {
      for (const ch of chunks) sink += run(ch).length;
      sliceSamples += chunks.length * step;
    } while (performance.now() - s0 < sliceSeconds * 1000);
    slices.push(sliceSamples / inRate / ((performance.now() - s0) / 1000));
    samples += sliceSamples;
  }
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  c.close();
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const audioSeconds = samples / inRate;
  if (sink < 0) throw new Error('unreachable');
  slices.sort((a, b) => a - b);
  const median = slices[Math.floor(slices.length / 2)];
  return {
    xRealtime: Math.round(median),
    xRealtimeCpu: Math.round(audioSeconds / cpuSeconds),
    inputSamplesPerSec: Math.round(median * inRate),
    measuredSeconds: Math.round(elapsed * 100) / 100,
  };
}

/** Best candidate by `pick`; candidates within `tolerance` of the best tie (then an array of names). */
function winnerOf(candidates, pick, better, tolerance = 0) {
  const scored = Object.entries(candidates)
    .map(([name, result]) => ({ name, v: pick(result) }))
    .filter((c) => c.v !== undefined);
  let best = scored[0];
  for (const c of scored) if (better(c.v, best.v)) best = c;
  const tied = scored.filter((c) => Math.abs(c.v - best.v) <= tolerance).map((c) => c.name);
  return tied.length === 1 ? tied[0] : tied;
}

/**
 * @param {{ minSeconds?: number, includeBest?: boolean }} [options]
 * @returns {Promise<object>} JSON-able results per direction, with a `winner` per metric.
 */
export async function benchResampler(options = {}) {
  const minSeconds = options.minSeconds ?? 1;
  const names = ['stsgate', 'libsamplerate-fastest', 'libsamplerate-medium'];
  if (options.includeBest ?? true) names.push('libsamplerate-best');

  const directions = {};
  for (const [inRate, outRate] of DIRECTIONS) {
    const key = `${inRate / 1000}k->${outRate / 1000}k`;
    const candidates = {};
    for (const name of names) {
      const entry = {};
      if (outRate < inRate) entry.stopband = await stopbandRejection(name, inRate, outRate);
      else entry.images = await imageRejection(name, inRate, outRate);
      entry.passband = await passband(name, inRate, outRate);
      entry.throughput20ms = await throughput(name, inRate, outRate, 20, minSeconds);
      entry.throughput100ms = await throughput(name, inRate, outRate, 100, minSeconds);
      if (name !== 'stsgate') entry.throughput20msFloatIo = await throughput(name, inRate, outRate, 20, minSeconds, true);
      candidates[name] = entry;
    }
    const higher = (a, b) => a > b;
    const lower = (a, b) => a < b;
    const rejection = (r) => (r.stopband ?? r.images).worstDb;
    const speed = (key) => (r) => r[key].xRealtime;
    directions[key] = {
      candidates,
      winner: {
        // Within 3 dB of each other counts as a tie: that is the spread of the measurement near its floor.
        rejection: winnerOf(candidates, rejection, lower, 3),
        passbandRipple: winnerOf(candidates, (r) => r.passband.rippleDb, lower, 0.01),
        passbandWidth: winnerOf(candidates, (r) => Math.abs(r.passband.gainAt3400Db), lower, 0.01),
        // Within 5 %: a tie (run-to-run noise).
        throughput20ms: winnerOf(candidates, speed('throughput20ms'), higher, 0.05 * Math.max(...Object.values(candidates).map(speed('throughput20ms')))),
        throughput100ms: winnerOf(candidates, speed('throughput100ms'), higher, 0.05 * Math.max(...Object.values(candidates).map(speed('throughput100ms')))),
      },
    };
  }
  return {
    node: process.version,
    notes:
      'rejection: worst alias/image level in dB (more negative is better); throughput: x real time for one ' +
      'mono stream with Int16 in/out per chunk (libsamplerate also given as *FloatIo without conversions)',
    directions,
  };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await benchResampler();
  console.log(JSON.stringify(result, null, 2));
}
