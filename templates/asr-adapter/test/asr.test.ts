// The IO against the emulator, beyond the conformance suite: what goes on the wire, errors, and a dropped connection.
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { AsrEvent, AsrStream } from '@stsgate/core';
import { FIXTURE_TEXT, chunkPcm, concatPcm, fixturePath, readWavAs8k, silence, startSonioxSttEmulator } from '@stsgate/testkit';
import type { SonioxSttEmulator, SonioxSttFault } from '@stsgate/testkit';
import { createExampleAsr } from '../src/index.js';
import { configMessage } from '../src/wire.js';

const KEY = 'example-asr-test-key-0123456789';
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function start(faults: SonioxSttFault[] = [], key = KEY): Promise<{ emulator: SonioxSttEmulator; stream: AsrStream; events: Promise<AsrEvent[]> }> {
  const emulator = await startSonioxSttEmulator({ apiKey: KEY, requireHeaderAuth: true, faults });
  cleanups.push(() => emulator.close());
  const adapter = createExampleAsr({ apiKey: key, url: emulator.url, model: 'stt-rt-v5', languageHints: ['en', 'it'] });
  const stream = await adapter.open({ callId: 'call-7', metadata: {}, signal: new AbortController().signal, logger: pino({ level: 'silent' }) });
  cleanups.push(() => stream.close());
  const events = (async () => {
    const all: AsrEvent[] = [];
    for await (const event of stream.events) all.push(event);
    return all;
  })();
  return { emulator, stream, events };
}

/** 8 kHz audio in 20 ms frames, one frame per event-loop turn; then the end of input. */
async function speak(stream: AsrStream, audio: Int16Array): Promise<void> {
  for (const frame of chunkPcm(audio, 160)) {
    stream.pushAudio(frame);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  stream.endInput();
}

const greeting = () => concatPcm(readWavAs8k(fixturePath('greeting')), silence(1500));
const utterances = (events: AsrEvent[]) => events.flatMap((event) => (event.type === 'end_of_utterance' ? [event.text] : []));

describe('example-asr on the wire', () => {
  it('the key only in the Authorization header, the config first, the audio as binary PCM, an empty frame at the end', async () => {
    const { emulator, stream, events } = await start();
    await speak(stream, greeting());
    expect(utterances(await events)).toEqual([FIXTURE_TEXT['greeting.wav']]);
    const connection = emulator.connections[0];
    expect(connection?.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(connection?.authVia).toBe('header');
    expect(connection?.rawConfig).toEqual(JSON.parse(configMessage('stt-rt-v5', 8000, ['en', 'it'], 'call-7')));
    expect(connection?.audioMs).toBeCloseTo(greeting().length / 8, -1);
    expect(connection?.endOfAudio).toBe('text');
    expect(emulator.connections).toHaveLength(1);
  });

  it('a refused key is one fatal auth error, its message without the key, and the events end', async () => {
    const { stream, events } = await start([{ at: 'config', action: { type: 'error', code: 401, message: `key ${KEY} is not valid` } }]);
    stream.pushAudio(silence(20));
    const errors = (await events).filter((event) => event.type === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0]?.fatal).toBe(true);
    expect(errors[0]?.error.category).toBe('auth');
    expect(errors[0]?.error.message).toContain('Example ASR error 401');
    expect(errors[0]?.error.message).not.toContain(KEY);
  });

  it('a server error (503) or a dropped connection mid-utterance: a new connection gets the audio not final yet, the text is whole', async () => {
    for (const fault of [
      { at: { afterAudioMs: 900 }, action: { type: 'drop' } },
      { at: { afterAudioMs: 900 }, action: { type: 'error', code: 503 } },
    ] satisfies SonioxSttFault[]) {
      const { emulator, stream, events } = await start([fault]);
      await speak(stream, greeting());
      const all = await events;
      expect(all.filter((event) => event.type === 'error')).toEqual([]);
      expect(utterances(all)).toEqual([FIXTURE_TEXT['greeting.wav']]);
      expect(emulator.connections).toHaveLength(2);
      expect(emulator.connections[1]?.rawConfig).toEqual(emulator.connections[0]?.rawConfig);
      await Promise.all(cleanups.splice(0).reverse().map((cleanup) => cleanup()));
    }
  });
});
