import { afterEach, describe, expect, test } from 'vitest';
import {
  defaultSpeechmaticsSpeech,
  startSpeechmaticsTtsEmulator,
  type SpeechmaticsTtsEmulator,
  type SpeechmaticsTtsEmulatorOptions,
} from '../../src/emulators/speechmatics-tts.js';

const KEY = 'sm-tts-test-key-1234';
const TEXT = 'Hello there, how are you?';
/** 60 ms per character at 16 kHz, 2 bytes per sample. */
const PCM_BYTES = TEXT.length * 60 * 16 * 2;

let emulator: SpeechmaticsTtsEmulator | undefined;
afterEach(async () => {
  await emulator?.close();
  emulator = undefined;
});

async function start(options: Partial<SpeechmaticsTtsEmulatorOptions> = {}): Promise<SpeechmaticsTtsEmulator> {
  emulator = await startSpeechmaticsTtsEmulator({ apiKey: KEY, ...options });
  return emulator;
}

interface PostOptions {
  readonly voice?: string;
  readonly format?: string | null;
  readonly key?: string | null;
  readonly body?: unknown;
  readonly signal?: AbortSignal;
}

function post(emu: SpeechmaticsTtsEmulator, options: PostOptions = {}): Promise<Response> {
  const query = options.format === null ? '' : `?output_format=${options.format ?? 'pcm_16000'}`;
  const key = options.key === undefined ? KEY : options.key;
  return fetch(`${emu.baseUrl}/generate/${options.voice ?? 'sarah'}${query}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...(key === null ? {} : { Authorization: `Bearer ${key}` }) },
    body: typeof options.body === 'string' ? options.body : JSON.stringify(options.body ?? { text: TEXT }),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
}

/** Reads the body chunk by chunk, as the client sees it. */
async function readChunks(response: Response): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  for (;;) {
    const next = await reader.read();
    if (next.done) return chunks;
    chunks.push(next.value);
  }
}

function concat(chunks: readonly Uint8Array[]): Buffer {
  return Buffer.concat(chunks.map((chunk) => Buffer.from(chunk)));
}

function samplesOf(bytes: Buffer): Int16Array {
  const out = new Int16Array(bytes.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = bytes.readInt16LE(i * 2);
  return out;
}

describe('Speechmatics TTS emulator', () => {
  test('pcm_16000: raw s16le at 16 kHz, streamed in several chunks, length from the text', async () => {
    const emu = await start();
    const response = await post(emu);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('audio/pcm');
    const chunks = await readChunks(response);
    const bytes = concat(chunks);
    expect(bytes.length).toBe(PCM_BYTES);
    expect(bytes.subarray(0, 4).toString('ascii')).not.toBe('RIFF');
    expect(samplesOf(bytes)).toEqual(defaultSpeechmaticsSpeech(TEXT, 'sarah'));
    const record = await emu.waitForRequest((entry) => entry.completed);
    expect(record).toMatchObject({ method: 'POST', path: '/generate/sarah', voice: 'sarah', outputFormat: 'pcm_16000', status: 200, bytesSent: PCM_BYTES, aborted: false });
    expect(record.chunksSent).toBe(Math.ceil(PCM_BYTES / 3200));
    expect(record.chunksSent).toBeGreaterThan(3);
    expect(record.body).toEqual({ text: TEXT });
    expect(record.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(record.request).toMatchObject({ voice: 'sarah', outputFormat: 'pcm_16000', text: TEXT, sampleRate: 16000 });
  });

  test('every chunk of pcm_16000 has an even byte count (chunkMs honoured)', async () => {
    const emu = await start({ chunkMs: 33 });
    await readChunks(await post(emu));
    const record = await emu.waitForRequest((entry) => entry.completed);
    // 33 ms = 528 samples = 1056 bytes per chunk
    expect(record.chunksSent).toBe(Math.ceil(PCM_BYTES / 1056));
    expect(record.bytesSent % 2).toBe(0);
  });

  test('wav_16000 (also the default without output_format): a WAV header, then the data', async () => {
    const emu = await start();
    for (const format of ['wav_16000', null] as const) {
      const response = await post(emu, { format, voice: 'jack' });
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe('audio/wav');
      const bytes = Buffer.from(await response.arrayBuffer());
      expect(bytes.subarray(0, 4).toString('ascii')).toBe('RIFF');
      expect(bytes.subarray(8, 12).toString('ascii')).toBe('WAVE');
      expect(bytes.readUInt16LE(20)).toBe(1); // PCM
      expect(bytes.readUInt16LE(22)).toBe(1); // mono
      expect(bytes.readUInt32LE(24)).toBe(16000);
      expect(bytes.readUInt16LE(34)).toBe(16);
      expect(bytes.readUInt32LE(40)).toBe(PCM_BYTES);
      expect(bytes.length).toBe(44 + PCM_BYTES);
      expect(samplesOf(bytes.subarray(44))).toEqual(defaultSpeechmaticsSpeech(TEXT, 'jack'));
    }
    expect(emu.requests.map((record) => record.outputFormat)).toEqual(['wav_16000', 'wav_16000']);
  });

  test('default audio length is bounded to 300..20000 ms; synthesize overrides it', async () => {
    expect(defaultSpeechmaticsSpeech('Hi').length).toBe(300 * 16);
    expect(defaultSpeechmaticsSpeech('x'.repeat(1000)).length).toBe(20_000 * 16);
    const emu = await start({ synthesize: (request) => new Int16Array(request.text.length * 10).fill(1234) });
    const bytes = Buffer.from(await (await post(emu, { body: { text: 'abc' } })).arrayBuffer());
    expect(samplesOf(bytes)).toEqual(new Int16Array(30).fill(1234));
  });

  test('auth: a missing or wrong key is 401 with a JSON detail; a 403 comes from a fault', async () => {
    const emu = await start({ apiKey: ['other', KEY] });
    const missing = await post(emu, { key: null });
    expect(missing.status).toBe(401);
    expect(await missing.json()).toEqual({ detail: 'Missing API key.' });
    const wrong = await post(emu, { key: 'wrong' });
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toEqual({ detail: 'Invalid API key.' });
    // a bad key is reported before an unknown voice or format
    expect((await post(emu, { key: 'wrong', voice: 'nobody', format: 'mp3' })).status).toBe(401);
    expect((await post(emu, { key: 'other' })).status).toBe(200);
    emu.queueFault({ action: { type: 'status', status: 403 } });
    const forbidden = await post(emu);
    expect(forbidden.status).toBe(403);
    expect(await forbidden.json()).toEqual({ detail: 'Access forbidden.' });
    expect(emu.requests.map((record) => record.status)).toEqual([401, 401, 401, 200, 403]);
    expect(emu.requests.at(-1)?.fault).toEqual({ type: 'status', status: 403 });
  });

  test('validation: unknown voice 404, unknown output_format 422, bad bodies 422, other routes 404/405', async () => {
    const emu = await start();
    const cases: [PostOptions, number, RegExp][] = [
      [{ voice: 'nobody' }, 404, /^Voice not found: nobody$/],
      [{ format: 'pcm_8000' }, 422, /Invalid output_format: pcm_8000/],
      [{ format: 'mp3' }, 422, /Invalid output_format/],
      [{ body: { text: '' } }, 422, /must not be empty/],
      [{ body: { text: '   ' } }, 422, /must not be empty/],
      [{ body: {} }, 422, /^Missing required field: text$/],
      [{ body: { text: 42 } }, 422, /must be a string/],
      [{ body: { text: 'Hi', speed: 1.2 } }, 422, /^Unknown field: speed$/],
      [{ body: ['Hi'] }, 422, /JSON object/],
      [{ body: '{"text": ' }, 422, /^Invalid JSON body\.$/],
    ];
    for (const [options, status, detail] of cases) {
      const response = await post(emu, options);
      expect(response.status, JSON.stringify(options)).toBe(status);
      expect(response.headers.get('content-type')).toBe('application/json');
      const json = (await response.json()) as { detail: string };
      expect(json.detail).toMatch(detail);
    }
    expect(emu.requests.every((record) => record.request === undefined && record.completed)).toBe(true);
    const getVoice = await fetch(`${emu.baseUrl}/generate/sarah`, { headers: { Authorization: `Bearer ${KEY}` } });
    expect(getVoice.status).toBe(405);
    const other = await fetch(`${emu.baseUrl}/v1/generate`, { method: 'POST', headers: { Authorization: `Bearer ${KEY}` }, body: '{}' });
    expect(other.status).toBe(404);
    expect(await other.json()).toEqual({ detail: 'Not Found' });
  });

  test('unknown fields are accepted with allowUnknownFields; custom voices', async () => {
    const emu = await start({ allowUnknownFields: true, voices: ['aria'] });
    expect((await post(emu, { voice: 'aria', body: { text: 'Hi', speed: 1.2 } })).status).toBe(200);
    expect((await post(emu, { voice: 'sarah' })).status).toBe(404);
  });

  test('a client that aborts is recorded and streaming stops', async () => {
    const emu = await start({ chunkIntervalMs: 50 });
    const controller = new AbortController();
    const response = await post(emu, { body: { text: 'A long sentence. '.repeat(20) }, signal: controller.signal });
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    controller.abort();
    const record = await emu.waitFor(() => emu.requests.find((entry) => entry.aborted));
    expect(record.completed).toBe(false);
    const sent = record.chunksSent;
    expect(sent).toBeLessThan(10);
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(record.chunksSent).toBe(sent);
  });

  test('status fault with a custom body, and faults apply FIFO for `times` requests', async () => {
    const emu = await start({ faults: [{ action: { type: 'status', status: 503, body: { detail: 'Overloaded, retry later.' } }, times: 2 }] });
    emu.queueFault({ action: { type: 'status', status: 429 } });
    const statuses: number[] = [];
    const details: unknown[] = [];
    for (let i = 0; i < 4; i++) {
      const response = await post(emu);
      statuses.push(response.status);
      details.push(response.status === 200 ? (await response.arrayBuffer()).byteLength : await response.json());
    }
    expect(statuses).toEqual([503, 503, 429, 200]);
    expect(details).toEqual([{ detail: 'Overloaded, retry later.' }, { detail: 'Overloaded, retry later.' }, { detail: 'Rate limit exceeded.' }, PCM_BYTES]);
    // an invalid request does not consume a fault
    emu.queueFault({ action: { type: 'status', status: 500 } });
    expect((await post(emu, { voice: 'nobody' })).status).toBe(404);
    expect((await post(emu)).status).toBe(500);
  });

  test('stall before the response: no headers until the client gives up', async () => {
    const emu = await start();
    emu.queueFault({ action: { type: 'stall' } });
    const controller = new AbortController();
    const pending = post(emu, { signal: controller.signal });
    await emu.waitForRequest((record) => record.request !== undefined);
    await new Promise((resolve) => setTimeout(resolve, 50));
    controller.abort();
    await expect(pending).rejects.toThrow();
    const record = await emu.waitFor(() => emu.requests.find((entry) => entry.aborted));
    expect(record.status).toBeUndefined();
    expect(record.chunksSent).toBe(0);
  });

  test('stall after N chunks keeps the connection open with a partial body', async () => {
    const emu = await start();
    emu.queueFault({ action: { type: 'stall', afterChunks: 2 } });
    const controller = new AbortController();
    const response = await post(emu, { signal: controller.signal });
    expect(response.status).toBe(200);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    let received = 0;
    while (received < 6400) received += ((await reader.read()).value as Uint8Array).length;
    await new Promise((resolve) => setTimeout(resolve, 100));
    const record = emu.requests[0];
    expect(record).toMatchObject({ chunksSent: 2, bytesSent: 6400, completed: false, aborted: false });
    controller.abort();
    await emu.waitFor(() => record?.aborted);
  });

  test('abort fault: before the response the request fails, mid-body the body is cut', async () => {
    const emu = await start();
    emu.queueFault({ action: { type: 'abort' } });
    await expect(post(emu)).rejects.toThrow();
    await emu.waitFor(() => emu.requests[0]?.aborted);
    expect(emu.requests[0]?.status).toBeUndefined();

    emu.queueFault({ action: { type: 'abort', afterChunks: 3 } });
    const response = await post(emu);
    expect(response.status).toBe(200);
    let received = 0;
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    await expect(
      (async () => {
        for (;;) {
          const next = await reader.read();
          if (next.done) return;
          received += next.value.length;
        }
      })(),
    ).rejects.toThrow();
    expect(received).toBe(3 * 3200);
    const record = await emu.waitFor(() => (emu.requests[1]?.aborted === true ? emu.requests[1] : undefined));
    expect(record).toMatchObject({ status: 200, chunksSent: 3, completed: false, fault: { type: 'abort', afterChunks: 3 } });
  });

  test('slow fault: the chunks come at the given interval', async () => {
    const emu = await start();
    emu.queueFault({ action: { type: 'slow', chunkIntervalMs: 40 } });
    const started = Date.now();
    const bytes = Buffer.from(await (await post(emu, { body: { text: 'Short one.' } })).arrayBuffer());
    const elapsed = Date.now() - started;
    // 600 ms of audio = 6 chunks, 5 pauses of 40 ms
    expect(bytes.length).toBe(600 * 32);
    expect(elapsed).toBeGreaterThanOrEqual(190);
    const fast = Date.now();
    await (await post(emu, { body: { text: 'Short one.' } })).arrayBuffer();
    expect(Date.now() - fast).toBeLessThan(elapsed);
  });
});
