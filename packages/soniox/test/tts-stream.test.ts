import { getEventListeners } from 'node:events';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ProviderError } from '@stsgate/core';
import type { CallContext, TtsAdapter, TtsStreamRequest, TtsTextStream } from '@stsgate/core';
import { concatPcm, defaultSonioxSpeech, startSonioxTtsEmulator } from '@stsgate/testkit';
import type { SonioxTtsEmulator, SonioxTtsEmulatorOptions, SonioxTtsStreamRecord } from '@stsgate/testkit';
import { createSonioxTts, defineSonioxTts, sonioxTtsEnvSchema } from '../src/index.js';
import type { SonioxTtsOptions } from '../src/index.js';
import type { SonioxTtsAdapter } from '../src/tts.js';
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

function textStream(adapter: TtsAdapter, call: CallContext = callContext(), request: TtsStreamRequest = {}): TtsTextStream {
  const stream = adapter.streamText?.(request, call);
  if (stream === undefined) throw new Error('streamText is missing');
  cleanups.push(() => stream.close());
  return stream;
}

function adapterFor(tts: SonioxTtsEmulator, options: Partial<SonioxTtsOptions> = {}): SonioxTtsAdapter {
  const adapter = createSonioxTts({ apiKey: KEY, url: tts.url, websocketUrl: tts.wsUrl, ...options });
  cleanups.push(() => adapter.close());
  return adapter;
}

/** A stream on a new adapter (its own pool). */
function open(tts: SonioxTtsEmulator, options: Partial<SonioxTtsOptions> = {}, call: CallContext = callContext()): TtsTextStream {
  return textStream(adapterFor(tts, options), call);
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
    const adapter = adapterFor(tts, { speed: 1.1, idleConnectionCloseMs: 50 });
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
    // The connection outlives the stream until it has been idle for idleConnectionCloseMs.
    expect((await tts.waitFor(() => connection?.closeInfo)).by).toBe('client');
    expect(record.cancelled).toBe(false);
  });

  it('a text piece over the 5,000-character limit goes out as several text messages, split at spaces', async () => {
    const tts = await emulator({ synthesize: () => new Int16Array(80) });
    const stream = open(tts);
    const long = Array.from({ length: 1500 }, (_, i) => `word${String(i)}`).join(' ');
    expect(long.length).toBeGreaterThan(10_000);
    stream.pushText('Short first. ');
    stream.pushText(long);
    stream.endText();
    const { error } = await collect(stream.audio);
    expect(error).toBeUndefined();
    const record = await tts.waitForStream((entry) => entry.terminated);
    expect(record.error).toBeUndefined();
    expect(record.texts.length).toBe(5);
    expect(record.texts.every((piece) => piece.length <= 5000)).toBe(true);
    expect(record.texts.join('')).toBe(`Short first. ${long}`);
    expect(record.texts.slice(1, -2).every((piece) => piece.endsWith(' '))).toBe(true);
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

  it('close() cancels upstream: a cancel goes out for this stream, the audio ends at once, the connection stays until idle', async () => {
    const tts = await emulator({ latency: { realTimeFactor: 1 } });
    const stream = open(tts, { idleConnectionCloseMs: 300 });
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
    // close() resolved once Soniox had terminated the stream; the connection itself stays for the next stream.
    expect(tts.wsConnections[0]?.received).toContainEqual({ stream_id: record.streamId, cancel: true });
    expect(tts.wsConnections[0]?.closeInfo).toBeUndefined();
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
    const adapter = adapterFor(tts);
    const stream = textStream(adapter);
    stream.pushText('Hello there, how are you today?');
    stream.endText();
    const { chunks, error } = await collect(stream.audio);
    expect(chunks.length).toBe(2);
    expect(error).toBeInstanceOf(ProviderError);
    expect(error).toMatchObject({ category: 'server', statusCode: 500 });
    expect((error as Error).message).toContain('Synthesis failed.');
    expect(tts.streams[0]?.cancelled).toBe(false);
    // The socket stays open (Soniox's rule for a per-stream error) and serves the next stream.
    const next = textStream(adapter);
    next.pushText('Hi');
    next.endText();
    expect((await collect(next.audio)).error).toBeUndefined();
    expect(tts.wsConnections).toHaveLength(1);
    expect(tts.wsConnections[0]?.streams).toHaveLength(2);
    expect(tts.wsConnections[0]?.closeInfo).toBeUndefined();

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

  it('a malformed frame that names a stream costs that stream a protocol error, nothing else', async () => {
    const tts = await emulator({ latency: { realTimeFactor: 0.2 } });
    const adapter = adapterFor(tts);
    const victim = textStream(adapter);
    victim.pushText(LONG);
    victim.endText();
    const victimAudio = collect(victim.audio);
    const record = await tts.waitForStream();
    // The next stream's first audio is followed by a frame that names the first stream, with a bad field.
    tts.queueWsFault({ action: { type: 'malformed', afterAudio: 1, frame: JSON.stringify({ stream_id: record.streamId, audio: 42 }) } });
    const bystander = textStream(adapter);
    bystander.pushText('Hello there, how are you today?');
    bystander.endText();
    const [failed, ok] = await Promise.all([victimAudio, collect(bystander.audio)]);
    expect(failed.error).toMatchObject({ category: 'protocol', retryable: false });
    expect((failed.error as Error).message).toContain('audio');
    expect(ok.error).toBeUndefined();
    const second = await tts.waitForStream((entry) => entry !== record && entry.terminated);
    expect(Array.from(concatPcm(...ok.chunks))).toEqual(Array.from(expected(second)));
    // The victim was cancelled upstream; both streams were on the one connection, which is still open.
    await tts.waitFor(() => record.cancelled);
    expect(tts.wsConnections).toHaveLength(1);
    expect(tts.wsConnections[0]?.closeInfo).toBeUndefined();
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
    const tts = await startSonioxTtsEmulator({ apiKey: KEY, latency: { realTimeFactor: 0.5 }, wsFaults: [{ action: { type: 'error', afterAudio: 1 } }] });
    const { logger, lines } = memoryLogger();
    const abort = new AbortController();
    const call = callContext({ logger, signal: abort.signal });
    const adapter = createSonioxTts({ apiKey: KEY, url: tts.url, websocketUrl: tts.wsUrl, keepaliveIntervalMs: 200, idleConnectionCloseMs: 100, logger });
    const [failing, completing, closing] = [textStream(adapter, call), textStream(adapter, call), textStream(adapter, call)];
    for (const stream of [failing, completing, closing]) stream.pushText('Hello there, how are you today?');
    failing.endText();
    completing.endText();
    const [failed, completed] = await Promise.all([collect(failing.audio), collect(completing.audio)]);
    expect([failed.error !== undefined, completed.error === undefined]).toEqual([true, true]);
    // `closing` still holds a slot: the client socket keeps the process alive.
    const busy = live().TCPSocketWrap ?? 0;
    // close() resolves once the stream's slot is free, also for a stream that has already ended.
    for (const stream of [failing, completing, closing]) await stream.close();
    expect(getEventListeners(abort.signal, 'abort')).toHaveLength(0);
    // All three shared one connection; idle, it no longer holds the process (unref'd), then closes itself.
    expect(tts.wsConnections).toHaveLength(1);
    if (tts.wsConnections[0]?.closeInfo === undefined) expect(live().TCPSocketWrap).toBe(busy - 1);
    expect((await tts.waitFor(() => tts.wsConnections[0]?.closeInfo)).by).toBe('client');

    // Another adapter closed while a stream runs: the stream fails with `closed`, the socket closes, later streams fail.
    const other = createSonioxTts({ apiKey: KEY, url: tts.url, websocketUrl: tts.wsUrl, keepaliveIntervalMs: 200 });
    const running = textStream(other, call);
    running.pushText(LONG);
    const iterator = running.audio[Symbol.asyncIterator]();
    expect((await iterator.next()).done).toBe(false);
    await other.close();
    await expect(iterator.next()).rejects.toMatchObject({ category: 'closed', retryable: false });
    expect(tts.wsConnections[1]?.closeInfo?.by).toBe('client');
    expect((await collect(textStream(other, call).audio)).error).toMatchObject({ category: 'closed' });
    await running.close();
    expect(getEventListeners(abort.signal, 'abort')).toHaveLength(0);

    await tts.close();
    await sleep(50);
    const after = live();
    expect(after.Timeout).toBeLessThanOrEqual(before.Timeout ?? 0);
    expect(after.TCPSocketWrap).toBeLessThanOrEqual(before.TCPSocketWrap ?? 0);
    expect(JSON.stringify(lines)).not.toContain(KEY);
  });
});

describe('Soniox TTS streamText: streams share pooled connections', () => {
  /** Stream `i` (voice `V<i>`) is synthesized as the constant i * 100, 40 samples per character of each piece. */
  function voiceCoded(): Partial<SonioxTtsEmulatorOptions> {
    return { synthesize: (request) => new Int16Array(40 * request.text.length).fill(100 * Number(request.voice.slice(1))) };
  }

  it('7 concurrent streams: 2 connections (5 + 2), each stream with its own config, text and audio', async () => {
    const tts = await emulator(voiceCoded());
    const adapter = adapterFor(tts);
    const words = (i: number): string[] => ['Reply', `number ${String(i)}`, ...Array.from({ length: i }, () => 'la')];
    const streams = Array.from({ length: 7 }, (_, k) => textStream(adapter, callContext({ callId: `call-${String(k)}` }), { voice: `V${String(k + 1)}` }));
    // Interleaved: word w of every stream, then word w + 1.
    for (let w = 0; w < 9; w++) streams.forEach((stream, k) => words(k + 1)[w] !== undefined && stream.pushText(`${words(k + 1)[w] as string} `));
    for (const stream of streams) stream.endText();
    const results = await Promise.all(streams.map((stream) => collect(stream.audio)));

    expect(tts.wsUpgrades).toHaveLength(2);
    expect(tts.wsConnections.map((connection) => connection.streams.length)).toEqual([5, 2]);
    expect(new Set(tts.streams.map((record) => record.streamId)).size).toBe(7);
    results.forEach((result, k) => {
      expect(result.error).toBeUndefined();
      const record = tts.streams.find((entry) => entry.request?.voice === `V${String(k + 1)}`);
      if (record === undefined) throw new Error(`no record for stream ${String(k)}`);
      expect(record.connection).toBe(k < 5 ? 0 : 1);
      expect(record.texts).toEqual([...words(k + 1).map((word) => `${word} `), '']);
      const samples = concatPcm(...result.chunks);
      // Exactly its own audio: every sample is its constant, and all of it arrived.
      expect(new Set(samples)).toEqual(new Set([100 * (k + 1)]));
      expect(samples.length).toBe(40 * record.spoken.join('').length);
    });
  });

  it('a stream that ends frees its slot: the next stream reuses the connection; a 6th concurrent one opens another', async () => {
    const tts = await emulator({ latency: { realTimeFactor: 1 } });
    const adapter = adapterFor(tts);
    const first = Array.from({ length: 5 }, () => textStream(adapter));
    for (const stream of first) stream.pushText(LONG);
    await tts.waitFor(() => tts.streams.length === 5 && tts.streams.every((record) => record.audioMessages > 0));
    const closedAt = Date.now();
    await (first[0] as TtsTextStream).close();
    // close() resolved as soon as Soniox terminated the stream (not after the 2 s cap): its slot is free.
    expect(Date.now() - closedAt).toBeLessThan(1000);
    expect(tts.streams[0]).toMatchObject({ cancelled: true, terminated: true });
    const sixth = textStream(adapter);
    sixth.pushText('Hi');
    sixth.endText();
    expect((await collect(sixth.audio)).error).toBeUndefined();
    expect(tts.wsConnections).toHaveLength(1);
    expect(tts.streams[5]?.connection).toBe(0);
    // Five streams run on connection 0 again (four long ones and this one): the next goes on a new connection.
    const seventh = textStream(adapter);
    const eighth = textStream(adapter);
    for (const stream of [seventh, eighth]) stream.pushText(LONG);
    await tts.waitFor(() => tts.streams.length === 8);
    expect(tts.streams.slice(6).map((record) => record.connection)).toEqual([0, 1]);
    expect(tts.wsConnections).toHaveLength(2);
  });

  it('a dropped connection fails only its own streams (retryable); the other connection goes on and takes new streams', async () => {
    const tts = await emulator({ latency: { realTimeFactor: 0.1 } });
    const adapter = adapterFor(tts);
    const streams = Array.from({ length: 7 }, () => textStream(adapter));
    for (const stream of streams) {
      stream.pushText(LONG);
      stream.endText();
    }
    const collecting = streams.map((stream) => collect(stream.audio));
    await tts.waitFor(() => tts.streams.length === 7 && tts.streams.every((record) => record.audioMessages > 0));
    tts.wsConnections[0]?.drop();
    const results = await Promise.all(collecting);
    for (const result of results.slice(0, 5)) {
      expect(result.chunks.length).toBeGreaterThan(0);
      expect(result.error).toMatchObject({ category: 'connectivity', retryable: true });
    }
    results.slice(5).forEach((result, k) => {
      expect(result.error).toBeUndefined();
      const record = tts.wsConnections[1]?.streams[k];
      if (record === undefined) throw new Error('missing record');
      expect(Array.from(concatPcm(...result.chunks))).toEqual(Array.from(expected(record)));
    });
    // The dropped connection left the pool: a new stream goes on the surviving one.
    const next = textStream(adapter);
    next.pushText('Hi');
    next.endText();
    expect((await collect(next.audio)).error).toBeUndefined();
    expect(tts.wsConnections).toHaveLength(2);
    expect(tts.streams[7]?.connection).toBe(1);
  });

  it('a connection-level error fails every stream on that connection with a clear error, and only those', async () => {
    const tts = await emulator({ latency: { realTimeFactor: 1 }, wsFaults: [{ action: { type: 'connection-error', afterAudio: 3 } }] });
    const adapter = adapterFor(tts);
    const onFirst = Array.from({ length: 5 }, () => textStream(adapter));
    for (const stream of onFirst) {
      stream.pushText(LONG);
      stream.endText();
    }
    // The first stream accepted (on connection 0) carries the fault.
    await tts.waitFor(() => tts.streams.length === 5);
    const onSecond = Array.from({ length: 2 }, () => textStream(adapter));
    for (const stream of onSecond) {
      stream.pushText('Hello there.');
      stream.endText();
    }
    const results = await Promise.all([...onFirst, ...onSecond].map((stream) => collect(stream.audio)));
    for (const result of results.slice(0, 5)) {
      expect(result.error).toBeInstanceOf(ProviderError);
      expect(result.error).toMatchObject({ category: 'server', statusCode: 503, retryable: true });
      expect((result.error as Error).message).toContain('TTS connection failed');
    }
    // Each stream got its own error object.
    expect(new Set(results.slice(0, 5).map((result) => result.error)).size).toBe(5);
    for (const result of results.slice(5)) expect(result.error).toBeUndefined();
    expect(tts.wsConnections.map((connection) => connection.streams.length)).toEqual([5, 2]);
    expect(tts.wsConnections[0]?.closeInfo).toBeDefined();
  });

  it('a frame that names no stream of the connection affects nobody (one warning a minute)', async () => {
    const { logger, lines } = memoryLogger();
    const tts = await emulator({
      wsFaults: [
        { action: { type: 'malformed', afterAudio: 1 }, times: 2 },
        { action: { type: 'malformed', afterAudio: 1, frame: '[1,2]' } },
        { action: { type: 'malformed', afterAudio: 1, frame: '{"stream_id":"nobody-1","audio":"AAAA"}' } },
      ],
    });
    const adapter = adapterFor(tts, { logger });
    const streams = Array.from({ length: 4 }, () => textStream(adapter));
    for (const stream of streams) {
      stream.pushText('Hello there, how are you today?');
      stream.endText();
    }
    const results = await Promise.all(streams.map((stream) => collect(stream.audio)));
    expect(tts.wsConnections).toHaveLength(1);
    results.forEach((result, k) => {
      expect(result.error).toBeUndefined();
      const record = tts.wsConnections[0]?.streams[k];
      if (record === undefined) throw new Error('missing record');
      expect(record.fault?.type).toBe('malformed');
      expect(Array.from(concatPcm(...result.chunks))).toEqual(Array.from(expected(record)));
    });
    const warnings = lines.filter((line) => line.level === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ msg: 'Soniox TTS sent a frame that names no stream (ignored)', reason: 'not JSON', connection: expect.any(String) });
    expect(lines.some((line) => line.msg === 'Soniox TTS message for an unknown stream ignored' && line.streamId === 'nobody-1')).toBe(true);
  });

  it('an idle connection is closed after idleConnectionCloseMs; a stream before that reuses it, one after opens a new one', async () => {
    const tts = await emulator();
    const adapter = adapterFor(tts, { idleConnectionCloseMs: 200 });
    const speak = async (): Promise<void> => {
      const stream = textStream(adapter);
      stream.pushText('Hi');
      stream.endText();
      expect((await collect(stream.audio)).error).toBeUndefined();
    };
    await speak();
    await sleep(50);
    await speak();
    expect(tts.wsConnections).toHaveLength(1);
    expect(tts.wsConnections[0]?.closeInfo).toBeUndefined();
    const idleSince = Date.now();
    expect((await tts.waitFor(() => tts.wsConnections[0]?.closeInfo)).by).toBe('client');
    expect(Date.now() - idleSince).toBeGreaterThanOrEqual(150);
    await speak();
    expect(tts.wsConnections).toHaveLength(2);
    expect(tts.streams[2]?.connection).toBe(1);
  });

  it('a refused connection (the account connection limit, HTTP 429) fails its streams with a retryable rate_limit; the next stream opens a new one', async () => {
    const tts = await emulator();
    tts.queueWsFault({ at: 'upgrade', action: { type: 'http', status: 429 } });
    const adapter = adapterFor(tts);
    const refused = Array.from({ length: 3 }, () => textStream(adapter));
    for (const stream of refused) stream.pushText('Hello');
    for (const result of await Promise.all(refused.map((stream) => collect(stream.audio)))) {
      expect(result.error).toMatchObject({ category: 'rate_limit', statusCode: 429, retryable: true });
    }
    const retried = textStream(adapter);
    retried.pushText('Hello');
    retried.endText();
    expect((await collect(retried.audio)).error).toBeUndefined();
    expect(tts.wsUpgrades.map((upgrade) => upgrade.status)).toEqual([429, 101]);
  });

  it('maxConnections caps the pool: a stream that finds every connection full fails at once (retryable rate_limit)', async () => {
    const tts = await emulator({ latency: { realTimeFactor: 1 } });
    const adapter = adapterFor(tts, { maxConnections: 1, maxStreamsPerConnection: 2 });
    const [a, b, c] = [textStream(adapter), textStream(adapter), textStream(adapter)];
    for (const stream of [a, b]) stream.pushText(LONG);
    const full = await collect(c.audio);
    expect(full.error).toMatchObject({ category: 'rate_limit', retryable: true });
    expect((full.error as Error).message).toContain('all 1 Soniox TTS connections are full (2 streams each)');
    await a.close();
    const d = textStream(adapter);
    d.pushText('Hi');
    d.endText();
    expect((await collect(d.audio)).error).toBeUndefined();
    expect(tts.wsUpgrades).toHaveLength(1);
    expect(() => createSonioxTts({ apiKey: KEY, maxStreamsPerConnection: 6 })).toThrow(RangeError);
    expect(() => createSonioxTts({ apiKey: KEY, maxStreamsPerConnection: 0 })).toThrow(RangeError);
    expect(() => createSonioxTts({ apiKey: KEY, maxConnections: 0 })).toThrow(RangeError);
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

  it('SONIOX_TTS_STREAMS_PER_CONNECTION (1..5) sets the streams per connection; 1 gives every stream its own', async () => {
    const context = { logger: pino({ enabled: false }) };
    expect(() => defineSonioxTts().fromEnv({ SONIOX_API_KEY: 'k', SONIOX_TTS_STREAMS_PER_CONNECTION: '6' }, context)).toThrow(/SONIOX_TTS_STREAMS_PER_CONNECTION/);
    const tts = await emulator({ latency: { realTimeFactor: 1 } });
    const adapter = defineSonioxTts().fromEnv({ SONIOX_API_KEY: KEY, SONIOX_TTS_WEBSOCKET_URL: tts.wsUrl, SONIOX_TTS_STREAMS_PER_CONNECTION: '1' }, context) as SonioxTtsAdapter;
    cleanups.push(() => adapter.close());
    const streams = [textStream(adapter), textStream(adapter)];
    for (const stream of streams) stream.pushText('Hello there.');
    await tts.waitFor(() => tts.streams.length === 2);
    expect(tts.streams.map((record) => record.connection)).toEqual([0, 1]);
  });
});

describe('SONIOX_TTS_BITRATE (avr-tts-soniox)', () => {
  it('is accepted, never sent (Soniox refuses a bitrate with PCM), and warned about once', async () => {
    const tts = await emulator();
    for (const value of ['64000', 'not-a-number']) {
      const { logger, lines } = memoryLogger();
      const env = { SONIOX_API_KEY: KEY, SONIOX_TTS_URL: tts.url, SONIOX_TTS_WEBSOCKET_URL: tts.wsUrl, SONIOX_TTS_BITRATE: value };
      const adapter = defineSonioxTts().fromEnv(env, { logger }) as SonioxTtsAdapter;
      cleanups.push(() => adapter.close());
      const rest = await collect(adapter.synthesize({ text: 'Hello.' }, callContext()).audio);
      expect(rest.error).toBeUndefined();
      const stream = textStream(adapter);
      stream.pushText('Hello.');
      stream.endText();
      expect((await collect(stream.audio)).error).toBeUndefined();
      const warnings = lines.filter((line) => line.level === 40);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]?.msg).toMatch(/^SONIOX_TTS_BITRATE is ignored: /);
    }
    expect(tts.requests.map((record) => record.status)).toEqual([200, 200]);
    for (const record of tts.requests) expect(record.body).not.toHaveProperty('bitrate');
    expect(tts.streams.map((record) => record.error)).toEqual([undefined, undefined]);
    for (const record of tts.streams) expect(record.rawConfig).not.toHaveProperty('bitrate');
    // Blank, as avr-tts-soniox's .env.example ships it: unset, no warning.
    const { logger, lines } = memoryLogger();
    defineSonioxTts().fromEnv({ SONIOX_API_KEY: KEY, SONIOX_TTS_BITRATE: '' }, { logger });
    expect(lines.filter((line) => line.level >= 40)).toEqual([]);
  });
});

describe('TTS WebSocket wire shapes', () => {
  it('builds the stream config without a key; a request voice/language wins; speed only when set', () => {
    const settings = { model: 'tts-rt-v1', language: 'en', voice: 'Adrian', sampleRate: 8000 };
    expect(buildTtsStreamConfig(settings, 's1')).toEqual({ model: 'tts-rt-v1', language: 'en', voice: 'Adrian', audio_format: 'pcm_s16le', sample_rate: 8000, stream_id: 's1' });
    expect(buildTtsStreamConfig({ ...settings, speed: 0.9 }, 's2', { voice: 'Maya', language: 'it' })).toMatchObject({
      voice: 'Maya',
      language: 'it',
      speed: 0.9,
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
