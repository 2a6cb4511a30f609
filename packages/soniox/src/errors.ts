/** Soniox failures as core ProviderErrors: `{error_code, error_message}` responses, HTTP statuses, closes. */
import { ProviderError, categoryForStatus } from '@stsgate/core';
import type { ProviderErrorCategory } from '@stsgate/core';

export const PROVIDER = 'soniox';

/**
 * Soniox keys are opaque strings; redact the configured key itself (and cap the length) before a message
 * reaches a log or AVR Core.
 */
export function sanitizeMessage(message: string, secret?: string): string {
  let out = message.length > 500 ? `${message.slice(0, 500)}...` : message;
  if (secret !== undefined && secret.length >= 4) out = out.split(secret).join('[redacted]');
  return out;
}

/**
 * Category of a Soniox `error_code` (an HTTP-like status): 401 auth, 400 invalid_request, 402 quota,
 * 429 rate_limit, 408 timeout, 500/503 server (503 "Cannot continue request ... restart" is retryable).
 */
export function categoryForSonioxCode(code: number): ProviderErrorCategory {
  return categoryForStatus(code);
}

function describe(category: ProviderErrorCategory): string {
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

/** An `{error_code, error_message}` from the STT socket or a TTS JSON body / trailer. */
export function providerErrorFromSoniox(
  code: number,
  message: string | undefined,
  options: { secret?: string | undefined; what?: string; retryAfterMs?: number | undefined } = {},
): ProviderError {
  const category = categoryForSonioxCode(code);
  const text = sanitizeMessage(message ?? 'no message', options.secret);
  return new ProviderError(PROVIDER, category, `Soniox ${options.what ?? 'error'}: ${describe(category)} (${code}): ${text}`, {
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
  return new ProviderError(PROVIDER, category, `Soniox ${options.what}: ${describe(category)} (HTTP ${status})${text}`, {
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


/** The socket closed without an error message and without `finished`. */
export function providerErrorFromClose(code: number, reason: string, secret?: string): ProviderError {
  const detail = reason === '' ? 'no reason given' : sanitizeMessage(reason, secret);
  if (code === 1006) return new ProviderError(PROVIDER, 'connectivity', `the Soniox connection dropped (1006)`);
  if (code === 1008) {
    return new ProviderError(PROVIDER, 'invalid_request', `Soniox closed the connection (policy violation, 1008): ${detail}`, { retryable: false });
  }
  if (code === 1011 || code === 1012 || code === 1013) {
    return new ProviderError(PROVIDER, 'server', `Soniox closed the connection with a server error (${code}): ${detail}`);
  }
  return new ProviderError(PROVIDER, 'closed', `Soniox closed the connection (${code}): ${detail}`);
}
