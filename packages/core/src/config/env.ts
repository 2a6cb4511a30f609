/**
 * zod pieces for adapters' environment variables (AVR's names): an empty value means unset, everywhere (compose files
 * write `${VAR:-}`), and so do the literals `undefined` and `null` (see `blankToUndefined`).
 */
import { z } from 'zod';

/**
 * Unset, for an environment value: empty or blank, and the literal `undefined` or `null` (avr-app starts provider
 * containers with `AMI_URL=${process.env.AMI_URL}`, which writes `undefined` when the panel's own variable is unset).
 */
export function blankToUndefined(value: unknown): unknown {
  if (value === null) return undefined;
  if (typeof value !== 'string') return value;
  const trimmed = value.trim();
  return trimmed === '' || trimmed === 'undefined' || trimmed === 'null' ? undefined : value;
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

/** A number read from text, checked by `schema` (any bounds); unset gives `fallback`, or undefined without one. */
export function envNumeric(schema: z.ZodNumber): z.ZodType<number | undefined, unknown>;
export function envNumeric(schema: z.ZodNumber, fallback: number): z.ZodType<number, unknown>;
export function envNumeric(schema: z.ZodNumber, fallback?: number): z.ZodType<number | undefined, unknown> {
  const parsed = z.coerce.number().pipe(schema);
  return z.preprocess(blankToUndefined, fallback === undefined ? parsed.optional() : parsed.default(fallback));
}

/** A number in [min, max]; unset gives `fallback`, or undefined without one. */
export function envNumber(min: number, max: number): z.ZodType<number | undefined, unknown>;
export function envNumber(min: number, max: number, fallback: number): z.ZodType<number, unknown>;
export function envNumber(min: number, max: number, fallback?: number): z.ZodType<number | undefined, unknown> {
  const schema = z.number().min(min).max(max);
  return fallback === undefined ? envNumeric(schema) : envNumeric(schema, fallback);
}

/** A whole number in [min, max]; unset gives `fallback`, or undefined without one. */
export function envInt(min: number, max: number): z.ZodType<number | undefined, unknown>;
export function envInt(min: number, max: number, fallback: number): z.ZodType<number, unknown>;
export function envInt(min: number, max: number, fallback?: number): z.ZodType<number | undefined, unknown> {
  const schema = z.number().int().min(min).max(max);
  return fallback === undefined ? envNumeric(schema) : envNumeric(schema, fallback);
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

/** A required secret (trimmed); the message names the variable, never the value. */
export function envSecret(name: string) {
  return z.preprocess(blankToUndefined, z.string({ error: `${name} is required` }).trim());
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
