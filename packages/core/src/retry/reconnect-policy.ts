import type { ProviderError } from '../errors/provider-error.js';

export interface ReconnectPolicyOptions {
  /** Attempts allowed after a failure before giving up, within one budget. */
  maxAttempts: number;
  /** Delay of the first retry; 0 retries at once (a dropped socket often reconnects immediately). */
  firstDelayMs: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** Fraction of each delay that is randomised (0 = none, 1 = full jitter). */
  jitter: number;
  /** A connection that stays up this long gets a fresh budget. */
  stableAfterMs: number;
}

export const DEFAULT_RECONNECT_POLICY: Readonly<ReconnectPolicyOptions> = {
  maxAttempts: 4,
  firstDelayMs: 0,
  baseDelayMs: 250,
  maxDelayMs: 4000,
  jitter: 0.3,
  stableAfterMs: 30_000,
};

export type RetryDecision = { retry: true; delayMs: number; attempt: number } | { retry: false; reason: string };

/**
 * Per-connection reconnect bookkeeping. Decides whether and when to retry after a failure; the
 * budget resets once a connection has stayed up for `stableAfterMs`, so a long call that drops
 * twice an hour never runs out of retries.
 */
export class ReconnectBudget {
  private attempts = 0;
  private connectedAt: number | undefined;

  constructor(
    private readonly options: ReconnectPolicyOptions = DEFAULT_RECONNECT_POLICY,
    private readonly now: () => number = Date.now,
    private readonly random: () => number = Math.random,
  ) {}

  /** Call when a connection attempt succeeds. */
  markConnected(): void {
    this.connectedAt = this.now();
  }

  /** Call when the connection fails or drops; says whether to try again and after how long. */
  next(error: ProviderError): RetryDecision {
    if (this.connectedAt !== undefined && this.now() - this.connectedAt >= this.options.stableAfterMs) {
      this.attempts = 0;
    }
    this.connectedAt = undefined;
    if (!error.retryable) return { retry: false, reason: `${error.category} error is not retryable` };
    if (this.attempts >= this.options.maxAttempts) {
      return { retry: false, reason: `gave up after ${this.attempts} reconnect attempts` };
    }
    const attempt = ++this.attempts;
    const raw =
      attempt === 1
        ? this.options.firstDelayMs
        : Math.min(this.options.maxDelayMs, this.options.baseDelayMs * 2 ** (attempt - 2));
    // A server's hint (Retry-After, or a provider's documented wait) is a floor: its jitter only adds, so calls told
    // to wait together do not all come back at once, and none comes back early.
    const random = this.random();
    const own = Math.min(raw, this.options.maxDelayMs) * (1 - this.options.jitter * random);
    const hinted = (error.retryAfterMs ?? 0) * (1 + this.options.jitter * random);
    return { retry: true, delayMs: Math.round(Math.max(own, hinted)), attempt };
  }

  get attemptsUsed(): number {
    return this.attempts;
  }
}
