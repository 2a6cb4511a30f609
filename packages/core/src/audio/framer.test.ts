import { describe, expect, it } from 'vitest';
import { Framer } from './framer.js';

/** A ramp stream: sample i has value i mod 32768, so order and gaps are visible. */
function ramp(start: number, length: number): Int16Array {
  return Int16Array.from({ length }, (_, i) => (start + i) % 32768);
}

function drain(framer: Framer): Int16Array[] {
  const frames: Int16Array[] = [];
  for (let f = framer.nextFrame(); f !== undefined; f = framer.nextFrame()) frames.push(f);
  return frames;
}

describe('Framer', () => {
  it('rejects a non-positive or fractional frame size', () => {
    expect(() => new Framer(0)).toThrow(RangeError);
    expect(() => new Framer(-160)).toThrow(RangeError);
    expect(() => new Framer(1.5)).toThrow(RangeError);
  });

  it('re-chunks arbitrary chunk sizes into exact 160-sample frames, in order', () => {
    const framer = new Framer(160);
    let seed = 42;
    let pushed = 0;
    let next = 0;
    for (let round = 0; round < 2000; round++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      const size = seed % 7 === 0 ? 0 : (seed >>> 8) % 700; // 0..699, often crossing the ring's end
      framer.push(ramp(pushed, size));
      pushed += size;
      for (const frame of drain(framer)) {
        expect(frame).toHaveLength(160);
        expect(frame).toEqual(ramp(next, 160));
        next += 160;
      }
      expect(framer.bufferedSamples).toBe(pushed - next);
      expect(framer.bufferedSamples).toBeLessThan(160);
    }
    expect(next).toBeGreaterThan(100_000);
  });

  it('wraps around the ring without losing or reordering samples', () => {
    const framer = new Framer(100); // ring capacity 512
    let pushed = 0;
    let next = 0;
    for (let i = 0; i < 50; i++) {
      framer.push(ramp(pushed, 333)); // never aligned with the capacity: the write position wraps
      pushed += 333;
      const frame = framer.nextFrame();
      if (frame !== undefined) {
        expect(frame).toEqual(ramp(next, 100));
        next += 100;
      }
      // Keep the fill below capacity so the wrap (not growth) is exercised for a while, then grow.
      if (i < 10) {
        for (const f of drain(framer)) {
          expect(f).toEqual(ramp(next, 100));
          next += 100;
        }
      }
    }
    for (const f of drain(framer)) {
      expect(f).toEqual(ramp(next, 100));
      next += 100;
    }
    expect(framer.bufferedSamples).toBe(pushed - next);
  });

  it('grows to hold a backlog much larger than its initial capacity, keeping order across the wrap', () => {
    const framer = new Framer(160);
    framer.push(ramp(0, 500));
    expect(framer.nextFrame()).toEqual(ramp(0, 160)); // head now mid-ring
    framer.push(ramp(500, 700)); // wraps
    framer.push(ramp(1200, 50_000)); // forces several doublings with a wrapped buffer
    expect(framer.bufferedSamples).toBe(51_200 - 160);
    let next = 160;
    for (const f of drain(framer)) {
      expect(f).toEqual(ramp(next, 160));
      next += 160;
    }
    expect(next).toBe(160 + Math.floor((51_200 - 160) / 160) * 160);
    expect(framer.bufferedSamples).toBe(51_200 - next);
  });

  it('returns fresh frames that later pushes do not overwrite', () => {
    const framer = new Framer(4);
    framer.push(Int16Array.from([1, 2, 3, 4]));
    const frame = framer.nextFrame();
    framer.push(Int16Array.from([9, 9, 9, 9, 9, 9, 9, 9]));
    expect(frame).toEqual(Int16Array.from([1, 2, 3, 4]));
    const input = Int16Array.from([5, 6, 7, 8]);
    framer.clear();
    framer.push(input);
    input.fill(0); // the framer copied the input
    expect(framer.nextFrame()).toEqual(Int16Array.from([5, 6, 7, 8]));
  });

  it('keeps every frame it returned intact while hundreds more are taken', () => {
    const framer = new Framer(160);
    const frames: Int16Array[] = [];
    for (let i = 0; i < 300; i++) {
      framer.push(new Int16Array(160).fill(i));
      frames.push(framer.nextFrame() as Int16Array);
    }
    frames.forEach((frame, i) => expect(frame.every((sample) => sample === i)).toBe(true));
  });

  it('nextFrame() returns undefined until a whole frame is buffered', () => {
    const framer = new Framer(160);
    expect(framer.nextFrame()).toBeUndefined();
    framer.push(ramp(0, 159));
    expect(framer.nextFrame()).toBeUndefined();
    framer.push(ramp(159, 1));
    expect(framer.nextFrame()).toEqual(ramp(0, 160));
    expect(framer.bufferedSamples).toBe(0);
  });

  it('flushPadded() zero-pads the remainder to one frame, then reports empty', () => {
    const framer = new Framer(160);
    expect(framer.flushPadded()).toBeUndefined();
    framer.push(ramp(1, 200));
    expect(framer.nextFrame()).toEqual(ramp(1, 160));
    const last = framer.flushPadded();
    const expected = new Int16Array(160);
    expected.set(ramp(161, 40));
    expect(last).toEqual(expected);
    expect(framer.bufferedSamples).toBe(0);
    expect(framer.flushPadded()).toBeUndefined();
  });

  it('flushPadded() drains a multi-frame backlog one frame per call', () => {
    const framer = new Framer(10);
    framer.push(ramp(0, 25));
    expect(framer.flushPadded()).toEqual(ramp(0, 10));
    expect(framer.flushPadded()).toEqual(ramp(10, 10));
    expect(framer.flushPadded()).toEqual(Int16Array.from([20, 21, 22, 23, 24, 0, 0, 0, 0, 0]));
    expect(framer.flushPadded()).toBeUndefined();
  });

  it('clear() drops everything and the framer keeps working', () => {
    const framer = new Framer(160);
    framer.push(ramp(0, 1000));
    framer.clear();
    expect(framer.bufferedSamples).toBe(0);
    expect(framer.nextFrame()).toBeUndefined();
    expect(framer.flushPadded()).toBeUndefined();
    framer.push(ramp(5000, 160));
    expect(framer.nextFrame()).toEqual(ramp(5000, 160));
  });
});
