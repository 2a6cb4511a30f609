import type { CallClock, CallTimer } from '@stsgate/core';

interface ManualTimer {
  due: number;
  readonly every: number | undefined;
  readonly callback: () => void;
}

/**
 * A call clock moved by hand (tests and benches of what runs on a {@link CallClock}): `advance` runs the timers that
 * come due, in order, each at its own time.
 */
export class ManualClock implements CallClock {
  private time: number;
  private nextId = 0;
  private readonly timers = new Map<number, ManualTimer>();

  constructor(startMs = 0) {
    this.time = startMs;
  }

  now(): number {
    return this.time;
  }

  setTimeout(callback: () => void, ms: number): CallTimer {
    return this.add(callback, ms, undefined);
  }

  setInterval(callback: () => void, ms: number): CallTimer {
    return this.add(callback, ms, ms);
  }

  get pendingTimers(): number {
    return this.timers.size;
  }

  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      let next: [number, ManualTimer] | undefined;
      for (const entry of this.timers) if (entry[1].due <= end && (next === undefined || entry[1].due < next[1].due)) next = entry;
      if (next === undefined) break;
      const [id, timer] = next;
      this.time = Math.max(this.time, timer.due);
      if (timer.every === undefined) this.timers.delete(id);
      else timer.due += timer.every;
      timer.callback();
    }
    this.time = end;
  }

  private add(callback: () => void, ms: number, every: number | undefined): CallTimer {
    const id = this.nextId++;
    this.timers.set(id, { due: this.time + ms, every, callback });
    return { clear: () => void this.timers.delete(id) };
  }
}
