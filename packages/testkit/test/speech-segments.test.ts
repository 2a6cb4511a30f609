import { describe, expect, it } from 'vitest';
import { detectSpeechSegments, fixturePath, readWav } from '../src/index.js';

/** 8 kHz tone bursts: [startMs, endMs, amplitude] */
function bursts(totalMs: number, parts: readonly (readonly [number, number, number])[]): Int16Array {
  const out = new Int16Array(totalMs * 8);
  for (const [from, to, amplitude] of parts) {
    for (let i = from * 8; i < to * 8; i++) out[i] = Math.round(amplitude * Math.sin((2 * Math.PI * 440 * i) / 8000));
  }
  return out;
}

describe('detectSpeechSegments', () => {
  it('finds one utterance in each speech fixture, inside the 150 ms silence padding', () => {
    for (const name of ['greeting', 'short', 'question'] as const) {
      const { sampleRate, samples } = readWav(fixturePath(name));
      expect(sampleRate).toBe(8000);
      const durationMs = samples.length / 8;
      const segments = detectSpeechSegments(samples);
      expect(segments, name).toHaveLength(1);
      const [segment] = segments;
      expect(segment?.startMs).toBeGreaterThanOrEqual(140);
      expect(segment?.startMs).toBeLessThan(300);
      expect(segment?.endMs).toBeLessThanOrEqual(durationMs - 120); // 150 ms pad, 20 ms frame granularity
      expect(segment?.endMs).toBeGreaterThan(durationMs - 500);
    }
  });

  it('splits "Yes, please." at the comma with a short hangover', () => {
    const { samples } = readWav(fixturePath('short'));
    expect(detectSpeechSegments(samples, { hangoverMs: 200 })).toHaveLength(2);
  });

  it('bridges pauses shorter than the hangover and splits longer ones', () => {
    const signal = bursts(3000, [
      [100, 400, 8000],
      [600, 900, 8000], // 200 ms pause: same segment
      [1500, 1800, 8000], // 600 ms pause: new segment
    ]);
    expect(detectSpeechSegments(signal)).toEqual([
      { startMs: 100, endMs: 900 },
      { startMs: 1500, endMs: 1800 },
    ]);
  });

  it('ignores quiet signals and clicks shorter than minSpeechMs', () => {
    const quiet = bursts(1000, [[100, 800, 200]]); // about -47 dBFS RMS
    expect(detectSpeechSegments(quiet)).toEqual([]);
    const click = bursts(1000, [[500, 520, 20000]]);
    expect(detectSpeechSegments(click)).toEqual([]);
    expect(detectSpeechSegments(click, { minSpeechMs: 20 })).toEqual([{ startMs: 500, endMs: 520 }]);
  });

  it('honours a custom threshold and sample rate', () => {
    const quiet = bursts(1000, [[100, 800, 200]]);
    expect(detectSpeechSegments(quiet, { thresholdDbfs: -50 })).toEqual([{ startMs: 100, endMs: 800 }]);
    const at16k = new Int16Array(16000).fill(10000, 3200, 6400); // 200-400 ms at 16 kHz
    expect(detectSpeechSegments(at16k, { sampleRate: 16000 })).toEqual([{ startMs: 200, endMs: 400 }]);
  });
});
