import type { AudioEncoding, CallContext, Closeable, ErrorEvent, SampleRate } from './common.js';

export interface AsrCapabilities {
  readonly inputSampleRates: readonly SampleRate[];
  readonly encodings: readonly AudioEncoding[];
  readonly interimResults: boolean;
  /** The provider marks the end of an utterance (otherwise the host's VAD does). */
  readonly endpointing: boolean;
  /** `finalize()` forces pending words final. */
  readonly finalize: boolean;
  readonly diarization: boolean;
}

export type AsrEvent =
  | { type: 'speech_started' }
  | { type: 'partial'; text: string }
  /** Text that will not change. */
  | { type: 'final'; text: string; startMs?: number; endMs?: number; confidence?: number }
  /** The caller finished a turn; `text` is the whole utterance's final text. */
  | { type: 'end_of_utterance'; text: string }
  | ErrorEvent;

export interface AsrStream extends Closeable {
  readonly inputSampleRate: SampleRate;
  pushAudio(samples: Int16Array): void;
  finalize(): void;
  /** No more audio will come; pending text is flushed and `events` ends. */
  endInput(): void;
  readonly events: AsyncIterable<AsrEvent>;
}

export interface AsrAdapter {
  readonly id: string;
  readonly capabilities: AsrCapabilities;
  open(call: CallContext): Promise<AsrStream>;
}
