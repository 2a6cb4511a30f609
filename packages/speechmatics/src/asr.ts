/**
 * `createSpeechmaticsAsr`: the Speechmatics real-time API (WebSocket v2) as a core AsrAdapter.
 *
 * Auth is the API key in an `Authorization: Bearer` header on the upgrade (the spec's server-side form), so no
 * temporary-key round trip delays a call. A dropped session is replaced within the reconnect budget: the audio
 * that had not been transcribed final yet is replayed, and transcript times stay on the caller's audio clock.
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
        this.mapper.restart(samplesToMs(startSamples, inputSampleRate));
      },
      sendAudio: (link, samples) => {
        link.send(bytesFromPcm(samples));
        this.framesSent++;
      },
      sendControl: (link) => link.send(JSON.stringify({ message: 'ForceEndOfUtterance' })),
      // The server sends the last finals and `EndOfTranscript`.
      sendEndOfInput: (link) => link.send(JSON.stringify({ message: 'EndOfStream', last_seq_no: this.framesSent })),
      beforeFail: () => this.session.emit(this.mapper.flush()),
    });
  }

  /** Opens a socket (the key in the `Authorization` header), sends `StartRecognition`, resolves on `RecognitionStarted`. */
  private connect(attempt: LinkAttempt): Promise<LiveSocket> {
    const secret = this.options.apiKey;
    return connectLiveSocket({
      provider: PROVIDER,
      label: 'Speechmatics real-time ASR',
      url: this.options.url ?? DEFAULT_RT_URL,
      bearer: secret,
      timeoutMs: this.options.connectTimeoutMs ?? 10_000,
      signal: attempt.signal,
      classify: speechmaticsClassifiers(secret, 'real-time ASR'),
      handshake: {
        start: this.startMessage,
        what: 'start recognition',
        classify: (text, isBinary) => {
          if (isBinary) return 'ignore';
          const message = parseRtMessage(text);
          if (message.kind === 'started') return 'ready';
          return message.kind === 'error' ? providerErrorFromServerError(message.type, message.reason, secret) : 'ignore';
        },
      },
      logger: this.logger,
      onText: (text) => this.onMessage(text),
      onDrop: attempt.onDrop,
    });
  }

  private onMessage(text: string): void {
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
        this.logger.debug('Speechmatics ASR session finished');
        void this.session.close();
        return;
      case 'error':
        // The server closes right after; the drop that follows decides between a new session and failing.
        this.logger.debug({ type: message.type }, 'Speechmatics error message');
        this.session.link?.report(providerErrorFromServerError(message.type, message.reason, this.options.apiKey));
        return;
      case 'warning':
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
