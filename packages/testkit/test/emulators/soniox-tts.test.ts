import { request as httpRequest } from 'node:http';
import { SonioxNodeClient } from '@soniox/node';
import { afterEach, describe, expect, test } from 'vitest';
import { startSonioxTtsEmulator, type SonioxTtsEmulator, type SonioxTtsEmulatorOptions } from '../../src/emulators/soniox-tts.js';

const KEY = 'soniox-test-key-1234';
const BODY = { model: 'tts-rt-v1', language: 'en', voice: 'Adrian', audio_format: 'pcm_s16le', sample_rate: 8000, text: 'Hello there, how are you?' };

let emulator: SonioxTtsEmulator | undefined;
afterEach(async () => {
  await emulator?.close();
  emulator = undefined;
});

async function start(options: Partial<SonioxTtsEmulatorOptions> = {}): Promise<SonioxTtsEmulator> {
  emulator = await startSonioxTtsEmulator({ apiKey: KEY, ...options });
  return emulator;
}

function post(url: string, body: unknown, key = KEY, signal?: AbortSignal): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    ...(signal === undefined ? {} : { signal }),
  });
}

/** Raw http request that collects chunks and trailers (fetch cannot read trailers). */
function rawPost(url: string, body: unknown): Promise<{ status: number; headers: Record<string, unknown>; chunks: Buffer[]; trailers: Record<string, string | undefined> }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'POST', headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, chunks, trailers: res.trailers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

describe('Soniox TTS REST emulator', () => {
  test('streams raw pcm_s16le at the requested rate in several chunks, duration from the text', async () => {
    const emu = await start();
    const result = await rawPost(emu.url, BODY);
    expect(result.status).toBe(200);
    expect(result.headers['content-type']).toBe('audio/pcm');
    expect(result.headers.trailer).toBe('x-tts-error-code, x-tts-error-message');
    expect(result.chunks.length).toBeGreaterThan(3);
    const bytes = Buffer.concat(result.chunks);
    expect(bytes.subarray(0, 4).toString('ascii')).not.toBe('RIFF');
    expect(bytes.length).toBe(BODY.text.length * 60 * 8 * 2);
    expect(result.trailers['x-tts-error-code']).toBeUndefined();
    const record = await emu.waitForRequest((entry) => entry.completed);
    expect(record.request?.sampleRate).toBe(8000);
    expect(record.aborted).toBe(false);
    expect(record.headers.authorization).toBe(`Bearer ${KEY}`);
  });

  test('wav, mulaw and 24 kHz formats', async () => {
    const emu = await start();
    const wav = Buffer.from(await (await post(emu.url, { ...BODY, audio_format: 'wav', sample_rate: 16000 })).arrayBuffer());
    expect(wav.subarray(0, 4).toString('ascii')).toBe('RIFF');
    expect(wav.readUInt32LE(24)).toBe(16000);
    const mulaw = Buffer.from(await (await post(emu.url, { ...BODY, audio_format: 'pcm_mulaw' })).arrayBuffer());
    expect(mulaw.length).toBe(BODY.text.length * 60 * 8);
    const pcm24 = Buffer.from(await (await post(emu.url, { ...BODY, sample_rate: 24000 })).arrayBuffer());
    expect(pcm24.length).toBe(BODY.text.length * 60 * 24 * 2);
  });

  test('errors before streaming are JSON with an HTTP status', async () => {
    const emu = await start();
    const cases: [unknown, string, number, RegExp][] = [
      [BODY, 'wrong', 401, /^Invalid API key\.$/],
      [{ ...BODY, model: 'tts-x' }, KEY, 400, /^Invalid model specified\.$/],
      [{ ...BODY, text: '' }, KEY, 400, /empty/],
      [{ ...BODY, audio_format: 'pcm_mulaw', sample_rate: 16000 }, KEY, 400, /sample_rate/],
      [{ ...BODY, sample_rate: 11025 }, KEY, 400, /sample_rate/],
      [{ ...BODY, voice: undefined }, KEY, 400, /Missing required field: voice/],
      [{ ...BODY, extra: 1 }, KEY, 400, /Unknown field: extra/],
      // The documented limits: speed 0.7..1.3, at most 5,000 characters of text.
      [{ ...BODY, speed: 0.6 }, KEY, 400, /Invalid value for field speed/],
      [{ ...BODY, speed: 1.4 }, KEY, 400, /Invalid value for field speed/],
      [{ ...BODY, text: 'a'.repeat(5001) }, KEY, 400, /^Text is too long: 5001 characters \(at most 5000\)\.$/],
      // A bitrate belongs to the compressed formats only (mp3, opus, aac); PCM and wav have none.
      [{ ...BODY, bitrate: 64000 }, KEY, 400, /^Invalid value for field bitrate: .*not pcm_s16le\.$/],
      [{ ...BODY, audio_format: 'wav', sample_rate: 16000, bitrate: 64000 }, KEY, 400, /^Invalid value for field bitrate: .*not wav\.$/],
      [{ ...BODY, client_reference_id: 'x'.repeat(257) }, KEY, 400, /^Client reference ID is too long \(max length 256\)\.$/],
    ];
    for (const [body, key, status, message] of cases) {
      const response = await post(emu.url, body, key);
      expect(response.status).toBe(status);
      const json = (await response.json()) as { error_code: number; error_message: string };
      expect(json.error_code).toBe(status);
      expect(json.error_message).toMatch(message);
    }
    for (const status of [401, 429, 500]) {
      emu.queueFault({ action: { type: 'status', status } });
      const response = await post(emu.url, BODY);
      expect(response.status).toBe(status);
      expect(((await response.json()) as { error_code: number }).error_code).toBe(status);
    }
  });

  test('the limits themselves are accepted: speed 0.7 and 1.3, 5,000 characters (counted as code points), a 256-character client_reference_id', async () => {
    const emu = await start({ synthesize: () => new Int16Array(80) });
    for (const body of [
      { ...BODY, speed: 0.7 },
      { ...BODY, speed: 1.3 },
      { ...BODY, text: 'a'.repeat(5000) },
      { ...BODY, text: '\u{1F600}'.repeat(5000) },
      { ...BODY, client_reference_id: 'x'.repeat(256) },
    ]) {
      const response = await post(emu.url, body);
      expect(response.status).toBe(200);
      await response.arrayBuffer();
    }
  });

  test('a mid-stream error arrives as trailers', async () => {
    const emu = await start();
    emu.queueFault({ action: { type: 'trailer-error', afterChunks: 2, code: 503, message: 'Synthesis failed.' } });
    const result = await rawPost(emu.url, BODY);
    expect(result.status).toBe(200);
    expect(result.chunks.length).toBeGreaterThanOrEqual(1);
    expect(result.trailers['x-tts-error-code']).toBe('503');
    expect(result.trailers['x-tts-error-message']).toBe('Synthesis failed.');
    expect(emu.requests[0]?.trailers).toEqual({ code: 503, message: 'Synthesis failed.' });
  });

  test('client abort is detected and recorded', async () => {
    const emu = await start();
    emu.queueFault({ action: { type: 'slow', chunkIntervalMs: 50 } });
    const controller = new AbortController();
    const response = await post(emu.url, { ...BODY, text: 'A long sentence. '.repeat(20) }, KEY, controller.signal);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    controller.abort();
    const record = await emu.waitFor(() => emu.requests.find((entry) => entry.aborted));
    expect(record.completed).toBe(false);
    expect(record.chunksSent).toBeLessThan(10);
  });

  test('stall before the response keeps the request open until the client aborts', async () => {
    const emu = await start();
    emu.queueFault({ action: { type: 'stall' } });
    const controller = new AbortController();
    const pending = post(emu.url, BODY, KEY, controller.signal);
    await emu.waitForRequest();
    controller.abort();
    await expect(pending).rejects.toThrow();
    await emu.waitFor(() => emu.requests[0]?.aborted);
    expect(emu.requests[0]?.status).toBeUndefined();
  });

  test('the official SDK streams from the emulator (tts_api_url)', async () => {
    const emu = await start();
    const client = new SonioxNodeClient({ api_key: KEY, tts_api_url: emu.baseUrl });
    const chunks: Uint8Array[] = [];
    for await (const chunk of client.tts.generateStream({ model: 'tts-rt-v1', language: 'en', voice: 'Adrian', audio_format: 'pcm_s16le', sample_rate: 8000, text: BODY.text })) {
      chunks.push(chunk);
    }
    expect(chunks.reduce((n, chunk) => n + chunk.length, 0)).toBe(BODY.text.length * 60 * 16);
    await expect(new SonioxNodeClient({ api_key: 'wrong', tts_api_url: emu.baseUrl }).tts.generate({ ...BODY, audio_format: 'pcm_s16le' })).rejects.toMatchObject({
      statusCode: 401,
    });
  });
});
