/** What a cascade agent is made of and how it behaves; `DEFAULT_CASCADE_BEHAVIOUR` holds the telephony defaults. */
import type { AsrAdapter, LlmAdapter, ReconnectPolicyOptions, StsCallContext, TtsAdapter, VadAdapter, VadOptions } from '@stsgate/core';
import type { ChunkerOptions } from './chunker.js';

/** How the agent opens the call. */
export type Greeting =
  | { readonly type: 'none' }
  /** The LLM's opening line (a request with the instructions only). */
  | { readonly type: 'llm' }
  /** Spoken verbatim; `{{from}}`, `{{to}}`, `{{uuid}}` and other call metadata are substituted. */
  | { readonly type: 'text'; readonly text: string };

export interface CascadeBehaviour {
  readonly greeting: Greeting;
  /** The user message keypad digits become; `{{digit}}` is replaced by the digits pressed. */
  readonly dtmfMessage: string;
  /** Digits pressed within this of each other form one message (`#` ends it at once and is left out). */
  readonly dtmfInterDigitMs: number;
  /** After the VAD heard the caller stop, how long the ASR may take to end the turn itself. */
  readonly endpointMaxWaitMs: number;
  /** After asking the ASR to finalize, how long its final words may take. */
  readonly finalizeGraceMs: number;
  /** Caller speech over the agent must hold this much speech (VAD) to interrupt it; also the VAD's minimum speech. */
  readonly bargeInMinSpeechMs: number;
  /** ...and, when above 0, contain this many recognised words (coughs and line echo do not interrupt). */
  readonly bargeInMinWords: number;
  /** A reply longer than this (characters) is cut there. */
  readonly maxReplyChars: number;
  /** A reply still being written after this long (ms) is cut there. */
  readonly maxReplyMs: number;
  /** LLM rounds of one reply that may end in tool calls. */
  readonly maxToolRounds: number;
  /** Conversation messages kept (besides the instructions). */
  readonly maxHistoryMessages: number;
  readonly llmFirstTokenTimeoutMs: number;
  readonly llmIdleTimeoutMs: number;
  readonly ttsFirstAudioTimeoutMs: number;
  readonly ttsIdleTimeoutMs: number;
  /** Retries of a request that failed before it produced anything (LLM, TTS). */
  readonly retry: ReconnectPolicyOptions;
  /** A server asking to wait longer than this before a retry is not retried. */
  readonly maxRetryWaitMs: number;
  /** TTS requests in flight ahead of the chunk playing. */
  readonly ttsPrefetch: number;
  readonly chunker: ChunkerOptions;
  readonly vadOptions: Partial<VadOptions>;
  /** Sent with every TTS request (the adapter's own default when unset). */
  readonly voice?: string | undefined;
  readonly language?: string | undefined;
}

export interface CascadeSettings extends CascadeBehaviour {
  readonly asr: AsrAdapter;
  readonly llm: LlmAdapter;
  readonly tts: TtsAdapter;
  readonly vad: VadAdapter;
  /** The system prompt of a call. */
  readonly instructions: (call: StsCallContext) => Promise<string>;
}

export const DEFAULT_CASCADE_DTMF_MESSAGE = 'The caller pressed {{digit}} on the keypad.';

export const DEFAULT_CASCADE_BEHAVIOUR: CascadeBehaviour = {
  greeting: { type: 'llm' },
  dtmfMessage: DEFAULT_CASCADE_DTMF_MESSAGE,
  dtmfInterDigitMs: 1500,
  endpointMaxWaitMs: 1000,
  finalizeGraceMs: 600,
  bargeInMinSpeechMs: 250,
  bargeInMinWords: 0,
  maxReplyChars: 2000,
  maxReplyMs: 60_000,
  maxToolRounds: 3,
  maxHistoryMessages: 50,
  llmFirstTokenTimeoutMs: 8000,
  llmIdleTimeoutMs: 10_000,
  ttsFirstAudioTimeoutMs: 5000,
  ttsIdleTimeoutMs: 5000,
  retry: { maxAttempts: 2, firstDelayMs: 0, baseDelayMs: 200, maxDelayMs: 1000, jitter: 0.3, stableAfterMs: 30_000 },
  maxRetryWaitMs: 2000,
  ttsPrefetch: 1,
  chunker: {},
  vadOptions: {},
};
