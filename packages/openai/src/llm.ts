/** `createOpenAiLlm`: Chat Completions streaming (OpenAI or any compatible server) as a core LlmAdapter. */
import OpenAI from 'openai';
import type { ChatCompletionChunk, ChatCompletionMessageParam, ChatCompletionTool } from 'openai/resources/chat/completions';
import type { Logger } from 'pino';
import { ProviderError } from '@stsgate/core';
import type { CallContext, LlmAdapter, LlmDelta, LlmMessage, LlmRequest, ToolSpec } from '@stsgate/core';
import { PROVIDER } from './errors.js';
import { cancelled, providerErrorFromSdk } from './rest-errors.js';

export const DEFAULT_LLM_MODEL = 'gpt-4o-mini';

export interface OpenAiLlmOptions {
  readonly apiKey: string;
  /** e.g. `http://ollama:11434/v1`; default OpenAI. */
  readonly baseURL?: string;
  readonly model: string;
  /** Not sent to reasoning models (`isReasoningModel`): they accept only the default (1) and reject any other value. */
  readonly temperature?: number;
  /**
   * Sent as `max_completion_tokens` to OpenAI and to any server for a reasoning model (`isReasoningModel`: they
   * reject `max_tokens`), else as `max_tokens` to a custom `baseURL` (what most OpenAI-compatible servers understand).
   */
  readonly maxTokens?: number;
  readonly logger: Logger;
  /** Per request (default 60 000 ms). */
  readonly timeoutMs?: number;
}

type FinishReason = Extract<LlmDelta, { type: 'done' }>['finishReason'];

/**
 * OpenAI's reasoning models (o1, o3, o4-mini..., the gpt-5 family), by name, an optional `vendor/` prefix aside
 * (OpenRouter style). Chat Completions rejects `temperature` other than 1 for them (400 unsupported_value) and
 * `max_tokens` (400 unsupported_parameter: use `max_completion_tokens`). A name test, as there is no capability
 * endpoint: a model wrongly counted here only loses its temperature; one wrongly left out fails every request.
 */
export function isReasoningModel(model: string): boolean {
  return /^(o\d|gpt-5)/i.test(model.slice(model.lastIndexOf('/') + 1));
}

export function toChatMessages(messages: readonly LlmMessage[]): ChatCompletionMessageParam[] {
  return messages.map((message): ChatCompletionMessageParam => {
    switch (message.role) {
      case 'system':
        return { role: 'system', content: message.content };
      case 'user':
        return { role: 'user', content: message.content };
      case 'assistant':
        if (message.toolCalls !== undefined && message.toolCalls.length > 0) {
          return {
            role: 'assistant',
            content: message.content === '' ? null : message.content,
            tool_calls: message.toolCalls.map((call) => ({ id: call.id, type: 'function', function: { name: call.name, arguments: call.argumentsJson } })),
          };
        }
        return { role: 'assistant', content: message.content };
      case 'tool':
        return { role: 'tool', tool_call_id: message.toolCallId, content: message.content };
    }
  });
}

export function toChatTools(tools: readonly ToolSpec[]): ChatCompletionTool[] {
  return tools.map((tool) => ({
    type: 'function',
    function: { name: tool.name, description: tool.description, parameters: { ...tool.parameters } },
  }));
}

function finishReason(reason: string | null | undefined): FinishReason {
  switch (reason) {
    case 'stop':
    case 'length':
    case 'tool_calls':
    case 'content_filter':
      return reason;
    case 'function_call':
      return 'tool_calls';
    default:
      return 'other';
  }
}

interface PartialCall {
  id: string;
  name: string;
  args: string;
}

/**
 * Streaming state of one completion: text deltas pass through; tool-call fragments are collected by index and
 * reported whole, in index order, before `done`.
 */
export class ChatStreamAccumulator {
  private readonly calls = new Map<number, PartialCall>();
  private finish: string | null | undefined;
  private text = false;
  private refusal = '';

  /** @param fallbackIdPrefix names a call the server gave no id (`<prefix>_<index>`): unique per completion, so ids never collide across turns. */
  constructor(private readonly fallbackIdPrefix = 'call') {}

  push(chunk: ChatCompletionChunk): LlmDelta[] {
    const out: LlmDelta[] = [];
    for (const choice of chunk.choices) {
      if (choice.index !== 0) continue;
      const delta = choice.delta;
      if (typeof delta.content === 'string' && delta.content !== '') {
        this.text = true;
        out.push({ type: 'text', text: delta.content });
      }
      if (typeof delta.refusal === 'string') this.refusal += delta.refusal;
      for (const fragment of delta.tool_calls ?? []) {
        let call = this.calls.get(fragment.index);
        if (call === undefined) {
          call = { id: '', name: '', args: '' };
          this.calls.set(fragment.index, call);
        }
        if (fragment.id) call.id = fragment.id;
        // Only the first fragment names the function (some compatible servers repeat it).
        if (fragment.function?.name && call.name === '') call.name = fragment.function.name;
        if (fragment.function?.arguments) call.args += fragment.function.arguments;
      }
      if (choice.finish_reason) this.finish = choice.finish_reason;
    }
    return out;
  }

  /** What the model refused with (`delta.refusal`), if it did. */
  get refusalText(): string {
    return this.refusal;
  }

  /**
   * The collected tool calls and `done` (call at the end of the stream). Throws when the completion gave the caller
   * nothing usable: tool calls in a stream that ended before its finish_reason (retryable: cut short, their arguments
   * may be incomplete JSON), a refusal, or the token limit reached before any text.
   */
  end(): LlmDelta[] {
    // The SDK ends a stream quietly at the end of the body, [DONE] or not. Text without a finish_reason stands (some
    // compatible servers never send one); tool calls are never run from it.
    if ((this.finish === undefined || this.finish === null) && this.calls.size > 0) {
      throw new ProviderError(PROVIDER, 'connectivity', 'chat completion stream ended before its finish_reason (cut short): its tool calls are not run');
    }
    if (this.refusal !== '') throw new ProviderError(PROVIDER, 'invalid_request', 'the model refused to answer', { retryable: false });
    const reason = finishReason(this.finish);
    if (reason === 'length' && !this.text) {
      throw new ProviderError(PROVIDER, 'invalid_request', 'the model reached its token limit (maxTokens) before any text', { retryable: false });
    }
    const out: LlmDelta[] = [];
    // A call cut by the token limit has incomplete arguments: never run it.
    const calls = reason === 'length' ? [] : [...this.calls.keys()].sort((a, b) => a - b);
    for (const index of calls) {
      const call = this.calls.get(index) as PartialCall;
      if (call.name === '') continue;
      out.push({ type: 'tool_call', id: call.id || `${this.fallbackIdPrefix}_${index}`, name: call.name, argumentsJson: call.args === '' ? '{}' : call.args });
    }
    this.calls.clear();
    out.push({ type: 'done', finishReason: reason });
    return out;
  }
}

export function createOpenAiLlm(options: OpenAiLlmOptions): LlmAdapter {
  const client = new OpenAI({
    apiKey: options.apiKey,
    ...(options.baseURL === undefined ? {} : { baseURL: options.baseURL }),
    maxRetries: 0, // core owns retries
    timeout: options.timeoutMs ?? 60_000,
  });
  const reasoning = isReasoningModel(options.model);
  const tokensField = options.baseURL === undefined || reasoning ? 'max_completion_tokens' : 'max_tokens';
  const temperature = reasoning ? undefined : options.temperature;
  if (reasoning && options.temperature !== undefined) {
    options.logger.warn({ provider: PROVIDER, model: options.model }, 'temperature is not sent: this reasoning model accepts only the default');
  }
  let completions = 0;

  async function* chat(request: LlmRequest, call: CallContext): AsyncGenerator<LlmDelta> {
    const logger = call.logger.child({ provider: PROVIDER });
    const tools = request.tools ?? [];
    let stream: AsyncIterable<ChatCompletionChunk>;
    try {
      stream = await client.chat.completions.create(
        {
          model: options.model,
          messages: toChatMessages(request.messages),
          stream: true,
          ...(tools.length === 0 ? {} : { tools: toChatTools(tools) }),
          ...(temperature === undefined ? {} : { temperature }),
          ...(options.maxTokens === undefined ? {} : { [tokensField]: options.maxTokens }),
        },
        { signal: call.signal },
      );
    } catch (error) {
      throw providerErrorFromSdk(error, options.apiKey, 'chat completion', call.signal.aborted);
    }
    const accumulator = new ChatStreamAccumulator(`call_stsgate${++completions}`);
    try {
      for await (const chunk of stream) {
        for (const delta of accumulator.push(chunk)) yield delta;
      }
    } catch (error) {
      throw providerErrorFromSdk(error, options.apiKey, 'chat completion stream', call.signal.aborted);
    }
    // The SDK ends a stream quietly when it is aborted: that is a cancellation, not a finished answer.
    if (call.signal.aborted) throw cancelled('chat completion');
    if (accumulator.refusalText !== '') logger.debug({ refusal: accumulator.refusalText }, 'the model refused');
    const tail = accumulator.end();
    logger.debug({ model: options.model, toolCalls: tail.length - 1 }, 'chat completion done');
    yield* tail;
  }

  return {
    id: PROVIDER,
    capabilities: { streaming: true, toolCalls: true },
    chat,
  };
}
