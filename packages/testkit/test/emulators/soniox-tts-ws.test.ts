import { BadRequestError, AuthError, NetworkError, SonioxNodeClient, type RealtimeTtsStream } from '@soniox/node';
import { afterEach, describe, expect, test } from 'vitest';
import {
  defaultSonioxSpeech,
  startSonioxTtsEmulator,
  type SonioxTtsEmulator,
  type SonioxTtsEmulatorOptions,
  type SonioxTtsStreamRecord,
} from '../../src/emulators/soniox-tts.js';
import { pcmBytes } from '../../src/emulators/realtime-audio.js';
import { connectRawClient, type RawWsClient } from './ws-client.js';

const KEY = 'soniox-test-key-1234';
const AUTH = { Authorization: `Bearer ${KEY}` };
const STREAM = { model: 'tts-rt-v1', language: 'en', voice: 'Adrian', audio_format: 'pcm_s16le', sample_rate: 8000 } as const;

type Message = Record<string, unknown>;

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function start(options: Partial<SonioxTtsEmulatorOptions> = {}): Promise<SonioxTtsEmulator> {
  const emulator = await startSonioxTtsEmulator({ apiKey: KEY, ...options });
  cleanups.push(() => emulator.close());
  return emulator;
}

function sdk(emulator: SonioxTtsEmulator, key = KEY): SonioxNodeClient {
  return new SonioxNodeClient({ api_key: key, tts_api_url: emulator.baseUrl, realtime: { tts_ws_url: emulator.wsUrl } });
}

async function raw(emulator: SonioxTtsEmulator, headers: Record<string, string> = AUTH): Promise<RawWsClient<Message>> {
  const client = await connectRawClient<Message>(emulator.wsUrl, { headers });
  cleanups.push(() => client.ws.terminate());
  return client;
}

/** The bytes the emulator sends for the pieces it spoke (default signal, pcm_s16le). */
function expectedAudio(record: SonioxTtsStreamRecord, rate = 8000): Buffer {
  return Buffer.concat(record.spoken.map((piece) => pcmBytes(defaultSonioxSpeech(piece, rate))));
}

async function collect(stream: RealtimeTtsStream): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

function forStream(client: RawWsClient<Message>, id: string): Message[] {
  return client.messages.filter((message) => message.stream_id === id);
}

describe('Soniox TTS WebSocket emulator: the official SDK (client.realtime.tts)', () => {
  test('one stream: the config carries api_key, audio arrives as base64 chunks, then audio_end and terminated', async () => {
    const emu = await start();
    const stream = await sdk(emu).realtime.tts({ ...STREAM });
    cleanups.push(() => stream.close());
    const events: string[] = [];
    stream.on('audioEnd', () => events.push('audioEnd'));
    stream.on('terminated', () => events.push('terminated'));
    stream.sendText('Hello there, how are you?', { end: true });
    const audio = await collect(stream);
    expect(events).toEqual(['audioEnd', 'terminated']);
    const record = await emu.waitForStream((entry) => entry.terminated);
    expect(record.authVia).toBe('config');
    expect(record.rawConfig).toMatchObject({ api_key: KEY, ...STREAM, stream_id: stream.streamId });
    expect(record.texts).toEqual(['Hello there, how are you?']);
    expect(record.spoken).toEqual(['Hello there, how are you?']);
    expect(audio.length).toBe('Hello there, how are you?'.length * 60 * 8 * 2);
    expect(audio.equals(expectedAudio(record))).toBe(true);
    expect(record.audioMessages).toBeGreaterThan(3);
    expect(record.audioEnded).toBe(true);
    const connection = emu.wsConnections[0];
    expect(connection?.headers.authorization).toBeUndefined();
    const last = connection?.sent.slice(-2);
    expect(last?.[0]).toMatchObject({ stream_id: stream.streamId, audio_end: true });
    expect(last?.[1]).toEqual({ stream_id: stream.streamId, terminated: true });
  });

  test('text pushed word by word is spoken as it arrives: audio before text_end, pieces in order', async () => {
    const emu = await start({ latency: { realTimeFactor: 0.1 } });
    const stream = await sdk(emu).realtime.tts({ ...STREAM });
    cleanups.push(() => stream.close());
    const firstAudio = new Promise<void>((resolve) => stream.once('audio', () => resolve()));
    const collecting = collect(stream);
    for (const word of ['Sure, ', 'which ', 'day ', 'works']) stream.sendText(word);
    await firstAudio;
    stream.sendText(' for you?', { end: true });
    const audio = await collecting;
    const record = await emu.waitForStream((entry) => entry.terminated);
    expect(record.texts).toEqual(['Sure, ', 'which ', 'day ', 'works', ' for you?']);
    expect(record.spoken).toEqual(['Sure,', 'which', 'day', 'works for you?']);
    expect(record.audioMessagesBeforeTextEnd).toBeGreaterThan(0);
    expect(audio.equals(expectedAudio(record))).toBe(true);
  });

  test('multiStream: two streams on one connection, each with its own audio', async () => {
    const emu = await start({ synthesize: (request) => new Int16Array(400).fill(request.text.startsWith('First') ? 1000 : -1000) });
    const connection = await sdk(emu).realtime.tts.multiStream();
    cleanups.push(() => connection.close());
    const a = await connection.stream({ ...STREAM, stream_id: 'a' });
    const b = await connection.stream({ ...STREAM, stream_id: 'b' });
    a.sendText('First stream.', { end: true });
    b.sendText('Second stream.', { end: true });
    const [audioA, audioB] = await Promise.all([collect(a), collect(b)]);
    expect(new Int16Array(audioA.buffer, audioA.byteOffset, audioA.length / 2).every((sample) => sample === 1000)).toBe(true);
    expect(new Int16Array(audioB.buffer, audioB.byteOffset, audioB.length / 2).every((sample) => sample === -1000)).toBe(true);
    expect(audioA.length).toBe(800);
    expect(emu.wsConnections).toHaveLength(1);
    expect(emu.wsConnections[0]?.streams.map((stream) => stream.streamId)).toEqual(['a', 'b']);
  });

  test('cancel: no more audio, terminated without audio_end', async () => {
    const emu = await start({ latency: { realTimeFactor: 0.5 } });
    const stream = await sdk(emu).realtime.tts({ ...STREAM });
    cleanups.push(() => stream.close());
    const terminated = new Promise<void>((resolve) => stream.once('terminated', () => resolve()));
    const firstAudio = new Promise<void>((resolve) => stream.once('audio', () => resolve()));
    stream.sendText('This is a long answer that would take a few seconds to speak. ');
    await firstAudio;
    stream.cancel();
    await terminated;
    const record = await emu.waitForStream((entry) => entry.terminated);
    expect(record.cancelled).toBe(true);
    expect(record.audioEnded).toBe(false);
    expect(record.audioBytes).toBeLessThan(expectedAudio(record).length);
    expect(emu.wsConnections[0]?.closeInfo).toBeUndefined();
  });

  test('per-stream errors end that stream only: a bad model, and a fault mid-stream', async () => {
    const emu = await start({ wsFaults: [{ action: { type: 'error', afterAudio: 1, code: 500, message: 'Synthesis failed.' } }] });
    const connection = await sdk(emu).realtime.tts.multiStream();
    cleanups.push(() => connection.close());
    const failing = await connection.stream({ ...STREAM, stream_id: 'fault' });
    failing.sendText('Hello there, how are you today?', { end: true });
    await expect(collect(failing)).rejects.toBeInstanceOf(NetworkError);
    const bad = await connection.stream({ ...STREAM, model: 'tts-nope', stream_id: 'bad' });
    const badError = new Promise<unknown>((resolve) => bad.once('error', resolve));
    bad.sendText('Hi', { end: true });
    expect(await badError).toBeInstanceOf(BadRequestError);
    const good = await connection.stream({ ...STREAM, stream_id: 'good' });
    good.sendText('Still here.', { end: true });
    expect((await collect(good)).length).toBe('Still here.'.length * 60 * 16);
    expect(emu.streams.map((record) => [record.streamId, record.error?.code])).toEqual([
      ['fault', 500],
      ['bad', 400],
      ['good', undefined],
    ]);
    expect(emu.streams[1]?.error?.message).toBe('Invalid model specified.');
    expect(emu.wsConnections[0]?.closeInfo).toBeUndefined();
  });

  test('a wrong api_key in the config is a per-stream 401 (AuthError)', async () => {
    const emu = await start();
    const stream = await sdk(emu, 'wrong-key').realtime.tts({ ...STREAM });
    cleanups.push(() => stream.close());
    const error = new Promise<unknown>((resolve) => stream.once('error', resolve));
    stream.sendText('Hello', { end: true });
    expect(await error).toBeInstanceOf(AuthError);
    expect(emu.streams[0]?.error).toEqual({ code: 401, message: 'Invalid API key.' });
  });

  test('requireHeaderAuth refuses the key the SDK sends in the config', async () => {
    const emu = await start({ requireHeaderAuth: true });
    const stream = await sdk(emu).realtime.tts({ ...STREAM });
    cleanups.push(() => stream.close());
    const error = new Promise<unknown>((resolve) => stream.once('error', resolve));
    expect(await error).toBeInstanceOf(AuthError);
    expect(emu.streams[0]?.error?.message).toMatch(/Authorization header/);
  });
});

describe('Soniox TTS WebSocket emulator: raw ws', () => {
  test('header auth: no api_key needed; keep_alive counted; audio decodes to the REST signal', async () => {
    const emu = await start();
    const client = await raw(emu);
    client.send({ keep_alive: true });
    client.send({ ...STREAM, stream_id: 's1' });
    client.send({ text: 'Hello world. ', text_end: false, stream_id: 's1' });
    await emu.waitFor(() => emu.streams[0]?.audioBytes === 'Hello world.'.length * 60 * 16);
    client.send({ text: '', text_end: true, stream_id: 's1' });
    await client.waitForMessage((message) => message.terminated === true, 'terminated');
    const record = emu.streams[0];
    expect(record?.authVia).toBe('header');
    const audio = Buffer.concat(forStream(client, 's1').flatMap((message) => (typeof message.audio === 'string' ? [Buffer.from(message.audio, 'base64')] : [])));
    expect(record !== undefined && audio.equals(expectedAudio(record))).toBe(true);
    // Everything was spoken before text_end: the last message carries no audio, only audio_end.
    expect(forStream(client, 's1').slice(-2)).toEqual([{ stream_id: 's1', audio: '', audio_end: true }, { stream_id: 's1', terminated: true }]);
    expect(emu.wsConnections[0]?.keepAliveCount).toBe(1);
  });

  test('the subprotocol pair soniox-api-key, <key> authenticates too', async () => {
    const emu = await start();
    const client = await connectRawClient<Message>(emu.wsUrl, { protocols: ['soniox-api-key', KEY] });
    cleanups.push(() => client.ws.terminate());
    client.send({ ...STREAM, stream_id: 's1' });
    client.send({ text: 'Hi', text_end: true, stream_id: 's1' });
    await client.waitForMessage((message) => message.terminated === true, 'terminated');
    expect(emu.streams[0]?.authVia).toBe('subprotocol');
  });

  test('a wrong Authorization key is a connection-level 401 (no stream_id), then close', async () => {
    const emu = await start();
    const client = await raw(emu, { Authorization: 'Bearer nope' });
    expect((await client.closed).code).toBe(1000);
    expect(client.messages).toEqual([{ error_code: 401, error_message: 'Invalid API key.' }]);
  });

  test('strict per-stream config validation: error then terminated, the socket stays open', async () => {
    const emu = await start();
    const client = await raw(emu);
    const cases: [Message, number, RegExp][] = [
      [{ ...STREAM, extra: 1 }, 400, /^Unknown field: extra$/],
      [{ ...STREAM, model: undefined }, 400, /^Missing required field: model$/],
      [{ ...STREAM, model: 'tts-x' }, 400, /^Invalid model specified\.$/],
      [{ ...STREAM, sample_rate: undefined }, 400, /Missing required field: sample_rate/],
      [{ ...STREAM, audio_format: 'pcm_mulaw', sample_rate: 16000 }, 400, /sample_rate/],
      [{ ...STREAM, sample_rate: 11025 }, 400, /sample_rate/],
      [{ ...STREAM, audio_format: 'ogg' }, 400, /^Invalid audio_format: ogg\.$/],
      [{ ...STREAM, audio_format: 'mp3' }, 400, /not supported by the emulator/],
      [{ ...STREAM, speed: 2 }, 400, /Invalid value for field speed/],
      [{ ...STREAM, voice: '' }, 400, /Invalid value for field voice/],
      [{ ...STREAM, language: 5 }, 400, /Invalid value for field language/],
      [{ ...STREAM, return_timestamps: true }, 400, /not supported by the emulator/],
      [{ ...STREAM, bitrate: 64000 }, 400, /^Invalid value for field bitrate: .*not pcm_s16le\.$/],
      [{ ...STREAM, audio_format: 'pcm_mulaw', bitrate: 64000 }, 400, /^Invalid value for field bitrate: .*not pcm_mulaw\.$/],
      [{ ...STREAM, client_reference_id: 'x'.repeat(257) }, 400, /^Client reference ID is too long \(max length 256\)\.$/],
    ];
    for (const [index, [config, code, message]] of cases.entries()) {
      const id = `bad-${String(index)}`;
      client.send({ ...config, stream_id: id });
      const error = await client.waitForMessage((entry) => entry.stream_id === id && entry.error_code !== undefined, id);
      expect(error.error_code).toBe(code);
      expect(String(error.error_message)).toMatch(message);
      await client.waitForMessage((entry) => entry.stream_id === id && entry.terminated === true, `${id} terminated`);
    }
    expect(emu.wsConnections[0]?.closeInfo).toBeUndefined();
    expect(emu.streams.every((record) => record.request === undefined && record.terminated)).toBe(true);
  });

  test('text messages are checked: unknown stream, missing text_end, text after text_end, empty stream', async () => {
    // The first audio waits, so text after text_end finds the stream still active.
    const emu = await start({ latency: { firstByteMs: 300 } });
    const client = await raw(emu);
    const errorFor = (id: string): Promise<Message> => client.waitForMessage((entry) => entry.stream_id === id && entry.error_code !== undefined, `${id} error`);
    client.send({ text: 'Hi', text_end: false, stream_id: 'ghost' });
    expect((await errorFor('ghost')).error_message).toBe('Stream ghost is not active.');
    client.send({ stream_id: 'ghost', cancel: true });
    client.send({ ...STREAM, stream_id: 'a' });
    client.send({ text: 'Hi', stream_id: 'a' });
    expect((await errorFor('a')).error_message).toBe('Missing required field: text_end');
    client.send({ ...STREAM, stream_id: 'b' });
    client.send({ text: 'Hi', text_end: true, stream_id: 'b' });
    client.send({ text: 'more', text_end: false, stream_id: 'b' });
    expect(await errorFor('b')).toMatchObject({ error_code: 400, error_message: 'Text received after text_end.' });
    client.send({ ...STREAM, stream_id: 'c' });
    client.send({ text: '  ', text_end: true, stream_id: 'c' });
    expect((await errorFor('c')).error_message).toBe('No text to synthesize.');
    // One text message holds at most 5,000 characters; a stream may take many such pieces.
    client.send({ ...STREAM, stream_id: 'd' });
    client.send({ text: 'a '.repeat(2500), text_end: false, stream_id: 'd' });
    client.send({ text: 'b '.repeat(2500), text_end: false, stream_id: 'd' });
    client.send({ text: 'c'.repeat(5001), text_end: false, stream_id: 'd' });
    expect(await errorFor('d')).toMatchObject({ error_code: 400, error_message: 'Text is too long: 5001 characters (at most 5000).' });
    expect(emu.streams.find((record) => record.streamId === 'd')?.spoken.length).toBeGreaterThan(0);
    expect(emu.wsConnections[0]?.closeInfo).toBeUndefined();
  });

  test('at most 5 concurrent streams; a duplicate active stream_id ends the active one', async () => {
    const emu = await start();
    const client = await raw(emu);
    for (let i = 0; i < 6; i++) client.send({ ...STREAM, stream_id: `s${String(i)}` });
    const sixth = await client.waitForMessage((entry) => entry.stream_id === 's5' && entry.error_code !== undefined, 's5 error');
    expect(sixth).toMatchObject({ error_code: 429 });
    client.send({ ...STREAM, stream_id: 's0' });
    const duplicate = await client.waitForMessage((entry) => entry.stream_id === 's0' && entry.error_code !== undefined, 's0 error');
    expect(duplicate.error_message).toBe('Stream s0 is already active.');
    // The slot is free again: a new stream works.
    client.send({ ...STREAM, stream_id: 's6' });
    client.send({ text: 'Hi', text_end: true, stream_id: 's6' });
    await client.waitForMessage((entry) => entry.stream_id === 's6' && entry.terminated === true, 's6 terminated');
    expect(forStream(client, 's6').some((entry) => entry.error_code !== undefined)).toBe(false);
  });

  test('stream duration cap: audio up to the cap then a per-stream error; a stream under it completes', async () => {
    // 0.5 s instead of Soniox's 2 minutes; the default signal is 60 ms of audio per character.
    const emu = await start({ maxStreamDurationMs: 500 });
    const client = await raw(emu);
    client.send({ ...STREAM, stream_id: 'short' });
    client.send({ text: 'Hi', text_end: true, stream_id: 'short' });
    await client.waitForMessage((entry) => entry.stream_id === 'short' && entry.terminated === true, 'short terminated');
    expect(forStream(client, 'short').some((entry) => entry.error_code !== undefined)).toBe(false);
    expect(emu.streams[0]?.audioEnded).toBe(true);

    client.send({ ...STREAM, stream_id: 'long' });
    client.send({ text: 'Hello there, how are you?', text_end: true, stream_id: 'long' });
    const error = await client.waitForMessage((entry) => entry.stream_id === 'long' && entry.error_code !== undefined, 'long error');
    expect(error).toEqual({ stream_id: 'long', error_code: 400, error_message: 'Stream duration limit reached (at most 0.5 s per stream). Start a new stream.' });
    await client.waitForMessage((entry) => entry.stream_id === 'long' && entry.terminated === true, 'long terminated');
    const record = emu.streams[1];
    expect(record?.audioBytes).toBe(500 * 8 * 2);
    expect(record?.audioEnded).toBe(false);
    expect(emu.wsConnections[0]?.closeInfo).toBeUndefined();
  });

  test('stream duration cap: a stream still open that long after its config fails the same way', async () => {
    const emu = await start({ maxStreamDurationMs: 200 });
    const client = await raw(emu);
    client.send({ ...STREAM, stream_id: 'idle' });
    const error = await client.waitForMessage((entry) => entry.stream_id === 'idle' && entry.error_code !== undefined, 'idle error');
    expect(error).toMatchObject({ error_code: 400, error_message: 'Stream duration limit reached (at most 0.2 s per stream). Start a new stream.' });
    await client.waitForMessage((entry) => entry.stream_id === 'idle' && entry.terminated === true, 'idle terminated');
    expect(emu.streams[0]?.audioMessages).toBe(0);
    expect(emu.wsConnections[0]?.closeInfo).toBeUndefined();
  });

  test('connection-level errors close the socket: no stream_id, invalid JSON, binary frames', async () => {
    const emu = await start();
    for (const [frame, message] of [
      [{ text: 'Hi', text_end: true }, 'Missing required field: stream_id'],
      ['{not json', 'Invalid JSON message.'],
      [Buffer.from([1, 2, 3]), 'Binary messages are not supported.'],
      [{ keep_alive: 'yes' }, /keep_alive/],
    ] as const) {
      const client = await raw(emu);
      client.send(frame);
      expect((await client.closed).code).toBe(1000);
      expect(client.messages).toHaveLength(1);
      expect(client.messages[0]?.error_code).toBe(400);
      expect(client.messages[0]?.stream_id).toBeUndefined();
      expect(String(client.messages[0]?.error_message)).toMatch(message);
    }
  });

  test('idle timeout: 408 without stream_id and close; keep_alive holds the connection open', async () => {
    const emu = await start({ idleTimeoutMs: 300 });
    const idle = await raw(emu);
    const alive = await raw(emu);
    const timer = setInterval(() => alive.send({ keep_alive: true }), 100);
    cleanups.push(() => clearInterval(timer));
    expect((await idle.closed).code).toBe(1000);
    expect(idle.messages).toEqual([{ error_code: 408, error_message: 'Request timeout.' }]);
    expect(alive.ws.readyState).toBe(alive.ws.OPEN);
    expect(emu.wsConnections[1]?.keepAliveCount).toBeGreaterThan(1);
  });

  test('faults: drop, stall, malformed frame, connection error, odd chunks, upgrade refused', async () => {
    const emu = await start();
    const open = async (id: string, text = 'Hello there, how are you today? '): Promise<RawWsClient<Message>> => {
      const client = await raw(emu);
      client.send({ ...STREAM, stream_id: id });
      client.send({ text, text_end: true, stream_id: id });
      return client;
    };

    emu.queueWsFault({ action: { type: 'drop', afterAudio: 2 } });
    const dropped = await open('drop');
    expect((await dropped.closed).code).toBe(1006);
    expect(forStream(dropped, 'drop').filter((entry) => entry.audio !== undefined)).toHaveLength(2);

    emu.queueWsFault({ action: { type: 'stall', afterAudio: 1 } });
    const stalled = await open('stall');
    await emu.waitFor(() => emu.streams.find((record) => record.streamId === 'stall')?.stalled);
    stalled.send({ stream_id: 'stall', cancel: true });
    await emu.waitFor(() => emu.streams.find((record) => record.streamId === 'stall')?.cancelled);
    expect(forStream(stalled, 'stall').map((entry) => Object.keys(entry).sort().join())).toEqual(['audio,stream_id']);

    emu.queueWsFault({ action: { type: 'malformed', afterAudio: 1, frame: '{"audio": 42' } });
    const malformed = await open('malformed');
    await malformed.waitForMessage((entry) => entry.terminated === true, 'terminated');
    expect(malformed.frames.filter((frame) => frame.kind === 'text').map((frame) => (frame.kind === 'text' ? frame.text : ''))).toEqual(['{"audio": 42']);

    emu.queueWsFault({ action: { type: 'connection-error', afterAudio: 1 } });
    const failed = await open('conn');
    expect((await failed.closed).code).toBe(1000);
    expect(failed.messages.at(-1)).toEqual({ error_code: 503, error_message: 'Service unavailable.' });

    emu.queueWsFault({ action: { type: 'odd-chunks' } });
    const odd = await open('odd');
    await odd.waitForMessage((entry) => entry.terminated === true, 'terminated');
    const sizes = forStream(odd, 'odd').flatMap((entry) => (typeof entry.audio === 'string' && entry.audio !== '' ? [Buffer.from(entry.audio, 'base64').length] : []));
    expect(sizes.slice(0, -1).every((size) => size % 2 === 1)).toBe(true);

    emu.queueWsFault({ at: 'upgrade', action: { type: 'http', status: 503 } });
    await expect(raw(emu)).rejects.toThrow(/503/);
    expect(emu.wsUpgrades.at(-1)?.status).toBe(503);
  });
});

describe('Soniox TTS emulator latency', () => {
  test('WebSocket: first audio firstByteMs after the first word; realTimeFactor paces the audio', async () => {
    const emu = await start({ latency: { firstByteMs: 300, realTimeFactor: 0.5 }, chunkMs: 100 });
    const client = await raw(emu);
    const arrivals: number[] = [];
    client.ws.on('message', () => arrivals.push(performance.now()));
    client.send({ ...STREAM, stream_id: 's' });
    const sentAt = performance.now();
    // 12 characters: 720 ms of audio, 8 messages of 100 ms (the last with audio_end), then terminated.
    client.send({ text: 'Good morning', text_end: true, stream_id: 's' });
    await client.waitForMessage((entry) => entry.terminated === true, 'terminated');
    const first = (arrivals[0] as number) - sentAt;
    expect(first).toBeGreaterThanOrEqual(300);
    expect(first).toBeLessThan(600);
    const span = (arrivals.at(-2) as number) - (arrivals[0] as number);
    expect(span).toBeGreaterThanOrEqual(7 * 50 - 5);
    expect(span).toBeLessThan(7 * 50 + 300);
  });

  test('REST: the response starts firstByteMs after the request; a client gone meanwhile is recorded', async () => {
    const emu = await start({ latency: { firstByteMs: 300 } });
    const body = JSON.stringify({ ...STREAM, text: 'Hello' });
    const headers = { ...AUTH, 'Content-Type': 'application/json' };
    const sentAt = performance.now();
    const response = await fetch(emu.url, { method: 'POST', headers, body });
    expect(performance.now() - sentAt).toBeGreaterThanOrEqual(300);
    expect((await response.arrayBuffer()).byteLength).toBe(300 * 16);
    const controller = new AbortController();
    const pending = fetch(emu.url, { method: 'POST', headers, body, signal: controller.signal });
    await emu.waitFor(() => emu.requests[1]);
    controller.abort();
    await expect(pending).rejects.toThrow();
    await emu.waitFor(() => emu.requests[1]?.aborted);
    expect(emu.requests[1]?.status).toBeUndefined();
  });
});
