/**
 * `createSpeechmaticsAsr`: the Speechmatics real-time API (WebSocket v2) as a core AsrAdapter.
 *
 * Auth is the API key in an `Authorization: Bearer` header on the upgrade (the spec's server-side form), so no
 * temporary-key round trip delays a call. A dropped session is replaced within the reconnect budget: the audio
 * that had not been transcribed final yet is replayed, and transcript times stay on the caller's audio clock. A session
 * the server ends on its own (an `EndOfTranscript` the adapter did not ask for, e.g. after `duration_limit_exceeded`)
 * is replaced the same way. WebSocket pings keep a session with no audio alive (the service ends sessions with "No
 * audio or ping/pongs sent for 3 minutes").
 */
import type { Logger } from 'pino';
import { DEFAULT_RECONNECT_POLICY, ProviderError, StreamingAsrSession, bytesFromPcm, connectLiveSocket, msToSamples, samplesToMs } from '@stsgate/core';
import type { AsrAdapter, AsrCapabilities, AsrStream, CallContext, LinkAttempt, LiveSocket, ReconnectPolicyOptions, SampleRate } from '@stsgate/core';
import { PROVIDER, providerErrorFromServerError, speechmaticsClassifiers } from './errors.js';
import { RtTranscriptMapper } from './rt-events.js';
import { DEFAULT_RT_URL, buildStartRecognition, parseRtMessage } from './rt-wire.js';
import type { RtSettings } from './rt-wire.js';

export interface SpeechmaticsAsrOptions extends Partial<Omit<RtSettings, 'sampleRate'>> {
  readonly apiKey: string;
  /** Default `wss://eu.rt.speechmatics.com/v2`; any ws(s) URL (self-hosted, other regions). */
  readonly url?: string;
  /** Rate of the audio the host pushes: 8000 (AVR, default) or 16000. */
  readonly sampleRate?: 8000 | 16000;
  /**
   * Per attempt, the bound of the upgrade and, separately, of `StartRecognition` to `RecognitionStarted`. Default
   * 10000 for both, except the wait for `RecognitionStarted` with an `additionalVocab`: 20000 (the SDK documents up to
   * 15 s for a custom dictionary). Set, it bounds both steps, vocabulary or not.
   */
  readonly connectTimeoutMs?: number;
  /** `EndOfStream` to `EndOfTranscript`. Default 10000. */
  readonly finishTimeoutMs?: number;
  /** Audio held while no session is ready (first connect, reconnect); oldest dropped beyond it. Default 10000. */
  readonly maxQueuedMs?: number;
  /** Audio not yet final that is replayed into a new session after a drop. Default 5000. */
  readonly maxReplayMs?: number;
  readonly reconnect?: Partial<ReconnectPolicyOptions>;
  /** WebSocket ping period (default 30000; 0 disables); no pong within `pongTimeoutMs` (60000) = dropped. */
  readonly pingIntervalMs?: number;
  readonly pongTimeoutMs?: number;
  /** Where adapter-level warnings go, once, at creation; without it, to the first call's logger. */
  readonly logger?: Logger;
}

export const DEFAULT_END_OF_UTTERANCE_SILENCE = 0.5;
/** Speechmatics' `max_delay` when none is sent (§2.3). */
const SERVER_DEFAULT_MAX_DELAY = 4;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** The SDK: with `additional_vocab`, "expect a delay of up to 15 seconds" before `RecognitionStarted`; 5 s to spare. */
const VOCAB_START_TIMEOUT_MS = 20_000;
/** limits.mdx: a session with "No audio or ping/pongs sent for 3 minutes" is ended; a ping well within that. */
const DEFAULT_PING_INTERVAL_MS = 30_000;
const DEFAULT_PONG_TIMEOUT_MS = 60_000;

/**
 * Speechmatics' turn-detection docs advise an `end_of_utterance_silence_trigger` lower than `max_delay`, but the
 * service accepts any pair. What the advice means for a pair, or undefined; an unset value counts with its default,
 * 0 (no EndOfUtterance) never conflicts.
 */
export function endOfUtteranceAdvice(silence: number | undefined, maxDelay: number | undefined): string | undefined {
  const trigger = silence ?? DEFAULT_END_OF_UTTERANCE_SILENCE;
  const delay = maxDelay ?? SERVER_DEFAULT_MAX_DELAY;
  if (trigger <= 0 || trigger < delay) return undefined;
  return (
    `end_of_utterance_silence_trigger (${String(trigger)} s${silence === undefined ? ', the default' : ''}) is not lower than ` +
    `max_delay (${String(delay)} s${maxDelay === undefined ? ", Speechmatics' default" : ''}), which Speechmatics advises against. ` +
    'The service accepts it, but every turn then ends at least max_delay after the caller stops; set the trigger below max_delay for faster turns'
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
  // Speechmatics only advises against it (no error on the wire), so it is said once rather than refused.
  let advice = endOfUtteranceAdvice(options.endOfUtteranceSilence, options.maxDelay);
  const warnOnce = (logger: Logger): void => {
    if (advice === undefined) return;
    logger.warn({ provider: PROVIDER, endOfUtteranceSilence: options.endOfUtteranceSilence, maxDelay: options.maxDelay }, `Speechmatics ASR: ${advice}`);
    advice = undefined;
  };
  if (options.logger !== undefined) warnOnce(options.logger);
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
      warnOnce(call.logger);
      if (call.signal.aborted) {
        return Promise.reject(new ProviderError(PROVIDER, 'closed', 'the call ended before the ASR stream opened', { retryable: false }));
      }
      return Promise.resolve(new SpeechmaticsAsrProtocol(options, start, sampleRate, call).session);
    },
  };
}

/**
 * One call's real-time protocol. Its `session` (core's `StreamingAsrSession`) is the host's stream and owns the
 * sessions (opened in the background, replaced within the reconnect budget), the bounded queue of audio and finalize
 * requests pushed while no session is ready, the replay of audio not final yet, the end of input and `close()`.
 */
class SpeechmaticsAsrProtocol {
  readonly session: StreamingAsrSession<LiveSocket>;
  private readonly logger: Logger;
  private readonly mapper = new RtTranscriptMapper();
  /** Binary frames sent to the current session (`EndOfStream.last_seq_no`). */
  private framesSent = 0;
  /** `EndOfStream` went out on the current session: its `EndOfTranscript` ends the stream. */
  private endOfStreamSent = false;
  /** The current session's latest `Warning` type (says why an unrequested `EndOfTranscript` came). */
  private lastWarning: string | undefined;

  constructor(
    private readonly options: SpeechmaticsAsrOptions,
    private readonly startMessage: string,
    private readonly inputSampleRate: SampleRate,
    call: CallContext,
  ) {
    this.logger = call.logger.child({ provider: PROVIDER, kind: 'asr' });
    this.session = new StreamingAsrSession<LiveSocket>({
      provider: PROVIDER,
      label: 'Speechmatics ASR',
      call,
      logger: this.logger,
      sampleRate: inputSampleRate,
      reconnect: { ...DEFAULT_RECONNECT_POLICY, ...options.reconnect },
      maxQueuedMs: options.maxQueuedMs ?? 10_000,
      maxReplayMs: options.maxReplayMs ?? 5000,
      finishTimeoutMs: options.finishTimeoutMs ?? 10_000,
      connect: (attempt) => this.connect(attempt),
      // Transcript times stay on the caller's audio clock: the new session starts at the oldest audio not final yet.
      onLinkReady: (_link, { startSamples }) => {
        this.framesSent = 0;
        this.endOfStreamSent = false;
        this.lastWarning = undefined;
        this.mapper.restart(samplesToMs(startSamples, inputSampleRate));
      },
      sendAudio: (link, samples) => {
        // Only frames that went out count: `last_seq_no` must not name audio the server never got.
        if (link.send(bytesFromPcm(samples))) this.framesSent++;
      },
      sendControl: (link) => link.send(JSON.stringify({ message: 'ForceEndOfUtterance' })),
      // The server sends the last finals and `EndOfTranscript`.
      sendEndOfInput: (link) => {
        this.endOfStreamSent = link.send(JSON.stringify({ message: 'EndOfStream', last_seq_no: this.framesSent }));
      },
      beforeFail: () => this.session.emit(this.mapper.flush()),
    });
  }

  /** Opens a socket (the key in the `Authorization` header), sends `StartRecognition`, resolves on `RecognitionStarted`. */
  private connect(attempt: LinkAttempt): Promise<LiveSocket> {
    const { apiKey: secret, connectTimeoutMs, additionalVocab } = this.options;
    const pingIntervalMs = this.options.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS;
    const pongTimeoutMs = this.options.pongTimeoutMs ?? DEFAULT_PONG_TIMEOUT_MS;
    const hasVocab = additionalVocab !== undefined && additionalVocab.length > 0;
    return connectLiveSocket({
      provider: PROVIDER,
      label: 'Speechmatics real-time ASR',
      url: this.options.url ?? DEFAULT_RT_URL,
      bearer: secret,
      timeoutMs: connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      signal: attempt.signal,
      classify: speechmaticsClassifiers(secret, 'real-time ASR'),
      handshake: {
        start: this.startMessage,
        what: 'start recognition',
        // A custom dictionary can take up to 15 s to load before RecognitionStarted (the SDK's docs).
        timeoutMs: connectTimeoutMs ?? (hasVocab ? VOCAB_START_TIMEOUT_MS : DEFAULT_CONNECT_TIMEOUT_MS),
        classify: (text, isBinary) => {
          if (isBinary) return 'ignore';
          const message = parseRtMessage(text);
          if (message.kind === 'started') return 'ready';
          return message.kind === 'error' ? providerErrorFromServerError(message.type, message.reason, secret) : 'ignore';
        },
      },
      logger: this.logger,
      // limits.mdx: "No audio or ping/pongs sent for 3 minutes" ends a session; a silent caller must not.
      ...(pingIntervalMs > 0 ? { keepalive: { kind: 'ping', intervalMs: pingIntervalMs, pongTimeoutMs } as const } : {}),
      onText: (text) => this.onMessage(text, attempt.onDrop),
      onDrop: attempt.onDrop,
    });
  }

  /** `drop` is the session's drop of the link that delivered `text`: it replaces that session. */
  private onMessage(text: string, drop: (error: ProviderError) => void): void {
    const message = parseRtMessage(text);
    switch (message.kind) {
      case 'transcript':
        this.session.emit(this.mapper.transcript(message.message));
        if (message.message.message === 'AddTranscript') this.session.discardReplayBefore(msToSamples(this.mapper.finalEndMs, this.inputSampleRate));
        return;
      case 'end_of_utterance':
        this.session.emit(this.mapper.endOfUtterance());
        return;
      case 'end_of_transcript':
        this.session.emit(this.mapper.flush());
        if (this.endOfStreamSent) {
          this.logger.debug('Speechmatics ASR session finished');
          void this.session.close();
          return;
        }
        // Not asked for (e.g. `duration_limit_exceeded`, which "triggers the same mechanism as receiving an
        // EndOfStream"): the server suspends the session, so it is replaced like a lost one and the call goes on.
        drop(
          new ProviderError(
            PROVIDER,
            'server',
            `Speechmatics ended the session without an EndOfStream${this.lastWarning === undefined ? '' : ` (after Warning ${this.lastWarning})`}`,
            { retryable: true, ...(this.lastWarning === undefined ? {} : { providerCode: this.lastWarning }) },
          ),
        );
        return;
      case 'error':
        // The server closes right after; the drop that follows decides between a new session and failing.
        this.logger.debug({ type: message.type }, 'Speechmatics error message');
        this.session.link?.report(providerErrorFromServerError(message.type, message.reason, this.options.apiKey));
        return;
      case 'warning':
        this.lastWarning = message.type.slice(0, 60);
        this.logger.warn({ type: message.type }, 'Speechmatics warning');
        return;
      case 'info':
        this.logger.debug({ type: message.type }, 'Speechmatics info');
        return;
      case 'invalid':
        this.session.reportUnexpected(message.reason);
        return;
      case 'started':
      case 'audio_added':
      case 'ignored':
        return;
    }
  }
}
