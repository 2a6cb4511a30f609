/**
 * `createSpeechmaticsAsr`: the Speechmatics real-time API (WebSocket v2) as a core AsrAdapter.
 *
 * Auth is the API key in an `Authorization: Bearer` header on the upgrade (the spec's server-side form), so no
 * temporary-key round trip delays a call. A dropped session is replaced within the reconnect budget: the audio
 * that had not been transcribed final yet is replayed, and transcript times stay on the caller's audio clock.
 */
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import type { RawData } from 'ws';
import {
  AsyncQueue,
  closeWebSocket,
  DEFAULT_RECONNECT_POLICY,
  PcmHistory,
  ProviderError,
  ReconnectBudget,
  bytesFromPcm,
  msToSamples,
  runWithReconnect,
  samplesToMs,
  toProviderError,
} from '@stsgate/core';
import type { AsrAdapter, AsrCapabilities, AsrEvent, AsrStream, CallContext, ReconnectPolicyOptions, SampleRate } from '@stsgate/core';
import { PROVIDER, providerErrorFromClose, providerErrorFromServerError } from './errors.js';
import { RtTranscriptMapper } from './rt-events.js';
import { DEFAULT_RT_URL, buildStartRecognition, parseRtMessage } from './rt-wire.js';
import type { RtSettings } from './rt-wire.js';
import { frameBytes, handshake, openSocket } from './socket.js';
import type { StartedSocket } from './socket.js';

export interface SpeechmaticsAsrOptions extends Partial<Omit<RtSettings, 'sampleRate'>> {
  readonly apiKey: string;
  /** Default `wss://eu.rt.speechmatics.com/v2`; any ws(s) URL (self-hosted, other regions). */
  readonly url?: string;
  /** Rate of the audio the host pushes: 8000 (AVR, default) or 16000. */
  readonly sampleRate?: 8000 | 16000;
  /** Upgrade to `RecognitionStarted`, per attempt. Default 10000. */
  readonly connectTimeoutMs?: number;
  /** `EndOfStream` to `EndOfTranscript`. Default 10000. */
  readonly finishTimeoutMs?: number;
  /** Audio held while no session is ready (first connect, reconnect); oldest dropped beyond it. Default 10000. */
  readonly maxQueuedMs?: number;
  /** Audio not yet final that is replayed into a new session after a drop. Default 5000. */
  readonly maxReplayMs?: number;
  readonly reconnect?: Partial<ReconnectPolicyOptions>;
}

export const DEFAULT_END_OF_UTTERANCE_SILENCE = 0.5;
/** Speechmatics' `max_delay` when none is sent (§2.3). */
const SERVER_DEFAULT_MAX_DELAY = 4;

/**
 * Speechmatics advises an end-of-utterance trigger below `max_delay` (§2.3). Why not, or undefined; an unset value
 * counts with its default, 0 (no EndOfUtterance) never conflicts. `names` are how the caller calls the two settings.
 */
export function endOfUtteranceProblem(
  silence: number | undefined,
  maxDelay: number | undefined,
  names: { readonly silence: string; readonly maxDelay: string },
): string | undefined {
  const trigger = silence ?? DEFAULT_END_OF_UTTERANCE_SILENCE;
  const delay = maxDelay ?? SERVER_DEFAULT_MAX_DELAY;
  if (trigger <= 0 || trigger < delay) return undefined;
  return (
    `${names.silence} (${String(trigger)} s${silence === undefined ? ', the default' : ''}) must be lower than ` +
    `${names.maxDelay} (${String(delay)} s${maxDelay === undefined ? ", Speechmatics' default" : ''}), as Speechmatics advises`
  );
}

export function speechmaticsAsrCapabilities(options: Pick<SpeechmaticsAsrOptions, 'diarization'> = {}): AsrCapabilities {
  return {
    inputSampleRates: [8000, 16000],
    encodings: ['pcm_s16le'],
    interimResults: true,
    endpointing: true,
    finalize: true,
    diarization: options.diarization === 'speaker',
  };
}

export function createSpeechmaticsAsr(options: SpeechmaticsAsrOptions): AsrAdapter {
  const sampleRate: SampleRate = options.sampleRate ?? 8000;
  if (sampleRate !== 8000 && sampleRate !== 16000) throw new RangeError(`Speechmatics ASR sample rate must be 8000 or 16000, not ${String(sampleRate)}`);
  if (options.apiKey.trim() === '') throw new RangeError('Speechmatics ASR needs an API key');
  const latency = endOfUtteranceProblem(options.endOfUtteranceSilence, options.maxDelay, { silence: 'endOfUtteranceSilence', maxDelay: 'maxDelay' });
  if (latency !== undefined) throw new RangeError(`Speechmatics ASR: ${latency}`);
  const start = JSON.stringify(
    buildStartRecognition({
      sampleRate,
      language: options.language ?? 'en',
      model: options.model,
      maxDelay: options.maxDelay,
      maxDelayMode: options.maxDelayMode,
      domain: options.domain,
      outputLocale: options.outputLocale,
      additionalVocab: options.additionalVocab,
      diarization: options.diarization,
      endOfUtteranceSilence: options.endOfUtteranceSilence ?? DEFAULT_END_OF_UTTERANCE_SILENCE,
      enablePartials: options.enablePartials ?? true,
    }),
  );
  return {
    id: PROVIDER,
    capabilities: speechmaticsAsrCapabilities(options),
    open(call: CallContext): Promise<AsrStream> {
      if (call.signal.aborted) {
        return Promise.reject(new ProviderError(PROVIDER, 'closed', 'the call ended before the ASR stream opened', { retryable: false }));
      }
      return Promise.resolve(new SpeechmaticsAsrStream(options, start, sampleRate, call));
    },
  };
}

type Pending = { kind: 'audio'; samples: Int16Array } | { kind: 'finalize' };

/**
 * One call's stream. Sessions open in the background; audio (and finalize requests) pushed while no session is
 * ready is queued, bounded, and sent in order once `RecognitionStarted` arrives.
 */
class SpeechmaticsAsrStream implements AsrStream {
  readonly events = new AsyncQueue<AsrEvent>();
  private readonly logger: Logger;
  private readonly budget: ReconnectBudget;
  /** Aborted by `close()` and the call's signal: stops connecting and retrying. */
  private readonly lifetime = new AbortController();
  private readonly maxQueued: number;
  private readonly maxReplay: number;
  private readonly mapper = new RtTranscriptMapper();
  /** Audio sent to the current session that is not final yet, by absolute sample position (for replay). */
  private readonly history: PcmHistory;

  /** The session that has started recognition (undefined while connecting or reconnecting). */
  private socket: WebSocket | undefined;
  /** Binary frames sent to the current session (`EndOfStream.last_seq_no`). */
  private framesSent = 0;
  private readonly pending: Pending[] = [];
  private pendingSamples = 0;
  private queueOverflowWarned = false;
  private inputEnded = false;
  private endOfStreamSent = false;
  private finishTimer: NodeJS.Timeout | undefined;
  private invalidReported = false;
  private done = false;
  private closing: Promise<void> | undefined;
  private readonly onCallAbort = (): void => void this.close();

  constructor(
    private readonly options: SpeechmaticsAsrOptions,
    private readonly startMessage: string,
    readonly inputSampleRate: SampleRate,
    private readonly call: CallContext,
  ) {
    this.logger = call.logger.child({ provider: PROVIDER, kind: 'asr' });
    this.budget = new ReconnectBudget({ ...DEFAULT_RECONNECT_POLICY, ...options.reconnect });
    this.maxQueued = msToSamples(options.maxQueuedMs ?? 10_000, inputSampleRate);
    this.maxReplay = msToSamples(options.maxReplayMs ?? 5000, inputSampleRate);
    this.history = new PcmHistory(Math.max(1, this.maxReplay));
    call.signal.addEventListener('abort', this.onCallAbort, { once: true });
    this.connect(undefined);
  }

  pushAudio(samples: Int16Array): void {
    if (this.done || this.inputEnded || samples.length === 0) return;
    if (this.socket !== undefined) {
      this.sendAudio(this.socket, samples);
      return;
    }
    this.pending.push({ kind: 'audio', samples: samples.slice() });
    this.pendingSamples += samples.length;
    this.trimQueue();
  }

  finalize(): void {
    if (this.done || this.inputEnded) return;
    if (this.socket !== undefined) this.socket.send(JSON.stringify({ message: 'ForceEndOfUtterance' }));
    else if (this.pending.at(-1)?.kind !== 'finalize') this.pending.push({ kind: 'finalize' });
  }

  endInput(): void {
    if (this.done || this.inputEnded) return;
    this.inputEnded = true;
    if (this.socket !== undefined) this.sendEndOfStream(this.socket);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.done = true;
      this.lifetime.abort();
      this.call.signal.removeEventListener('abort', this.onCallAbort);
      if (this.finishTimer !== undefined) clearTimeout(this.finishTimer);
      this.finishTimer = undefined;
      this.pending.length = 0;
      this.history.release();
      this.events.end();
      const socket = this.socket;
      this.socket = undefined;
      if (socket !== undefined) await closeWebSocket(socket);
    })();
    return this.closing;
  }

  // ---- sessions ------------------------------------------------------------------------------------

  private connect(initialError: ProviderError | undefined): void {
    // A session that was up and dropped is being re-established (the host counts reconnects).
    if (initialError !== undefined) this.call.observer?.reconnecting(PROVIDER);
    runWithReconnect(() => this.startSession(), {
      provider: PROVIDER,
      budget: this.budget,
      signal: this.lifetime.signal,
      ...(initialError === undefined ? {} : { initialError }),
      onRetry: (error, delayMs, attempt) => {
        this.logger.warn({ category: error.category, err: error.message, attempt, delayMs }, 'Speechmatics ASR connection failed; reconnecting');
      },
    }).then(
      (started) => this.attach(started, initialError !== undefined),
      (error: unknown) => {
        if (!this.done) this.fail(toProviderError(PROVIDER, error));
      },
    );
  }

  /** Opens a socket, sends `StartRecognition`, resolves on `RecognitionStarted`. */
  private async startSession(): Promise<StartedSocket> {
    const timeoutMs = this.options.connectTimeoutMs ?? 10_000;
    const secret = this.options.apiKey;
    const socket = await openSocket({
      url: this.options.url ?? DEFAULT_RT_URL,
      headers: { Authorization: `Bearer ${secret}` },
      timeoutMs,
      signal: this.lifetime.signal,
      secret,
      what: 'real-time ASR',
    });
    return handshake(socket, {
      start: this.startMessage,
      timeoutMs,
      signal: this.lifetime.signal,
      secret,
      what: 'start recognition',
      classify: (text) => {
        const message = parseRtMessage(text);
        if (message.kind === 'started') return true;
        return message.kind === 'error' ? providerErrorFromServerError(message.type, message.reason, secret) : undefined;
      },
    });
  }

  /** Recognition has started: replay what is not final yet, then the queue, in order. */
  private attach(started: StartedSocket, reconnected: boolean): void {
    const { socket } = started;
    if (this.done) {
      void closeWebSocket(socket);
      return;
    }
    let lastError: ProviderError | undefined;
    let finished = false;
    this.socket = socket;
    started.takeOver(
      (data: RawData, isBinary: boolean) => {
        if (this.socket !== socket || this.done || isBinary) return;
        const outcome = this.onMessage(frameBytes(data).toString('utf8'));
        if (outcome === 'finished') finished = true;
        else if (outcome instanceof ProviderError) lastError = outcome;
      },
      (code: number, reason: Buffer) => {
        if (this.socket !== socket) return;
        this.socket = undefined;
        if (this.done || finished) return;
        this.onDrop(lastError ?? providerErrorFromClose(code, reason.toString('utf8'), this.options.apiKey));
      },
    );
    if (this.socket !== socket) return;

    this.framesSent = 0;
    const sessionBase = this.history.first;
    this.mapper.restart(samplesToMs(sessionBase, this.inputSampleRate));
    if (reconnected) this.logger.info({ replayMs: samplesToMs(this.history.end - sessionBase, this.inputSampleRate) }, 'Speechmatics ASR session restored');
    else this.logger.debug('Speechmatics ASR session started');
    if (this.history.end > sessionBase) {
      socket.send(bytesFromPcm(this.history.copy(sessionBase, this.history.end)));
      this.framesSent++;
    }
    const queued = this.pending.splice(0);
    this.pendingSamples = 0;
    for (const item of queued) {
      if (item.kind === 'audio') this.sendAudio(socket, item.samples);
      else socket.send(JSON.stringify({ message: 'ForceEndOfUtterance' }));
    }
    this.endOfStreamSent = false;
    if (this.inputEnded) this.sendEndOfStream(socket);
  }

  private onDrop(error: ProviderError): void {
    this.logger.warn({ category: error.category, err: error.message }, 'Speechmatics ASR connection lost');
    this.connect(error);
  }

  /** Ends the stream with a fatal error; final text already received closes its utterance first. */
  private fail(error: ProviderError): void {
    if (this.done) return;
    for (const event of this.mapper.flush()) this.events.push(event);
    this.events.push({ type: 'error', error, fatal: true });
    void this.close();
  }

  private onMessage(text: string): 'finished' | ProviderError | undefined {
    const message = parseRtMessage(text);
    switch (message.kind) {
      case 'transcript': {
        for (const event of this.mapper.transcript(message.message)) this.events.push(event);
        if (message.message.message === 'AddTranscript') this.history.discardBefore(Math.min(this.history.end, msToSamples(this.mapper.finalEndMs, this.inputSampleRate)));
        return undefined;
      }
      case 'end_of_utterance':
        for (const event of this.mapper.endOfUtterance()) this.events.push(event);
        return undefined;
      case 'end_of_transcript':
        for (const event of this.mapper.flush()) this.events.push(event);
        this.logger.debug('Speechmatics ASR session finished');
        void this.close();
        return 'finished';
      case 'error':
        this.logger.debug({ type: message.type }, 'Speechmatics error message');
        return providerErrorFromServerError(message.type, message.reason, this.options.apiKey);
      case 'warning':
        this.logger.warn({ type: message.type }, 'Speechmatics warning');
        return undefined;
      case 'info':
        this.logger.debug({ type: message.type }, 'Speechmatics info');
        return undefined;
      case 'invalid':
        if (!this.invalidReported) {
          this.invalidReported = true;
          this.events.push({ type: 'error', error: new ProviderError(PROVIDER, 'protocol', `unexpected Speechmatics message (${message.reason})`), fatal: false });
        }
        return undefined;
      case 'started':
      case 'audio_added':
      case 'ignored':
        return undefined;
    }
  }

  // ---- sending -------------------------------------------------------------------------------------

  private sendAudio(socket: WebSocket, samples: Int16Array): void {
    socket.send(bytesFromPcm(samples));
    this.framesSent++;
    this.history.append(samples);
    if (this.history.end - this.history.first > this.maxReplay) this.history.discardBefore(this.history.end - this.maxReplay);
  }

  /** `EndOfStream`: the server sends the last finals and `EndOfTranscript`. */
  private sendEndOfStream(socket: WebSocket): void {
    if (this.endOfStreamSent) return;
    this.endOfStreamSent = true;
    socket.send(JSON.stringify({ message: 'EndOfStream', last_seq_no: this.framesSent }));
    const ms = this.options.finishTimeoutMs ?? 10_000;
    this.finishTimer ??= setTimeout(() => {
      this.finishTimer = undefined;
      this.fail(new ProviderError(PROVIDER, 'timeout', `Speechmatics did not finish within ${ms} ms of the end of audio`, { retryable: false }));
    }, ms);
  }

  private trimQueue(): void {
    while (this.pendingSamples > this.maxQueued) {
      const index = this.pending.findIndex((item) => item.kind === 'audio');
      if (index < 0) break;
      const [dropped] = this.pending.splice(index, 1);
      if (dropped?.kind === 'audio') this.pendingSamples -= dropped.samples.length;
      if (!this.queueOverflowWarned) {
        this.queueOverflowWarned = true;
        this.logger.warn({ maxQueuedMs: this.options.maxQueuedMs ?? 10_000 }, 'Speechmatics not connected: oldest queued caller audio dropped');
      }
    }
  }
}
