import { describe, expect, it } from 'vitest';
import { float32ToInt16, int16ToFloat32, msToSamples, samplesToMs } from './pcm.js';

describe('pcm helpers', () => {
  it('converts between samples and milliseconds', () => {
    expect(samplesToMs(160, 8000)).toBe(20);
    expect(samplesToMs(480, 24000)).toBe(20);
    expect(samplesToMs(1, 16000)).toBe(0.0625);
    expect(msToSamples(20, 8000)).toBe(160);
    expect(msToSamples(20, 24000)).toBe(480);
    expect(msToSamples(0.07, 16000)).toBe(1); // 1.12 samples, rounded
    for (const rate of [8000, 16000, 24000, 48000]) expect(msToSamples(samplesToMs(12345, rate), rate)).toBe(12345);
  });

  it('int16ToFloat32 divides by 32768', () => {
    const f = int16ToFloat32(Int16Array.from([0, 16384, -16384, 32767, -32768, 1]));
    expect(Array.from(f)).toEqual([0, 0.5, -0.5, 32767 / 32768, -1, 1 / 32768].map(Math.fround));
  });

  it('float32ToInt16 scales, rounds and clamps (never wraps)', () => {
    const y = float32ToInt16(Float32Array.from([0, 0.5, -0.5, -1, 1, 1.5, -7, 1e-6, 100 / 32768 + 0.4 / 32768, Number.NaN]));
    expect(Array.from(y)).toEqual([0, 16384, -16384, -32768, 32767, 32767, -32768, 0, 100, 0]);
  });

  it('round-trips every int16 exactly', () => {
    const all = Int16Array.from({ length: 65536 }, (_, i) => i - 32768);
    expect(float32ToInt16(int16ToFloat32(all))).toEqual(all);
  });
});
