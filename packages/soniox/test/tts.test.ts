import { afterEach, describe, expect, it } from 'vitest';
import { ProviderError } from '@stsgate/core';
import { concatPcm, startSonioxTtsEmulator } from '@stsgate/testkit';
import type { SonioxTtsEmulator, SonioxTtsEmulatorOptions } from '@stsgate/testkit';
import { createSonioxTts } from '../src/index.js';
import type { SonioxTtsOptions } from '../src/index.js';
import { callContext } from './helpers.js';

const KEY = 'soniox-test-key-0123456789';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A deterministic, non-trivial signal: every sample differs from its neighbours. */
function ramp(samples: number): Int16Array {
  const out = new Int16Array(samples);
  for (let i = 0; i < samples; i++) out[i] = ((i * 37) % 65536) - 32768;
  return out;
}

async function emulator(options: Partial<SonioxTtsEmulatorOptions> = {}): Promise<SonioxTtsEmulator> {
  const tts = await startSonioxTtsEmulator({ apiKey: KEY, synthesize: () => ramp(8000), ...options });
  cleanups.push(() => tts.close());
  return tts;
}

function adapter(tts: SonioxTtsEmulator, options: Partial<SonioxTtsOptions> = {}) {
  return createSonioxTts({ apiKey: KEY, url: tts.url, ...options });
}

async function collect(audio: AsyncIterable<Int16Array>): Promise<{ chunks: Int16Array[]; error: unknown }> {
  const chunks: Int16Array[] = [];
  try {
    for await (const chunk of audio) chunks.push(chunk);
    return { chunks, error: undefined };
  } catch (error) {
    return { chunks, error };
  }
}

describe('Soniox TTS against the emulator', () => {
  it('POSTs the documented body with Authorization: Bearer and streams the PCM unchanged', async () => {
    const tts = await emulator();
    const result = adapter(tts, { speed: 1.1 }).synthesize({ text: 'Sure, which day works for you?' }, callContext());
    expect(result.outputSampleRate).toBe(8000);
    const { chunks, error } = await collect(result.audio);
    expect(error).toBeUndefined();
    expect(chunks.length).toBeGreaterThan(1);
    expect(Array.from(concatPcm(...chunks))).toEqual(Array.from(ramp(8000)));
    const record = await tts.waitForRequest();
    expect(record.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(record.body).toEqual({
      model: 'tts-rt-v1',
      language: 'en',
      voice: 'Adrian',
      audio_format: 'pcm_s16le',
      sample_rate: 8000,
      speed: 1.1,
      text: 'Sure, which day works for you?',
    });
    expect(record.completed).toBe(true);
  });

  it('text over the 5,000-character limit is split at sentence ends into several requests, spoken in order', async () => {
    // Each request's audio says which request it was (its text length), so the order can be checked.
    const tts = await emulator({ synthesize: (request) => new Int16Array(400).fill(request.text.length) });
    const text = Array.from({ length: 400 }, (_, i) => `Sentence ${String(i)} is spoken in order.`).join(' ');
    expect(text.length).toBeGreaterThan(10_000);
    const { chunks, error } = await collect(adapter(tts).synthesize({ text }, callContext()).audio);
    expect(error).toBeUndefined();
    const texts = tts.requests.map((record) => record.request?.text ?? '');
    expect(texts.length).toBe(3);
    for (const piece of texts) {
      expect(piece.length).toBeLessThanOrEqual(5000);
      expect(piece.endsWith('in order.')).toBe(true);
    }
    expect(texts.join(' ')).toBe(text);
    expect(Array.from(concatPcm(...chunks))).toEqual(Array.from(concatPcm(...texts.map((piece) => new Int16Array(400).fill(piece.length)))));
    // One request at a time: the next starts once the previous one has been played out.
    expect(tts.requests.every((record) => record.completed)).toBe(true);
  });

  it('a text without sentence ends is split at spaces, and a single long word where it must be', async () => {
    const tts = await emulator({ synthesize: () => new Int16Array(80) });
    const words = Array.from({ length: 1500 }, (_, i) => `word${String(i)}`).join(' ');
    const { error } = await collect(adapter(tts).synthesize({ text: `${words} ${'x'.repeat(6000)}` }, callContext()).audio);
    expect(error).toBeUndefined();
    const texts = tts.requests.map((record) => record.request?.text ?? '');
    expect(texts.every((piece) => piece.length > 0 && piece.length <= 5000)).toBe(true);
    expect(texts.join(' ').replace(/x (?=x)/g, 'x')).toBe(`${words} ${'x'.repeat(6000)}`);
    expect(texts.slice(0, -2).every((piece) => /\d$/.test(piece))).toBe(true);
  });

  it("a request's voice and language win over the configured ones", async () => {
    const tts = await emulator();
    await collect(adapter(tts).synthesize({ text: 'Ciao', voice: 'Maya', language: 'it' }, callContext()).audio);
    expect((await tts.waitForRequest()).request).toMatchObject({ voice: 'Maya', language: 'it' });
  });

  it('empty text is an invalid_request error and sends no request', async () => {
    const tts = await emulator();
    const { chunks, error } = await collect(adapter(tts).synthesize({ text: '  ' }, callContext()).audio);
    expect(chunks).toEqual([]);
    expect(error).toMatchObject({ category: 'invalid_request', retryable: false });
    expect(tts.requests).toHaveLength(0);
  });

  it('a wrong key is an auth ProviderError before any audio', async () => {
    const tts = await emulator();
    const { chunks, error } = await collect(createSonioxTts({ apiKey: 'wrong-key', url: tts.url }).synthesize({ text: 'Hello' }, callContext()).audio);
    expect(chunks).toEqual([]);
    expect(error).toBeInstanceOf(ProviderError);
    expect(error).toMatchObject({ category: 'auth', statusCode: 401, retryable: false });
    expect((error as Error).message).toContain('Invalid API key');
    expect((error as Error).message).not.toContain('wrong-key');
  });

  it('JSON errors before streaming map by status', async () => {
    const tts = await emulator({
      faults: [
        { action: { type: 'status', status: 429, body: { error_code: 429, error_message: 'Too many requests.' } } },
        { action: { type: 'status', status: 503, body: { error_code: 503, error_message: 'Service unavailable.' } } },
      ],
    });
    const a = adapter(tts);
    expect((await collect(a.synthesize({ text: 'Hello' }, callContext()).audio)).error).toMatchObject({ category: 'rate_limit', retryable: true });
    expect((await collect(a.synthesize({ text: 'Hello' }, callContext()).audio)).error).toMatchObject({ category: 'server', retryable: true });
    expect((await collect(adapter(tts, { model: 'tts-nope' }).synthesize({ text: 'Hello' }, callContext()).audio)).error).toMatchObject({
      category: 'invalid_request',
      statusCode: 400,
    });
  });

  it('an error in the trailers after audio is thrown from the iterator, after the audio that came first', async () => {
    const tts = await emulator({ faults: [{ action: { type: 'trailer-error', afterChunks: 2, code: 500, message: 'Synthesis failed.' } }] });
    const { chunks, error } = await collect(adapter(tts).synthesize({ text: 'Hello there' }, callContext()).audio);
    expect(chunks.length).toBeGreaterThan(0);
    expect(error).toBeInstanceOf(ProviderError);
    expect(error).toMatchObject({ category: 'server', statusCode: 500 });
    expect((error as Error).message).toContain('Synthesis failed.');
  });

  it('aborting the call signal aborts the upstream request', async () => {
    const tts = await emulator({ chunkIntervalMs: 50 });
    const abort = new AbortController();
    const iterator = adapter(tts).synthesize({ text: 'A long sentence to speak.' }, callContext({ signal: abort.signal })).audio[Symbol.asyncIterator]();
    expect((await iterator.next()).done).toBe(false);
    abort.abort();
    await expect(iterator.next()).rejects.toMatchObject({ category: 'closed', retryable: false });
    const record = await tts.waitFor(() => tts.requests.find((r) => r.aborted));
    expect(record.completed).toBe(false);
  });

  it('a consumer that stops iterating aborts the upstream request', async () => {
    const tts = await emulator({ chunkIntervalMs: 50 });
    for await (const chunk of adapter(tts).synthesize({ text: 'A long sentence to speak.' }, callContext()).audio) {
      expect(chunk.length).toBeGreaterThan(0);
      break;
    }
    const record = await tts.waitFor(() => tts.requests.find((r) => r.aborted));
    expect(record.completed).toBe(false);
  });

  it('no data within the timeout is a timeout ProviderError (and the request is aborted)', async () => {
    const tts = await emulator({ faults: [{ action: { type: 'stall', afterChunks: 1 } }] });
    const { chunks, error } = await collect(adapter(tts, { timeoutMs: 300 }).synthesize({ text: 'Hello' }, callContext()).audio);
    expect(chunks.length).toBe(1);
    expect(error).toMatchObject({ category: 'timeout', retryable: true });
    await tts.waitFor(() => tts.requests.find((r) => r.aborted));
  });

  it('an unreachable server is a connectivity error', async () => {
    const tts = await emulator();
    const url = tts.url;
    await tts.close();
    const { error } = await collect(createSonioxTts({ apiKey: KEY, url }).synthesize({ text: 'Hello' }, callContext()).audio);
    expect(error).toMatchObject({ category: 'connectivity' });
  });

  it('rejects a sample rate other than 8000', () => {
    expect(() => createSonioxTts({ apiKey: KEY, sampleRate: 16000 as 8000 })).toThrow(/8000/);
  });
});
