/** Soniox failures as core ProviderErrors: `{error_code, error_message}` responses, HTTP statuses, closes. */
import { ProviderError, categoryForStatus, describeCategory, providerErrorFromCloseCode, providerErrorFromConnection, sanitizeMessage as sanitize } from '@stsgate/core';
import type { ProviderErrorCategory, WebSocketClassifiers } from '@stsgate/core';

export const PROVIDER = 'soniox';

/**
 * Soniox keys are opaque strings; redact the configured key itself (and cap the length) before a message
 * reaches a log or AVR Core.
 */
export function sanitizeMessage(message: string, secret?: string): string {
  return sanitize(message, secret);
}

/**
 * Category of a Soniox `error_code` (an HTTP-like status): 401 auth, 400 invalid_request, 402 quota,
 * 429 rate_limit, 408 timeout, 500/503 server (503 "Cannot continue request ... restart" is retryable).
 */
export function categoryForSonioxCode(code: number): ProviderErrorCategory {
  return categoryForStatus(code);
}

/** An `{error_code, error_message}` from the STT socket or a TTS JSON body / trailer. */
export function providerErrorFromSoniox(
  code: number,
  message: string | undefined,
  options: { secret?: string | undefined; what?: string; retryAfterMs?: number | undefined } = {},
): ProviderError {
  const category = categoryForSonioxCode(code);
  const text = sanitizeMessage(message ?? 'no message', options.secret);
  return new ProviderError(PROVIDER, category, `Soniox ${options.what ?? 'error'}: ${describeCategory(category)} (${code}): ${text}`, {
    statusCode: code,
    providerCode: String(code),
    ...(options.retryAfterMs === undefined ? {} : { retryAfterMs: options.retryAfterMs }),
  });
}

/** A rejected WebSocket upgrade or a non-2xx REST answer without a parsable JSON error. */
export function providerErrorFromStatus(status: number, body: string, options: { secret?: string | undefined; what: string; retryAfterMs?: number | undefined }): ProviderError {
  const parsed = parseErrorBody(body);
  if (parsed !== undefined) return providerErrorFromSoniox(parsed.code ?? status, parsed.message, options);
  const category = categoryForStatus(status);
  const text = body.trim() === '' ? '' : `: ${sanitizeMessage(body.trim().slice(0, 200), options.secret)}`;
  return new ProviderError(PROVIDER, category, `Soniox ${options.what}: ${describeCategory(category)} (HTTP ${status})${text}`, {
    statusCode: status,
    ...(options.retryAfterMs === undefined ? {} : { retryAfterMs: options.retryAfterMs }),
  });
}

/** `{error_code?, error_message?}` (also `{message}` / `{error}`) from a JSON error body, if it is one. */
export function parseErrorBody(body: string): { code: number | undefined; message: string | undefined } | undefined {
  const text = body.trim();
  if (!text.startsWith('{')) return undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null) return undefined;
    const record = parsed as Record<string, unknown>;
    const code = typeof record.error_code === 'number' ? record.error_code : typeof record.error_code === 'string' ? Number(record.error_code) : undefined;
    const raw = record.error_message ?? record.message ?? record.error;
    const message = typeof raw === 'string' ? raw : undefined;
    if (code === undefined && message === undefined) return undefined;
    return { code: code !== undefined && Number.isFinite(code) ? code : undefined, message };
  } catch {
    return undefined;
  }
}


/** The socket closed without an error message and without `finished` (core's standard close codes). */
export function providerErrorFromClose(code: number, reason: string, secret?: string): ProviderError {
  return providerErrorFromCloseCode({ provider: PROVIDER, label: 'Soniox', secrets: secret }, { code, reason });
}

/** How the Soniox sockets (STT, TTS) classify a refused upgrade, a close and a socket error. */
export function sonioxClassifiers(secret: string, service?: string): WebSocketClassifiers {
  const label = service === undefined ? 'Soniox' : `Soniox ${service}`;
  return {
    upgrade: ({ status, body, retryAfterMs }) => providerErrorFromStatus(status, body, { secret, what: `${service === undefined ? '' : `${service} `}rejected the connection`, retryAfterMs }),
    close: ({ code, reason }) => providerErrorFromClose(code, reason, secret),
    connection: (error) => providerErrorFromConnection({ provider: PROVIDER, label, secrets: secret }, error),
  };
}
