// The IO: core's StreamingAsrSession (queue, reconnect and replay, end of input, close) and LiveSocket do the work.
import { ProviderError, StreamingAsrSession, bytesFromPcm, categoryForStatus, connectLiveSocket, msToSamples, sanitizeMessage } from '@stsgate/core';
import type { AsrAdapter, LiveSocket } from '@stsgate/core';
import { TranscriptMapper } from './mapping.js';
import { FINALIZE_MESSAGE, KEEPALIVE_MESSAGE, configMessage, parseServerMessage } from './wire.js';

export const PROVIDER = 'example-asr';
const LABEL = 'Example ASR';
const RATE = 8000; // AVR's rate: nothing to resample

export type ExampleAsrOptions = Readonly<{ apiKey: string; url: string; model: string; languageHints: readonly string[] }>;

export function createExampleAsr(options: ExampleAsrOptions): AsrAdapter {
  return {
    id: PROVIDER,
    capabilities: { inputSampleRates: [RATE], encodings: ['pcm_s16le'], interimResults: true, endpointing: true, finalize: true, diarization: false },
    async open(call) {
      if (call.signal.aborted) throw new ProviderError(PROVIDER, 'closed', 'the call ended before the ASR stream opened', { retryable: false });
      const logger = call.logger.child({ provider: PROVIDER, kind: 'asr' });
      const mapper = new TranscriptMapper();
      const onText = (text: string): void => {
        const message = parseServerMessage(text);
        if (typeof message === 'string') return session.reportUnexpected(message);
        if (message.error_code !== undefined) {
          // The server closes right after: the drop carries this error, and the session reconnects or fails on it.
          const detail = sanitizeMessage(`${LABEL} error ${message.error_code}: ${message.error_message ?? 'no message'}`, options.apiKey);
          return session.link?.report(new ProviderError(PROVIDER, categoryForStatus(message.error_code), detail));
        }
        session.emit(mapper.map(message));
        if (message.final_audio_proc_ms !== undefined) session.discardReplayBefore(session.linkStartSamples + msToSamples(message.final_audio_proc_ms, RATE));
        if (message.finished === true) {
          session.emit(mapper.flush());
          void session.close();
        }
      };
      const session = new StreamingAsrSession<LiveSocket>({
        provider: PROVIDER, label: LABEL, call, logger, sampleRate: RATE,
        maxQueuedMs: 10_000, maxReplayMs: 5000, catchUp: { maxRate: 2 }, finishTimeoutMs: 10_000,
        connect: (attempt) => connectLiveSocket({
          provider: PROVIDER, label: LABEL, url: options.url, bearer: options.apiKey, timeoutMs: 10_000, signal: attempt.signal, logger,
          keepalive: { kind: 'message', intervalMs: 10_000, message: KEEPALIVE_MESSAGE }, onText, onDrop: attempt.onDrop,
        }),
        onLinkReady: (link) => link.send(configMessage(options.model, RATE, options.languageHints, call.callId)),
        sendAudio: (link, samples) => link.send(bytesFromPcm(samples)),
        sendControl: (link) => link.send(FINALIZE_MESSAGE),
        // An empty frame ends the audio: the server sends the last finals and `finished`, then closes.
        sendEndOfInput: (link) => { link.stopKeepalive(); link.send(''); },
        // A drop ends the utterance (audio not final yet is replayed into the next connection); so does a failure.
        onDrop: () => session.emit(mapper.flush()),
        beforeFail: () => session.emit(mapper.flush()),
      });
      return session;
    },
  };
}
