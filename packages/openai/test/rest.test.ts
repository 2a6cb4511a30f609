import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import type { CallContext, LlmDelta } from '@stsgate/core';
import { startOpenAiRestEmulator } from '@stsgate/testkit';
import type { OpenAiRestEmulator, OpenAiRestEmulatorOptions } from '@stsgate/testkit';
import { createOpenAiLlm, createOpenAiTts } from '../src/index.js';

const API_KEY = 'sk-test-rest-0000000000';
const logger = pino({ enabled: false });

function call(signal: AbortSignal = new AbortController().signal): CallContext {
  return { callId: 'call-1', metadata: {}, logger, signal };
}

let rest: OpenAiRestEmulator | undefined;
afterEach(async () => {
  await rest?.close();
  rest = undefined;
});

async function start(options: Partial<OpenAiRestEmulatorOptions> = {}): Promise<OpenAiRestEmulator> {
  rest = await startOpenAiRestEmulator({ apiKey: API_KEY, ...options });
  return rest;
}

async function collect(stream: AsyncIterable<LlmDelta>): Promise<LlmDelta[]> {
  const out: LlmDelta[] = [];
  for await (const delta of stream) out.push(delta);
  return out;
}

async function failure(run: () => Promise<unknown>): Promise<unknown> {
  return run().then(
    () => {
      throw new Error('expected a failure');
    },
    (error: unknown) => error,
  );
}

const GET_TIME = { name: 'get_time', description: 'Current time in a zone.', parameters: { type: 'object', properties: { tz: { type: 'string' } } } };

describe('createOpenAiLlm against the REST emulator', () => {
  it('streams text deltas and done, with the request the SDK builds', async () => {
    const emu = await start({ chat: () => ({ text: 'We open at nine on Saturday.' }) });
    const llm = createOpenAiLlm({ apiKey: API_KEY, baseURL: emu.baseUrl, model: 'gpt-4o-mini', temperature: 0.3, maxTokens: 120, logger });
    const deltas = await collect(
      llm.chat({ messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'When do you open?' }] }, call()),
    );
    const text = deltas.flatMap((d) => (d.type === 'text' ? [d.text] : [])).join('');
    expect(text).toBe('We open at nine on Saturday.');
    expect(deltas.filter((d) => d.type === 'text').length).toBeGreaterThan(1);
    expect(deltas.at(-1)).toEqual({ type: 'done', finishReason: 'stop' });
    const request = emu.requests[0];
    expect(request?.headers['authorization']).toBe(`Bearer ${API_KEY}`);
    expect(request?.body).toMatchObject({
      model: 'gpt-4o-mini',
      stream: true,
      temperature: 0.3,
      max_tokens: 120, // a custom base URL: the field compatible servers know
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'When do you open?' },
      ],
    });
  });

  it('accumulates tool-call deltas by index and reports whole calls; the follow-up turn is accepted', async () => {
    const emu = await start({
      chat: (request) =>
        request.messages.some((m) => m['role'] === 'tool')
          ? { text: 'It is noon in UTC and evening in Tokyo.' }
          : {
              toolCalls: [
                { name: 'get_time', arguments: '{"tz":"UTC"}', id: 'call_1' },
                { name: 'get_time', arguments: '{"tz":"Asia/Tokyo"}', id: 'call_2' },
              ],
            },
    });
    const llm = createOpenAiLlm({ apiKey: API_KEY, baseURL: emu.baseUrl, model: 'gpt-4o-mini', logger });
    const first = await collect(llm.chat({ messages: [{ role: 'user', content: 'Time?' }], tools: [GET_TIME] }, call()));
    expect(first).toEqual([
      { type: 'tool_call', id: 'call_1', name: 'get_time', argumentsJson: '{"tz":"UTC"}' },
      { type: 'tool_call', id: 'call_2', name: 'get_time', argumentsJson: '{"tz":"Asia/Tokyo"}' },
      { type: 'done', finishReason: 'tool_calls' },
    ]);
    expect(emu.requests[0]?.body).toMatchObject({ tools: [{ type: 'function', function: { name: 'get_time', description: GET_TIME.description, parameters: GET_TIME.parameters } }] });

    const second = await collect(
      llm.chat(
        {
          messages: [
            { role: 'user', content: 'Time?' },
            {
              role: 'assistant',
              content: '',
              toolCalls: [
                { id: 'call_1', name: 'get_time', argumentsJson: '{"tz":"UTC"}' },
                { id: 'call_2', name: 'get_time', argumentsJson: '{"tz":"Asia/Tokyo"}' },
              ],
            },
            { role: 'tool', toolCallId: 'call_1', content: '12:00' },
            { role: 'tool', toolCallId: 'call_2', content: '21:00' },
          ],
          tools: [GET_TIME],
        },
        call(),
      ),
    );
    expect(second.at(-1)).toEqual({ type: 'done', finishReason: 'stop' });
    expect(emu.requests[1]?.status).toBe(200);
  });

  it('maps 401 to a non-retryable auth error, without retrying inside the SDK', async () => {
    const emu = await start();
    const llm = createOpenAiLlm({ apiKey: 'sk-wrong-0000000000000', baseURL: emu.baseUrl, model: 'gpt-4o-mini', logger });
    const error = await failure(() => collect(llm.chat({ messages: [{ role: 'user', content: 'hi' }] }, call())));
    expect(error).toMatchObject({ name: 'ProviderError', category: 'auth', retryable: false, statusCode: 401, providerCode: 'invalid_api_key' });
    expect((error as Error).message).not.toContain('sk-wrong');
    expect(emu.requests).toHaveLength(1);
  });

  it('maps 429 to a retryable rate_limit error with the Retry-After hint', async () => {
    const emu = await start({ faults: [{ route: 'chat', action: { type: 'status', status: 429, retryAfter: '3' } }] });
    const llm = createOpenAiLlm({ apiKey: API_KEY, baseURL: emu.baseUrl, model: 'gpt-4o-mini', logger });
    const error = await failure(() => collect(llm.chat({ messages: [{ role: 'user', content: 'hi' }] }, call())));
    expect(error).toMatchObject({ category: 'rate_limit', retryable: true, statusCode: 429, retryAfterMs: 3000 });
    expect(emu.requests).toHaveLength(1);
  });

  it('a reasoning model gets no temperature and max_completion_tokens, even from a custom base URL', async () => {
    const emu = await start({ chat: () => ({ text: 'Sure.' }) });
    const llm = createOpenAiLlm({ apiKey: API_KEY, baseURL: emu.baseUrl, model: 'gpt-5-mini', temperature: 0.3, maxTokens: 200, logger });
    const deltas = await collect(llm.chat({ messages: [{ role: 'user', content: 'hi' }] }, call()));
    expect(deltas.at(-1)).toEqual({ type: 'done', finishReason: 'stop' });
    const body = emu.requests[0]?.body as Record<string, unknown>;
    expect(body).toMatchObject({ model: 'gpt-5-mini', max_completion_tokens: 200 });
    expect(body).not.toHaveProperty('temperature');
    expect(body).not.toHaveProperty('max_tokens');
  });

  it('the token limit reached before any text, or a refusal, is an error naming the reason, not silence', async () => {
    const emu = await start({
      chat: (request) => (request.messages.some((m) => m['content'] === 'refuse') ? { refusal: "I'm sorry, I can't help with that." } : { finishReason: 'length' }),
    });
    const llm = createOpenAiLlm({ apiKey: API_KEY, baseURL: emu.baseUrl, model: 'gpt-4o-mini', logger });
    const length = await failure(() => collect(llm.chat({ messages: [{ role: 'user', content: 'think hard' }] }, call())));
    expect(length).toMatchObject({ name: 'ProviderError', category: 'invalid_request', retryable: false });
    expect((length as Error).message).toMatch(/token limit/);
    const refused = await failure(() => collect(llm.chat({ messages: [{ role: 'user', content: 'refuse' }] }, call())));
    expect(refused).toMatchObject({ name: 'ProviderError', category: 'invalid_request', retryable: false });
    expect((refused as Error).message).toMatch(/refused/);
    // The refusal's words stay out of the error (they reach AVR and the error log).
    expect((refused as Error).message).not.toContain('sorry');
  });

  it('a 429 insufficient_quota is a non-retryable quota error, not a rate limit', async () => {
    const emu = await start({ faults: [{ route: 'chat', action: { type: 'insufficient_quota' } }] });
    const llm = createOpenAiLlm({ apiKey: API_KEY, baseURL: emu.baseUrl, model: 'gpt-4o-mini', logger });
    const error = await failure(() => collect(llm.chat({ messages: [{ role: 'user', content: 'hi' }] }, call())));
    expect(error).toMatchObject({ category: 'quota', retryable: false, statusCode: 429, providerCode: 'insufficient_quota' });
  });

  it('a server_error sent mid-stream is a retryable server error', async () => {
    const emu = await start({ chat: () => ({ text: 'one two three four' }), faults: [{ route: 'chat', action: { type: 'error_event', afterChunks: 2 } }] });
    const llm = createOpenAiLlm({ apiKey: API_KEY, baseURL: emu.baseUrl, model: 'gpt-4o-mini', logger });
    const error = await failure(() => collect(llm.chat({ messages: [{ role: 'user', content: 'hi' }] }, call())));
    expect(error).toMatchObject({ name: 'ProviderError', category: 'server', retryable: true });
  });

  it('a stream with tool calls that ends before its finish_reason fails (retryable) and never yields its cut tool call', async () => {
    const emu = await start({
      chat: () => ({ toolCalls: [{ name: 'get_time', arguments: '{"tz":"Europe/Amsterdam"}', id: 'call_cut' }] }),
      // The tool-call header and two pieces of its arguments, then a clean end: no finish chunk, no [DONE].
      faults: [{ route: 'chat', action: { type: 'end', afterChunks: 3 } }],
    });
    const llm = createOpenAiLlm({ apiKey: API_KEY, baseURL: emu.baseUrl, model: 'gpt-4o-mini', logger });
    const seen: LlmDelta[] = [];
    const error = await failure(async () => {
      for await (const delta of llm.chat({ messages: [{ role: 'user', content: 'time?' }], tools: [GET_TIME] }, call())) seen.push(delta);
    });
    expect(error).toMatchObject({ name: 'ProviderError', category: 'connectivity', retryable: true });
    expect(seen).toEqual([]);
    expect(emu.requests[0]?.completed).toBe(true);
  });

  it('tool calls a compatible server sends without ids get ids that never repeat across completions', async () => {
    // A compatible server (not OpenAI) that leaves out tool-call ids.
    const chunk = (delta: object, finish: string | null = null) =>
      `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: 'local', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    const server = createServer((request, response) => {
      request.resume();
      request.on('end', () => {
        response.writeHead(200, { 'content-type': 'text/event-stream' });
        response.end(
          chunk({ role: 'assistant', tool_calls: [{ index: 0, type: 'function', function: { name: 'get_time', arguments: '{}' } }] }) +
            chunk({}, 'tool_calls') +
            'data: [DONE]\n\n',
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const llm = createOpenAiLlm({ apiKey: API_KEY, baseURL: `http://127.0.0.1:${port}/v1`, model: 'local', logger });
      const ids: string[] = [];
      for (let turn = 0; turn < 2; turn++) {
        for (const delta of await collect(llm.chat({ messages: [{ role: 'user', content: 'time?' }], tools: [GET_TIME] }, call()))) {
          if (delta.type === 'tool_call') ids.push(delta.id);
        }
      }
      expect(ids).toHaveLength(2);
      expect(new Set(ids).size).toBe(2);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('aborting call.signal cancels a stalled stream with a closed error', async () => {
    const emu = await start({ chat: () => ({ text: 'one two three four five six' }), faults: [{ route: 'chat', action: { type: 'stall', afterChunks: 2 } }] });
    const llm = createOpenAiLlm({ apiKey: API_KEY, baseURL: emu.baseUrl, model: 'gpt-4o-mini', logger });
    const controller = new AbortController();
    const iterator = llm.chat({ messages: [{ role: 'user', content: 'hi' }] }, call(controller.signal))[Symbol.asyncIterator]();
    const first = await iterator.next();
    expect(first.done).toBe(false);
    controller.abort();
    const error = await failure(async () => {
      for (;;) if ((await iterator.next()).done) return;
    });
    expect(error).toMatchObject({ category: 'closed', retryable: false });
    expect(emu.requests).toHaveLength(1); // not retried inside the SDK
  });
});

describe('createOpenAiTts against the REST emulator', () => {
  it('streams raw 24 kHz PCM as Int16 chunks, exactly the synthesized samples', async () => {
    const audio = new Int16Array(24000 * 0.75).map((_, i) => Math.round(8000 * Math.sin((2 * Math.PI * 300 * i) / 24000)));
    const emu = await start({ speech: () => audio, timing: { speechChunkMs: 100 } });
    const tts = createOpenAiTts({ apiKey: API_KEY, baseURL: emu.baseUrl, voice: 'coral', instructions: 'Warm and calm.', logger });
    const { outputSampleRate, audio: stream } = tts.synthesize({ text: 'Hello there.' }, call());
    expect(outputSampleRate).toBe(24000);
    const chunks: Int16Array[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    const joined = new Int16Array(chunks.reduce((n, c) => n + c.length, 0));
    let offset = 0;
    for (const chunk of chunks) {
      joined.set(chunk, offset);
      offset += chunk.length;
    }
    expect(joined).toEqual(audio);
    expect(chunks.length).toBeGreaterThan(1);
    expect(emu.requests[0]?.body).toEqual({
      model: 'gpt-4o-mini-tts',
      voice: 'coral',
      input: 'Hello there.',
      response_format: 'pcm',
      instructions: 'Warm and calm.',
    });
  });

  it("a request's voice wins; tts-1 gets no instructions", async () => {
    const emu = await start();
    const tts = createOpenAiTts({ apiKey: API_KEY, baseURL: emu.baseUrl, model: 'tts-1', voice: 'alloy', instructions: 'ignored', logger });
    for await (const chunk of tts.synthesize({ text: 'Hi.', voice: 'nova' }, call()).audio) expect(chunk.length).toBeGreaterThan(0);
    expect(emu.requests[0]?.body).toEqual({ model: 'tts-1', voice: 'nova', input: 'Hi.', response_format: 'pcm' });
  });

  it('errors are ProviderErrors by status', async () => {
    const emu = await start({ faults: [{ route: 'speech', action: { type: 'status', status: 500 } }] });
    const tts = createOpenAiTts({ apiKey: API_KEY, baseURL: emu.baseUrl, logger });
    const error = await failure(async () => {
      for await (const chunk of tts.synthesize({ text: 'Hi.' }, call()).audio) void chunk;
    });
    expect(error).toMatchObject({ category: 'server', retryable: true, statusCode: 500 });
  });

  it('aborting call.signal ends a stalled synthesis with a closed error', async () => {
    const emu = await start({ faults: [{ route: 'speech', action: { type: 'stall', afterChunks: 1 } }] });
    const tts = createOpenAiTts({ apiKey: API_KEY, baseURL: emu.baseUrl, logger });
    const controller = new AbortController();
    const iterator = tts.synthesize({ text: 'A longer sentence to speak.' }, call(controller.signal)).audio[Symbol.asyncIterator]();
    expect((await iterator.next()).done).toBe(false);
    controller.abort();
    const error = await failure(async () => {
      for (;;) if ((await iterator.next()).done) return;
    });
    expect(error).toMatchObject({ category: 'closed', retryable: false });
    expect(emu.requests).toHaveLength(1); // not retried inside the SDK
  });
});
