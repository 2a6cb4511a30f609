/**
 * Soniox TTS emulator (docs/reference/provider-protocols.md §5.7): the REST route and the WebSocket API on one plain
 * http server on 127.0.0.1:<random port> (the real service serves both on tts-rt.soniox.com).
 *
 *   const tts = await startSonioxTtsEmulator({ apiKey: 'soniox-test-key' });
 *   const response = await fetch(tts.url, { method: 'POST', headers: { Authorization: 'Bearer soniox-test-key',
 *     'Content-Type': 'application/json' }, body: JSON.stringify({ model: 'tts-rt-v1', language: 'en', voice: 'Adrian',
 *     audio_format: 'pcm_s16le', sample_rate: 8000, text: 'Hello' }) });
 *   // official SDK: new SonioxNodeClient({ api_key, tts_api_url: tts.baseUrl, realtime: { tts_ws_url: tts.wsUrl } })
 *   //   .tts.generateStream({...}) (REST) or .realtime.tts({...}) (WebSocket)
 *   // raw ws with header auth: new WebSocket(tts.wsUrl, { headers: { Authorization: 'Bearer soniox-test-key' } })
 *   tts.requests  // every REST request; tts.queueFault({ action: { type: 'trailer-error', afterChunks: 2 } })
 *   tts.streams   // every WebSocket stream; tts.queueWsFault({ action: { type: 'error', afterAudio: 1 } })
 *   await tts.close();
 *
 * API (stable; append-only):
 *   startSonioxTtsEmulator(options: SonioxTtsEmulatorOptions): Promise<SonioxTtsEmulator>
 *   emulator.baseUrl (http://127.0.0.1:PORT, the SDK's `tts_api_url`), url (…/tts), port,
 *   requests: SonioxTtsRequestRecord[], queueFault(fault), waitFor(probe), waitForRequest(predicate?), close()
 *   emulator.wsUrl (ws://127.0.0.1:PORT/tts-websocket, the SDK's `realtime.tts_ws_url`), wsUpgrades (every attempt),
 *   wsConnections: SonioxTtsWsConnection[] (accepted upgrades: headers, received, sent, keepAliveCount, streams,
 *   closeInfo, close(code, reason), drop()), streams: SonioxTtsStreamRecord[] (every stream config received, in
 *   order: rawConfig, request, authVia, texts, textEnded, spoken, audioMessages, audioBytes,
 *   audioMessagesBeforeTextEnd, audioEnded, cancelled, terminated, error, fault, stalled, audio()),
 *   queueWsFault(fault), waitForStream(predicate?)
 *   SONIOX_TTS_MODELS: model ids accepted by default (`tts-rt-v1`, `tts-rt-v1-preview`)
 *   SONIOX_TTS_WS_MAX_STREAMS: concurrent streams per connection (5)
 *   SONIOX_TTS_WS_MAX_STREAM_MS: how long one WebSocket stream may last (2 minutes)
 *   SONIOX_TTS_MAX_TEXT_CHARS: characters of one REST text or one WebSocket `text` message (5000)
 *
 * Latency (`options.latency`, default none; both APIs): `firstByteMs` starts the REST response (headers and first
 * chunk) this many ms after the request arrived (errors and faults without `afterChunks` are not delayed), and sends
 * each WebSocket stream's first audio message this many ms after its first piece of text was complete (see below);
 * `realTimeFactor` paces the audio at that fraction of real time (each chunk follows the previous one after
 * `chunkMs × realTimeFactor`, e.g. 0.5: twice as fast as playback) instead of every `chunkIntervalMs`. A `slow` fault
 * still wins.
 *
 * POST /tts (anything else: 404 JSON)
 * - `Authorization: Bearer <key>` else 401 `{"error_code":401,"error_message":"Invalid API key."}` (or "Missing API key.").
 * - JSON body validated with zod (strict: unknown fields -> 400): `model` (SONIOX_TTS_MODELS plus `options.models`;
 *   others -> 400 "Invalid model specified."), `language`, `voice` (any non-empty string, or one of `options.voices`),
 *   `audio_format` (pcm_s16le | pcm_f32le | pcm_mulaw | pcm_alaw | wav produced; mp3/opus/aac/flac -> 400 from the
 *   emulator), `sample_rate` (8000/16000/24000/44100/48000 for PCM and wav; 8000 only for mulaw/alaw; default 24000,
 *   or 8000 for G.711: the default is UNCONFIRMED), `text` (non-empty, at most SONIOX_TTS_MAX_TEXT_CHARS = 5000
 *   characters, counted as code points: 400 "Text is too long: N characters (at most 5000)."), optional `bitrate`
 *   (only with the compressed formats mp3/opus/aac, as the audio-formats page documents: with PCM or wav -> 400),
 *   `speed` (0.7..1.3, the SDK's documented range), `reduce_silence`, `client_reference_id` (at most 256 characters:
 *   400 "Client reference ID is too long (max length 256)."). Errors before streaming: HTTP status +
 *   `{error_code, error_message}`.
 * - 200 with `Content-Type: audio/pcm` (`audio/wav` for wav), `Trailer: x-tts-error-code, x-tts-error-message`,
 *   chunked body: `chunkMs` of audio (default 100) every `chunkIntervalMs` (default 5). Errors during streaming are
 *   the trailers `x-tts-error-code` / `x-tts-error-message` on the final chunk.
 * - Audio: `options.synthesize(request)` (Int16Array at the request's sample rate), else a voiced-like signal
 *   (150 Hz + 450 Hz with a 4 Hz syllable envelope) of 60 ms per character of text (300..20000 ms).
 * - A client that closes the connection before the end is recorded (`record.aborted`), and streaming stops.
 *
 * REST faults (`queueFault`, `options.faults`; FIFO, `times` default 1): `{type:'status', status, body?}`
 * (401/429/500... before streaming), `{type:'stall', afterChunks?}` (no response at all, or stop after N chunks with
 * the connection kept open), `{type:'trailer-error', afterChunks?, code?, message?}` (end the body after N chunks
 * (default 1) with error trailers, default 500 "Internal server error."), `{type:'abort', afterChunks?}` (destroy the
 * socket), `{type:'slow', chunkIntervalMs}` (stream this slowly).
 *
 * WebSocket /tts-websocket (upgrade elsewhere: HTTP 404). Every client message is a JSON text frame; every server
 * message too. No acknowledgement is sent for a config.
 * - Auth: `Authorization: Bearer <key>` on the upgrade, or the subprotocol pair `soniox-api-key`, `<key>`
 *   (UNCONFIRMED layout), or (deprecated) `api_key` in each stream's config. A connection-level key wins over the
 *   config key. A wrong connection-level key -> `{"error_code":401,"error_message":"Invalid API key."}` (no
 *   `stream_id`) right after the upgrade, then close 1000. No connection-level key: a config without a valid
 *   `api_key` is refused for that stream (401 "Missing API key." / "Invalid API key."). `requireHeaderAuth` simulates
 *   the 2027-01-15 rule (a key only in the config -> 401).
 * - Client messages, told apart by their fields: `{"keep_alive":true}` (counted); `{stream_id, cancel:true}`;
 *   `{stream_id, text, text_end}` (both required); anything else with a `stream_id` is a stream config. No
 *   `stream_id`, invalid JSON, a non-object or a binary frame -> connection-level 400 and close 1000.
 * - Stream config validated with zod (strict: unknown fields -> 400 "Unknown field: x"): `stream_id`, `model`,
 *   `language`, `voice` (as REST), `audio_format` (pcm_s16le | pcm_f32le | pcm_mulaw | pcm_alaw produced; wav and
 *   compressed formats -> 400 from the emulator), `sample_rate` (required; the REST rates), optional `api_key`,
 *   `bitrate` (as REST: refused with the PCM formats), `speed` (0.7..1.3, the SDK's documented range),
 *   `reduce_silence`, `return_timestamps` (only false: timestamps are not produced), `client_reference_id` (as REST).
 *   At most SONIOX_TTS_WS_MAX_STREAMS active streams per connection (`options.maxStreamsPerConnection`); a
 *   `stream_id` must be unique among active streams.
 * - Stream duration (limits-and-quotas: "Each real-time stream is capped at 2 minutes"): a stream whose audio would go
 *   past `options.maxStreamDurationMs` (default SONIOX_TTS_WS_MAX_STREAM_MS) sends audio up to the cap, or one still
 *   active that long after its config was accepted, fails with the per-stream error 400 "Stream duration limit
 *   reached (at most N s per stream). Start a new stream." then `terminated` (both readings of "duration" are
 *   enforced, the stricter wins; code and wording UNCONFIRMED).
 * - Per-stream errors: `{"stream_id","error_code","error_message"}` then `{"stream_id","terminated":true}`; the
 *   socket stays open and other streams go on. Text or cancel for a stream that is not active, text after
 *   `text_end`, a duplicate active `stream_id` (which also ends the active one), a 6th stream, `text_end` on a
 *   stream that got no text at all (400 "No text to synthesize.") and a `text` message over SONIOX_TTS_MAX_TEXT_CHARS
 *   (400, as REST; a stream may take any number of such messages) are per-stream errors.
 * - Synthesis as text arrives: the text up to the last whitespace received is spoken once it arrives (per word or
 *   clause, as pushed); the rest waits for more text or for `text_end`. Each piece (`record.spoken`) is
 *   `options.synthesize({...request, text: piece})` or the REST signal of that piece, queued in order and sent as
 *   `{"stream_id","audio":"<base64>"}` messages of `chunkMs` each. After `text_end` the last audio message carries
 *   `"audio_end":true` (`"audio":""` when nothing was left), then `{"stream_id","terminated":true}`.
 * - `{stream_id, cancel:true}` -> no more audio, `{"stream_id","terminated":true}` (no `audio_end`).
 * - No client message for `idleTimeoutMs` (default 30000) -> 408 "Request timeout." (no `stream_id`) and close 1000.
 *
 * WebSocket faults (`queueWsFault`, `options.wsFaults`; FIFO, `times` default 1): `at: 'upgrade'` applies to the next
 * upgrade (`{type:'http', status, body?}` answers it with that HTTP status, any other action drops the socket);
 * `at: 'stream'` (default) to the next stream whose config is accepted. Stream actions, `afterAudio` = after that
 * many audio messages of the stream (omitted: right after the config): `error` (per-stream error, default 500
 * "Internal server error."), `connection-error` (error without `stream_id`, then close 1000, default 503), `drop`
 * (socket destroyed), `stall` (the stream sends nothing more and ignores cancel; the socket stays open), `malformed`
 * (one raw text frame, default `not json`, then the stream goes on), `slow` ({chunkIntervalMs?, firstByteMs?} for
 * this stream) and `odd-chunks` (audio messages of an odd byte count, splitting samples).
 *
 * Not implemented: compressed formats and wav over the WebSocket, timestamps, voices listing, temporary API keys, the
 * REST 2-minute audio cap and the per-account connection limit. UNCONFIRMED (emulator choices): the wording of errors
 * other than those quoted in §5.7 and the docs (the bitrate refusal among them), the codes for a 6th stream (429)
 * and the idle timeout (408), close codes, whether text for an unknown stream or a wrong connection-level key are
 * refused this way, `audio_end` on an empty `audio` when no audio was left, and the newer docs' extra error fields
 * (`error_type`, `request_id`), which the emulator does not send.
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { encodeAlaw, encodeMulaw } from '@stsgate/core';
import type { Logger } from 'pino';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { z } from 'zod';
import { encodeWav } from '../wav.js';
import {
  apiKeyProblem,
  bearerToken,
  closeServer,
  FaultQueue,
  isRecord,
  listenOnLoopback,
  readBody,
  sendJson,
  silentLogger,
  syllableSpeech,
  TimerSet,
  type JsonValue,
  type WaitOptions,
} from './common.js';
import { checkRequest, createHttpEmulatorHost, HttpError, streamChunked, type JsonRequest } from './http-stream.js';
import { pcmBytes } from './realtime-audio.js';
import { failUpgrade, toBuffer, writeRawHttp } from './ws-server.js';

export const SONIOX_TTS_MODELS: readonly string[] = ['tts-rt-v1', 'tts-rt-v1-preview'];
/** Concurrent streams per WebSocket connection (Soniox's documented limit). */
export const SONIOX_TTS_WS_MAX_STREAMS = 5;
/** Characters (code points) of one REST request's text, or of one WebSocket `text` message. */
export const SONIOX_TTS_MAX_TEXT_CHARS = 5000;
/** How long one WebSocket stream may last (Soniox's documented, fixed 2-minute cap). */
export const SONIOX_TTS_WS_MAX_STREAM_MS = 120_000;

const PRODUCED_FORMATS = ['pcm_s16le', 'pcm_f32le', 'pcm_mulaw', 'pcm_alaw', 'wav'] as const;
const COMPRESSED_FORMATS = ['mp3', 'opus', 'aac', 'flac'] as const;
/** The formats the audio-formats page gives a `bitrate` (codec bitrate) for; PCM, wav and flac have none. */
const BITRATE_FORMATS: readonly string[] = ['mp3', 'opus', 'aac'];
/** `client_reference_id` limit and the REST reference's wording for it. */
const MAX_CLIENT_REFERENCE_ID = 256;
const PCM_RATES = [8000, 16000, 24000, 44100, 48000] as const;

export type SonioxTtsAudioFormat = (typeof PRODUCED_FORMATS)[number];

const bodySchema = z
  .object({
    model: z.string(),
    language: z.string(),
    voice: z.string().min(1),
    audio_format: z.string(),
    sample_rate: z.number().int().optional(),
    text: z.string(),
    bitrate: z.number().int().positive().optional(),
    speed: z.number().min(0.7).max(1.3).optional(),
    reduce_silence: z.boolean().optional(),
    client_reference_id: z.string().optional(),
  })
  .strict();

export interface SonioxTtsRequest {
  readonly model: string;
  readonly language: string;
  readonly voice: string;
  readonly audioFormat: SonioxTtsAudioFormat;
  readonly sampleRate: number;
  readonly text: string;
  readonly speed: number | undefined;
  /** The whole parsed body. */
  readonly body: JsonValue;
}

export type SonioxTtsFaultAction =
  | { readonly type: 'status'; readonly status: number; readonly body?: JsonValue }
  | { readonly type: 'stall'; readonly afterChunks?: number }
  | { readonly type: 'trailer-error'; readonly afterChunks?: number; readonly code?: number; readonly message?: string }
  | { readonly type: 'abort'; readonly afterChunks?: number }
  | { readonly type: 'slow'; readonly chunkIntervalMs: number };

export interface SonioxTtsFault {
  readonly action: SonioxTtsFaultAction;
  /** Number of requests it applies to (default 1). */
  readonly times?: number;
}

export interface SonioxTtsRequestRecord {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  /** Parsed JSON body (null when empty or not JSON). */
  readonly body: JsonValue;
  /** The validated request, when it passed validation. */
  request: SonioxTtsRequest | undefined;
  status: number | undefined;
  chunksSent: number;
  bytesSent: number;
  /** The body ended normally (with or without error trailers). */
  completed: boolean;
  /** The client closed the connection before the response ended. */
  aborted: boolean;
  /** Error trailers sent, if any. */
  trailers: { readonly code: number; readonly message: string } | undefined;
}

/** A WebSocket fault: `times` consecutive upgrades (`at: 'upgrade'`) or accepted streams (`at: 'stream'`, the default). */
export type SonioxTtsWsFaultAction =
  /** Only at `upgrade`: answer the upgrade with this HTTP status. */
  | { readonly type: 'http'; readonly status: number; readonly body?: JsonValue }
  | { readonly type: 'drop'; readonly afterAudio?: number }
  | { readonly type: 'error'; readonly afterAudio?: number; readonly code?: number; readonly message?: string }
  | { readonly type: 'connection-error'; readonly afterAudio?: number; readonly code?: number; readonly message?: string }
  | { readonly type: 'stall'; readonly afterAudio?: number }
  | { readonly type: 'malformed'; readonly afterAudio?: number; readonly frame?: string }
  | { readonly type: 'slow'; readonly chunkIntervalMs?: number; readonly firstByteMs?: number }
  | { readonly type: 'odd-chunks' };

export interface SonioxTtsWsFault {
  /** Default `stream`. */
  readonly at?: 'upgrade' | 'stream';
  readonly action: SonioxTtsWsFaultAction;
  /** Number of consecutive upgrades or streams it applies to (default 1). */
  readonly times?: number;
}

export type SonioxTtsWsServerMessage =
  | { readonly stream_id: string; readonly audio: string; readonly audio_end?: true }
  | { readonly stream_id: string; readonly terminated: true }
  | { readonly stream_id?: string; readonly error_code: number; readonly error_message: string };

export interface SonioxTtsWsUpgradeRecord {
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  /** 101, the HTTP status the upgrade was answered with, or 0 for a dropped socket. */
  readonly status: number;
}

export interface SonioxTtsWsCloseInfo {
  readonly code: number;
  readonly reason: string;
  /** Who ended the connection: a close frame from the client or the server, or a dropped socket. */
  readonly by: 'client' | 'server' | 'dropped';
}

/** One stream config received on a WebSocket connection, and what became of the stream. */
export interface SonioxTtsStreamRecord {
  /** Index of its connection in `wsConnections`. */
  readonly connection: number;
  readonly streamId: string;
  readonly rawConfig: JsonValue;
  /** The validated config (undefined when it was refused). */
  readonly request: SonioxTtsRequest | undefined;
  readonly authVia: 'header' | 'subprotocol' | 'config' | undefined;
  /** Every `text` received, in order (`text_end` ones included). */
  readonly texts: readonly string[];
  readonly textEnded: boolean;
  /** The pieces of text synthesized, in order. */
  readonly spoken: readonly string[];
  readonly audioMessages: number;
  /** Audio bytes sent (decoded from base64). */
  readonly audioBytes: number;
  /** Audio messages with audio sent before `text_end` arrived. */
  readonly audioMessagesBeforeTextEnd: number;
  readonly audioEnded: boolean;
  readonly cancelled: boolean;
  readonly terminated: boolean;
  readonly error: { readonly code: number; readonly message: string } | undefined;
  readonly fault: SonioxTtsWsFaultAction | undefined;
  readonly stalled: boolean;
  /** The audio bytes sent so far, in order. */
  audio(): Buffer;
}

export interface SonioxTtsWsConnection {
  readonly index: number;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  /** Every client message that was a JSON object, in order. */
  readonly received: readonly JsonValue[];
  readonly sent: readonly SonioxTtsWsServerMessage[];
  readonly keepAliveCount: number;
  readonly streams: readonly SonioxTtsStreamRecord[];
  readonly closeInfo: SonioxTtsWsCloseInfo | undefined;
  close(code?: number, reason?: string): void;
  /** Destroys the socket without a close frame. */
  drop(): void;
}

/** Provider latency (see the header comment). */
export interface SonioxTtsLatency {
  /** REST: request to the first audio byte; WebSocket: a stream's first complete text to its first audio (default 0). */
  readonly firstByteMs?: number;
  /** Audio pacing as synthesis time per audio time (default: every `chunkIntervalMs`). */
  readonly realTimeFactor?: number;
}

export interface SonioxTtsEmulatorOptions {
  readonly apiKey: string | readonly string[];
  readonly models?: readonly string[];
  /** Accepted voices (default: any non-empty string). */
  readonly voices?: readonly string[];
  readonly synthesize?: (request: SonioxTtsRequest) => Int16Array | undefined;
  /** Audio per body chunk or WebSocket audio message (default 100 ms). */
  readonly chunkMs?: number;
  /** Pause between chunks (default 5 ms). */
  readonly chunkIntervalMs?: number;
  readonly faults?: readonly SonioxTtsFault[];
  readonly logger?: Logger;
  readonly latency?: SonioxTtsLatency;
  /** WebSocket: refuse a key sent only in the stream config (the 2027-01-15 rule). */
  readonly requireHeaderAuth?: boolean;
  /** WebSocket: close with 408 after this long without a client message (default 30000). */
  readonly idleTimeoutMs?: number;
  /** WebSocket: concurrent streams per connection (default SONIOX_TTS_WS_MAX_STREAMS). */
  readonly maxStreamsPerConnection?: number;
  /** WebSocket: how long one stream may last, in audio sent and in time since its config (default SONIOX_TTS_WS_MAX_STREAM_MS). */
  readonly maxStreamDurationMs?: number;
  readonly wsFaults?: readonly SonioxTtsWsFault[];
}

export interface SonioxTtsEmulator {
  /** `http://127.0.0.1:PORT` (the SDK's `tts_api_url`). */
  readonly baseUrl: string;
  /** `http://127.0.0.1:PORT/tts`. */
  readonly url: string;
  readonly port: number;
  readonly requests: readonly SonioxTtsRequestRecord[];
  queueFault(fault: SonioxTtsFault): void;
  waitFor<T>(probe: () => T | undefined | null | false, options?: WaitOptions): Promise<T>;
  waitForRequest(predicate?: (record: SonioxTtsRequestRecord) => boolean, options?: WaitOptions): Promise<SonioxTtsRequestRecord>;
  close(): Promise<void>;
  /** `ws://127.0.0.1:PORT/tts-websocket` (the SDK's `realtime.tts_ws_url`). */
  readonly wsUrl: string;
  readonly wsUpgrades: readonly SonioxTtsWsUpgradeRecord[];
  readonly wsConnections: readonly SonioxTtsWsConnection[];
  /** Every stream config received, over all connections, in order. */
  readonly streams: readonly SonioxTtsStreamRecord[];
  queueWsFault(fault: SonioxTtsWsFault): void;
  /** Resolves with the first stream matching `predicate` (default: any). */
  waitForStream(predicate?: (record: SonioxTtsStreamRecord) => boolean, options?: WaitOptions): Promise<SonioxTtsStreamRecord>;
}

/** The default signal: 150 Hz + 450 Hz with a 4 Hz syllable envelope, 60 ms per character (300..20000 ms). */
export function defaultSonioxSpeech(text: string, rate: number): Int16Array {
  return syllableSpeech(text, rate, 150);
}

/** A zod issue in Soniox's wording (`Unknown field: x`, `Missing required field: x`, `Invalid value for field x: ...`). */
function describeIssue(issue: z.core.$ZodIssue, root: unknown): string {
  const path = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') return `Unknown field: ${issue.keys.join(', ')}`;
  let value: unknown = root;
  for (const key of issue.path) value = isRecord(value) ? value[String(key)] : undefined;
  if (issue.code === 'invalid_type' && value === undefined) return `Missing required field: ${path}`;
  return `Invalid value for field ${path}: ${issue.message}`;
}

function firstIssue(error: z.ZodError, root: unknown): string {
  const issue = error.issues[0];
  return issue === undefined ? 'Invalid request.' : describeIssue(issue, root);
}

/** The model, voice and output checks REST and WebSocket share; `formats` are the ones produced on that API. */
function checkOutput(
  data: {
    model: string;
    voice: string;
    audio_format: string;
    sample_rate?: number | undefined;
    bitrate?: number | undefined;
    client_reference_id?: string | undefined;
  },
  settings: { models: ReadonlySet<string>; voices: ReadonlySet<string> | undefined },
  formats: readonly SonioxTtsAudioFormat[],
  defaultRate: ((g711: boolean) => number) | undefined,
): { audioFormat: SonioxTtsAudioFormat; sampleRate: number } {
  if (!settings.models.has(data.model)) throw new HttpError(400, 'Invalid model specified.');
  if (settings.voices !== undefined && !settings.voices.has(data.voice)) throw new HttpError(400, `Invalid voice: ${data.voice}.`);
  const known = (PRODUCED_FORMATS as readonly string[]).includes(data.audio_format) || (COMPRESSED_FORMATS as readonly string[]).includes(data.audio_format);
  const audioFormat = formats.find((format) => format === data.audio_format);
  if (audioFormat === undefined) {
    throw new HttpError(400, known ? `audio_format ${data.audio_format} is not supported by the emulator.` : `Invalid audio_format: ${data.audio_format}.`);
  }
  if (data.bitrate !== undefined && !BITRATE_FORMATS.includes(audioFormat)) {
    throw new HttpError(400, `Invalid value for field bitrate: a bitrate applies only to compressed formats (mp3, opus, aac), not ${audioFormat}.`);
  }
  if (data.client_reference_id !== undefined && data.client_reference_id.length > MAX_CLIENT_REFERENCE_ID) {
    throw new HttpError(400, `Client reference ID is too long (max length ${String(MAX_CLIENT_REFERENCE_ID)}).`);
  }
  const g711 = audioFormat === 'pcm_mulaw' || audioFormat === 'pcm_alaw';
  const sampleRate = data.sample_rate ?? defaultRate?.(g711);
  if (sampleRate === undefined) throw new HttpError(400, `Missing required field: sample_rate (required for audio_format ${audioFormat}).`);
  if (g711 ? sampleRate !== 8000 : !(PCM_RATES as readonly number[]).includes(sampleRate)) {
    throw new HttpError(400, `Invalid sample_rate ${String(sampleRate)} for audio_format ${audioFormat}.`);
  }
  return { audioFormat, sampleRate };
}

/** The error message for text over the limit, else undefined. */
function textTooLong(text: string): string | undefined {
  const length = [...text].length;
  return length > SONIOX_TTS_MAX_TEXT_CHARS ? `Text is too long: ${String(length)} characters (at most ${String(SONIOX_TTS_MAX_TEXT_CHARS)}).` : undefined;
}

function validate(body: unknown, settings: { models: ReadonlySet<string>; voices: ReadonlySet<string> | undefined }): SonioxTtsRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'Request body must be a JSON object.');
  const result = bodySchema.safeParse(body);
  if (!result.success) throw new HttpError(400, firstIssue(result.error, body));
  const data = result.data;
  const { audioFormat, sampleRate } = checkOutput(data, settings, PRODUCED_FORMATS, (g711) => (g711 ? 8000 : 24000));
  if (data.text.trim().length === 0) throw new HttpError(400, 'Text must not be empty.');
  const tooLong = textTooLong(data.text);
  if (tooLong !== undefined) throw new HttpError(400, tooLong);
  return { model: data.model, language: data.language, voice: data.voice, audioFormat, sampleRate, text: data.text, speed: data.speed, body: body as JsonValue };
}

function encode(samples: Int16Array, request: SonioxTtsRequest): { bytes: Buffer; bytesPerMs: number; offset: number } {
  const rate = request.sampleRate;
  switch (request.audioFormat) {
    case 'pcm_s16le':
      return { bytes: pcmBytes(samples), bytesPerMs: (rate * 2) / 1000, offset: 0 };
    case 'pcm_f32le': {
      const out = Buffer.alloc(samples.length * 4);
      for (let i = 0; i < samples.length; i++) out.writeFloatLE((samples[i] as number) / 32768, i * 4);
      return { bytes: out, bytesPerMs: (rate * 4) / 1000, offset: 0 };
    }
    case 'pcm_mulaw':
      return { bytes: Buffer.from(encodeMulaw(samples)), bytesPerMs: rate / 1000, offset: 0 };
    case 'pcm_alaw':
      return { bytes: Buffer.from(encodeAlaw(samples)), bytesPerMs: rate / 1000, offset: 0 };
    case 'wav':
      return { bytes: encodeWav(samples, rate), bytesPerMs: (rate * 2) / 1000, offset: 44 };
    default: {
      const exhaustive: never = request.audioFormat;
      throw new Error(`unknown format ${String(exhaustive)}`);
    }
  }
}

function sampleBytes(format: SonioxTtsAudioFormat): number {
  if (format === 'pcm_f32le') return 4;
  return format === 'pcm_mulaw' || format === 'pcm_alaw' ? 1 : 2;
}

function defaultMessage(status: number): string {
  switch (status) {
    case 401:
      return 'Invalid API key.';
    case 402:
      return 'Insufficient balance.';
    case 429:
      return 'Rate limit exceeded.';
    case 503:
      return 'Service unavailable.';
    default:
      return status >= 500 ? 'Internal server error.' : 'Bad request.';
  }
}

// ---- WebSocket API (/tts-websocket) ---------------------------------------------------------------------------------

/** Formats streamed over the WebSocket (wav and compressed formats are refused by the emulator). */
const WS_FORMATS: readonly SonioxTtsAudioFormat[] = ['pcm_s16le', 'pcm_f32le', 'pcm_mulaw', 'pcm_alaw'];

const streamConfigSchema = z
  .object({
    api_key: z.string().optional(),
    stream_id: z.string().min(1),
    model: z.string(),
    language: z.string().min(1),
    voice: z.string().min(1),
    audio_format: z.string(),
    sample_rate: z.number().int().optional(),
    bitrate: z.number().int().positive().optional(),
    speed: z.number().min(0.7).max(1.3).optional(),
    reduce_silence: z.boolean().optional(),
    return_timestamps: z.boolean().optional(),
    client_reference_id: z.string().optional(),
  })
  .strict();

const textSchema = z.object({ stream_id: z.string(), text: z.string(), text_end: z.boolean() }).strict();
const cancelSchema = z.object({ stream_id: z.string(), cancel: z.literal(true) }).strict();
const keepAliveSchema = z.object({ keep_alive: z.literal(true) }).strict();

interface WsSettings {
  readonly apiKeys: ReadonlySet<string>;
  readonly models: ReadonlySet<string>;
  readonly voices: ReadonlySet<string> | undefined;
  readonly requireHeaderAuth: boolean;
  readonly idleTimeoutMs: number;
  readonly maxStreams: number;
  readonly maxStreamMs: number;
  readonly chunkMs: number;
  /** Pause between two audio messages of a stream. */
  readonly intervalMs: number;
  /** A stream's first complete text to its first audio message. */
  readonly firstByteMs: number;
  readonly synthesize: ((request: SonioxTtsRequest) => Int16Array | undefined) | undefined;
}

/** What a stream needs of its connection. */
interface StreamHost {
  readonly settings: WsSettings;
  readonly timers: TimerSet;
  send(message: SonioxTtsWsServerMessage): void;
  sendRaw(text: string): void;
  failConnection(code: number, message: string): void;
  drop(): void;
  /** The stream is over: its `stream_id` may be used again. */
  release(stream: WsStream): void;
  notify(): void;
}

function subprotocolKey(headers: IncomingHttpHeaders): string | undefined {
  const raw = headers['sec-websocket-protocol'];
  if (raw === undefined) return undefined;
  const list = raw.split(',').map((entry) => entry.trim());
  const at = list.indexOf('soniox-api-key');
  return at < 0 ? undefined : (list[at + 1] ?? '');
}

/** When a stream fault fires: `now` (at the config), after that many audio messages, or never (it changes pacing). */
function faultTrigger(action: SonioxTtsWsFaultAction): number | 'now' | undefined {
  switch (action.type) {
    case 'drop':
    case 'error':
    case 'connection-error':
    case 'stall':
    case 'malformed':
      return action.afterAudio ?? 'now';
    case 'http':
    case 'slow':
    case 'odd-chunks':
      return undefined;
    default: {
      const exhaustive: never = action;
      throw new Error(`unknown fault ${JSON.stringify(exhaustive)}`);
    }
  }
}

class WsStream implements SonioxTtsStreamRecord {
  request: SonioxTtsRequest | undefined;
  authVia: SonioxTtsStreamRecord['authVia'];
  readonly texts: string[] = [];
  textEnded = false;
  readonly spoken: string[] = [];
  audioMessages = 0;
  audioBytes = 0;
  audioMessagesBeforeTextEnd = 0;
  audioEnded = false;
  cancelled = false;
  terminated = false;
  error: SonioxTtsStreamRecord['error'];
  fault: SonioxTtsWsFaultAction | undefined;
  stalled = false;

  readonly #host: StreamHost;
  readonly #sentAudio: Buffer[] = [];
  #state: 'config' | 'active' | 'stalled' | 'done' = 'config';
  /** Text received but not spoken yet (after the last whitespace). */
  #pending = '';
  readonly #queue: Buffer[] = [];
  #queuedBytes = 0;
  #timer: NodeJS.Timeout | undefined;
  #started = false;
  #chunkBytes = 0;
  #intervalMs = 0;
  #firstByteMs = 0;
  /** `performance.now()` before which the first audio message must not go out (Node timers may fire 1 ms early). */
  #firstDueAt = 0;
  #faultAfterAudio: number | undefined;
  /** Audio bytes the stream may send in all (`maxStreamMs` of audio). */
  #capBytes = Number.POSITIVE_INFINITY;
  #capTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly connection: number,
    readonly streamId: string,
    readonly rawConfig: JsonValue,
    host: StreamHost,
  ) {
    this.#host = host;
  }

  audio(): Buffer {
    return Buffer.concat(this.#sentAudio);
  }

  /** The config was accepted. */
  start(request: SonioxTtsRequest, authVia: 'header' | 'subprotocol' | 'config', fault: SonioxTtsWsFaultAction | undefined): void {
    const settings = this.#host.settings;
    this.request = request;
    this.authVia = authVia;
    this.fault = fault;
    this.#state = 'active';
    const unit = sampleBytes(request.audioFormat);
    const samplesPerChunk = Math.max(1, Math.round((settings.chunkMs * request.sampleRate) / 1000));
    this.#chunkBytes = samplesPerChunk * unit + (fault?.type === 'odd-chunks' ? 1 : 0);
    this.#intervalMs = fault?.type === 'slow' ? (fault.chunkIntervalMs ?? settings.intervalMs) : settings.intervalMs;
    this.#firstByteMs = fault?.type === 'slow' ? (fault.firstByteMs ?? settings.firstByteMs) : settings.firstByteMs;
    this.#capBytes = Math.round((settings.maxStreamMs * request.sampleRate) / 1000) * unit;
    this.#capTimer = this.#host.timers.after(settings.maxStreamMs, () => {
      this.#capTimer = undefined;
      if (this.#state === 'active') this.#overCap();
    });
    if (fault === undefined) return;
    const trigger = faultTrigger(fault);
    if (trigger === 'now') this.#applyFault(fault);
    else this.#faultAfterAudio = trigger;
  }

  onText(text: string, end: boolean): void {
    this.texts.push(text);
    if (this.#state === 'stalled') return;
    if (this.textEnded) {
      this.fail(400, 'Text received after text_end.');
      return;
    }
    const tooLong = textTooLong(text);
    if (tooLong !== undefined) {
      this.fail(400, tooLong);
      return;
    }
    this.#pending += text;
    this.textEnded = end;
    this.#speak(end);
    if (end && this.spoken.length === 0) {
      this.fail(400, 'No text to synthesize.');
      return;
    }
    this.#kick();
  }

  cancel(): void {
    this.cancelled = true;
    if (this.#state === 'stalled') return;
    this.#terminate();
  }

  /** Per-stream error, then `terminated`. */
  fail(code: number, message: string): void {
    this.error = { code, message };
    this.#host.send({ stream_id: this.streamId, error_code: code, error_message: message });
    this.#terminate();
  }

  /** Refused together with the active stream of the same id (whose error and `terminated` were sent). */
  refuseAsDuplicate(code: number, message: string): void {
    this.error = { code, message };
    this.terminated = true;
    this.#state = 'done';
  }

  /** The connection ended. */
  end(): void {
    this.#host.timers.cancel(this.#timer);
    this.#timer = undefined;
    this.#host.timers.cancel(this.#capTimer);
    this.#capTimer = undefined;
    this.#state = 'done';
  }

  /** The stream reached the 2-minute cap (in audio or in time): it fails, as Soniox ends it. */
  #overCap(): void {
    const limit = this.#host.settings.maxStreamMs / 1000;
    this.fail(400, `Stream duration limit reached (at most ${String(limit)} s per stream). Start a new stream.`);
  }

  #terminate(): void {
    this.#host.timers.cancel(this.#timer);
    this.#timer = undefined;
    this.#host.timers.cancel(this.#capTimer);
    this.#capTimer = undefined;
    this.#state = 'done';
    this.terminated = true;
    this.#host.send({ stream_id: this.streamId, terminated: true });
    this.#host.release(this);
  }

  /** Synthesizes the text up to the last whitespace (all of it at the end) and queues its audio. */
  #speak(all: boolean): void {
    const request = this.request;
    if (request === undefined) return;
    const boundary = all ? this.#pending.length : (/\s\S*$/.exec(this.#pending)?.index ?? -1) + 1;
    const piece = this.#pending.slice(0, boundary).trim();
    this.#pending = this.#pending.slice(boundary);
    if (piece === '') return;
    const pieceRequest = { ...request, text: piece };
    const samples = this.#host.settings.synthesize?.(pieceRequest) ?? defaultSonioxSpeech(piece, request.sampleRate);
    const { bytes } = encode(samples, pieceRequest);
    this.spoken.push(piece);
    this.#queue.push(bytes);
    this.#queuedBytes += bytes.length;
  }

  /** Starts the sender if there is audio to send (or `audio_end` is due). */
  #kick(): void {
    if (this.#state !== 'active' || this.#timer !== undefined) return;
    if (this.#queuedBytes === 0 && !this.textEnded) return;
    const delay = this.#started ? 0 : this.#firstByteMs;
    if (!this.#started) this.#firstDueAt = performance.now() + delay;
    this.#started = true;
    this.#timer = this.#host.timers.after(delay, () => this.#step());
  }

  #step(): void {
    this.#timer = undefined;
    if (this.#state !== 'active') return;
    const early = this.#firstDueAt - performance.now();
    if (early > 0) {
      this.#timer = this.#host.timers.after(early, () => this.#step());
      return;
    }
    if (this.#faultAfterAudio === this.audioMessages && this.fault !== undefined) {
      this.#faultAfterAudio = undefined;
      this.#applyFault(this.fault);
      if (this.#state !== 'active') return;
    }
    const room = this.#capBytes - this.audioBytes;
    if (room <= 0 && this.#queuedBytes > 0) {
      this.#overCap();
      return;
    }
    const bytes = this.#take(Math.min(this.#chunkBytes, room));
    if (bytes.length === 0 && !this.textEnded) return; // idle until more text arrives
    const last = this.textEnded && this.#queuedBytes === 0;
    this.audioMessages++;
    this.audioBytes += bytes.length;
    if (bytes.length > 0 && !this.textEnded) this.audioMessagesBeforeTextEnd++;
    this.#sentAudio.push(bytes);
    this.audioEnded = last;
    this.#host.send({ stream_id: this.streamId, audio: bytes.toString('base64'), ...(last ? { audio_end: true as const } : {}) });
    if (last) {
      this.#terminate();
      return;
    }
    this.#timer = this.#host.timers.after(this.#intervalMs, () => this.#step());
  }

  #take(max: number): Buffer {
    const parts: Buffer[] = [];
    let size = 0;
    while (size < max && this.#queue.length > 0) {
      const head = this.#queue[0] as Buffer;
      const part = head.subarray(0, max - size);
      parts.push(part);
      size += part.length;
      if (part.length === head.length) this.#queue.shift();
      else this.#queue[0] = head.subarray(part.length);
    }
    this.#queuedBytes -= size;
    return Buffer.concat(parts);
  }

  #applyFault(action: SonioxTtsWsFaultAction): void {
    switch (action.type) {
      case 'error': {
        const code = action.code ?? 500;
        this.fail(code, action.message ?? defaultMessage(code));
        return;
      }
      case 'connection-error': {
        const code = action.code ?? 503;
        this.#host.failConnection(code, action.message ?? defaultMessage(code));
        return;
      }
      case 'drop':
        this.#host.drop();
        return;
      case 'stall':
        this.stalled = true;
        this.#state = 'stalled';
        this.#host.notify();
        return;
      case 'malformed':
        this.#host.sendRaw(action.frame ?? 'not json');
        return;
      case 'http':
      case 'slow':
      case 'odd-chunks':
        return;
      default: {
        const exhaustive: never = action;
        throw new Error(`unknown fault ${JSON.stringify(exhaustive)}`);
      }
    }
  }
}

class WsConnection implements SonioxTtsWsConnection {
  readonly received: JsonValue[] = [];
  readonly sent: SonioxTtsWsServerMessage[] = [];
  keepAliveCount = 0;
  readonly streams: WsStream[] = [];
  closeInfo: SonioxTtsWsCloseInfo | undefined;

  readonly #ws: WebSocket;
  readonly #settings: WsSettings;
  readonly #notify: () => void;
  readonly #takeFault: () => SonioxTtsWsFaultAction | undefined;
  readonly #onStream: (stream: WsStream) => void;
  readonly #timers = new TimerSet();
  readonly #active = new Map<string, WsStream>();
  readonly #host: StreamHost;
  #idleTimer: NodeJS.Timeout | undefined;
  #connectionAuth: 'header' | 'subprotocol' | undefined;

  constructor(
    readonly index: number,
    readonly path: string,
    readonly headers: IncomingHttpHeaders,
    ws: WebSocket,
    settings: WsSettings,
    hooks: { readonly takeFault: () => SonioxTtsWsFaultAction | undefined; readonly onStream: (stream: WsStream) => void; readonly notify: () => void },
  ) {
    this.#ws = ws;
    this.#settings = settings;
    this.#notify = hooks.notify;
    this.#takeFault = hooks.takeFault;
    this.#onStream = hooks.onStream;
    this.#host = {
      settings,
      timers: this.#timers,
      send: (message) => this.#send(message),
      sendRaw: (text) => {
        if (this.closeInfo === undefined) this.#ws.send(text);
      },
      failConnection: (code, message) => this.#failConnection(code, message),
      drop: () => this.drop(),
      release: (stream) => {
        if (this.#active.get(stream.streamId) === stream) this.#active.delete(stream.streamId);
      },
      notify: hooks.notify,
    };
    ws.on('message', (data: RawData, isBinary: boolean) => this.#onMessage(toBuffer(data), isBinary));
    ws.on('close', (code: number, reason: Buffer) => {
      this.closeInfo ??= { code, reason: reason.toString('utf8'), by: 'client' };
      this.#shutdown();
      this.#notify();
    });
    ws.on('error', () => undefined);
    // A malformed Authorization header is a wrong key, not a missing one.
    const headerKey = headers.authorization === undefined ? undefined : (bearerToken(headers) ?? '');
    const key = headerKey ?? subprotocolKey(headers);
    if (key !== undefined) {
      if (!settings.apiKeys.has(key)) {
        this.#failConnection(401, 'Invalid API key.');
        return;
      }
      this.#connectionAuth = headerKey !== undefined ? 'header' : 'subprotocol';
    }
    this.#armIdle();
  }

  close(code = 1000, reason = ''): void {
    if (this.closeInfo !== undefined) return;
    this.closeInfo = { code, reason, by: 'server' };
    this.#shutdown();
    this.#ws.close(code, reason);
    this.#notify();
  }

  drop(): void {
    if (this.closeInfo !== undefined) return;
    this.closeInfo = { code: 1006, reason: '', by: 'dropped' };
    this.#shutdown();
    this.#ws.terminate();
    this.#notify();
  }

  /** Emulator shutdown. */
  dispose(): void {
    this.closeInfo ??= { code: 1006, reason: '', by: 'dropped' };
    this.#shutdown();
    this.#ws.terminate();
  }

  #shutdown(): void {
    this.#timers.clear();
    for (const stream of this.#active.values()) stream.end();
    this.#active.clear();
  }

  #send(message: SonioxTtsWsServerMessage): void {
    if (this.closeInfo !== undefined) return;
    this.sent.push(message);
    this.#ws.send(JSON.stringify(message));
    this.#notify();
  }

  /** A connection-level error (no `stream_id`), then close. */
  #failConnection(code: number, message: string): void {
    this.#send({ error_code: code, error_message: message });
    this.close(1000, '');
  }

  #armIdle(): void {
    this.#timers.cancel(this.#idleTimer);
    this.#idleTimer = this.#timers.after(this.#settings.idleTimeoutMs, () => this.#failConnection(408, 'Request timeout.'));
  }

  #onMessage(data: Buffer, isBinary: boolean): void {
    if (this.closeInfo !== undefined) return;
    this.#armIdle();
    if (isBinary) {
      this.#failConnection(400, 'Binary messages are not supported.');
      return;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(data.toString('utf8'));
    } catch {
      this.#failConnection(400, 'Invalid JSON message.');
      return;
    }
    if (!isRecord(parsed)) {
      this.#failConnection(400, 'Messages must be JSON objects.');
      return;
    }
    this.received.push(parsed as JsonValue);
    this.#route(parsed);
    this.#notify();
  }

  #route(message: Record<string, unknown>): void {
    if ('keep_alive' in message) {
      const result = keepAliveSchema.safeParse(message);
      if (result.success) this.keepAliveCount++;
      else this.#failConnection(400, firstIssue(result.error, message));
      return;
    }
    const streamId = message.stream_id;
    if (streamId === undefined) {
      this.#failConnection(400, 'Missing required field: stream_id');
      return;
    }
    if (typeof streamId !== 'string' || streamId === '') {
      this.#failConnection(400, 'Invalid value for field stream_id: expected a non-empty string');
      return;
    }
    if ('cancel' in message) {
      const result = cancelSchema.safeParse(message);
      if (result.success) this.#stream(streamId)?.cancel();
      else this.#streamError(streamId, 400, firstIssue(result.error, message));
      return;
    }
    if ('text' in message || 'text_end' in message) {
      const result = textSchema.safeParse(message);
      if (result.success) this.#stream(streamId)?.onText(result.data.text, result.data.text_end);
      else this.#streamError(streamId, 400, firstIssue(result.error, message));
      return;
    }
    this.#onConfig(streamId, message);
  }

  /** The active stream `streamId`; a message for any other id is refused for that id. */
  #stream(streamId: string): WsStream | undefined {
    const stream = this.#active.get(streamId);
    if (stream === undefined) this.#streamError(streamId, 400, `Stream ${streamId} is not active.`);
    return stream;
  }

  /** A per-stream error: the active stream of that id fails, or the error and `terminated` go out for the id alone. */
  #streamError(streamId: string, code: number, message: string): void {
    const stream = this.#active.get(streamId);
    if (stream !== undefined) {
      stream.fail(code, message);
      return;
    }
    this.#send({ stream_id: streamId, error_code: code, error_message: message });
    this.#send({ stream_id: streamId, terminated: true });
  }

  #onConfig(streamId: string, message: Record<string, unknown>): void {
    const stream = new WsStream(this.index, streamId, message as JsonValue, this.#host);
    this.streams.push(stream);
    this.#onStream(stream);
    const existing = this.#active.get(streamId);
    if (existing !== undefined) {
      const text = `Stream ${streamId} is already active.`;
      existing.fail(400, text);
      stream.refuseAsDuplicate(400, text);
      return;
    }
    const accepted = checkRequest(
      () => this.#validateConfig(message),
      (code, text) => stream.fail(code, text),
    );
    if (accepted === undefined) return;
    this.#active.set(streamId, stream);
    stream.start(accepted.request, accepted.authVia, this.#takeFault());
  }

  #validateConfig(message: Record<string, unknown>): { request: SonioxTtsRequest; authVia: 'header' | 'subprotocol' | 'config' } {
    if (this.#active.size >= this.#settings.maxStreams) {
      throw new HttpError(429, `Too many concurrent streams (at most ${String(this.#settings.maxStreams)} per connection).`);
    }
    // Auth first: a connection-level key wins over the deprecated config field.
    const authVia = this.#authenticate(message.api_key);
    const result = streamConfigSchema.safeParse(message);
    if (!result.success) throw new HttpError(400, firstIssue(result.error, message));
    const data = result.data;
    const { audioFormat, sampleRate } = checkOutput(data, this.#settings, WS_FORMATS, undefined);
    if (data.return_timestamps === true) throw new HttpError(400, 'return_timestamps is not supported by the emulator.');
    const request = { model: data.model, language: data.language, voice: data.voice, audioFormat, sampleRate, text: '', speed: data.speed, body: message as JsonValue };
    return { request, authVia };
  }

  #authenticate(configKey: unknown): 'header' | 'subprotocol' | 'config' {
    if (this.#connectionAuth !== undefined) return this.#connectionAuth;
    if (typeof configKey !== 'string' || configKey === '') throw new HttpError(401, 'Missing API key.');
    if (this.#settings.requireHeaderAuth) {
      throw new HttpError(401, 'API key in the configuration message is no longer supported. Send it in the Authorization header.');
    }
    if (!this.#settings.apiKeys.has(configKey)) throw new HttpError(401, 'Invalid API key.');
    return 'config';
  }
}

// ---- server ---------------------------------------------------------------------------------------------------------

export async function startSonioxTtsEmulator(options: SonioxTtsEmulatorOptions): Promise<SonioxTtsEmulator> {
  const apiKeys = new Set(typeof options.apiKey === 'string' ? [options.apiKey] : options.apiKey);
  const settings = {
    models: new Set([...SONIOX_TTS_MODELS, ...(options.models ?? [])]),
    voices: options.voices === undefined ? undefined : new Set(options.voices),
  };
  const chunkMs = options.chunkMs ?? 100;
  const realTimeFactor = options.latency?.realTimeFactor;
  const chunkIntervalMs = realTimeFactor === undefined ? (options.chunkIntervalMs ?? 5) : Math.max(0, chunkMs * realTimeFactor);
  const firstByteMs = Math.max(0, options.latency?.firstByteMs ?? 0);
  const logger = options.logger ?? silentLogger();
  const host = createHttpEmulatorHost<SonioxTtsRequestRecord, SonioxTtsFault>(options.faults);
  const { requests, timers, notify } = host;

  const stream = (record: SonioxTtsRequestRecord, request: SonioxTtsRequest, response: ServerResponse, fault: SonioxTtsFaultAction | undefined): void => {
    const samples = options.synthesize?.(request) ?? defaultSonioxSpeech(request.text, request.sampleRate);
    const { bytes, bytesPerMs, offset } = encode(samples, request);
    const unit = sampleBytes(request.audioFormat);
    const trailerError = fault?.type === 'trailer-error' ? fault : undefined;
    const headers = { 'content-type': request.audioFormat === 'wav' ? 'audio/wav' : 'audio/pcm', trailer: 'x-tts-error-code, x-tts-error-message' };
    const body = {
      bytes,
      chunkBytes: Math.max(unit, Math.round((chunkMs * bytesPerMs) / unit) * unit),
      headerBytes: offset,
      intervalMs: fault?.type === 'slow' ? fault.chunkIntervalMs : chunkIntervalMs,
      cut: fault?.type === 'stall' || fault?.type === 'abort' ? { type: fault.type, afterChunks: fault.afterChunks ?? 0 } : undefined,
      endEarly:
        trailerError === undefined
          ? undefined
          : {
              afterChunks: trailerError.afterChunks ?? 1,
              beforeEnd: (): void => {
                const trailers = { code: trailerError.code ?? 500, message: trailerError.message ?? 'Internal server error.' };
                record.trailers = trailers;
                response.addTrailers({ 'x-tts-error-code': String(trailers.code), 'x-tts-error-message': trailers.message });
              },
            },
    };
    streamChunked(response, record, headers, body, timers, notify);
  };

  /** Streams `firstByteMs` after the request arrived; a client gone before that is recorded as aborted. */
  const streamWhenDue = (
    record: SonioxTtsRequestRecord,
    request: SonioxTtsRequest,
    response: ServerResponse,
    fault: SonioxTtsFaultAction | undefined,
    receivedAt: number,
  ): void => {
    let timer: NodeJS.Timeout | undefined;
    const startWhenDue = (): void => {
      const waitMs = receivedAt + firstByteMs - performance.now();
      // Checked again when the timer fires: Node timers can fire up to 1 ms early.
      timer = waitMs > 0 ? timers.after(waitMs, startWhenDue) : undefined;
      if (timer === undefined) stream(record, request, response, fault);
    };
    startWhenDue();
    response.once('close', () => {
      if (timer === undefined) return;
      timers.cancel(timer);
      timer = undefined;
      record.aborted = !record.completed;
      notify();
    });
  };

  const handle = ({ incoming, url, raw, body }: JsonRequest, response: ServerResponse): void => {
    const receivedAt = performance.now();
    const path = url.pathname;
    const record: SonioxTtsRequestRecord = {
      method: incoming.method ?? 'GET',
      path,
      headers: incoming.headers,
      body,
      request: undefined,
      status: undefined,
      chunksSent: 0,
      bytesSent: 0,
      completed: false,
      aborted: false,
      trailers: undefined,
    };
    requests.push(record);
    notify();
    const fail = (status: number, message: string, errorBody?: JsonValue): void => {
      record.status = status;
      record.completed = true;
      sendJson(response, status, errorBody ?? { error_code: status, error_message: message });
      notify();
    };
    if (path !== '/tts' || incoming.method !== 'POST') {
      fail(404, 'Not found.');
      return;
    }
    const keyProblem = apiKeyProblem(incoming.headers, apiKeys);
    if (keyProblem !== undefined) {
      fail(401, keyProblem);
      return;
    }
    if (raw.length > 0 && body === null) {
      fail(400, 'Invalid JSON body.');
      return;
    }
    const request = checkRequest(() => validate(body, settings), fail);
    if (request === undefined) return;
    record.request = request;
    const fault = host.faults.take()?.action;
    if (fault?.type === 'status') {
      fail(fault.status, defaultMessage(fault.status), fault.body);
      return;
    }
    if ((fault?.type === 'stall' || fault?.type === 'abort') && fault.afterChunks === undefined) {
      if (fault.type === 'abort') response.socket?.destroy();
      else response.on('close', () => {
        record.aborted = !record.completed;
        notify();
      });
      return;
    }
    streamWhenDue(record, request, response, fault, receivedAt);
  };

  /** Reads and parses the body, then hands the request to `handle`; a throw there is answered with 500. */
  const serveRest = (incoming: IncomingMessage, response: ServerResponse): void => {
    const url = new URL(incoming.url ?? '/', 'http://127.0.0.1');
    readBody(incoming)
      .then(
        (raw) => {
          let body: JsonValue = null;
          try {
            body = raw.length === 0 ? null : (JSON.parse(raw.toString('utf8')) as JsonValue);
          } catch {
            body = null;
          }
          handle({ incoming, url, raw, body, json: raw.length === 0 || body !== null }, response);
        },
        () => response.destroy(),
      )
      .catch((error: unknown) => {
        logger.error({ err: error }, 'soniox tts emulator: request failed');
        if (!response.headersSent) sendJson(response, 500, { error_code: 500, error_message: 'Internal server error.' });
        else response.destroy();
      });
  };

  const wsSettings: WsSettings = {
    apiKeys,
    models: settings.models,
    voices: settings.voices,
    requireHeaderAuth: options.requireHeaderAuth === true,
    idleTimeoutMs: options.idleTimeoutMs ?? 30_000,
    maxStreams: options.maxStreamsPerConnection ?? SONIOX_TTS_WS_MAX_STREAMS,
    maxStreamMs: Math.max(1, options.maxStreamDurationMs ?? SONIOX_TTS_WS_MAX_STREAM_MS),
    chunkMs,
    intervalMs: chunkIntervalMs,
    firstByteMs,
    synthesize: options.synthesize,
  };
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    handleProtocols: (protocols) => (protocols.has('soniox-api-key') ? 'soniox-api-key' : false),
  });
  const wsUpgrades: SonioxTtsWsUpgradeRecord[] = [];
  const wsConnections: WsConnection[] = [];
  const streams: WsStream[] = [];
  const upgradeFaults = new FaultQueue<SonioxTtsWsFault>();
  const streamFaults = new FaultQueue<SonioxTtsWsFault>();
  const queueWsFault = (fault: SonioxTtsWsFault): void => (fault.at === 'upgrade' ? upgradeFaults : streamFaults).push(fault);
  for (const fault of options.wsFaults ?? []) queueWsFault(fault);

  const server = createServer(serveRest);
  server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = new URL(request.url ?? '/', 'http://127.0.0.1').pathname;
    const record = (status: number): void => {
      wsUpgrades.push({ path, headers: request.headers, status });
      notify();
    };
    if (path !== '/tts-websocket') {
      writeRawHttp(socket, 404, { error_code: 404, error_message: 'Not found.' });
      record(404);
      return;
    }
    const fault = upgradeFaults.take()?.action;
    if (fault !== undefined) {
      record(failUpgrade(socket, fault.type === 'http' ? fault : undefined, (status) => ({ error_code: status, error_message: defaultMessage(status) })));
      return;
    }
    wss.handleUpgrade(request, socket, head, (ws) => {
      record(101);
      const hooks = {
        takeFault: () => streamFaults.take()?.action,
        onStream: (entry: WsStream) => streams.push(entry),
        notify,
      };
      wsConnections.push(new WsConnection(wsConnections.length, path, request.headers, ws, wsSettings, hooks));
      notify();
    });
  });

  const port = await listenOnLoopback(server);
  const baseUrl = `http://127.0.0.1:${String(port)}`;
  return {
    baseUrl,
    url: `${baseUrl}/tts`,
    port,
    ...host.api,
    close: async () => {
      for (const connection of wsConnections) connection.dispose();
      await host.api.close();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await closeServer(server);
    },
    wsUrl: `ws://127.0.0.1:${String(port)}/tts-websocket`,
    wsUpgrades,
    wsConnections,
    streams,
    queueWsFault,
    waitForStream: (predicate, waitOptions) => host.api.waitFor(() => streams.find((entry) => predicate?.(entry) ?? true), waitOptions),
  };
}
