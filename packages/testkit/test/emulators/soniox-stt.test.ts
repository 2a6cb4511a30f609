import { AuthError, BadRequestError, NetworkError, SonioxNodeClient, type RealtimeResult } from '@soniox/node';
import { afterEach, describe, expect, test } from 'vitest';
import {
  SONIOX_DEFAULT_MAX_ENDPOINT_DELAY_MS,
  startSonioxSttEmulator,
  type SonioxSttEmulator,
  type SonioxSttEmulatorOptions,
} from '../../src/emulators/soniox-stt.js';
import { tone } from '../../src/emulators/common.js';
import { FIXTURE_TEXT, fixturePath } from '../../src/fixtures.js';
import { concatPcm, silence } from '../../src/signals.js';
import { readWavAs8k } from '../../src/wav.js';
import { encodeMulaw } from '@stsgate/core';
import { connectRawClient, pcm16Frames, type RawWsClient } from './ws-client.js';

const KEY = 'soniox-test-key-1234';
const CONFIG = { model: 'stt-rt-v5', audio_format: 'pcm_s16le', sample_rate: 8000, num_channels: 1 } as const;
/** The smallest endpoint delay Soniox allows: quick endpoints without waiting for its 2000 ms default. */
const QUICK_ENDPOINTS = { enable_endpoint_detection: true, max_endpoint_delay_ms: 500 } as const;

let emulator: SonioxSttEmulator | undefined;
afterEach(async () => {
  await emulator?.close();
  emulator = undefined;
});

async function start(options: Partial<SonioxSttEmulatorOptions> = {}): Promise<SonioxSttEmulator> {
  emulator = await startSonioxSttEmulator({ apiKey: KEY, ...options });
  return emulator;
}

type Message = Record<string, unknown> & { tokens?: { text: string; is_final: boolean; start_ms?: number; language?: string }[] };

/** A raw client with header auth by default; the emulator only ever sends JSON text. */
function rawClient(url: string, headers: Record<string, string> = { Authorization: `Bearer ${KEY}` }, protocols?: string[]): Promise<RawWsClient<Message>> {
  return connectRawClient<Message>(url, { headers, ...(protocols === undefined ? {} : { protocols }), onBinary: () => expect.fail('binary frame from the emulator') });
}

const finalText = (messages: readonly Message[]): string =>
  messages.flatMap((message) => message.tokens ?? []).filter((token) => token.is_final).map((token) => token.text).join('');

describe('Soniox STT emulator with the official @soniox/node SDK', () => {
  test('streams a fixture and gets its text, an endpoint and finished', async () => {
    const emu = await start();
    const client = new SonioxNodeClient({ api_key: KEY, realtime: { ws_base_url: emu.url } });
    const session = client.realtime.stt({ ...CONFIG, ...QUICK_ENDPOINTS, language_hints: ['en'] });
    const results: RealtimeResult[] = [];
    let endpoints = 0;
    session.on('result', (result) => results.push(result));
    session.on('endpoint', () => endpoints++);
    await session.connect();
    const audio = concatPcm(readWavAs8k(fixturePath('greeting')), silence(1000));
    for (const frame of pcm16Frames(audio)) session.sendAudio(new Uint8Array(frame));
    await session.finish();

    const finals = results.flatMap((result) => result.tokens).filter((token) => token.is_final);
    expect(finals.map((token) => token.text).join('')).toBe(FIXTURE_TEXT['greeting.wav']);
    expect(endpoints).toBe(1);
    // The SDK strips control tokens; the wire had them.
    expect(finals.some((token) => token.text === '<end>')).toBe(false);
    const conn = emu.connections[0];
    expect(conn?.authVia).toBe('config');
    expect(conn?.config?.model).toBe('stt-rt-v5');
    expect(conn?.endOfAudio).toBe('text');
    expect(conn?.audioMs).toBe(audio.length / 8);
    expect(conn?.sent.some((message) => 'tokens' in message && message.tokens.some((token) => token.text === '<end>'))).toBe(true);
    expect(conn?.sent.at(-1)).toMatchObject({ tokens: [], finished: true });
    // Partials were revealed before the finals.
    const firstFinal = results.findIndex((result) => result.tokens.some((token) => token.is_final));
    expect(results.slice(0, firstFinal).some((result) => result.tokens.some((token) => !token.is_final))).toBe(true);
  });

  test('finalize gives the pending text and a finalized event', async () => {
    const emu = await start();
    const client = new SonioxNodeClient({ api_key: KEY, realtime: { ws_base_url: emu.url } });
    const session = client.realtime.stt({ ...CONFIG });
    const texts: string[] = [];
    session.on('result', (result) => texts.push(...result.tokens.filter((token) => token.is_final).map((token) => token.text)));
    const finalized = new Promise<void>((resolve) => session.on('finalized', () => resolve()));
    await session.connect();
    for (const frame of pcm16Frames(readWavAs8k(fixturePath('question')))) session.sendAudio(new Uint8Array(frame));
    session.finalize();
    await finalized;
    expect(texts.join('')).toBe(FIXTURE_TEXT['question.wav']);
    expect(emu.connections[0]?.finalizeCount).toBe(1);
    await session.finish();
  });

  test('a bad key is an AuthError, a bad model a BadRequestError, a 503 mid-stream a NetworkError', async () => {
    const emu = await start();
    const bad = new SonioxNodeClient({ api_key: 'wrong', realtime: { ws_base_url: emu.url } }).realtime.stt({ ...CONFIG });
    const authError = new Promise<unknown>((resolve) => bad.on('error', resolve));
    await bad.connect();
    expect(await authError).toBeInstanceOf(AuthError);

    const good = new SonioxNodeClient({ api_key: KEY, realtime: { ws_base_url: emu.url } });
    const badModel = good.realtime.stt({ ...CONFIG, model: 'stt-rt-v0' });
    const modelError = new Promise<unknown>((resolve) => badModel.on('error', resolve));
    await badModel.connect();
    const error = await modelError;
    expect(error).toBeInstanceOf(BadRequestError);
    expect((error as Error).message).toBe('Invalid model specified.');

    emu.queueFault({ at: { afterAudioMs: 200 }, action: { type: 'error', code: 503 } });
    const midStream = good.realtime.stt({ ...CONFIG });
    const midError = new Promise<unknown>((resolve) => midStream.on('error', resolve));
    await midStream.connect();
    for (const frame of pcm16Frames(tone(400, 8000))) midStream.sendAudio(new Uint8Array(frame));
    const network = await midError;
    expect(network).toBeInstanceOf(NetworkError);
    expect((network as Error).message).toMatch(/^Cannot continue request \(code \d+\)\. Please restart the request\.$/);
  });

  test('requireHeaderAuth refuses the SDK (key only in the config)', async () => {
    const emu = await start({ requireHeaderAuth: true });
    const session = new SonioxNodeClient({ api_key: KEY, realtime: { ws_base_url: emu.url } }).realtime.stt({ ...CONFIG });
    const error = new Promise<unknown>((resolve) => session.on('error', resolve));
    await session.connect();
    expect(await error).toBeInstanceOf(AuthError);
  });
});

describe('Soniox STT emulator over raw ws', () => {
  test('header auth; two utterances give two <end> tokens; finals once, finals before non-finals', async () => {
    const emu = await start();
    const client = await rawClient(emu.url);
    client.ws.send(JSON.stringify({ ...CONFIG, ...QUICK_ENDPOINTS, enable_language_identification: true, language_hints: ['it'] }));
    const audio = concatPcm(readWavAs8k(fixturePath('short')), silence(1200), readWavAs8k(fixturePath('question')), silence(1200));
    for (const frame of pcm16Frames(audio)) client.ws.send(frame);
    client.ws.send(Buffer.alloc(0));
    expect(await client.closed).toEqual({ code: 1000, reason: '' });
    expect(emu.connections[0]?.authVia).toBe('header');
    expect(emu.connections[0]?.endOfAudio).toBe('binary');

    const tokens = client.messages.flatMap((message) => message.tokens ?? []);
    expect(tokens.filter((token) => token.text === '<end>' && token.is_final)).toHaveLength(2);
    expect(finalText(client.messages).replaceAll('<end>', '|')).toBe(` ${FIXTURE_TEXT['short.wav']}| ${FIXTURE_TEXT['question.wav']}|`.trimStart());
    for (const message of client.messages) {
      const list = message.tokens ?? [];
      const firstNonFinal = list.findIndex((token) => !token.is_final);
      if (firstNonFinal >= 0) expect(list.slice(firstNonFinal).every((token) => !token.is_final)).toBe(true);
    }
    // Finals are spread over several responses (an adapter must accumulate them up to <end>).
    const withFinals = client.messages.filter((message) => (message.tokens ?? []).some((token) => token.is_final && token.text !== '<end>'));
    expect(withFinals.length).toBeGreaterThan(2);
    expect(tokens.filter((token) => token.text !== '<end>').every((token) => token.language === 'it' && typeof token.start_ms === 'number')).toBe(true);
    expect(client.messages.at(-1)).toEqual({ tokens: [], final_audio_proc_ms: audio.length / 8, total_audio_proc_ms: audio.length / 8, finished: true });
    expect(emu.connections[0]?.utterances.map((utterance) => utterance.text)).toEqual([FIXTURE_TEXT['short.wav'], FIXTURE_TEXT['question.wav']]);
  });

  test('unknown audio gets "utterance N"; without endpoint detection there is no <end>', async () => {
    const emu = await start();
    const client = await rawClient(emu.url);
    client.ws.send(JSON.stringify(CONFIG));
    for (const frame of pcm16Frames(concatPcm(tone(700, 8000), silence(800)))) client.ws.send(frame);
    client.ws.send('');
    await client.closed;
    expect(finalText(client.messages)).toBe('utterance 1');
  });

  test('finalize: pending text final then <fin>; keepalive counted', async () => {
    const emu = await start();
    const client = await rawClient(emu.url);
    client.ws.send(JSON.stringify({ ...CONFIG, enable_endpoint_detection: true }));
    client.ws.send(JSON.stringify({ type: 'keepalive' }));
    for (const frame of pcm16Frames(readWavAs8k(fixturePath('greeting')).subarray(0, 8000 * 3))) client.ws.send(frame);
    client.ws.send(JSON.stringify({ type: 'finalize' }));
    await client.waitForMessage((message) => (message.tokens ?? []).some((token) => token.text === '<fin>'));
    const text = finalText(client.messages);
    expect(text.endsWith('<fin>')).toBe(true);
    expect(text.length).toBeGreaterThan('<fin>'.length);
    expect(text).not.toContain('<end>');
    expect(emu.connections[0]?.keepaliveCount).toBe(1);
    expect(emu.connections[0]?.utterances[0]?.endedBy).toBe('finalize');
    client.ws.close();
  });

  test('mulaw at 8 kHz is decoded', async () => {
    const emu = await start();
    const client = await rawClient(emu.url);
    client.ws.send(JSON.stringify({ ...CONFIG, audio_format: 'mulaw' }));
    const encoded = Buffer.from(encodeMulaw(concatPcm(readWavAs8k(fixturePath('short')), silence(800))));
    for (let i = 0; i < encoded.length; i += 160) client.ws.send(encoded.subarray(i, i + 160));
    client.ws.send('');
    await client.closed;
    expect(finalText(client.messages)).toBe(FIXTURE_TEXT['short.wav']);
  });

  test('config validation errors are {error_code:400} then close', async () => {
    const emu = await start();
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ ...CONFIG, model: 'nope' }, /^Invalid model specified\.$/],
      [{ model: 'stt-rt-v5', audio_format: 'pcm_s16le', num_channels: 1 }, /sample_rate/],
      [{ model: 'stt-rt-v5', audio_format: 'pcm_s16le', sample_rate: 8000 }, /num_channels/],
      [{ ...CONFIG, language_hints: 'en' }, /language_hints/],
      [{ ...CONFIG, enable_endpoint_detection: 'yes' }, /enable_endpoint_detection/],
      [{ ...CONFIG, context: { terms: 'AVR' } }, /context\.terms/],
      [{ ...CONFIG, surprise: true }, /Unknown field: surprise/],
      [{ audio_format: 'pcm_s16le' }, /Missing required field: model/],
      // The API reference marks audio_format Required (the SDKs send `auto` when the caller gives none).
      [{ model: 'stt-rt-v5', sample_rate: 8000, num_channels: 1 }, /^Missing required field: audio_format$/],
      // max_endpoint_delay_ms "between 500ms and 3000ms"; client_reference_id "max 256 chars" (@soniox/node 2.3.0).
      [{ ...CONFIG, max_endpoint_delay_ms: 499 }, /^Invalid value for field max_endpoint_delay_ms: must be between 500 and 3000$/],
      [{ ...CONFIG, max_endpoint_delay_ms: 3001 }, /^Invalid value for field max_endpoint_delay_ms: must be between 500 and 3000$/],
      [{ ...CONFIG, max_endpoint_delay_ms: 0 }, /max_endpoint_delay_ms/],
      [{ ...CONFIG, max_endpoint_delay_ms: 750.5 }, /max_endpoint_delay_ms/],
      [{ ...CONFIG, client_reference_id: 'x'.repeat(257) }, /^Invalid value for field client_reference_id: must be at most 256 characters$/],
      [{ ...CONFIG, endpoint_sensitivity: 1.5 }, /endpoint_sensitivity/],
      [{ ...CONFIG, endpoint_latency_adjustment_level: 4 }, /endpoint_latency_adjustment_level/],
    ];
    for (const [config, message] of cases) {
      const client = await rawClient(emu.url);
      client.ws.send(JSON.stringify(config));
      const closed = await client.closed;
      expect(closed.code).toBe(1000);
      expect(client.messages).toHaveLength(1);
      expect(client.messages[0]?.error_code).toBe(400);
      expect(String(client.messages[0]?.error_message)).toMatch(message);
    }
  });

  test('the limits themselves are accepted: max_endpoint_delay_ms 500 and 3000, a 256-character client_reference_id', async () => {
    const emu = await start();
    for (const extra of [{ max_endpoint_delay_ms: 500 }, { max_endpoint_delay_ms: 3000 }, { client_reference_id: 'x'.repeat(256) }]) {
      const client = await rawClient(emu.url);
      client.ws.send(JSON.stringify({ ...CONFIG, ...extra }));
      client.ws.send('');
      await client.closed;
      expect(client.messages).toEqual([{ tokens: [], final_audio_proc_ms: 0, total_audio_proc_ms: 0, finished: true }]);
    }
  });

  test('endpoint delay: the documented 2000 ms without max_endpoint_delay_ms, else the value the client sent', async () => {
    expect(SONIOX_DEFAULT_MAX_ENDPOINT_DELAY_MS).toBe(2000);
    const emu = await start();
    /** The short fixture, then `silenceMs` of silence and the end of the audio: how its utterance ended. */
    const endedBy = async (config: Record<string, unknown>, silenceMs: number): Promise<string[]> => {
      const client = await rawClient(emu.url);
      client.ws.send(JSON.stringify({ ...CONFIG, enable_endpoint_detection: true, ...config }));
      for (const frame of pcm16Frames(concatPcm(readWavAs8k(fixturePath('short')), silence(silenceMs)))) client.ws.send(frame);
      client.ws.send('');
      await client.closed;
      const ends = client.messages.flatMap((message) => message.tokens ?? []).filter((token) => token.text === '<end>');
      const connection = emu.connections.at(-1);
      return [...(connection?.utterances.map((utterance) => utterance.endedBy) ?? []), `<end> x${String(ends.length)}`];
    };
    // 1.5 s of silence is not enough for the default; 2.1 s is.
    expect(await endedBy({}, 1500)).toEqual(['end', '<end> x0']);
    expect(await endedBy({}, 2100)).toEqual(['endpoint', '<end> x1']);
    // The client's value wins, both ways.
    expect(await endedBy({ max_endpoint_delay_ms: 500 }, 700)).toEqual(['endpoint', '<end> x1']);
    expect(await endedBy({ max_endpoint_delay_ms: 3000 }, 2100)).toEqual(['end', '<end> x0']);
    // The emulator option still sets the server default for tests that model another one.
    const quick = await startSonioxSttEmulator({ apiKey: KEY, vad: { endpointDelayMs: 500 } });
    try {
      const client = await rawClient(quick.url);
      client.ws.send(JSON.stringify({ ...CONFIG, enable_endpoint_detection: true }));
      for (const frame of pcm16Frames(concatPcm(readWavAs8k(fixturePath('short')), silence(700)))) client.ws.send(frame);
      client.ws.send('');
      await client.closed;
      expect(quick.connections[0]?.utterances.map((utterance) => utterance.endedBy)).toEqual(['endpoint']);
    } finally {
      await quick.close();
    }
  });

  test('auth: bad header key, missing key, subprotocol key; extra model ids', async () => {
    const emu = await start({ models: ['stt-rt-v3'] });
    const bad = await rawClient(emu.url, { Authorization: 'Bearer nope' });
    bad.ws.send(JSON.stringify({ ...CONFIG, api_key: KEY }));
    await bad.closed;
    expect(bad.messages).toEqual([{ error_code: 401, error_message: 'Invalid API key.' }]);

    const none = await rawClient(emu.url, {});
    none.ws.send(JSON.stringify(CONFIG));
    await none.closed;
    expect(none.messages[0]?.error_code).toBe(401);

    const protocol = await rawClient(emu.url, {}, ['soniox-api-key', KEY]);
    expect(protocol.ws.protocol).toBe('soniox-api-key');
    protocol.ws.send(JSON.stringify({ ...CONFIG, model: 'stt-rt-v3' }));
    protocol.ws.send('');
    await protocol.closed;
    expect(protocol.messages).toEqual([{ tokens: [], final_audio_proc_ms: 0, total_audio_proc_ms: 0, finished: true }]);
    expect(emu.connections[2]?.authVia).toBe('subprotocol');
  });

  test('idle timeout closes with an error; keepalives keep it open', async () => {
    const emu = await start({ idleTimeoutMs: 150 });
    const idle = await rawClient(emu.url);
    idle.ws.send(JSON.stringify(CONFIG));
    await idle.closed;
    expect(idle.messages).toEqual([{ error_code: 408, error_message: 'Request timeout.' }]);

    const alive = await rawClient(emu.url);
    alive.ws.send(JSON.stringify(CONFIG));
    const connection = await emu.waitForConnection(1);
    for (let i = 0; i < 4; i++) {
      await new Promise((resolve) => setTimeout(resolve, 60));
      alive.ws.send(JSON.stringify({ type: 'keepalive' }));
    }
    await emu.waitFor(() => connection.keepaliveCount === 4);
    expect(connection.closeInfo).toBeUndefined();
    alive.ws.send('');
    await alive.closed;
    expect(alive.messages.at(-1)).toMatchObject({ finished: true });
  });

  test('realTimeLimit: audio sent at twice real time is fine, a burst is an error and a close', async () => {
    const emu = await start({ realTimeLimit: { maxFactor: 2.5, allowanceMs: 300 } });
    const paced = await rawClient(emu.url);
    paced.ws.send(JSON.stringify(CONFIG));
    const frames = pcm16Frames(concatPcm(tone(600, 8000), silence(600)));
    for (const frame of frames) {
      paced.ws.send(frame);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    paced.ws.send('');
    expect(await paced.closed).toEqual({ code: 1000, reason: '' });
    expect(paced.messages.some((message) => message.error_code !== undefined)).toBe(false);

    const burst = await rawClient(emu.url);
    burst.ws.send(JSON.stringify(CONFIG));
    for (const frame of pcm16Frames(silence(1000))) burst.ws.send(frame);
    expect((await burst.closed).code).toBe(1000);
    expect(burst.messages.at(-1)).toEqual({ error_code: 400, error_message: 'Audio is sent faster than real time.' });
    expect(emu.connections[1]?.audioMs).toBeLessThan(1000);
  });

  test('faults: drop, stall, close code, http at upgrade', async () => {
    const emu = await start();
    emu.queueFault({ at: { afterAudioMs: 100 }, action: { type: 'drop' } });
    const dropped = await rawClient(emu.url);
    dropped.ws.send(JSON.stringify(CONFIG));
    for (const frame of pcm16Frames(tone(300, 8000))) dropped.ws.send(frame);
    expect((await dropped.closed).code).toBe(1006);
    expect(emu.connections[0]?.closeInfo?.by).toBe('dropped');

    emu.queueFault({ at: 'config', action: { type: 'stall' } });
    const stalled = await rawClient(emu.url);
    stalled.ws.send(JSON.stringify(CONFIG));
    for (const frame of pcm16Frames(concatPcm(tone(500, 8000), silence(800)))) stalled.ws.send(frame);
    stalled.ws.send('');
    const connection = await emu.waitForConnection(1);
    await emu.waitFor(() => connection.stalled && connection.endOfAudio === undefined && connection.audioBytes === 0);
    expect(stalled.messages).toEqual([]);
    stalled.ws.close();
    await stalled.closed;

    emu.queueFault({ at: 'finalize', action: { type: 'close', code: 4003, reason: 'bye' } });
    const closing = await rawClient(emu.url);
    closing.ws.send(JSON.stringify(CONFIG));
    closing.ws.send(JSON.stringify({ type: 'finalize' }));
    expect(await closing.closed).toEqual({ code: 4003, reason: 'bye' });

    emu.queueFault({ at: 'upgrade', action: { type: 'http', status: 503 } });
    await expect(rawClient(emu.url)).rejects.toThrow(/503/);
    expect(emu.upgrades.at(-1)?.status).toBe(503);
  });
});
