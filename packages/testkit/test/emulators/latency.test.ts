import OpenAI from 'openai';
import { afterEach, describe, expect, test } from 'vitest';
import { startOpenAiRestEmulator, type OpenAiRestEmulatorOptions } from '../../src/emulators/openai-rest.js';
import { startSonioxSttEmulator, type SonioxSttLatency } from '../../src/emulators/soniox-stt.js';
import { startSpeechmaticsRtEmulator, type SpeechmaticsRtLatency } from '../../src/emulators/speechmatics-rt.js';
import { startSpeechmaticsTtsEmulator, type SpeechmaticsTtsEmulatorOptions } from '../../src/emulators/speechmatics-tts.js';
import { fixturePath } from '../../src/fixtures.js';
import { concatPcm, silence } from '../../src/signals.js';
import { readWavAs8k } from '../../src/wav.js';
import { connectRawClient, pcm16Frames, type RawWsClient } from './ws-client.js';

/** Slack above a configured delay: CI machines are slow, only a delay far beyond the setting is a bug. */
const SLACK_MS = 300;

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

function track<E extends { close(): Promise<void> }>(emulator: E): E {
  closers.push(() => emulator.close());
  return emulator;
}

/** The greeting fixture and 1 s of silence as 20 ms frames of 8 kHz PCM (sent in one burst: the emulators run on the audio clock). */
const greetingFrames = (): Buffer[] => pcm16Frames(concatPcm(readWavAs8k(fixturePath('greeting')), silence(1000)));

type Message = Record<string, unknown>;

/** performance.now() of each message `client` receives from now on, in the order of `client.messages`. */
function arrivals(client: RawWsClient<Message>): number[] {
  const at: number[] = [];
  client.ws.on('message', () => at.push(performance.now()));
  return at;
}

function expectDelay(elapsedMs: number | undefined, minMs: number): void {
  expect(elapsedMs).toBeGreaterThanOrEqual(minMs);
  expect(elapsedMs).toBeLessThanOrEqual(minMs + SLACK_MS);
}

describe('OpenAI REST emulator latency', () => {
  const KEY = 'sk-latency-test';
  const start = async (options: Partial<OpenAiRestEmulatorOptions>): Promise<OpenAI> => {
    const emu = track(await startOpenAiRestEmulator({ apiKey: KEY, ...options }));
    return new OpenAI({ apiKey: KEY, baseURL: emu.baseUrl, maxRetries: 0 });
  };

  test('chat: role chunk at once, first token after firstTokenMs, token-like deltas at tokensPerSecond', async () => {
    const openai = await start({
      latency: { firstTokenMs: 300, tokensPerSecond: 50 },
      chat: ({ messages }) =>
        messages.at(-1)?.content === 'transfer'
          ? { toolCalls: [{ name: 'avr_transfer', arguments: '{"transfer_extension":"600"}', id: 'call_1' }] }
          : { text: 'Hello caller, how can I help?' },
    });
    const t0 = performance.now();
    const stream = await openai.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: { at: number; role: string | undefined; content: string | null | undefined; finish: string | null | undefined }[] = [];
    for await (const chunk of stream) {
      const choice = chunk.choices[0];
      chunks.push({ at: performance.now() - t0, role: choice?.delta.role, content: choice?.delta.content, finish: choice?.finish_reason });
    }
    expect(chunks[0]).toMatchObject({ role: 'assistant', content: '' });
    expect(chunks[0]?.at).toBeLessThan(300);
    const deltas = chunks.filter((chunk) => chunk.content !== undefined && chunk.content !== '');
    expect(deltas.map((chunk) => chunk.content)).toEqual(['Hello', ' caller', ',', ' how', ' can', ' I', ' help', '?']);
    expectDelay(deltas[0]?.at, 300);
    // Seven more tokens, 20 ms apart.
    expectDelay(deltas.at(-1)?.at, 300 + 7 * 20);
    expect(chunks.find((chunk) => chunk.finish !== null && chunk.finish !== undefined)?.finish).toBe('stop');
    expect(chunks.at(-1)?.finish).toBeUndefined(); // the usage chunk (choices: [])

    // A tool-call-only reply has no separate role chunk: its first chunk is the first token.
    const t1 = performance.now();
    const tools = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'transfer' }], stream: true });
    const pieces: { at: number; arguments: string }[] = [];
    for await (const chunk of tools) {
      for (const call of chunk.choices[0]?.delta.tool_calls ?? []) pieces.push({ at: performance.now() - t1, arguments: call.function?.arguments ?? '' });
    }
    expectDelay(pieces[0]?.at, 300);
    expect(pieces.map((piece) => piece.arguments)).toEqual(['', '{"tr', 'ansf', 'er_e', 'xten', 'sion', '":"6', '00"}']);
    expectDelay(pieces.at(-1)?.at, 300 + 7 * 20);
  });

  test('speech: first byte after firstByteMs, body paced by realTimeFactor, same audio', async () => {
    const request = { model: 'gpt-4o-mini-tts', voice: 'alloy', input: 'Hello there.', response_format: 'pcm' } as const;
    const plain = Buffer.from(await (await (await start({})).audio.speech.create(request)).arrayBuffer());
    const openai = await start({ latency: { firstByteMs: 250, realTimeFactor: 0.1 } });
    const t0 = performance.now();
    const response = await openai.audio.speech.create(request);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const received: Buffer[] = [];
    let firstAt: number | undefined;
    for (let next = await reader.read(); !next.done; next = await reader.read()) {
      firstAt ??= performance.now() - t0;
      received.push(Buffer.from(next.value));
    }
    const endAt = performance.now() - t0;
    expectDelay(firstAt, 250);
    // 720 ms of audio in 100 ms chunks: 7 gaps of 10 ms after the first chunk.
    expectDelay(endAt, 250 + 7 * 10);
    expect(Buffer.concat(received).equals(plain)).toBe(true);
  });
});

describe('Speechmatics TTS emulator latency', () => {
  const KEY = 'sm-tts-latency-key';
  /** An emulator and a POST of 1500 ms of speech (25 characters) to it. */
  const start = async (options: Partial<SpeechmaticsTtsEmulatorOptions>): Promise<{ post: () => Promise<Response> }> => {
    const emu = track(await startSpeechmaticsTtsEmulator({ apiKey: KEY, ...options }));
    const post = (): Promise<Response> =>
      fetch(`${emu.baseUrl}/generate/sarah?output_format=pcm_16000`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ text: 'Hello there, how are you?' }),
      });
    return { post };
  };

  test('first byte after firstByteMs, body paced by realTimeFactor, same audio', async () => {
    const plain = Buffer.from(await (await (await start({})).post()).arrayBuffer());
    const { post } = await start({ latency: { firstByteMs: 200, realTimeFactor: 0.2 } });
    const t0 = performance.now();
    const response = await post();
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const received: Buffer[] = [];
    let firstAt: number | undefined;
    for (let next = await reader.read(); !next.done; next = await reader.read()) {
      firstAt ??= performance.now() - t0;
      received.push(Buffer.from(next.value));
    }
    const endAt = performance.now() - t0;
    expectDelay(firstAt, 200);
    // 1500 ms of audio in 100 ms chunks: 14 gaps of 20 ms after the first chunk.
    expectDelay(endAt, 200 + 14 * 20);
    expect(Buffer.concat(received).equals(plain)).toBe(true);
  });

  test('a client gone before the first byte is recorded as aborted and gets nothing', async () => {
    const emu = track(await startSpeechmaticsTtsEmulator({ apiKey: KEY, latency: { firstByteMs: 300 } }));
    const controller = new AbortController();
    const request = fetch(`${emu.baseUrl}/generate/sarah?output_format=pcm_16000`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ text: 'Hi' }),
      signal: controller.signal,
    });
    await emu.waitForRequest();
    controller.abort();
    await expect(request).rejects.toThrow();
    const record = await emu.waitFor(() => emu.requests.find((entry) => entry.aborted));
    expect(record).toMatchObject({ status: undefined, chunksSent: 0, completed: false });
  });
});

describe('Speechmatics RT emulator latency', () => {
  const KEY = 'sm-rt-latency-key';

  /** Streams the greeting in one burst, then EndOfStream; returns what the client got and when (ms after the audio). */
  async function session(latency: SpeechmaticsRtLatency): Promise<{ messages: Message[]; at: number[] }> {
    const rt = track(await startSpeechmaticsRtEmulator({ apiKey: KEY, latency }));
    const client = await connectRawClient<Message>(rt.url, { headers: { Authorization: `Bearer ${KEY}` } });
    const stamps = arrivals(client);
    client.send({
      message: 'StartRecognition',
      audio_format: { type: 'raw', encoding: 'pcm_s16le', sample_rate: 8000 },
      transcription_config: { language: 'en', enable_partials: true, max_delay: 1, conversation_config: { end_of_utterance_silence_trigger: 0.5 } },
    });
    await client.waitForMessage((message) => message.message === 'RecognitionStarted');
    const frames = greetingFrames();
    const sentAt = performance.now();
    for (const frame of frames) client.ws.send(frame);
    client.send({ message: 'EndOfStream', last_seq_no: frames.length });
    await client.waitForMessage((message) => message.message === 'EndOfTranscript');
    client.ws.close();
    return { messages: client.messages, at: stamps.map((stamp) => stamp - sentAt) };
  }

  const names = (messages: readonly Message[]): string[] => messages.map((message) => String(message.message));

  test('finalDelayMs holds AddTranscript and EndOfUtterance; transcript order and contents unchanged', async () => {
    const plain = await session({});
    const delayed = await session({ finalDelayMs: 400 });
    // RecognitionStarted has a random id; AudioAdded is not held, so it interleaves differently.
    const transcripts = (messages: readonly Message[]): Message[] =>
      messages.filter((message) => message.message !== 'AudioAdded' && message.message !== 'RecognitionStarted');
    expect(transcripts(delayed.messages)).toEqual(transcripts(plain.messages));
    expect(names(transcripts(delayed.messages)).slice(-4)).toEqual(['AddTranscript', 'AddPartialTranscript', 'EndOfUtterance', 'EndOfTranscript']);

    const at = (name: string): number | undefined => delayed.at[names(delayed.messages).indexOf(name)];
    const lastAck = delayed.at[names(delayed.messages).lastIndexOf('AudioAdded')];
    expect(lastAck).toBeLessThan(400);
    expect(at('AddPartialTranscript')).toBeLessThan(400);
    expectDelay(at('AddTranscript'), 400);
    expectDelay(at('EndOfUtterance'), 400);
  });

  test('a close while a final is held drops it', async () => {
    const rt = track(await startSpeechmaticsRtEmulator({ apiKey: KEY, latency: { finalDelayMs: 300 } }));
    const client = await connectRawClient<Message>(rt.url, { headers: { Authorization: `Bearer ${KEY}` } });
    client.send({ message: 'StartRecognition', audio_format: { type: 'raw', encoding: 'pcm_s16le', sample_rate: 8000 }, transcription_config: { language: 'en' } });
    await client.waitForMessage((message) => message.message === 'RecognitionStarted');
    const frames = greetingFrames();
    for (const frame of frames) client.ws.send(frame);
    await client.waitForMessage((message) => message.message === 'AudioAdded' && message.seq_no === frames.length);
    const conn = await rt.waitForConnection(0);
    expect(conn.utterances).toHaveLength(1);
    conn.close(1000, 'bye');
    expect(await client.closed).toEqual({ code: 1000, reason: 'bye' });
    expect(names(client.messages)).not.toContain('AddTranscript');
    expect(conn.finalTranscript()).toBe('');
  });
});

describe('Soniox STT emulator latency', () => {
  const KEY = 'soniox-latency-key';
  type SonioxResponse = Message & { tokens?: { text: string; is_final: boolean }[] };

  /** Streams the greeting in one burst, then the empty end frame; returns the responses and when (ms after the audio). */
  async function session(latency: SonioxSttLatency): Promise<{ messages: SonioxResponse[]; at: number[] }> {
    const stt = track(await startSonioxSttEmulator({ apiKey: KEY, latency }));
    const client = await connectRawClient<SonioxResponse>(stt.url, { headers: { Authorization: `Bearer ${KEY}` } });
    const stamps = arrivals(client);
    client.send({ model: 'stt-rt-v5', audio_format: 'pcm_s16le', sample_rate: 8000, num_channels: 1, enable_endpoint_detection: true, max_endpoint_delay_ms: 500 });
    const sentAt = performance.now();
    for (const frame of greetingFrames()) client.ws.send(frame);
    client.ws.send(Buffer.alloc(0));
    expect(await client.closed).toEqual({ code: 1000, reason: '' });
    return { messages: client.messages, at: stamps.map((stamp) => stamp - sentAt) };
  }

  test('finalDelayMs holds the responses with final tokens and <end>; responses and their order unchanged', async () => {
    const plain = await session({});
    const delayed = await session({ finalDelayMs: 400 });
    expect(delayed.messages).toEqual(plain.messages);
    expect(delayed.messages.at(-1)).toMatchObject({ tokens: [], finished: true });

    const firstFinal = delayed.messages.findIndex((message) => message.tokens?.some((token) => token.is_final) === true);
    const end = delayed.messages.findIndex((message) => message.tokens?.some((token) => token.text === '<end>') === true);
    expect(firstFinal).toBeGreaterThan(0);
    expect(delayed.at[0]).toBeLessThan(400);
    expectDelay(delayed.at[firstFinal], 400);
    expectDelay(delayed.at[end], 400);
  });
});
