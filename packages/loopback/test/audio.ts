import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const FIXTURES = fileURLToPath(new URL('../../testkit/fixtures/', import.meta.url));

/** Reads a mono 16-bit PCM WAV fixture (8 kHz) from packages/testkit/fixtures. */
export function readFixture(name: 'greeting' | 'short' | 'question'): Int16Array {
  const bytes = readFileSync(`${FIXTURES}${name}.wav`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.toString('ascii', 0, 4) !== 'RIFF' || bytes.toString('ascii', 8, 12) !== 'WAVE') throw new Error(`${name}: not a WAV`);
  let offset = 12;
  let format: { channels: number; rate: number; bits: number } | undefined;
  while (offset + 8 <= bytes.length) {
    const id = bytes.toString('ascii', offset, offset + 4);
    const size = view.getUint32(offset + 4, true);
    const body = offset + 8;
    if (id === 'fmt ') {
      format = { channels: view.getUint16(body + 2, true), rate: view.getUint32(body + 4, true), bits: view.getUint16(body + 14, true) };
    } else if (id === 'data') {
      if (format?.channels !== 1 || format.rate !== 8000 || format.bits !== 16) throw new Error(`${name}: expected 8 kHz mono s16`);
      const samples = new Int16Array(Math.floor(Math.min(size, bytes.length - body) / 2));
      for (let i = 0; i < samples.length; i++) samples[i] = view.getInt16(body + 2 * i, true);
      return samples;
    }
    offset = body + size + (size % 2);
  }
  throw new Error(`${name}: no data chunk`);
}

export function silence(ms: number, rate = 8000): Int16Array {
  return new Int16Array(Math.round((ms * rate) / 1000));
}

/** Deterministic uniform white noise with the given peak amplitude. */
export function whiteNoise(ms: number, peak: number, seed = 1, rate = 8000): Int16Array {
  const out = new Int16Array(Math.round((ms * rate) / 1000));
  let state = seed >>> 0 || 1;
  for (let i = 0; i < out.length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    out[i] = Math.round(((state >>> 0) / 0xffffffff - 0.5) * 2 * peak);
  }
  return out;
}

export function concat(...parts: Int16Array[]): Int16Array {
  const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

export function chunks(samples: Int16Array, size: number): Int16Array[] {
  const out: Int16Array[] = [];
  for (let i = 0; i < samples.length; i += size) out.push(samples.slice(i, i + size));
  return out;
}

/** Power of `frequency` in `samples` (Goertzel), normalised by length. */
export function goertzel(samples: Int16Array, frequency: number, rate = 8000): number {
  const coefficient = 2 * Math.cos((2 * Math.PI * frequency) / rate);
  let s1 = 0;
  let s2 = 0;
  for (const x of samples) {
    const s0 = x + coefficient * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  return (s1 * s1 + s2 * s2 - coefficient * s1 * s2) / samples.length ** 2;
}

/** Offset of `needle` in `haystack` with the highest normalised correlation, and that correlation. */
export function bestAlignment(haystack: Int16Array, needle: Int16Array): { offset: number; correlation: number } {
  let needleEnergy = 0;
  for (const x of needle) needleEnergy += x * x;
  let best = { offset: -1, correlation: -Infinity };
  for (let offset = 0; offset + needle.length <= haystack.length; offset++) {
    let dot = 0;
    let energy = 0;
    for (let i = 0; i < needle.length; i++) {
      const h = haystack[offset + i] as number;
      dot += h * (needle[i] as number);
      energy += h * h;
    }
    const correlation = dot / Math.sqrt(needleEnergy * energy + 1e-9);
    if (correlation > best.correlation) best = { offset, correlation };
  }
  return best;
}

/** First and last sample (exclusive) of 10 ms blocks louder than `dbfs`: the audible extent of a recording. */
export function audibleSpan(samples: Int16Array, dbfs = -45, rate = 8000): { start: number; end: number } {
  const block = rate / 100;
  let start = -1;
  let end = -1;
  for (let i = 0; i + block <= samples.length; i += block) {
    let energy = 0;
    for (let j = i; j < i + block; j++) energy += (samples[j] as number) ** 2;
    const level = 10 * Math.log10(energy / block / 32768 ** 2 + 1e-12);
    if (level > dbfs) {
      if (start < 0) start = i;
      end = i + block;
    }
  }
  if (start < 0) throw new Error('no audible audio');
  return { start, end };
}
