import { getEventListeners } from 'node:events';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ProviderError } from '@stsgate/core';
import type { CallContext, TtsAdapter, TtsTextStream } from '@stsgate/core';
import { concatPcm, defaultSonioxSpeech, startSonioxTtsEmulator } from '@stsgate/testkit';
import type { SonioxTtsEmulator, SonioxTtsEmulatorOptions, SonioxTtsStreamRecord } from '@stsgate/testkit';
import { createSonioxTts, defineSonioxTts, sonioxTtsEnvSchema } from '../src/index.js';
import type { SonioxTtsOptions } from '../src/index.js';
import { buildTtsStreamConfig, parseTtsStreamMessage } from '../src/wire.js';
import { callContext, memoryLogger, sleep } from './helpers.js';

const KEY = 'soniox-test-key-0123456789';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function emulator(options: Partial<SonioxTtsEmulatorOptions> = {}): Promise<SonioxTtsEmulator> {
  const tts = await startSonioxTtsEmulator({ apiKey: KEY, ...options });
  cleanups.push(() => tts.close());
  return tts;
}

function textStream(adapter: TtsAdapter, call: CallContext = callContext()): TtsTextStream {
  const stream = adapter.streamText?.({}, call);
  if (stream === undefined) throw new Error('streamText is missing');
  cleanups.push(() => stream.close());
  return stream;
}

function open(tts: SonioxTtsEmulator, options: Partial<SonioxTtsOptions> = {}, call: CallContext = callContext()): TtsTextStream {
  return textStream(createSonioxTts({ apiKey: KEY, url: tts.url, websocketUrl: tts.wsUrl, ...options }), call);
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

/** What the emulator synthesized for the stream (its default signal, piece by piece). */
function expected(record: SonioxTtsStreamRecord): Int16Array {
  return concatPcm(...record.spoken.map((piece) => defaultSonioxSpeech(piece, 8000)));
}

const LONG = 'This is a long answer that takes a few seconds to speak, so there is time to stop it. ';

describe('Soniox TTS streamText against the emulator', () => {
  it('sends the config with header auth (never the key in a message), then the text in order; the audio is the synthesis', async () => {
    const tts = await emulator();
    const adapter = createSonioxTts({ apiKey: KEY, url: tts.url, websocketUrl: tts.wsUrl, speed: 1.1 });
    expect(adapter.capabilities.streamingInput).toBe(true);
    const stream = adapter.streamText?.({ voice: 'Maya', language: 'it' }, callContext());
    if (stream === undefined) throw new Error('streamText is missing');
    expect(stream.outputSampleRate).toBe(8000);
    // All pushed before the socket is open: queued and sent in order after the config.
    stream.pushText('Hello there, ');
    stream.pushText('how are');
    stream.pushText(' you?');
    stream.endText();
    const { chunks, error } = await collect(stream.audio);
    expect(error).toBeUndefined();
    const record = await tts.waitForStream((entry) => entry.terminated);
    expect(record.authVia).toBe('header');
    expect(record.rawConfig).toEqual({
      model: 'tts-rt-v1',
      language: 'it',
      voice: 'Maya',
      audio_format: 'pcm_s16le',
      sample_rate: 8000,
      speed: 1.1,
      stream_id: record.streamId,
    });
    expect(record.texts).toEqual(['Hello there, ', 'how are', ' you?', '']);
    expect(record.spoken).toEqual(['Hello there,', 'how', 'are', 'you?']);
    expect(Array.from(concatPcm(...chunks))).toEqual(Array.from(expected(record)));
    const connection = tts.wsConnections[0];
    expect(connection?.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(JSON.stringify(connection?.received)).not.toContain(KEY);
    await tts.waitFor(() => connection?.closeInfo);
    expect(record.cancelled).toBe(false);
  });

  it('audio starts before endText, in the order the text was pushed', async () => {
    const words = ['Sure,', 'which', 'day', 'works', 'for', 'you?'];
    // Each word's audio is a constant: its 1-based position times 100.
    const tts = await emulator({ synthesize: (request) => new Int16Array(160).fill((words.indexOf(request.text) + 1) * 100) });
    const stream = open(tts);
    const iterator = stream.audio[Symbol.asyncIterator]();
    for (const word of words.slice(0, 3)) stream.pushText(`${word} `);
    const first = await iterator.next();
    expect(first.done).toBe(false);
    expect(tts.streams[0]?.textEnded).toBe(false);
    for (const word of words.slice(3)) stream.pushText(`${word} `);
    stream.endText();
    const rest = await collect({ [Symbol.asyncIterator]: () => iterator });
    expect(rest.error).toBeUndefined();
    const samples = concatPcm(first.value as Int16Array, ...rest.chunks);
    const order = Array.from(samples).filter((value, i, all) => i === 0 || value !== all[i - 1]);
    expect(order).toEqual([100, 200, 300, 400, 500, 600]);
    expect(tts.streams[0]?.audioMessagesBeforeTextEnd).toBeGreaterThan(0);
  });

  it('close() cancels upstream: a cancel goes out, the audio ends at once, the socket closes', async () => {
    const tts = await emulator({ latency: { realTimeFactor: 1 } });
    const stream = open(tts);
    stream.pushText(LONG);
    stream.endText();
    const iterator = stream.audio[Symbol.asyncIterator]();
    expect((await iterator.next()).done).toBe(false);
    await stream.close();
    expect((await iterator.next()).done).toBe(true);
    stream.pushText('ignored');
    const record = await tts.waitFor(() => tts.streams.find((entry) => entry.cancelled));
    expect(record.terminated).toBe(true);
    expect(record.audioEnded).toBe(false);
    expect(record.texts).toEqual([LONG, '']);
    expect((await tts.waitFor(() => tts.wsConnections[0]?.closeInfo)).by).toBe('client');
  });

  it('aborting the call signal cancels like close(); the audio ends without an error', async () => {
    const tts = await emulator({ latency: { realTimeFactor: 1 } });
    const abort = new AbortController();
    const stream = open(tts, {}, callContext({ signal: abort.signal }));
    stream.pushText(LONG);
    const iterator = stream.audio[Symbol.asyncIterator]();
    expect((await iterator.next()).done).toBe(false);
    abort.abort();
    expect((await iterator.next()).done).toBe(true);
    await tts.waitFor(() => tts.streams.find((entry) => entry.cancelled));
    expect(getEventListeners(abort.signal, 'abort')).toHaveLength(0);
  });

  it('a consumer that stops iterating cancels the synthesis', async () => {
    const tts = await emulator({ latency: { realTimeFactor: 1 } });
    const stream = open(tts);
    stream.pushText(LONG);
    stream.endText();
    for await (const chunk of stream.audio) {
      expect(chunk.length).toBeGreaterThan(0);
      break;
    }
    await tts.waitFor(() => tts.streams.find((entry) => entry.cancelled));
  });

  it('a wrong key is an auth ProviderError without the key in its message (connection-level error or refused upgrade)', async () => {
    const tts = await emulator();
    const stream = textStream(createSonioxTts({ apiKey: 'wrong-key-0123', url: tts.url, websocketUrl: tts.wsUrl }));
    stream.pushText('Hello');
    stream.endText();
    const { chunks, error } = await collect(stream.audio);
    expect(chunks).toEqual([]);
    expect(error).toBeInstanceOf(ProviderError);
    expect(error).toMatchObject({ category: 'auth', statusCode: 401, retryable: false });
    expect((error as Error).message).toContain('Invalid API key');
    expect((error as Error).message).not.toContain('wrong-key-0123');

    tts.queueWsFault({ at: 'upgrade', action: { type: 'http', status: 401 } });
    const refused = open(tts);
    refused.pushText('Hello');
    expect((await collect(refused.audio)).error).toMatchObject({ category: 'auth', statusCode: 401 });
  });

  it('a per-stream error is thrown after the audio that came first, and nothing is cancelled', async () => {
    const tts = await emulator({ wsFaults: [{ action: { type: 'error', afterAudio: 2, code: 500, message: 'Synthesis failed.' } }] });
    const stream = open(tts);
    stream.pushText('Hello there, how are you today?');
    stream.endText();
    const { chunks, error } = await collect(stream.audio);
    expect(chunks.length).toBe(2);
    expect(error).toBeInstanceOf(ProviderError);
    expect(error).toMatchObject({ category: 'server', statusCode: 500 });
    expect((error as Error).message).toContain('Synthesis failed.');
    await tts.waitFor(() => tts.wsConnections[0]?.closeInfo);
    expect(tts.streams[0]?.cancelled).toBe(false);

    const bad = open(tts, { model: 'tts-nope' });
    bad.pushText('Hello');
    const refused = await collect(bad.audio);
    expect(refused.error).toMatchObject({ category: 'invalid_request', statusCode: 400 });
    expect((refused.error as Error).message).toContain('Invalid model specified.');
  });

  it('a connection-level error and a dropped socket fail the stream', async () => {
    const tts = await emulator({ wsFaults: [{ action: { type: 'connection-error', afterAudio: 1 } }, { action: { type: 'drop', afterAudio: 1 } }] });
    const failed = open(tts);
    failed.pushText('Hello there, how are you today?');
    failed.endText();
    const first = await collect(failed.audio);
    expect(first.chunks).toHaveLength(1);
    expect(first.error).toMatchObject({ category: 'server', statusCode: 503 });
    expect((first.error as Error).message).toContain('TTS connection failed');

    const dropped = open(tts);
    dropped.pushText('Hello there, how are you today?');
    dropped.endText();
    const second = await collect(dropped.audio);
    expect(second.chunks).toHaveLength(1);
    expect(second.error).toMatchObject({ category: 'connectivity', retryable: true });
  });

  it('a stall is a timeout: after the first audio, and before any audio; the stream is cancelled', async () => {
    const tts = await emulator({ wsFaults: [{ action: { type: 'stall', afterAudio: 1 } }] });
    const stalled = open(tts, { timeoutMs: 300 });
    stalled.pushText('Hello there, how are you today?');
    stalled.endText();
    const { chunks, error } = await collect(stalled.audio);
    expect(chunks).toHaveLength(1);
    expect(error).toMatchObject({ category: 'timeout', retryable: true });
    expect((error as Error).message).toContain('sent nothing for 300 ms');
    await tts.waitFor(() => tts.streams[0]?.cancelled);

    const slow = await emulator({ latency: { firstByteMs: 1000 } });
    const late = open(slow, { timeoutMs: 300 });
    late.pushText('Hello there, ');
    const result = await collect(late.audio);
    expect(result.chunks).toEqual([]);
    expect((result.error as Error).message).toContain('no audio within 300 ms');
  });

  it('a malformed frame costs the stream a protocol error, nothing else', async () => {
    const tts = await emulator({
      wsFaults: [{ action: { type: 'malformed', afterAudio: 1 } }, { action: { type: 'malformed', frame: '{"stream_id":"x","audio":42}' } }],
    });
    for (const reason of ['not JSON', 'audio']) {
      const stream = open(tts);
      stream.pushText('Hello there, how are you today?');
      stream.endText();
      const { error } = await collect(stream.audio);
      expect(error).toMatchObject({ category: 'protocol', retryable: false });
      expect((error as Error).message).toContain(reason);
    }
    // The adapter still works.
    const ok = open(tts);
    ok.pushText('Hi');
    ok.endText();
    expect((await collect(ok.audio)).error).toBeUndefined();
  });

  it('audio split at odd byte counts is reassembled exactly', async () => {
    const tts = await emulator({ wsFaults: [{ action: { type: 'odd-chunks' } }] });
    const stream = open(tts);
    stream.pushText('Hello there, how are you today?');
    stream.endText();
    const { chunks, error } = await collect(stream.audio);
    expect(error).toBeUndefined();
    const record = await tts.waitForStream((entry) => entry.terminated);
    expect(Array.from(concatPcm(...chunks))).toEqual(Array.from(expected(record)));
  });

  it('sends keep_alive while no text comes (a slow LLM), then finishes normally', async () => {
    const tts = await emulator();
    const stream = open(tts, { keepaliveIntervalMs: 200 });
    const collecting = collect(stream.audio);
    stream.pushText('Let me check. ');
    await sleep(700);
    stream.pushText('Done.');
    stream.endText();
    expect((await collecting).error).toBeUndefined();
    expect(tts.wsConnections[0]?.keepAliveCount).toBeGreaterThanOrEqual(2);
  });

  it('endText without text (or only blanks) ends the audio quietly', async () => {
    const tts = await emulator();
    const empty = open(tts);
    empty.endText();
    expect(await collect(empty.audio)).toEqual({ chunks: [], error: undefined });
    const blank = open(tts);
    blank.pushText('  ');
    await sleep(100);
    blank.endText();
    expect(await collect(blank.audio)).toEqual({ chunks: [], error: undefined });
    expect(tts.streams.every((record) => record.error === undefined)).toBe(true);
  });

  it('a call already over opens nothing; an unreachable server is a connectivity error', async () => {
    const tts = await emulator();
    const abort = new AbortController();
    abort.abort();
    const stream = open(tts, {}, callContext({ signal: abort.signal }));
    stream.pushText('Hello');
    expect(await collect(stream.audio)).toEqual({ chunks: [], error: undefined });
    expect(tts.wsUpgrades).toHaveLength(0);

    const wsUrl = tts.wsUrl;
    await tts.close();
    const unreachable = textStream(createSonioxTts({ apiKey: KEY, websocketUrl: wsUrl }));
    unreachable.pushText('Hello');
    expect((await collect(unreachable.audio)).error).toMatchObject({ category: 'connectivity' });
  });

  it('leaves no timer, socket or listener behind, whatever the outcome', async () => {
    const live = (): Record<string, number> => {
      const counts: Record<string, number> = { Timeout: 0, TCPSocketWrap: 0 };
      for (const kind of process.getActiveResourcesInfo()) if (kind in counts) counts[kind] = (counts[kind] ?? 0) + 1;
      return counts;
    };
    const before = live();
    const tts = await startSonioxTtsEmulator({ apiKey: KEY, wsFaults: [{ action: { type: 'error', afterAudio: 1 } }] });
    const { logger, lines } = memoryLogger();
    const abort = new AbortController();
    const call = callContext({ logger, signal: abort.signal });
    const adapter = createSonioxTts({ apiKey: KEY, url: tts.url, websocketUrl: tts.wsUrl, keepaliveIntervalMs: 200 });
    const [failing, completing, closing] = [textStream(adapter, call), textStream(adapter, call), textStream(adapter, call)];
    for (const stream of [failing, completing, closing]) stream.pushText('Hello there, how are you today?');
    failing.endText();
    completing.endText();
    const [failed, completed] = await Promise.all([collect(failing.audio), collect(completing.audio)]);
    expect([failed.error !== undefined, completed.error === undefined]).toEqual([true, true]);
    // close() resolves once the socket is closed, also for a stream that has already ended.
    for (const stream of [failing, completing, closing]) await stream.close();
    expect(getEventListeners(abort.signal, 'abort')).toHaveLength(0);
    await tts.close();
    await sleep(50);
    const after = live();
    expect(after.Timeout).toBeLessThanOrEqual(before.Timeout ?? 0);
    expect(after.TCPSocketWrap).toBeLessThanOrEqual(before.TCPSocketWrap ?? 0);
    expect(JSON.stringify(lines)).not.toContain(KEY);
  });
});

describe('SONIOX_TTS_WEBSOCKET_URL', () => {
  it('defaults to wss://tts-rt.soniox.com/tts-websocket, must be ws(s), and reaches streamText', async () => {
    expect(sonioxTtsEnvSchema.parse({ SONIOX_API_KEY: 'k' }).SONIOX_TTS_WEBSOCKET_URL).toBe('wss://tts-rt.soniox.com/tts-websocket');
    const context = { logger: pino({ enabled: false }) };
    expect(() => defineSonioxTts().fromEnv({ SONIOX_API_KEY: 'k', SONIOX_TTS_WEBSOCKET_URL: 'https://x' }, context)).toThrow(/SONIOX_TTS_WEBSOCKET_URL/);
    const tts = await emulator();
    const adapter = defineSonioxTts().fromEnv({ SONIOX_API_KEY: KEY, SONIOX_TTS_WEBSOCKET_URL: tts.wsUrl }, context);
    const stream = textStream(adapter);
    stream.pushText('Hello.');
    stream.endText();
    expect((await collect(stream.audio)).chunks.length).toBeGreaterThan(0);
    expect(tts.streams[0]?.terminated).toBe(true);
  });
});

describe('TTS WebSocket wire shapes', () => {
  it('builds the stream config without a key; a request voice/language wins; bitrate/speed only when set', () => {
    const settings = { model: 'tts-rt-v1', language: 'en', voice: 'Adrian', sampleRate: 8000 };
    expect(buildTtsStreamConfig(settings, 's1')).toEqual({ model: 'tts-rt-v1', language: 'en', voice: 'Adrian', audio_format: 'pcm_s16le', sample_rate: 8000, stream_id: 's1' });
    expect(buildTtsStreamConfig({ ...settings, speed: 0.9, bitrate: 64000 }, 's2', { voice: 'Maya', language: 'it' })).toMatchObject({
      voice: 'Maya',
      language: 'it',
      speed: 0.9,
      bitrate: 64000,
    });
  });

  it('parses audio, audio_end, terminated, errors (numeric strings too) and garbage', () => {
    expect(parseTtsStreamMessage('{"stream_id":"s","audio":"AAEC","audio_end":true}')).toEqual({
      kind: 'stream',
      streamId: 's',
      audio: Buffer.from([0, 1, 2]),
      audioEnd: true,
      terminated: false,
    });
    expect(parseTtsStreamMessage('{"terminated":true,"stream_id":"s","timestamps":{}}')).toMatchObject({ kind: 'stream', audio: undefined, terminated: true });
    expect(parseTtsStreamMessage('{"stream_id":"s","error_code":"429","error_message":"Slow down.","audio":"AAEC"}')).toEqual({
      kind: 'error',
      streamId: 's',
      code: 429,
      message: 'Slow down.',
    });
    expect(parseTtsStreamMessage('{"error_code":401}')).toEqual({ kind: 'error', streamId: undefined, code: 401, message: undefined });
    expect(parseTtsStreamMessage('nope')).toEqual({ kind: 'invalid', reason: 'not JSON' });
    expect(parseTtsStreamMessage('[1]')).toMatchObject({ kind: 'invalid' });
    expect(parseTtsStreamMessage('{"stream_id":"s","audio":"not base64!"}')).toMatchObject({ kind: 'invalid' });
    expect(parseTtsStreamMessage('{"stream_id":"s","terminated":"yes"}')).toMatchObject({ kind: 'invalid' });
  });
});
