import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CallerAudioBatcher } from './caller-audio-batcher.js';
import { systemClock } from './clock.js';

const frame = (value: number, samples = 160) => new Int16Array(samples).fill(value);

function setup(initialFrames: number) {
  let frames = initialFrames;
  const sent: Int16Array[] = [];
  const batcher = new CallerAudioBatcher((samples) => sent.push(samples), () => frames, systemClock());
  return { batcher, sent, setFrames: (value: number) => void (frames = value) };
}

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe('CallerAudioBatcher', () => {
  it('passes each frame on as it arrives with one frame per send', () => {
    const { batcher, sent } = setup(1);
    const first = frame(1);
    batcher.push(first);
    batcher.push(frame(2));
    expect(sent).toHaveLength(2);
    // No copy on the default path.
    expect(sent[0]).toBe(first);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('sends two frames as one, in order, with two per send', () => {
    const { batcher, sent } = setup(2);
    batcher.push(frame(1));
    expect(sent).toHaveLength(0);
    expect(vi.getTimerCount()).toBe(1);
    batcher.push(frame(2));
    batcher.push(frame(3));
    batcher.push(frame(4));
    expect(sent.map((samples) => [samples.length, samples[0], samples[159], samples[160], samples[319]])).toEqual([
      [320, 1, 1, 2, 2],
      [320, 3, 3, 4, 4],
    ]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('counts samples, not messages: a peer sending 10 ms chunks fills a 40 ms batch with four', () => {
    const { batcher, sent } = setup(2);
    for (let i = 1; i <= 4; i++) batcher.push(frame(i, 80));
    expect(sent.map((samples) => samples.length)).toEqual([320]);
    expect([0, 1, 2, 3].map((i) => sent[0]?.[i * 80])).toEqual([1, 2, 3, 4]);
  });

  it('sends an incomplete batch after the time the batch covers: a pause in the peer audio strands nothing', () => {
    const { batcher, sent } = setup(2);
    batcher.push(frame(1));
    vi.advanceTimersByTime(39);
    expect(sent).toHaveLength(0);
    vi.advanceTimersByTime(1);
    expect(sent.map((samples) => samples.length)).toEqual([160]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('flush() sends what is held at once (a digit must not overtake earlier audio)', () => {
    const { batcher, sent } = setup(2);
    batcher.flush();
    expect(sent).toHaveLength(0);
    batcher.push(frame(7));
    batcher.flush();
    expect(sent.map((samples) => samples[0])).toEqual([7]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('going back to one frame per send sends the held frame with the next one, then frame by frame', () => {
    const { batcher, sent, setFrames } = setup(2);
    batcher.push(frame(1));
    setFrames(1);
    batcher.push(frame(2));
    batcher.push(frame(3));
    expect(sent.map((samples) => [samples.length, samples[0]])).toEqual([
      [320, 1],
      [160, 3],
    ]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('clear() drops what is held and its timer', () => {
    const { batcher, sent } = setup(2);
    batcher.push(frame(1));
    batcher.clear();
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(100);
    batcher.push(frame(2));
    batcher.push(frame(3));
    expect(sent.map((samples) => [samples.length, samples[0]])).toEqual([[320, 2]]);
  });
});
