import { describe, expect, it } from 'vitest';
import { Segmenter } from '../src/segmenter.js';
import type { SegmentEvent } from '../src/segmenter.js';

const FRAME = 256; // 32 ms at 8 kHz

function run(probabilities: number[], overrides: Partial<ConstructorParameters<typeof Segmenter>[0]> = {}): SegmentEvent[] {
  const segmenter = new Segmenter({
    threshold: 0.5,
    negThreshold: 0.35,
    minSpeechSamples: 3 * FRAME,
    minSilenceSamples: 4 * FRAME,
    maxSpeechSamples: 1000 * FRAME,
    ...overrides,
  });
  return probabilities.flatMap((p, i) => segmenter.push(p, i * FRAME, (i + 1) * FRAME));
}

describe('Segmenter', () => {
  it('confirms speech after minSpeech, ends it after minSilence at the first silent frame', () => {
    const events = run([0, 0, 0.9, 0.9, 0.9, 0.9, 0, 0, 0, 0, 0, 0]);
    expect(events).toEqual([
      { type: 'start', at: 2 * FRAME },
      { type: 'end', start: 2 * FRAME, end: 6 * FRAME },
    ]);
  });

  it('reports a misfire for a burst shorter than minSpeech', () => {
    expect(run([0, 0.9, 0.9, 0, 0, 0, 0, 0])).toEqual([{ type: 'misfire', start: FRAME, end: 3 * FRAME }]);
  });

  it('bridges pauses shorter than minSilence and ambiguous frames (hysteresis)', () => {
    const events = run([0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.9, 0.4, 0.4, 0.4, 0.4, 0.4, 0.9, 0, 0, 0, 0]);
    expect(events).toEqual([
      { type: 'start', at: 0 },
      { type: 'end', start: 0, end: 13 * FRAME },
    ]);
  });

  it('ambiguous frames do not interrupt a silence run', () => {
    expect(run([0.9, 0.9, 0.9, 0.1, 0.4, 0.4, 0.4, 0.9])).toEqual([
      { type: 'start', at: 0 },
      { type: 'end', start: 0, end: 3 * FRAME },
    ]);
  });

  it('splits a confirmed segment at maxSpeech', () => {
    const events = run(new Array<number>(10).fill(0.9), { maxSpeechSamples: 5 * FRAME });
    expect(events).toEqual([
      { type: 'start', at: 0 },
      { type: 'end', start: 0, end: 5 * FRAME },
      { type: 'start', at: 5 * FRAME },
      { type: 'end', start: 5 * FRAME, end: 10 * FRAME },
    ]);
  });

  it('never fires on silence', () => {
    expect(run(new Array<number>(200).fill(0.2))).toEqual([]);
  });
});
