import type { AudioEncoding, CallContext, Closeable, ErrorEvent, SampleRate } from './common.js';
import type { ToolSpec } from './llm.js';

export interface StsCapabilities {
  /** PCM rates the session accepts; the host resamples caller audio (8 kHz) to the first it can. */
  readonly inputSampleRates: readonly SampleRate[];
  /** Rates the session may emit agent audio at; the host resamples to 8 kHz. */
  readonly outputSampleRates: readonly SampleRate[];
  /** Provider wire encodings (informative: sessions always exchange PCM with the host). */
  readonly encodings: readonly AudioEncoding[];
  /** The provider decides when the caller's turn ends (no host VAD needed). */
  readonly serverTurnDetection: boolean;
  readonly userTranscripts: boolean;
  readonly agentTranscripts: boolean;
  /** `truncate()` tells the provider how much of a reply the caller heard. */
  readonly truncation: boolean;
  readonly toolCalls: boolean;
  readonly dtmf: boolean;
}

/** Everything a session reports, in order. Audio is PCM at the session's `outputSampleRate`. */
export type StsEvent =
  /**
   * The caller started speaking: the host interrupts the agent if its audio is audible or queued, or a reply is still
   * streaming in (audio without its `response_done` yet: a gap in it interrupts too). `onsetAgoMs`: how much caller
   * audio (delivered to the session) lies between where the speech began and now, when the provider locates the
   * onset (OpenAI's `audio_start_ms`, a VAD segment's start): the detection delay the caller lived through.
   */
  | { type: 'speech_started'; onsetAgoMs?: number }
  | { type: 'speech_stopped' }
  | { type: 'audio'; responseId: string; samples: Int16Array }
  /** All audio of this response has been emitted. */
  | { type: 'response_done'; responseId: string }
  /** The provider itself cancelled its reply (e.g. Speechmatics ResponseInterrupted). */
  | { type: 'interrupted'; responseId?: string }
  | { type: 'transcript'; role: 'user' | 'agent'; text: string; final: boolean }
  | { type: 'tool_call'; callId: string; name: string; argumentsJson: string }
  /**
   * The provider ended the conversation on purpose (e.g. the agent said goodbye); no events follow. The host lets
   * the queued agent audio play, then ends the call normally.
   */
  | { type: 'ended'; reason: string }
  /** How long the stages of one agent turn took (a composed agent reports it; the host records it). */
  | { type: 'turn_metrics'; metrics: TurnMetrics }
  | ErrorEvent;

/**
 * Timings of one agent turn, in ms, each with the provider it measures (absent when the turn had no such stage).
 * `endOfSpeech` is when the caller stopped talking (on the audio clock of what the session received).
 */
export interface TurnMetrics {
  /** End of the caller's speech to the final transcript that ended the turn. */
  readonly asrFinal?: { readonly provider: string; readonly ms: number };
  /** LLM request to its first token. */
  readonly llmFirstToken?: { readonly provider: string; readonly ms: number };
  /** First text sent to TTS to its first audio. */
  readonly ttsFirstAudio?: { readonly provider: string; readonly ms: number };
  /** End of the caller's speech to the first agent audio the session emitted. */
  readonly endOfSpeechToFirstAudioMs?: number;
}

export interface StsSession extends Closeable {
  readonly inputSampleRate: SampleRate;
  readonly outputSampleRate: SampleRate;
  /** Caller audio, PCM at `inputSampleRate`. Never blocks; the adapter buffers or drops with a log. */
  sendAudio(samples: Int16Array): void;
  /** A keypad digit from AVR Core (`dtmf_digit`). */
  sendDtmf(digit: string): void;
  /** The caller interrupted `responseId` after hearing `heardMs` of it. Only with `capabilities.truncation`. */
  truncate(responseId: string, heardMs: number): void;
  submitToolResult(callId: string, output: string): void;
  /** Single consumer. Ends after `close()` or a fatal error event. */
  readonly events: AsyncIterable<StsEvent>;
}

/** What the host hands an STS adapter for one call. */
export interface StsCallContext extends CallContext {
  /**
   * Tools the agent may call (the host runs them and answers with `submitToolResult`). Adapters
   * without `capabilities.toolCalls` ignore them.
   */
  readonly tools: readonly ToolSpec[];
}

export interface StsAdapter {
  readonly id: string;
  readonly capabilities: StsCapabilities;
  /** Open a provider session for one call. Rejects with a ProviderError. */
  connect(call: StsCallContext): Promise<StsSession>;
}
