/**
 * OpenAI Realtime GA wire model for the emulator: the effective session object, conversation items, and the
 * validation of client payloads with the error codes and message wording the GA server uses
 * (docs/reference/provider-protocols.md §1.3–1.5). Pure functions, no IO. The xAI dialect (Grok Voice Agent API) is
 * at the end: its session object, items and `response.create`, and what maps them onto the GA engine.
 *
 * Validation walks the payload in key order and reports the first problem, as the real server does:
 * `unknown_parameter` ("Unknown parameter: 'session.temperature'."), `missing_required_parameter`,
 * `invalid_type` ("Invalid type for 'x': expected an object, but got a string instead."), `invalid_value`
 * ("Invalid value: 'x'. Supported values are: 'a' and 'b'."), `integer_below_min_value` /
 * `integer_above_max_value` / `decimal_below_min_value` / `decimal_above_max_value`
 * ("Invalid 'x': integer below minimum value. Expected a value >= 0, but got -11 instead.").
 *
 * Emulator choices where the real behaviour is UNCONFIRMED (documented so a test failure can be judged):
 * - `rate` on `audio/pcmu` / `audio/pcma` formats is an unknown parameter (the SDK types give them no rate);
 * - `output_modalities` must be exactly one of `["audio"]` / `["text"]`;
 * - a `turn_detection` object of the same type as the current one is merged into it; a new type starts from
 *   that type's defaults;
 * - an assistant `output_audio` part (in `conversation.item.create` or `response.input`) is always refused with
 *   missing_required_parameter `...content[i].text`, as seen live for such a part without `text`.
 */
import { asJson, isRecord, jsonTypeName, type JsonObject, type JsonValue } from './common.js';

// ---- wire types ----------------------------------------------------------------------------------------------

export type RealtimeAudioFormat =
  | { readonly type: 'audio/pcm'; readonly rate: 24000 }
  | { readonly type: 'audio/pcmu' }
  | { readonly type: 'audio/pcma' };

export interface RealtimeServerVad {
  readonly type: 'server_vad';
  readonly threshold: number;
  readonly prefix_padding_ms: number;
  readonly silence_duration_ms: number;
  readonly idle_timeout_ms: number | null;
  readonly create_response: boolean;
  readonly interrupt_response: boolean;
}

export interface RealtimeSemanticVad {
  readonly type: 'semantic_vad';
  readonly eagerness: 'low' | 'medium' | 'high' | 'auto';
  readonly create_response: boolean;
  readonly interrupt_response: boolean;
}

export type RealtimeTurnDetection = RealtimeServerVad | RealtimeSemanticVad;

export interface RealtimeTranscriptionConfig {
  readonly model?: string;
  readonly language?: string;
  readonly prompt?: string;
  readonly delay?: string;
  readonly keywords?: readonly string[];
  readonly languages?: readonly string[];
}

export interface RealtimeNoiseReduction {
  readonly type: 'near_field' | 'far_field';
  readonly strength?: number;
}

/** The effective session, in the wire shape of `session.created` / `session.updated`. */
export interface RealtimeSessionConfig {
  readonly type: 'realtime';
  readonly object: 'realtime.session';
  readonly id: string;
  readonly model: string;
  readonly output_modalities: readonly ('audio' | 'text')[];
  readonly instructions: string;
  readonly tools: readonly JsonObject[];
  readonly tool_choice: JsonValue;
  readonly max_output_tokens: number | 'inf';
  readonly tracing: JsonValue;
  readonly truncation: JsonValue;
  readonly prompt: JsonValue;
  readonly expires_at: number;
  readonly audio: {
    readonly input: {
      readonly format: RealtimeAudioFormat;
      readonly transcription: RealtimeTranscriptionConfig | null;
      readonly noise_reduction: RealtimeNoiseReduction | null;
      readonly turn_detection: RealtimeTurnDetection | null;
    };
    readonly output: {
      readonly format: RealtimeAudioFormat;
      readonly voice: string | { readonly id: string };
      readonly speed: number;
    };
  };
  readonly include: readonly string[] | null;
  readonly parallel_tool_calls?: boolean;
  readonly reasoning?: { readonly effort: string };
}

export type RealtimeContentPart =
  | { readonly type: 'input_text'; readonly text: string }
  | { readonly type: 'input_audio'; readonly audio?: string; readonly transcript: string | null }
  | { readonly type: 'input_image'; readonly image_url: string; readonly detail?: string }
  | { readonly type: 'output_text'; readonly text: string }
  | { readonly type: 'output_audio'; readonly audio?: string; readonly transcript: string };

export type RealtimeItemStatus = 'completed' | 'incomplete' | 'in_progress';

export type RealtimeItem =
  | {
      readonly id: string;
      readonly object: 'realtime.item';
      readonly type: 'message';
      readonly status: RealtimeItemStatus;
      readonly role: 'user' | 'assistant' | 'system';
      readonly content: readonly RealtimeContentPart[];
    }
  | {
      readonly id: string;
      readonly object: 'realtime.item';
      readonly type: 'function_call';
      readonly status: RealtimeItemStatus;
      readonly name: string;
      readonly call_id: string;
      readonly arguments: string;
    }
  | {
      readonly id: string;
      readonly object: 'realtime.item';
      readonly type: 'function_call_output';
      readonly status: RealtimeItemStatus;
      readonly call_id: string;
      readonly output: string;
    };

/** Which protocol the emulator speaks: OpenAI's GA Realtime API, or xAI's Grok Voice Agent API. */
export type RealtimeDialect = 'openai' | 'xai';

/** A client item after validation, before the server assigns defaults. */
export type RealtimeItemInput =
  | {
      readonly type: 'message';
      readonly id?: string;
      readonly role: 'user' | 'assistant' | 'system';
      readonly content: readonly RealtimeContentPart[];
    }
  | { readonly type: 'function_call'; readonly id?: string; readonly name: string; readonly arguments: string; readonly call_id?: string }
  | { readonly type: 'function_call_output'; readonly id?: string; readonly call_id: string; readonly output: string };

export interface RealtimeResponseParams {
  readonly instructions?: string;
  readonly outputModalities?: readonly ('audio' | 'text')[];
  readonly outputFormat?: RealtimeAudioFormat;
  readonly voice?: string | { readonly id: string };
  /** 'auto' (default conversation) or 'none' (out of band). */
  readonly conversation: string;
  readonly metadata: JsonValue;
  readonly input?: readonly (RealtimeItemInput | { readonly type: 'item_reference'; readonly id: string })[];
  readonly maxOutputTokens?: number | 'inf';
}

export interface RealtimeTruncateParams {
  readonly itemId: string;
  readonly contentIndex: number;
  readonly audioEndMs: number;
}

/** The 12 event types the live server lists as accepted (§1.3), in its order. */
export const REALTIME_CLIENT_EVENT_TYPES = [
  'session.update',
  'session.close',
  'input_audio_buffer.append',
  'session.input_audio_buffer.append',
  'input_audio_buffer.commit',
  'input_audio_buffer.clear',
  'conversation.item.create',
  'conversation.item.truncate',
  'conversation.item.delete',
  'conversation.item.retrieve',
  'response.create',
  'response.cancel',
] as const;
export type RealtimeClientEventType = (typeof REALTIME_CLIENT_EVENT_TYPES)[number];

/** The built-in voices (openai-node's `RealtimeAudioConfigOutput.voice`); a custom voice is `{ id }`. The live service refuses any other name. */
export const REALTIME_VOICES = ['alloy', 'ash', 'ballad', 'coral', 'echo', 'sage', 'shimmer', 'verse', 'marin', 'cedar'] as const;

/**
 * Input transcription models (openai-node's `AudioTranscription.model`). The live service refuses an unknown model, which
 * refuses the whole `session.update`. OpenAI shuts down whisper-1 and the gpt-4o-*transcribe* models on 2027-02-26:
 * `refusedTranscriptionModels` (emulator option) plays that.
 */
export const REALTIME_TRANSCRIPTION_MODELS = [
  'whisper-1',
  'gpt-transcribe',
  'gpt-live-transcribe',
  'gpt-4o-mini-transcribe',
  'gpt-4o-mini-transcribe-2025-12-15',
  'gpt-4o-transcribe',
  'gpt-4o-transcribe-diarize',
  'gpt-realtime-whisper',
] as const;

// ---- errors ----------------------------------------------------------------------------------------------------

/** A client payload problem, reported as one `error` event (not fatal to the session). */
export class RealtimeWireError extends Error {
  constructor(
    readonly code: string | null,
    message: string,
    readonly param: string | null = null,
    readonly errorType = 'invalid_request_error',
  ) {
    super(message);
    this.name = 'RealtimeWireError';
  }
}

function quoteList(values: readonly string[]): string {
  const quoted = values.map((value) => `'${value}'`);
  if (quoted.length <= 1) return quoted.join('');
  if (quoted.length === 2) return `${quoted[0] as string} and ${quoted[1] as string}`;
  return `${quoted.slice(0, -1).join(', ')}, and ${quoted[quoted.length - 1] as string}`;
}

function describeValue(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

export function unknownParameter(param: string): RealtimeWireError {
  return new RealtimeWireError('unknown_parameter', `Unknown parameter: '${param}'.`, param);
}

export function missingParameter(param: string): RealtimeWireError {
  return new RealtimeWireError('missing_required_parameter', `Missing required parameter: '${param}'.`, param);
}

export function invalidType(param: string, expected: string, value: unknown): RealtimeWireError {
  return new RealtimeWireError(
    'invalid_type',
    `Invalid type for '${param}': expected ${expected}, but got ${jsonTypeName(value)} instead.`,
    param,
  );
}

export function invalidValue(param: string, value: unknown, supported: readonly string[]): RealtimeWireError {
  return new RealtimeWireError(
    'invalid_value',
    `Invalid value: '${describeValue(value)}'. Supported values are: ${quoteList(supported)}.`,
    param,
  );
}

function boundError(param: string, kind: 'integer' | 'decimal', side: 'below' | 'above', bound: number, value: number): RealtimeWireError {
  const word = side === 'below' ? 'minimum' : 'maximum';
  const op = side === 'below' ? '>=' : '<=';
  return new RealtimeWireError(
    `${kind}_${side}_${side === 'below' ? 'min' : 'max'}_value`,
    `Invalid '${param}': ${kind} ${side} ${word} value. Expected a value ${op} ${String(bound)}, but got ${String(value)} instead.`,
    param,
  );
}

// ---- primitive readers -----------------------------------------------------------------------------------------

function child(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

export function readObject(value: unknown, param: string, allowed: readonly string[]): Record<string, unknown> {
  if (!isRecord(value)) throw invalidType(param, 'an object', value);
  for (const key of Object.keys(value)) if (!allowed.includes(key)) throw unknownParameter(child(param, key));
  return value;
}

export function readString(value: unknown, param: string): string {
  if (typeof value !== 'string') throw invalidType(param, 'a string', value);
  return value;
}

export function readBoolean(value: unknown, param: string): boolean {
  if (typeof value !== 'boolean') throw invalidType(param, 'a boolean', value);
  return value;
}

export function readInteger(value: unknown, param: string, min?: number, max?: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw invalidType(param, 'an integer', value);
  if (!Number.isInteger(value)) throw invalidType(param, 'an integer', value);
  if (min !== undefined && value < min) throw boundError(param, 'integer', 'below', min, value);
  if (max !== undefined && value > max) throw boundError(param, 'integer', 'above', max, value);
  return value;
}

export function readNumber(value: unknown, param: string, min?: number, max?: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw invalidType(param, 'a number', value);
  if (min !== undefined && value < min) throw boundError(param, 'decimal', 'below', min, value);
  if (max !== undefined && value > max) throw boundError(param, 'decimal', 'above', max, value);
  return value;
}

export function readEnum<const T extends string>(value: unknown, param: string, values: readonly T[]): T {
  if (typeof value !== 'string') throw invalidType(param, 'a string', value);
  const found = values.find((candidate) => candidate === value);
  if (found === undefined) throw invalidValue(param, value, values);
  return found;
}

function readArray(value: unknown, param: string): unknown[] {
  if (!Array.isArray(value)) throw invalidType(param, 'an array', value);
  return value;
}

function readStringArray(value: unknown, param: string): string[] {
  return readArray(value, param).map((entry, index) => readString(entry, `${param}[${String(index)}]`));
}

function required(object: Record<string, unknown>, key: string, param: string): unknown {
  const value = object[key];
  if (value === undefined) throw missingParameter(child(param, key));
  return value;
}

// ---- session -------------------------------------------------------------------------------------------------

export const DEFAULT_SERVER_VAD: RealtimeServerVad = {
  type: 'server_vad',
  threshold: 0.5,
  prefix_padding_ms: 300,
  silence_duration_ms: 500,
  idle_timeout_ms: null,
  create_response: true,
  interrupt_response: true,
};

const DEFAULT_SEMANTIC_VAD: RealtimeSemanticVad = {
  type: 'semantic_vad',
  eagerness: 'auto',
  create_response: true,
  interrupt_response: true,
};

/**
 * GA defaults of a new session (§1.3): pcm 24 kHz both ways, alloy, server_vad with the documented 0.5 / 300 ms /
 * 500 ms (the SDK types and docs; a live `session.created` once showed 200 ms of silence, so clients should send it).
 */
export function defaultSession(id: string, model: string, expiresAt: number): RealtimeSessionConfig {
  return {
    type: 'realtime',
    object: 'realtime.session',
    id,
    model,
    output_modalities: ['audio'],
    instructions:
      "Your knowledge cutoff is 2023-10. You are a helpful, witty, and friendly AI. Act like a human, but remember that you aren't a human.",
    tools: [],
    tool_choice: 'auto',
    max_output_tokens: 'inf',
    tracing: null,
    truncation: 'auto',
    prompt: null,
    expires_at: expiresAt,
    audio: {
      input: {
        format: { type: 'audio/pcm', rate: 24000 },
        transcription: null,
        noise_reduction: null,
        turn_detection: DEFAULT_SERVER_VAD,
      },
      output: { format: { type: 'audio/pcm', rate: 24000 }, voice: 'alloy', speed: 1 },
    },
    include: null,
  };
}

const SESSION_KEYS = [
  'type',
  'audio',
  'include',
  'instructions',
  'max_output_tokens',
  'model',
  'output_modalities',
  'parallel_tool_calls',
  'prompt',
  'reasoning',
  'tool_choice',
  'tools',
  'tracing',
  'truncation',
] as const;

export function parseAudioFormat(value: unknown, param: string): RealtimeAudioFormat {
  const format = readObject(value, param, ['type', 'rate']);
  const type = format.type === undefined ? 'audio/pcm' : readEnum(format.type, child(param, 'type'), ['audio/pcm', 'audio/pcmu', 'audio/pcma']);
  if (type === 'audio/pcm') {
    if (format.rate !== undefined) readInteger(format.rate, child(param, 'rate'), 24000, 24000);
    return { type, rate: 24000 };
  }
  if (format.rate !== undefined) throw unknownParameter(child(param, 'rate'));
  return { type };
}

function parseTurnDetection(value: unknown, param: string, current: RealtimeTurnDetection | null): RealtimeTurnDetection | null {
  if (value === null) return null;
  if (!isRecord(value)) throw invalidType(param, 'an object', value);
  const type = readEnum(required(value, 'type', param), child(param, 'type'), ['server_vad', 'semantic_vad']);
  if (type === 'server_vad') {
    const raw = readObject(value, param, [
      'type',
      'threshold',
      'prefix_padding_ms',
      'silence_duration_ms',
      'idle_timeout_ms',
      'create_response',
      'interrupt_response',
    ]);
    const base = current?.type === 'server_vad' ? current : DEFAULT_SERVER_VAD;
    return {
      type,
      threshold: raw.threshold === undefined ? base.threshold : readNumber(raw.threshold, child(param, 'threshold'), 0, 1),
      prefix_padding_ms:
        raw.prefix_padding_ms === undefined ? base.prefix_padding_ms : readInteger(raw.prefix_padding_ms, child(param, 'prefix_padding_ms'), 0),
      silence_duration_ms:
        raw.silence_duration_ms === undefined
          ? base.silence_duration_ms
          : readInteger(raw.silence_duration_ms, child(param, 'silence_duration_ms'), 0),
      idle_timeout_ms:
        raw.idle_timeout_ms === undefined
          ? base.idle_timeout_ms
          : raw.idle_timeout_ms === null
            ? null
            : readInteger(raw.idle_timeout_ms, child(param, 'idle_timeout_ms'), 0),
      create_response:
        raw.create_response === undefined ? base.create_response : readBoolean(raw.create_response, child(param, 'create_response')),
      interrupt_response:
        raw.interrupt_response === undefined
          ? base.interrupt_response
          : readBoolean(raw.interrupt_response, child(param, 'interrupt_response')),
    };
  }
  const raw = readObject(value, param, ['type', 'eagerness', 'create_response', 'interrupt_response']);
  const base = current?.type === 'semantic_vad' ? current : DEFAULT_SEMANTIC_VAD;
  return {
    type,
    eagerness:
      raw.eagerness === undefined ? base.eagerness : readEnum(raw.eagerness, child(param, 'eagerness'), ['low', 'medium', 'high', 'auto']),
    create_response:
      raw.create_response === undefined ? base.create_response : readBoolean(raw.create_response, child(param, 'create_response')),
    interrupt_response:
      raw.interrupt_response === undefined ? base.interrupt_response : readBoolean(raw.interrupt_response, child(param, 'interrupt_response')),
  };
}

function parseTranscription(value: unknown, param: string): RealtimeTranscriptionConfig | null {
  if (value === null) return null;
  const raw = readObject(value, param, ['model', 'language', 'prompt', 'delay', 'keywords', 'languages']);
  return {
    ...(raw.model === undefined ? {} : { model: readEnum(raw.model, child(param, 'model'), REALTIME_TRANSCRIPTION_MODELS) }),
    ...(raw.language === undefined ? {} : { language: readString(raw.language, child(param, 'language')) }),
    ...(raw.prompt === undefined ? {} : { prompt: readString(raw.prompt, child(param, 'prompt')) }),
    ...(raw.delay === undefined
      ? {}
      : { delay: readEnum(raw.delay, child(param, 'delay'), ['minimal', 'low', 'medium', 'high', 'xhigh']) }),
    ...(raw.keywords === undefined ? {} : { keywords: readStringArray(raw.keywords, child(param, 'keywords')) }),
    ...(raw.languages === undefined ? {} : { languages: readStringArray(raw.languages, child(param, 'languages')) }),
  };
}

function parseNoiseReduction(value: unknown, param: string, current: RealtimeNoiseReduction | null): RealtimeNoiseReduction | null {
  if (value === null) return null;
  const raw = readObject(value, param, ['type', 'strength']);
  const type = raw.type === undefined ? (current?.type ?? 'near_field') : readEnum(raw.type, child(param, 'type'), ['near_field', 'far_field']);
  const strength = raw.strength === undefined ? (current?.strength ?? 1) : readNumber(raw.strength, child(param, 'strength'), 0);
  return { type, strength };
}

function parseVoice(value: unknown, param: string): string | { readonly id: string } {
  if (typeof value === 'string') return readEnum(value, param, REALTIME_VOICES);
  if (isRecord(value)) {
    const raw = readObject(value, param, ['id']);
    return { id: readString(required(raw, 'id', param), child(param, 'id')) };
  }
  throw invalidType(param, 'a string', value);
}

function parseModalities(value: unknown, param: string): ('audio' | 'text')[] {
  const list = readArray(value, param).map((entry, index) => readEnum(entry, `${param}[${String(index)}]`, ['text', 'audio']));
  if (list.length !== 1) {
    throw new RealtimeWireError(
      'invalid_value',
      `Invalid '${param}': exactly one output modality must be requested, either ['audio'] or ['text'].`,
      param,
    );
  }
  return list;
}

function parseMaxOutputTokens(value: unknown, param: string): number | 'inf' {
  if (value === 'inf') return 'inf';
  if (typeof value === 'string') throw invalidValue(param, value, ['inf']);
  return readInteger(value, param, 1, 4096);
}

function parseTools(value: unknown, param: string): JsonObject[] {
  return readArray(value, param).map((entry, index) => {
    const path = `${param}[${String(index)}]`;
    if (!isRecord(entry)) throw invalidType(path, 'an object', entry);
    const type = entry.type === undefined ? 'function' : readEnum(entry.type, child(path, 'type'), ['function', 'mcp']);
    if (type === 'function') {
      const raw = readObject(entry, path, ['type', 'name', 'description', 'parameters']);
      readString(required(raw, 'name', path), child(path, 'name'));
      if (raw.description !== undefined) readString(raw.description, child(path, 'description'));
      if (raw.parameters !== undefined && !isRecord(raw.parameters)) throw invalidType(child(path, 'parameters'), 'an object', raw.parameters);
    } else {
      readString(required(entry, 'server_label', path), child(path, 'server_label'));
    }
    return { ...(asJson(entry) as JsonObject), type };
  });
}

function parseToolChoice(value: unknown, param: string): JsonValue {
  if (typeof value === 'string') return readEnum(value, param, ['none', 'auto', 'required']);
  if (!isRecord(value)) throw invalidType(param, 'a string', value);
  const type = readEnum(required(value, 'type', param), child(param, 'type'), ['function', 'mcp']);
  if (type === 'function') {
    const raw = readObject(value, param, ['type', 'name']);
    readString(required(raw, 'name', param), child(param, 'name'));
  } else {
    const raw = readObject(value, param, ['type', 'server_label', 'name']);
    readString(required(raw, 'server_label', param), child(param, 'server_label'));
  }
  return asJson(value);
}

function parseTracing(value: unknown, param: string): JsonValue {
  if (value === null) return null;
  if (typeof value === 'string') return readEnum(value, param, ['auto']);
  const raw = readObject(value, param, ['group_id', 'metadata', 'workflow_name']);
  if (raw.group_id !== undefined) readString(raw.group_id, child(param, 'group_id'));
  if (raw.workflow_name !== undefined) readString(raw.workflow_name, child(param, 'workflow_name'));
  return asJson(raw);
}

function parseTruncation(value: unknown, param: string): JsonValue {
  if (typeof value === 'string') return readEnum(value, param, ['auto', 'disabled']);
  const raw = readObject(value, param, ['type', 'retention_ratio', 'token_limits']);
  readEnum(required(raw, 'type', param), child(param, 'type'), ['retention_ratio']);
  readNumber(required(raw, 'retention_ratio', param), child(param, 'retention_ratio'), 0, 1);
  if (raw.token_limits !== undefined) readObject(raw.token_limits, child(param, 'token_limits'), ['post_instructions']);
  return asJson(raw);
}

function parsePrompt(value: unknown, param: string): JsonValue {
  if (value === null) return null;
  const raw = readObject(value, param, ['id', 'variables', 'version']);
  readString(required(raw, 'id', param), child(param, 'id'));
  return asJson(raw);
}

export interface SessionUpdateContext {
  /** Voice cannot change once the model has produced audio in this session. */
  readonly assistantAudioPresent: boolean;
}

/**
 * Validates a `session.update` payload (`event.session`) and returns the merged effective session. Throws
 * RealtimeWireError for the first problem; the caller then applies nothing (the whole update is dropped).
 */
export function applySessionUpdate(
  current: RealtimeSessionConfig,
  value: unknown,
  context: SessionUpdateContext,
): RealtimeSessionConfig {
  if (value === undefined) throw missingParameter('session');
  if (!isRecord(value)) throw invalidType('session', 'an object', value);
  if (value.type === undefined) throw missingParameter('session.type');
  const type = readEnum(value.type, 'session.type', ['realtime', 'transcription']);
  if (type !== 'realtime') {
    throw new RealtimeWireError(
      'invalid_value',
      "Invalid 'session.type': this is a 'realtime' session (connected with ?model=); it cannot become a 'transcription' session.",
      'session.type',
    );
  }
  const raw = readObject(value, 'session', SESSION_KEYS);

  let next: RealtimeSessionConfig = current;
  for (const key of Object.keys(raw) as (typeof SESSION_KEYS)[number][]) {
    const entry = raw[key];
    const param = `session.${key}`;
    switch (key) {
      case 'type':
        break;
      case 'audio':
        next = applyAudio(next, entry, context);
        break;
      case 'include':
        next = {
          ...next,
          include:
            entry === null
              ? null
              : readArray(entry, param).map((item, index) =>
                  readEnum(item, `${param}[${String(index)}]`, ['item.input_audio_transcription.logprobs']),
                ),
        };
        break;
      case 'instructions':
        next = { ...next, instructions: readString(entry, param) };
        break;
      case 'max_output_tokens':
        next = { ...next, max_output_tokens: parseMaxOutputTokens(entry, param) };
        break;
      case 'model':
        next = { ...next, model: readString(entry, param) };
        break;
      case 'output_modalities':
        next = { ...next, output_modalities: parseModalities(entry, param) };
        break;
      case 'parallel_tool_calls':
        next = { ...next, parallel_tool_calls: readBoolean(entry, param) };
        break;
      case 'prompt':
        next = { ...next, prompt: parsePrompt(entry, param) };
        break;
      case 'reasoning': {
        const reasoning = readObject(entry, param, ['effort']);
        next = {
          ...next,
          reasoning: {
            effort: readEnum(required(reasoning, 'effort', param), `${param}.effort`, ['minimal', 'low', 'medium', 'high', 'xhigh']),
          },
        };
        break;
      }
      case 'tool_choice':
        next = { ...next, tool_choice: parseToolChoice(entry, param) };
        break;
      case 'tools':
        next = { ...next, tools: parseTools(entry, param) };
        break;
      case 'tracing':
        next = { ...next, tracing: parseTracing(entry, param) };
        break;
      case 'truncation':
        next = { ...next, truncation: parseTruncation(entry, param) };
        break;
      default: {
        const exhaustive: never = key;
        throw unknownParameter(`session.${String(exhaustive)}`);
      }
    }
  }
  return next;
}

function applyAudio(current: RealtimeSessionConfig, value: unknown, context: SessionUpdateContext): RealtimeSessionConfig {
  const audio = readObject(value, 'session.audio', ['input', 'output']);
  let input = current.audio.input;
  let output = current.audio.output;
  if (audio.input !== undefined) {
    const raw = readObject(audio.input, 'session.audio.input', ['format', 'noise_reduction', 'transcription', 'turn_detection']);
    input = {
      format: raw.format === undefined ? input.format : parseAudioFormat(raw.format, 'session.audio.input.format'),
      noise_reduction:
        raw.noise_reduction === undefined
          ? input.noise_reduction
          : parseNoiseReduction(raw.noise_reduction, 'session.audio.input.noise_reduction', input.noise_reduction),
      transcription:
        raw.transcription === undefined ? input.transcription : parseTranscription(raw.transcription, 'session.audio.input.transcription'),
      turn_detection:
        raw.turn_detection === undefined
          ? input.turn_detection
          : parseTurnDetection(raw.turn_detection, 'session.audio.input.turn_detection', input.turn_detection),
    };
  }
  if (audio.output !== undefined) {
    const raw = readObject(audio.output, 'session.audio.output', ['format', 'speed', 'voice']);
    const voice = raw.voice === undefined ? output.voice : parseVoice(raw.voice, 'session.audio.output.voice');
    if (context.assistantAudioPresent && JSON.stringify(voice) !== JSON.stringify(output.voice)) {
      throw new RealtimeWireError(
        'cannot_update_voice',
        "Cannot update a conversation's voice if assistant audio is present.",
        'session.audio.output.voice',
      );
    }
    output = {
      format: raw.format === undefined ? output.format : parseAudioFormat(raw.format, 'session.audio.output.format'),
      speed: raw.speed === undefined ? output.speed : readNumber(raw.speed, 'session.audio.output.speed', 0.25, 1.5),
      voice,
    };
  }
  return { ...current, audio: { input, output } };
}

// ---- items -----------------------------------------------------------------------------------------------------

const PART_TYPES_BY_ROLE = {
  user: ['input_text', 'input_audio', 'input_image'],
  system: ['input_text'],
  assistant: ['output_text', 'output_audio'],
} as const;

/** xAI's content types (its schema: input_text, input_audio, text, audio; `text` is "general text", for any role). */
const XAI_PART_TYPES_BY_ROLE = {
  user: ['input_text', 'input_audio', 'text'],
  system: ['input_text', 'text'],
  assistant: ['text', 'audio'],
} as const;

function parseContentPart(value: unknown, param: string, role: 'user' | 'assistant' | 'system', dialect: RealtimeDialect): RealtimeContentPart {
  if (!isRecord(value)) throw invalidType(param, 'an object', value);
  const wire = readEnum(required(value, 'type', param), child(param, 'type'), [...(dialect === 'xai' ? XAI_PART_TYPES_BY_ROLE : PART_TYPES_BY_ROLE)[role]]);
  // xAI's names mapped onto the GA ones the engine keeps.
  const type = wire === 'text' ? (role === 'assistant' ? 'output_text' : 'input_text') : wire === 'audio' ? 'output_audio' : wire;
  switch (type) {
    case 'input_text':
    case 'output_text': {
      const raw = readObject(value, param, ['type', 'text']);
      return { type, text: readString(required(raw, 'text', param), child(param, 'text')) };
    }
    case 'output_audio':
      // "It cannot populate assistant audio messages" (SDK types); live, the server asks for the text of such a part.
      throw missingParameter(child(param, 'text'));
    case 'input_audio': {
      const raw = readObject(value, param, ['type', 'audio', 'transcript']);
      const audio = raw.audio === undefined ? undefined : readString(raw.audio, child(param, 'audio'));
      const transcript = raw.transcript === undefined || raw.transcript === null ? null : readString(raw.transcript, child(param, 'transcript'));
      return { type, transcript, ...(audio === undefined ? {} : { audio }) };
    }
    case 'input_image': {
      const raw = readObject(value, param, ['type', 'image_url', 'detail']);
      const detail = raw.detail === undefined ? undefined : readEnum(raw.detail, child(param, 'detail'), ['auto', 'low', 'high']);
      return {
        type,
        image_url: readString(required(raw, 'image_url', param), child(param, 'image_url')),
        ...(detail === undefined ? {} : { detail }),
      };
    }
    default: {
      const exhaustive: never = type;
      throw invalidValue(child(param, 'type'), exhaustive, []);
    }
  }
}

/** Validates one item of `conversation.item.create` (param prefix `item`) or of `response.input`. */
export function parseItem(value: unknown, param: string, dialect: RealtimeDialect = 'openai'): RealtimeItemInput {
  if (value === undefined) throw missingParameter(param);
  if (!isRecord(value)) throw invalidType(param, 'an object', value);
  const type = readEnum(required(value, 'type', param), child(param, 'type'), ['message', 'function_call', 'function_call_output']);
  const common = ['type', 'id', 'object', 'status'];
  let id: string | undefined;
  if (value.id !== undefined) id = readString(value.id, child(param, 'id'));
  if (value.object !== undefined) readEnum(value.object, child(param, 'object'), ['realtime.item']);
  if (value.status !== undefined) readEnum(value.status, child(param, 'status'), ['completed', 'incomplete', 'in_progress']);
  const withId = id === undefined ? {} : { id };
  switch (type) {
    case 'message': {
      const raw = readObject(value, param, [...common, 'role', 'content']);
      const role = readEnum(required(raw, 'role', param), child(param, 'role'), ['user', 'assistant', 'system']);
      const content = readArray(required(raw, 'content', param), child(param, 'content')).map((part, index) =>
        parseContentPart(part, `${param}.content[${String(index)}]`, role, dialect),
      );
      return { type, role, content, ...withId };
    }
    case 'function_call': {
      const raw = readObject(value, param, [...common, 'name', 'arguments', 'call_id']);
      const callId = raw.call_id === undefined ? undefined : readString(raw.call_id, child(param, 'call_id'));
      return {
        type,
        name: readString(required(raw, 'name', param), child(param, 'name')),
        arguments: readString(required(raw, 'arguments', param), child(param, 'arguments')),
        ...(callId === undefined ? {} : { call_id: callId }),
        ...withId,
      };
    }
    case 'function_call_output': {
      const raw = readObject(value, param, [...common, 'call_id', 'output']);
      return {
        type,
        call_id: readString(required(raw, 'call_id', param), child(param, 'call_id')),
        output: readString(required(raw, 'output', param), child(param, 'output')),
        ...withId,
      };
    }
    default: {
      const exhaustive: never = type;
      throw invalidValue(child(param, 'type'), exhaustive, []);
    }
  }
}

// ---- responses -------------------------------------------------------------------------------------------------

const RESPONSE_KEYS = [
  'audio',
  'conversation',
  'input',
  'instructions',
  'max_output_tokens',
  'metadata',
  'output_modalities',
  'parallel_tool_calls',
  'prompt',
  'reasoning',
  'tool_choice',
  'tools',
] as const;

/** Validates `response.create`'s optional `response` object. */
export function parseResponseParams(value: unknown): RealtimeResponseParams {
  if (value === undefined) return { conversation: 'auto', metadata: null };
  const raw = readObject(value, 'response', RESPONSE_KEYS);
  let outputFormat: RealtimeAudioFormat | undefined;
  let voice: string | { readonly id: string } | undefined;
  if (raw.audio !== undefined) {
    const audio = readObject(raw.audio, 'response.audio', ['output']);
    if (audio.output !== undefined) {
      const output = readObject(audio.output, 'response.audio.output', ['format', 'voice']);
      if (output.format !== undefined) outputFormat = parseAudioFormat(output.format, 'response.audio.output.format');
      if (output.voice !== undefined) voice = parseVoice(output.voice, 'response.audio.output.voice');
    }
  }
  const conversation = raw.conversation === undefined ? 'auto' : readString(raw.conversation, 'response.conversation');
  const input =
    raw.input === undefined
      ? undefined
      : readArray(raw.input, 'response.input').map((entry, index) => {
          const param = `response.input[${String(index)}]`;
          if (isRecord(entry) && entry.type === 'item_reference') {
            const ref = readObject(entry, param, ['type', 'id']);
            return { type: 'item_reference' as const, id: readString(required(ref, 'id', param), `${param}.id`) };
          }
          return parseItem(entry, param);
        });
  if (raw.tools !== undefined) parseTools(raw.tools, 'response.tools');
  if (raw.tool_choice !== undefined) parseToolChoice(raw.tool_choice, 'response.tool_choice');
  if (raw.prompt !== undefined) parsePrompt(raw.prompt, 'response.prompt');
  if (raw.parallel_tool_calls !== undefined) readBoolean(raw.parallel_tool_calls, 'response.parallel_tool_calls');
  if (raw.reasoning !== undefined) readObject(raw.reasoning, 'response.reasoning', ['effort']);
  let metadata: JsonValue = null;
  if (raw.metadata !== undefined && raw.metadata !== null) {
    if (!isRecord(raw.metadata)) throw invalidType('response.metadata', 'an object', raw.metadata);
    for (const [key, entry] of Object.entries(raw.metadata)) readString(entry, `response.metadata.${key}`);
    metadata = asJson(raw.metadata);
  }
  return {
    conversation,
    metadata,
    ...(raw.instructions === undefined ? {} : { instructions: readString(raw.instructions, 'response.instructions') }),
    ...(raw.output_modalities === undefined ? {} : { outputModalities: parseModalities(raw.output_modalities, 'response.output_modalities') }),
    ...(raw.max_output_tokens === undefined ? {} : { maxOutputTokens: parseMaxOutputTokens(raw.max_output_tokens, 'response.max_output_tokens') }),
    ...(outputFormat === undefined ? {} : { outputFormat }),
    ...(voice === undefined ? {} : { voice }),
    ...(input === undefined ? {} : { input }),
  };
}

// ---- other client events -----------------------------------------------------------------------------------------

/** Validates the top-level keys of a client event: `type`, optional `event_id`, and the event's own keys. */
export function readEventKeys(event: Record<string, unknown>, keys: readonly string[]): Record<string, unknown> {
  return readObject(event, '', ['type', 'event_id', ...keys]);
}

export function parseTruncate(event: Record<string, unknown>): RealtimeTruncateParams {
  const raw = readEventKeys(event, ['item_id', 'content_index', 'audio_end_ms']);
  return {
    itemId: readString(required(raw, 'item_id', ''), 'item_id'),
    contentIndex: readInteger(required(raw, 'content_index', ''), 'content_index', 0),
    audioEndMs: readInteger(required(raw, 'audio_end_ms', ''), 'audio_end_ms', 0),
  };
}

export function parseItemIdEvent(event: Record<string, unknown>): string {
  const raw = readEventKeys(event, ['item_id']);
  return readString(required(raw, 'item_id', ''), 'item_id');
}

// ---- xAI (Grok Voice Agent API) ------------------------------------------------------------------------------------
//
// From docs.x.ai (Speech to Speech guide: session parameters, audio formats, voices, force_message, "OpenAI Realtime
// API Compatibility") and its API reference schema (voice-realtime.ws.json). The emulator is stricter than the live
// service where that is known to be lenient: the live service was observed to ignore session fields outside its
// schema; here they are errors (param = the field), so a client proves it sends only xAI's fields.

/**
 * xAI's client events: those of its API reference (`conversation.item.truncate` included; an older guide listed it as
 * not supported); `conversation.item.retrieve` is "Not supported", `output_audio_buffer.clear` WebRTC/SIP only.
 */
export const XAI_CLIENT_EVENT_TYPES = [
  'session.update',
  'input_audio_buffer.append',
  'input_audio_buffer.commit',
  'input_audio_buffer.clear',
  'conversation.item.create',
  'conversation.item.delete',
  'conversation.item.truncate',
  'response.create',
  'response.cancel',
] as const satisfies readonly RealtimeClientEventType[];

/** xAI's error types (the API reference's enum); its error `code` is "the same as type". */
export const XAI_ERROR_TYPES = ['invalid_request_error', 'invalid_event', 'internal_error', 'timeout', 'max_duration'] as const;

/** The input transcription models xAI documents (`grok-transcribe` streams `...transcription.updated`). */
export const XAI_TRANSCRIPTION_MODELS = ['grok-transcribe'] as const;
export type XaiClientEventType = (typeof XAI_CLIENT_EVENT_TYPES)[number];

/** Built-in voices (case-insensitive on the wire; custom voice ids are not emulated). */
export const XAI_VOICES = ['eve', 'ara', 'rex', 'sal', 'leo'] as const;
/** PCM rates xAI accepts; this emulator's audio path runs PCM at 24 kHz only. */
export const XAI_PCM_RATES = [8000, 16000, 22050, 24000, 32000, 44100, 48000] as const;
const XAI_SESSION_KEYS = ['model', 'instructions', 'reasoning', 'voice', 'turn_detection', 'resumption', 'audio', 'tools', 'replace'] as const;

export interface XaiServerVad {
  readonly type: 'server_vad';
  readonly threshold: number;
  readonly silence_duration_ms: number;
  readonly prefix_padding_ms: number;
  readonly idle_timeout_ms: number | null;
}

/** `{type: null}`: the client commits its turns. */
export type XaiTurnDetection = XaiServerVad | { readonly type: null };

export interface XaiTranscription {
  readonly model?: (typeof XAI_TRANSCRIPTION_MODELS)[number];
  readonly language_hint?: string;
  readonly keyterms?: readonly string[];
}

/** xAI's session object (flat: `voice` and `turn_detection` on the session), as session.created/updated carry it. */
export interface XaiSessionConfig {
  readonly id: string;
  readonly object: 'realtime.session';
  readonly model: string;
  readonly instructions: string;
  readonly voice: string;
  readonly turn_detection: XaiTurnDetection;
  readonly audio: {
    readonly input: { readonly format: RealtimeAudioFormat; readonly transcription: XaiTranscription | null };
    readonly output: { readonly format: RealtimeAudioFormat; readonly speed: number };
  };
  readonly tools: readonly JsonObject[];
  readonly reasoning: { readonly effort: 'high' | 'none' };
  readonly resumption: { readonly enabled: boolean };
  readonly replace: Readonly<Record<string, string>> | null;
}

/** server_vad as documented: threshold 0.85, prefix padding 333 ms; the silence default is UNCONFIRMED (500 ms here). */
export const XAI_DEFAULT_SERVER_VAD: XaiServerVad = {
  type: 'server_vad',
  threshold: 0.85,
  silence_duration_ms: 500,
  prefix_padding_ms: 333,
  idle_timeout_ms: null,
};

export function defaultXaiSession(id: string, model: string): XaiSessionConfig {
  return {
    id,
    object: 'realtime.session',
    model,
    instructions: '',
    voice: 'eve',
    turn_detection: XAI_DEFAULT_SERVER_VAD,
    audio: { input: { format: { type: 'audio/pcm', rate: 24000 }, transcription: null }, output: { format: { type: 'audio/pcm', rate: 24000 }, speed: 1 } },
    tools: [],
    reasoning: { effort: 'high' },
    resumption: { enabled: false },
    replace: null,
  };
}

/** An error in xAI's vocabulary for what the emulator cannot run although xAI accepts it. */
function notEmulated(param: string, what: string): RealtimeWireError {
  return new RealtimeWireError('unsupported_by_emulator', `The stsgate emulator does not run ${what}.`, param);
}

function parseXaiFormat(value: unknown, param: string): RealtimeAudioFormat {
  const raw = readObject(value, param, ['type', 'rate']);
  const type = readEnum(required(raw, 'type', param), child(param, 'type'), ['audio/pcm', 'audio/pcmu', 'audio/pcma', 'audio/opus']);
  if (type === 'audio/opus') throw notEmulated(child(param, 'type'), 'audio/opus');
  if (type === 'audio/pcm') {
    const rate = raw.rate === undefined ? 24000 : readInteger(raw.rate, child(param, 'rate'));
    if (!(XAI_PCM_RATES as readonly number[]).includes(rate)) throw invalidValue(child(param, 'rate'), rate, XAI_PCM_RATES.map(String));
    if (rate !== 24000) throw notEmulated(child(param, 'rate'), `audio/pcm at ${String(rate)} Hz (only at 24000 Hz)`);
    return { type, rate: 24000 };
  }
  // G.711 is 8000 Hz only; xAI documents `rate` for PCM.
  if (raw.rate !== undefined) readInteger(raw.rate, child(param, 'rate'), 8000, 8000);
  return { type };
}

function parseXaiTurnDetection(value: unknown, param: string, current: XaiTurnDetection): XaiTurnDetection {
  const raw = readObject(value, param, ['type', 'threshold', 'silence_duration_ms', 'prefix_padding_ms', 'idle_timeout_ms']);
  const type = required(raw, 'type', param);
  if (type === null) {
    const extra = Object.keys(raw).find((key) => key !== 'type');
    if (extra !== undefined) throw unknownParameter(child(param, extra));
    return { type: null };
  }
  readEnum(type, child(param, 'type'), ['server_vad']);
  const base: XaiServerVad = current.type === 'server_vad' ? current : XAI_DEFAULT_SERVER_VAD;
  return {
    type: 'server_vad',
    threshold: raw.threshold === undefined ? base.threshold : readNumber(raw.threshold, child(param, 'threshold'), 0.1, 0.9),
    silence_duration_ms:
      raw.silence_duration_ms === undefined ? base.silence_duration_ms : readInteger(raw.silence_duration_ms, child(param, 'silence_duration_ms'), 0, 10_000),
    prefix_padding_ms:
      raw.prefix_padding_ms === undefined ? base.prefix_padding_ms : readInteger(raw.prefix_padding_ms, child(param, 'prefix_padding_ms'), 0, 10_000),
    idle_timeout_ms:
      raw.idle_timeout_ms === undefined || raw.idle_timeout_ms === null ? null : readInteger(raw.idle_timeout_ms, child(param, 'idle_timeout_ms'), 0),
  };
}

function parseXaiTranscription(value: unknown, param: string): XaiTranscription | null {
  if (value === null) return null;
  // `model`: the guide and the reference name grok-transcribe only; another value is refused (UNCONFIRMED: xAI may
  // ignore it instead).
  const raw = readObject(value, param, ['model', 'language_hint', 'keyterms']);
  const model = raw.model === undefined ? undefined : readEnum(raw.model, child(param, 'model'), XAI_TRANSCRIPTION_MODELS);
  const keyterms = raw.keyterms === undefined ? undefined : readStringArray(raw.keyterms, child(param, 'keyterms'));
  if (keyterms !== undefined && (keyterms.length > 100 || keyterms.some((term) => term.length > 50))) {
    throw new RealtimeWireError('invalid_value', `Invalid '${child(param, 'keyterms')}': at most 100 terms of at most 50 characters.`, child(param, 'keyterms'));
  }
  return {
    ...(model === undefined ? {} : { model }),
    ...(raw.language_hint === undefined ? {} : { language_hint: readString(raw.language_hint, child(param, 'language_hint')) }),
    ...(keyterms === undefined ? {} : { keyterms }),
  };
}

function parseXaiTools(value: unknown, param: string): JsonObject[] {
  return readArray(value, param).map((entry, index) => {
    const path = `${param}[${String(index)}]`;
    if (!isRecord(entry)) throw invalidType(path, 'an object', entry);
    const type = readEnum(required(entry, 'type', path), child(path, 'type'), ['function', 'web_search', 'x_search', 'file_search', 'mcp']);
    switch (type) {
      case 'function': {
        const raw = readObject(entry, path, ['type', 'name', 'description', 'parameters']);
        readString(required(raw, 'name', path), child(path, 'name'));
        if (raw.description !== undefined) readString(raw.description, child(path, 'description'));
        if (raw.parameters !== undefined && !isRecord(raw.parameters)) throw invalidType(child(path, 'parameters'), 'an object', raw.parameters);
        break;
      }
      case 'web_search':
        readObject(entry, path, ['type']);
        break;
      case 'x_search': {
        const raw = readObject(entry, path, ['type', 'allowed_x_handles']);
        if (raw.allowed_x_handles !== undefined) readStringArray(raw.allowed_x_handles, child(path, 'allowed_x_handles'));
        break;
      }
      case 'file_search': {
        const raw = readObject(entry, path, ['type', 'vector_store_ids', 'max_num_results']);
        if (readStringArray(required(raw, 'vector_store_ids', path), child(path, 'vector_store_ids')).length === 0) {
          throw new RealtimeWireError('invalid_value', `Invalid '${child(path, 'vector_store_ids')}': at least one collection id is required.`, child(path, 'vector_store_ids'));
        }
        if (raw.max_num_results !== undefined) readInteger(raw.max_num_results, child(path, 'max_num_results'), 1);
        break;
      }
      case 'mcp': {
        const raw = readObject(entry, path, ['type', 'server_url', 'server_label', 'server_description', 'allowed_tools', 'authorization', 'headers']);
        readString(required(raw, 'server_url', path), child(path, 'server_url'));
        readString(required(raw, 'server_label', path), child(path, 'server_label'));
        break;
      }
      default: {
        const exhaustive: never = type;
        throw invalidValue(child(path, 'type'), exhaustive, []);
      }
    }
    return asJson(entry) as JsonObject;
  });
}

function parseXaiVoice(value: unknown, param: string): string {
  const voice = readString(value, param).toLowerCase();
  return readEnum(voice, param, XAI_VOICES);
}

function applyXaiAudio(current: XaiSessionConfig['audio'], value: unknown): XaiSessionConfig['audio'] {
  const audio = readObject(value, 'session.audio', ['input', 'output']);
  let { input, output } = current;
  const transport = (raw: Record<string, unknown>, param: string): void => {
    if (raw.transport !== undefined && readEnum(raw.transport, param, ['json', 'binary']) === 'binary') throw notEmulated(param, 'binary audio transport');
  };
  if (audio.input !== undefined) {
    const raw = readObject(audio.input, 'session.audio.input', ['format', 'transcription', 'transport']);
    transport(raw, 'session.audio.input.transport');
    input = {
      format: raw.format === undefined ? input.format : parseXaiFormat(raw.format, 'session.audio.input.format'),
      transcription: raw.transcription === undefined ? input.transcription : parseXaiTranscription(raw.transcription, 'session.audio.input.transcription'),
    };
  }
  if (audio.output !== undefined) {
    const raw = readObject(audio.output, 'session.audio.output', ['format', 'speed', 'transport']);
    transport(raw, 'session.audio.output.transport');
    output = {
      format: raw.format === undefined ? output.format : parseXaiFormat(raw.format, 'session.audio.output.format'),
      speed: raw.speed === undefined ? output.speed : readNumber(raw.speed, 'session.audio.output.speed', 0.7, 1.5),
    };
  }
  return { input, output };
}

/** Validates an xAI `session.update` payload; returns the merged session. Throws RealtimeWireError (nothing applies). */
export function applyXaiSessionUpdate(current: XaiSessionConfig, value: unknown): XaiSessionConfig {
  if (value === undefined) throw missingParameter('session');
  const raw = readObject(value, 'session', XAI_SESSION_KEYS);
  let next = current;
  for (const key of Object.keys(raw) as (typeof XAI_SESSION_KEYS)[number][]) {
    const entry = raw[key];
    const param = `session.${key}`;
    switch (key) {
      case 'model':
        next = { ...next, model: readString(entry, param) };
        break;
      case 'instructions':
        next = { ...next, instructions: readString(entry, param) };
        break;
      case 'reasoning': {
        const reasoning = readObject(entry, param, ['effort']);
        next = { ...next, reasoning: { effort: readEnum(required(reasoning, 'effort', param), `${param}.effort`, ['high', 'none']) } };
        break;
      }
      case 'voice':
        next = { ...next, voice: parseXaiVoice(entry, param) };
        break;
      case 'turn_detection':
        next = { ...next, turn_detection: parseXaiTurnDetection(entry, param, next.turn_detection) };
        break;
      case 'resumption': {
        const resumption = readObject(entry, param, ['enabled']);
        next = { ...next, resumption: { enabled: readBoolean(required(resumption, 'enabled', param), `${param}.enabled`) } };
        break;
      }
      case 'audio':
        next = { ...next, audio: applyXaiAudio(next.audio, entry) };
        break;
      case 'tools':
        next = { ...next, tools: parseXaiTools(entry, param) };
        break;
      case 'replace': {
        if (entry === null) {
          next = { ...next, replace: null };
          break;
        }
        if (!isRecord(entry)) throw invalidType(param, 'an object', entry);
        next = { ...next, replace: Object.fromEntries(Object.entries(entry).map(([from, to]) => [from, readString(to, `${param}.${from}`)])) };
        break;
      }
      default: {
        const exhaustive: never = key;
        throw unknownParameter(`session.${String(exhaustive)}`);
      }
    }
  }
  return next;
}

/** xAI's threshold (0.1–0.9, default 0.85; higher needs louder audio) on the engine's scale, its default at GA's 0.5. */
function engineThreshold(xaiThreshold: number): number {
  return (xaiThreshold * DEFAULT_SERVER_VAD.threshold) / 0.85;
}

/**
 * The GA-shaped session the emulator's engine runs for an xAI session: its server_vad always answers and always
 * interrupts (xAI has no create_response / interrupt_response), and the caller is always transcribed (xAI reports user
 * transcripts without being asked).
 */
export function xaiEngineSession(xai: XaiSessionConfig, base: RealtimeSessionConfig): RealtimeSessionConfig {
  const detection = xai.turn_detection;
  const language = xai.audio.input.transcription?.language_hint;
  return {
    ...base,
    model: xai.model,
    instructions: xai.instructions,
    tools: xai.tools,
    audio: {
      input: {
        format: xai.audio.input.format,
        transcription: { model: 'grok', ...(language === undefined ? {} : { language }) },
        noise_reduction: null,
        turn_detection:
          detection.type === null
            ? null
            : {
                ...DEFAULT_SERVER_VAD,
                threshold: engineThreshold(detection.threshold),
                prefix_padding_ms: detection.prefix_padding_ms,
                silence_duration_ms: detection.silence_duration_ms,
              },
      },
      output: { format: xai.audio.output.format, voice: xai.voice, speed: xai.audio.output.speed },
    },
  };
}

/** xAI's `force_message` item: the server speaks `text` itself (not the model) as a whole response. */
export interface XaiForceMessage {
  readonly type: 'force_message';
  readonly text: string;
  /** `false`: "caller audio is dropped until playback completes" (default true). */
  readonly interruptible: boolean;
}

/**
 * Validates xAI's `conversation.item.create` item: GA's item types with xAI's content parts, or `force_message` as the
 * API reference has it: `type`, `role` (`assistant`) and `content` required, "a single content part" of type
 * `output_text` whose `text` the guide marks required, `interruptible` optional; nothing else (pipecat sends a `text`
 * part: refused here, UNCONFIRMED whether xAI takes it).
 */
export function parseXaiItem(value: unknown, param: string): RealtimeItemInput | XaiForceMessage {
  if (isRecord(value) && value.type === 'force_message') {
    const raw = readObject(value, param, ['type', 'role', 'content', 'interruptible']);
    readEnum(required(raw, 'role', param), child(param, 'role'), ['assistant']);
    const content = readArray(required(raw, 'content', param), child(param, 'content'));
    if (content.length !== 1) {
      throw new RealtimeWireError('invalid_value', `Invalid '${child(param, 'content')}': a force_message has a single content part.`, child(param, 'content'));
    }
    const path = `${param}.content[0]`;
    const part = readObject(content[0], path, ['type', 'text']);
    readEnum(required(part, 'type', path), child(path, 'type'), ['output_text']);
    const text = readString(required(part, 'text', path), child(path, 'text'));
    if (text.trim() === '') throw new RealtimeWireError('invalid_value', `Invalid '${child(path, 'text')}': a force_message needs text.`, child(path, 'text'));
    return {
      type: 'force_message',
      text,
      interruptible: raw.interruptible === undefined ? true : readBoolean(raw.interruptible, child(param, 'interruptible')),
    };
  }
  return parseItem(value, param, 'xai');
}

/** Validates xAI's `response.create` `response` object: `modalities`, `instructions`, `metadata`. */
export function parseXaiResponseParams(value: unknown): RealtimeResponseParams {
  if (value === undefined) return { conversation: 'auto', metadata: null };
  const raw = readObject(value, 'response', ['modalities', 'instructions', 'metadata']);
  if (raw.modalities !== undefined) {
    readArray(raw.modalities, 'response.modalities').forEach((entry, index) => readEnum(entry, `response.modalities[${String(index)}]`, ['text', 'audio']));
  }
  let metadata: JsonValue = null;
  if (raw.metadata !== undefined && raw.metadata !== null) {
    if (!isRecord(raw.metadata)) throw invalidType('response.metadata', 'an object', raw.metadata);
    for (const [key, entry] of Object.entries(raw.metadata)) readString(entry, `response.metadata.${key}`);
    metadata = asJson(raw.metadata);
  }
  return {
    conversation: 'auto',
    metadata,
    ...(raw.instructions === undefined ? {} : { instructions: readString(raw.instructions, 'response.instructions') }),
  };
}
