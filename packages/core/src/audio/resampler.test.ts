import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { SampleRate } from '../contracts/common.js';
import { createResampler } from './resampler.js';

const RATES: SampleRate[] = [8000, 16000, 24000, 48000];
const PAIRS: [SampleRate, SampleRate][] = RATES.flatMap((a) => RATES.filter((b) => b !== a).map((b): [SampleRate, SampleRate] => [a, b]));
const AMPLITUDE = 0.9 * 32767;

/** Deterministic PRNG (LCG) so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

function tone(rate: number, freq: number, samples: number, amplitude = AMPLITUDE): Int16Array {
  const x = new Int16Array(samples);
  for (let i = 0; i < samples; i++) x[i] = Math.round(amplitude * Math.sin((2 * Math.PI * freq * i) / rate));
  return x;
}

function noise(samples: number, seed: number): Int16Array {
  const next = rng(seed);
  return Int16Array.from({ length: samples }, () => Math.round((next() - 0.5) * 50000));
}

function concat(parts: Int16Array[]): Int16Array {
  const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function rms(x: Int16Array, from = 0, to = x.length): number {
  let s = 0;
  for (let i = from; i < to; i++) s += (x[i] as number) ** 2;
  return Math.sqrt(s / (to - from));
}

/** Amplitude of `freq` over x[from, from + n), n covering whole periods (exact DFT bin). */
function toneAmplitude(x: Int16Array, rate: number, freq: number, from: number, n: number): number {
  let re = 0;
  let im = 0;
  for (let i = 0; i < n; i++) {
    const v = x[from + i] as number;
    re += v * Math.cos((2 * Math.PI * freq * i) / rate);
    im -= v * Math.sin((2 * Math.PI * freq * i) / rate);
  }
  return (2 * Math.hypot(re, im)) / n;
}

const db = (ratio: number): number => 20 * Math.log10(ratio);

/** One second of a tone through a fresh resampler; returns the steady-state output (warm-up discarded). */
function steadyState(inRate: SampleRate, outRate: SampleRate, freq: number): { x: Int16Array; y: Int16Array } {
  const x = tone(inRate, freq, inRate);
  const y = createResampler(inRate, outRate).process(x);
  // Discard 0.1 s at both ends (filter warm-up; the tail has not been flushed).
  return { x, y: y.subarray(outRate / 10, outRate - outRate / 10) };
}

describe('createResampler', () => {
  it('rejects unsupported rates', () => {
    expect(() => createResampler(44100 as SampleRate, 8000)).toThrow(RangeError);
    expect(() => createResampler(8000, 11025 as SampleRate)).toThrow(RangeError);
  });

  it('is an identity returning the very same array for equal rates', () => {
    for (const rate of RATES) {
      const r = createResampler(rate, rate);
      expect(r.inputRate).toBe(rate);
      expect(r.outputRate).toBe(rate);
      const x = noise(100, 1);
      expect(r.process(x)).toBe(x);
      expect(r.flush()).toHaveLength(0);
    }
  });

  it('reports its rates', () => {
    const r = createResampler(24000, 8000);
    expect(r.inputRate).toBe(24000);
    expect(r.outputRate).toBe(8000);
  });
});

describe('resampler passband', () => {
  it.each(PAIRS)('%i -> %i keeps a 1 kHz tone at its amplitude (±0.5 dB, measured ±0.01), frequency and phase', (inRate, outRate) => {
    const { y } = steadyState(inRate, outRate, 1000);
    const n = (outRate * 8) / 10; // 0.8 s: whole periods of 1 kHz
    const amplitude = toneAmplitude(y, outRate, 1000, 0, n);
    const gain = db(amplitude / AMPLITUDE);
    expect(Math.abs(gain)).toBeLessThan(0.5);
    expect(Math.abs(gain)).toBeLessThan(0.01);
    // All the energy is at 1 kHz: the tone's RMS is amplitude / sqrt 2.
    expect(db(rms(y, 0, n) / (amplitude / Math.SQRT2))).toBeCloseTo(0, 2);
    // Delay is compensated: output n sits at input time n / outRate, so it matches the ideal sine.
    const offset = outRate / 10;
    let worst = 0;
    for (let i = 0; i < n; i++) {
      const ideal = AMPLITUDE * Math.sin((2 * Math.PI * 1000 * (i + offset)) / outRate);
      worst = Math.max(worst, Math.abs((y[i] as number) - ideal));
    }
    expect(worst).toBeLessThan(3);
  });

  it('is flat within 0.05 dB across the telephony band (100..3400 Hz) at 24k -> 8k and 8k -> 24k', () => {
    for (const [inRate, outRate] of [[24000, 8000], [8000, 24000], [16000, 8000]] as const) {
      for (let f = 100; f <= 3400; f += 300) {
        const { y } = steadyState(inRate, outRate, f);
        const gain = db(toneAmplitude(y, outRate, f, 0, (outRate * 8) / 10) / AMPLITUDE);
        expect(Math.abs(gain), `${inRate}->${outRate} at ${f} Hz`).toBeLessThan(0.05);
      }
    }
  });
});

describe('resampler anti-aliasing', () => {
  // Output RMS vs input RMS after the warm-up. The project target is 80 dB at 24k -> 8k; the design gives
  // more, but Int16 rounding of the output sets a floor around 92-100 dB for this measurement.
  const cases: [SampleRate, SampleRate, number[]][] = [
    [24000, 8000, [4100, 5000, 7000, 11000]],
    [16000, 8000, [4100, 5000, 7000]],
    [48000, 8000, [5000, 7000, 20000]],
    [24000, 16000, [9000, 11000]],
    [48000, 16000, [9000, 20000]],
    [48000, 24000, [13000, 20000]],
  ];
  it.each(cases)('%i -> %i rejects tones above the new Nyquist by >= 80 dB', (inRate, outRate, tones) => {
    for (const f of tones) {
      const { x, y } = steadyState(inRate, outRate, f);
      const rejection = -db(Math.max(rms(y), 1e-9) / rms(x));
      expect(rejection, `${f} Hz`).toBeGreaterThanOrEqual(80);
    }
  });

  it('also holds for a full-scale tone just above the new Nyquist (24k -> 8k, 4.05 kHz)', () => {
    const { x, y } = steadyState(24000, 8000, 4050);
    expect(-db(Math.max(rms(y), 1e-9) / rms(x))).toBeGreaterThanOrEqual(80);
  });

  const upCases: [SampleRate, SampleRate][] = [
    [8000, 16000],
    [8000, 24000],
    [8000, 48000],
    [16000, 24000],
    [16000, 48000],
    [24000, 48000],
  ];
  it.each(upCases)('%i -> %i rejects the images of a 1 kHz and a 3 kHz tone by >= 80 dB', (inRate, outRate) => {
    for (const f of [1000, 3000]) {
      const { y } = steadyState(inRate, outRate, f);
      const n = (outRate * 8) / 10;
      const fundamental = toneAmplitude(y, outRate, f, 0, n);
      for (let k = 1; k * inRate - f < outRate / 2; k++) {
        for (const image of [k * inRate - f, k * inRate + f]) {
          if (image >= outRate / 2) continue;
          const level = db(toneAmplitude(y, outRate, image, 0, n) / fundamental);
          expect(level, `image at ${image} Hz of ${f} Hz`).toBeLessThanOrEqual(-80);
        }
      }
      // And overall: everything but the fundamental (incl. Int16 rounding) is >= 80 dB down.
      let residual = 0;
      const offset = outRate / 10;
      for (let i = 0; i < n; i++) {
        const ideal = fundamental * Math.sin((2 * Math.PI * f * (i + offset)) / outRate);
        residual += ((y[i] as number) - ideal) ** 2;
      }
      expect(db(Math.sqrt(residual / n) / (fundamental / Math.SQRT2))).toBeLessThanOrEqual(-80);
    }
  });
});

describe('resampler clamping', () => {
  it.each(PAIRS)('%i -> %i clamps the overshoot of a full-scale square wave instead of wrapping', (inRate, outRate) => {
    // 100 Hz square wave at full scale: Gibbs overshoot of the band-limited edges exceeds int16.
    const half = inRate / 200;
    const x = Int16Array.from({ length: inRate }, (_, i) => (Math.floor(i / half) % 2 === 0 ? 32767 : -32768));
    const r = createResampler(inRate, outRate);
    const y = concat([r.process(x), r.flush()]);
    expect(y).toHaveLength(outRate);
    let clippedHigh = 0;
    let clippedLow = 0;
    for (let n = 0; n < y.length; n++) {
      const v = y[n] as number;
      if (v === 32767) clippedHigh++;
      if (v === -32768) clippedLow++;
      // The input level at output n's time (delay is compensated; the band-limited edge crosses zero midway
      // between two input samples, hence the nearest sample). A wrapped overshoot would show up as a large
      // value of the opposite sign; only samples in an edge's transition may cross zero.
      const inputLevel = x[Math.min(x.length - 1, Math.round((n * inRate) / outRate))] as number;
      if (Math.sign(v) !== Math.sign(inputLevel) && Math.abs(v) > 20000) {
        expect.fail(`sign flip at output ${n}: ${v} while the input is ${inputLevel}`);
      }
    }
    expect(clippedHigh).toBeGreaterThan(0);
    expect(clippedLow).toBeGreaterThan(0);
  });
});

describe('resampler streaming', () => {
  it.each(PAIRS)('%i -> %i gives identical output for random chunk sizes and one shot', (inRate, outRate) => {
    const x = noise(inRate * 2 + 17, inRate + outRate);
    const oneShot = createResampler(inRate, outRate);
    const expected = concat([oneShot.process(x), oneShot.flush()]);

    const next = rng(outRate);
    const r = createResampler(inRate, outRate);
    const parts: Int16Array[] = [];
    for (let i = 0; i < x.length; ) {
      const size = next() < 0.1 ? Math.floor(next() * 3) : Math.floor(next() * 1500); // includes 0, 1, 2
      parts.push(r.process(x.subarray(i, i + size)));
      i += size;
    }
    parts.push(r.flush());
    expect(concat(parts)).toEqual(expected);
  });

  it.each(PAIRS)('%i -> %i outputs input * ratio over a long stream (exactly, after flush)', (inRate, outRate) => {
    const r = createResampler(inRate, outRate);
    const chunk = noise(inRate / 50, 7); // 20 ms
    let produced = 0;
    const chunks = 500; // 10 s
    for (let i = 0; i < chunks; i++) produced += r.process(chunk).length;
    const expected = (chunks * chunk.length * outRate) / inRate;
    // Before flush, only the filter's look-ahead (< 10 ms) is missing.
    expect(produced).toBeLessThanOrEqual(expected);
    expect(expected - produced).toBeLessThan(outRate / 100);
    produced += r.flush().length;
    expect(produced).toBe(expected);
  });

  it('handles a very large chunk among small ones (processed in pieces through the kernel)', () => {
    const big = noise(240_000, 21); // 10 s at 24 kHz
    const small = noise(480, 22);
    const streamed = createResampler(24000, 8000);
    const parts = [streamed.process(small), streamed.process(big), streamed.process(small), streamed.process(small)];
    parts.push(streamed.flush());
    const reference = createResampler(24000, 8000);
    const x = concat([small, big, small, small]);
    const refParts: Int16Array[] = [];
    for (let i = 0; i < x.length; i += 480) refParts.push(reference.process(x.subarray(i, i + 480)));
    refParts.push(reference.flush());
    expect(concat(parts)).toEqual(concat(refParts));
  });

  it('rounds the flushed length up for odd input lengths', () => {
    const r = createResampler(24000, 8000);
    expect(r.process(new Int16Array(10)).length + r.flush().length).toBe(4); // ceil(10 / 3)
    const u = createResampler(16000, 24000);
    expect(u.process(new Int16Array(5)).length + u.flush().length).toBe(8); // ceil(7.5)
  });

  it('returns nothing for an empty stream and empty chunks', () => {
    const r = createResampler(8000, 24000);
    expect(r.process(new Int16Array(0))).toHaveLength(0);
    expect(r.flush()).toHaveLength(0);
  });

  it('reset() and flush() return the instance to its initial state', () => {
    const x = noise(4000, 3);
    const fresh = createResampler(24000, 16000);
    const expected = concat([fresh.process(x), fresh.flush()]);

    const r = createResampler(24000, 16000);
    r.process(noise(1234, 9));
    r.reset();
    expect(concat([r.process(x), r.flush()])).toEqual(expected);
    // flush() also resets: the next stream starts clean.
    expect(concat([r.process(x), r.flush()])).toEqual(expected);
  });

  it('keeps independent state per instance', () => {
    const a = createResampler(24000, 8000);
    const b = createResampler(24000, 8000);
    const x = noise(2400, 5);
    const ya = a.process(x);
    b.process(noise(2400, 6));
    const a2 = createResampler(24000, 8000);
    expect(a2.process(x)).toEqual(ya);
  });

  it('stays silent on silence and is linear in sign', () => {
    const r = createResampler(8000, 24000);
    expect(r.process(new Int16Array(800)).every((v) => v === 0)).toBe(true);
    const x = noise(800, 11).map((v) => Math.max(-32767, v));
    const neg = x.map((v) => -v);
    const y = createResampler(8000, 24000).process(x);
    const yn = createResampler(8000, 24000).process(neg);
    // Rounding is symmetric (half to even), but Int16 is not: a clamped -32768 comes back as 32767.
    for (let i = 0; i < y.length; i++) expect(Math.abs((y[i] as number) + (yn[i] as number))).toBeLessThanOrEqual(1);
  });
});

describe('resampler kernel', () => {
  it('is the WebAssembly that wasm/resampler-kernel.wat assembles to (the generated module never drifts)', () => {
    const script = fileURLToPath(new URL('../../scripts/build-resampler-wasm.mjs', import.meta.url));
    // Exits 1, naming the file, if the committed resampler-kernel.ts differs.
    expect(() => execFileSync(process.execPath, [script, '--check'], { stdio: 'pipe' })).not.toThrow();
  });

  it('runs 2000 instances at once (1000 calls), each with its own memory and state', () => {
    const x = noise(480, 31);
    const expected = createResampler(24000, 8000).process(x);
    const instances = Array.from({ length: 2000 }, (_, i) => createResampler(i % 2 === 0 ? 24000 : 8000, i % 2 === 0 ? 8000 : 24000));
    for (const [i, r] of instances.entries()) if (i % 2 === 1) r.process(noise(160, i));
    for (const [i, r] of instances.entries()) if (i % 2 === 0) expect(r.process(x)).toEqual(expected);
  });
});
