import { describe, expect, it } from 'vitest';
import { PlayoutClock } from './playout-clock.js';

function fakeClock(start = 1000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return {
    now: () => t,
    advance: (ms: number) => {
      t += ms;
    },
  };
}

describe('PlayoutClock', () => {
  it('plays one segment in real time', () => {
    const clock = fakeClock();
    const playout = new PlayoutClock(clock.now);
    expect(playout.isPlaying()).toBe(false);
    expect(playout.queuedMs()).toBe(0);
    expect(playout.heardMs('a')).toBe(0);
    expect(playout.sentMs('a')).toBe(0);

    playout.enqueue('a', 1000);
    expect(playout.sentMs('a')).toBe(1000);
    expect(playout.heardMs('a')).toBe(0);
    expect(playout.queuedMs()).toBe(1000);
    expect(playout.isPlaying()).toBe(true);

    clock.advance(300);
    expect(playout.heardMs('a')).toBe(300);
    expect(playout.queuedMs()).toBe(700);

    clock.advance(700);
    expect(playout.heardMs('a')).toBe(1000);
    expect(playout.queuedMs()).toBe(0);
    expect(playout.isPlaying()).toBe(false);

    clock.advance(5000);
    expect(playout.heardMs('a')).toBe(1000); // never more than enqueued
  });

  it('queues chunks back to back when they arrive faster than real time', () => {
    const clock = fakeClock();
    const playout = new PlayoutClock(clock.now);
    for (let i = 0; i < 10; i++) playout.enqueue('a', 100); // a 1 s burst
    expect(playout.sentMs('a')).toBe(1000);
    expect(playout.queuedMs()).toBe(1000);
    clock.advance(250);
    expect(playout.heardMs('a')).toBe(250);
    playout.enqueue('a', 100);
    expect(playout.queuedMs()).toBe(850);
    clock.advance(2000);
    expect(playout.heardMs('a')).toBe(1100);
  });

  it('starts late audio when it arrives if the queue ran dry (gaps between enqueues)', () => {
    const clock = fakeClock();
    const playout = new PlayoutClock(clock.now);
    playout.enqueue('a', 100);
    clock.advance(300); // underrun: 200 ms of silence
    expect(playout.isPlaying()).toBe(false);
    expect(playout.heardMs('a')).toBe(100);
    playout.enqueue('a', 100); // starts now, not at t + 100
    expect(playout.queuedMs()).toBe(100);
    clock.advance(50);
    expect(playout.heardMs('a')).toBe(150);
    clock.advance(50);
    expect(playout.heardMs('a')).toBe(200);
    expect(playout.isPlaying()).toBe(false);
  });

  it('plays two segments in order and attributes time to each', () => {
    const clock = fakeClock();
    const playout = new PlayoutClock(clock.now);
    playout.enqueue('a', 500);
    clock.advance(100);
    playout.enqueue('b', 300); // queued behind the rest of a
    expect(playout.queuedMs()).toBe(700);
    clock.advance(300);
    expect(playout.heardMs('a')).toBe(400);
    expect(playout.heardMs('b')).toBe(0);
    clock.advance(200);
    expect(playout.heardMs('a')).toBe(500);
    expect(playout.heardMs('b')).toBe(100);
    clock.advance(1000);
    expect(playout.heardMs('b')).toBe(300);
    expect(playout.sentMs('b')).toBe(300);
  });

  it('handles a segment whose chunks interleave with another one', () => {
    const clock = fakeClock();
    const playout = new PlayoutClock(clock.now);
    playout.enqueue('a', 100);
    playout.enqueue('b', 100);
    playout.enqueue('a', 100);
    clock.advance(150);
    expect(playout.heardMs('a')).toBe(100);
    expect(playout.heardMs('b')).toBe(50);
    clock.advance(100);
    expect(playout.heardMs('a')).toBe(150);
    expect(playout.heardMs('b')).toBe(100);
  });

  it('flush() mid-segment freezes what was heard and empties the queue', () => {
    const clock = fakeClock();
    const playout = new PlayoutClock(clock.now);
    playout.enqueue('a', 400);
    playout.enqueue('b', 400);
    clock.advance(500); // a fully heard, b 100 ms in
    playout.flush();
    expect(playout.queuedMs()).toBe(0);
    expect(playout.isPlaying()).toBe(false);
    expect(playout.heardMs('a')).toBe(400);
    expect(playout.heardMs('b')).toBe(100);
    expect(playout.sentMs('b')).toBe(400); // what was enqueued is still reported
    clock.advance(1000);
    expect(playout.heardMs('b')).toBe(100); // frozen

    // New audio after the interruption plays immediately and is attributed to its own segment.
    playout.enqueue('c', 200);
    expect(playout.queuedMs()).toBe(200);
    clock.advance(150);
    expect(playout.heardMs('c')).toBe(150);
    expect(playout.heardMs('b')).toBe(100);
    expect(playout.heardMs('a')).toBe(400);
  });

  it('flush() before anything played leaves the segment unheard; flush() when idle is harmless', () => {
    const clock = fakeClock();
    const playout = new PlayoutClock(clock.now);
    playout.flush();
    playout.enqueue('a', 300);
    playout.flush();
    expect(playout.heardMs('a')).toBe(0);
    clock.advance(500);
    expect(playout.heardMs('a')).toBe(0);
    playout.enqueue('b', 100);
    clock.advance(100);
    expect(playout.heardMs('b')).toBe(100);
    playout.flush();
    expect(playout.heardMs('b')).toBe(100);
  });

  it('never reports more heard than enqueued, at any time', () => {
    const clock = fakeClock();
    const playout = new PlayoutClock(clock.now);
    let seed = 7;
    const rand = (): number => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed / 4294967296;
    };
    for (let i = 0; i < 2000; i++) {
      const id = `s${Math.floor(i / 50)}`;
      const r = rand();
      if (r < 0.5) playout.enqueue(id, rand() * 40);
      else if (r < 0.52) playout.flush();
      clock.advance(rand() * 30);
      for (const seg of [id, `s${Math.floor(i / 50) - 1}`]) {
        const heard = playout.heardMs(seg);
        expect(heard).toBeGreaterThanOrEqual(0);
        expect(heard).toBeLessThanOrEqual(playout.sentMs(seg));
      }
      expect(playout.queuedMs()).toBeGreaterThanOrEqual(0);
    }
  });

  it('forgets all but the last 16 segments', () => {
    const clock = fakeClock();
    const playout = new PlayoutClock(clock.now);
    for (let i = 0; i < 20; i++) playout.enqueue(`s${i}`, 10);
    clock.advance(1000);
    expect(playout.sentMs('s0')).toBe(0);
    expect(playout.heardMs('s3')).toBe(0);
    expect(playout.sentMs('s4')).toBe(10);
    expect(playout.heardMs('s19')).toBe(10);
  });

  it('rejects negative or non-finite durations and accepts zero', () => {
    const playout = new PlayoutClock(fakeClock().now);
    expect(() => playout.enqueue('a', -1)).toThrow(RangeError);
    expect(() => playout.enqueue('a', Number.NaN)).toThrow(RangeError);
    expect(() => playout.enqueue('a', Number.POSITIVE_INFINITY)).toThrow(RangeError);
    playout.enqueue('a', 0);
    expect(playout.sentMs('a')).toBe(0);
    expect(playout.isPlaying()).toBe(false);
  });

  it('defaults to performance.now', () => {
    const playout = new PlayoutClock();
    playout.enqueue('a', 60_000);
    expect(playout.isPlaying()).toBe(true);
    expect(playout.queuedMs()).toBeGreaterThan(0);
    expect(playout.queuedMs()).toBeLessThanOrEqual(60_000);
  });
});
