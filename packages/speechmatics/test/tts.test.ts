import { afterEach, describe, expect, test } from 'vitest';
import { startSpeechmaticsTtsEmulator } from '@stsgate/testkit';
import type { SpeechmaticsTtsEmulator, SpeechmaticsTtsEmulatorOptions } from '@stsgate/testkit';
import { ProviderError } from '@stsgate/core';
import { createSpeechmaticsTts } from '../src/index.js';
import type { SpeechmaticsTtsOptions } from '../src/index.js';
import { callContext } from './helpers.js';

const KEY = 'sm-tts-test-key-789';
let emulator: SpeechmaticsTtsEmulator | undefined;

afterEach(async () => {
  await emulator?.close();
  emulator = undefined;
});

async function setup(emulatorOptions: Partial<SpeechmaticsTtsEmulatorOptions> = {}, adapterOptions: Partial<SpeechmaticsTtsOptions> = {}) {
  emulator = await startSpeechmaticsTtsEmulator({ apiKey: KEY, ...emulatorOptions });
  return { emulator, adapter: createSpeechmaticsTts({ apiKey: KEY, url: emulator.baseUrl, ...adapterOptions }) };
}

async function collect(audio: AsyncIterable<Int16Array>): Promise<{ samples: number; chunks: number }> {
  let samples = 0;
  let chunks = 0;
  for await (const chunk of audio) {
    samples += chunk.length;
    chunks++;
  }
  return { samples, chunks };
}

async function failure(audio: AsyncIterable<Int16Array>): Promise<ProviderError> {
  try {
    await collect(audio);
  } catch (error) {
    if (error instanceof ProviderError) return error;
    throw error;
  }
  throw new Error('expected the synthesis to fail');
}

describe('Speechmatics TTS against the emulator', () => {
  test('streams raw 16 kHz PCM of the expected length, in several chunks, with pcm_16000 and the bearer key', async () => {
    const { emulator, adapter } = await setup();
    const text = 'Hello, thank you for calling.';
    const synthesis = adapter.synthesize({ text }, callContext());
    expect(synthesis.outputSampleRate).toBe(16000);
    const { samples, chunks } = await collect(synthesis.audio);
    expect(samples).toBe(60 * text.length * 16);
    expect(chunks).toBeGreaterThan(3);
    const record = emulator.requests[0];
    expect(record?.path).toBe('/generate/sarah');
    expect(record?.outputFormat).toBe('pcm_16000');
    expect(record?.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(record?.body).toEqual({ text });
  });

  test('the voice comes from the request, else the adapter option', async () => {
    const { emulator, adapter } = await setup({}, { voice: 'theo' });
    await collect(adapter.synthesize({ text: 'One.' }, callContext()).audio);
    await collect(adapter.synthesize({ text: 'Two.', voice: 'jack' }, callContext()).audio);
    expect(emulator.requests.map((request) => request.voice)).toEqual(['theo', 'jack']);
  });

  test('errors: bad key, unknown voice, rate limit, empty text; none leaks the key', async () => {
    const { emulator, adapter } = await setup();
    const badKey = createSpeechmaticsTts({ apiKey: 'wrong-key-000', url: emulator.baseUrl });
    const auth = await failure(badKey.synthesize({ text: 'Hi' }, callContext()).audio);
    expect(auth).toMatchObject({ category: 'auth', statusCode: 401, retryable: false });
    expect(auth.message).not.toContain('wrong-key-000');
    expect(await failure(adapter.synthesize({ text: 'Hi', voice: 'nobody' }, callContext()).audio)).toMatchObject({ category: 'invalid_request', statusCode: 404 });
    emulator.queueFault({ action: { type: 'status', status: 429 } });
    expect(await failure(adapter.synthesize({ text: 'Hi' }, callContext()).audio)).toMatchObject({ category: 'rate_limit', statusCode: 429 });
    expect(await failure(adapter.synthesize({ text: '  ' }, callContext()).audio)).toMatchObject({ category: 'invalid_request' });
    expect(emulator.requests).toHaveLength(3);
  });

  test('a body cut short is a connectivity error; a stalled stream times out', async () => {
    const { emulator, adapter } = await setup({}, { timeoutMs: 300 });
    emulator.queueFault({ action: { type: 'abort', afterChunks: 2 } });
    expect(await failure(adapter.synthesize({ text: 'A sentence that is long enough.' }, callContext()).audio)).toMatchObject({ category: 'connectivity' });
    emulator.queueFault({ action: { type: 'stall', afterChunks: 1 } });
    expect(await failure(adapter.synthesize({ text: 'A sentence that is long enough.' }, callContext()).audio)).toMatchObject({ category: 'timeout' });
  });

  test('the call ending cancels the upstream request', async () => {
    const { emulator, adapter } = await setup({ chunkIntervalMs: 50 });
    const controller = new AbortController();
    const audio = adapter.synthesize({ text: 'A long answer that takes a while to stream out.' }, callContext({ signal: controller.signal })).audio;
    const iterator = audio[Symbol.asyncIterator]();
    await iterator.next();
    controller.abort();
    await expect(iterator.next()).rejects.toMatchObject({ category: 'closed' });
    await emulator.waitFor(() => emulator.requests[0]?.aborted);
  });
});
