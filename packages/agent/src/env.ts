import { z } from 'zod';
import { blankToUndefined } from '@stsgate/core';

export { blankToUndefined };

/** True for an absolute `http:` or `https:` URL without whitespace. */
export function isHttpUrl(value: string): boolean {
  if (/\s/.test(value)) return false;
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

/** The URL as it may be logged: scheme, host, port and path; never credentials, query string or fragment. */
export function safeUrl(value: string): string {
  try {
    const url = new URL(value);
    return `${url.origin}${url.pathname}`;
  } catch {
    return '<invalid url>';
  }
}

/** An optional http(s) URL variable; blank means unset. */
export function envHttpUrl() {
  return z.preprocess(
    blankToUndefined,
    z
      .string()
      .trim()
      .refine(isHttpUrl, { message: 'must be an http:// or https:// URL' })
      .optional(),
  );
}

/** An optional string variable; blank means unset. */
export function envString() {
  return z.preprocess(blankToUndefined, z.string().optional());
}
