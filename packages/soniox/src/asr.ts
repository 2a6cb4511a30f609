/**
 * `createSonioxAsr`: Soniox real-time STT over its WebSocket API as a core AsrAdapter.
 *
 * Transport: a plain `ws` client that sends `Authorization: Bearer <key>` on the upgrade (the form Soniox
 * requires from 2027-01-15) and never puts the key in the config message. The official `@soniox/node` SDK
 * cannot do that (it uses the global WebSocket, which takes no headers, and sends `api_key` in the config);
 * it is used for its types only.
 */
import type { Logger } from 'pino';
import { ProviderError, StreamingAsrSession, bytesFromPcm, connectLiveSocket, msToSamples, samplesToMs } from '@stsgate/core';
import type { AsrAdapter, AsrCapabilities, AsrStream, CallContext, LinkAttempt, LiveSocket, ReconnectPolicyOptions, SampleRate } from '@stsgate/core';
import { PROVIDER, providerErrorFromSoniox, sonioxClassifiers } from './errors.js';
import { TokenAccumulator } from './tokens.js';
import { DEFAULT_LANGUAGE_HINTS, DEFAULT_STT_MODEL, DEFAULT_STT_URL, MAX_ENDPOINT_DELAY_LIMITS, buildSttConfig, parseSttMessage } from './wire.js';
import type { SttConfigMessage, SttControlMessage } from './wire.js';

export interface SonioxAsrOptions {
  readonly apiKey: string;
  /** Default `wss://stt-rt.soniox.com/transcribe-websocket`; `ws://` works for local servers. */
  readonly url?: string;
  /** Default `stt-rt-v5`. */
  readonly model?: string;
  /** Default `['en']`; an empty list sends no hints. */
  readonly languageHints?: readonly string[];
  /** `max_endpoint_delay_ms`, 500..3000. Default 1000 (DEFAULT_MAX_ENDPOINT_DELAY_MS; Soniox's own default is 2000). */
  readonly maxEndpointDelayMs?: number;
  readonly contextText?: string;
  readonly contextTerms?: readonly string[];
  /** Rate of the audio the host pushes, default 8000 (AVR). */
  readonly sampleRate?: 8000 | 16000;
  /** While no audio flows, a `keepalive` goes out at least this often. Default 10000 (Soniox closes after 20 s). */
  readonly keepaliveIntervalMs?: number;
  /** Upgrade timeout per attempt. Default 10000. */
  readonly connectTimeoutMs?: number;
  /** From the end-of-audio frame to `finished`. Default 10000. */
  readonly finishTimeoutMs?: number;
  /** Audio held while the socket is not open (first connect, reconnect) or catching up; oldest dropped beyond it. Default 10000. */
  readonly maxQueuedMs?: number;
  /** Audio not yet final that is replayed into a new session after a drop. Default 5000. */
  readonly maxReplayMs?: number;
  readonly reconnect?: ReconnectPolicyOptions;
}

export const DEFAULT_KEEPALIVE_INTERVAL_MS = 10_000;

export const sonioxAsrCapabilities: AsrCapabilities = {
  inputSampleRates: [8000, 16000],
  encodings: ['pcm_s16le'],
  interimResults: true,
  endpointing: true,
  finalize: true,
  diarization: false,
};

export function createSonioxAsr(options: SonioxAsrOptions): AsrAdapter {
  const sampleRate: SampleRate = options.sampleRate ?? 8000;
  if (sampleRate !== 8000 && sampleRate !== 16000) throw new RangeError(`Soniox ASR sample rate must be 8000 or 16000, not ${String(sampleRate)}`);
  const delay = options.maxEndpointDelayMs;
  const { min, max } = MAX_ENDPOINT_DELAY_LIMITS;
  // Soniox refuses the whole session for a value out of range: fail at construction, not on every call.
  if (delay !== undefined && !(Number.isInteger(delay) && delay >= min && delay <= max)) {
    throw new RangeError(`Soniox maxEndpointDelayMs must be a whole number of ms in ${String(min)}..${String(max)}, not ${String(delay)}`);
  }
  return {
    id: PROVIDER,
    capabilities: sonioxAsrCapabilities,
    open(call: CallContext): Promise<AsrStream> {
      if (call.signal.aborted) {
        return Promise.reject(new ProviderError(PROVIDER, 'closed', 'the call ended before the ASR stream opened', { retryable: false }));
      }
      const config = buildSttConfig(
        {
          model: options.model ?? DEFAULT_STT_MODEL,
          sampleRate,
          languageHints: options.languageHints ?? DEFAULT_LANGUAGE_HINTS,
          maxEndpointDelayMs: options.maxEndpointDelayMs,
          contextText: options.contextText,
          contextTerms: options.contextTerms,
        },
        call.callId,
      );
      return Promise.resolve(new SonioxAsrProtocol(options, config, sampleRate, call).session);
    },
  };
}

/**
 * Audio that waited (the replay after a drop, what was queued while connecting) goes out at most this much faster
 * than real time: Soniox drops clients that send long bursts (§5.2).
 */
const CATCH_UP = { maxRate: 2, tickMs: 20, maxStepMs: 50 } as const;

/**
 * One call's Soniox protocol. Its `session` (core's `StreamingAsrSession`) is the host's stream and owns the
 * connection, the bounded queue of audio (and `finalize`) pushed before the socket is open or while it reconnects,
 * the replay of audio not final yet after a drop, the paced catch-up, the end of input and `close()`.
 */
class SonioxAsrProtocol {
  readonly session: StreamingAsrSession<LiveSocket>;
  private readonly logger: Logger;
  private readonly tokens = new TokenAccumulator();

  constructor(
    private readonly options: SonioxAsrOptions,
    private readonly config: SttConfigMessage,
    private readonly inputSampleRate: SampleRate,
    call: CallContext,
  ) {
    this.logger = call.logger.child({ provider: PROVIDER, kind: 'asr' });
    this.session = new StreamingAsrSession<LiveSocket>({
      provider: PROVIDER,
      label: 'Soniox',
      call,
      logger: this.logger,
      sampleRate: inputSampleRate,
      ...(options.reconnect === undefined ? {} : { reconnect: options.reconnect }),
      maxQueuedMs: options.maxQueuedMs ?? 10_000,
      maxReplayMs: options.maxReplayMs ?? 5000,
      catchUp: CATCH_UP,
      finishTimeoutMs: options.finishTimeoutMs ?? 10_000,
      connect: (attempt) => this.connect(attempt),
      onLinkReady: (link) => {
        link.send(JSON.stringify(this.config));
        this.logger.debug({ model: this.config.model, sampleRate: this.config.sample_rate }, 'Soniox session configured');
      },
      sendAudio: (link, samples) => link.send(bytesFromPcm(samples)),
      // One finalize in flight at a time: its `<fin>` ends the utterance.
      canFinalize: () => !this.tokens.finalizePending,
      sendControl: (link) => {
        if (this.tokens.finalizePending) return;
        link.send(JSON.stringify({ type: 'finalize' } satisfies SttControlMessage));
        this.tokens.finalizeRequested();
      },
      // The empty frame ends the session; the server answers with the last finals and `finished`.
      sendEndOfInput: (link) => {
        link.stopKeepalive();
        link.send('');
      },
      // Whatever is final is kept; the new session starts at the oldest audio that is not final yet.
      onDrop: () => this.session.emit(this.tokens.restart(samplesToMs(this.session.replayFrom, inputSampleRate))),
      beforeFail: () => this.session.emit(this.tokens.flush()),
    });
  }

  /** Opens a socket with the key in the `Authorization` header (never in a message). */
  private connect(attempt: LinkAttempt): Promise<LiveSocket> {
    return connectLiveSocket({
      provider: PROVIDER,
      label: 'Soniox',
      url: this.options.url ?? DEFAULT_STT_URL,
      bearer: this.options.apiKey,
      timeoutMs: this.options.connectTimeoutMs ?? 10_000,
      signal: attempt.signal,
      classify: sonioxClassifiers(this.options.apiKey),
      logger: this.logger,
      keepalive: { kind: 'message', intervalMs: Math.max(200, this.options.keepaliveIntervalMs ?? DEFAULT_KEEPALIVE_INTERVAL_MS), message: JSON.stringify({ type: 'keepalive' } satisfies SttControlMessage) },
      onText: (text) => this.onMessage(text),
      onDrop: attempt.onDrop,
    });
  }

  /** A frame of the current link (frames reach it only once the session has made the link current). */
  private onMessage(text: string): void {
    const message = parseSttMessage(text);
    switch (message.kind) {
      case 'invalid':
        this.session.reportUnexpected(message.reason);
        return;
      case 'error':
        // The server closes right after; the drop that follows decides between reconnecting and failing.
        this.logger.debug({ code: message.code }, 'Soniox error message');
        this.session.link?.report(providerErrorFromSoniox(message.code, message.message, { secret: this.options.apiKey }));
        return;
      case 'result': {
        const result = message.result;
        this.session.emit(this.tokens.push(result));
        if (result.final_audio_proc_ms !== undefined) {
          this.session.discardReplayBefore(this.session.linkStartSamples + msToSamples(result.final_audio_proc_ms, this.inputSampleRate));
        }
        if (result.finished === true) {
          this.session.emit(this.tokens.flush());
          this.logger.debug('Soniox session finished');
          void this.session.close();
        }
        return;
      }
    }
  }
}
