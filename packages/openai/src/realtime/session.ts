/**
 * One call on OpenAI Realtime (or a compatible provider, per its profile): the host's StsSession. Thin IO around
 * `RealtimeEventMapper` over core's `StreamingSession`, which owns the connection (replaced within the reconnect
 * budget when it drops), the caller audio held meanwhile and `close()`. This class batches caller audio into appends
 * and, on a new connection, restores the conversation before the held audio goes out. Without server turn detection,
 * the gateway's VAD (`VadTurnTaker`) decides what caller audio is sent and when a turn ends.
 */
import type { Logger } from 'pino';
import { ProviderError, StreamingSession, samplesToMs, toProviderError } from '@stsgate/core';
import type { LinkAttempt, LiveSocket, ReconnectPolicyOptions, SampleRate, StsCallContext, StsEvent, StsSession, VadAdapter, VadStream } from '@stsgate/core';
import type { AudioCodec } from './audio-codec.js';
import { openRealtimeConnection } from './connection.js';
import type { TlsOptions } from './connection.js';
import { RealtimeEventMapper } from './map-events.js';
import type { MapperSink, ResponseRequest } from './map-events.js';
import type { RealtimeProfile } from './profile.js';
import { VadTurnTaker } from './vad-turns.js';
import { audioAppendText } from './wire.js';
import type { ClientEvent, RealtimeSessionUpdate, VadTuning } from './wire.js';

export interface RealtimeSessionSettings {
  readonly profile: RealtimeProfile;
  readonly url: string;
  readonly apiKey: string;
  readonly codec: AudioCodec;
  readonly sessionUpdate: RealtimeSessionUpdate;
  /** The agent's first response, on the first connection only; null: the caller speaks first. */
  readonly greeting: ResponseRequest | null;
  /** The gateway's VAD takes the turns (the server detects none). */
  readonly turnTaking?: { readonly vad: VadAdapter; readonly tuning: Required<VadTuning> };
  /** The server VAD's prefix padding (in its `audio_start_ms`), to locate the caller's speech onset. Default 0. */
  readonly speechPaddingMs?: number;
  /** Text of the user message a keypad digit becomes; `{{digit}}` is replaced. */
  readonly dtmfMessage: string;
  /**
   * Caller audio is sent in appends of this duration (a partial batch waits at most this long); 0: as it arrives (what
   * arrives in one event-loop turn, one append).
   */
  readonly inputBatchMs: number;
  /** Caller audio kept while reconnecting, newest wins. */
  readonly maxGapBufferMs: number;
  readonly reconnectPolicy: ReconnectPolicyOptions;
  readonly handshakeTimeoutMs: number;
  readonly pingIntervalMs: number;
  readonly pongTimeoutMs: number;
  readonly tls?: TlsOptions;
}

/** The end of a caller turn (the gateway's VAD), held in its place among the caller audio while reconnecting. */
type Commit = 'commit';

const DTMF_DIGIT = /^[0-9A-D*#]$/i;
/** The server refuses to commit less (`input_audio_buffer_commit_empty`). */
const MIN_COMMIT_MS = 100;

export class OpenAiRealtimeSession implements StsSession {
  readonly inputSampleRate: SampleRate;
  readonly outputSampleRate: SampleRate;
  readonly events: AsyncIterable<StsEvent>;

  private readonly logger: Logger;
  private readonly label: string;
  private readonly mapper: RealtimeEventMapper;
  private readonly session: StreamingSession<StsEvent, LiveSocket, Commit>;
  /** Caller audio waiting to fill one append (with `inputBatchMs` 0: this event-loop turn's, grown as needed). */
  private batch: Int16Array;
  private batchLength = 0;
  private batchTimer: NodeJS.Timeout | undefined;
  private turns: VadTurnTaker | undefined;
  /** The VAD stream closing (with the session). */
  private turnsClosed: Promise<void> | undefined;
  /** Caller audio appended since the last commit, on this connection. */
  private uncommittedMs = 0;
  /** Caller audio appended on this connection: the timeline of the server's `audio_start_ms`. */
  private linkInputMs = 0;

  private constructor(
    call: StsCallContext,
    private readonly settings: RealtimeSessionSettings,
  ) {
    const provider = settings.profile.id;
    this.label = settings.profile.label;
    this.logger = call.logger.child({ provider });
    this.inputSampleRate = settings.codec.sampleRate;
    this.outputSampleRate = settings.codec.sampleRate;
    // With no batching, room for one 20 ms frame to start with.
    this.batch = new Int16Array(Math.max(1, Math.round(((settings.inputBatchMs || 20) * settings.codec.sampleRate) / 1000)));
    const sink: MapperSink = {
      emit: (event) => this.session.emit([event]),
      // While reconnecting there is no connection: the mapper has already recorded what must be restored.
      send: (event) => this.send(event),
      log: (level, data, message) => this.logger[level](data, message),
      inputAudioMs: () => this.linkInputMs + samplesToMs(this.batchLength, this.inputSampleRate),
    };
    this.mapper = new RealtimeEventMapper(sink, {
      codec: settings.codec,
      apiKey: settings.apiKey,
      profile: settings.profile,
      ...(settings.speechPaddingMs === undefined ? {} : { speechPaddingMs: settings.speechPaddingMs }),
    });
    this.session = new StreamingSession<StsEvent, LiveSocket, Commit>({
      provider,
      label: this.label,
      call,
      logger: this.logger,
      sampleRate: settings.codec.sampleRate,
      reconnect: settings.reconnectPolicy,
      maxQueuedMs: settings.maxGapBufferMs,
      connect: (attempt) => this.connect(attempt),
      // A new connection after a drop gets the conversation back before the caller audio held meanwhile.
      onLinkReady: (_link, { reconnected }) => {
        this.linkInputMs = 0;
        if (!reconnected) return;
        const restored = this.mapper.restore();
        this.logger.debug({ restoredItems: restored }, `${this.label} conversation restored`);
      },
      sendAudio: (link, samples) => this.append(link, samples),
      sendControl: () => this.commitTurn(),
      onDrop: () => {
        // The batch joins the held audio; the new connection starts with an empty input buffer.
        this.flushBatch();
        this.uncommittedMs = 0;
        this.mapper.connectionLost();
      },
      reconnectFailed: (error) => {
        this.logger.error({ category: error.category, reason: error.message }, `could not restore the ${this.label} session`);
        return new ProviderError(provider, error.category, `lost the ${this.label} connection and could not restore it: ${error.message}`, {
          retryable: false,
          cause: error,
        });
      },
      beforeClose: () => this.release(),
    });
    this.events = this.session.events;
  }

  /** Connects (retrying what the budget allows) and configures the session; rejects with a ProviderError. */
  static async open(call: StsCallContext, settings: RealtimeSessionSettings): Promise<OpenAiRealtimeSession> {
    const session = new OpenAiRealtimeSession(call, settings);
    try {
      await session.start();
    } catch (error) {
      await session.close();
      throw toProviderError(settings.profile.id, error);
    }
    return session;
  }

  private async start(): Promise<void> {
    const [connected, vadOpened] = await Promise.allSettled([this.session.ready, this.openVad()]);
    const stream = vadOpened.status === 'fulfilled' ? vadOpened.value : undefined;
    if (connected.status === 'rejected' || vadOpened.status === 'rejected' || this.session.closed) {
      await stream?.close();
      if (connected.status === 'rejected') throw connected.reason;
      if (vadOpened.status === 'rejected') throw vadOpened.reason;
      throw new ProviderError(this.settings.profile.id, 'closed', 'the session was closed while connecting', { retryable: false });
    }
    if (stream !== undefined) this.startTurnTaking(stream);
    this.logger.debug({ format: this.settings.codec.format, turnsBy: stream === undefined ? 'server' : 'gateway VAD' }, `${this.label} session configured`);
    // The greeting: exactly one response.create, on the first connection only (never on a reconnect).
    if (this.settings.greeting !== null) this.mapper.requestResponse('greeting', this.settings.greeting);
  }

  /** The VAD stream for turn-taking, at the session rate when the VAD takes it (else 8 kHz: telephony audio). */
  private async openVad(): Promise<VadStream | undefined> {
    const turnTaking = this.settings.turnTaking;
    if (turnTaking === undefined) return undefined;
    const { vad, tuning } = turnTaking;
    const rates = vad.capabilities.inputSampleRates;
    const rate = rates.includes(this.inputSampleRate) ? this.inputSampleRate : rates.includes(8000) ? 8000 : rates[0];
    if (rate === undefined) throw new ProviderError(vad.id, 'invalid_request', `VAD ${vad.id} accepts no sample rate`, { retryable: false });
    try {
      return await vad.open(rate, { threshold: tuning.threshold, minSilenceMs: tuning.silenceDurationMs, speechPadMs: tuning.prefixPaddingMs });
    } catch (error) {
      const failure = toProviderError(vad.id, error);
      throw new ProviderError(this.settings.profile.id, failure.category, `could not open the VAD (${vad.id}) that takes the turns: ${failure.message}`, {
        retryable: false,
        cause: failure,
      });
    }
  }

  private startTurnTaking(stream: VadStream): void {
    const vadId = this.settings.turnTaking?.vad.id ?? 'vad';
    this.turns = new VadTurnTaker(stream, this.inputSampleRate, this.settings.turnTaking?.tuning.prefixPaddingMs ?? 0, vadId, {
      forward: (samples) => this.toProvider(samples),
      speechStarted: (onsetAgoMs) => {
        this.session.emit([{ type: 'speech_started', onsetAgoMs }]);
        this.mapper.callerStarted();
      },
      speechEnded: () => {
        this.flushBatch();
        this.session.emit([{ type: 'speech_stopped' }]);
        // In its place among the audio: held with it while reconnecting, committed once that audio is sent.
        this.session.pushControl('commit');
      },
      failed: (error) => {
        this.logger.error({ err: error }, 'the VAD failed: the caller can no longer be heard');
        this.session.fail(
          new ProviderError(error.provider, error.category, `the VAD (${vadId}) that takes the caller's turns failed: ${error.message}`, {
            retryable: false,
            cause: error,
          }),
        );
      },
    });
  }

  /** A caller turn ended (in order with its audio): commit what was appended and ask for the answer. */
  private commitTurn(): void {
    const commit = this.uncommittedMs >= MIN_COMMIT_MS;
    if (commit) this.uncommittedMs = 0;
    else this.logger.debug({ audioMs: Math.round(this.uncommittedMs) }, 'caller turn too short to commit');
    this.mapper.callerStopped(commit);
  }

  /** One connection attempt: socket, handshake, keepalive (core); its events go to the mapper once it is current. */
  private connect(attempt: LinkAttempt): Promise<LiveSocket> {
    return openRealtimeConnection({
      profile: this.settings.profile,
      url: this.settings.url,
      apiKey: this.settings.apiKey,
      sessionUpdate: this.settings.sessionUpdate,
      handshakeTimeoutMs: this.settings.handshakeTimeoutMs,
      pingIntervalMs: this.settings.pingIntervalMs,
      pongTimeoutMs: this.settings.pongTimeoutMs,
      ...(this.settings.tls === undefined ? {} : { tls: this.settings.tls }),
      signal: attempt.signal,
      logger: this.logger,
      onMessage: (message) => {
        if (!this.session.closed) this.mapper.handle(message);
      },
      onDrop: attempt.onDrop,
    });
  }

  // ---- host -> provider ----------------------------------------------------------------------------

  sendAudio(samples: Int16Array): void {
    if (samples.length === 0 || this.session.closed) return;
    if (this.turns !== undefined) this.turns.push(samples);
    else this.toProvider(samples);
  }

  /** Fills appends of `inputBatchMs`; a partial one goes out after at most that long. */
  private toProvider(samples: Int16Array): void {
    if (this.session.closed) return;
    if (this.settings.inputBatchMs === 0) {
      // As it arrives, without waiting: at the end of this event-loop turn. Frames that arrive in one turn (read together
      // from AVR Core's socket when the gateway was busy) leave as one append: fewer messages exactly when it is behind.
      if (this.batchLength === 0) queueMicrotask(this.flushBatch);
      if (this.batchLength + samples.length > this.batch.length) {
        const grown = new Int16Array(Math.max(this.batch.length * 2, this.batchLength + samples.length));
        grown.set(this.batch.subarray(0, this.batchLength));
        this.batch = grown;
      }
      this.batch.set(samples, this.batchLength);
      this.batchLength += samples.length;
      return;
    }
    for (let offset = 0; offset < samples.length; ) {
      const taken = Math.min(samples.length - offset, this.batch.length - this.batchLength);
      this.batch.set(samples.subarray(offset, offset + taken), this.batchLength);
      this.batchLength += taken;
      offset += taken;
      if (this.batchLength === this.batch.length) this.flushBatch();
    }
    if (this.batchLength > 0) this.batchTimer ??= setTimeout(() => this.flushBatch(), this.settings.inputBatchMs);
  }

  sendDtmf(digit: string): void {
    if (this.session.closed) return;
    if (!DTMF_DIGIT.test(digit)) {
      this.logger.warn({ digit }, 'ignoring an invalid DTMF digit');
      return;
    }
    this.flushBatch();
    this.mapper.userText(this.settings.dtmfMessage.split('{{digit}}').join(digit.toUpperCase()), 'dtmf');
  }

  truncate(responseId: string, heardMs: number): void {
    if (this.session.closed) return;
    this.mapper.truncate(responseId, heardMs);
  }

  submitToolResult(callId: string, output: string): void {
    if (this.session.closed) return;
    this.mapper.toolResult(callId, output);
  }

  /** Idempotent; the call's signal runs it too. */
  async close(): Promise<void> {
    await this.session.close();
    await this.turnsClosed;
  }

  /** The session is closing (however that came about): no batch timer, no VAD. */
  private release(): void {
    if (this.batchTimer !== undefined) clearTimeout(this.batchTimer);
    this.batchTimer = undefined;
    this.batchLength = 0;
    this.turnsClosed ??= this.turns?.close().catch((error: unknown) => {
      this.logger.warn({ err: toProviderError(this.settings.turnTaking?.vad.id ?? 'vad', error).message }, 'could not close the VAD stream');
    });
  }

  private send(event: ClientEvent): void {
    this.session.link?.send(JSON.stringify(event));
  }

  /** The batch so far: to the connection, or held with the rest while there is none. */
  private readonly flushBatch = (): void => {
    if (this.batchTimer !== undefined) clearTimeout(this.batchTimer);
    this.batchTimer = undefined;
    if (this.batchLength === 0 || this.session.closed) return;
    const samples = this.batch.slice(0, this.batchLength);
    this.batchLength = 0;
    this.session.pushAudio(samples);
  };

  private append(link: LiveSocket, samples: Int16Array): void {
    const ms = samplesToMs(samples.length, this.inputSampleRate);
    this.uncommittedMs += ms;
    this.linkInputMs += ms;
    link.send(audioAppendText(this.settings.codec.encode(samples)));
  }
}
