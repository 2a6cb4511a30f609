import type { Logger } from 'pino';
import type { CallContext } from './common.js';

export interface ToolSpec {
  readonly name: string;
  readonly description: string;
  /** JSON Schema of the arguments object. */
  readonly parameters: Readonly<Record<string, unknown>>;
}

/** What a tool gets when it runs for a call. */
export interface ToolContext {
  readonly callId: string;
  readonly logger: Logger;
  /** Aborted when the call ends, and when the host gives up waiting for this tool (its timeout). */
  readonly signal: AbortSignal;
  /**
   * Resolves once the agent audio produced so far has been played to the caller (or the call ended). Call-control
   * tools await it so the agent's last words are not cut off.
   */
  untilAgentAudioHeard(): Promise<void>;
}

/**
 * The one tool contract between a host (the gateway's calls, its LLM route, the cascade) and the agent's tools:
 * the tools to declare, and how to run one. Never throws: a failure comes back as text for the model. Bounds its own
 * time (a tool that outlasts its timeout answers with an error text and has its `signal` aborted); a host may add a
 * limit of its own (`CallRuntimeOptions.toolTimeoutMs`).
 */
export interface ToolRunner {
  readonly specs: readonly ToolSpec[];
  run(name: string, argumentsJson: string, context: ToolContext): Promise<string>;
}

export type LlmMessage =
  | { role: 'system' | 'user'; content: string }
  | { role: 'assistant'; content: string; toolCalls?: readonly { id: string; name: string; argumentsJson: string }[] }
  | { role: 'tool'; toolCallId: string; content: string };

export interface LlmCapabilities {
  readonly streaming: boolean;
  readonly toolCalls: boolean;
}

export interface LlmRequest {
  readonly messages: readonly LlmMessage[];
  readonly tools?: readonly ToolSpec[];
}

export type LlmDelta =
  | { type: 'text'; text: string }
  | { type: 'tool_call'; id: string; name: string; argumentsJson: string }
  | { type: 'done'; finishReason: 'stop' | 'length' | 'tool_calls' | 'content_filter' | 'other' };

export interface LlmAdapter {
  readonly id: string;
  readonly capabilities: LlmCapabilities;
  /** Stream one completion; rejects (or the iterator throws) with a ProviderError. */
  chat(request: LlmRequest, call: CallContext): AsyncIterable<LlmDelta>;
}
