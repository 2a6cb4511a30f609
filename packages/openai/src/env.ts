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

export function envEnum<const T extends readonly [string, ...string[]]>(values: T, fallback: T[number]) {
  return z.preprocess(
    (value) => {
      const blank = blankToUndefined(value);
      return typeof blank === 'string' ? blank.trim().toLowerCase() : blank;
    },
    z.enum(values).default(fallback as never),
  );
}

export function envOptionalEnum<const T extends readonly [string, ...string[]]>(values: T) {
  return z.preprocess(
    (value) => {
      const blank = blankToUndefined(value);
      return typeof blank === 'string' ? blank.trim().toLowerCase() : blank;
    },
    z.enum(values).optional(),
  );
}

const TRUE = new Set(['true', '1', 'yes', 'on']);
const FALSE = new Set(['false', '0', 'no', 'off']);

/** true/false (also 1/0, yes/no, on/off). */
export function envBoolean(fallback: boolean) {
  return z.preprocess(
    (value) => {
      const blank = blankToUndefined(value);
      if (typeof blank !== 'string') return blank;
      const lower = blank.trim().toLowerCase();
      if (TRUE.has(lower)) return true;
      if (FALSE.has(lower)) return false;
      return blank;
    },
    z.boolean({ error: 'must be true or false' }).default(fallback),
  );
}

export function envNumber(min: number, max: number) {
  return z.preprocess(blankToUndefined, z.coerce.number().pipe(z.number().min(min).max(max)).optional());
}

export function envInt(min: number, max: number) {
  return z.preprocess(blankToUndefined, z.coerce.number().pipe(z.number().int().min(min).max(max)).optional());
}

/** A positive integer up to `max`, or `inf` (case-insensitive). */
export function envTokens(max: number) {
  return z.preprocess(
    (value) => {
      const blank = blankToUndefined(value);
      if (typeof blank !== 'string') return blank;
      const trimmed = blank.trim().toLowerCase();
      return trimmed === 'inf' ? 'inf' : Number(trimmed);
    },
    z.union([z.literal('inf'), z.number().int().min(1).max(max)], { error: `must be an integer from 1 to ${max}, or "inf"` }).optional(),
  );
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

/** Model names that only the Realtime API serves (not Chat Completions). */
export function isRealtimeModel(model: string): boolean {
  return /realtime/i.test(model);
}
