import OpenAI, { AuthenticationError, BadRequestError, RateLimitError } from 'openai';
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import { afterEach, describe, expect, it } from 'vitest';
import { tone } from '../../src/emulators/common.js';
import { startOpenAiRestEmulator, type ChatCompletionRequest, type OpenAiRestEmulator, type OpenAiRestEmulatorOptions } from '../../src/emulators/openai-rest.js';
import { goertzel } from '../../src/signals.js';

const KEY = 'sk-rest-test-key-5678';
let emulator: OpenAiRestEmulator | undefined;

afterEach(async () => {
  await emulator?.close();
  emulator = undefined;
});

async function start(options: Partial<OpenAiRestEmulatorOptions> = {}): Promise<{ emu: OpenAiRestEmulator; openai: OpenAI }> {
  emulator = await startOpenAiRestEmulator({ apiKey: KEY, ...options });
  return { emu: emulator, openai: new OpenAI({ apiKey: KEY, baseURL: emulator.baseUrl, maxRetries: 0 }) };
}

async function collect(stream: AsyncIterable<ChatCompletionChunk>): Promise<ChatCompletionChunk[]> {
  const chunks: ChatCompletionChunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

async function rawSse(url: string, body: unknown): Promise<string[]> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  expect(response.headers.get('content-type')).toContain('text/event-stream');
  const text = await response.text();
  return text.split('\n\n').filter((event) => event !== '');
}

describe('chat completions', () => {
  it('streams text deltas the SDK parses, with the usage chunk and [DONE]', async () => {
    const seen: ChatCompletionRequest[] = [];
    const { emu, openai } = await start({
      chat: (request) => {
        seen.push(request);
        return { text: 'Hello caller, how can I help?' };
      },
    });
    const stream = await openai.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hi' },
      ],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = await collect(stream);
    const text = chunks.map((chunk) => chunk.choices[0]?.delta.content ?? '').join('');
    expect(text).toBe('Hello caller, how can I help?');
    expect(chunks[0]?.choices[0]?.delta.role).toBe('assistant');
    const finish = chunks.find((chunk) => chunk.choices[0]?.finish_reason !== null && chunk.choices.length > 0);
    expect(finish?.choices[0]?.finish_reason).toBe('stop');
    const last = chunks[chunks.length - 1];
    expect(last?.choices).toEqual([]);
    expect(last?.usage?.total_tokens).toBeGreaterThan(0);
    expect(seen[0]?.messages.map((message) => message.role)).toEqual(['system', 'user']);
    expect(emu.requests[0]).toMatchObject({ method: 'POST', path: '/v1/chat/completions', route: 'chat', status: 200, completed: true });
    expect(emu.requests[0]?.headers.authorization).toBe(`Bearer ${KEY}`);

    const raw = await rawSse(`${emu.baseUrl}/chat/completions`, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], stream: true });
    expect(raw[raw.length - 1]).toBe('data: [DONE]');
    expect(raw.every((event) => event.startsWith('data: '))).toBe(true);
    expect(JSON.parse((raw[0] as string).slice(6))).toMatchObject({ object: 'chat.completion.chunk', choices: [{ index: 0, finish_reason: null }] });
  });

  it('streams parallel tool calls keyed by index', async () => {
    const { emu, openai } = await start({
      chat: () => ({
        toolCalls: [
          { name: 'avr_transfer', arguments: '{"transfer_extension":"600"}', id: 'call_a' },
          { name: 'get_time', arguments: '{"tz":"UTC"}', id: 'call_b' },
        ],
      }),
    });
    const chunks = await collect(
      await openai.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'transfer me' }],
        tools: [
          { type: 'function', function: { name: 'avr_transfer', parameters: { type: 'object', properties: {} } } },
          { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: {} } } },
        ],
        stream: true,
      }),
    );
    const calls = new Map<number, { id?: string; name?: string; arguments: string }>();
    for (const chunk of chunks) {
      for (const delta of chunk.choices[0]?.delta.tool_calls ?? []) {
        const entry = calls.get(delta.index) ?? { arguments: '' };
        if (delta.id !== undefined) {
          expect(entry.id).toBeUndefined();
          entry.id = delta.id;
        }
        if (delta.function?.name !== undefined) entry.name = delta.function.name;
        entry.arguments += delta.function?.arguments ?? '';
        calls.set(delta.index, entry);
      }
    }
    expect([...calls.entries()]).toEqual([
      [0, { id: 'call_a', name: 'avr_transfer', arguments: '{"transfer_extension":"600"}' }],
      [1, { id: 'call_b', name: 'get_time', arguments: '{"tz":"UTC"}' }],
    ]);
    expect(chunks[0]?.choices[0]?.delta).toMatchObject({ role: 'assistant', content: null });
    expect(chunks.at(-1)?.choices[0]).toMatchObject({ delta: {}, finish_reason: 'tool_calls' });
    expect(emu.requests[0]?.body).toMatchObject({ tools: [{ type: 'function' }, { type: 'function' }] });

    // Helper form of the SDK accumulates the same stream.
    const final = await openai.chat.completions
      .stream({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'again' }] })
      .finalChatCompletion();
    expect(final.choices[0]?.message.tool_calls?.map((call) => (call.type === 'function' ? call.function.name : ''))).toEqual(['avr_transfer', 'get_time']);
  });

  it('returns a chat.completion without stream and checks the tool message rules', async () => {
    const { openai } = await start();
    const completion = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'ping' }] });
    expect(completion.object).toBe('chat.completion');
    expect(completion.choices[0]?.message).toMatchObject({ role: 'assistant', content: 'You said: ping.' });
    expect(completion.choices[0]?.finish_reason).toBe('stop');

    const orphan = openai.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [
        { role: 'user', content: 'hi' },
        { role: 'tool', tool_call_id: 'call_x', content: 'done' },
      ],
    });
    await expect(orphan).rejects.toBeInstanceOf(BadRequestError);
    await expect(orphan).rejects.toMatchObject({ param: 'messages.[1].role' });

    const unanswered = openai.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [
        { role: 'user', content: 'hi' },
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{}' } }] },
        { role: 'user', content: 'and?' },
      ],
    });
    await expect(unanswered).rejects.toThrow(/did not have response messages: call_1/);

    const answered = await openai.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [
        { role: 'user', content: 'hi' },
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{}' } }] },
        { role: 'tool', tool_call_id: 'call_1', content: '{"ok":true}' },
      ],
    });
    expect(answered.choices[0]?.message.content).toBe('Done.');
  });

  it('rejects unknown top-level arguments like the real API, and accepts every ChatCompletionCreateParams argument', async () => {
    const { emu, openai } = await start();
    const post = (body: Record<string, unknown>) =>
      fetch(`${emu.baseUrl}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const messages = [{ role: 'user', content: 'Hi' }];
    const unknown = await post({ model: 'gpt-4o-mini', messages, max_output_tokens: 10 });
    expect(unknown.status).toBe(400);
    expect(await unknown.json()).toEqual({
      error: { message: 'Unrecognized request argument supplied: max_output_tokens', type: 'invalid_request_error', param: null, code: null },
    });
    await expect(
      openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }], ...({ temprature: 0.2 } as object) }),
    ).rejects.toBeInstanceOf(BadRequestError);
    const everything: Record<string, unknown> = {
      messages,
      model: 'gpt-4o-mini',
      audio: null,
      frequency_penalty: 0,
      function_call: 'auto',
      functions: [{ name: 'f', parameters: { type: 'object' } }],
      logit_bias: {},
      logprobs: false,
      max_completion_tokens: 50,
      max_tokens: 50,
      metadata: { a: 'b' },
      modalities: ['text'],
      moderation: null,
      n: 1,
      parallel_tool_calls: true,
      prediction: null,
      presence_penalty: 0,
      prompt_cache_key: 'k',
      prompt_cache_options: {},
      prompt_cache_retention: null,
      reasoning_effort: null,
      response_format: { type: 'text' },
      safety_identifier: 'user-1',
      seed: 1,
      service_tier: 'auto',
      stop: null,
      store: false,
      stream: false,
      stream_options: null,
      temperature: 0.5,
      tool_choice: 'auto',
      tools: [{ type: 'function', function: { name: 'g', parameters: { type: 'object' } } }],
      top_logprobs: null,
      top_p: 1,
      user: 'u',
      verbosity: 'low',
      web_search_options: {},
    };
    const accepted = await post(everything);
    expect(accepted.status).toBe(200);
  });

  it('maps a wrong key to AuthenticationError and queued faults to their statuses', async () => {
    const { emu } = await start();
    const wrong = new OpenAI({ apiKey: 'sk-wrong-000000000', baseURL: emu.baseUrl, maxRetries: 0 });
    const failure = wrong.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] });
    await expect(failure).rejects.toBeInstanceOf(AuthenticationError);
    await expect(failure).rejects.toMatchObject({ status: 401, code: 'invalid_api_key' });

    const openai = new OpenAI({ apiKey: KEY, baseURL: emu.baseUrl, maxRetries: 0 });
    emu.queueFault({ route: 'chat', action: { type: 'status', status: 429, retryAfter: '7' } });
    const limited = openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] });
    await expect(limited).rejects.toBeInstanceOf(RateLimitError);
    const limitedError = (await limited.catch((error: unknown) => error)) as RateLimitError;
    expect(limitedError.headers.get('retry-after')).toBe('7');
    emu.queueFault({ action: { type: 'status', status: 500 } });
    await expect(openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] })).rejects.toMatchObject({
      status: 500,
    });
    const ok = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] });
    expect(ok.choices[0]?.message.content).toBe('You said: x.');
  });

  it('rejects temperature and max_tokens for reasoning models with the live API errors', async () => {
    const { openai } = await start();
    const messages = [{ role: 'user' as const, content: 'x' }];
    for (const model of ['o3-mini', 'gpt-5', 'openai/gpt-5-mini']) {
      const hot = openai.chat.completions.create({ model, messages, temperature: 0 });
      await expect(hot).rejects.toBeInstanceOf(BadRequestError);
      await expect(hot).rejects.toMatchObject({
        status: 400,
        code: 'unsupported_value',
        param: 'temperature',
        message: expect.stringContaining("Unsupported value: 'temperature' does not support 0 with this model. Only the default (1) value is supported.") as unknown,
      });
      await expect(openai.chat.completions.create({ model, messages, max_tokens: 50 })).rejects.toMatchObject({
        status: 400,
        code: 'unsupported_parameter',
        param: 'max_tokens',
      });
      const ok = await openai.chat.completions.create({ model, messages, temperature: 1, max_completion_tokens: 50 });
      expect(ok.choices[0]?.message.content).toBe('You said: x.');
    }
    // Other models take both.
    const ok = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages, temperature: 0, max_tokens: 50 });
    expect(ok.choices[0]?.finish_reason).toBe('stop');
  });

  it('streams a refusal as delta.refusal; an insufficient_quota 429; an error event mid-stream; a clean early end', async () => {
    const { emu, openai } = await start({ chat: (request) => (request.messages.some((m) => m.content === 'no') ? { refusal: "I can't help with that." } : { text: 'one two three four' }) });
    const messages = [{ role: 'user' as const, content: 'no' }];
    const refusal = await collect(await openai.chat.completions.create({ model: 'gpt-4o-mini', messages, stream: true }));
    expect(refusal.map((c) => c.choices[0]?.delta.refusal ?? '').join('')).toBe("I can't help with that.");
    expect(refusal.every((c) => (c.choices[0]?.delta.content ?? null) === null)).toBe(true);
    expect(refusal.at(-1)?.choices[0]?.finish_reason).toBe('stop');

    emu.queueFault({ route: 'chat', action: { type: 'insufficient_quota' } });
    const quota = openai.chat.completions.create({ model: 'gpt-4o-mini', messages });
    await expect(quota).rejects.toBeInstanceOf(RateLimitError);
    await expect(quota).rejects.toMatchObject({ status: 429, code: 'insufficient_quota', type: 'insufficient_quota' });

    const talk = [{ role: 'user' as const, content: 'talk' }];
    emu.queueFault({ route: 'chat', action: { type: 'error_event', afterChunks: 2 } });
    const failing = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: talk, stream: true });
    const received: string[] = [];
    const error = await (async () => {
      for await (const chunk of failing) received.push(chunk.choices[0]?.delta.content ?? '');
    })().catch((e: unknown) => e);
    expect(error).toMatchObject({ status: undefined, type: 'server_error' });
    expect(received.join('')).toBe('one ');

    emu.queueFault({ route: 'chat', action: { type: 'end', afterChunks: 3 } });
    const cut = await collect(await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: talk, stream: true }));
    expect(cut.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('one two ');
    expect(cut.every((c) => c.choices[0]?.finish_reason === null)).toBe(true);
  });

  it('aborts a stream mid-way and stalls', async () => {
    const { emu, openai } = await start({ chat: () => ({ text: 'one two three four five six' }) });
    emu.queueFault({ route: 'chat', action: { type: 'abort', afterChunks: 3 } });
    const stream = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], stream: true });
    const received: string[] = [];
    await expect(
      (async () => {
        for await (const chunk of stream) received.push(chunk.choices[0]?.delta.content ?? '');
      })(),
    ).rejects.toThrow();
    expect(received.join('')).toBe('one two ');

    emu.queueFault({ route: 'chat', action: { type: 'stall' } });
    const controller = new AbortController();
    const stalled = openai.chat.completions.create(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], stream: true },
      { signal: controller.signal },
    );
    await emu.waitFor(() => emu.requests.length === 2);
    expect(emu.requests[1]?.status).toBeUndefined();
    controller.abort();
    await expect(stalled).rejects.toThrow();
  });
});

describe('audio/speech', () => {
  it('streams raw 24 kHz PCM the SDK returns as a Response', async () => {
    const { emu, openai } = await start({ speech: ({ input }) => (input === 'custom' ? tone(250, 24000, 1000) : undefined) });
    const response = await openai.audio.speech.create({ model: 'gpt-4o-mini-tts', voice: 'alloy', input: 'Hello there.', response_format: 'pcm' });
    expect(response.headers.get('content-type')).toBe('audio/pcm');
    expect(response.headers.get('transfer-encoding')).toBe('chunked');
    const bytes = Buffer.from(await response.arrayBuffer());
    expect(bytes.length).toBe(12 * 60 * 48); // 12 characters x 60 ms x 48 bytes/ms
    const custom = Buffer.from(
      await (await openai.audio.speech.create({ model: 'tts-1', voice: 'nova', input: 'custom', response_format: 'pcm' })).arrayBuffer(),
    );
    const samples = new Int16Array(custom.buffer, custom.byteOffset, custom.length / 2);
    expect(samples.length).toBe(6000);
    expect(goertzel(samples, 1000, 24000)).toBeGreaterThan(100 * goertzel(samples, 3000, 24000));
    expect(emu.requests.map((request) => request.route)).toEqual(['speech', 'speech']);

    const wav = Buffer.from(await (await openai.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'abc', response_format: 'wav' })).arrayBuffer());
    expect(wav.subarray(0, 4).toString('ascii')).toBe('RIFF');
    expect(wav.readUInt32LE(24)).toBe(24000);
  });

  it('validates the request and streams SSE', async () => {
    const { emu, openai } = await start();
    await expect(openai.audio.speech.create({ model: 'gpt-4o-mini-tts', voice: 'alloy', input: 'x' })).rejects.toMatchObject({
      status: 400,
      code: 'unsupported_by_emulator',
    });
    await expect(
      openai.audio.speech.create({ model: 'gpt-4o-mini-tts', voice: 'robot' as 'alloy', input: 'x', response_format: 'pcm' }),
    ).rejects.toMatchObject({ status: 400, code: 'invalid_value', param: 'voice' });
    await expect(
      openai.audio.speech.create({ model: 'gpt-4o-mini-tts', voice: 'alloy', input: 'x'.repeat(4097), response_format: 'pcm' }),
    ).rejects.toMatchObject({ code: 'string_above_max_length' });
    await expect(
      openai.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'x', response_format: 'pcm', instructions: 'cheerful' }),
    ).rejects.toMatchObject({ status: 400, param: 'instructions' });
    await expect(openai.audio.speech.create({ model: 'tts-9', voice: 'alloy', input: 'x', response_format: 'pcm' })).rejects.toMatchObject({
      status: 404,
      code: 'model_not_found',
    });

    const events = await rawSse(`${emu.baseUrl}/audio/speech`, {
      model: 'gpt-4o-mini-tts',
      voice: 'alloy',
      input: 'hello',
      response_format: 'pcm',
      stream_format: 'sse',
    });
    const parsed = events.map((event) => JSON.parse(event.slice(6)) as { type: string; audio?: string });
    expect(parsed.at(-1)?.type).toBe('speech.audio.done');
    const audioBytes = parsed.reduce((sum, event) => sum + (event.audio === undefined ? 0 : Buffer.from(event.audio, 'base64').length), 0);
    expect(audioBytes).toBe(300 * 48);
  });

  it('aborts the audio stream after N chunks', async () => {
    const { emu } = await start({ faults: [{ route: 'speech', action: { type: 'abort', afterChunks: 2 } }] });
    const response = await fetch(`${emu.baseUrl}/audio/speech`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tts-1', voice: 'alloy', input: 'a fairly long sentence', response_format: 'pcm' }),
    });
    expect(response.status).toBe(200);
    const reader = response.body?.getReader();
    let received = 0;
    await expect(
      (async () => {
        for (;;) {
          const { done, value } = (await reader?.read()) ?? { done: true, value: undefined };
          if (done) return;
          received += value.length;
        }
      })(),
    ).rejects.toThrow();
    expect(received).toBe(2 * 4800);
    expect(emu.requests[0]?.completed).toBe(false);
  });

  it('answers unknown routes with OpenAI 404 JSON', async () => {
    const { emu } = await start();
    const response = await fetch(`${emu.baseUrl}/embeddings`, { method: 'POST', headers: { authorization: `Bearer ${KEY}` }, body: '{}' });
    expect(response.status).toBe(404);
    expect(await response.json()).toEqual({ error: { message: 'Invalid URL (POST /v1/embeddings)', type: 'invalid_request_error', param: null, code: null } });
  });
});
