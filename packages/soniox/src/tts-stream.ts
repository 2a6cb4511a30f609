/**
 * `SonioxTtsStreamPool`: the Soniox TTS adapter's `streamText`, over Soniox's real-time TTS WebSocket
 * (`/tts-websocket`): text is pushed into a stream as it is produced, audio comes back as it is synthesized.
 *
 * Streams share connections. Soniox allows few connections per account (3 by default) and 5 streams per connection,
 * multiplexed by `stream_id`; one connection per reply would run out of connections at the 4th concurrent reply. The
 * pool belongs to one adapter (one per gateway process, shared by its calls):
 *
 * - A new stream goes on the oldest connection (open or still connecting) with a free slot (fewer than
 *   `maxStreamsPerConnection` streams), else on a new connection. With `maxConnections` set and every connection full,
 *   it fails at once with a retryable `rate_limit` error; by default there is no cap, and a connection Soniox refuses
 *   (the account's connection limit: HTTP 429 on the upgrade, or a connection-level 429) fails its streams with a
 *   retryable `rate_limit` error, so the cascade retries them (a stream that produced no audio yet is retried).
 * - A stream holds its slot until Soniox ends it (`terminated`), the connection ends, or, after a `cancel`, at most
 *   `min(timeoutMs, 2 s)`: Soniox counts a stream as active until it has terminated it. Stream ids are unique per
 *   connection (a random tag per connection and a counter), so a late frame for a released stream is never taken for
 *   a newer one.
 * - Per stream: its audio queue, `Pcm16Assembler`, response timer and cancel; calls never share audio or timers.
 *   Server messages are routed by `stream_id`; one for an unknown id is ignored (debug log).
 * - Per connection: header auth, keepalive (`{"keep_alive":true}` whenever nothing was sent for half of
 *   `keepaliveIntervalMs`), a close after `idleCloseMs` without streams, and its socket unref'd while it carries no
 *   stream (an idle connection never keeps the process alive). A connection-level error (no `stream_id`), a refused
 *   upgrade, a close or a drop fails every stream on that connection and takes it out of the pool; a frame that names
 *   none of its streams (not JSON, binary, no `stream_id`) is ignored with a warning at most once a minute per
 *   connection; a bad frame that names a stream costs that stream a `protocol` error.
 *
 * Transport: a plain `ws` client that sends `Authorization: Bearer <key>` on the upgrade and never puts the key in a
 * message, like the ASR adapter; the SDK's `client.realtime.tts` sends `api_key` in every stream config instead.
 */
import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { AsyncQueue, connectLiveSocket, Pcm16Assembler, ProviderError, toProviderError } from '@stsgate/core';
import type { CallContext, LiveSocket, SampleRate, TtsStreamRequest, TtsTextStream } from '@stsgate/core';
import { PROVIDER, providerErrorFromSoniox, sanitizeMessage, sonioxClassifiers } from './errors.js';
import { buildTtsStreamConfig, parseTtsStreamMessage, splitTtsText } from './wire.js';
import type { ParsedTtsStreamMessage, TtsSettings, TtsStreamClientMessage, TtsStreamConfigMessage } from './wire.js';

/** Soniox's documented limit of concurrent streams on one connection. */
export const SONIOX_TTS_MAX_STREAMS_PER_CONNECTION = 5;
/** A connection without streams for this long is closed (long enough for the gap between two replies of a call). */
export const DEFAULT_TTS_IDLE_CLOSE_MS = 15_000;
/** After a `cancel`, a slot is held at most this long (or `timeoutMs`, if shorter) waiting for Soniox's `terminated`. */
const CANCEL_WAIT_MS = 2000;
/** An unattributable frame is logged (warn) at most this often per connection. */
const MALFORMED_WARN_INTERVAL_MS = 60_000;

export interface SonioxTtsStreamOptions {
  readonly apiKey: string;
  /** `wss://tts-rt.soniox.com/tts-websocket`, or `ws://` for local servers. */
  readonly url: string;
  readonly settings: TtsSettings;
  readonly outputSampleRate: SampleRate;
  /** The upgrade, the first audio after text went out, and any silence while audio is owed: a `timeout` error. */
  readonly timeoutMs: number;
  /** While nothing else is sent on a connection, a `keep_alive` goes out at least this often. */
  readonly keepaliveIntervalMs: number;
  /** Streams one connection carries at once (1..5). */
  readonly maxStreamsPerConnection: number;
  /** Connections open at once (`Infinity`: no cap). */
  readonly maxConnections: number;
  /** A connection without streams for this long is closed. */
  readonly idleCloseMs: number;
  /** Connection-level events; default: the logger of the call whose stream opened the connection. */
  readonly logger?: Logger | undefined;
}

/** The streaming TTS connections of one adapter. */
export class SonioxTtsStreamPool {
  readonly #options: SonioxTtsStreamOptions;
  /** Connections that take streams, in the order they were opened (a Set keeps insertion order). */
  readonly #connections = new Set<PoolConnection>();
  /** Every connection whose socket is not closed yet (also those that left the pool and are closing). */
  readonly #sockets = new Set<PoolConnection>();
  #closed = false;

  constructor(options: SonioxTtsStreamOptions) {
    this.#options = options;
  }

  /** `streamText`: a stream on a connection with a free slot. */
  open(request: TtsStreamRequest, call: CallContext): TtsTextStream {
    if (call.signal.aborted) return SonioxTtsTextStream.ended(this.#options, call, { kind: 'cancelled' });
    if (this.#closed) {
      const error = new ProviderError(PROVIDER, 'closed', 'the Soniox TTS adapter is closed', { retryable: false });
      return SonioxTtsTextStream.ended(this.#options, call, { kind: 'failed', error });
    }
    const connection = this.#pick(call);
    if (connection === undefined) {
      const { maxConnections, maxStreamsPerConnection } = this.#options;
      const error = new ProviderError(
        PROVIDER,
        'rate_limit',
        `all ${String(maxConnections)} Soniox TTS connections are full (${String(maxStreamsPerConnection)} streams each)`,
      );
      return SonioxTtsTextStream.ended(this.#options, call, { kind: 'failed', error });
    }
    return connection.open(request, call);
  }

  /**
   * Closes every connection: streams still running fail with a `closed` error. Later streams fail at once. Resolves
   * once every socket is closed.
   */
  async close(): Promise<void> {
    this.#closed = true;
    const error = (): ProviderError => new ProviderError(PROVIDER, 'closed', 'the Soniox TTS adapter was closed', { retryable: false });
    await Promise.all([...this.#sockets].map((connection) => connection.shutdown(error)));
  }

  #pick(call: CallContext): PoolConnection | undefined {
    for (const connection of this.#connections) if (connection.hasRoom) return connection;
    if (this.#connections.size >= this.#options.maxConnections) return undefined;
    const logger = (this.#options.logger ?? call.logger).child({ provider: PROVIDER, kind: 'tts' });
    const connection: PoolConnection = new PoolConnection(this.#options, logger, {
      gone: () => this.#connections.delete(connection),
      closed: () => this.#sockets.delete(connection),
    });
    this.#connections.add(connection);
    this.#sockets.add(connection);
    return connection;
  }
}

type TextMessage = Extract<TtsStreamClientMessage, { text: string }>;
type StreamMessage = Extract<ParsedTtsStreamMessage, { kind: 'stream' }>;
type ErrorMessage = Extract<ParsedTtsStreamMessage, { kind: 'error' }>;

type Outcome = { readonly kind: 'completed' } | { readonly kind: 'cancelled' } | { readonly kind: 'failed'; readonly error: ProviderError };

// ---- connection ----------------------------------------------------------------------------------------------------

/** One WebSocket and the streams that hold a slot on it. */
class PoolConnection {
  /** Prefix of its stream ids, and its name in logs. */
  readonly tag = randomUUID().slice(0, 8);
  readonly #options: SonioxTtsStreamOptions;
  readonly #logger: Logger;
  /** `gone`: it takes no more streams; `closed`: its socket is closed. */
  readonly #events: { readonly gone: () => void; readonly closed: () => void };
  /** Aborted once the connection is gone: stops a connection attempt still under way. */
  readonly #lifetime = new AbortController();
  /** Settles with the open socket, or undefined when it could not open. */
  readonly #connecting: Promise<LiveSocket | undefined>;
  #live: LiveSocket | undefined;
  /** Streams holding a slot, in the order they came (their configs go out in that order). */
  readonly #slots = new Map<string, SonioxTtsTextStream>();
  #nextStream = 1;
  #state: 'connecting' | 'open' | 'gone' = 'connecting';
  /** The upgrade was answered with an HTTP status: the connection will fail, no stream may join it. */
  #refused = false;
  #socket: Socket | undefined;
  #idleTimer: NodeJS.Timeout | undefined;
  #malformedWarnedAt = Number.NEGATIVE_INFINITY;
  #malformedSuppressed = 0;
  #closing: Promise<void> | undefined;

  constructor(options: SonioxTtsStreamOptions, logger: Logger, events: { readonly gone: () => void; readonly closed: () => void }) {
    this.#options = options;
    this.#logger = logger.child({ connection: this.tag });
    this.#events = events;
    const secret = options.apiKey;
    this.#connecting = connectLiveSocket({
      provider: PROVIDER,
      label: 'Soniox TTS',
      secrets: [secret],
      url: options.url,
      headers: { Authorization: `Bearer ${secret}` },
      timeoutMs: options.timeoutMs,
      signal: this.#lifetime.signal,
      classify: sonioxClassifiers(secret, 'TTS'),
      onResponse: (response) => {
        if (response.statusCode !== 101) {
          this.#refused = true;
          return;
        }
        this.#socket = response.socket;
        this.#updateRef();
      },
      logger: this.#logger,
      // The socket keeps the process alive while it carries streams; the keepalive timer never does.
      keepalive: { kind: 'message', intervalMs: options.keepaliveIntervalMs, message: JSON.stringify({ keep_alive: true } satisfies TtsStreamClientMessage), unref: true },
      onText: (text) => this.#onMessage(text),
      onBinary: () => this.#unattributable('a binary frame'),
      onDrop: (error) => this.#lose(() => error, 'closed'),
    }).then(
      (live) => {
        void live.closed.then(() => this.#events.closed());
        this.#onOpen(live);
        return live;
      },
      (error: unknown) => {
        this.#events.closed();
        this.#lose(() => toProviderError(PROVIDER, error), this.#refused ? 'refused' : 'failed');
        return undefined;
      },
    );
  }

  get hasRoom(): boolean {
    if (this.#state === 'gone' || this.#refused || (this.#live !== undefined && !this.#live.isOpen)) return false;
    return this.#slots.size < this.#options.maxStreamsPerConnection;
  }

  get alive(): boolean {
    return this.#state !== 'gone';
  }

  /** A new stream in a free slot (the caller checked `hasRoom`). */
  open(request: TtsStreamRequest, call: CallContext): SonioxTtsTextStream {
    const streamId = `${this.tag}-${String(this.#nextStream++)}`;
    const stream = new SonioxTtsTextStream(this.#options, request, call, this, streamId);
    this.#slots.set(streamId, stream);
    this.#clearIdle();
    this.#updateRef();
    if (this.#state === 'open') stream.start();
    return stream;
  }

  /** Sends on the open socket; false when it is not (or no longer) open. */
  send(message: TtsStreamConfigMessage | TtsStreamClientMessage): boolean {
    if (this.#state !== 'open' || this.#live === undefined) return false;
    return this.#live.send(JSON.stringify(message));
  }

  /** The stream's slot is free. */
  release(stream: SonioxTtsTextStream): void {
    if (this.#slots.get(stream.streamId) !== stream) return;
    this.#slots.delete(stream.streamId);
    if (this.#state === 'gone') return;
    this.#updateRef();
    if (this.#slots.size === 0) this.#armIdle();
  }

  /** Fails every stream with `error()` and closes the socket. */
  shutdown(error: () => ProviderError): Promise<void> {
    this.#lose(error, 'adapter closed');
    return this.#closeSocket('adapter closed');
  }

  #onOpen(live: LiveSocket): void {
    if (this.#state !== 'connecting') {
      void live.close('tts gone');
      return;
    }
    this.#live = live;
    this.#state = 'open';
    live.start();
    this.#logger.debug({ streams: this.#slots.size }, 'Soniox TTS connection open');
    // Configs, then each stream's queued text, in the order the streams came.
    for (const stream of [...this.#slots.values()]) stream.start();
  }

  /** The connection is over: out of the pool, timers stopped, every stream holding a slot told (each its own error). */
  #lose(error: () => ProviderError, why: string): void {
    if (this.#state === 'gone') return;
    this.#state = 'gone';
    this.#events.gone();
    this.#stopTimers();
    const streams = [...this.#slots.values()];
    this.#slots.clear();
    if (streams.length > 0) this.#logger.debug({ streams: streams.length, why }, 'Soniox TTS connection ended with streams on it');
    for (const stream of streams) stream.onConnectionLost(error);
    void this.#closeSocket(why);
  }

  #closeSocket(reason: string): Promise<void> {
    this.#closing ??= (async () => {
      this.#lifetime.abort();
      const live = await this.#connecting;
      await live?.close(`tts ${reason}`);
    })();
    return this.#closing;
  }

  // ---- messages --------------------------------------------------------------------------------------------------

  #onMessage(text: string): void {
    if (this.#state === 'gone') return;
    const message = parseTtsStreamMessage(text);
    switch (message.kind) {
      case 'invalid': {
        // A frame we cannot read costs the stream it names an error, and nobody anything if it names none.
        const streamId = streamIdOf(text);
        const stream = streamId === undefined ? undefined : this.#slots.get(streamId);
        if (stream === undefined) this.#unattributable(message.reason);
        else stream.onMalformed(message.reason);
        return;
      }
      case 'error': {
        if (message.streamId === undefined) {
          // Connection-level: Soniox closes the socket next; every stream on it fails.
          const secret = this.#options.apiKey;
          this.#lose(() => providerErrorFromSoniox(message.code, message.message, { secret, what: 'TTS connection failed' }), `error ${String(message.code)}`);
          return;
        }
        this.#route(message.streamId)?.onError(message);
        return;
      }
      case 'stream':
        if (message.streamId === undefined) {
          this.#logger.debug('Soniox TTS message without stream_id ignored');
          return;
        }
        this.#route(message.streamId)?.onStreamMessage(message);
        return;
      default: {
        const exhaustive: never = message;
        throw new Error(`unknown message ${JSON.stringify(exhaustive)}`);
      }
    }
  }

  #route(streamId: string): SonioxTtsTextStream | undefined {
    const stream = this.#slots.get(streamId);
    if (stream === undefined) this.#logger.debug({ streamId: streamId.slice(0, 100) }, 'Soniox TTS message for an unknown stream ignored');
    return stream;
  }

  /** Logged at most once a minute per connection (with how many were not), never fatal. */
  #unattributable(reason: string): void {
    const now = Date.now();
    if (now - this.#malformedWarnedAt < MALFORMED_WARN_INTERVAL_MS) {
      this.#malformedSuppressed++;
      return;
    }
    this.#logger.warn(
      { reason: sanitizeMessage(reason.slice(0, 200), this.#options.apiKey), suppressed: this.#malformedSuppressed, streams: this.#slots.size },
      'Soniox TTS sent a frame that names no stream (ignored)',
    );
    this.#malformedWarnedAt = now;
    this.#malformedSuppressed = 0;
  }

  // ---- timers and process liveness ----------------------------------------------------------------------------

  #armIdle(): void {
    this.#clearIdle();
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = undefined;
      if (this.#slots.size > 0 || this.#state === 'gone') return;
      this.#logger.debug({ idleMs: this.#options.idleCloseMs }, 'Soniox TTS connection idle: closing');
      this.#state = 'gone';
      this.#events.gone();
      this.#stopTimers();
      void this.#closeSocket('idle');
    }, this.#options.idleCloseMs);
    this.#idleTimer.unref();
  }

  #clearIdle(): void {
    if (this.#idleTimer !== undefined) clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
  }

  #stopTimers(): void {
    this.#clearIdle();
    this.#live?.stopKeepalive();
  }

  /** A connection without streams must not keep the process alive. */
  #updateRef(): void {
    if (this.#socket === undefined || this.#state === 'gone') return;
    if (this.#slots.size > 0) this.#socket.ref();
    else this.#socket.unref();
  }
}

// ---- stream --------------------------------------------------------------------------------------------------------

class SonioxTtsTextStream implements TtsTextStream {
  readonly outputSampleRate: SampleRate;
  readonly audio: AsyncIterable<Int16Array>;
  readonly streamId: string;
  readonly #options: SonioxTtsStreamOptions;
  readonly #connection: PoolConnection | undefined;
  readonly #call: CallContext;
  readonly #logger: Logger;
  readonly #config: TtsStreamConfigMessage;
  readonly #queue = new AsyncQueue<Int16Array>();
  readonly #assembler = new Pcm16Assembler();
  /** Text pushed before the config went out, sent in order right after it. */
  readonly #pending: TextMessage[] = [];
  #configSent = false;
  #hasText = false;
  #textEnded = false;
  #audioStarted = false;
  #audioEnded = false;
  /** Soniox has ended the stream itself (`terminated`, or an error for it): nothing to cancel. */
  #streamOver = false;
  /** Soniox sent `terminated`: the slot is free on its side. */
  #terminated = false;
  /** Text went out and no audio has come since: Soniox owes audio. */
  #textSinceAudio = false;
  #responseTimer: NodeJS.Timeout | undefined;
  /** Waiting for `terminated` after the stream ended here. */
  #releaseTimer: NodeJS.Timeout | undefined;
  #released = false;
  #onReleased: (() => void) | undefined;
  #outcome: Outcome | undefined;
  #closing: Promise<void> | undefined;
  readonly #onCallAbort = (): void => void this.close();

  /** A stream over before it started (the call already ended, the adapter is closed, every connection full). */
  static ended(options: SonioxTtsStreamOptions, call: CallContext, outcome: Outcome): SonioxTtsTextStream {
    const stream = new SonioxTtsTextStream(options, {}, call, undefined, '');
    void stream.#finish(outcome);
    return stream;
  }

  constructor(options: SonioxTtsStreamOptions, request: TtsStreamRequest, call: CallContext, connection: PoolConnection | undefined, streamId: string) {
    this.#options = options;
    this.#connection = connection;
    this.#call = call;
    this.streamId = streamId;
    this.outputSampleRate = options.outputSampleRate;
    this.#logger = call.logger.child({ provider: PROVIDER, kind: 'tts' });
    this.#config = buildTtsStreamConfig(options.settings, streamId, { voice: request.voice, language: request.language, model: request.model });
    this.audio = this.#iterate();
    if (connection !== undefined) call.signal.addEventListener('abort', this.#onCallAbort, { once: true });
  }

  pushText(text: string): void {
    if (this.#outcome !== undefined || this.#textEnded || text === '') return;
    if (text.trim() !== '') this.#hasText = true;
    // One `text` message holds at most Soniox's limit; a stream takes any number of them.
    for (const piece of splitTtsText(text)) this.#deliver({ text: piece, text_end: false, stream_id: this.streamId });
  }

  endText(): void {
    if (this.#outcome !== undefined || this.#textEnded) return;
    this.#textEnded = true;
    if (!this.#hasText) {
      // Nothing to say (a reply without text): Soniox would refuse an empty stream.
      void this.#finish({ kind: 'cancelled' });
      return;
    }
    this.#deliver({ text: '', text_end: true, stream_id: this.streamId });
  }

  /** Cancels upstream (this stream only); resolves once its slot is free (at most about 2 s). */
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

  // ---- from the connection ---------------------------------------------------------------------------------------

  /** The connection is open: config first, then the text pushed meanwhile, in order. */
  start(): void {
    if (this.#outcome !== undefined || this.#configSent) return;
    if (!this.#send(this.#config)) return;
    this.#configSent = true;
    for (const message of this.#pending.splice(0)) this.#sendText(message);
    this.#logger.debug(
      { streamId: this.streamId, model: this.#config.model, voice: this.#config.voice, language: this.#config.language },
      'Soniox TTS stream open',
    );
  }

  onStreamMessage(message: StreamMessage): void {
    if (message.terminated) {
      this.#terminated = true;
      this.#streamOver = true;
    }
    if (this.#outcome !== undefined) {
      // Ended here already: only the slot is left to free.
      if (this.#terminated) this.#release();
      return;
    }
    if (message.audio !== undefined && message.audio.length > 0) {
      const samples = this.#assembler.push(message.audio);
      if (samples.length > 0) this.#queue.push(samples);
      this.#audioStarted = true;
      this.#textSinceAudio = false;
    }
    if (message.audioEnd) this.#audioEnded = true;
    if (message.terminated) {
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

  /** A per-stream error: `terminated` follows, the connection and its other streams go on. */
  onError(message: ErrorMessage): void {
    this.#streamOver = true;
    if (this.#outcome !== undefined) return;
    this.#fail(providerErrorFromSoniox(message.code, message.message, { secret: this.#options.apiKey, what: 'TTS stream failed' }));
  }

  /** A frame that names this stream but cannot be read: this stream fails, nothing else. */
  onMalformed(reason: string): void {
    if (this.#outcome !== undefined) return;
    this.#fail(new ProviderError(PROVIDER, 'protocol', `unexpected Soniox TTS message (${reason.slice(0, 200)})`));
  }

  /** The connection is gone (and this stream with it). */
  onConnectionLost(error: () => ProviderError): void {
    this.#streamOver = true;
    if (this.#outcome === undefined) this.#fail(error());
    this.#release();
  }

  // ---- ending ----------------------------------------------------------------------------------------------------

  /** Ends the stream once: cancels upstream unless Soniox ended it, ends or fails `audio`, then frees the slot. */
  #finish(outcome: Outcome): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    this.#outcome = outcome;
    this.#closing = new Promise<void>((resolve) => {
      this.#onReleased = resolve;
    });
    this.#stopTimers();
    this.#call.signal.removeEventListener('abort', this.#onCallAbort);
    this.#pending.length = 0;
    const cancelled = outcome.kind !== 'completed' && this.#configSent && !this.#streamOver && this.#send({ stream_id: this.streamId, cancel: true });
    switch (outcome.kind) {
      case 'completed':
      case 'cancelled':
        this.#queue.end();
        break;
      case 'failed':
        this.#logger.debug({ streamId: this.streamId, category: outcome.error.category, err: outcome.error.message }, 'Soniox TTS stream failed');
        this.#queue.fail(outcome.error);
        break;
      default: {
        const exhaustive: never = outcome;
        throw new Error(`unknown outcome ${JSON.stringify(exhaustive)}`);
      }
    }
    // Soniox counts the stream until it has terminated it: the slot waits for that (bounded).
    const owed = this.#configSent && !this.#terminated && this.#connection?.alive === true && (cancelled || this.#streamOver);
    if (!owed) {
      this.#release();
    } else {
      this.#releaseTimer = setTimeout(() => {
        this.#releaseTimer = undefined;
        this.#logger.debug({ streamId: this.streamId }, 'Soniox TTS stream not terminated in time: slot freed');
        this.#release();
      }, Math.min(this.#options.timeoutMs, CANCEL_WAIT_MS));
    }
    return this.#closing;
  }

  #fail(error: ProviderError): void {
    void this.#finish({ kind: 'failed', error });
  }

  #release(): void {
    if (this.#released) return;
    if (this.#outcome === undefined) return;
    this.#released = true;
    if (this.#releaseTimer !== undefined) clearTimeout(this.#releaseTimer);
    this.#releaseTimer = undefined;
    this.#connection?.release(this);
    this.#onReleased?.();
  }

  // ---- sending ---------------------------------------------------------------------------------------------------

  #deliver(message: TextMessage): void {
    if (this.#configSent) this.#sendText(message);
    else this.#pending.push(message);
  }

  #sendText(message: TextMessage): void {
    if (!this.#send(message)) return;
    // Blanks alone may never be answered with audio.
    if (message.text.trim() !== '') this.#textSinceAudio = true;
    this.#responseTimer ??= this.#armResponse();
  }

  #send(message: TtsStreamConfigMessage | TtsStreamClientMessage): boolean {
    return this.#connection?.send(message) ?? false;
  }

  // ---- timers ----------------------------------------------------------------------------------------------------

  /** Soniox owes audio while text it has not answered is out, and until `terminated` once the text has ended. */
  #armResponse(): NodeJS.Timeout | undefined {
    if (!this.#textSinceAudio && !(this.#textEnded && this.#configSent)) return undefined;
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

  #stopTimers(): void {
    this.#clearResponse();
  }
}

/** The `stream_id` of a frame that failed validation, if it is a JSON object naming one. */
function streamIdOf(text: string): string | undefined {
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
    const id = (parsed as Record<string, unknown>).stream_id;
    return typeof id === 'string' ? id : undefined;
  } catch {
    return undefined;
  }
}

