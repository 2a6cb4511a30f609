/** OpenAI failures as core ProviderErrors: server `error` objects, WebSocket close codes, HTTP statuses. */
import { ProviderError, categoryForStatus, parseRetryAfter } from '@stsgate/core';
import type { ProviderErrorCategory } from '@stsgate/core';

export const PROVIDER = 'openai';

const KEY_LIKE = /\b(sk|sess|ek)-[A-Za-z0-9_*-]{4,}/g;

/**
 * Server messages can quote part of the API key ("Incorrect API key provided: sk-ab***yz"). Redact
 * anything key-shaped, and the configured key itself, before a message reaches a log or AVR Core.
 */
export function sanitizeMessage(message: string, secret?: string): string {
  let out = message.length > 500 ? `${message.slice(0, 500)}...` : message;
  if (secret !== undefined && secret.length >= 4) out = out.split(secret).join('[redacted]');
  return out.replace(KEY_LIKE, '$1-[redacted]');
}

export interface ServerErrorInfo {
  readonly type?: string | null | undefined;
  readonly code?: string | null | undefined;
  readonly message?: string | null | undefined;
  readonly param?: string | null | undefined;
}

/** Category of an `error` event's error object (by code first, then by type). */
export function categoryForServerError(error: ServerErrorInfo): ProviderErrorCategory {
  switch (error.code) {
    case 'invalid_api_key':
      return 'auth';
    case 'insufficient_quota':
      return 'quota';
    case 'rate_limit_exceeded':
      return 'rate_limit';
    case 'session_expired':
      return 'closed';
    default:
      break;
  }
  switch (error.type) {
    case 'invalid_request_error':
      return 'invalid_request';
    case 'authentication_error':
      return 'auth';
    case 'permission_error':
      return 'permission';
    case 'rate_limit_error':
      return 'rate_limit';
    case 'server_error':
      return 'server';
    default:
      return 'unknown';
  }
}

export function describeServerError(error: ServerErrorInfo, secret?: string): string {
  const message = sanitizeMessage(error.message ?? 'no message', secret);
  const details = [error.code, error.param ? `param ${error.param}` : undefined].filter((x): x is string => typeof x === 'string' && x !== '');
  return details.length > 0 ? `${message} (${details.join(', ')})` : message;
}

export function providerErrorFromServer(error: ServerErrorInfo, secret?: string, prefix = 'OpenAI error'): ProviderError {
  return new ProviderError(PROVIDER, categoryForServerError(error), `${prefix}: ${describeServerError(error, secret)}`, {
    ...(error.code ? { providerCode: error.code } : {}),
  });
}

/**
 * A WebSocket close the adapter did not ask for. 3000 is OpenAI's auth close, 4000 its "invalid request"
 * close (bad model, beta header); the last `error` event, if any, supplies the message.
 */
export function providerErrorFromClose(code: number, reason: string, lastError: ServerErrorInfo | undefined, secret?: string): ProviderError {
  const detail = lastError ? describeServerError(lastError, secret) : sanitizeMessage(reason || 'no reason given', secret);
  const providerCode = lastError?.code ?? (reason || undefined);
  const options = providerCode ? { providerCode } : {};
  if (code === 3000) {
    return new ProviderError(PROVIDER, 'auth', `OpenAI closed the connection: authentication failed: ${detail}`, { ...options, retryable: false });
  }
  if (code === 4000) {
    return new ProviderError(PROVIDER, 'invalid_request', `OpenAI closed the connection: invalid request: ${detail}`, { ...options, retryable: false });
  }
  if (code === 1008) {
    return new ProviderError(PROVIDER, 'invalid_request', `OpenAI closed the connection (policy violation, 1008): ${detail}`, { ...options, retryable: false });
  }
  if (code === 1011 || code === 1013 || code === 1012) {
    return new ProviderError(PROVIDER, 'server', `OpenAI closed the connection with a server error (${code}): ${detail}`, options);
  }
  if (code === 1006 || code === 1005) {
    return new ProviderError(PROVIDER, 'connectivity', `the OpenAI connection dropped (${code})`, options);
  }
  // 1000/1001 mid-call (e.g. the session reached its maximum duration) and anything else: try again.
  return new ProviderError(PROVIDER, 'closed', `OpenAI closed the connection (${code}): ${detail}`, options);
}

/** A rejected WebSocket upgrade (the server answered HTTP instead of 101). */
export function providerErrorFromUpgrade(status: number, body: string, retryAfterHeader: string | undefined, secret?: string): ProviderError {
  const message = extractMessage(body, secret);
  const retryAfterMs = parseRetryAfter(retryAfterHeader);
  const category = categoryForStatus(status);
  const what =
    category === 'auth'
      ? 'authentication failed'
      : category === 'permission'
        ? 'permission denied'
        : category === 'rate_limit'
          ? 'rate limited'
          : category === 'server'
            ? 'server error'
            : 'request rejected';
  return new ProviderError(PROVIDER, category, `OpenAI rejected the connection: ${what} (HTTP ${status})${message ? `: ${message}` : ''}`, {
    statusCode: status,
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  });
}


function extractMessage(body: string, secret?: string): string {
  const text = body.trim();
  if (text === '') return '';
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed === 'object' && parsed !== null && 'error' in parsed) {
      const error = (parsed as { error: unknown }).error;
      if (typeof error === 'object' && error !== null && 'message' in error && typeof (error as { message: unknown }).message === 'string') {
        return sanitizeMessage((error as { message: string }).message, secret);
      }
    }
  } catch {
    // not JSON: use the text itself
  }
  return sanitizeMessage(text.slice(0, 200), secret);
}
