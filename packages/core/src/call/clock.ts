/** A pending timer of a {@link CallClock}; `clear()` is idempotent. */
export interface CallTimer {
  clear(): void;
}

/**
 * Time as a call runtime sees it: a millisecond clock and one-shot and repeating timers. The runtime reads no other
 * clock and arms no other timer, so a test (or a host with its own event loop) can drive a whole call by hand.
 */
export interface CallClock {
  /** Milliseconds on a monotonic clock (any origin). */
  now(): number;
  /** Calls `callback` once, after `ms`. */
  setTimeout(callback: () => void, ms: number): CallTimer;
  /** Calls `callback` every `ms` until cleared. */
  setInterval(callback: () => void, ms: number): CallTimer;
}

/**
 * `performance.now()` and Node's timers, looked up on every call (so fake timers installed by a test apply).
 * `now` replaces the clock reading only (timers stay real).
 */
export function systemClock(now: () => number = () => performance.now()): CallClock {
  return {
    now,
    setTimeout(callback, ms) {
      const timer = setTimeout(callback, ms);
      return { clear: () => clearTimeout(timer) };
    },
    setInterval(callback, ms) {
      const timer = setInterval(callback, ms);
      return { clear: () => clearInterval(timer) };
    },
  };
}
