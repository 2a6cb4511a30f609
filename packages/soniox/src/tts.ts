/**
 * `createSonioxTts`: Soniox TTS as a core TtsAdapter. `synthesize` uses the REST API (`POST /tts`, streamed raw PCM
 * s16le); `streamText` uses the real-time WebSocket API, text pushed as it is produced (see `tts-stream.ts`).
 *
 * REST uses `node:http`/`node:https` rather than `fetch`: errors that happen after audio started streaming arrive as
 * HTTP trailers (`x-tts-error-code` / `x-tts-error-message`), and Node's `fetch` does not expose trailers.
 */
import { request as httpRequest } from 'node:http';
import type { ClientRequest, IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Logger } from 'pino';
import { ProviderError, Pcm16Assembler, parseRetryAfter, providerErrorFromConnection, readErrorBody } from '@stsgate/core';
import type { CallContext, SampleRate, TtsAdapter, TtsCapabilities, TtsRequest, TtsStreamRequest, TtsTextStream } from '@stsgate/core';
import { PROVIDER, providerErrorFromSoniox, providerErrorFromStatus } from './errors.js';
import { DEFAULT_TTS_IDLE_CLOSE_MS, SONIOX_TTS_MAX_STREAMS_PER_CONNECTION, SonioxTtsStreamPool } from './tts-stream.js';
import { DEFAULT_TTS_LANGUAGE, DEFAULT_TTS_MODEL, DEFAULT_TTS_URL, DEFAULT_TTS_VOICE, DEFAULT_TTS_WS_URL, buildTtsRequest, splitTtsText } from './wire.js';
import type { TtsSettings } from './wire.js';

export interface SonioxTtsOptions {
  readonly apiKey: string;
  /** Default `https://tts-rt.soniox.com/tts`; `http://` works for local servers. */
  readonly url?: string;
  /** `streamText`'s socket. Default `wss://tts-rt.soniox.com/tts-websocket`; `ws://` works for local servers. */
  readonly websocketUrl?: string;
  /** Default `tts-rt-v1`. */
  readonly model?: string;
  /** Default `en`; a request's own language wins. */
  readonly language?: string;
  /** Default `Adrian`; a request's own voice wins. */
  readonly voice?: string;
  /** Only 8000 (AVR's rate). */
  readonly sampleRate?: 8000;
  /** 0.7..1.3 */
  readonly speed?: number;
  /**
   * No response, or no data, for this long: a `timeout` ProviderError. Default 30000. `streamText`: the upgrade, the
   * first audio after text went out, and any silence while audio is owed.
   */
  readonly timeoutMs?: number;
  /** `streamText`: while nothing else is sent on a connection, a `keep_alive` goes out at least this often. Default 10000. */
  readonly keepaliveIntervalMs?: number;
  /**
   * `streamText`: streams multiplexed on one WebSocket connection, 1..5 (default 5, Soniox's limit; 1 gives every
   * stream its own connection). The adapter's streams share its connections (see `tts-stream.ts`).
   */
  readonly maxStreamsPerConnection?: number;
  /**
   * `streamText`: connections open at once (default: no cap). With a cap, a stream that finds every connection full
   * fails at once with a retryable `rate_limit` error. Without one, a connection beyond the account's limit (3 by
   * default) is refused by Soniox, which fails its streams with a retryable `rate_limit` error too.
   */
  readonly maxConnections?: number;
  /** `streamText`: a connection that carries no stream for this long is closed. Default 15000. */
  readonly idleConnectionCloseMs?: number;
  /** `streamText`: connection-level events (default: the logger of the call whose stream opened the connection). */
  readonly logger?: Logger;
}

/** The Soniox TTS adapter, with `close()` for shutdown and tests (not part of core's TtsAdapter). */
export interface SonioxTtsAdapter extends TtsAdapter {
  /**
   * Closes `streamText`'s pooled connections: streams still running fail with a `closed` error, later ones at once.
   * Not needed for the process to exit (an idle connection is unref'd and closed after `idleConnectionCloseMs`).
   */
  close(): Promise<void>;
}

export const DEFAULT_TTS_TIMEOUT_MS = 30_000;
/** Soniox closes a TTS socket that is idle for 20-30 s. */
const DEFAULT_TTS_KEEPALIVE_INTERVAL_MS = 10_000;
export const TTS_SAMPLE_RATE: SampleRate = 8000;

export const sonioxTtsCapabilities: TtsCapabilities = {
  outputSampleRates: [TTS_SAMPLE_RATE],
  encodings: ['pcm_s16le'],
  streamingInput: true,
};

const MAX_ERROR_BODY_BYTES = 8192;

function cancelled(): ProviderError {
  return new ProviderError(PROVIDER, 'closed', 'speech synthesis was cancelled: the call ended', { retryable: false });
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

export function createSonioxTts(options: SonioxTtsOptions): SonioxTtsAdapter {
  const sampleRate = options.sampleRate ?? TTS_SAMPLE_RATE;
  if (sampleRate !== TTS_SAMPLE_RATE) throw new RangeError(`Soniox TTS sample rate must be 8000 for AVR, not ${String(sampleRate)}`);
  const url = new URL(options.url ?? DEFAULT_TTS_URL);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new RangeError(`Soniox TTS URL must be http(s), not ${url.protocol}`);
  const websocketUrl = new URL(options.websocketUrl ?? DEFAULT_TTS_WS_URL);
  if (websocketUrl.protocol !== 'ws:' && websocketUrl.protocol !== 'wss:') {
    throw new RangeError(`Soniox TTS WebSocket URL must be ws(s), not ${websocketUrl.protocol}`);
  }
  const settings: TtsSettings = {
    model: options.model ?? DEFAULT_TTS_MODEL,
    language: options.language ?? DEFAULT_TTS_LANGUAGE,
    voice: options.voice ?? DEFAULT_TTS_VOICE,
    sampleRate,
    speed: options.speed,
  };
  const timeoutMs = options.timeoutMs ?? DEFAULT_TTS_TIMEOUT_MS;
  const keepaliveIntervalMs = Math.max(200, options.keepaliveIntervalMs ?? DEFAULT_TTS_KEEPALIVE_INTERVAL_MS);
  const secret = options.apiKey;
  const maxStreamsPerConnection = options.maxStreamsPerConnection ?? SONIOX_TTS_MAX_STREAMS_PER_CONNECTION;
  if (!Number.isInteger(maxStreamsPerConnection) || maxStreamsPerConnection < 1 || maxStreamsPerConnection > SONIOX_TTS_MAX_STREAMS_PER_CONNECTION) {
    throw new RangeError(`Soniox TTS streams per connection must be 1..${String(SONIOX_TTS_MAX_STREAMS_PER_CONNECTION)}, not ${String(maxStreamsPerConnection)}`);
  }
  const maxConnections = options.maxConnections ?? Number.POSITIVE_INFINITY;
  if (!(maxConnections >= 1) || (maxConnections !== Number.POSITIVE_INFINITY && !Number.isInteger(maxConnections))) {
    throw new RangeError(`Soniox TTS maxConnections must be a whole number >= 1, not ${String(maxConnections)}`);
  }
  const pool = new SonioxTtsStreamPool({
    apiKey: secret,
    url: websocketUrl.href,
    settings,
    outputSampleRate: TTS_SAMPLE_RATE,
    timeoutMs,
    keepaliveIntervalMs,
    maxStreamsPerConnection,
    maxConnections,
    idleCloseMs: Math.max(0, options.idleConnectionCloseMs ?? DEFAULT_TTS_IDLE_CLOSE_MS),
    logger: options.logger,
  });

  /** Text over Soniox's per-request limit becomes several requests, spoken one after the other. */
  async function* stream(request: TtsRequest, call: CallContext): AsyncGenerator<Int16Array> {
    if (call.signal.aborted) throw cancelled();
    if (request.text.trim() === '') {
      throw new ProviderError(PROVIDER, 'invalid_request', 'nothing to synthesize: the text is empty', { retryable: false });
    }
    const pieces = splitTtsText(request.text)
      .map((piece) => piece.trim())
      .filter((piece) => piece !== '');
    if (pieces.length > 1) call.logger.debug({ provider: PROVIDER, requests: pieces.length }, 'Soniox TTS text over the request limit: split');
    for (const piece of pieces) {
      yield* streamRequest(JSON.stringify(buildTtsRequest(settings, piece, { voice: request.voice, language: request.language, model: request.model })), call);
    }
  }

  /** One `POST /tts`: its audio as it streams in. */
  async function* streamRequest(body: string, call: CallContext): AsyncGenerator<Int16Array> {
    if (call.signal.aborted) throw cancelled();
    // One place decides why the upstream request ended early: the call, the timeout, or the consumer.
    let stopReason: ProviderError | undefined;
    let upstream: ClientRequest | undefined;
    let timer: NodeJS.Timeout | undefined;
    const stop = (reason: ProviderError): void => {
      stopReason ??= reason;
      upstream?.destroy(reason);
    };
    const onCallAbort = (): void => stop(cancelled());
    const arm = (): void => {
      disarm();
      timer = setTimeout(() => stop(new ProviderError(PROVIDER, 'timeout', `Soniox TTS sent nothing for ${timeoutMs} ms`)), timeoutMs);
    };
    const disarm = (): void => {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
    };
    call.signal.addEventListener('abort', onCallAbort, { once: true });
    let response: IncomingMessage | undefined;
    let complete = false;
    try {
      arm();
      response = await new Promise<IncomingMessage>((resolve, reject) => {
        const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
        const req = send(url, {
          method: 'POST',
          headers: {
            Authorization: `Bearer ${secret}`,
            'Content-Type': 'application/json',
            'Content-Length': Buffer.byteLength(body),
            Accept: 'audio/pcm, application/json',
            TE: 'trailers',
          },
        });
        upstream = req;
        req.once('response', resolve);
        req.once('error', reject);
        req.end(body);
      }).catch((error: unknown) => {
        throw stopReason ?? connectionError(error);
      });
      const status = response.statusCode ?? 0;
      if (status < 200 || status >= 300) {
        const text = await readErrorBody(response, { maxBytes: MAX_ERROR_BODY_BYTES }).catch(() => '');
        throw stopReason ?? providerErrorFromStatus(status, text, {
          secret,
          what: 'TTS request failed',
          retryAfterMs: parseRetryAfter(header(response.headers['retry-after'])),
        });
      }
      const assembler = new Pcm16Assembler();
      try {
        for await (const chunk of response as AsyncIterable<Buffer>) {
          disarm();
          const samples = assembler.push(chunk);
          if (samples.length > 0) yield samples;
          arm();
        }
      } catch (error) {
        throw stopReason ?? connectionError(error);
      }
      disarm();
      if (stopReason !== undefined) throw stopReason;
      // Errors after the audio started: HTTP trailers (available once the body has ended).
      const trailerCode = header(response.trailers['x-tts-error-code']);
      if (trailerCode !== undefined && trailerCode.trim() !== '') {
        const code = Number(trailerCode);
        throw providerErrorFromSoniox(Number.isFinite(code) ? code : 500, header(response.trailers['x-tts-error-message']), {
          secret,
          what: 'TTS stream failed',
        });
      }
      if (!response.complete) throw new ProviderError(PROVIDER, 'connectivity', 'the Soniox TTS response ended early');
      if (assembler.pendingBytes > 0) call.logger.debug({ provider: PROVIDER }, 'Soniox TTS stream ended on an odd byte (dropped)');
      complete = true;
    } finally {
      disarm();
      call.signal.removeEventListener('abort', onCallAbort);
      // Early return by the consumer, an error, or the call ending: abort the upstream request.
      if (!complete) upstream?.destroy();
      response?.destroy();
    }
  }

  return {
    id: PROVIDER,
    capabilities: sonioxTtsCapabilities,
    synthesize(request: TtsRequest, call: CallContext) {
      return { outputSampleRate: TTS_SAMPLE_RATE, audio: stream(request, call) };
    },
    streamText(request: TtsStreamRequest, call: CallContext): TtsTextStream {
      return pool.open(request, call);
    },
    close: () => pool.close(),
  };

  function connectionError(error: unknown): ProviderError {
    return providerErrorFromConnection({ provider: PROVIDER, label: 'Soniox TTS', secrets: secret }, error);
  }
}
