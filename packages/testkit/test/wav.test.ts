import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import wavefile from 'wavefile';
import { FIXTURE_NAMES, encodeWav, fixturePath, goertzel, readWav, readWavAs8k, writeWav } from '../src/index.js';

function sine(rate: number, ms: number, hz: number, amplitude: number): Int16Array {
  const out = new Int16Array((rate * ms) / 1000);
  for (let i = 0; i < out.length; i++) out[i] = Math.round(amplitude * Math.sin((2 * Math.PI * hz * i) / rate));
  return out;
}

function rms(samples: Int16Array, from = 0, to = samples.length): number {
  let sum = 0;
  for (let i = from; i < to; i++) sum += (samples[i] ?? 0) ** 2;
  return Math.sqrt(sum / (to - from));
}

describe('WAV helpers', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'stsgate-wav-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('round-trips s16 mono samples through encodeWav/readWav and writeWav', () => {
    const samples = Int16Array.from([0, 1, -1, 32767, -32768, 1234, -4321]);
    const bytes = encodeWav(samples, 8000);
    expect(bytes.length).toBe(44 + samples.length * 2);
    expect(bytes.toString('ascii', 0, 4)).toBe('RIFF');
    const decoded = readWav(bytes);
    expect(decoded.sampleRate).toBe(8000);
    expect(Array.from(decoded.samples)).toEqual(Array.from(samples));

    const path = join(dir, 'x.wav');
    writeWav(path, samples, 16000);
    const fromFile = readWav(path);
    expect(fromFile.sampleRate).toBe(16000);
    expect(Array.from(fromFile.samples)).toEqual(Array.from(samples));
  });

  it('mixes stereo down to mono', () => {
    const wav = new wavefile.WaveFile();
    wav.fromScratch(2, 8000, '16', [
      [1000, -2000, 32767],
      [3000, 2000, 32767],
    ]);
    const { samples } = readWav(wav.toBuffer());
    expect(Array.from(samples)).toEqual([2000, 0, 32767]);
  });

  it('decodes other bit depths and G.711', () => {
    const source = sine(8000, 100, 500, 16000);
    const as24 = new wavefile.WaveFile();
    as24.fromScratch(1, 8000, '16', source);
    as24.toBitDepth('24');
    const from24 = readWav(as24.toBuffer()).samples;
    expect(from24.length).toBe(source.length);
    for (let i = 0; i < source.length; i++) expect(Math.abs((from24[i] ?? 0) - (source[i] ?? 0))).toBeLessThanOrEqual(1);

    const mulaw = new wavefile.WaveFile();
    mulaw.fromScratch(1, 8000, '16', source);
    mulaw.toMuLaw();
    const fromMulaw = readWav(mulaw.toBuffer()).samples;
    expect(fromMulaw.length).toBe(source.length);
    expect(Math.abs(rms(fromMulaw) - rms(source)) / rms(source)).toBeLessThan(0.02);
  });

  it('converts 16 kHz to 8 kHz with the core resampler, keeping in-band level and removing aliases', () => {
    const inBand = readWavAs8k(encodeWav(sine(16000, 500, 1000, 10000), 16000));
    expect(Math.abs(inBand.length - 4000)).toBeLessThanOrEqual(40);
    const level = rms(inBand, 800, 3200) / (10000 / Math.SQRT2);
    expect(level).toBeGreaterThan(0.9);
    expect(level).toBeLessThan(1.1);
    // 6 kHz would alias to 2 kHz without a proper low-pass.
    const alias = readWavAs8k(encodeWav(sine(16000, 500, 6000, 10000), 16000));
    expect(rms(alias, 800, 3200)).toBeLessThan(100);
  });

  it('returns 8 kHz input unchanged', () => {
    const samples = sine(8000, 60, 300, 5000);
    expect(Array.from(readWavAs8k(encodeWav(samples, 8000)))).toEqual(Array.from(samples));
  });

  it('converts any other rate (22.05, 44.1, 11.025, 96 kHz) to 8 kHz, keeping level, pitch and timing, without aliases', () => {
    for (const rate of [44100, 22050, 11025, 96000]) {
      const converted = readWavAs8k(encodeWav(sine(rate, 1000, 1000, 10000), rate));
      expect(Math.abs(converted.length - 8000), `${rate} Hz length`).toBeLessThanOrEqual(8);
      // Level within 0.1 dB, and still a clean 1 kHz tone: in every 50 ms, the 1 kHz bin holds all but 0.1% of the energy.
      const level = rms(converted, 1600, 6400) / (10000 / Math.SQRT2);
      expect(Math.abs(20 * Math.log10(level)), `${rate} Hz level`).toBeLessThan(0.1);
      for (let from = 1600; from < 6400; from += 400) {
        const window = converted.subarray(from, from + 400);
        expect((2 * goertzel(window, 1000)) / rms(window) ** 2, `${rate} Hz pitch at ${from}`).toBeGreaterThan(0.999);
      }
      // 4.4 kHz folds to 3.6 kHz without a proper low-pass; the converter must bring it below -80 dB.
      if (rate / 2 > 4400) {
        const alias = readWavAs8k(encodeWav(sine(rate, 1000, 4400, 10000), rate));
        expect(20 * Math.log10((rms(alias, 1600, 6400) + 1e-9) / (10000 / Math.SQRT2)), `${rate} Hz alias`).toBeLessThan(-80);
      }
    }
  });

  it('rejects files that are not WAV', () => {
    expect(() => readWav(Buffer.from('definitely not a wav file'))).toThrow(/not a readable WAV/);
  });

  it('ships the speech fixtures as small 8 kHz mono files', () => {
    for (const name of FIXTURE_NAMES) {
      const { sampleRate, samples } = readWav(fixturePath(name));
      expect(sampleRate).toBe(8000);
      expect(samples.length * 2 + 44).toBeLessThan(60 * 1024);
      expect(rms(samples)).toBeGreaterThan(500);
    }
    expect(fixturePath('short')).toBe(fixturePath('short.wav'));
  });
});
