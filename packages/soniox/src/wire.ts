/**
 * Soniox wire shapes: the real-time STT config message and responses (zod, parsed at the boundary), the TTS REST
 * request body, and the TTS WebSocket messages. Types are checked against the official `@soniox/node` SDK's
 * declarations; the SDK's runtime is not used (see the README: it cannot send the key in a header).
 */
import { z } from 'zod';
import type { GenerateSpeechOptions, SttSessionConfig, TtsStreamConfig } from '@soniox/node';

export const DEFAULT_STT_URL = 'wss://stt-rt.soniox.com/transcribe-websocket';
/** The current real-time model (2026-06-16; `stt-rt-v4` is an alias). avr-asr-soniox defaulted to `stt-rt-v3`. */
export const DEFAULT_STT_MODEL = 'stt-rt-v5';
export const DEFAULT_LANGUAGE_HINTS: readonly string[] = ['en'];

export const DEFAULT_TTS_URL = 'https://tts-rt.soniox.com/tts';
export const DEFAULT_TTS_WS_URL = 'wss://tts-rt.soniox.com/tts-websocket';
export const DEFAULT_TTS_MODEL = 'tts-rt-v1';
export const DEFAULT_TTS_LANGUAGE = 'en';
export const DEFAULT_TTS_VOICE = 'Adrian';

/** `max_endpoint_delay_ms`: Soniox accepts 500..3000 and uses 2000 when the config has none. */
export const MAX_ENDPOINT_DELAY_LIMITS = { min: 500, max: 3000 } as const;
/**
 * What the adapter sends when nothing is configured. The cascade ends a turn on `<end>`, and falls back to its own
 * VAD plus `CASCADE_ENDPOINT_MAX_WAIT_MS` (550 + 1000 ms by default) only when `<end>` is late: Soniox's 2000 ms would
 * leave every turn to that slower fallback; the lowest, 500 ms, would end turns at a caller's shorter pauses.
 */
export const DEFAULT_MAX_ENDPOINT_DELAY_MS = 1000;

/** Control tokens: never part of any text. */
export const END_TOKEN = '<end>';
export const FIN_TOKEN = '<fin>';

// ---- STT config ----------------------------------------------------------------------------------------

export interface SttSettings {
  readonly model: string;
  readonly sampleRate: number;
  /** Trimmed, non-empty entries (see `splitList`). Empty: no hints. */
  readonly languageHints: readonly string[];
  /** 500..3000 ms; unset: DEFAULT_MAX_ENDPOINT_DELAY_MS (not the server's 2000). */
  readonly maxEndpointDelayMs?: number | undefined;
  /** Free-text background (`context.text`). */
  readonly contextText?: string | undefined;
  /** Words to recognise (`context.terms`). */
  readonly contextTerms?: readonly string[] | undefined;
}

/** The first message of a session. No `api_key`: the key travels in the `Authorization` header. */
export type SttConfigMessage = SttSessionConfig & {
  model: string;
  audio_format: 'pcm_s16le';
  sample_rate: number;
  num_channels: 1;
  enable_endpoint_detection: true;
  max_endpoint_delay_ms: number;
};

export function buildSttConfig(settings: SttSettings, clientReferenceId?: string): SttConfigMessage {
  const terms = settings.contextTerms?.filter((term) => term.trim() !== '').map((term) => term.trim()) ?? [];
  const text = settings.contextText?.trim() ?? '';
  const hints = settings.languageHints.map((hint) => hint.trim()).filter((hint) => hint !== '');
  return {
    model: settings.model,
    audio_format: 'pcm_s16le',
    sample_rate: settings.sampleRate,
    num_channels: 1,
    ...(hints.length > 0 ? { language_hints: hints } : {}),
    enable_endpoint_detection: true,
    max_endpoint_delay_ms: settings.maxEndpointDelayMs ?? DEFAULT_MAX_ENDPOINT_DELAY_MS,
    ...(text !== '' || terms.length > 0 ? { context: { ...(text !== '' ? { text } : {}), ...(terms.length > 0 ? { terms } : {}) } } : {}),
    // Soniox caps the id at 256 characters.
    ...(clientReferenceId === undefined || clientReferenceId === '' ? {} : { client_reference_id: clientReferenceId.slice(0, 256) }),
  };
}

export type SttControlMessage = { type: 'keepalive' } | { type: 'finalize'; trailing_silence_ms?: number };

// ---- STT responses -------------------------------------------------------------------------------------

export const sttTokenSchema = z.looseObject({
  text: z.string(),
  is_final: z.boolean().default(false),
  start_ms: z.number().optional(),
  end_ms: z.number().optional(),
  confidence: z.number().optional(),
  speaker: z.string().optional(),
  language: z.string().optional(),
  translation_status: z.string().optional(),
});
export type SttToken = z.infer<typeof sttTokenSchema>;

export const sttResponseSchema = z.looseObject({
  tokens: z.array(sttTokenSchema).default([]),
  final_audio_proc_ms: z.number().optional(),
  total_audio_proc_ms: z.number().optional(),
  finished: z.boolean().optional(),
  error_code: z.union([z.number(), z.string()]).optional(),
  error_message: z.string().optional(),
});
export type SttResponse = z.infer<typeof sttResponseSchema>;

export type ParsedSttMessage =
  | { kind: 'result'; result: SttResponse }
  | { kind: 'error'; code: number; message: string | undefined }
  | { kind: 'invalid'; reason: string };

/**
 * A server text frame checked against `schema`, and its `error_code` (a number, or digits in a string; anything else
 * counts as 500) when it has one.
 */
function parseFrame<T extends { readonly error_code?: number | string | undefined }>(
  text: string,
  schema: z.ZodType<T>,
): { ok: true; data: T; errorCode: number | undefined } | { ok: false; reason: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) return { ok: false, reason: parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ') };
  const raw = parsed.data.error_code;
  const code = raw === undefined ? undefined : typeof raw === 'number' ? raw : Number(raw);
  return { ok: true, data: parsed.data, errorCode: code === undefined ? undefined : Number.isFinite(code) ? code : 500 };
}

/** One text frame from the server. An `error_code` wins over anything else in the same message. */
export function parseSttMessage(text: string): ParsedSttMessage {
  const frame = parseFrame(text, sttResponseSchema);
  if (!frame.ok) return { kind: 'invalid', reason: frame.reason };
  if (frame.errorCode !== undefined) return { kind: 'error', code: frame.errorCode, message: frame.data.error_message };
  return { kind: 'result', result: frame.data };
}

// ---- TTS -----------------------------------------------------------------------------------------------

/** Characters Soniox TTS takes in one REST request, or in one WebSocket `text` message (its documented limit). */
export const SONIOX_TTS_MAX_TEXT_CHARS = 5000;

/** The end of each run of whitespace after a sentence end, and after any word. */
const SENTENCE_BREAK = /[.!?\u2026\u3002\uff01\uff1f]+["'\u201d\u2019)]*\s+/gu;
const WORD_BREAK = /\s+/gu;

/** Where the last `pattern` match of `window` ends (0 when there is none). */
function lastBreak(window: string, pattern: RegExp): number {
  let at = 0;
  for (const match of window.matchAll(pattern)) at = match.index + match[0].length;
  return at;
}

/**
 * `text` as pieces of at most `max` UTF-16 units (so at most `max` characters) that concatenate back to it: cut after
 * the last sentence end in the second half of the window, else after its last whitespace, else at the limit (never
 * inside a surrogate pair).
 */
export function splitTtsText(text: string, max = SONIOX_TTS_MAX_TEXT_CHARS): string[] {
  const pieces: string[] = [];
  let rest = text;
  while (rest.length > max) {
    const window = rest.slice(0, max);
    const sentence = lastBreak(window, SENTENCE_BREAK);
    const word = lastBreak(window, WORD_BREAK);
    let cut = sentence >= max / 2 ? sentence : word;
    if (cut === 0) {
      const last = window.charCodeAt(max - 1);
      cut = last >= 0xd800 && last <= 0xdbff && max > 1 ? max - 1 : max;
    }
    pieces.push(rest.slice(0, cut));
    rest = rest.slice(cut);
  }
  if (rest !== '') pieces.push(rest);
  return pieces;
}

export interface TtsSettings {
  readonly model: string;
  readonly language: string;
  readonly voice: string;
  readonly sampleRate: number;
  readonly speed?: number | undefined;
}

/** `bitrate` is never sent: Soniox takes it only for compressed formats (mp3, opus, aac), and ours is always PCM. */
export type TtsRequestBody = Omit<GenerateSpeechOptions, 'signal' | 'bitrate'> & {
  model: string;
  language: string;
  voice: string;
  audio_format: 'pcm_s16le';
  sample_rate: number;
  text: string;
};

/** A request's own voice, language and model, over the configured ones. */
export type TtsOverrides = { voice?: string | undefined; language?: string | undefined; model?: string | undefined };

/** What REST requests and WebSocket stream configs share: the voice and the raw PCM output. */
function ttsOutput(settings: TtsSettings, overrides: TtsOverrides) {
  return {
    model: overrides.model ?? settings.model,
    language: overrides.language ?? settings.language,
    voice: overrides.voice ?? settings.voice,
    audio_format: 'pcm_s16le' as const,
    sample_rate: settings.sampleRate,
    ...(settings.speed === undefined ? {} : { speed: settings.speed }),
  };
}

export function buildTtsRequest(settings: TtsSettings, text: string, overrides: TtsOverrides = {}): TtsRequestBody {
  return { ...ttsOutput(settings, overrides), text };
}

// ---- TTS WebSocket (text pushed as it is produced) -----------------------------------------------------------------

/** A stream's config message. No `api_key`: the key travels in the `Authorization` header. */
export type TtsStreamConfigMessage = Omit<TtsStreamConfig, 'return_timestamps' | 'bitrate'> & {
  audio_format: 'pcm_s16le';
  sample_rate: number;
};

export function buildTtsStreamConfig(settings: TtsSettings, streamId: string, overrides: TtsOverrides = {}): TtsStreamConfigMessage {
  return { ...ttsOutput(settings, overrides), stream_id: streamId };
}

/** What the client sends after a stream's config (the SDK's `sendText`, `finish`, `cancel` and keepalive). */
export type TtsStreamClientMessage =
  | { text: string; text_end: boolean; stream_id: string }
  | { stream_id: string; cancel: true }
  | { keep_alive: true };

/**
 * A server message: the SDK's `TtsEvent` fields (`error_code` may also be a numeric string, as for STT); `timestamps`
 * and unknown fields pass through unchecked.
 */
export const ttsStreamResponseSchema = z.looseObject({
  stream_id: z.string().optional(),
  audio: z.base64().optional(),
  audio_end: z.boolean().optional(),
  terminated: z.boolean().optional(),
  error_code: z.union([z.number(), z.string()]).optional(),
  error_message: z.string().optional(),
});

export type ParsedTtsStreamMessage =
  | { kind: 'stream'; streamId: string | undefined; audio: Buffer | undefined; audioEnd: boolean; terminated: boolean }
  /** `streamId` undefined: a connection-level error (the server closes the socket). */
  | { kind: 'error'; streamId: string | undefined; code: number; message: string | undefined }
  | { kind: 'invalid'; reason: string };

/** One text frame from the TTS socket. An `error_code` wins over anything else in the same message. */
export function parseTtsStreamMessage(text: string): ParsedTtsStreamMessage {
  const frame = parseFrame(text, ttsStreamResponseSchema);
  if (!frame.ok) return { kind: 'invalid', reason: frame.reason };
  const message = frame.data;
  if (frame.errorCode !== undefined) return { kind: 'error', streamId: message.stream_id, code: frame.errorCode, message: message.error_message };
  return {
    kind: 'stream',
    streamId: message.stream_id,
    audio: message.audio === undefined ? undefined : Buffer.from(message.audio, 'base64'),
    audioEnd: message.audio_end === true,
    terminated: message.terminated === true,
  };
}
