// Resampler benchmark: our polyphase FIR (@stsgate/core, built dist) against libsamplerate (WASM port,
// @alexanderolsen/libsamplerate-js) in streaming ("full" API) mode, fed the way the gateway feeds it:
// Int16 PCM in 20 ms or 100 ms chunks, Int16 PCM out (round + clamp).
//
// Quality metrics are measured on the Int16 output of a 2 s tone, analysing 1 s of steady state with a
// single-bin DFT at integer frequencies (exact bins, no window needed):
//   - stopband (downsampling): level of the alias of a tone above the new Nyquist, dB re. the input tone
//     (TPDF-dithered input, see tone()), plus the whole-signal output/input RMS ratio for an undithered tone
//     (how the unit tests measure it; Int16 rounding floors it near -92 dB, -999 = all-zero output);
//   - images (upsampling): level of the images at k*inputRate +- f, dB re. the output fundamental;
//   - passband ripple: max - min gain over 100..3400 Hz (the telephony band), and the gain at 3400 Hz.
// Throughput: x real time and input samples/s over >= `minSeconds` of work after a warm-up.
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
 * A tone plus TPDF dither of +-2 LSB (deterministic). The dither keeps the converter's Int16 output rounding
 * linear, so a 1 s single-bin DFT resolves alias/image levels far below 1 LSB (floor around -125 dB)
 * instead of reporting rounding noise or an all-zero output.
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
    const dither = dithered ? 2 * (uniform() + uniform()) : 0;
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

/** Amplitude of the integer frequency `freq` in x[from, from + rate) (exactly one second: exact bin). */
function toneAmplitude(x, rate, freq, from) {
  let re = 0;
  let im = 0;
  const w = (2 * Math.PI * freq) / rate;
  for (let i = 0; i < rate; i++) {
    const v = x[from + i];
    re += v * Math.cos(w * i);
    im -= v * Math.sin(w * i);
  }
  return (2 * Math.hypot(re, im)) / rate;
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
    const x = tone(inRate, f, 2);
    const y = await runStream(name, inRate, outRate, x);
    const from = analysisStart(outRate);
    // RMS ratio as the unit tests measure it: undithered input, so Int16 rounding sets the floor.
    const plain = tone(inRate, f, 2, false);
    const plainOut = await runStream(name, inRate, outRate, plain);
    // Where the tone folds to in the output band.
    let alias = f % outRate;
    if (alias > outNyquist) alias = outRate - alias;
    const aliasDb = db(toneAmplitude(y, outRate, alias, from) / TONE_AMPLITUDE);
    const rmsDb = db(rms(plainOut, from, from + outRate) / rms(plain, 0, plain.length));
    results.push({ toneHz: f, aliasHz: alias, aliasDb: round2(aliasDb), rmsDb: round2(rmsDb) });
  }
  const worst = Math.max(...results.map((r) => r.aliasDb));
  return { worstDb: worst, tones: results };
}

async function imageRejection(name, inRate, outRate) {
  const tones = [300, 1000, 2000, 3000, 3400];
  const results = [];
  for (const f of tones) {
    const x = tone(inRate, f, 2);
    const y = await runStream(name, inRate, outRate, x);
    const from = analysisStart(outRate);
    const fundamental = toneAmplitude(y, outRate, f, from);
    let worstImage = 0;
    const images = [];
    for (let k = 1; k * inRate - f < outRate / 2; k++) {
      for (const img of [k * inRate - f, k * inRate + f]) {
        if (img >= outRate / 2) continue;
        const a = toneAmplitude(y, outRate, img, from);
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
  let samples = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let elapsed = 0;
  do {
    for (const ch of chunks) sink += run(ch).length;
    samples += chunks.length * step;
    elapsed = (performance.now() - t0) / 1000;
  } while (elapsed < minSeconds);
  const cpu = process.cpuUsage(cpu0);
  c.close();
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const audioSeconds = samples / inRate;
  if (sink < 0) throw new Error('unreachable');
  return {
    xRealtime: Math.round(audioSeconds / elapsed),
    xRealtimeCpu: Math.round(audioSeconds / cpuSeconds),
    inputSamplesPerSec: Math.round(samples / elapsed),
  };
}

function winnerOf(candidates, pick, better) {
  let best;
  for (const [name, result] of Object.entries(candidates)) {
    const v = pick(result);
    if (v === undefined) continue;
    if (best === undefined || better(v, best.v)) best = { name, v };
  }
  return best?.name;
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
    directions[key] = {
      candidates,
      winner: {
        rejection: winnerOf(candidates, rejection, lower),
        passbandRipple: winnerOf(candidates, (r) => r.passband.rippleDb, lower),
        passbandWidth: winnerOf(candidates, (r) => r.passband.gainAt3400Db, (a, b) => Math.abs(a) < Math.abs(b)),
        throughput20ms: winnerOf(candidates, (r) => r.throughput20ms.xRealtime, higher),
        throughput100ms: winnerOf(candidates, (r) => r.throughput100ms.xRealtime, higher),
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
