/**
 * Speechmatics TTS (preview) REST emulator (docs/reference/provider-protocols.md §4): plain http on
 * 127.0.0.1:<random port>. There is no npm SDK; clients use `fetch` with a configurable base URL (the Python SDK's
 * `SPEECHMATICS_TTS_URL`, `https://preview.tts.speechmatics.com` in production).
 *
 *   const tts = await startSpeechmaticsTtsEmulator({ apiKey: 'sm-test-key' });
 *   const response = await fetch(`${tts.baseUrl}/generate/sarah?output_format=pcm_16000`, { method: 'POST',
 *     headers: { Authorization: 'Bearer sm-test-key', 'Content-Type': 'application/json' },
 *     body: JSON.stringify({ text: 'Hello' }) });
 *   tts.requests  // every request; tts.queueFault({ action: { type: 'abort', afterChunks: 2 } })
 *   await tts.close();
 *
 * API (stable; append-only):
 *   startSpeechmaticsTtsEmulator(options: SpeechmaticsTtsEmulatorOptions): Promise<SpeechmaticsTtsEmulator>
 *   emulator.baseUrl (http://127.0.0.1:PORT), port, requests: SpeechmaticsTtsRequestRecord[], queueFault(fault),
 *   waitFor(probe), waitForRequest(predicate?), close()
 *   SPEECHMATICS_TTS_VOICES (sarah, theo, megan, jack), SPEECHMATICS_TTS_OUTPUT_FORMATS (pcm_16000, wav_16000),
 *   SPEECHMATICS_TTS_SAMPLE_RATE (16000), defaultSpeechmaticsSpeech(text, voice?)
 *
 * POST /generate/<voice>?output_format=<fmt> (another path: 404, another method on /generate/...: 405)
 * - `Authorization: Bearer <key>` else 401 `{"detail":"Missing API key."}` / `{"detail":"Invalid API key."}`.
 *   Credentials are checked before anything else. A 403 ("Access forbidden.", the Python SDK's wording) only comes
 *   from a `status` fault.
 * - `<voice>` must be one of `options.voices` (default SPEECHMATICS_TTS_VOICES) else 404 `{"detail":"Voice not found: x"}`.
 * - `output_format`: `wav_16000` (the docs' default, used when the parameter is absent: a 44-byte WAV header, then
 *   the data) or `pcm_16000` (raw s16le 16 kHz mono); anything else 422.
 * - Body: JSON object `{"text": "..."}`, text a non-empty (after trimming) string, else 422. Other fields are not
 *   documented: they are rejected with 422 `Unknown field: x` (so an adapter sending speed/pitch is caught) unless
 *   `options.allowUnknownFields`. The request Content-Type is not enforced.
 * - 200 with `Content-Type: audio/pcm` for pcm_16000 or `audio/wav` for wav_16000, chunked body: `chunkMs` of audio
 *   (default 100 ms = 3200 bytes, always an even byte count) every `chunkIntervalMs` (default 5 ms); the WAV header
 *   travels with the first chunk. No trailers: an error after the headers can only be a broken connection.
 * - Audio: `options.synthesize(request)` (Int16Array at 16 kHz), else `defaultSpeechmaticsSpeech`: a voiced-like
 *   signal (fundamental per voice + its third harmonic, 4 Hz syllable envelope) of 60 ms per character of text,
 *   bounded to 300..20000 ms, so a pcm_16000 body is exactly `clamp(60 * text.length, 300, 20000) * 32` bytes.
 * - A client that closes the connection before the end is recorded (`record.aborted`), and streaming stops.
 * - Latency (`options.latency`, default none): `firstByteMs` starts the response (headers and first chunk) this many
 *   ms after the request arrived (errors and faults without `afterChunks` are not delayed); `realTimeFactor` paces the
 *   body at that fraction of real time (each chunk follows the previous one after `chunkMs × realTimeFactor`, e.g.
 *   0.5: twice as fast as playback) instead of every `chunkIntervalMs`. A `slow` fault still wins.
 *
 * Faults (queued FIFO, `times` default 1; taken by a request that passed validation):
 * `{type:'status', status, body?}` (an error status before streaming; default body `{"detail": <message>}`),
 * `{type:'stall', afterChunks?}` (no response at all, or stop after N chunks with the connection kept open),
 * `{type:'abort', afterChunks?}` (destroy the socket before the response, or after N chunks: a truncated body),
 * `{type:'slow', chunkIntervalMs}` (stream this slowly).
 *
 * UNCONFIRMED (no primary source): the error body format (the Python SDK reads any status >= 400 as text; FastAPI
 * style `{"detail": ...}` is a guess), the status for an unknown voice (404 here), for validation errors (422 here,
 * FastAPI's default), the Content-Type of pcm_16000 (`audio/pcm` here) and of wav_16000 (`audio/wav`), whether unknown
 * body fields are rejected, and whether credentials are checked before the voice and format.
 *
 * Not implemented: temporary keys (`POST mp.speechmatics.com/v1/api_keys?type=tts`: any key in `options.apiKey`
 * works), formats other than the two 16 kHz ones, rate limiting (use a `status` fault with 429).
 */
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { z } from 'zod';
import { encodeWav } from '../wav.js';
import { apiKeyProblem, sendJson, silentLogger, syllableSpeech, type JsonValue, type WaitOptions } from './common.js';
import { checkRequest, createHttpEmulatorHost, HttpError, streamChunked, type JsonRequest } from './http-stream.js';
import { pcmBytes } from './realtime-audio.js';

export const SPEECHMATICS_TTS_VOICES: readonly string[] = ['sarah', 'theo', 'megan', 'jack'];
export const SPEECHMATICS_TTS_OUTPUT_FORMATS = ['pcm_16000', 'wav_16000'] as const;
export const SPEECHMATICS_TTS_SAMPLE_RATE = 16000;

export type SpeechmaticsTtsOutputFormat = (typeof SPEECHMATICS_TTS_OUTPUT_FORMATS)[number];

/** The docs' default when `output_format` is absent (the Python SDK always sends one, pcm_16000 by default). */
const DEFAULT_OUTPUT_FORMAT: SpeechmaticsTtsOutputFormat = 'wav_16000';
const WAV_HEADER_BYTES = 44;

const bodySchema = z.object({ text: z.string() });

export interface SpeechmaticsTtsRequest {
  readonly voice: string;
  readonly outputFormat: SpeechmaticsTtsOutputFormat;
  readonly text: string;
  /** Always 16000 (both formats are 16 kHz). */
  readonly sampleRate: number;
  /** The whole parsed body. */
  readonly body: JsonValue;
}

export type SpeechmaticsTtsFaultAction =
  | { readonly type: 'status'; readonly status: number; readonly body?: JsonValue }
  | { readonly type: 'stall'; readonly afterChunks?: number }
  | { readonly type: 'abort'; readonly afterChunks?: number }
  | { readonly type: 'slow'; readonly chunkIntervalMs: number };

export interface SpeechmaticsTtsFault {
  readonly action: SpeechmaticsTtsFaultAction;
  /** Number of requests it applies to (default 1). */
  readonly times?: number;
}

export interface SpeechmaticsTtsRequestRecord {
  readonly method: string;
  /** The URL path (without the query string). */
  readonly path: string;
  /** The `<voice>` path segment (decoded), whether known or not; undefined for other paths. */
  readonly voice: string | undefined;
  /** The `output_format` query parameter as sent, or the default (`wav_16000`) when absent. */
  readonly outputFormat: string;
  readonly headers: IncomingHttpHeaders;
  /** Parsed JSON body (null when empty or not JSON). */
  readonly body: JsonValue;
  /** The validated request, when it passed validation. */
  request: SpeechmaticsTtsRequest | undefined;
  /** The fault this request took, if any. */
  fault: SpeechmaticsTtsFaultAction | undefined;
  /** HTTP status sent (undefined while stalled before the headers, or after an abort before them). */
  status: number | undefined;
  chunksSent: number;
  /** Body bytes written, the WAV header included. */
  bytesSent: number;
  /** The response ended normally (an error response counts as completed). */
  completed: boolean;
  /** The connection closed before the response ended (the client went away, or an `abort` fault). */
  aborted: boolean;
}

/** Provider latency (see the header comment). */
export interface SpeechmaticsTtsLatency {
  /** Request to the first audio byte (default 0). */
  readonly firstByteMs?: number;
  /** Body pacing as synthesis time per audio time (default: every `chunkIntervalMs`). */
  readonly realTimeFactor?: number;
}

export interface SpeechmaticsTtsEmulatorOptions {
  readonly apiKey: string | readonly string[];
  /** Voices that exist (default SPEECHMATICS_TTS_VOICES). */
  readonly voices?: readonly string[];
  /** Audio at 16 kHz for a request (undefined: the default signal). */
  readonly synthesize?: (request: SpeechmaticsTtsRequest) => Int16Array | undefined;
  /** Audio per body chunk (default 100 ms). */
  readonly chunkMs?: number;
  /** Pause between chunks (default 5 ms). */
  readonly chunkIntervalMs?: number;
  /** Accept (and ignore) body fields other than `text` (default false: 422). */
  readonly allowUnknownFields?: boolean;
  readonly latency?: SpeechmaticsTtsLatency;
  readonly faults?: readonly SpeechmaticsTtsFault[];
  readonly logger?: Logger;
}

export interface SpeechmaticsTtsEmulator {
  /** `http://127.0.0.1:PORT` (the Python SDK's `SPEECHMATICS_TTS_URL`). */
  readonly baseUrl: string;
  readonly port: number;
  readonly requests: readonly SpeechmaticsTtsRequestRecord[];
  queueFault(fault: SpeechmaticsTtsFault): void;
  waitFor<T>(probe: () => T | undefined | null | false, options?: WaitOptions): Promise<T>;
  waitForRequest(predicate?: (record: SpeechmaticsTtsRequestRecord) => boolean, options?: WaitOptions): Promise<SpeechmaticsTtsRequestRecord>;
  close(): Promise<void>;
}

const FUNDAMENTAL_HZ: Readonly<Record<string, number>> = { sarah: 210, megan: 200, theo: 120, jack: 110 };

/**
 * The default signal at 16 kHz: the voice's fundamental (sarah 210 Hz, megan 200, theo 120, jack 110, others 150)
 * plus half its third harmonic, with a 4 Hz syllable envelope and 10 ms fades; 60 ms per character (300..20000 ms).
 */
export function defaultSpeechmaticsSpeech(text: string, voice = ''): Int16Array {
  return syllableSpeech(text, SPEECHMATICS_TTS_SAMPLE_RATE, FUNDAMENTAL_HZ[voice] ?? 150);
}

function parseOutputFormat(value: string): SpeechmaticsTtsOutputFormat {
  const format = SPEECHMATICS_TTS_OUTPUT_FORMATS.find((candidate) => candidate === value);
  if (format === undefined) {
    throw new HttpError(422, `Invalid output_format: ${value}. Supported: ${SPEECHMATICS_TTS_OUTPUT_FORMATS.join(', ')}.`);
  }
  return format;
}

function validateBody(body: JsonValue, allowUnknownFields: boolean): string {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(422, 'Request body must be a JSON object.');
  const schema = allowUnknownFields ? bodySchema : bodySchema.strict();
  const result = schema.safeParse(body);
  if (!result.success) {
    const issue = result.error.issues[0];
    if (issue?.code === 'unrecognized_keys') throw new HttpError(422, `Unknown field: ${issue.keys.join(', ')}`);
    if (body['text'] === undefined) throw new HttpError(422, 'Missing required field: text');
    throw new HttpError(422, 'Field text must be a string.');
  }
  if (result.data.text.trim().length === 0) throw new HttpError(422, 'Field text must not be empty.');
  return result.data.text;
}

function defaultMessage(status: number): string {
  switch (status) {
    case 401:
      return 'Invalid API key.';
    case 403:
      return 'Access forbidden.';
    case 404:
      return 'Not Found';
    case 429:
      return 'Rate limit exceeded.';
    case 503:
      return 'Service unavailable.';
    default:
      return status >= 500 ? 'Internal server error.' : 'Bad request.';
  }
}

/** `/generate/<voice>` -> the decoded voice; undefined for any other path. */
function voiceFromPath(path: string): string | undefined {
  const match = /^\/generate\/([^/]+)\/?$/.exec(path);
  if (match?.[1] === undefined) return undefined;
  try {
    return decodeURIComponent(match[1]);
  } catch {
    return match[1];
  }
}

export async function startSpeechmaticsTtsEmulator(options: SpeechmaticsTtsEmulatorOptions): Promise<SpeechmaticsTtsEmulator> {
  const apiKeys = new Set(typeof options.apiKey === 'string' ? [options.apiKey] : options.apiKey);
  const voices = new Set(options.voices ?? SPEECHMATICS_TTS_VOICES);
  const allowUnknownFields = options.allowUnknownFields ?? false;
  const chunkMs = options.chunkMs ?? 100;
  const chunkIntervalMs = options.chunkIntervalMs ?? 5;
  const firstByteMs = Math.max(0, options.latency?.firstByteMs ?? 0);
  const realTimeFactor = options.latency?.realTimeFactor;
  const pacedIntervalMs = realTimeFactor === undefined ? chunkIntervalMs : Math.max(0, chunkMs * realTimeFactor);
  const host = createHttpEmulatorHost<SpeechmaticsTtsRequestRecord, SpeechmaticsTtsFault>(options.faults);
  const { requests, timers, notify } = host;

  const stream = (
    record: SpeechmaticsTtsRequestRecord,
    request: SpeechmaticsTtsRequest,
    response: ServerResponse,
    fault: SpeechmaticsTtsFaultAction | undefined,
    receivedAt: number,
  ): void => {
    const samples = options.synthesize?.(request) ?? defaultSpeechmaticsSpeech(request.text, request.voice);
    const wav = request.outputFormat === 'wav_16000';
    const start = (): void =>
      streamChunked(
        response,
        record,
        { 'content-type': wav ? 'audio/wav' : 'audio/pcm' },
        {
          bytes: wav ? encodeWav(samples, SPEECHMATICS_TTS_SAMPLE_RATE) : pcmBytes(samples),
          // 32 bytes per ms at 16 kHz s16le: always an even count.
          chunkBytes: Math.max(2, Math.round((chunkMs * SPEECHMATICS_TTS_SAMPLE_RATE) / 1000) * 2),
          headerBytes: wav ? WAV_HEADER_BYTES : 0,
          intervalMs: fault?.type === 'slow' ? fault.chunkIntervalMs : pacedIntervalMs,
          cut: fault?.type === 'stall' || fault?.type === 'abort' ? { type: fault.type, afterChunks: fault.afterChunks ?? 0 } : undefined,
        },
        timers,
        notify,
      );
    // The response starts `firstByteMs` after the request; a client gone before that is recorded as aborted.
    if (performance.now() >= receivedAt + firstByteMs) {
      start();
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const startWhenDue = (): void => {
      const waitMs = receivedAt + firstByteMs - performance.now();
      // Checked again when the timer fires: Node timers can fire up to 1 ms early.
      timer = waitMs > 0 ? timers.after(waitMs, startWhenDue) : undefined;
      if (timer === undefined) start();
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

  const handle = ({ incoming, url, body, json }: JsonRequest, response: ServerResponse): void => {
    const receivedAt = performance.now();
    const path = url.pathname;
    const voice = voiceFromPath(path);
    const record: SpeechmaticsTtsRequestRecord = {
      method: incoming.method ?? 'GET',
      path,
      voice,
      outputFormat: url.searchParams.get('output_format') ?? DEFAULT_OUTPUT_FORMAT,
      headers: incoming.headers,
      body,
      request: undefined,
      fault: undefined,
      status: undefined,
      chunksSent: 0,
      bytesSent: 0,
      completed: false,
      aborted: false,
    };
    requests.push(record);
    notify();
    const fail = (status: number, message: string, errorBody?: JsonValue): void => {
      record.status = status;
      record.completed = true;
      sendJson(response, status, errorBody ?? { detail: message });
      notify();
    };
    if (voice === undefined) {
      fail(404, 'Not Found');
      return;
    }
    if (incoming.method !== 'POST') {
      fail(405, 'Method Not Allowed');
      return;
    }
    const keyProblem = apiKeyProblem(incoming.headers, apiKeys);
    if (keyProblem !== undefined) {
      fail(401, keyProblem);
      return;
    }
    const request = checkRequest((): SpeechmaticsTtsRequest => {
      if (!voices.has(voice)) throw new HttpError(404, `Voice not found: ${voice}`);
      const outputFormat = parseOutputFormat(record.outputFormat);
      if (!json) throw new HttpError(422, 'Invalid JSON body.');
      return { voice, outputFormat, text: validateBody(body, allowUnknownFields), sampleRate: SPEECHMATICS_TTS_SAMPLE_RATE, body };
    }, fail);
    if (request === undefined) return;
    record.request = request;
    const fault = host.faults.take()?.action;
    record.fault = fault;
    notify();
    if (fault?.type === 'status') {
      fail(fault.status, defaultMessage(fault.status), fault.body);
      return;
    }
    if ((fault?.type === 'stall' || fault?.type === 'abort') && fault.afterChunks === undefined) {
      response.on('close', () => {
        record.aborted = !record.completed;
        notify();
      });
      if (fault.type === 'abort') response.socket?.destroy();
      return;
    }
    stream(record, request, response, fault, receivedAt);
  };
  const port = await host.serve(handle, {
    logger: options.logger ?? silentLogger(),
    name: 'speechmatics tts emulator',
    errorBody: { detail: 'Internal server error.' },
  });
  return { baseUrl: `http://127.0.0.1:${String(port)}`, port, ...host.api };
}
