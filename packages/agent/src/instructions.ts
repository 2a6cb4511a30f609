import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { ConfigError, ProviderError } from '@stsgate/core';
import type { CallContext } from '@stsgate/core';
import { envInt } from '@stsgate/core';
import { envHttpUrl, envString, isHttpUrl, safeUrl } from './env.js';
import { RequestFailure, requestText } from './http.js';
import type { FetchImpl } from './http.js';

export const DEFAULT_INSTRUCTIONS_URL_TIMEOUT_MS = 3000;
/** Longest caller-supplied value substituted into a template, in characters. */
export const MAX_TEMPLATE_VALUE_LENGTH = 200;
const MAX_URL_RESPONSE_BYTES = 1024 * 1024;

/**
 * Where a call's instructions (system prompt) come from, by priority: `text`, then `url`, then `file`, then
 * `defaultText`. A plain object: the file is read once per source object and cached.
 */
export interface InstructionSource {
  /** Literal instructions (`<PREFIX>_INSTRUCTIONS`); when set, nothing else is consulted. */
  readonly text?: string | undefined;
  /**
   * `GET` per call with `X-AVR-UUID` and the call's uuid and metadata as query parameters; expects
   * `{"system": "<instructions>"}` (`<PREFIX>_URL_INSTRUCTIONS`).
   */
  readonly url?: string | undefined;
  /** A UTF-8 text file (`<PREFIX>_FILE_INSTRUCTIONS`), relative to the working directory. */
  readonly file?: string | undefined;
  readonly defaultText: string;
  /** Timeout of the URL request, body included (default 3000 ms). */
  readonly urlTimeoutMs?: number | undefined;
}

/** What `resolveInstructions` needs of a call. */
export type InstructionCall = Pick<CallContext, 'callId' | 'metadata' | 'logger' | 'signal'>;

/** The shared `INSTRUCTIONS_URL_TIMEOUT_MS` variable (default 3000). */
export const instructionsUrlTimeoutEnv = envInt(100, 120_000, DEFAULT_INSTRUCTIONS_URL_TIMEOUT_MS);

const textEnv = envString();
const urlEnv = envHttpUrl();
const fileEnv = envString();

export type InstructionsEnvShape<P extends string> = { [K in `${P}_INSTRUCTIONS`]: typeof textEnv } & {
  [K in `${P}_URL_INSTRUCTIONS`]: typeof urlEnv;
} & { [K in `${P}_FILE_INSTRUCTIONS`]: typeof fileEnv } & { INSTRUCTIONS_URL_TIMEOUT_MS: typeof instructionsUrlTimeoutEnv };

export type InstructionsEnvSchema<P extends string> = ReturnType<typeof z.object<InstructionsEnvShape<P>>>;
export type InstructionsEnv<P extends string> = z.output<InstructionsEnvSchema<P>>;

/**
 * The AVR instruction variables of one adapter: `<P>_INSTRUCTIONS`, `<P>_URL_INSTRUCTIONS`,
 * `<P>_FILE_INSTRUCTIONS` (blank = unset) and `INSTRUCTIONS_URL_TIMEOUT_MS`. Merge its `shape` into the adapter's
 * env schema, then build the source with `instructionSourceFromEnv`.
 */
export function instructionsEnv<P extends string>(prefix: P): InstructionsEnvSchema<P> {
  if (!/^[A-Z][A-Z0-9_]*$/.test(prefix)) throw new Error(`invalid instructions env prefix "${prefix}"`);
  const shape: Record<string, z.ZodType> = {
    [`${prefix}_INSTRUCTIONS`]: textEnv,
    [`${prefix}_URL_INSTRUCTIONS`]: urlEnv,
    [`${prefix}_FILE_INSTRUCTIONS`]: fileEnv,
    INSTRUCTIONS_URL_TIMEOUT_MS: instructionsUrlTimeoutEnv,
  };
  return z.object(shape as InstructionsEnvShape<P>);
}

/**
 * The source described by parsed env variables. Like avr-app, a `<P>_INSTRUCTIONS` value that is an http(s) URL
 * is the URL source (it wins over `<P>_URL_INSTRUCTIONS`).
 */
export function instructionSourceFromEnv<P extends string>(
  parsed: InstructionsEnv<P>,
  defaultText: string,
  prefix: P,
): InstructionSource {
  const values = parsed as Readonly<Record<string, unknown>>;
  const read = (key: string): string | undefined => {
    const value = values[key];
    return typeof value === 'string' && value.trim() !== '' ? value : undefined;
  };
  const text = read(`${prefix}_INSTRUCTIONS`);
  const textIsUrl = text !== undefined && isHttpUrl(text.trim());
  const timeout = values['INSTRUCTIONS_URL_TIMEOUT_MS'];
  return {
    text: textIsUrl ? undefined : text,
    url: textIsUrl ? text.trim() : read(`${prefix}_URL_INSTRUCTIONS`),
    file: read(`${prefix}_FILE_INSTRUCTIONS`)?.trim(),
    defaultText,
    urlTimeoutMs: typeof timeout === 'number' ? timeout : DEFAULT_INSTRUCTIONS_URL_TIMEOUT_MS,
  };
}

/** File contents per source object; a failed read is not cached, so the next call tries (and reports) again. */
const fileCache = new WeakMap<InstructionSource, Promise<string>>();

function fileProblem(file: string, error: unknown): string {
  const code = typeof error === 'object' && error !== null && 'code' in error ? String((error as { code: unknown }).code) : undefined;
  const reason = error instanceof EmptyFileError ? 'the file is empty' : (code ?? (error instanceof Error ? error.message : String(error)));
  return `instructions file ${path.resolve(file)} cannot be used: ${reason}`;
}

class EmptyFileError extends Error {}

function checkedText(text: string): string {
  if (text.trim() === '') throw new EmptyFileError('empty');
  return text;
}

function readInstructionFile(source: InstructionSource, file: string): Promise<string> {
  const cached = fileCache.get(source);
  if (cached !== undefined) return cached;
  const pending = readFile(path.resolve(file), 'utf8').then(checkedText);
  fileCache.set(source, pending);
  pending.catch(() => {
    if (fileCache.get(source) === pending) fileCache.delete(source);
  });
  return pending;
}

/**
 * Boot-time check of the source's file (skipped when `text` makes the file irrelevant): reads it now, caches it
 * for the calls, and throws a ConfigError when it is missing, unreadable or empty.
 */
export function checkInstructionFile(source: InstructionSource, scope = 'instructions'): void {
  if (source.file === undefined || (source.text !== undefined && source.text.trim() !== '')) return;
  let text: string;
  try {
    text = checkedText(readFileSync(path.resolve(source.file), 'utf8'));
  } catch (error) {
    throw new ConfigError(scope, [fileProblem(source.file, error)]);
  }
  fileCache.set(source, Promise.resolve(text));
}

type Origin = 'env' | 'url' | 'file' | 'default';

/**
 * The instructions for one call: env text, else the URL, else the file, else the default, with `{{from}}`,
 * `{{to}}`, `{{uuid}}` and `{{<metadata key>}}` substituted. A URL or file failure is logged (warn/error) and the
 * next source is used. Rejects (ProviderError `closed`) only when `call.signal` aborts during the URL request.
 */
export async function resolveInstructions(
  source: InstructionSource,
  call: InstructionCall,
  fetchImpl: FetchImpl = fetch,
): Promise<string> {
  const { logger } = call;
  const hasFile = source.file !== undefined && source.file.trim() !== '';
  let origin: Origin = 'default';
  let template = source.defaultText;

  if (source.text !== undefined && source.text.trim() !== '') {
    origin = 'env';
    template = source.text;
  } else {
    let found: string | undefined;
    if (source.url !== undefined && source.url.trim() !== '') {
      found = await fetchInstructions(source.url.trim(), source.urlTimeoutMs ?? DEFAULT_INSTRUCTIONS_URL_TIMEOUT_MS, call, fetchImpl, hasFile);
      if (found !== undefined) origin = 'url';
    }
    if (found === undefined && hasFile && source.file !== undefined) {
      try {
        found = await readInstructionFile(source, source.file);
        origin = 'file';
      } catch (error) {
        logger.error({ file: path.resolve(source.file) }, `${fileProblem(source.file, error)}; using the default instructions`);
      }
    }
    if (found !== undefined) template = found;
  }

  const instructions = renderInstructions(template, call);
  logger.debug({ instructionsSource: origin, instructions }, 'instructions resolved');
  return instructions;
}

const urlPayloadSchema = z.object({ system: z.string().refine((s) => s.trim() !== '', 'must not be empty') });

async function fetchInstructions(
  url: string,
  timeoutMs: number,
  call: InstructionCall,
  fetchImpl: FetchImpl,
  hasFile: boolean,
): Promise<string | undefined> {
  const logUrl = safeUrl(url);
  const fallback = hasFile ? 'using the instructions file' : 'using the default instructions';
  const fail = (details: Record<string, unknown>, reason: string): undefined => {
    call.logger.warn({ url: logUrl, ...details }, `instructions URL failed (${reason}); ${fallback}`);
    return undefined;
  };
  let response;
  try {
    response = await requestText(fetchImpl, instructionsUrlFor(url, call), {
      method: 'GET',
      headers: { 'Content-Type': 'application/json', 'X-AVR-UUID': call.callId },
      timeoutMs,
      signal: call.signal,
      maxBytes: MAX_URL_RESPONSE_BYTES,
    });
  } catch (error) {
    if (error instanceof RequestFailure && error.kind === 'cancelled') {
      throw new ProviderError('instructions', 'closed', 'the call ended while the instructions were loading', { retryable: false });
    }
    const message = error instanceof Error ? error.message : String(error);
    return fail({ cause: message }, message);
  }
  if (!response.ok) return fail({ status: response.status }, `HTTP ${response.status}`);
  let body: unknown;
  try {
    body = JSON.parse(response.text);
  } catch {
    return fail({ status: response.status }, 'the response is not JSON');
  }
  const payload = urlPayloadSchema.safeParse(body);
  if (!payload.success) return fail({ status: response.status }, 'the response has no non-empty "system" string');
  return payload.data.system;
}

// Line breaks become one space; other C0/C1 controls and bidi overrides are removed.
const LINE_BREAKS = /[\t\n\v\f\r\u0085\u2028\u2029]+/gu;
const UNSAFE_CHARACTERS = /[\p{Cc}\u202A-\u202E\u2066-\u2069]/gu;

/** A caller-supplied value made safe for a prompt: one line, controls stripped, trimmed, capped. */
export function sanitizeTemplateValue(value: string): string {
  const cleaned = value.replace(LINE_BREAKS, ' ').replace(UNSAFE_CHARACTERS, '').trim();
  const characters = Array.from(cleaned);
  return characters.length > MAX_TEMPLATE_VALUE_LENGTH ? characters.slice(0, MAX_TEMPLATE_VALUE_LENGTH).join('') : cleaned;
}

const PLACEHOLDER = /\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}/g;

/**
 * Substitutes `{{uuid}}` (the call id), `{{from}}`, `{{to}}` and any `{{ key }}` of the call's metadata, in one
 * pass (substituted values are never expanded again). A placeholder with no value stays as written: instructions may
 * hold braces meant for the model.
 */
export function renderInstructions(template: string, call: Pick<InstructionCall, 'callId' | 'metadata'>): string {
  return template.replace(PLACEHOLDER, (match: string, key: string) => {
    const value = key === 'uuid' ? call.callId : Object.hasOwn(call.metadata, key) ? call.metadata[key] : undefined;
    return value === undefined ? match : sanitizeTemplateValue(value);
  });
}

/**
 * The instructions URL for one call: the configured URL with the call's `uuid` and metadata (`from`, `to`, and any
 * other connect-query key) added as query parameters, so the server can personalise without parsing AVR's uuid.
 * Parameters the configured URL already has are kept as they are.
 */
export function instructionsUrlFor(url: string, call: Pick<InstructionCall, 'callId' | 'metadata'>): string {
  const target = new URL(url);
  const add = (key: string, value: string): void => {
    if (!target.searchParams.has(key)) target.searchParams.set(key, sanitizeTemplateValue(value));
  };
  add('uuid', call.callId);
  for (const [key, value] of Object.entries(call.metadata)) add(key, value);
  return target.toString();
}
