import { afterEach, describe, expect, it, vi } from 'vitest';
import { OutboundPacer, type Pumpable } from './outbound.js';
import { systemClock } from './clock.js';

/** A call with `frames` frames waiting, one sent per pump; records when it was pumped. */
class FakeCall implements Pumpable {
  readonly pumpedAt: number[] = [];
  constructor(private frames: number) {}
  pump(): boolean {
    this.pumpedAt.push(Date.now());
    this.frames = Math.max(0, this.frames - 1);
    return this.frames > 0;
  }
}

afterEach(() => {
  vi.useRealTimers();
});

describe('OutboundPacer', () => {
  it('pumps at once, then every period while audio waits, and stops its timer when none does', () => {
    vi.useFakeTimers({ now: 0 });
    const pacer = new OutboundPacer(40, systemClock());
    const call = new FakeCall(3);
    pacer.schedule(call);
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(200);
    expect(call.pumpedAt).toEqual([0, 40, 80]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('spreads the calls over its groups: each call every period, one group per tick', () => {
    vi.useFakeTimers({ now: 0 });
    const pacer = new OutboundPacer(40, systemClock(), 4);
    const calls = Array.from({ length: 8 }, () => new FakeCall(1_000));
    for (const call of calls) pacer.schedule(call);
    vi.advanceTimersByTime(160);
    // Per tick (every 10 ms), two of the eight calls: the work of a period is split in four.
    const pumpsPerTick = [10, 20, 30, 40, 50, 60, 70, 80].map((t) => calls.filter((call) => call.pumpedAt.includes(t)).length);
    expect(pumpsPerTick).toEqual([2, 2, 2, 2, 2, 2, 2, 2]);
    for (const call of calls) {
      const gaps = call.pumpedAt.slice(1).map((t, i) => t - (call.pumpedAt[i] as number));
      // The first gap is up to a period (the call's group comes round); every later one is exactly a period.
      expect(gaps[0]).toBeLessThanOrEqual(40);
      expect(gaps.slice(1).every((gap) => gap === 40)).toBe(true);
    }
    pacer.close();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('keeps the groups even as calls finish and new ones arrive', () => {
    vi.useFakeTimers({ now: 0 });
    const pacer = new OutboundPacer(40, systemClock(), 4);
    const short = Array.from({ length: 4 }, () => new FakeCall(2));
    const long = Array.from({ length: 4 }, () => new FakeCall(1_000));
    for (const call of [...short, ...long]) pacer.schedule(call);
    vi.advanceTimersByTime(80); // the short calls are done
    const late = Array.from({ length: 4 }, () => new FakeCall(1_000));
    for (const call of late) pacer.schedule(call);
    const before = [...long, ...late].map((call) => call.pumpedAt.length);
    vi.advanceTimersByTime(40);
    const ticks = [90, 100, 110, 120].map((t) => [...long, ...late].filter((call) => call.pumpedAt.includes(t)).length);
    expect(ticks).toEqual([2, 2, 2, 2]);
    expect([...long, ...late].map((call, i) => call.pumpedAt.length - (before[i] as number))).toEqual(Array(8).fill(1));
    pacer.close();
  });

  it('cancel() stops pumping a call; a call scheduled twice is pumped once per period', () => {
    vi.useFakeTimers({ now: 0 });
    const pacer = new OutboundPacer(40, systemClock(), 2);
    const kept = new FakeCall(1_000);
    const cancelled = new FakeCall(1_000);
    pacer.schedule(kept);
    pacer.schedule(kept);
    pacer.schedule(cancelled);
    pacer.cancel(cancelled);
    vi.advanceTimersByTime(120);
    expect(cancelled.pumpedAt).toEqual([0]);
    // Two immediate pumps from schedule(), then one per period: its group is the first tick's (20 ms: 40 / 2 groups).
    expect(kept.pumpedAt.filter((t) => t > 0)).toEqual([20, 60, 100]);
    pacer.cancel(kept);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('refuses a group count that is not a positive integer', () => {
    expect(() => new OutboundPacer(40, systemClock(), 0)).toThrow(RangeError);
    expect(() => new OutboundPacer(40, systemClock(), 1.5)).toThrow(RangeError);
  });
});
