import type { Logger } from 'pino';

/**
 * A token bucket: `burst` events at once, refilled at `perSecond`. The refill is computed when asked, so a bucket
 * costs no timer and a few arithmetic operations per event.
 */
export class RateBudget {
  private tokens: number;
  private refilledAt: number;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly now: () => number = performance.now.bind(performance),
  ) {
    this.tokens = burst;
    this.refilledAt = now();
  }

  /** Spend one token; false when the budget is exhausted. `now`: the caller's clock reading, when it has one. */
  take(now = this.now()): boolean {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.refilledAt) * this.perSecond) / 1000);
    this.refilledAt = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/**
 * Warnings a remote peer can trigger, logged at most `burst` per `windowMs` for one connection: past that they are
 * counted, and the count goes out with the next line that is logged (or on `flush()`, when the connection ends).
 * One misbehaving client then costs a few log lines, whatever it sends.
 */
export class PeerWarnings {
  private readonly budget: RateBudget;
  private suppressed = 0;

  constructor(
    private readonly logger: () => Logger,
    burst = 5,
    windowMs = 10_000,
    now?: () => number,
  ) {
    this.budget = new RateBudget((burst * 1000) / windowMs, burst, now);
  }

  warn(fields: Record<string, unknown>, message: string): void {
    if (!this.budget.take()) {
      this.suppressed++;
      return;
    }
    const suppressed = this.takeSuppressed();
    this.logger().warn(suppressed === 0 ? fields : { ...fields, suppressedSinceLastWarning: suppressed }, message);
  }

  /** Report warnings still held back (the connection is ending). */
  flush(): void {
    const suppressed = this.takeSuppressed();
    if (suppressed > 0) this.logger().warn({ suppressedWarnings: suppressed }, 'further warnings from this connection were not logged');
  }

  private takeSuppressed(): number {
    const count = this.suppressed;
    this.suppressed = 0;
    return count;
  }
}
