/**
 * `openSonioxTtsStream`: the Soniox TTS adapter's `streamText`, over Soniox's real-time TTS WebSocket
 * (`/tts-websocket`): text is pushed into one stream as it is produced, audio comes back as it is synthesized.
 *
 * One connection per `streamText` call, carrying one stream: the socket opens as soon as the reply starts (while the
 * LLM still thinks, so the handshake is off the critical path) and closes with it, so nothing is shared between
 * replies or calls and a dropped socket costs one reply. (Soniox allows 5 streams per connection; pooling them per
 * call would save a handshake per reply at the price of shared failure.)
 *
 * Transport: a plain `ws` client that sends `Authorization: Bearer <key>` on the upgrade and never puts the key in a
 * message, like the ASR adapter; the SDK's `client.realtime.tts` sends `api_key` in every stream config instead.
 */
import { randomUUID } from 'node:crypto';
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import { WebSocket } from 'ws';
import type { RawData } from 'ws';
import { AsyncQueue, closeWebSocket, Pcm16Assembler, parseRetryAfter, ProviderError, readErrorBody, toProviderError } from '@stsgate/core';
import type { CallContext, SampleRate, TtsStreamRequest, TtsTextStream } from '@stsgate/core';
import { PROVIDER, providerErrorFromClose, providerErrorFromSoniox, providerErrorFromStatus, sanitizeMessage } from './errors.js';
import { buildTtsStreamConfig, parseTtsStreamMessage } from './wire.js';
import type { ParsedTtsStreamMessage, TtsSettings, TtsStreamClientMessage, TtsStreamConfigMessage } from './wire.js';

export interface SonioxTtsStreamOptions {
  readonly apiKey: string;
  /** `wss://tts-rt.soniox.com/tts-websocket`, or `ws://` for local servers. */
  readonly url: string;
  readonly settings: TtsSettings;
  readonly outputSampleRate: SampleRate;
  /** The upgrade, the first audio after text went out, and any silence while audio is owed: a `timeout` error. */
  readonly timeoutMs: number;
  /** While nothing else is sent, a `keep_alive` goes out at least this often. */
  readonly keepaliveIntervalMs: number;
}

export function openSonioxTtsStream(options: SonioxTtsStreamOptions, request: TtsStreamRequest, call: CallContext): TtsTextStream {
  return new SonioxTtsTextStream(options, request, call);
}

type TextMessage = Extract<TtsStreamClientMessage, { text: string }>;

type Outcome = { readonly kind: 'completed' } | { readonly kind: 'cancelled' } | { readonly kind: 'failed'; readonly error: ProviderError };

class SonioxTtsTextStream implements TtsTextStream {
  readonly outputSampleRate: SampleRate;
  readonly audio: AsyncIterable<Int16Array>;
  readonly #options: SonioxTtsStreamOptions;
  readonly #call: CallContext;
  readonly #logger: Logger;
  readonly #config: TtsStreamConfigMessage;
  readonly #queue = new AsyncQueue<Int16Array>();
  readonly #assembler = new Pcm16Assembler();
  readonly #socket: WebSocket | undefined;
  /** Text pushed before the socket was open, sent in order right after the config. */
  readonly #pending: TextMessage[] = [];
  #open = false;
  #hasText = false;
  #textEnded = false;
  #audioStarted = false;
  #audioEnded = false;
  /** Soniox has ended the stream itself (`terminated`, or an error for it): nothing to cancel. */
  #streamOver = false;
  /** Text went out and no audio has come since: Soniox owes audio. */
  #textSinceAudio = false;
  #responseTimer: NodeJS.Timeout | undefined;
  #keepaliveTimer: NodeJS.Timeout | undefined;
  #lastSentAt = 0;
  #socketError: Error | undefined;
  #outcome: Outcome | undefined;
  #closing: Promise<void> | undefined;
  readonly #onCallAbort = (): void => void this.close();

  constructor(options: SonioxTtsStreamOptions, request: TtsStreamRequest, call: CallContext) {
    this.#options = options;
    this.#call = call;
    this.outputSampleRate = options.outputSampleRate;
    this.#logger = call.logger.child({ provider: PROVIDER, kind: 'tts' });
    this.#config = buildTtsStreamConfig(options.settings, randomUUID(), { voice: request.voice, language: request.language });
    this.audio = this.#iterate();
    if (call.signal.aborted) {
      this.#outcome = { kind: 'cancelled' };
      this.#closing = Promise.resolve();
      this.#queue.end();
      return;
    }
    this.#socket = new WebSocket(options.url, {
      headers: { Authorization: `Bearer ${options.apiKey}` },
      perMessageDeflate: false,
      handshakeTimeout: options.timeoutMs,
    });
    this.#listen(this.#socket);
    call.signal.addEventListener('abort', this.#onCallAbort, { once: true });
  }

  pushText(text: string): void {
    if (this.#outcome !== undefined || this.#textEnded || text === '') return;
    if (text.trim() !== '') this.#hasText = true;
    this.#deliver({ text, text_end: false, stream_id: this.#config.stream_id });
  }

  endText(): void {
    if (this.#outcome !== undefined || this.#textEnded) return;
    this.#textEnded = true;
    if (!this.#hasText) {
      // Nothing to say (a reply without text): Soniox would refuse an empty stream.
      void this.#finish({ kind: 'cancelled' });
      return;
    }
    this.#deliver({ text: '', text_end: true, stream_id: this.#config.stream_id });
  }

  close(): Promise<void> {
    return this.#finish({ kind: 'cancelled' });
  }

  /** The queued audio; a consumer that stops early (or `close()`) cancels the synthesis. */
  async *#iterate(): AsyncGenerator<Int16Array> {
    try {
      for await (const chunk of this.#queue) {
        if (this.#outcome?.kind === 'cancelled') return;
        yield chunk;
      }
    } finally {
      void this.close();
    }
  }

  // ---- connection ------------------------------------------------------------------------------------------------

  #listen(socket: WebSocket): void {
    const secret = this.#options.apiKey;
    socket.on('unexpected-response', (request: ClientRequest, response: IncomingMessage) => {
      const status = response.statusCode ?? 0;
      const retryAfter = response.headers['retry-after'];
      const retryAfterMs = parseRetryAfter(Array.isArray(retryAfter) ? retryAfter[0] : retryAfter);
      const fail = (body: string): void => {
        request.destroy();
        this.#fail(providerErrorFromStatus(status, body, { secret, what: 'TTS rejected the connection', retryAfterMs }));
      };
      readErrorBody(response).then(fail, () => fail(''));
    });
    socket.on('open', () => this.#onOpen(socket));
    socket.on('message', (data: RawData, isBinary: boolean) => this.#onMessage(data, isBinary));
    // The 'close' that follows decides what failed.
    socket.on('error', (error: Error) => {
      this.#socketError ??= error;
    });
    socket.on('close', (code: number, reason: Buffer) => {
      if (this.#outcome !== undefined) return;
      const error = this.#socketError;
      this.#fail(error === undefined ? providerErrorFromClose(code, reason.toString('utf8'), secret) : connectionError(error, secret));
    });
  }

  /** Config first, then the text pushed meanwhile, in order. */
  #onOpen(socket: WebSocket): void {
    if (this.#outcome !== undefined) return;
    this.#open = true;
    this.#send(socket, this.#config);
    for (const message of this.#pending.splice(0)) this.#sendText(socket, message);
    this.#startKeepalive(socket);
    this.#logger.debug({ model: this.#config.model, voice: this.#config.voice, language: this.#config.language }, 'Soniox TTS stream open');
  }

  #deliver(message: TextMessage): void {
    if (this.#open && this.#socket !== undefined) this.#sendText(this.#socket, message);
    else this.#pending.push(message);
  }

  #sendText(socket: WebSocket, message: TextMessage): void {
    this.#send(socket, message);
    // Blanks alone may never be answered with audio.
    if (message.text.trim() !== '') this.#textSinceAudio = true;
    this.#responseTimer ??= this.#armResponse();
  }

  #send(socket: WebSocket, message: TtsStreamConfigMessage | TtsStreamClientMessage): void {
    socket.send(JSON.stringify(message));
    this.#lastSentAt = Date.now();
  }

  /** Ends the stream once: cancels upstream unless Soniox ended it, ends or fails `audio`, closes the socket. */
  #finish(outcome: Outcome): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    this.#outcome = outcome;
    this.#stopTimers();
    this.#call.signal.removeEventListener('abort', this.#onCallAbort);
    this.#pending.length = 0;
    const socket = this.#socket;
    if (socket === undefined) {
      this.#closing = Promise.resolve();
      return this.#closing;
    }
    if (outcome.kind !== 'completed' && this.#open && !this.#streamOver && socket.readyState === WebSocket.OPEN) {
      this.#send(socket, { stream_id: this.#config.stream_id, cancel: true });
    }
    switch (outcome.kind) {
      case 'completed':
      case 'cancelled':
        this.#queue.end();
        break;
      case 'failed':
        this.#logger.debug({ category: outcome.error.category, err: outcome.error.message }, 'Soniox TTS stream failed');
        this.#queue.fail(outcome.error);
        break;
      default: {
        const exhaustive: never = outcome;
        throw new Error(`unknown outcome ${JSON.stringify(exhaustive)}`);
      }
    }
    this.#closing = closeWebSocket(socket, 'tts stream ended');
    return this.#closing;
  }

  #fail(error: ProviderError): void {
    void this.#finish({ kind: 'failed', error });
  }

  // ---- messages --------------------------------------------------------------------------------------------------

  #onMessage(data: RawData, isBinary: boolean): void {
    if (this.#outcome !== undefined) return;
    // A frame we cannot read costs this stream an error, nothing else.
    if (isBinary) {
      this.#fail(new ProviderError(PROVIDER, 'protocol', 'unexpected Soniox TTS message (a binary frame)'));
      return;
    }
    const message = parseTtsStreamMessage(rawText(data));
    switch (message.kind) {
      case 'invalid':
        this.#fail(new ProviderError(PROVIDER, 'protocol', `unexpected Soniox TTS message (${message.reason.slice(0, 200)})`));
        return;
      case 'error': {
        if (message.streamId !== undefined && message.streamId !== this.#config.stream_id) return;
        // A stream error is followed by `terminated`; a connection-level one by a close.
        this.#streamOver = true;
        const what = message.streamId === undefined ? 'TTS connection failed' : 'TTS stream failed';
        this.#fail(providerErrorFromSoniox(message.code, message.message, { secret: this.#options.apiKey, what }));
        return;
      }
      case 'stream':
        this.#onStreamMessage(message);
        return;
      default: {
        const exhaustive: never = message;
        throw new Error(`unknown message ${JSON.stringify(exhaustive)}`);
      }
    }
  }

  #onStreamMessage(message: Extract<ParsedTtsStreamMessage, { kind: 'stream' }>): void {
    // One stream per connection: anything else (another id, an id-less notice) is not ours.
    if (message.streamId !== this.#config.stream_id) return;
    if (message.audio !== undefined && message.audio.length > 0) {
      const samples = this.#assembler.push(message.audio);
      if (samples.length > 0) this.#queue.push(samples);
      this.#audioStarted = true;
      this.#textSinceAudio = false;
    }
    if (message.audioEnd) this.#audioEnded = true;
    if (message.terminated) {
      this.#streamOver = true;
      if (!this.#audioEnded) {
        this.#fail(new ProviderError(PROVIDER, 'server', 'Soniox ended the TTS stream before its audio was complete'));
        return;
      }
      if (this.#assembler.pendingBytes > 0) this.#logger.debug('Soniox TTS stream ended on an odd byte (dropped)');
      void this.#finish({ kind: 'completed' });
      return;
    }
    this.#clearResponse();
    this.#responseTimer = this.#armResponse();
  }

  // ---- timers ----------------------------------------------------------------------------------------------------

  /** Soniox owes audio while text it has not answered is out, and until `terminated` once the text has ended. */
  #armResponse(): NodeJS.Timeout | undefined {
    if (!this.#textSinceAudio && !(this.#textEnded && this.#open)) return undefined;
    const ms = this.#options.timeoutMs;
    return setTimeout(() => {
      this.#responseTimer = undefined;
      this.#fail(
        new ProviderError(PROVIDER, 'timeout', this.#audioStarted ? `Soniox TTS sent nothing for ${ms} ms` : `Soniox TTS sent no audio within ${ms} ms of the text`),
      );
    }, ms);
  }

  #clearResponse(): void {
    if (this.#responseTimer !== undefined) clearTimeout(this.#responseTimer);
    this.#responseTimer = undefined;
  }

  #startKeepalive(socket: WebSocket): void {
    // Ticks at half the interval, so silence between two messages never exceeds the interval.
    const half = Math.max(100, Math.floor(this.#options.keepaliveIntervalMs / 2));
    this.#keepaliveTimer = setInterval(() => {
      if (socket.readyState === WebSocket.OPEN && Date.now() - this.#lastSentAt >= half) this.#send(socket, { keep_alive: true });
    }, half);
  }

  #stopTimers(): void {
    this.#clearResponse();
    if (this.#keepaliveTimer !== undefined) clearInterval(this.#keepaliveTimer);
    this.#keepaliveTimer = undefined;
  }
}

function connectionError(error: Error, secret: string): ProviderError {
  const mapped = toProviderError(PROVIDER, error);
  if (mapped.category !== 'unknown') return mapped;
  return new ProviderError(PROVIDER, 'connectivity', `Soniox TTS connection failed: ${sanitizeMessage(error.message, secret)}`, { cause: error });
}

function rawText(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  if (data instanceof ArrayBuffer) return Buffer.from(data).toString('utf8');
  return data.toString('utf8');
}
