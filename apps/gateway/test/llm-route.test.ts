import { mkdtempSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ConfigError, type LlmAdapter } from '@stsgate/core';
import { ToolSet, type InstructionSource, type ToolContext } from '@stsgate/agent';
import { createOpenAiLlm } from '@stsgate/openai';
import { memoryLogger, startOpenAiRestEmulator, type ChatCompletionRequest, type ChatScriptReply, type OpenAiRestEmulator } from '@stsgate/testkit';
import { llmRouteEnvSchema, llmRouteOptionsFromEnv, registerLlmRoute, type LlmRouteOptions } from '../src/llm-route.js';
import { GatewayMetrics } from '../src/metrics.js';

const API_KEY = 'sk-test-0123456789abcdef';
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * How AVR Core reads the body: concatenated JSON objects with no delimiter, split or merged arbitrarily by TCP.
 * Brace depth, aware of strings and escapes; bytes are decoded incrementally (a UTF-8 character may be split too).
 */
class JsonObjectSplitter {
  private readonly decoder = new StringDecoder('utf8');
  private current = '';
  private depth = 0;
  private inString = false;
  private escaped = false;

  push(chunk: Buffer): unknown[] {
    const out: unknown[] = [];
    for (const ch of this.decoder.write(chunk)) {
      if (this.depth === 0 && !this.inString) {
        if (/\s/.test(ch)) continue;
        if (ch !== '{') throw new Error(`unexpected ${JSON.stringify(ch)} between objects`);
      }
      this.current += ch;
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (ch === '\\') this.escaped = true;
        else if (ch === '"') this.inString = false;
      } else if (ch === '"') {
        this.inString = true;
      } else if (ch === '{') {
        this.depth += 1;
      } else if (ch === '}') {
        this.depth -= 1;
        if (this.depth === 0) {
          out.push(JSON.parse(this.current));
          this.current = '';
        }
      }
    }
    return out;
  }

  end(): void {
    if (this.current !== '' || this.decoder.end() !== '') throw new Error('the body ends inside an object');
  }
}

const chunkSchema = z.strictObject({ type: z.literal('text'), content: z.string() });

interface Reply {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /** Parsed objects (text/event-stream) or the JSON error body. */
  readonly objects: { type: 'text'; content: string }[];
  readonly text: string;
  readonly raw: Buffer;
  readonly ended: boolean;
}

/** POSTs to /prompt-stream and reads the body the way AVR Core does; `onObject` may destroy the request. */
function prompt(
  base: string,
  body: unknown,
  options: { headers?: Record<string, string>; onObject?: (object: { type: 'text'; content: string }, destroy: () => void) => void } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const payload = typeof body === 'string' ? body : JSON.stringify(body);
    const req = httpRequest(`${base}/prompt-stream`, { method: 'POST', headers: { 'content-type': 'application/json', ...options.headers } }, (res) => {
      const splitter = new JsonObjectSplitter();
      const objects: { type: 'text'; content: string }[] = [];
      const raw: Buffer[] = [];
      let ended = false;
      const streaming = res.statusCode === 200;
      res.on('data', (data: Buffer) => {
        raw.push(data);
        if (!streaming) return;
        for (const object of splitter.push(data)) {
          const chunk = chunkSchema.parse(object);
          objects.push(chunk);
          options.onObject?.(chunk, () => req.destroy());
        }
      });
      res.on('end', () => {
        ended = true;
        if (streaming) splitter.end();
      });
      res.on('error', () => undefined);
      res.on('close', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, objects, text: objects.map((o) => o.content).join(''), raw: Buffer.concat(raw), ended }),
      );
    });
    req.on('error', (error) => {
      if (!req.destroyed) reject(error);
    });
    req.end(payload);
  });
}

interface Setup {
  readonly base: string;
  readonly rest: OpenAiRestEmulator;
  readonly metrics: GatewayMetrics;
  readonly lines: ReturnType<typeof memoryLogger>['lines'];
}

async function setup(
  options: Partial<LlmRouteOptions> & {
    chat?: (request: ChatCompletionRequest) => ChatScriptReply | Promise<ChatScriptReply>;
    chunkIntervalMs?: number;
    apiKey?: string;
    adapter?: (adapter: LlmAdapter) => LlmAdapter;
  } = {},
): Promise<Setup> {
  const { chat, chunkIntervalMs = 2, apiKey = API_KEY, adapter: wrap, ...routeOptions } = options;
  const rest = await startOpenAiRestEmulator({ apiKey: API_KEY, ...(chat === undefined ? {} : { chat }), timing: { chunkIntervalMs } });
  const { logger, lines } = memoryLogger('debug');
  const metrics = new GatewayMetrics(false);
  const app: FastifyInstance = Fastify();
  const openai = createOpenAiLlm({ apiKey, baseURL: rest.baseUrl, model: 'gpt-4o-mini', logger });
  registerLlmRoute(app, { id: 'openai', adapter: wrap ? wrap(openai) : openai }, { logger, metrics, admit: async () => undefined, bodyTimeoutMs: 10_000, streamIdleTimeoutMs: 300_000 }, {
    instructions: { defaultText: 'You are a test agent.' },
    ...routeOptions,
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  cleanups.push(async () => {
    await app.close();
    await rest.close();
  });
  return { base: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, rest, metrics, lines };
}

function chatMessages(rest: OpenAiRestEmulator, index = 0): unknown[] {
  const body = rest.requests.filter((request) => request.route === 'chat')[index]?.body;
  return z.object({ messages: z.array(z.unknown()) }).parse(body).messages;
}

async function outcomes(metrics: GatewayMetrics): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const value of (await metrics.httpRequests.get()).values) out[String(value.labels.outcome)] = value.value;
  return out;
}

describe('POST /prompt-stream', () => {
  it('prepends the templated system prompt, passes the history and streams {"type":"text"} objects', async () => {
    const { base, rest, metrics } = await setup({ instructions: { text: 'Agent for call {{uuid}}.', defaultText: 'unused' } });
    const history = [
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello! How can I help?' },
      { role: 'system', content: 'The caller pressed 5.' },
      { role: 'user', content: '   ' },
      { role: 'user', content: 'Where is {my} "order" \\ café 😀?' },
    ];
    const reply = await prompt(base, { uuid: 'body-uuid', messages: history }, { headers: { 'x-uuid': 'call-42' } });

    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('text/event-stream');
    expect(reply.headers['cache-control']).toBe('no-store');
    expect(reply.ended).toBe(true);
    expect(reply.text).toBe('You said: Where is {my} "order" \\ café 😀?.');
    expect(reply.objects.length).toBeGreaterThan(3); // one object per delta
    expect(chatMessages(rest)).toEqual([
      { role: 'system', content: 'Agent for call call-42.' },
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello! How can I help?' },
      { role: 'system', content: 'The caller pressed 5.' }, // core's system items stay system; the empty one is dropped
      { role: 'user', content: 'Where is {my} "order" \\ café 😀?' },
    ]);
    expect(await outcomes(metrics)).toEqual({ ok: 1 });
    expect((await metrics.httpStreams.get()).values.find((v) => v.labels.route === 'llm')?.value).toBe(0);

    // The same bytes, split anywhere (even inside a UTF-8 character), give the same objects.
    for (const size of [1, 2, 3, 7, 64]) {
      const splitter = new JsonObjectSplitter();
      const objects: unknown[] = [];
      for (let i = 0; i < reply.raw.length; i += size) objects.push(...splitter.push(reply.raw.subarray(i, i + size)));
      splitter.end();
      expect(objects).toEqual(reply.objects);
    }
  });

  it('uses the body uuid without a valid X-UUID header, and `message` alone as the history', async () => {
    const { base, rest } = await setup({ instructions: { defaultText: 'Call {{uuid}}.' } });
    const reply = await prompt(base, { uuid: 'from-body', message: 'Hello there' }, { headers: { 'x-uuid': 'bad uuid!' } });
    expect(reply.status).toBe(200);
    expect(reply.text).toBe('You said: Hello there.');
    expect(chatMessages(rest)).toEqual([
      { role: 'system', content: 'Call from-body.' },
      { role: 'user', content: 'Hello there' },
    ]);

    // A malformed uuid or message is ignored; an empty history falls back to `message`.
    const second = await prompt(base, { uuid: 42, message: 'Again', messages: [] }, { headers: { 'x-uuid': 'call-9' } });
    expect(second.status).toBe(200);
    expect(chatMessages(rest, 1)).toEqual([
      { role: 'system', content: 'Call call-9.' },
      { role: 'user', content: 'Again' },
    ]);
  });

  it('bounds the history: the last N messages, then a character cap', async () => {
    const { base, rest } = await setup({ maxHistoryMessages: 3 });
    const messages = Array.from({ length: 8 }, (_, i) => ({ role: i % 2 === 0 ? 'user' : 'assistant', content: `m${i}` }));
    await prompt(base, { uuid: 'c1', messages });
    expect(chatMessages(rest).slice(1)).toEqual([
      { role: 'assistant', content: 'm5' },
      { role: 'user', content: 'm6' },
      { role: 'assistant', content: 'm7' },
    ]);

    const long = [
      { role: 'user', content: 'a'.repeat(20_000) },
      { role: 'assistant', content: 'b'.repeat(20_000) },
      { role: 'user', content: 'c' },
    ];
    await prompt(base, { uuid: 'c1', messages: long });
    expect(chatMessages(rest, 1).slice(1)).toEqual(long.slice(1));
  });

  it('streams deltas as they arrive, before the LLM has finished', async () => {
    const words = Array.from({ length: 12 }, (_, i) => `word${i}`).join(' ');
    const { base, rest } = await setup({ chat: () => ({ text: words }), chunkIntervalMs: 25 });
    let upstreamDoneAtFirstObject: boolean | undefined;
    const reply = await prompt(
      base,
      { uuid: 'c1', messages: [{ role: 'user', content: 'talk' }] },
      { onObject: () => (upstreamDoneAtFirstObject ??= rest.requests[0]?.completed) },
    );
    expect(upstreamDoneAtFirstObject).toBe(false);
    expect(rest.requests[0]?.completed).toBe(true);
    expect(reply.text).toBe(words);
    expect(reply.objects).toHaveLength(12);
  });

  it('runs tool calls server-side and streams the follow-up the model speaks', async () => {
    const contexts: ToolContext[] = [];
    const tools = new ToolSet([
      {
        name: 'order_status',
        description: 'Status of an order',
        parameters: { type: 'object', properties: { order: { type: 'string' } }, required: ['order'] },
        execute: (args, context) => {
          contexts.push(context);
          return `Order ${String(args['order'])} ships tomorrow.`;
        },
      },
    ]);
    const chat = (request: ChatCompletionRequest): ChatScriptReply =>
      request.messages.at(-1)?.role === 'tool'
        ? { text: 'Good news: it ships tomorrow.' }
        : { text: 'One moment.', toolCalls: [{ id: 'call_1', name: 'order_status', arguments: '{"order":"42"}' }] };
    const { base, rest } = await setup({ tools, chat });
    const reply = await prompt(base, { uuid: 'call-7', messages: [{ role: 'user', content: 'Where is order 42?' }] });

    expect(reply.status).toBe(200);
    expect(reply.text).toBe('One moment. Good news: it ships tomorrow.');
    const [first, second] = rest.requests.filter((request) => request.route === 'chat');
    expect(z.object({ tools: z.array(z.object({ function: z.object({ name: z.string() }) })) }).parse(first?.body).tools[0]?.function.name).toBe('order_status');
    expect(chatMessages(rest, 1).slice(2)).toEqual([
      {
        role: 'assistant',
        content: 'One moment.',
        tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'order_status', arguments: '{"order":"42"}' } }],
      },
      { role: 'tool', tool_call_id: 'call_1', content: 'Order 42 ships tomorrow.' },
    ]);
    expect(second?.status).toBe(200);
    expect(contexts[0]?.callId).toBe('call-7');
    await expect(contexts[0]?.untilAgentAudioHeard()).resolves.toBeUndefined();
  });

  it('stops after a bounded number of tool rounds', async () => {
    const tools = new ToolSet([{ name: 'loop', description: 'loops', parameters: { type: 'object', properties: {} }, execute: () => 'again' }]);
    const { base, rest, lines } = await setup({ tools, chat: () => ({ toolCalls: [{ name: 'loop', arguments: '{}' }] }) });
    const reply = await prompt(base, { uuid: 'c1', messages: [{ role: 'user', content: 'go' }] });
    expect(reply.status).toBe(200);
    expect(reply.text).toBe('');
    expect(rest.requests.filter((request) => request.route === 'chat')).toHaveLength(4);
    expect(lines.some((line) => line.msg === 'too many tool rounds; the turn ends here')).toBe(true);
  });

  it('offers no tools to an adapter without tool calls', async () => {
    const tools = new ToolSet([{ name: 'noop', description: 'noop', parameters: { type: 'object', properties: {} }, execute: () => '' }]);
    const { base, rest } = await setup({ tools, adapter: (inner) => ({ ...inner, capabilities: { streaming: true, toolCalls: false } }) });
    await prompt(base, { uuid: 'c1', messages: [{ role: 'user', content: 'hi' }] });
    expect(z.object({ tools: z.unknown().optional() }).parse(rest.requests[0]?.body).tools).toBeUndefined();
  });

  it('answers 400 {"message"} for bad bodies, without calling the LLM', async () => {
    const { base, rest, metrics } = await setup();
    const cases: [unknown, RegExp][] = [
      [{ uuid: 'c1' }, /messages is required/],
      [{ uuid: 'c1', messages: 'hello' }, /^messages: must be an array/],
      [{ uuid: 'c1', messages: [{ role: 'robot', content: 'x' }] }, /^messages\.0\.role: must be "user", "assistant" or "system"/],
      [{ uuid: 'c1', messages: [{ role: 'user', content: 5 }] }, /^messages\.0\.content: must be a string/],
      [{ uuid: 'c1', messages: [{ role: 'tool', content: 'x' }] }, /^messages\.0\.role/],
    ];
    for (const [body, message] of cases) {
      const reply = await prompt(base, body);
      expect(reply.status).toBe(400);
      expect(z.object({ message: z.string() }).parse(JSON.parse(reply.raw.toString('utf8'))).message).toMatch(message);
    }
    expect((await prompt(base, '{"messages": [')).status).toBe(400);
    expect(rest.requests).toHaveLength(0);
    expect((await outcomes(metrics)).bad_request).toBe(5);
  });

  it('retries a 429 before the first byte', async () => {
    const { base, rest, lines } = await setup();
    rest.queueFault({ route: 'chat', action: { type: 'status', status: 429, retryAfter: '0' } });
    const reply = await prompt(base, { uuid: 'c1', messages: [{ role: 'user', content: 'hi' }] });
    expect(reply.status).toBe(200);
    expect(reply.text).toBe('You said: hi.');
    expect(rest.requests.map((request) => request.status)).toEqual([429, 200]);
    expect(lines.filter((line) => line.msg === 'LLM request failed; retrying')).toHaveLength(1);
  });

  it('maps a failure before the first byte to a status and a safe message', async () => {
    const { base, rest, metrics, lines } = await setup({ apiKey: 'sk-wrong-key-that-must-not-leak' });
    const reply = await prompt(base, { uuid: 'c1', messages: [{ role: 'user', content: 'hi' }] });
    expect(reply.status).toBe(502);
    const body = reply.raw.toString('utf8');
    expect(JSON.parse(body)).toEqual({ message: expect.stringMatching(/^LLM provider error: .*HTTP 401/) as unknown });
    expect(body).not.toContain('wrong-key-that-must-not-leak');
    expect(JSON.stringify(lines)).not.toContain('wrong-key-that-must-not-leak');
    expect(rest.requests).toHaveLength(1); // auth errors are not retried
    expect(await outcomes(metrics)).toEqual({ provider_error: 1 });

    const invalid = await setup({ chat: () => ({ text: 'unused' }) });
    invalid.rest.queueFault({ route: 'chat', action: { type: 'status', status: 400 } });
    expect((await prompt(invalid.base, { uuid: 'c1', messages: [{ role: 'user', content: 'hi' }] })).status).toBe(400);
  });

  it('ends the body when the LLM fails after bytes were sent', async () => {
    const { base, rest, lines, metrics } = await setup({ chat: () => ({ text: 'one two three four five six seven eight' }) });
    rest.queueFault({ route: 'chat', action: { type: 'abort', afterChunks: 4 } });
    const reply = await prompt(base, { uuid: 'c1', messages: [{ role: 'user', content: 'hi' }] });
    expect(reply.status).toBe(200);
    expect(reply.ended).toBe(true);
    expect(reply.text).toBe('one two three ');
    expect(rest.requests).toHaveLength(1); // never retried once the caller heard something
    expect(lines.some((line) => line.msg === 'LLM provider error' && line.level === 50)).toBe(true);
    expect(await outcomes(metrics)).toEqual({ provider_error: 1 });
  });

  it('aborts the upstream request when the client goes away', async () => {
    const words = Array.from({ length: 20 }, (_, i) => `w${i}`).join(' ');
    const { base, rest, metrics } = await setup({ chat: () => ({ text: words }), chunkIntervalMs: 15 });
    const reply = await prompt(base, { uuid: 'c1', messages: [{ role: 'user', content: 'hi' }] }, { onObject: (_object, destroy) => destroy() });
    expect(reply.ended).toBe(false);
    await sleep(450); // the whole reply would have been streamed by now
    expect(rest.requests[0]?.completed).toBe(false);
    expect(await outcomes(metrics)).toEqual({ client_gone: 1 });
  });

  it('cuts a reply at maxReplyChars, at a word boundary', async () => {
    const { base, lines, metrics } = await setup({ maxReplyChars: 20, chat: () => ({ text: 'alpha beta gamma delta epsilon zeta eta theta' }) });
    const reply = await prompt(base, { uuid: 'c1', messages: [{ role: 'user', content: 'hi' }] });
    expect(reply.status).toBe(200);
    expect(reply.ended).toBe(true);
    expect(reply.text).toBe('alpha beta gamma ');
    expect(lines.some((line) => line.msg === 'LLM reply cut' && line.reason === 'max_chars' && line.level === 40)).toBe(true);
    expect(await outcomes(metrics)).toEqual({ max_chars: 1 });
  });

  it('cuts a reply at maxReplyMs: 504 before any text, the end of the body after', async () => {
    const stalled = await setup({ maxReplyMs: 200 });
    stalled.rest.queueFault({ route: 'chat', action: { type: 'stall' } });
    const timeout = await prompt(stalled.base, { uuid: 'c1', messages: [{ role: 'user', content: 'hi' }] });
    expect(timeout.status).toBe(504);
    expect(JSON.parse(timeout.raw.toString('utf8'))).toEqual({ message: 'LLM provider error: no reply within 200 ms' });

    const slow = await setup({ maxReplyMs: 300, chunkIntervalMs: 60, chat: () => ({ text: 'a b c d e f g h i j k l m n o p' }) });
    const cut = await prompt(slow.base, { uuid: 'c1', messages: [{ role: 'user', content: 'hi' }] });
    expect(cut.status).toBe(200);
    expect(cut.ended).toBe(true);
    expect(cut.objects.length).toBeGreaterThan(0);
    expect(cut.objects.length).toBeLessThan(16);
    expect(await outcomes(slow.metrics)).toEqual({ max_duration: 1 });
  });

  it('logs prompts and replies only at debug level', async () => {
    const { base, lines } = await setup({ instructions: { text: 'SECRET-PROMPT', defaultText: '' } });
    await prompt(base, { uuid: 'c1', messages: [{ role: 'user', content: 'PRIVATE-WORDS' }] });
    const loud = lines.filter((line) => line.level > 20).map((line) => JSON.stringify(line));
    expect(loud.join('\n')).not.toMatch(/SECRET-PROMPT|PRIVATE-WORDS/);
    expect(lines.some((line) => JSON.stringify(line).includes('PRIVATE-WORDS'))).toBe(true);
  });
});

describe('llmRouteOptionsFromEnv', () => {
  const fromEnv = (env: Record<string, string>) => llmRouteOptionsFromEnv(llmRouteEnvSchema.parse(env));

  it('takes LLM_INSTRUCTIONS > LLM_URL_INSTRUCTIONS > LLM_FILE_INSTRUCTIONS > SYSTEM_PROMPT > the default', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'llm-route-'));
    const file = path.join(dir, 'prompt.txt');
    writeFileSync(file, 'From the file.');
    const all = { LLM_INSTRUCTIONS: 'Text.', LLM_URL_INSTRUCTIONS: 'http://prompts.test/x', LLM_FILE_INSTRUCTIONS: file, SYSTEM_PROMPT: 'Legacy.' };
    const source = (env: Record<string, string>): InstructionSource => fromEnv(env).instructions;
    expect(source(all)).toMatchObject({ text: 'Text.', defaultText: 'Legacy.' });
    expect(source({ ...all, LLM_INSTRUCTIONS: '' })).toMatchObject({ text: undefined, url: 'http://prompts.test/x', file });
    expect(source({ LLM_INSTRUCTIONS: 'https://prompts.test/y' })).toMatchObject({ text: undefined, url: 'https://prompts.test/y' });
    expect(source({ SYSTEM_PROMPT: 'Legacy.' })).toMatchObject({ text: undefined, url: undefined, file: undefined, defaultText: 'Legacy.' });
    expect(source({ SYSTEM_PROMPT: ' ' }).defaultText).toBe('You are a helpful assistant answering a phone call. Keep answers short.');
    expect(() => fromEnv({ LLM_FILE_INSTRUCTIONS: path.join(dir, 'missing.txt') })).toThrow(ConfigError);
  });

  it('reads the limits, blank meaning the route defaults', () => {
    expect(fromEnv({ LLM_MAX_HISTORY_MESSAGES: '20', LLM_MAX_REPLY_CHARS: '1000', LLM_MAX_REPLY_MS: '15000' })).toMatchObject({
      maxHistoryMessages: 20,
      maxReplyChars: 1000,
      maxReplyMs: 15000,
    });
    expect(Object.keys(fromEnv({ LLM_MAX_HISTORY_MESSAGES: '', LLM_MAX_REPLY_CHARS: '' }))).toEqual(['instructions']);
    expect(llmRouteEnvSchema.safeParse({ LLM_MAX_HISTORY_MESSAGES: '0' }).success).toBe(false);
  });
});
