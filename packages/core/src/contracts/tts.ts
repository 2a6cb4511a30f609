import type { AudioEncoding, CallContext, SampleRate } from './common.js';

export interface TtsCapabilities {
  readonly outputSampleRates: readonly SampleRate[];
  readonly encodings: readonly AudioEncoding[];
  /** Text can be pushed incrementally into one synthesis (otherwise: one request per sentence). */
  readonly streamingInput: boolean;
}

export interface TtsRequest {
  readonly text: string;
  readonly voice?: string;
  readonly language?: string;
}

export interface TtsAdapter {
  readonly id: string;
  readonly capabilities: TtsCapabilities;
  /**
   * Synthesize `text`; yields PCM chunks at `outputSampleRate` as they arrive. Aborting `call.signal`
   * (or returning from the iterator) cancels the upstream request. Errors are ProviderErrors.
   */
  synthesize(request: TtsRequest, call: CallContext): { readonly outputSampleRate: SampleRate; readonly audio: AsyncIterable<Int16Array> };
}
