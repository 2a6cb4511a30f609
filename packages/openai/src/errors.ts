/**
 * Realtime-protocol failures as core ProviderErrors: server `error` objects, WebSocket close codes, HTTP statuses. For
 * OpenAI by default; an OpenAI-compatible provider passes its own name (its profile's `id` and `label`).
 */
import {
  ProviderError,
  parseRetryAfter,
  providerErrorFromCloseCode,
  providerErrorFromConnection,
  providerErrorFromUpgrade as providerErrorFromCoreUpgrade,
  sanitizeMessage as sanitize,
} from '@stsgate/core';
import type { ProviderErrorCategory, UpgradeRejection, WebSocketClassifiers } from '@stsgate/core';

export const PROVIDER = 'openai';

/** Who a failure is about: `id` is ProviderError.provider (and the log field), `label` names it in messages. */
export interface ProviderName {
  readonly id: string;
  readonly label: string;
}

export const OPENAI: ProviderName = { id: PROVIDER, label: 'OpenAI' };

/** What follows OpenAI's `sk-`/`sess-`/`ek-` key and secret prefixes and xAI's `xai-` (the prefix stays readable). */
const KEY_LIKE = /(?<=\b(?:sk|sess|ek|xai)-)[A-Za-z0-9_*-]{4,}/g;

/**
 * Server messages can quote part of the API key ("Incorrect API key provided: sk-ab***yz"). Core's sanitizer with the
 * key shapes of these providers: the configured key, anything key-shaped, JWTs and bearer tokens are redacted and the
 * text is capped (500 characters unless `maxLength` says otherwise) before it reaches a log or AVR Core.
 */
export function sanitizeMessage(message: string, secret?: string, maxLength?: number): string {
  return sanitize(message, secret, { patterns: [KEY_LIKE], ...(maxLength === undefined ? {} : { maxLength }) });
}

export interface ServerErrorInfo {
  readonly type?: string | null | undefined;
  readonly code?: string | null | undefined;
  readonly message?: string | null | undefined;
  readonly param?: string | null | undefined;
}

/** Category of an `error` event's error object (by code first, then by type; xAI's types too). */
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
    case 'internal_error':
      return 'server';
    case 'invalid_event':
      return 'invalid_request';
    case 'timeout':
      return 'timeout';
    case 'max_duration':
      return 'closed';
    default:
      return 'unknown';
  }
}

export function describeServerError(error: ServerErrorInfo, secret?: string): string {
  const message = sanitizeMessage(error.message ?? 'no message', secret);
  const details = [error.code, error.param ? `param ${error.param}` : undefined].filter((x): x is string => typeof x === 'string' && x !== '');
  return details.length > 0 ? `${message} (${details.join(', ')})` : message;
}

export function providerErrorFromServer(error: ServerErrorInfo, secret?: string, prefix?: string, provider: ProviderName = OPENAI): ProviderError {
  return new ProviderError(provider.id, categoryForServerError(error), `${prefix ?? `${provider.label} error`}: ${describeServerError(error, secret)}`, {
    ...(error.code ? { providerCode: error.code } : {}),
  });
}

/**
 * A WebSocket close the adapter did not ask for. 3000 is OpenAI's auth close, 4000 its "invalid request" close (bad
 * model, beta header); the standard codes are core's. The last `error` event, if any, supplies the message.
 */
export function providerErrorFromClose(
  code: number,
  reason: string,
  lastError: ServerErrorInfo | undefined,
  secret?: string,
  provider: ProviderName = OPENAI,
): ProviderError {
  const { id, label } = provider;
  const detail = lastError ? describeServerError(lastError, secret) : sanitizeMessage(reason || 'no reason given', secret);
  const providerCode = lastError?.code ?? (reason || undefined);
  const options = providerCode ? { providerCode } : {};
  if (code === 3000) {
    return new ProviderError(id, 'auth', `${label} closed the connection: authentication failed: ${detail}`, { ...options, retryable: false });
  }
  if (code === 4000) {
    return new ProviderError(id, 'invalid_request', `${label} closed the connection: invalid request: ${detail}`, { ...options, retryable: false });
  }
  // 1000/1001 mid-call (e.g. the session reached its maximum duration) is a `closed` error: a new connection may fix it.
  const standard = providerErrorFromCloseCode({ provider: id, label, secrets: secret }, { code, reason: detail });
  return new ProviderError(id, standard.category, standard.message, { ...options, retryable: standard.retryable });
}

/** A rejected WebSocket upgrade (the server answered HTTP instead of 101): core's classifier, with the key shapes redacted. */
export function providerErrorFromUpgrade(
  status: number,
  body: string,
  retryAfterHeader: string | undefined,
  secret?: string,
  provider: ProviderName = OPENAI,
): ProviderError {
  return upgradeError(provider, secret, { status, body, retryAfterMs: parseRetryAfter(retryAfterHeader), headers: {} });
}

function upgradeError(provider: ProviderName, secret: string | undefined, rejection: UpgradeRejection): ProviderError {
  // The body (at most 4 KiB) is redacted whole, before core picks its message out of it.
  const body = sanitizeMessage(rejection.body, secret, 4096);
  return providerErrorFromCoreUpgrade({ provider: provider.id, label: provider.label, secrets: secret }, { ...rejection, body });
}

/**
 * How a Realtime socket's failures are classified: a refused upgrade, a close (with the last `error` event the
 * handshake saw, which names the cause of a close that follows it) and a socket error.
 */
export function realtimeClassifiers(provider: ProviderName, secret: string, lastError: () => ServerErrorInfo | undefined): Required<WebSocketClassifiers> {
  return {
    upgrade: (rejection) => upgradeError(provider, secret, rejection),
    close: ({ code, reason }) => providerErrorFromClose(code, reason, lastError(), secret, provider),
    connection: (error) => providerErrorFromConnection({ provider: provider.id, label: provider.label, secrets: secret }, error),
  };
}
