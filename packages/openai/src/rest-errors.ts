/** Errors of the `openai` SDK (REST: chat completions, speech) as ProviderErrors. */
import { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from 'openai';
import { ProviderError, categoryForStatus, toProviderError, parseRetryAfter } from '@stsgate/core';
import { PROVIDER, sanitizeMessage } from './errors.js';

/** The request was cancelled because the call ended (not a provider failure). */
export function cancelled(what: string, cause?: unknown): ProviderError {
  return new ProviderError(PROVIDER, 'closed', `${what} was cancelled: the call ended`, { retryable: false, ...(cause === undefined ? {} : { cause }) });
}

/**
 * Anything the `openai` SDK throws, as a ProviderError (status-based category; connection and abort cases).
 * `aborted`: the caller's signal fired, so whatever was thrown is a cancellation.
 */
export function providerErrorFromSdk(error: unknown, secret: string | undefined, what: string, aborted = false): ProviderError {
  if (error instanceof ProviderError) return error;
  if (aborted) return cancelled(what, error);
  if (error instanceof APIUserAbortError) {
    return new ProviderError(PROVIDER, 'closed', `${what} was cancelled`, { retryable: false, cause: error });
  }
  if (error instanceof APIConnectionTimeoutError) {
    return new ProviderError(PROVIDER, 'timeout', `${what} timed out`, { cause: error });
  }
  if (error instanceof APIConnectionError) {
    return new ProviderError(PROVIDER, 'connectivity', `${what}: could not reach the server`, { cause: error });
  }
  if (error instanceof APIError) {
    const status: number | undefined = error.status;
    const retryAfterMs = parseRetryAfter(error.headers?.get('retry-after') ?? undefined);
    const message = sanitizeMessage(error.message, secret);
    const options = {
      cause: error,
      ...(error.code ? { providerCode: error.code } : {}),
      ...(error.requestID ? { requestId: error.requestID } : {}),
      ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
    };
    if (status === undefined) return new ProviderError(PROVIDER, 'protocol', `${what}: ${message}`, options);
    return new ProviderError(PROVIDER, categoryForStatus(status), `${what} failed (HTTP ${status}): ${message}`, { ...options, statusCode: status });
  }
  const fallback = toProviderError(PROVIDER, error);
  return new ProviderError(PROVIDER, fallback.category, `${what}: ${sanitizeMessage(fallback.message, secret)}`, { cause: error, retryable: fallback.retryable });
}
