import type { AudioEncoding, CallContext, Closeable, SampleRate } from './common.js';

export interface TtsCapabilities {
  readonly outputSampleRates: readonly SampleRate[];
  readonly encodings: readonly AudioEncoding[];
  /** Text can be pushed incrementally into one synthesis with `streamText` (otherwise: one request per sentence). */
  readonly streamingInput: boolean;
}

export interface TtsRequest {
  readonly text: string;
  /** Overrides of the adapter's configured voice, language and model, for the adapters that have them. */
  readonly voice?: string;
  readonly language?: string;
  readonly model?: string;
}

/** The settings of a synthesis whose text arrives later, piece by piece. */
export type TtsStreamRequest = Omit<TtsRequest, 'text'>;

/**
 * One synthesis fed incrementally (an LLM reply as it streams): text pieces are spoken in order, as one
 * utterance, with the provider's own prosody across piece boundaries.
 */
export interface TtsTextStream extends Closeable {
  readonly outputSampleRate: SampleRate;
  /** Appends text (any size: a word, a clause). Ignored after `endText()` or `close()`. */
  pushText(text: string): void;
  /** No more text: `audio` ends once the pushed text has been spoken. */
  endText(): void;
  /**
   * PCM chunks at `outputSampleRate`, single consumer. Throws a ProviderError on failure; ends after `endText()`
   * once everything is spoken, or at once after `close()` (which cancels the synthesis upstream).
   */
  readonly audio: AsyncIterable<Int16Array>;
}

export interface TtsAdapter {
  readonly id: string;
  readonly capabilities: TtsCapabilities;
  /**
   * Synthesize `text`; yields PCM chunks at `outputSampleRate` as they arrive. Aborting `call.signal`
   * (or returning from the iterator) cancels the upstream request. Errors are ProviderErrors.
   */
  synthesize(request: TtsRequest, call: CallContext): { readonly outputSampleRate: SampleRate; readonly audio: AsyncIterable<Int16Array> };
  /**
   * Present exactly when `capabilities.streamingInput` is true: opens a synthesis whose text is pushed as it is
   * produced. Aborting `call.signal` cancels it like `close()`.
   */
  streamText?(request: TtsStreamRequest, call: CallContext): TtsTextStream;
}
