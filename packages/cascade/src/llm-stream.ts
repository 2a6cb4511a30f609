/**
 * One LLM completion for the cascade: retried while nothing has been received yet (429, 5xx, a dropped
 * connection, no first token in time), then streamed with an inactivity limit. A failure after the first delta
 * ends the completion with that error: repeating the request would speak the start of the reply twice.
 */
import { ProviderError, ReconnectBudget, delay, toProviderError } from '@stsgate/core';
import type { CallContext, LlmAdapter, LlmDelta, LlmRequest, ReconnectPolicyOptions } from '@stsgate/core';
import type { Logger } from 'pino';
import { withTimeout } from './timing.js';

export interface LlmStreamSettings {
  readonly firstTokenTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly retry: ReconnectPolicyOptions;
  /** A server asking to wait longer than this (Retry-After) is not retried: a caller is waiting. */
  readonly maxRetryWaitMs: number;
  readonly logger: Logger;
}

export async function* streamCompletion(
  llm: LlmAdapter,
  request: LlmRequest,
  call: CallContext,
  settings: LlmStreamSettings,
): AsyncGenerator<LlmDelta> {
  const budget = new ReconnectBudget(settings.retry);
  for (;;) {
    const attempt = new AbortController();
    const onAbort = (): void => attempt.abort();
    call.signal.addEventListener('abort', onAbort, { once: true });
    const iterator = llm.chat(request, { ...call, signal: attempt.signal })[Symbol.asyncIterator]();
    let received = false;
    try {
      for (;;) {
        const limit = received ? settings.idleTimeoutMs : settings.firstTokenTimeoutMs;
        const next = await withTimeout(iterator.next(), limit, () => {
          attempt.abort();
          return new ProviderError(llm.id, 'timeout', received ? `the LLM sent nothing for ${limit} ms` : `no first token from the LLM within ${limit} ms`);
        });
        if (next.done === true) return;
        received = true;
        yield next.value;
      }
    } catch (error) {
      if (call.signal.aborted) throw new ProviderError(llm.id, 'closed', 'the reply was cancelled', { retryable: false });
      const failure = toProviderError(llm.id, error);
      if (received) throw failure;
      const decision = budget.next(failure);
      if (!decision.retry || (failure.retryAfterMs ?? 0) > settings.maxRetryWaitMs) throw failure;
      settings.logger.warn({ err: failure, attempt: decision.attempt, delayMs: decision.delayMs }, 'LLM request failed before its first token; retrying');
      await delay(Math.min(decision.delayMs, settings.maxRetryWaitMs), call.signal);
    } finally {
      call.signal.removeEventListener('abort', onAbort);
      attempt.abort();
      void Promise.resolve(iterator.return?.()).catch(() => undefined);
    }
  }
}
