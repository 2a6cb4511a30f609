/**
 * Speechmatics failures as core ProviderErrors: in-band `Error` messages (real-time ASR and Flow), close codes,
 * HTTP statuses (rejected upgrades, TTS, the temporary-key endpoint) and `@speechmatics/auth` errors.
 */
import { ProviderError, categoryForStatus, errorBodyMessage, providerErrorFromCloseCode, providerErrorFromConnection, sanitizeMessage as sanitize } from '@stsgate/core';
import type { ProviderErrorCategory, WebSocketClassifiers } from '@stsgate/core';

export const PROVIDER = 'speechmatics';

/** Caps a provider message (300 characters) and removes the API key and any temporary key (a JWT) from it. */
export function sanitizeMessage(message: string, secret?: string): string {
  return sanitize(message, secret, { maxLength: 300 });
}

/**
 * The wait before retrying `quota_exceeded`, `job_error` and `internal_error` (close codes 4005, 4013, 1011): the docs
 * ask for 5-10 s. The reconnect budget treats it as a floor and adds its jitter (default 30 %): 5 to 6.5 s.
 */
const SERVER_BACKOFF_MS = 5000;

/**
 * Category of an `Error.type` (real-time API and Flow share the list). `job_error`, `internal_error` and
 * `quota_exceeded` are the ones the docs say to retry (after a back-off).
 */
export function categoryForErrorType(type: string): { category: ProviderErrorCategory; retryable: boolean } {
  switch (type) {
    case 'not_authorised':
      return { category: 'auth', retryable: false };
    case 'not_allowed':
      return { category: 'permission', retryable: false };
    case 'quota_exceeded':
      return { category: 'quota', retryable: true };
    case 'timelimit_exceeded':
      return { category: 'quota', retryable: false };
    case 'invalid_message':
    case 'invalid_model':
    case 'invalid_language':
    case 'invalid_config':
    case 'config_error':
    case 'invalid_audio_type':
    case 'invalid_output_format':
      return { category: 'invalid_request', retryable: false };
    case 'protocol_error':
      return { category: 'protocol', retryable: false };
    case 'idle_timeout':
    case 'session_timeout':
      return { category: 'timeout', retryable: true };
    case 'job_error':
    case 'internal_error':
    case 'asr_error':
      return { category: 'server', retryable: true };
    default:
      return { category: 'unknown', retryable: false };
  }
}

/** An in-band `{"message":"Error","type":...,"reason":...}`. */
export function providerErrorFromServerError(type: string, reason: string | undefined, secret?: string): ProviderError {
  const { category, retryable } = categoryForErrorType(type);
  const detail = reason === undefined || reason === '' ? '' : `: ${sanitizeMessage(reason, secret)}`;
  const backoff = type === 'quota_exceeded' || type === 'job_error' || type === 'internal_error';
  return new ProviderError(PROVIDER, category, `Speechmatics error ${type}${detail}`, {
    retryable,
    providerCode: type,
    ...(backoff ? { retryAfterMs: SERVER_BACKOFF_MS } : {}),
  });
}

/**
 * A close without an `Error` message before it. Codes from the real-time API's table (Flow's are undocumented and
 * assumed to match): the close reason carries the error type. The standard codes (1006, 1012, 1013, ...) are core's.
 */
export function providerErrorFromClose(code: number, reason: string, secret?: string): ProviderError {
  const detail = reason === '' ? 'no reason given' : sanitizeMessage(reason, secret);
  switch (code) {
    case 1003:
      return new ProviderError(PROVIDER, 'protocol', `Speechmatics closed the connection: protocol error (1003): ${detail}`, { retryable: false });
    case 1008:
      return new ProviderError(PROVIDER, 'timeout', `Speechmatics closed the connection: policy violation or timeout (1008): ${detail}`);
    case 1011:
      return new ProviderError(PROVIDER, 'server', `Speechmatics closed the connection with an internal error (1011): ${detail}`, { retryAfterMs: SERVER_BACKOFF_MS });
    case 4001:
      return new ProviderError(PROVIDER, 'auth', `Speechmatics refused the credentials (4001): ${detail}`, { retryable: false });
    case 4003:
      return new ProviderError(PROVIDER, 'permission', `Speechmatics does not allow this (4003): ${detail}`, { retryable: false });
    case 4004:
      return new ProviderError(PROVIDER, 'invalid_request', `Speechmatics rejected the model (4004): ${detail}`, { retryable: false });
    case 4005:
      return new ProviderError(PROVIDER, 'quota', `Speechmatics quota exceeded (4005): ${detail}`, { retryable: true, retryAfterMs: SERVER_BACKOFF_MS });
    case 4006:
      return new ProviderError(PROVIDER, 'quota', `Speechmatics time limit exceeded (4006): ${detail}`, { retryable: false });
    case 4013:
      return new ProviderError(PROVIDER, 'server', `Speechmatics job error (4013): ${detail}`, { retryAfterMs: SERVER_BACKOFF_MS });
    default:
      return providerErrorFromCloseCode({ provider: PROVIDER, label: 'Speechmatics', secrets: secret }, { code, reason: detail });
  }
}

/** A non-2xx HTTP answer (rejected upgrade, TTS, key endpoint); the body's `detail`/`message`/`reason` if JSON. */
export function providerErrorFromStatus(
  status: number,
  body: string,
  options: { secret?: string | undefined; what: string; retryAfterMs?: number | undefined },
): ProviderError {
  const category = categoryForStatus(status);
  const text = errorBodyMessage(body);
  const detail = text === '' ? '' : `: ${sanitizeMessage(text, options.secret)}`;
  return new ProviderError(PROVIDER, category, `Speechmatics ${options.what} (HTTP ${status})${detail}`, {
    statusCode: status,
    ...(options.retryAfterMs === undefined ? {} : { retryAfterMs: options.retryAfterMs }),
  });
}

/** A connection-level failure (DNS, refused, reset) with the key removed from the message. */
export function connectionError(error: unknown, what: string, secret?: string): ProviderError {
  return providerErrorFromConnection({ provider: PROVIDER, label: 'Speechmatics', secrets: secret }, error, what);
}

/** How the real-time and Flow sockets classify a refused upgrade, a close and a socket error; `what` names the service. */
export function speechmaticsClassifiers(secret: string, what: string): WebSocketClassifiers {
  return {
    upgrade: ({ status, body, retryAfterMs }) => providerErrorFromStatus(status, body, { secret, what: `${what} rejected the connection`, retryAfterMs }),
    close: ({ code, reason }) => providerErrorFromClose(code, reason, secret),
    connection: (error) => connectionError(error, `Speechmatics ${what} connection failed`, secret),
  };
}
