/** Errors of the `openai` SDK (REST: chat completions, speech) as ProviderErrors. */
import { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from 'openai';
import { ProviderError, categoryForStatus, toProviderError, parseRetryAfter } from '@stsgate/core';
import { PROVIDER, categoryForServerError, sanitizeMessage } from './errors.js';

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
    // No status: an error payload mid-stream (`data: {"error":...}`), classified by its type and code like a
    // Realtime error event (a server_error is retryable); one we cannot classify stays a protocol error.
    const info = { type: error.type ?? null, code: error.code ?? null };
    if (status === undefined) {
      const category = categoryForServerError(info);
      return new ProviderError(PROVIDER, category === 'unknown' ? 'protocol' : category, `${what}: ${message}`, options);
    }
    // A 429 for an account out of credit (insufficient_quota) is billing, not a rate limit: retrying cannot help.
    const category = status === 429 && categoryForServerError(info) === 'quota' ? 'quota' : categoryForStatus(status);
    return new ProviderError(PROVIDER, category, `${what} failed (HTTP ${status}): ${message}`, { ...options, statusCode: status });
  }
  const fallback = toProviderError(PROVIDER, error);
  return new ProviderError(PROVIDER, fallback.category, `${what}: ${sanitizeMessage(fallback.message, secret)}`, { cause: error, retryable: fallback.retryable });
}
