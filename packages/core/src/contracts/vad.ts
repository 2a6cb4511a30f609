import type { Closeable, SampleRate } from './common.js';

export interface VadCapabilities {
  readonly inputSampleRates: readonly SampleRate[];
}

export interface VadOptions {
  /** Speech probability above which a frame counts as speech. */
  readonly threshold: number;
  /** Silence that ends an utterance. */
  readonly minSilenceMs: number;
  /** Shorter bursts are not speech (coughs, clicks). */
  readonly minSpeechMs: number;
  /** Audio kept before the detected start, so the first syllable is not clipped. */
  readonly speechPadMs: number;
}

export type VadEvent =
  /** Speech confirmed (after `minSpeechMs`); `atMs` is where it began in the stream. */
  | { type: 'speech_start'; atMs: number }
  /** The utterance ended; `audio` holds it (with padding), PCM at the stream's rate. */
  | { type: 'speech_end'; atMs: number; audio: Int16Array }
  /** Speech shorter than `minSpeechMs` ended: not an utterance. */
  | { type: 'misfire'; atMs: number };

export interface VadStream extends Closeable {
  readonly sampleRate: SampleRate;
  /** Feed PCM; returns the events this audio produced, in order. */
  process(samples: Int16Array): Promise<VadEvent[]>;
  /** Forget the current utterance (e.g. after an interruption). */
  reset(): void;
}

export interface VadAdapter {
  readonly id: string;
  readonly capabilities: VadCapabilities;
  open(sampleRate: SampleRate, options?: Partial<VadOptions>): Promise<VadStream>;
  /**
   * Loads what its streams need (a model) now, so that the first call does not wait for it and a broken install
   * shows at start-up; rejects with a ProviderError. Optional: an adapter with nothing to load has none.
   */
  prepare?(): Promise<void>;
}
