import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { z } from 'zod';
import {
  AVR_ROUTES,
  AVR_UUID_HEADER,
  DEFAULT_RECONNECT_POLICY,
  ReconnectBudget,
  envInt,
  envText,
  runWithReconnect,
  toProviderError,
  type CallContext,
  type LlmAdapter,
  type LlmDelta,
  type LlmMessage,
  type LlmRequest,
  type ProviderError,
  type RetryDecision,
  type ToolContext,
  type ToolRunner,
} from '@stsgate/core';
import { checkInstructionFile, instructionSourceFromEnv, instructionsEnv, resolveInstructions } from '@stsgate/agent';
import type { InstructionSource } from '@stsgate/agent';
import { AVR_CALL_ID_PATTERN, bodyDeadline, drained, type HttpRouteDeps } from './http-routes.js';

/**
 * AVR's pipeline-mode LLM contract, generic over any core LlmAdapter:
 * `POST /prompt-stream` with `{"uuid", "message", "messages": [{"role", "content"}]}` (and `X-UUID`); the answer is
 * 200 `text/event-stream` whose body is `{"type":"text","content":"..."}` objects, one per write and no delimiter
 * (AVR Core splits concatenated JSON), streamed as the model produces them. The end of the body is the end of the turn.
 *
 * Decisions:
 * - The system prompt (InstructionSource, templated per request with callId = uuid) always comes first. `system`
 *   items in core's history stay system messages, in place: they come from core (operator text), not the caller.
 *   Empty messages are dropped; the history is bounded (last N messages, then a character cap).
 * - Tools run here, server-side: the results go back to the model, which phrases the answer (AVR's own LLM adapters
 *   speak the raw tool result instead). `untilAgentAudioHeard` resolves at once: in pipeline mode AVR Core plays the
 *   audio and we cannot know when the caller heard it, so a hang-up tool may cut the last words short.
 * - A retryable failure while a round's stream opens (429, 5xx, connectivity) is retried with core's budget, only
 *   within RETRY_WINDOW_MS of the request. Errors before the first body byte are a JSON `{"message"}` with a status;
 *   after it the body is ended (the status line is gone) and the failure logged.
 * - A reply longer than maxReplyChars or maxReplyMs is cut (a warning) and the body ended normally; a request that
 *   produced no text within maxReplyMs is a 504.
 */
export interface LlmRouteOptions {
  readonly instructions: InstructionSource;
  /** The agent's tools (a `ToolSet`, or any other ToolRunner). */
  readonly tools?: ToolRunner | undefined;
  readonly maxHistoryMessages?: number;
  readonly maxReplyChars?: number;
  readonly maxReplyMs?: number;
}

const DEFAULT_LLM_SYSTEM_PROMPT = 'You are a helpful assistant answering a phone call. Keep answers short.';
const DEFAULT_MAX_HISTORY_MESSAGES = 50;
const DEFAULT_MAX_REPLY_CHARS = 4000;
const DEFAULT_MAX_REPLY_MS = 30_000;
/** About 8k tokens of history; the oldest messages go first. */
const MAX_HISTORY_CHARS = 32_000;
const MAX_LLM_BODY_BYTES = 1024 * 1024;
/** LLM requests per turn: the first one plus up to 3 follow-ups after tool calls. */
const MAX_LLM_ROUNDS = 4;
/** Retries happen only this soon after the request arrived (a caller is waiting on the line). */
const RETRY_WINDOW_MS = 10_000;
const RETRY_POLICY = { ...DEFAULT_RECONNECT_POLICY, maxAttempts: 3, firstDelayMs: 100, baseDelayMs: 250, maxDelayMs: 2000 };

/**
 * `SYSTEM_PROMPT` (avr-llm-openai's name) and `LLM_INSTRUCTIONS` / `LLM_URL_INSTRUCTIONS` / `LLM_FILE_INSTRUCTIONS`
 * (+ `INSTRUCTIONS_URL_TIMEOUT_MS`), `LLM_MAX_HISTORY_MESSAGES`, `LLM_MAX_REPLY_CHARS`, `LLM_MAX_REPLY_MS`.
 */
export const llmRouteEnvSchema = z.object({
  ...instructionsEnv('LLM').shape,
  SYSTEM_PROMPT: envText(),
  LLM_MAX_HISTORY_MESSAGES: envInt(1, 1000),
  LLM_MAX_REPLY_CHARS: envInt(10, 100_000),
  LLM_MAX_REPLY_MS: envInt(1000, 600_000),
});

/**
 * Options from the env. Instructions by priority: LLM_INSTRUCTIONS (a URL value counts as LLM_URL_INSTRUCTIONS),
 * LLM_URL_INSTRUCTIONS, LLM_FILE_INSTRUCTIONS (checked now: a ConfigError if unusable), SYSTEM_PROMPT, the default.
 */
export function llmRouteOptionsFromEnv(env: z.output<typeof llmRouteEnvSchema>): Omit<LlmRouteOptions, 'tools'> {
  const instructions = instructionSourceFromEnv(env, env.SYSTEM_PROMPT ?? DEFAULT_LLM_SYSTEM_PROMPT, 'LLM');
  checkInstructionFile(instructions, 'llm route');
  return {
    instructions,
    ...(env.LLM_MAX_HISTORY_MESSAGES === undefined ? {} : { maxHistoryMessages: env.LLM_MAX_HISTORY_MESSAGES }),
    ...(env.LLM_MAX_REPLY_CHARS === undefined ? {} : { maxReplyChars: env.LLM_MAX_REPLY_CHARS }),
    ...(env.LLM_MAX_REPLY_MS === undefined ? {} : { maxReplyMs: env.LLM_MAX_REPLY_MS }),
  };
}


const llmRequestSchema = z
  .looseObject({
    // Either is optional context: a malformed one is ignored rather than failing the turn.
    uuid: z.string().optional().catch(undefined),
    message: z.string().optional().catch(undefined),
    messages: z
      .array(
        z.looseObject({
          role: z.enum(['system', 'user', 'assistant'], { error: 'must be "user", "assistant" or "system"' }),
          content: z.string({ error: 'must be a string' }),
        }),
        { error: 'must be an array of {"role", "content"}' },
      )
      .optional(),
  })
  .refine((body) => body.messages !== undefined || body.message !== undefined, {
    message: 'messages is required: expected a JSON body {"uuid": "...", "messages": [{"role": "user", "content": "..."}]}',
  });

type HistoryMessage = Extract<LlmMessage, { role: 'system' | 'user' | 'assistant' }>;
type StopReason = 'client_gone' | 'max_chars' | 'max_duration';

export function registerLlmRoute(app: FastifyInstance, llm: { id: string; adapter: LlmAdapter }, deps: HttpRouteDeps, options: LlmRouteOptions): void {
  checkInstructionFile(options.instructions, 'llm route');
  const settings: Settings = {
    instructions: options.instructions,
    tools: options.tools !== undefined && llm.adapter.capabilities.toolCalls && options.tools.specs.length > 0 ? options.tools : undefined,
    maxHistoryMessages: options.maxHistoryMessages ?? DEFAULT_MAX_HISTORY_MESSAGES,
    maxReplyChars: options.maxReplyChars ?? DEFAULT_MAX_REPLY_CHARS,
    maxReplyMs: options.maxReplyMs ?? DEFAULT_MAX_REPLY_MS,
  };
  if (options.tools !== undefined && settings.tools === undefined && options.tools.specs.length > 0) {
    deps.logger.warn({ provider: llm.id }, 'the LLM adapter does not support tool calls: /prompt-stream runs without tools');
  }
  app.post(AVR_ROUTES.llm, { onRequest: deps.admit, preParsing: bodyDeadline(deps.bodyTimeoutMs), bodyLimit: MAX_LLM_BODY_BYTES }, async (request, reply) => {
    const parsed = llmRequestSchema.safeParse(request.body);
    if (!parsed.success) {
      deps.metrics.httpRequests.inc({ route: 'llm', outcome: 'bad_request' });
      const issue = parsed.error.issues[0];
      const where = issue === undefined || issue.path.length === 0 ? '' : `${issue.path.join('.')}: `;
      return reply.code(400).send({ message: `${where}${issue?.message ?? 'invalid request body'}` });
    }
    const body = parsed.data;
    const header = request.headers[AVR_UUID_HEADER];
    const uuid =
      typeof header === 'string' && AVR_CALL_ID_PATTERN.test(header) ? header : body.uuid !== undefined && AVR_CALL_ID_PATTERN.test(body.uuid) ? body.uuid : randomUUID();
    // The history, when present, already ends with `message` (which n8n-style adapters read alone).
    const items =
      body.messages !== undefined && body.messages.length > 0
        ? body.messages
        : body.message === undefined
          ? []
          : [{ role: 'user' as const, content: body.message }];
    const history = boundHistory(
      items.map(({ role, content }) => ({ role, content })),
      settings.maxHistoryMessages,
    );
    deps.metrics.httpStreams.inc({ route: 'llm' });
    reply.hijack();
    try {
      await answer(reply.raw, history, uuid, llm, settings, deps);
    } finally {
      deps.metrics.httpStreams.dec({ route: 'llm' });
    }
  });
}

interface Settings {
  readonly instructions: InstructionSource;
  readonly tools: ToolRunner | undefined;
  readonly maxHistoryMessages: number;
  readonly maxReplyChars: number;
  readonly maxReplyMs: number;
}

/** The last `maxMessages` non-empty messages, then the newest ones that fit MAX_HISTORY_CHARS (the newest always, its tail). */
function boundHistory(messages: readonly HistoryMessage[], maxMessages: number): HistoryMessage[] {
  const recent = messages.filter((message) => message.content.trim() !== '').slice(-maxMessages);
  const kept: HistoryMessage[] = [];
  let chars = 0;
  for (let i = recent.length - 1; i >= 0; i--) {
    const message = recent[i] as HistoryMessage;
    if (chars + message.content.length > MAX_HISTORY_CHARS) {
      if (kept.length === 0) kept.push({ ...message, content: message.content.slice(-MAX_HISTORY_CHARS) });
      break;
    }
    chars += message.content.length;
    kept.push(message);
  }
  return kept.reverse();
}

async function answer(
  res: FastifyReply['raw'],
  history: readonly HistoryMessage[],
  uuid: string,
  llm: { id: string; adapter: LlmAdapter },
  settings: Settings,
  deps: HttpRouteDeps,
): Promise<void> {
  const started = Date.now();
  const abort = new AbortController();
  const logger = deps.logger.child({ callId: uuid, route: 'llm' });
  const call: CallContext = { callId: uuid, metadata: {}, logger, signal: abort.signal };
  let stopped: StopReason | undefined;
  const stop = (reason: StopReason) => {
    stopped ??= reason;
    abort.abort();
  };
  res.on('close', () => {
    if (!res.writableFinished) stop('client_gone');
  });
  const timer = setTimeout(() => stop('max_duration'), settings.maxReplyMs);
  let written = 0;
  let endsWithSpace = true;
  let roundStart = false;

  /** One JSON object per write, as the deltas arrive; cuts the reply at maxReplyChars (at a word boundary). */
  const write = async (delta: string) => {
    // Text after a tool round follows what was already said: keep a space between the two for core's sentence splitter.
    let text = roundStart && !endsWithSpace && !/^\s/.test(delta) ? ` ${delta}` : delta;
    roundStart = false;
    if (written + text.length > settings.maxReplyChars) {
      text = cutAtWord(text, settings.maxReplyChars - written);
      stop('max_chars');
    }
    if (text.length === 0 || res.destroyed) return;
    if (!res.headersSent) res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
    written += text.length;
    endsWithSpace = /\s$/.test(text);
    // Backpressure: stop pulling from the provider while the client is not reading.
    if (!res.write(JSON.stringify({ type: 'text', content: text }))) await drained(res, abort.signal);
  };

  const toolContext: ToolContext = { callId: uuid, logger, signal: abort.signal, untilAgentAudioHeard: () => Promise.resolve() };
  const budget = new WindowedBudget(started + RETRY_WINDOW_MS);
  let failure: ProviderError | undefined;
  let rounds = 0;
  let toolCalls = 0;
  try {
    const system = await resolveInstructions(settings.instructions, call);
    logger.debug({ history }, 'LLM request');
    const messages: LlmMessage[] = [{ role: 'system', content: system }, ...history];
    const tools = settings.tools;
    while (stopped === undefined) {
      rounds += 1;
      const request: LlmRequest = { messages, ...(tools === undefined ? {} : { tools: tools.specs }) };
      const stream = await runWithReconnect(() => openStream(llm.adapter, request, call), {
        provider: llm.id,
        budget,
        signal: abort.signal,
        onRetry: (error, delayMs, attempt) => logger.warn({ err: error, delayMs, attempt }, 'LLM request failed; retrying'),
      });
      roundStart = true;
      let text = '';
      const calls: { id: string; name: string; argumentsJson: string }[] = [];
      let next = stream.first;
      while (!next.done) {
        const delta = next.value;
        if (delta.type === 'text') {
          text += delta.text;
          await write(delta.text);
        } else if (delta.type === 'tool_call') {
          calls.push({ id: delta.id, name: delta.name, argumentsJson: delta.argumentsJson });
        }
        if (stopped !== undefined) break;
        next = await stream.iterator.next();
      }
      await stream.iterator.return?.();
      if (stopped !== undefined || calls.length === 0) break;
      if (tools === undefined || rounds >= MAX_LLM_ROUNDS) {
        logger.warn({ tools: calls.map((c) => c.name), rounds }, tools === undefined ? 'the model called a tool but none is offered; ignored' : 'too many tool rounds; the turn ends here');
        break;
      }
      // The model speaks again with the results (AVR's adapters would speak the raw result instead).
      messages.push({ role: 'assistant', content: text, toolCalls: calls });
      for (const toolCall of calls) {
        toolCalls += 1;
        const result = await tools.run(toolCall.name, toolCall.argumentsJson, toolContext);
        messages.push({ role: 'tool', toolCallId: toolCall.id, content: result });
      }
    }
  } catch (error) {
    if (stopped === undefined) {
      failure = toProviderError(llm.id, error);
      deps.metrics.errors.inc({ kind: `provider_${failure.category}`, provider: failure.provider });
      logger.error({ err: failure, bytesSent: res.headersSent }, 'LLM provider error');
    }
  } finally {
    clearTimeout(timer);
    abort.abort();
  }

  const durationMs = Date.now() - started;
  if (stopped === 'client_gone' || res.destroyed) {
    logger.debug({ durationMs }, 'LLM request ended: the client went away');
    deps.metrics.httpRequests.inc({ route: 'llm', outcome: 'client_gone' });
    return;
  }
  if (stopped !== undefined) logger.warn({ reason: stopped, chars: written, durationMs, limit: stopped === 'max_chars' ? settings.maxReplyChars : settings.maxReplyMs }, 'LLM reply cut');
  if (!res.headersSent && (failure !== undefined || stopped === 'max_duration')) {
    // Nothing was said yet: the status line still carries the failure (as in the ASR/TTS routes).
    const [status, reason] =
      failure === undefined
        ? [504, `no reply within ${settings.maxReplyMs} ms`]
        : [failure.category === 'invalid_request' ? 400 : failure.category === 'timeout' ? 504 : 502, failure.message];
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify({ message: `LLM provider error: ${reason}` }));
  } else {
    if (!res.headersSent) res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
    res.end();
  }
  logger.debug({ rounds, toolCalls, chars: written, durationMs }, 'LLM reply done');
  deps.metrics.httpRequests.inc({ route: 'llm', outcome: failure !== undefined ? 'provider_error' : (stopped ?? 'ok') });
}

interface OpenStream {
  readonly iterator: AsyncIterator<LlmDelta>;
  readonly first: IteratorResult<LlmDelta>;
}

/** One attempt: the request is sent and its first delta received (where 429s, 5xx and connection failures show). */
async function openStream(adapter: LlmAdapter, request: LlmRequest, call: CallContext): Promise<OpenStream> {
  const iterator = adapter.chat(request, call)[Symbol.asyncIterator]();
  return { iterator, first: await iterator.next() };
}

/** Core's reconnect budget, refusing any retry whose wait would end past `deadline` (epoch ms). */
class WindowedBudget extends ReconnectBudget {
  constructor(private readonly deadline: number) {
    super(RETRY_POLICY);
  }

  override next(error: ProviderError): RetryDecision {
    const decision = super.next(error);
    if (decision.retry && Date.now() + decision.delayMs > this.deadline) {
      return { retry: false, reason: `no retry possible within ${RETRY_WINDOW_MS} ms of the request` };
    }
    return decision;
  }
}

/** At most `room` characters of `text`, ending at a word boundary when it has to be cut inside a word. */
function cutAtWord(text: string, room: number): string {
  if (room <= 0) return '';
  if (text.length <= room || /\s/.test(text.charAt(room))) return text.slice(0, room);
  const head = text.slice(0, room);
  const space = head.search(/\s\S*$/);
  return space < 0 ? '' : head.slice(0, space);
}
