/**
 * Soniox TTS REST emulator (docs/reference/provider-protocols.md §5.7): plain http on 127.0.0.1:<random port>.
 *
 *   const tts = await startSonioxTtsEmulator({ apiKey: 'soniox-test-key' });
 *   const response = await fetch(tts.url, { method: 'POST', headers: { Authorization: 'Bearer soniox-test-key',
 *     'Content-Type': 'application/json' }, body: JSON.stringify({ model: 'tts-rt-v1', language: 'en', voice: 'Adrian',
 *     audio_format: 'pcm_s16le', sample_rate: 8000, text: 'Hello' }) });
 *   // official SDK: new SonioxNodeClient({ api_key, tts_api_url: tts.baseUrl }).tts.generateStream({...})
 *   tts.requests  // every request; tts.queueFault({ action: { type: 'trailer-error', afterChunks: 2 } })
 *   await tts.close();
 *
 * API (stable; append-only):
 *   startSonioxTtsEmulator(options: SonioxTtsEmulatorOptions): Promise<SonioxTtsEmulator>
 *   emulator.baseUrl (http://127.0.0.1:PORT, the SDK's `tts_api_url`), url (…/tts), port,
 *   requests: SonioxTtsRequestRecord[], queueFault(fault), waitFor(probe), waitForRequest(predicate?), close()
 *   SONIOX_TTS_MODELS: model ids accepted by default (`tts-rt-v1`, `tts-rt-v1-preview`)
 *
 * POST /tts (anything else: 404 JSON)
 * - `Authorization: Bearer <key>` else 401 `{"error_code":401,"error_message":"Invalid API key."}` (or "Missing API key.").
 * - JSON body validated with zod (strict: unknown fields -> 400): `model` (SONIOX_TTS_MODELS plus `options.models`;
 *   others -> 400 "Invalid model specified."), `language`, `voice` (any non-empty string, or one of `options.voices`),
 *   `audio_format` (pcm_s16le | pcm_f32le | pcm_mulaw | pcm_alaw | wav produced; mp3/opus/aac/flac -> 400 from the
 *   emulator), `sample_rate` (8000/16000/24000/44100/48000 for PCM and wav; 8000 only for mulaw/alaw; default 24000,
 *   or 8000 for G.711: the default is UNCONFIRMED), `text` (non-empty), optional `bitrate`, `speed` (0.5..2),
 *   `reduce_silence`, `client_reference_id`. Errors before streaming: HTTP status + `{error_code, error_message}`.
 * - 200 with `Content-Type: audio/pcm` (`audio/wav` for wav), `Trailer: x-tts-error-code, x-tts-error-message`,
 *   chunked body: `chunkMs` of audio (default 100) every `chunkIntervalMs` (default 5). Errors during streaming are
 *   the trailers `x-tts-error-code` / `x-tts-error-message` on the final chunk.
 * - Audio: `options.synthesize(request)` (Int16Array at the request's sample rate), else a voiced-like signal
 *   (150 Hz + 450 Hz with a 4 Hz syllable envelope) of 60 ms per character of text (300..20000 ms).
 * - A client that closes the connection before the end is recorded (`record.aborted`), and streaming stops.
 *
 * Faults (queued FIFO, `times` default 1): `{type:'status', status, body?}` (401/429/500... before streaming),
 * `{type:'stall', afterChunks?}` (no response at all, or stop after N chunks with the connection kept open),
 * `{type:'trailer-error', afterChunks?, code?, message?}` (end the body after N chunks (default 1) with error
 * trailers, default 500 "Internal server error."), `{type:'abort', afterChunks?}` (destroy the socket),
 * `{type:'slow', chunkIntervalMs}` (stream this slowly).
 *
 * Not implemented: the TTS WebSocket API (`/tts-websocket`), compressed formats, voices listing, timestamps.
 */
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { encodeAlaw, encodeMulaw } from '@stsgate/core';
import type { Logger } from 'pino';
import { z } from 'zod';
import { encodeWav } from '../wav.js';
import { apiKeyProblem, sendJson, silentLogger, syllableSpeech, type JsonValue, type WaitOptions } from './common.js';
import { checkRequest, createHttpEmulatorHost, HttpError, streamChunked, type JsonRequest } from './http-stream.js';
import { pcmBytes } from './realtime-audio.js';

export const SONIOX_TTS_MODELS: readonly string[] = ['tts-rt-v1', 'tts-rt-v1-preview'];

const PRODUCED_FORMATS = ['pcm_s16le', 'pcm_f32le', 'pcm_mulaw', 'pcm_alaw', 'wav'] as const;
const COMPRESSED_FORMATS = ['mp3', 'opus', 'aac', 'flac'] as const;
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
    speed: z.number().min(0.5).max(2).optional(),
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

export interface SonioxTtsEmulatorOptions {
  readonly apiKey: string | readonly string[];
  readonly models?: readonly string[];
  /** Accepted voices (default: any non-empty string). */
  readonly voices?: readonly string[];
  readonly synthesize?: (request: SonioxTtsRequest) => Int16Array | undefined;
  /** Audio per body chunk (default 100 ms). */
  readonly chunkMs?: number;
  /** Pause between chunks (default 5 ms). */
  readonly chunkIntervalMs?: number;
  readonly faults?: readonly SonioxTtsFault[];
  readonly logger?: Logger;
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
}

/** The default signal: 150 Hz + 450 Hz with a 4 Hz syllable envelope, 60 ms per character (300..20000 ms). */
export function defaultSonioxSpeech(text: string, rate: number): Int16Array {
  return syllableSpeech(text, rate, 150);
}

function validate(body: unknown, settings: { models: ReadonlySet<string>; voices: ReadonlySet<string> | undefined }): SonioxTtsRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'Request body must be a JSON object.');
  const result = bodySchema.safeParse(body);
  if (!result.success) {
    const issue = result.error.issues[0];
    if (issue === undefined) throw new HttpError(400, 'Invalid request.');
    const path = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') throw new HttpError(400, `Unknown field: ${issue.keys.join(', ')}`);
    if (issue.code === 'invalid_type' && (body as Record<string, unknown>)[path] === undefined) throw new HttpError(400, `Missing required field: ${path}`);
    throw new HttpError(400, `Invalid value for field ${path}: ${issue.message}`);
  }
  const data = result.data;
  if (!settings.models.has(data.model)) throw new HttpError(400, 'Invalid model specified.');
  if (settings.voices !== undefined && !settings.voices.has(data.voice)) throw new HttpError(400, `Invalid voice: ${data.voice}.`);
  if ((COMPRESSED_FORMATS as readonly string[]).includes(data.audio_format)) {
    throw new HttpError(400, `audio_format ${data.audio_format} is not supported by the emulator.`);
  }
  const audioFormat = PRODUCED_FORMATS.find((format) => format === data.audio_format);
  if (audioFormat === undefined) throw new HttpError(400, `Invalid audio_format: ${data.audio_format}.`);
  const g711 = audioFormat === 'pcm_mulaw' || audioFormat === 'pcm_alaw';
  const sampleRate = data.sample_rate ?? (g711 ? 8000 : 24000);
  if (g711 ? sampleRate !== 8000 : !(PCM_RATES as readonly number[]).includes(sampleRate)) {
    throw new HttpError(400, `Invalid sample_rate ${String(sampleRate)} for audio_format ${audioFormat}.`);
  }
  if (data.text.trim().length === 0) throw new HttpError(400, 'Text must not be empty.');
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

export async function startSonioxTtsEmulator(options: SonioxTtsEmulatorOptions): Promise<SonioxTtsEmulator> {
  const apiKeys = new Set(typeof options.apiKey === 'string' ? [options.apiKey] : options.apiKey);
  const settings = {
    models: new Set([...SONIOX_TTS_MODELS, ...(options.models ?? [])]),
    voices: options.voices === undefined ? undefined : new Set(options.voices),
  };
  const chunkMs = options.chunkMs ?? 100;
  const chunkIntervalMs = options.chunkIntervalMs ?? 5;
  const host = createHttpEmulatorHost<SonioxTtsRequestRecord, SonioxTtsFault>(options.faults);
  const { requests, timers, notify } = host;

  const stream = (record: SonioxTtsRequestRecord, request: SonioxTtsRequest, response: ServerResponse, fault: SonioxTtsFaultAction | undefined): void => {
    const samples = options.synthesize?.(request) ?? defaultSonioxSpeech(request.text, request.sampleRate);
    const { bytes, bytesPerMs, offset } = encode(samples, request);
    const sampleBytes = request.audioFormat === 'pcm_f32le' ? 4 : request.audioFormat === 'pcm_mulaw' || request.audioFormat === 'pcm_alaw' ? 1 : 2;
    const trailerError = fault?.type === 'trailer-error' ? fault : undefined;
    const headers = { 'content-type': request.audioFormat === 'wav' ? 'audio/wav' : 'audio/pcm', trailer: 'x-tts-error-code, x-tts-error-message' };
    const body = {
      bytes,
      chunkBytes: Math.max(sampleBytes, Math.round((chunkMs * bytesPerMs) / sampleBytes) * sampleBytes),
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

  const handle = ({ incoming, url, raw, body }: JsonRequest, response: ServerResponse): void => {
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
    stream(record, request, response, fault);
  };
  const port = await host.serve(handle, {
    logger: options.logger ?? silentLogger(),
    name: 'soniox tts emulator',
    errorBody: { error_code: 500, error_message: 'Internal server error.' },
  });
  const baseUrl = `http://127.0.0.1:${String(port)}`;
  return { baseUrl, url: `${baseUrl}/tts`, port, ...host.api };
}
