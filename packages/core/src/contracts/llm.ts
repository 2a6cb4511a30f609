import type { CallContext } from './common.js';

export interface ToolSpec {
  readonly name: string;
  readonly description: string;
  /** JSON Schema of the arguments object. */
  readonly parameters: Readonly<Record<string, unknown>>;
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
