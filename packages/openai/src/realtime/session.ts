/**
 * One call on OpenAI Realtime: the host's StsSession. Thin IO around `RealtimeEventMapper`: it owns the
 * current connection, batches caller audio into appends, and replaces a connection that drops (restoring
 * the session configuration and the conversation, and sending the caller audio buffered meanwhile). Without
 * server turn detection, the gateway's VAD (`VadTurnTaker`) decides what caller audio is sent and when a turn ends.
 */
import type { Logger } from 'pino';
import { AsyncQueue, ProviderError, ReconnectBudget, samplesToMs, toProviderError, runWithReconnect } from '@stsgate/core';
import type { ReconnectPolicyOptions, SampleRate, StsCallContext, StsEvent, StsSession, VadAdapter, VadStream } from '@stsgate/core';
import type { SessionUpdateEvent } from 'openai/resources/realtime/realtime';
import { PROVIDER } from '../errors.js';
import type { AudioCodec } from './audio-codec.js';
import { openRealtimeConnection } from './connection.js';
import type { RealtimeConnection, TlsOptions } from './connection.js';
import { RealtimeEventMapper } from './map-events.js';
import type { LogLevel, MapperSink, ResponseRequest } from './map-events.js';
import { VadTurnTaker } from './vad-turns.js';
import { audioAppend } from './wire.js';
import type { ClientEvent, VadTuning } from './wire.js';

export interface RealtimeSessionSettings {
  readonly url: string;
  readonly apiKey: string;
  readonly codec: AudioCodec;
  readonly sessionUpdate: SessionUpdateEvent;
  /** The agent's first response, on the first connection only; null: the caller speaks first. */
  readonly greeting: ResponseRequest | null;
  /** The gateway's VAD takes the turns (the server detects none). */
  readonly turnTaking?: { readonly vad: VadAdapter; readonly tuning: Required<VadTuning> };
  /** Text of the user message a keypad digit becomes; `{{digit}}` is replaced. */
  readonly dtmfMessage: string;
  /** Caller audio is sent in appends of this duration (a partial batch waits at most this long). */
  readonly inputBatchMs: number;
  /** Caller audio kept while reconnecting, newest wins. */
  readonly maxGapBufferMs: number;
  readonly reconnectPolicy: ReconnectPolicyOptions;
  readonly handshakeTimeoutMs: number;
  readonly pingIntervalMs: number;
  readonly pongTimeoutMs: number;
  readonly tls?: TlsOptions;
}

type State = 'connecting' | 'open' | 'reconnecting' | 'closed';

const DTMF_DIGIT = /^[0-9A-D*#]$/i;
/** Caller audio buffered during a reconnect goes out in appends of at most this much. */
const GAP_APPEND_MS = 1000;
/** The server refuses to commit less (`input_audio_buffer_commit_empty`). */
const MIN_COMMIT_MS = 100;

export class OpenAiRealtimeSession implements StsSession {
  readonly inputSampleRate: SampleRate;
  readonly outputSampleRate: SampleRate;
  readonly events = new AsyncQueue<StsEvent>();

  private readonly logger: Logger;
  private readonly mapper: RealtimeEventMapper;
  private readonly budget: ReconnectBudget;
  private readonly abort = new AbortController();
  private state: State = 'connecting';
  private connection: RealtimeConnection | undefined;
  /** Bumped per connection attempt: events of a replaced connection are ignored. */
  private generation = 0;
  private readonly batchSamples: number;
  private batch: Int16Array[] = [];
  private batchLength = 0;
  private batchTimer: NodeJS.Timeout | undefined;
  private gap: Int16Array[] = [];
  private gapLength = 0;
  private gapOverflow = false;
  private closing: Promise<void> | undefined;
  private turns: VadTurnTaker | undefined;
  /** Caller audio appended since the last commit, on this connection. */
  private uncommittedMs = 0;
  /** A turn ended while reconnecting: commit it once the buffered audio is on the new connection. */
  private commitOwed = false;
  private readonly onCallAbort = (): void => void this.close();

  private constructor(
    private readonly call: StsCallContext,
    private readonly settings: RealtimeSessionSettings,
  ) {
    this.logger = call.logger.child({ provider: PROVIDER });
    this.inputSampleRate = settings.codec.sampleRate;
    this.outputSampleRate = settings.codec.sampleRate;
    this.batchSamples = Math.max(1, Math.round((settings.inputBatchMs * settings.codec.sampleRate) / 1000));
    this.budget = new ReconnectBudget(settings.reconnectPolicy);
    const sink: MapperSink = {
      emit: (event) => this.events.push(event),
      send: (event) => this.send(event),
      log: (level, data, message) => this.log(level, data, message),
    };
    this.mapper = new RealtimeEventMapper(sink, { codec: settings.codec, apiKey: settings.apiKey });
  }

  /** Connects (retrying what the budget allows) and configures the session; rejects with a ProviderError. */
  static async open(call: StsCallContext, settings: RealtimeSessionSettings): Promise<OpenAiRealtimeSession> {
    const session = new OpenAiRealtimeSession(call, settings);
    try {
      await session.start();
    } catch (error) {
      await session.close();
      throw toProviderError(PROVIDER, error);
    }
    return session;
  }

  private async start(): Promise<void> {
    if (this.call.signal.aborted) {
      throw new ProviderError(PROVIDER, 'closed', 'the call ended before the provider connection was ready', { retryable: false });
    }
    this.call.signal.addEventListener('abort', this.onCallAbort, { once: true });
    const [connected, vadOpened] = await Promise.allSettled([
      runWithReconnect(() => this.connect(), {
        provider: PROVIDER,
        budget: this.budget,
        signal: this.abort.signal,
        onRetry: (error, delayMs, attempt) =>
          this.logger.warn({ category: error.category, delayMs, attempt, reason: error.message }, 'OpenAI connection failed; retrying'),
      }),
      this.openVad(),
    ]);
    const stream = vadOpened.status === 'fulfilled' ? vadOpened.value : undefined;
    if (connected.status === 'rejected' || vadOpened.status === 'rejected' || this.state === 'closed') {
      if (connected.status === 'fulfilled') await connected.value.close();
      await stream?.close();
      if (connected.status === 'rejected') throw connected.reason;
      if (vadOpened.status === 'rejected') throw vadOpened.reason;
      throw new ProviderError(PROVIDER, 'closed', 'the session was closed while connecting', { retryable: false });
    }
    this.connection = connected.value;
    this.state = 'open';
    if (stream !== undefined) this.startTurnTaking(stream);
    this.logger.debug({ format: this.settings.codec.format, turnsBy: stream === undefined ? 'server' : 'gateway VAD' }, 'OpenAI session configured');
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
      throw new ProviderError(PROVIDER, failure.category, `could not open the VAD (${vad.id}) that takes the turns: ${failure.message}`, {
        retryable: false,
        cause: failure,
      });
    }
  }

  private startTurnTaking(stream: VadStream): void {
    const vadId = this.settings.turnTaking?.vad.id ?? 'vad';
    this.turns = new VadTurnTaker(stream, this.inputSampleRate, this.settings.turnTaking?.tuning.prefixPaddingMs ?? 0, vadId, {
      forward: (samples) => this.toProvider(samples),
      speechStarted: () => {
        this.events.push({ type: 'speech_started' });
        this.mapper.callerStarted();
      },
      speechEnded: () => {
        this.flushBatch();
        this.events.push({ type: 'speech_stopped' });
        this.commitTurn();
      },
      failed: (error) => {
        this.logger.error({ err: error }, 'the VAD failed: the caller can no longer be heard');
        this.events.push({
          type: 'error',
          fatal: true,
          error: new ProviderError(error.provider, error.category, `the VAD (${vadId}) that takes the caller's turns failed: ${error.message}`, {
            retryable: false,
            cause: error,
          }),
        });
        void this.close();
      },
    });
  }

  private commitTurn(): void {
    if (this.state === 'reconnecting') {
      this.commitOwed = true;
      return;
    }
    if (this.state !== 'open') return;
    const commit = this.uncommittedMs >= MIN_COMMIT_MS;
    if (commit) this.uncommittedMs = 0;
    else this.logger.debug({ audioMs: Math.round(this.uncommittedMs) }, 'caller turn too short to commit');
    this.mapper.callerStopped(commit);
  }

  private connect(): Promise<RealtimeConnection> {
    const generation = ++this.generation;
    return openRealtimeConnection({
      url: this.settings.url,
      apiKey: this.settings.apiKey,
      sessionUpdate: this.settings.sessionUpdate,
      handshakeTimeoutMs: this.settings.handshakeTimeoutMs,
      pingIntervalMs: this.settings.pingIntervalMs,
      pongTimeoutMs: this.settings.pongTimeoutMs,
      ...(this.settings.tls === undefined ? {} : { tls: this.settings.tls }),
      signal: this.abort.signal,
      logger: this.logger,
      onMessage: (message) => {
        if (generation === this.generation && this.state !== 'closed') this.mapper.handle(message);
      },
      onDrop: (error) => {
        if (generation === this.generation) this.onDrop(error);
      },
    });
  }

  // ---- host -> provider ----------------------------------------------------------------------------

  sendAudio(samples: Int16Array): void {
    if (samples.length === 0) return;
    if (this.turns !== undefined && this.state !== 'closed') this.turns.push(samples);
    else this.toProvider(samples);
  }

  private toProvider(samples: Int16Array): void {
    switch (this.state) {
      case 'open':
        this.batch.push(samples.slice());
        this.batchLength += samples.length;
        if (this.batchLength >= this.batchSamples) this.flushBatch();
        else this.batchTimer ??= setTimeout(() => this.flushBatch(), this.settings.inputBatchMs);
        return;
      case 'reconnecting':
        this.bufferGap(samples.slice());
        return;
      case 'connecting':
      case 'closed':
        return;
    }
  }

  sendDtmf(digit: string): void {
    if (this.state === 'closed' || this.state === 'connecting') return;
    if (!DTMF_DIGIT.test(digit)) {
      this.logger.warn({ digit }, 'ignoring an invalid DTMF digit');
      return;
    }
    this.flushBatch();
    this.mapper.userText(this.settings.dtmfMessage.split('{{digit}}').join(digit.toUpperCase()), 'dtmf');
  }

  truncate(responseId: string, heardMs: number): void {
    if (this.state === 'closed') return;
    this.mapper.truncate(responseId, heardMs);
  }

  submitToolResult(callId: string, output: string): void {
    if (this.state === 'closed') return;
    this.mapper.toolResult(callId, output);
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.state = 'closed';
    this.generation++;
    this.abort.abort();
    this.call.signal.removeEventListener('abort', this.onCallAbort);
    if (this.batchTimer !== undefined) clearTimeout(this.batchTimer);
    this.batchTimer = undefined;
    this.batch = [];
    this.batchLength = 0;
    this.gap = [];
    this.gapLength = 0;
    this.events.end();
    const connection = this.connection;
    this.connection = undefined;
    await Promise.all([connection?.close(), this.turns?.close()]);
  }

  private send(event: ClientEvent): void {
    // While reconnecting there is no connection: the mapper has already recorded what must be restored.
    this.connection?.send(event);
  }

  private flushBatch(): void {
    if (this.batchTimer !== undefined) clearTimeout(this.batchTimer);
    this.batchTimer = undefined;
    if (this.batchLength === 0) return;
    const samples = concat(this.batch, this.batchLength);
    this.batch = [];
    this.batchLength = 0;
    if (this.state === 'open') this.append(samples);
    else if (this.state === 'reconnecting') this.bufferGap(samples);
  }

  private append(samples: Int16Array): void {
    this.uncommittedMs += samplesToMs(samples.length, this.inputSampleRate);
    this.send(audioAppend(this.settings.codec.encode(samples)));
  }

  // ---- reconnect -------------------------------------------------------------------------------------

  private onDrop(error: ProviderError): void {
    if (this.state !== 'open') return;
    this.state = 'reconnecting';
    this.connection = undefined;
    this.flushBatch();
    this.uncommittedMs = 0; // the new connection starts with an empty input buffer
    this.mapper.connectionLost();
    this.logger.warn({ category: error.category, code: error.providerCode, reason: error.message }, 'OpenAI connection lost; reconnecting');
    void this.reconnect(error);
  }

  private async reconnect(cause: ProviderError): Promise<void> {
    this.call.observer?.reconnecting(PROVIDER);
    let connection: RealtimeConnection;
    try {
      connection = await runWithReconnect(() => this.connect(), {
        provider: PROVIDER,
        budget: this.budget,
        signal: this.abort.signal,
        initialError: cause,
        onRetry: (error, delayMs, attempt) =>
          this.logger.warn({ category: error.category, delayMs, attempt, reason: error.message }, 'reconnecting to OpenAI'),
      });
    } catch (error) {
      if (this.state === 'closed') return;
      const providerError = toProviderError(PROVIDER, error);
      this.logger.error({ category: providerError.category, reason: providerError.message }, 'could not restore the OpenAI session');
      this.events.push({
        type: 'error',
        fatal: true,
        error: new ProviderError(PROVIDER, providerError.category, `lost the OpenAI connection and could not restore it: ${providerError.message}`, {
          retryable: false,
          cause: providerError,
        }),
      });
      await this.close();
      return;
    }
    if (this.state !== 'reconnecting') {
      await connection.close();
      return;
    }
    this.connection = connection;
    this.state = 'open';
    const restored = this.mapper.restore();
    const gapMs = (this.gapLength * 1000) / this.settings.codec.sampleRate;
    this.sendGap();
    if (this.commitOwed) {
      this.commitOwed = false;
      this.commitTurn();
    }
    this.logger.info({ restoredItems: restored, bufferedAudioMs: Math.round(gapMs), attempts: this.budget.attemptsUsed }, 'OpenAI session restored');
  }

  private bufferGap(samples: Int16Array): void {
    this.gap.push(samples);
    this.gapLength += samples.length;
    const limit = Math.round((this.settings.maxGapBufferMs * this.settings.codec.sampleRate) / 1000);
    while (this.gapLength > limit && this.gap.length > 0) {
      const dropped = this.gap.shift() as Int16Array;
      this.gapLength -= dropped.length;
      if (!this.gapOverflow) {
        this.gapOverflow = true;
        this.logger.warn({ maxGapBufferMs: this.settings.maxGapBufferMs }, 'reconnect is slow: dropping the oldest buffered caller audio');
      }
    }
  }

  private sendGap(): void {
    const perAppend = Math.round((GAP_APPEND_MS * this.settings.codec.sampleRate) / 1000);
    const all = concat(this.gap, this.gapLength);
    this.gap = [];
    this.gapLength = 0;
    this.gapOverflow = false;
    for (let offset = 0; offset < all.length; offset += perAppend) this.append(all.subarray(offset, offset + perAppend));
  }

  private log(level: LogLevel, data: Record<string, unknown>, message: string): void {
    this.logger[level](data, message);
  }
}

function concat(parts: readonly Int16Array[], length: number): Int16Array {
  if (parts.length === 1) return parts[0] as Int16Array;
  const out = new Int16Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
