/**
 * What every WebSocket adapter does with the frames it receives and the messages it reports: decode a frame, and make a
 * provider's message safe to log and to show AVR Core.
 */
import type { RawData } from 'ws';

/** One received frame (`ws` hands a Buffer, an ArrayBuffer or fragments) as one Buffer, without copying a Buffer. */
export function frameToBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/** One received frame as UTF-8 text. */
export function frameToText(data: RawData): string {
  return frameToBuffer(data).toString('utf8');
}

/** The secrets of a connection: a key, a temporary token; empty and undefined entries are ignored. */
export type Secrets = string | readonly (string | undefined)[] | undefined;

export interface SanitizeOptions {
  /** Longer text is cut here and ends with `...` (default 500). */
  readonly maxLength?: number;
  /** Credential shapes to redact besides the secrets themselves (global regexes), e.g. a provider's key prefix. */
  readonly patterns?: readonly RegExp[];
}

/** A JWT (a temporary key, a signed URL token) anywhere in a text: three base64url segments. */
const JWT_PATTERN = /eyJ[\w-]+\.[\w-]+\.[\w-]+/g;
/** The value of an `Authorization: Bearer` header quoted back. */
const BEARER_PATTERN = /\b(Bearer\s+)[\w.~+/=-]{8,}/gi;

/**
 * Caps a provider's text and removes every given secret (4 characters or longer), any JWT and any bearer token from
 * it. Use it on everything a provider says before it reaches a log line or a ProviderError message.
 */
export function sanitizeMessage(text: string, secrets?: Secrets, options: SanitizeOptions = {}): string {
  const maxLength = options.maxLength ?? 500;
  let out = text.length > maxLength ? `${text.slice(0, maxLength)}...` : text;
  for (const secret of secretList(secrets)) out = out.split(secret).join('[redacted]');
  out = out.replace(JWT_PATTERN, '[redacted]').replace(BEARER_PATTERN, '$1[redacted]');
  for (const pattern of options.patterns ?? []) out = out.replace(pattern, '[redacted]');
  return out;
}

/** The secrets worth redacting: shorter strings would redact ordinary words. */
export function secretList(secrets: Secrets): string[] {
  const list = typeof secrets === 'string' ? [secrets] : (secrets ?? []);
  return list.filter((secret): secret is string => secret !== undefined && secret.length >= 4);
}
