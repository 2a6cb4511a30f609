/**
 * The retry loop around one connection attempt, driven by `ReconnectBudget`: adapters write one
 * connection attempt and core owns when and how often to retry.
 */
import { ProviderError, toProviderError } from '../errors/provider-error.js';
import type { ReconnectBudget } from './reconnect-policy.js';

export interface RunWithReconnectOptions {
  readonly provider: string;
  readonly budget: ReconnectBudget;
  /** Aborting stops waiting and retrying; the pending attempt is expected to honour it too. */
  readonly signal: AbortSignal;
  /** The failure that made a reconnect necessary (a dropped connection): it counts against the budget. */
  readonly initialError?: ProviderError;
  /** Called before each wait, e.g. to log. */
  readonly onRetry?: (error: ProviderError, delayMs: number, attempt: number) => void;
}

/**
 * Runs `attempt` until it succeeds, the budget says stop, or `signal` aborts. On success the budget is
 * told the connection is up (so it resets once the connection proves stable). Rejects with a
 * ProviderError: the last failure, its message noting when the budget ran out.
 */
export async function runWithReconnect<T>(attempt: () => Promise<T>, options: RunWithReconnectOptions): Promise<T> {
  const { provider, budget, signal } = options;
  let failure = options.initialError;
  for (;;) {
    if (failure !== undefined) {
      const decision = budget.next(failure);
      if (!decision.retry) throw failure.retryable ? withReason(failure, decision.reason) : failure;
      options.onRetry?.(failure, decision.delayMs, decision.attempt);
      await delay(decision.delayMs, signal);
    }
    if (signal.aborted) throw aborted(provider, failure);
    try {
      const result = await attempt();
      budget.markConnected();
      return result;
    } catch (error) {
      failure = toProviderError(provider, error);
      if (signal.aborted) throw aborted(provider, failure);
    }
  }
}

function withReason(error: ProviderError, reason: string): ProviderError {
  return new ProviderError(error.provider, error.category, `${error.message} (${reason})`, {
    retryable: false,
    cause: error,
    ...(error.statusCode === undefined ? {} : { statusCode: error.statusCode }),
    ...(error.providerCode === undefined ? {} : { providerCode: error.providerCode }),
    ...(error.requestId === undefined ? {} : { requestId: error.requestId }),
  });
}

function aborted(provider: string, last: ProviderError | undefined): ProviderError {
  return new ProviderError(provider, 'closed', 'the call ended before the provider connection was ready', {
    retryable: false,
    ...(last === undefined ? {} : { cause: last }),
  });
}

/** Resolves after `ms`, or at once when `signal` aborts (the caller checks the signal). */
export function delay(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
