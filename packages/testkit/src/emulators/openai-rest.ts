/**
 * OpenAI REST emulator (docs/reference/provider-protocols.md §1.9–1.10): plain http on 127.0.0.1:<random port>.
 *
 *   const rest = await startOpenAiRestEmulator({ apiKey: 'sk-test', chat: ({ messages }) => ({ text: 'Hello.' }) });
 *   const openai = new OpenAI({ apiKey: 'sk-test', baseURL: rest.baseUrl, maxRetries: 0 });
 *   const stream = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages, stream: true });
 *   const speech = await openai.audio.speech.create({ model: 'gpt-4o-mini-tts', voice: 'alloy', input: 'Hi', response_format: 'pcm' });
 *   rest.requests  // every request, parsed; rest.queueFault({ route: 'chat', action: { type: 'status', status: 429 } })
 *   await rest.close();
 *
 * API (stable; append-only):
 *   startOpenAiRestEmulator(options: OpenAiRestEmulatorOptions): Promise<OpenAiRestEmulator>
 *   emulator.baseUrl (…/v1), port, requests: RestRequestRecord[], queueFault(fault), waitFor(probe),
 *   waitForRequest(route, predicate?), close()
 *
 * POST /v1/chat/completions
 * - `Authorization: Bearer <apiKey>` else 401 `{error:{message,type:'invalid_request_error',param:null,code:'invalid_api_key'}}`
 *   (no key: code null, "You didn't provide an API key...").
 * - Validates the top-level arguments (one that the SDK's `ChatCompletionCreateParams` lacks: 400 "Unrecognized
 *   request argument supplied: x", as for speech), model, messages (roles; a `tool` message must answer a preceding
 *   assistant `tool_calls` id, and every such id must be answered, with the real 400 messages), tools
 *   (`{type:'function', function:{name}}`), stream_options only with stream. Reasoning models (`o1`, `o3`, `o4-mini`...,
 *   `gpt-5*`; a `vendor/` prefix aside) reject `temperature` other than 1 (400 unsupported_value) and `max_tokens`
 *   (400 unsupported_parameter), as the live API does.
 * - `stream: true` -> `text/event-stream` of `data: <chat.completion.chunk>\n\n`: a role chunk, content deltas
 *   (word by word; token-like with `latency.tokensPerSecond`), tool-call deltas keyed by `index` (id/type/name only
 *   in the first delta of each index, then `arguments` pieces), a finish chunk (`delta: {}`, finish_reason), a
 *   `choices: []` usage chunk with `stream_options.include_usage` (other chunks then carry `usage: null`), and
 *   `data: [DONE]`.
 *   Non-stream -> one `chat.completion`.
 * - Script: `chat(request) -> { text?, toolCalls?: [{name, arguments, id?}], finishReason?, refusal? }` (may be async).
 *   `refusal` answers as the API does when the model refuses: `delta.refusal` pieces (`message.refusal`, content null).
 *   Default: "You said: <last user text>." (or "Done." after a tool result, "Hello, how can I help you?" with no user message).
 *
 * POST /v1/audio/speech
 * - Validates model (tts-1, tts-1-hd, gpt-4o-mini-tts*; others 404 model_not_found), input (1..4096 chars), voice,
 *   speed (0.25..4), instructions (not with tts-1*), stream_format (`sse` not with tts-1*), unknown arguments.
 * - `response_format: 'pcm'` -> raw 24 kHz s16le mono, chunked (`timing.speechChunkMs` per write);
 *   `'wav'` -> the same with a RIFF header; `stream_format: 'sse'` (pcm) -> `speech.audio.delta` / `speech.audio.done`
 *   events. Other formats (mp3 default, opus, aac, flac) -> 400 `unsupported_by_emulator`.
 * - Script: `speech(request) -> Int16Array (24 kHz) | undefined`. Default: a 440 Hz tone of 60 ms per character
 *   (300..10000 ms). `speed` is validated, not applied.
 *
 * Latency (`options.latency`, default none: chunks every `timing.chunkIntervalMs`, the first at once). Errors and
 * faults without `afterChunks` are never delayed.
 * - Chat (streaming): `firstTokenMs` sends the first content or tool-call delta (the finish chunk of an empty reply)
 *   this many ms after the request. The headers and the role chunk go out at once, as the real API sends them early
 *   (a tool-call-only reply has no separate role chunk). `tokensPerSecond` paces the deltas after it and the finish
 *   chunk (1000 / tokensPerSecond ms apart; the usage chunk and [DONE] follow after `chunkIntervalMs`) and makes the
 *   deltas token-like: words with their leading space and punctuation on its own (`"Hi, you."` -> `Hi` `,` ` you`
 *   `.`), tool-call arguments in 4-character pieces. Non-stream answers are not delayed.
 * - Speech: `firstByteMs` starts the response (headers and first chunk) this many ms after the request;
 *   `realTimeFactor` paces the body at that fraction of real time (each chunk follows the previous one after its
 *   audio length × realTimeFactor, e.g. 0.5: twice as fast as playback) instead of every `chunkIntervalMs`.
 *
 * Faults (queued, FIFO, optionally per route, `times` default 1): `{type:'status', status, body?, retryAfter?}` (401/429/
 * 500 default bodies; 429 sends `retry-after`), `{type:'stall', afterChunks?}` (no response at all, or stop after N
 * body chunks while keeping the connection open), `{type:'abort', afterChunks?}` (destroy the socket before the
 * response, or after N chunks), `{type:'end', afterChunks?}` (end the response cleanly after N chunks: no finish chunk,
 * no [DONE]), `{type:'error_event', afterChunks?, error?}` (after N chunks, `data: {"error":{...}}` and the end of
 * the response, as the API reports a failure mid-stream; default a server_error), `{type:'insufficient_quota'}` (429
 * with the API's insufficient_quota body: billing, not a rate limit; no retry-after).
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { ChatCompletionCreateParamsBase } from 'openai/resources/chat/completions';
import {
  ChangeWaiters,
  closeServer,
  isRecord,
  jsonTypeName,
  listenOnLoopback,
  randomId,
  silentLogger,
  TimerSet,
  tone,
  asJson,
  defaultOpenAiErrorBody,
  redactKey,
  type JsonObject,
  type JsonValue,
  type WaitOptions,
} from './common.js';
import { pcmBytes } from './realtime-audio.js';

// ---- public types ----------------------------------------------------------------------------------------------------

export interface ChatCompletionRequest {
  readonly model: string;
  readonly messages: readonly JsonObject[];
  readonly tools: readonly JsonObject[];
  readonly stream: boolean;
  /** The whole parsed body. */
  readonly body: JsonObject;
}

export interface ScriptedToolCall {
  readonly name: string;
  readonly arguments: string;
  /** Default: a random `call_...`. */
  readonly id?: string;
}

export interface ChatScriptReply {
  readonly text?: string;
  readonly toolCalls?: readonly ScriptedToolCall[];
  /** Default: `tool_calls` when there are tool calls, else `stop`. */
  readonly finishReason?: 'stop' | 'length' | 'tool_calls' | 'content_filter';
  /** The model refuses with this text (instead of `text`). */
  readonly refusal?: string;
}

export interface SpeechRequest {
  readonly model: string;
  readonly input: string;
  readonly voice: string | { readonly id: string };
  readonly responseFormat: 'pcm' | 'wav';
  readonly streamFormat: 'audio' | 'sse';
  readonly speed: number;
  readonly instructions?: string;
  readonly body: JsonObject;
}

export type RestRoute = 'chat' | 'speech';

export type RestFaultAction =
  | { readonly type: 'status'; readonly status: number; readonly body?: JsonValue; readonly retryAfter?: string }
  | { readonly type: 'stall'; readonly afterChunks?: number }
  | { readonly type: 'abort'; readonly afterChunks?: number }
  | { readonly type: 'end'; readonly afterChunks?: number }
  | { readonly type: 'error_event'; readonly afterChunks?: number; readonly error?: JsonObject }
  | { readonly type: 'insufficient_quota' };

export interface RestFault {
  /** Route the fault applies to (default: the next request of any route). */
  readonly route?: RestRoute;
  readonly action: RestFaultAction;
  /** Number of matching requests it applies to (default 1; Infinity for all). */
  readonly times?: number;
}

export interface RestRequestRecord {
  readonly method: string;
  readonly path: string;
  readonly route: RestRoute | 'other';
  readonly headers: IncomingHttpHeaders;
  /** Parsed JSON body (null when empty or not JSON). */
  readonly body: JsonValue;
  readonly receivedAt: number;
  /** Response status once the head was written. */
  status: number | undefined;
  /** Whether the response ended normally (not stalled/aborted/closed by the client). */
  completed: boolean;
  /** `Date.now()` when the last byte of a completed response was written. */
  completedAt: number | undefined;
}

/** Provider latency (see the header comment). */
export interface OpenAiRestLatency {
  /** Chat: request to the first content/tool-call delta (default: `chunkIntervalMs` after the role chunk). */
  readonly firstTokenMs?: number;
  /** Chat: token-like deltas at this rate (default: word by word, every `chunkIntervalMs`). */
  readonly tokensPerSecond?: number;
  /** Speech: request to the first audio byte (default 0). */
  readonly firstByteMs?: number;
  /** Speech: body pacing as synthesis time per audio time (default: every `chunkIntervalMs`). */
  readonly realTimeFactor?: number;
}

export interface OpenAiRestEmulatorOptions {
  readonly apiKey: string;
  readonly chat?: (request: ChatCompletionRequest) => ChatScriptReply | Promise<ChatScriptReply>;
  readonly speech?: (request: SpeechRequest) => Int16Array | undefined;
  readonly faults?: readonly RestFault[];
  readonly logger?: Logger;
  readonly timing?: {
    /** Pause between streamed chunks (default 5 ms). */
    readonly chunkIntervalMs?: number;
    /** Audio per speech body chunk (default 100 ms). */
    readonly speechChunkMs?: number;
  };
  readonly latency?: OpenAiRestLatency;
}

export interface OpenAiRestEmulator {
  readonly baseUrl: string;
  readonly port: number;
  readonly requests: readonly RestRequestRecord[];
  queueFault(fault: RestFault): void;
  waitFor<T>(probe: () => T | undefined | null | false, options?: WaitOptions): Promise<T>;
  waitForRequest(route: RestRoute, predicate?: (request: RestRequestRecord) => boolean, options?: WaitOptions): Promise<RestRequestRecord>;
  close(): Promise<void>;
}

// ---- errors ------------------------------------------------------------------------------------------------------------

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly errorType = 'invalid_request_error',
  ) {
    super(message);
  }

  body(): JsonValue {
    return { error: { message: this.message, type: this.errorType, param: this.param, code: this.code } };
  }
}

function quoteList(values: readonly string[]): string {
  const quoted = values.map((value) => `'${value}'`);
  if (quoted.length <= 2) return quoted.join(' and ');
  return `${quoted.slice(0, -1).join(', ')}, and ${quoted[quoted.length - 1] as string}`;
}

function expectString(value: unknown, param: string): string {
  if (typeof value !== 'string') {
    throw new HttpError(400, `Invalid type for '${param}': expected a string, but got ${jsonTypeName(value)} instead.`, param, 'invalid_type');
  }
  return value;
}

function expectEnum<const T extends string>(value: unknown, param: string, values: readonly T[]): T {
  const text = expectString(value, param);
  const found = values.find((candidate) => candidate === text);
  if (found === undefined) {
    throw new HttpError(400, `Invalid value: '${text}'. Supported values are: ${quoteList(values)}.`, param, 'invalid_value');
  }
  return found;
}

function missing(param: string): HttpError {
  return new HttpError(400, `Missing required parameter: '${param}'.`, param, 'missing_required_parameter');
}

// ---- chat ---------------------------------------------------------------------------------------------------------------

/** What the API sends mid-stream when the completion fails on its side. */
const STREAM_SERVER_ERROR: JsonObject = {
  message: 'The server had an error while processing your request. Sorry about that!',
  type: 'server_error',
  param: null,
  code: null,
};

/** The API's 429 for an account out of credit (not a rate limit: waiting does not help). */
const INSUFFICIENT_QUOTA_ERROR: JsonObject = {
  message:
    'You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.',
  type: 'insufficient_quota',
  param: null,
  code: 'insufficient_quota',
};

const ROLES = ['system', 'assistant', 'user', 'function', 'tool', 'developer'] as const;

/**
 * Every top-level argument of the SDK's `ChatCompletionCreateParams`, as the real API accepts them; the Record
 * type makes the compiler check the list both ways against the installed SDK.
 */
const CHAT_ARGUMENTS: Readonly<Record<keyof ChatCompletionCreateParamsBase, true>> = {
  messages: true,
  model: true,
  audio: true,
  frequency_penalty: true,
  function_call: true,
  functions: true,
  logit_bias: true,
  logprobs: true,
  max_completion_tokens: true,
  max_tokens: true,
  metadata: true,
  modalities: true,
  moderation: true,
  n: true,
  parallel_tool_calls: true,
  prediction: true,
  presence_penalty: true,
  prompt_cache_key: true,
  prompt_cache_options: true,
  prompt_cache_retention: true,
  reasoning_effort: true,
  response_format: true,
  safety_identifier: true,
  seed: true,
  service_tier: true,
  stop: true,
  store: true,
  stream: true,
  stream_options: true,
  temperature: true,
  tool_choice: true,
  tools: true,
  top_logprobs: true,
  top_p: true,
  user: true,
  verbosity: true,
  web_search_options: true,
};

/** Reasoning models (o-series, gpt-5 family), by name as the API has them (a `vendor/` prefix aside). */
function isReasoningModel(model: string): boolean {
  return /^(o\d|gpt-5)/i.test(model.slice(model.lastIndexOf('/') + 1));
}

/** The live API's answers to sampling parameters a reasoning model does not take. */
function checkReasoningParameters(body: JsonObject): void {
  const temperature = body.temperature;
  if (typeof temperature === 'number' && temperature !== 1) {
    throw new HttpError(
      400,
      `Unsupported value: 'temperature' does not support ${String(temperature)} with this model. Only the default (1) value is supported.`,
      'temperature',
      'unsupported_value',
    );
  }
  if (body.max_tokens !== undefined && body.max_tokens !== null) {
    throw new HttpError(
      400,
      "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
      'max_tokens',
      'unsupported_parameter',
    );
  }
}

function parseChatRequest(body: JsonObject): ChatCompletionRequest {
  for (const key of Object.keys(body)) {
    if (!Object.hasOwn(CHAT_ARGUMENTS, key)) throw new HttpError(400, `Unrecognized request argument supplied: ${key}`);
  }
  if (body.model === undefined) throw new HttpError(400, 'you must provide a model parameter');
  const model = expectString(body.model, 'model');
  if (isReasoningModel(model)) checkReasoningParameters(body);
  if (body.messages === undefined) throw missing('messages');
  if (!Array.isArray(body.messages)) {
    throw new HttpError(400, `Invalid type for 'messages': expected an array, but got ${jsonTypeName(body.messages)} instead.`, 'messages', 'invalid_type');
  }
  if (body.messages.length === 0) {
    throw new HttpError(400, "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.", 'messages', 'empty_array');
  }
  const messages = body.messages.map((message, index): JsonObject => {
    const param = `messages[${String(index)}]`;
    if (!isRecord(message)) {
      throw new HttpError(400, `Invalid type for '${param}': expected an object, but got ${jsonTypeName(message)} instead.`, param, 'invalid_type');
    }
    if (message.role === undefined) throw missing(`${param}.role`);
    expectEnum(message.role, `${param}.role`, ROLES);
    return message as JsonObject;
  });
  checkToolMessages(messages);
  const tools = body.tools === undefined || body.tools === null ? [] : parseTools(body.tools);
  const stream = body.stream === true;
  if (body.stream_options !== undefined && body.stream_options !== null && !stream) {
    throw new HttpError(400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.", 'stream_options');
  }
  return { model, messages, tools, stream, body };
}

function checkToolMessages(messages: readonly JsonObject[]): void {
  let open: { index: number; ids: Set<string> } | undefined;
  messages.forEach((message, index) => {
    if (message.role === 'tool') {
      const id = typeof message.tool_call_id === 'string' ? message.tool_call_id : undefined;
      if (open === undefined || id === undefined || !open.ids.has(id)) {
        throw new HttpError(
          400,
          "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.",
          `messages.[${String(index)}].role`,
        );
      }
      open.ids.delete(id);
      if (open.ids.size === 0) open = undefined;
      return;
    }
    if (open !== undefined) throw unanswered(open);
    if (message.role === 'assistant' && Array.isArray(message.tool_calls) && message.tool_calls.length > 0) {
      const ids = new Set<string>();
      for (const call of message.tool_calls) if (isRecord(call) && typeof call.id === 'string') ids.add(call.id);
      open = { index, ids };
    }
  });
  if (open !== undefined) throw unanswered(open);
}

function unanswered(open: { index: number; ids: Set<string> }): HttpError {
  return new HttpError(
    400,
    `An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: ${[...open.ids].join(', ')}`,
    `messages.[${String(open.index)}].role`,
  );
}

function parseTools(value: JsonValue): JsonObject[] {
  if (!Array.isArray(value)) {
    throw new HttpError(400, `Invalid type for 'tools': expected an array, but got ${jsonTypeName(value)} instead.`, 'tools', 'invalid_type');
  }
  return value.map((tool, index) => {
    const param = `tools[${String(index)}]`;
    if (!isRecord(tool)) throw new HttpError(400, `Invalid type for '${param}': expected an object.`, param, 'invalid_type');
    if (tool.type === undefined) throw missing(`${param}.type`);
    expectEnum(tool.type, `${param}.type`, ['function', 'custom']);
    if (tool.type === 'function') {
      if (!isRecord(tool.function)) throw missing(`${param}.function`);
      if (tool.function.name === undefined) throw missing(`${param}.function.name`);
      expectString(tool.function.name, `${param}.function.name`);
    }
    return tool as JsonObject;
  });
}

function defaultChatReply(request: ChatCompletionRequest): ChatScriptReply {
  const last = request.messages[request.messages.length - 1];
  if (last?.role === 'tool') return { text: 'Done.' };
  const user = [...request.messages].reverse().find((message) => message.role === 'user');
  if (user === undefined) return { text: 'Hello, how can I help you?' };
  const content = user.content;
  const text =
    typeof content === 'string'
      ? content
      : Array.isArray(content)
        ? content.map((part) => (isRecord(part) && typeof part.text === 'string' ? part.text : '')).join('')
        : '';
  return { text: `You said: ${text}.` };
}

function splitPieces(text: string): string[] {
  return text.match(/\S+\s*|\s+/g) ?? [];
}

/** Token-like pieces: words with their leading whitespace, punctuation on its own (joined back they are `text`). */
function splitTokens(text: string): string[] {
  return text.match(/\s*[\p{L}\p{N}'’]+|\s*[^\s\p{L}\p{N}'’]|\s+$/gu) ?? [];
}

/** Tool-call arguments in about one token (4 characters) per piece. */
function splitTokenArguments(args: string): string[] {
  return args.match(/[\s\S]{1,4}/g) ?? [];
}

function splitArguments(args: string): string[] {
  if (args.length === 0) return [];
  const size = Math.ceil(args.length / Math.min(3, args.length));
  const out: string[] = [];
  for (let i = 0; i < args.length; i += size) out.push(args.slice(i, i + size));
  return out;
}

function estimateTokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}

// ---- speech -------------------------------------------------------------------------------------------------------------

const SPEECH_KEYS = ['model', 'input', 'voice', 'instructions', 'response_format', 'speed', 'stream_format'];
const SPEECH_VOICES = ['alloy', 'ash', 'ballad', 'coral', 'echo', 'fable', 'onyx', 'nova', 'sage', 'shimmer', 'verse', 'marin', 'cedar'];

function parseSpeechRequest(body: JsonObject): SpeechRequest {
  for (const key of Object.keys(body)) {
    if (!SPEECH_KEYS.includes(key)) throw new HttpError(400, `Unrecognized request argument supplied: ${key}`);
  }
  if (body.model === undefined) throw missing('model');
  const model = expectString(body.model, 'model');
  if (!/^(tts-1(-hd)?|gpt-4o-mini-tts)/.test(model)) {
    throw new HttpError(404, `The model \`${model}\` does not exist or you do not have access to it.`, null, 'model_not_found');
  }
  const legacy = model.startsWith('tts-1');
  if (body.input === undefined) throw missing('input');
  const input = expectString(body.input, 'input');
  if (input.length > 4096) {
    throw new HttpError(
      400,
      `Invalid 'input': string too long. Expected a string with maximum length 4096, but got a string with length ${String(input.length)} instead.`,
      'input',
      'string_above_max_length',
    );
  }
  if (input.length === 0) {
    throw new HttpError(400, "Invalid 'input': empty string. Expected a string with minimum length 1, but got an empty string instead.", 'input', 'empty_string');
  }
  if (body.voice === undefined) throw missing('voice');
  let voice: string | { readonly id: string };
  if (isRecord(body.voice) && typeof body.voice.id === 'string') voice = { id: body.voice.id };
  else voice = expectEnum(body.voice, 'voice', SPEECH_VOICES);
  const format = body.response_format === undefined ? 'mp3' : expectEnum(body.response_format, 'response_format', ['mp3', 'opus', 'aac', 'flac', 'wav', 'pcm']);
  if (format !== 'pcm' && format !== 'wav') {
    throw new HttpError(400, `The stsgate emulator only produces 'pcm' and 'wav', not '${format}'.`, 'response_format', 'unsupported_by_emulator');
  }
  let speed = 1;
  if (body.speed !== undefined) {
    if (typeof body.speed !== 'number') {
      throw new HttpError(400, `Invalid type for 'speed': expected a number, but got ${jsonTypeName(body.speed)} instead.`, 'speed', 'invalid_type');
    }
    if (body.speed < 0.25 || body.speed > 4) {
      const below = body.speed < 0.25;
      throw new HttpError(
        400,
        `Invalid 'speed': decimal ${below ? 'below minimum' : 'above maximum'} value. Expected a value ${below ? '>= 0.25' : '<= 4'}, but got ${String(body.speed)} instead.`,
        'speed',
        below ? 'decimal_below_min_value' : 'decimal_above_max_value',
      );
    }
    speed = body.speed;
  }
  let instructions: string | undefined;
  if (body.instructions !== undefined) {
    instructions = expectString(body.instructions, 'instructions');
    if (legacy) throw new HttpError(400, `Instructions are not supported for the model '${model}'.`, 'instructions');
  }
  const streamFormat = body.stream_format === undefined ? 'audio' : expectEnum(body.stream_format, 'stream_format', ['audio', 'sse']);
  if (streamFormat === 'sse' && legacy) throw new HttpError(400, `stream_format 'sse' is not supported for the model '${model}'.`, 'stream_format');
  if (streamFormat === 'sse' && format !== 'pcm') {
    throw new HttpError(400, "The stsgate emulator streams SSE speech only with response_format 'pcm'.", 'response_format', 'unsupported_by_emulator');
  }
  return { model, input, voice, responseFormat: format, streamFormat, speed, body, ...(instructions === undefined ? {} : { instructions }) };
}

function wavHeader(dataBytes: number, rate: number): Buffer {
  const header = Buffer.alloc(44);
  header.write('RIFF', 0, 'ascii');
  header.writeUInt32LE(36 + dataBytes, 4);
  header.write('WAVE', 8, 'ascii');
  header.write('fmt ', 12, 'ascii');
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20);
  header.writeUInt16LE(1, 22);
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36, 'ascii');
  header.writeUInt32LE(dataBytes, 40);
  return header;
}

// ---- server ----------------------------------------------------------------------------------------------------------------

export async function startOpenAiRestEmulator(options: OpenAiRestEmulatorOptions): Promise<OpenAiRestEmulator> {
  const logger = options.logger ?? silentLogger();
  const chunkIntervalMs = options.timing?.chunkIntervalMs ?? 5;
  const speechChunkMs = options.timing?.speechChunkMs ?? 100;
  const firstTokenMs = options.latency?.firstTokenMs;
  const tokensPerSecond = options.latency?.tokensPerSecond;
  if (tokensPerSecond !== undefined && !(tokensPerSecond > 0)) {
    throw new RangeError(`latency.tokensPerSecond must be > 0, got ${String(tokensPerSecond)}`);
  }
  const firstByteMs = Math.max(0, options.latency?.firstByteMs ?? 0);
  const realTimeFactor = options.latency?.realTimeFactor;
  const waiters = new ChangeWaiters();
  const timers = new TimerSet();
  const requests: RestRequestRecord[] = [];
  const faults: { fault: RestFault; remaining: number }[] = (options.faults ?? []).map((fault) => ({ fault, remaining: fault.times ?? 1 }));

  const takeFault = (route: RestRoute | 'other'): RestFaultAction | undefined => {
    const entry = faults.find((candidate) => candidate.fault.route === undefined || candidate.fault.route === route);
    if (entry === undefined) return undefined;
    entry.remaining -= 1;
    if (entry.remaining <= 0) faults.splice(faults.indexOf(entry), 1);
    return entry.fault.action;
  };

  /**
   * Writes body chunks, chunk `i` not before `notBefore(i)` (a performance.now() time, asked once chunk i-1 is out),
   * honouring stall/abort-after-N faults and client disconnects.
   */
  const stream = (
    response: ServerResponse,
    record: RestRequestRecord,
    chunks: readonly (string | Buffer)[],
    cut: RestFaultAction | undefined,
    notBefore: (index: number) => number,
  ): void => {
    let index = 0;
    let dueAt = notBefore(0);
    let timer: NodeJS.Timeout | undefined;
    response.on('close', () => {
      timers.cancel(timer);
      waiters.notify();
    });
    const limit = cut !== undefined && cut.type !== 'status' && cut.type !== 'insufficient_quota' ? (cut.afterChunks ?? 0) : Infinity;
    const step = (): void => {
      timer = undefined;
      if (response.destroyed) return;
      const waitMs = dueAt - performance.now();
      if (waitMs > 0) {
        // Also after a timer that fired early (Node timers can, by up to 1 ms).
        timer = timers.after(waitMs, step);
        return;
      }
      if (index >= limit && cut !== undefined && cut.type !== 'status' && cut.type !== 'insufficient_quota') {
        logger.debug({ path: record.path, fault: cut.type, after: index }, 'openai rest emulator cut the stream');
        if (cut.type === 'abort') response.socket?.destroy();
        if (cut.type === 'end' || cut.type === 'error_event') {
          const error = cut.type === 'error_event' ? (cut.error ?? STREAM_SERVER_ERROR) : undefined;
          response.end(error === undefined ? undefined : `data: ${JSON.stringify({ error })}\n\n`);
          record.completed = true;
          record.completedAt = Date.now();
          waiters.notify();
        }
        return;
      }
      const chunk = chunks[index];
      index += 1;
      if (index >= chunks.length) {
        // The last chunk ends the response at once: clients stop reading at `[DONE]` / the last byte.
        response.end(chunk);
        record.completed = true;
        record.completedAt = Date.now();
        waiters.notify();
        return;
      }
      response.write(chunk as string | Buffer);
      dueAt = notBefore(index);
      timer = timers.after(Math.max(0, dueAt - performance.now()), step);
    };
    step();
  };

  const sendJson = (response: ServerResponse, record: RestRequestRecord, status: number, body: JsonValue, headers: Record<string, string> = {}): void => {
    record.status = status;
    response.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
    record.completed = true;
    record.completedAt = Date.now();
    waiters.notify();
  };

  const checkAuth = (headers: IncomingHttpHeaders): void => {
    const header = headers.authorization;
    const match = typeof header === 'string' ? /^Bearer\s+(.+)$/i.exec(header.trim()) : null;
    if (match === null) {
      throw new HttpError(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
      );
    }
    const key = match[1] as string;
    if (key !== options.apiKey) {
      throw new HttpError(
        401,
        `Incorrect API key provided: ${redactKey(key)}. You can find your API key at https://platform.openai.com/account/api-keys.`,
        null,
        'invalid_api_key',
      );
    }
  };

  const handleChat = async (
    response: ServerResponse,
    record: RestRequestRecord,
    body: JsonObject,
    cut: RestFaultAction | undefined,
    startedAt: number,
  ): Promise<void> => {
    const request = parseChatRequest(body);
    const reply = options.chat === undefined ? defaultChatReply(request) : await options.chat(request);
    const id = randomId('chatcmpl', 29);
    const created = Math.floor(Date.now() / 1000);
    const refusal = reply.refusal;
    const text = refusal === undefined ? (reply.text ?? '') : '';
    const calls = refusal === undefined ? (reply.toolCalls ?? []).map((call) => ({ ...call, id: call.id ?? randomId('call', 24) })) : [];
    const finishReason = reply.finishReason ?? (calls.length > 0 ? 'tool_calls' : 'stop');
    const promptTokens = estimateTokens(JSON.stringify(request.messages));
    const completionTokens = estimateTokens((refusal ?? text) + calls.map((call) => call.name + call.arguments).join(''));
    const usage = {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
      prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
    };
    if (!request.stream) {
      const message: JsonObject = {
        role: 'assistant',
        content: refusal !== undefined || (text === '' && calls.length > 0) ? null : text,
        refusal: refusal ?? null,
        annotations: [],
      };
      if (calls.length > 0) {
        message.tool_calls = calls.map((call) => ({ id: call.id, type: 'function', function: { name: call.name, arguments: call.arguments } }));
      }
      sendJson(response, record, 200, {
        id,
        object: 'chat.completion',
        created,
        model: request.model,
        choices: [{ index: 0, message, logprobs: null, finish_reason: finishReason }],
        usage,
        service_tier: 'default',
        system_fingerprint: 'fp_stsgate_emulator',
      });
      return;
    }
    const includeUsage = isRecord(body.stream_options) && body.stream_options.include_usage === true;
    const chunk = (delta: JsonObject, finish: string | null = null): string => {
      const payload: JsonObject = {
        id,
        object: 'chat.completion.chunk',
        created,
        model: request.model,
        service_tier: 'default',
        system_fingerprint: 'fp_stsgate_emulator',
        choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
      };
      if (includeUsage) payload.usage = null;
      return `data: ${JSON.stringify(payload)}\n\n`;
    };
    const events: string[] = [];
    const header = (call: (typeof calls)[number], index: number): JsonObject => ({
      index,
      id: call.id,
      type: 'function',
      function: { name: call.name, arguments: '' },
    });
    const textPieces = tokensPerSecond === undefined ? splitPieces(text) : splitTokens(text);
    const argumentPieces = tokensPerSecond === undefined ? splitArguments : splitTokenArguments;
    const roleChunk = text !== '' || calls.length === 0;
    if (refusal !== undefined) {
      events.push(chunk({ role: 'assistant', content: null, refusal: '' }));
      for (const piece of splitPieces(refusal)) events.push(chunk({ refusal: piece }));
    } else if (roleChunk) {
      events.push(chunk({ role: 'assistant', content: '', refusal: null }));
      for (const piece of textPieces) events.push(chunk({ content: piece }));
    }
    // Index of the first content/tool-call delta (or of the finish chunk of an empty reply).
    const firstToken = roleChunk ? 1 : 0;
    calls.forEach((call, index) => {
      if (index === 0 && events.length === 0) {
        events.push(chunk({ role: 'assistant', content: null, tool_calls: [header(call, index)], refusal: null }));
      } else {
        events.push(chunk({ tool_calls: [header(call, index)] }));
      }
      for (const piece of argumentPieces(call.arguments)) events.push(chunk({ tool_calls: [{ index, function: { arguments: piece } }] }));
    });
    events.push(chunk({}, finishReason));
    const finish = events.length - 1;
    if (includeUsage) {
      events.push(
        `data: ${JSON.stringify({
          id,
          object: 'chat.completion.chunk',
          created,
          model: request.model,
          service_tier: 'default',
          system_fingerprint: 'fp_stsgate_emulator',
          choices: [],
          usage,
        })}\n\n`,
      );
    }
    events.push('data: [DONE]\n\n');
    const tokenGapMs = tokensPerSecond === undefined ? chunkIntervalMs : 1000 / tokensPerSecond;
    const notBefore = (index: number): number => {
      if (index === firstToken && firstTokenMs !== undefined) return startedAt + firstTokenMs;
      const now = performance.now();
      if (index === 0) return now;
      return now + (index > firstToken && index <= finish ? tokenGapMs : chunkIntervalMs);
    };
    record.status = 200;
    response.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
    // The headers go out now even when the first chunk waits for `firstTokenMs`.
    response.flushHeaders();
    stream(response, record, events, cut, notBefore);
  };

  const handleSpeech = (response: ServerResponse, record: RestRequestRecord, body: JsonObject, cut: RestFaultAction | undefined, startedAt: number): void => {
    const request = parseSpeechRequest(body);
    const pcm = options.speech?.(request) ?? tone(Math.min(10_000, Math.max(300, request.input.length * 60)), 24000);
    const bytes = pcmBytes(pcm);
    const chunkBytes = Math.max(2, Math.round(48 * speechChunkMs) & ~1);
    const pieces: Buffer[] = [];
    for (let offset = 0; offset < bytes.length; offset += chunkBytes) pieces.push(bytes.subarray(offset, offset + chunkBytes));
    // Audio ms of each body chunk (48 bytes per ms at 24 kHz s16le); a WAV body starts with its header, which holds none.
    const pieceMs = pieces.map((piece) => piece.length / 48);
    const chunkAudioMs = request.streamFormat === 'audio' && request.responseFormat === 'wav' ? [0, ...pieceMs] : pieceMs;
    const notBefore = (index: number): number => {
      if (index === 0) return startedAt + firstByteMs;
      return performance.now() + (realTimeFactor === undefined ? chunkIntervalMs : Math.max(0, (chunkAudioMs[index - 1] ?? 0) * realTimeFactor));
    };
    record.status = 200;
    if (request.streamFormat === 'sse') {
      const events = pieces.map((piece) => `data: ${JSON.stringify({ type: 'speech.audio.delta', audio: piece.toString('base64') })}\n\n`);
      const inputTokens = estimateTokens(request.input);
      const outputTokens = Math.ceil(pcm.length / 24000 / 0.05);
      events.push(
        `data: ${JSON.stringify({
          type: 'speech.audio.done',
          usage: { input_tokens: inputTokens, output_tokens: outputTokens, total_tokens: inputTokens + outputTokens },
        })}\n\n`,
      );
      response.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
      stream(response, record, events, cut, notBefore);
      return;
    }
    if (request.responseFormat === 'wav') {
      response.writeHead(200, { 'content-type': 'audio/wav' });
      stream(response, record, [wavHeader(bytes.length, 24000), ...pieces], cut, notBefore);
      return;
    }
    response.writeHead(200, { 'content-type': 'audio/pcm' });
    stream(response, record, pieces, cut, notBefore);
  };

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const startedAt = performance.now();
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    const method = request.method ?? 'GET';
    const route: RestRoute | 'other' =
      method === 'POST' && url.pathname === '/v1/chat/completions' ? 'chat' : method === 'POST' && url.pathname === '/v1/audio/speech' ? 'speech' : 'other';
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    let body: JsonValue = null;
    let parseError = false;
    if (raw.length > 0) {
      try {
        body = asJson(JSON.parse(raw));
      } catch {
        parseError = true;
      }
    }
    const record: RestRequestRecord = {
      method,
      path: url.pathname,
      route,
      headers: request.headers,
      body,
      receivedAt: Date.now(),
      status: undefined,
      completed: false,
      completedAt: undefined,
    };
    requests.push(record);
    logger.debug({ method, path: url.pathname }, 'openai rest emulator request');
    waiters.notify();

    const fault = takeFault(route);
    if (fault?.type === 'insufficient_quota') {
      sendJson(response, record, 429, { error: INSUFFICIENT_QUOTA_ERROR });
      return;
    }
    if (fault?.type === 'status') {
      sendJson(response, record, fault.status, fault.body ?? defaultOpenAiErrorBody(fault.status), {
        ...(fault.retryAfter !== undefined ? { 'retry-after': fault.retryAfter } : fault.status === 429 ? { 'retry-after': '1' } : {}),
      });
      return;
    }
    if (fault !== undefined && (fault.afterChunks ?? 0) === 0 && fault.type === 'stall') return;
    if (fault !== undefined && (fault.afterChunks ?? 0) === 0 && fault.type === 'abort') {
      request.socket.destroy();
      return;
    }
    try {
      if (route === 'other') throw new HttpError(404, `Invalid URL (${method} ${url.pathname})`);
      checkAuth(request.headers);
      if (parseError) {
        throw new HttpError(
          400,
          "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
        );
      }
      if (!isRecord(body)) throw new HttpError(400, 'The request body must be a JSON object.');
      if (route === 'chat') await handleChat(response, record, body, fault, startedAt);
      else handleSpeech(response, record, body, fault, startedAt);
    } catch (error) {
      if (!(error instanceof HttpError)) throw error;
      sendJson(response, record, error.status, error.body());
    }
  };

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      logger.error({ err: error instanceof Error ? error.message : String(error) }, 'openai rest emulator handler failed');
      if (!response.headersSent) response.writeHead(500, { 'content-type': 'application/json' });
      response.end(JSON.stringify(defaultOpenAiErrorBody(500)));
    });
  });
  const port = await listenOnLoopback(server);
  let closing: Promise<void> | undefined;

  return {
    baseUrl: `http://127.0.0.1:${String(port)}/v1`,
    port,
    requests,
    queueFault(fault: RestFault): void {
      faults.push({ fault, remaining: fault.times ?? 1 });
    },
    waitFor<T>(probe: () => T | undefined | null | false, waitOptions?: WaitOptions): Promise<T> {
      return waiters.waitFor(probe, waitOptions);
    },
    waitForRequest(route: RestRoute, predicate?: (request: RestRequestRecord) => boolean, waitOptions?: WaitOptions): Promise<RestRequestRecord> {
      return waiters.waitFor(() => requests.find((request) => request.route === route && (predicate?.(request) ?? true)), waitOptions, `${route} request`);
    },
    close(): Promise<void> {
      closing ??= (async () => {
        timers.clear();
        waiters.close();
        await closeServer(server);
      })();
      return closing;
    },
  };
}
