// Generates the speech fixtures in packages/testkit/fixtures/ with eSpeak NG (WASM, fully offline).
//
// Output: 8 kHz, mono, PCM s16le WAV. eSpeak NG renders at 22050 Hz; we convert to 8000 Hz here with a
// Kaiser-windowed-sinc polyphase low-pass (cutoff 3500 Hz, ~80 dB stopband from ~3900 Hz), because the core
// streaming resampler only handles telephony/wideband rates. Everything is integer-indexed and free of
// randomness, so running the script twice produces identical bytes.
//
// Usage: pnpm --filter @stsgate/testkit fixtures   (or: node packages/testkit/scripts/make-fixtures.mjs)
//        add --check to verify the committed files instead of writing them (exit 1 when they differ)

import { Buffer } from 'node:buffer';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import process from 'node:process';
import { URL, fileURLToPath } from 'node:url';
import ESpeakNg from 'espeak-ng';

const FIXTURES = [
  { file: 'greeting.wav', text: 'Hello, I would like to book an appointment for tomorrow morning.' },
  { file: 'short.wav', text: 'Yes, please.' },
  { file: 'question.wav', text: 'What time do you open on Saturday?' },
];

const VOICE = 'en-us';
const WORDS_PER_MINUTE = 175;
const OUT_RATE = 8000;
const PAD_MS = 150; // silence kept before and after the speech
const TRIM_THRESHOLD = 48; // |sample| below this at either end counts as silence when trimming
const MAX_BYTES = 60 * 1024;

const outDir = fileURLToPath(new URL('../fixtures/', import.meta.url));

/** Run the eSpeak NG CLI inside a fresh WASM instance and return its WAV output. */
async function synthesize(text) {
  const espeak = await ESpeakNg({
    arguments: ['-v', VOICE, '-s', String(WORDS_PER_MINUTE), '-w', '/out.wav', text],
    print: () => {},
    printErr: (line) => process.stderr.write(`espeak-ng: ${line}\n`),
  });
  return Buffer.from(espeak.FS.readFile('/out.wav'));
}

/** Minimal RIFF reader for eSpeak's output: PCM 16-bit mono. Walks chunks (does not assume 44 bytes). */
function parsePcm16MonoWav(buf) {
  if (buf.toString('ascii', 0, 4) !== 'RIFF' || buf.toString('ascii', 8, 12) !== 'WAVE') {
    throw new Error('espeak-ng did not produce a RIFF/WAVE file');
  }
  let offset = 12;
  let fmt;
  while (offset + 8 <= buf.length) {
    const id = buf.toString('ascii', offset, offset + 4);
    let size = buf.readUInt32LE(offset + 4);
    const body = offset + 8;
    if (id === 'fmt ') {
      fmt = {
        format: buf.readUInt16LE(body),
        channels: buf.readUInt16LE(body + 2),
        sampleRate: buf.readUInt32LE(body + 4),
        bits: buf.readUInt16LE(body + 14),
      };
    } else if (id === 'data') {
      if (!fmt) throw new Error('WAV data chunk before fmt chunk');
      if (fmt.format !== 1 || fmt.channels !== 1 || fmt.bits !== 16) {
        throw new Error(`unexpected espeak-ng format ${JSON.stringify(fmt)}`);
      }
      // eSpeak writing to a non-seekable/unfinished stream may leave the size field at a placeholder.
      if (size === 0 || size === 0xffffffff || body + size > buf.length) size = buf.length - body;
      const samples = new Int16Array(size >> 1);
      for (let i = 0; i < samples.length; i++) samples[i] = buf.readInt16LE(body + i * 2);
      return { sampleRate: fmt.sampleRate, samples };
    }
    offset = body + size + (size & 1);
  }
  throw new Error('WAV file has no data chunk');
}

function gcd(a, b) {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** Zeroth-order modified Bessel function of the first kind (power series), for the Kaiser window. */
function besselI0(x) {
  let sum = 1;
  let term = 1;
  const q = (x / 2) ** 2;
  for (let k = 1; k < 64; k++) {
    term *= q / (k * k);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return sum;
}

/**
 * Rational-ratio polyphase resampler (offline, whole signal). Output sample n sits at input position
 * n * down / up; each of the `up` fractional phases gets its own windowed-sinc kernel normalised to unity
 * DC gain. The cutoff is placed below the lower Nyquist frequency so nothing aliases into the band.
 */
function resample(input, inRate, outRate, { cutoffHz = 3500, halfTaps = 96, beta = 8.0 } = {}) {
  if (inRate === outRate) return Int16Array.from(input);
  const g = gcd(inRate, outRate);
  const up = outRate / g;
  const down = inRate / g;
  const fc = cutoffHz / inRate; // cycles per input sample
  if (fc >= Math.min(inRate, outRate) / (2 * inRate)) throw new Error('cutoff must be below both Nyquists');
  const taps = 2 * halfTaps;
  const i0Beta = besselI0(beta);
  const kernels = [];
  for (let phase = 0; phase < up; phase++) {
    const frac = phase / up;
    const kernel = new Float64Array(taps);
    let sum = 0;
    for (let j = 0; j < taps; j++) {
      // Tap j multiplies input sample (base - halfTaps + 1 + j); d is its distance from the output position.
      const d = j - halfTaps + 1 - frac;
      const x = 2 * fc * d;
      const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
      const r = d / halfTaps;
      const w = Math.abs(r) >= 1 ? 0 : besselI0(beta * Math.sqrt(1 - r * r)) / i0Beta;
      kernel[j] = 2 * fc * sinc * w;
      sum += kernel[j];
    }
    for (let j = 0; j < taps; j++) kernel[j] /= sum;
    kernels.push(kernel);
  }
  const outLength = Math.floor(((input.length - 1) * up) / down) + 1;
  const out = new Int16Array(outLength);
  for (let n = 0; n < outLength; n++) {
    const pos = n * down;
    const base = Math.floor(pos / up);
    const kernel = kernels[pos - base * up];
    const first = base - halfTaps + 1;
    let acc = 0;
    for (let j = 0; j < taps; j++) {
      const k = first + j;
      if (k >= 0 && k < input.length) acc += input[k] * kernel[j];
    }
    out[n] = Math.max(-32768, Math.min(32767, Math.round(acc)));
  }
  return out;
}

/** Trim near-silence at both ends, then pad with exactly PAD_MS of digital silence on each side. */
function trimAndPad(samples, rate) {
  let start = 0;
  let end = samples.length;
  while (start < end && Math.abs(samples[start]) < TRIM_THRESHOLD) start++;
  while (end > start && Math.abs(samples[end - 1]) < TRIM_THRESHOLD) end--;
  const pad = Math.round((PAD_MS * rate) / 1000);
  const out = new Int16Array(end - start + 2 * pad);
  out.set(samples.subarray(start, end), pad);
  return out;
}

function encodeWav(samples, rate) {
  const dataBytes = samples.length * 2;
  const buf = Buffer.alloc(44 + dataBytes);
  buf.write('RIFF', 0, 'ascii');
  buf.writeUInt32LE(36 + dataBytes, 4);
  buf.write('WAVE', 8, 'ascii');
  buf.write('fmt ', 12, 'ascii');
  buf.writeUInt32LE(16, 16);
  buf.writeUInt16LE(1, 20); // PCM
  buf.writeUInt16LE(1, 22); // mono
  buf.writeUInt32LE(rate, 24);
  buf.writeUInt32LE(rate * 2, 28);
  buf.writeUInt16LE(2, 32);
  buf.writeUInt16LE(16, 34);
  buf.write('data', 36, 'ascii');
  buf.writeUInt32LE(dataBytes, 40);
  for (let i = 0; i < samples.length; i++) buf.writeInt16LE(samples[i], 44 + i * 2);
  return buf;
}

const check = process.argv.includes('--check');
if (!check) mkdirSync(outDir, { recursive: true });
let stale = 0;
for (const { file, text } of FIXTURES) {
  const { sampleRate, samples } = parsePcm16MonoWav(await synthesize(text));
  const pcm8k = trimAndPad(resample(samples, sampleRate, OUT_RATE), OUT_RATE);
  const wav = encodeWav(pcm8k, OUT_RATE);
  if (wav.length > MAX_BYTES) throw new Error(`${file} is ${wav.length} bytes (limit ${MAX_BYTES}); shorten the text`);
  const path = `${outDir}${file}`;
  const seconds = (pcm8k.length / OUT_RATE).toFixed(2);
  if (check) {
    const same = existsSync(path) && readFileSync(path).equals(wav);
    if (!same) stale++;
    process.stdout.write(`${file}: ${same ? 'up to date' : 'DIFFERS from a fresh render'}\n`);
  } else {
    writeFileSync(path, wav);
    process.stdout.write(`${file}: ${wav.length} bytes, ${seconds} s (from ${sampleRate} Hz) "${text}"\n`);
  }
}
if (stale > 0) {
  process.stderr.write(`${stale} fixture(s) out of date: run "pnpm --filter @stsgate/testkit fixtures"\n`);
  process.exitCode = 1;
}
