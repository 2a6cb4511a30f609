import type { Logger } from 'pino';
import type { ProviderError } from '../errors/provider-error.js';

export type SampleRate = 8000 | 16000 | 24000 | 48000;
export const SAMPLE_RATES: readonly SampleRate[] = [8000, 16000, 24000, 48000];

/** Wire encodings a provider may speak. In core, audio always travels as PCM Int16Array samples. */
export type AudioEncoding = 'pcm_s16le' | 'mulaw' | 'alaw';

export interface AudioFormat {
  readonly sampleRate: SampleRate;
  readonly encoding: AudioEncoding;
}

/** What every provider-facing resource shares: an owner closes it, and close is idempotent. */
export interface Closeable {
  close(): Promise<void>;
}

/** Dependencies every adapter receives from its host (the gateway, or a custom build). */
export interface AdapterContext {
  readonly logger: Logger;
}

/** What the host wants to know of a call's provider sessions beyond their events (it counts them). */
export interface CallObserver {
  /** A provider session of the call is being re-established (a dropped socket, a retryable error). */
  reconnecting(provider: string): void;
}

/** Per-call context: the AVR call uuid and the connect query string (`from`, `to`, custom keys). */
export interface CallContext extends AdapterContext {
  readonly callId: string;
  readonly metadata: Readonly<Record<string, string>>;
  /** Aborted when the call ends; adapters stop connecting or retrying. */
  readonly signal: AbortSignal;
  readonly observer?: CallObserver;
}

export type ErrorEvent = { type: 'error'; error: ProviderError; /** the stream has ended because of it */ fatal: boolean };
