/** zod pieces for environment variables: an empty value means unset, everywhere. */
import { z } from 'zod';

export function blankToUndefined(value: unknown): unknown {
  if (value === null) return undefined;
  return typeof value === 'string' && value.trim() === '' ? undefined : value;
}

/** An optional trimmed string. */
export function envText() {
  return z.preprocess(blankToUndefined, z.string().trim().optional());
}

/** A required secret (trimmed); the message names the variable, never the value. */
export function envSecret(name: string) {
  return z.preprocess(blankToUndefined, z.string({ error: `${name} is required` }).trim());
}

export function envNumber(min: number, max: number) {
  return z.preprocess(blankToUndefined, z.coerce.number().pipe(z.number().min(min).max(max)).optional());
}

export function envInt(min: number, max: number) {
  return z.preprocess(blankToUndefined, z.coerce.number().pipe(z.number().int().min(min).max(max)).optional());
}

/** An absolute URL with one of `protocols` (e.g. `['ws:', 'wss:']`). */
export function envUrl(protocols: readonly string[]) {
  return z.preprocess(
    blankToUndefined,
    z
      .string()
      .trim()
      .refine((value) => {
        try {
          return protocols.includes(new URL(value).protocol);
        } catch {
          return false;
        }
      }, `must be a ${protocols.map((p) => `${p}//`).join(' or ')} URL`)
      .optional(),
  );
}

/**
 * A comma-separated list: entries trimmed, empty ones dropped, duplicates removed (first wins). `"en, it,"`
 * gives `['en', 'it']`. avr-asr-soniox passed the whole string as a single language hint (bug B11).
 */
export function splitList(value: string | undefined): string[] {
  if (value === undefined) return [];
  const out: string[] = [];
  for (const part of value.split(',')) {
    const entry = part.trim();
    if (entry !== '' && !out.includes(entry)) out.push(entry);
  }
  return out;
}
