/**
 * How a WebSocket connection's failures become ProviderErrors, whatever the provider: a rejected upgrade (an HTTP
 * status instead of 101), a close, a socket error. These are the defaults of `openWebSocket` and `LiveSocket`; an
 * adapter passes its own classifier for the codes its provider documents and falls back on these for the rest.
 */
import { ProviderError, categoryForStatus, providerErrorFromStatus, toProviderError } from '../errors/provider-error.js';
import type { ProviderErrorCategory } from '../errors/provider-error.js';
import { sanitizeMessage } from './frames.js';
import type { Secrets } from './frames.js';

/** Who failed, for messages: `provider` is the ProviderError's, `label` names the service ("Soniox", "Speechmatics Flow"). */
export interface ConnectionNames {
  readonly provider: string;
  readonly label: string;
  /** Removed from every message. */
  readonly secrets?: Secrets;
}

/** A WebSocket upgrade the server answered with an HTTP status. */
export interface UpgradeRejection {
  readonly status: number;
  /** The start of the body (at most 4 KiB), as text. */
  readonly body: string;
  /** `Retry-After`, parsed. */
  readonly retryAfterMs: number | undefined;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

/** A close frame (or 1006 when the connection dropped without one). */
export interface CloseInfo {
  readonly code: number;
  readonly reason: string;
}

/** Words for a category in a message ("authentication failed (HTTP 401)"). */
export function describeCategory(category: ProviderErrorCategory): string {
  switch (category) {
    case 'auth':
      return 'authentication failed';
    case 'permission':
      return 'permission denied';
    case 'quota':
      return 'quota exceeded';
    case 'rate_limit':
      return 'rate limited';
    case 'timeout':
      return 'timed out';
    case 'server':
      return 'server error';
    case 'invalid_request':
      return 'invalid request';
    case 'connectivity':
    case 'protocol':
    case 'closed':
    case 'unknown':
      return 'error';
  }
}

/** The human part of an HTTP error body: a JSON body's `error_message`/`message`/`detail`/`reason`/`error`, else its text. */
export function errorBodyMessage(body: string): string {
  const text = body.trim();
  if (text.startsWith('{')) {
    try {
      const parsed: unknown = JSON.parse(text);
      if (typeof parsed === 'object' && parsed !== null) {
        const record = parsed as Record<string, unknown>;
        for (const key of ['error_message', 'message', 'detail', 'reason', 'error']) {
          const value = record[key];
          if (typeof value === 'string' && value !== '') return value;
          if (typeof value === 'object' && value !== null) {
            const nested = (value as Record<string, unknown>).message;
            if (typeof nested === 'string' && nested !== '') return nested;
          }
        }
      }
    } catch {
      // not JSON after all: the raw text
    }
  }
  return text.slice(0, 200);
}

/** Default upgrade classifier: the status's category, the body's message, the `Retry-After` hint. */
export function providerErrorFromUpgrade(names: ConnectionNames, rejection: UpgradeRejection): ProviderError {
  const category = categoryForStatus(rejection.status);
  const text = errorBodyMessage(rejection.body);
  const detail = text === '' ? '' : `: ${sanitizeMessage(text, names.secrets, { maxLength: 300 })}`;
  return providerErrorFromStatus(names.provider, rejection.status, `${names.label} rejected the connection: ${describeCategory(category)} (HTTP ${rejection.status})${detail}`, {
    ...(rejection.retryAfterMs === undefined ? {} : { retryAfterMs: rejection.retryAfterMs }),
  });
}

/**
 * Default close classifier, for the standard codes: 1005/1006 a dropped connection, 1008 a policy violation (not
 * retried), 1011-1013 a server error, anything else a close that a new connection may fix.
 */
export function providerErrorFromCloseCode(names: ConnectionNames, close: CloseInfo): ProviderError {
  const { provider, label } = names;
  const detail = close.reason === '' ? 'no reason given' : sanitizeMessage(close.reason, names.secrets);
  switch (close.code) {
    case 1005:
    case 1006:
      return new ProviderError(provider, 'connectivity', `the ${label} connection dropped (${close.code})`);
    case 1008:
      return new ProviderError(provider, 'invalid_request', `${label} closed the connection (policy violation, 1008): ${detail}`, { retryable: false });
    case 1011:
    case 1012:
    case 1013:
      return new ProviderError(provider, 'server', `${label} closed the connection with a server error (${close.code}): ${detail}`);
    default:
      return new ProviderError(provider, 'closed', `${label} closed the connection (${close.code}): ${detail}`);
  }
}

/** Default socket-error classifier: refused, reset, DNS and timeouts by their code; anything else is connectivity. */
export function providerErrorFromConnection(names: ConnectionNames, error: unknown, what = `${names.label} connection failed`): ProviderError {
  const mapped = toProviderError(names.provider, error);
  if (mapped.category !== 'unknown') return mapped;
  return new ProviderError(names.provider, 'connectivity', `${what}: ${sanitizeMessage(mapped.message, names.secrets)}`, { cause: error });
}
