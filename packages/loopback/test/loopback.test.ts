import { afterAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { ConfigError, ProviderError } from '@stsgate/core';
import type { StsCallContext, StsEvent, StsSession, VadAdapter, VadStream } from '@stsgate/core';
import { createSileroVad, defineSileroVad } from '@stsgate/silero-vad';
import { LOOPBACK_CAPABILITIES, createLoopbackSts, defineLoopbackSts, dtmfFrequencies } from '../src/index.js';
import {
  audibleSpan,
  bestAlignment,
  chunkPcm as chunks,
  concatPcm as concat,
  fixturePath,
  goertzel,
  memoryLogger,
  readWavAs8k,
  silence,
} from '@stsgate/testkit';

const readFixture = (name: 'greeting' | 'short' | 'question') => readWavAs8k(fixturePath(name));

const vad = createSileroVad();
afterAll(() => vad.close());
const logger = pino({ enabled: false });

function callContext(signal: AbortSignal = new AbortController().signal): StsCallContext {
  return { callId: 'test-call', metadata: {}, signal, logger, tools: [] };
}

/** Sends caller audio the way the host does: 20 ms frames, without waiting. */
function speak(session: StsSession, samples: Int16Array): void {
  for (const part of chunks(samples, 160)) session.sendAudio(part);
}

/** Reads events until `stop` matches (inclusive). */
async function readUntil(iterator: AsyncIterator<StsEvent>, stop: (event: StsEvent) => boolean): Promise<StsEvent[]> {
  const events: StsEvent[] = [];
  for (;;) {
    const next = await iterator.next();
    if (next.done) return events;
    events.push(next.value);
    if (stop(next.value)) return events;
  }
}

function audioOf(events: StsEvent[], responseId?: string): Int16Array {
  return concat(...events.flatMap((e) => (e.type === 'audio' && (responseId === undefined || e.responseId === responseId) ? [e.samples] : [])));
}

function shape(events: StsEvent[]): string[] {
  const out: string[] = [];
  for (const event of events) if (event.type !== 'audio' || out.at(-1) !== 'audio') out.push(event.type);
  return out;
}

const isDone = (e: StsEvent): boolean => e.type === 'response_done';

describe('loopback session (real Silero VAD)', () => {
  it('echoes an utterance: speech_started, speech_stopped, the utterance as audio, response_done', async () => {
    const session = await createLoopbackSts({ vad }).connect(callContext());
    const utterance = readFixture('greeting');
    const input = concat(silence(800), utterance, silence(1500));
    speak(session, input);
    const events = await readUntil(session.events[Symbol.asyncIterator](), isDone);
    await session.close();

    expect(shape(events)).toEqual(['speech_started', 'speech_stopped', 'audio', 'response_done']);
    const ids = new Set(events.flatMap((e) => (e.type === 'audio' || e.type === 'response_done' ? [e.responseId] : [])));
    expect(ids.size).toBe(1);
    for (const e of events) if (e.type === 'audio') expect(e.samples.length).toBeLessThanOrEqual(800);

    const echoed = audioOf(events);
    const span = audibleSpan(utterance);
    const pad = 200 * 8;
    expect(echoed.length).toBeGreaterThan(span.end - span.start);
    expect(echoed.length).toBeLessThan(span.end - span.start + 2 * pad + 2400);
    const alignment = bestAlignment(input, echoed);
    expect(alignment.correlation).toBeGreaterThan(0.999);
    expect(Math.abs(alignment.offset - (800 * 8 + span.start - pad))).toBeLessThan(100 * 8);
  });

  it('applies playbackGainDb to the echo', async () => {
    const session = await createLoopbackSts({ vad, playbackGainDb: -6 }).connect(callContext());
    const input = concat(silence(500), readFixture('short'), silence(1200));
    speak(session, input);
    const echoed = audioOf(await readUntil(session.events[Symbol.asyncIterator](), isDone));
    await session.close();
    const { offset, correlation } = bestAlignment(input, echoed);
    expect(correlation).toBeGreaterThan(0.999);
    const original = input.subarray(offset, offset + echoed.length);
    const rms = (x: Int16Array): number => Math.sqrt(x.reduce((sum, v) => sum + v * v, 0) / x.length);
    expect(rms(echoed) / rms(original)).toBeCloseTo(10 ** (-6 / 20), 2);
  });

  it('truncate() abandons the rest of the response', async () => {
    const session = await createLoopbackSts({ vad }).connect(callContext());
    speak(session, concat(silence(500), readFixture('question'), silence(1200)));
    const iterator = session.events[Symbol.asyncIterator]();
    const first = await readUntil(iterator, (e) => e.type === 'audio');
    const audio = first.at(-1);
    if (audio?.type !== 'audio') throw new Error('no audio');
    session.truncate(audio.responseId, 40);
    // A DTMF reply afterwards proves the session is still alive and marks the end of what we read.
    session.sendDtmf('1');
    const rest = await readUntil(iterator, (e) => e.type === 'response_done' && e.responseId !== audio.responseId);
    await session.close();
    expect(rest.filter((e) => e.type === 'audio' && e.responseId === audio.responseId)).toEqual([]);
    expect(rest[0]).toEqual({ type: 'response_done', responseId: audio.responseId });
    expect(rest.filter((e) => e.type === 'audio').length).toBeGreaterThan(0);
  });

  it('plays DTMF digits as their row/column tone pairs', async () => {
    const session = await createLoopbackSts({ vad }).connect(callContext());
    const iterator = session.events[Symbol.asyncIterator]();
    const all = [697, 770, 852, 941, 1209, 1336, 1477, 1633];
    for (const digit of ['1', '5', '9', '0', '*', '#', 'A', 'd']) {
      session.sendDtmf(digit);
      const events = await readUntil(iterator, isDone);
      expect(shape(events)).toEqual(['audio', 'response_done']);
      const tone = audioOf(events);
      expect(tone.length).toBeGreaterThanOrEqual(0.2 * 8000);
      const expected = dtmfFrequencies(digit);
      const powers = all.map((f) => ({ f, p: goertzel(tone.subarray(0, 1600), f) })).sort((a, b) => b.p - a.p);
      expect(powers.slice(0, 2).map((x) => x.f).sort((a, b) => a - b)).toEqual([expected?.low, expected?.high]);
      // The other six keypad frequencies are at least 20 dB down.
      for (const other of powers.slice(2)) expect(other.p).toBeLessThan((powers[1]?.p ?? 0) / 100);
    }
    session.sendDtmf('X'); // ignored
    await session.close();
    expect(await readUntil(iterator, () => false)).toEqual([]);
  });

  it('queues at most 8 DTMF tones: a flood of digits is dropped with one warning, and the next digit plays', async () => {
    const { logger: memory, lines } = memoryLogger('debug');
    const session = await createLoopbackSts({ vad }).connect({ ...callContext(), logger: memory });
    const iterator = session.events[Symbol.asyncIterator]();
    for (let i = 0; i < 500; i++) session.sendDtmf('5');
    for (let played = 0; played < 8; played++) await readUntil(iterator, isDone);
    // Had the flood been queued, the next tone would be another "5".
    session.sendDtmf('1');
    const next = audioOf(await readUntil(iterator, isDone));
    const row = (f: number) => goertzel(next.subarray(0, 1600), f);
    expect(row(697)).toBeGreaterThan(100 * row(770));
    expect(lines.filter((l) => l.msg === 'too many DTMF tones waiting to play: dropping digits')).toHaveLength(1);
    await session.close();
  });

  it('isolates two sessions sharing one VAD adapter', async () => {
    const adapter = createLoopbackSts({ vad });
    const a = await adapter.connect(callContext());
    const b = await adapter.connect(callContext());
    const inputA = concat(silence(600), readFixture('greeting'), silence(1300));
    const inputB = concat(silence(1200), readFixture('short'), silence(1300));
    const partsA = chunks(inputA, 160);
    const partsB = chunks(inputB, 160);
    for (let i = 0; i < Math.max(partsA.length, partsB.length); i++) {
      const pa = partsA[i];
      const pb = partsB[i];
      if (pa) a.sendAudio(pa);
      if (pb) b.sendAudio(pb);
    }
    const [eventsA, eventsB] = await Promise.all([
      readUntil(a.events[Symbol.asyncIterator](), isDone),
      readUntil(b.events[Symbol.asyncIterator](), isDone),
    ]);
    await Promise.all([a.close(), b.close()]);
    for (const [events, input, fixture] of [
      [eventsA, inputA, 'greeting'],
      [eventsB, inputB, 'short'],
    ] as const) {
      expect(shape(events)).toEqual(['speech_started', 'speech_stopped', 'audio', 'response_done']);
      const echoed = audioOf(events);
      expect(bestAlignment(input, echoed).correlation).toBeGreaterThan(0.999);
      const span = audibleSpan(readFixture(fixture));
      expect(Math.abs(echoed.length - (span.end - span.start))).toBeLessThan(2 * 200 * 8 + 2400);
    }
  });

  it('cuts utterances longer than maxUtteranceMs and plays them', async () => {
    const session = await createLoopbackSts({ vad, maxUtteranceMs: 1000 }).connect(callContext());
    const input = concat(silence(500), readFixture('greeting'), silence(1500));
    speak(session, input);
    const iterator = session.events[Symbol.asyncIterator]();
    const first = await readUntil(iterator, isDone);
    expect(shape(first)).toEqual(['speech_started', 'speech_stopped', 'audio', 'response_done']);
    const echoed = audioOf(first);
    // 1000 ms of speech plus the 200 ms pre-roll (within one 20 ms frame of detection granularity).
    expect(echoed.length / 8).toBeGreaterThanOrEqual(1200);
    expect(echoed.length / 8).toBeLessThan(1300);
    expect(bestAlignment(input, echoed).correlation).toBeGreaterThan(0.999);
    // The rest of the (3.2 s) utterance is detected and echoed as further responses.
    const rest = await readUntil(iterator, isDone);
    expect(rest[0]?.type).toBe('speech_started');
    await session.close();
  });

  it('close() ends the event iterator, is idempotent, and ignores later input', async () => {
    const session = await createLoopbackSts({ vad }).connect(callContext());
    const reading = readUntil(session.events[Symbol.asyncIterator](), () => false);
    speak(session, concat(silence(300), readFixture('short')));
    await session.close();
    await session.close();
    session.sendAudio(readFixture('short'));
    session.sendDtmf('1');
    session.truncate('nope', 0);
    const events = await reading;
    expect(events.filter((e) => e.type === 'audio')).toEqual([]);
  });

  it('closes when the call signal aborts, and refuses to connect an ended call', async () => {
    const controller = new AbortController();
    const before = vad.openStreams;
    const session = await createLoopbackSts({ vad }).connect(callContext(controller.signal));
    expect(vad.openStreams).toBe(before + 1);
    const reading = readUntil(session.events[Symbol.asyncIterator](), () => false);
    controller.abort();
    expect(await reading).toEqual([]);
    expect(vad.openStreams).toBe(before);
    await expect(createLoopbackSts({ vad }).connect(callContext(controller.signal))).rejects.toMatchObject({ category: 'closed' });
  });

  it('reports a failing VAD as a fatal error event and ends', async () => {
    let closed = 0;
    const failing: VadAdapter = {
      id: 'failing',
      capabilities: { inputSampleRates: [8000] },
      open: () =>
        Promise.resolve<VadStream>({
          sampleRate: 8000,
          process: () => Promise.reject(new Error('model exploded')),
          reset: () => undefined,
          close: () => {
            closed++;
            return Promise.resolve();
          },
        }),
    };
    const session = await createLoopbackSts({ vad: failing }).connect(callContext());
    session.sendAudio(silence(20));
    const events = await readUntil(session.events[Symbol.asyncIterator](), () => false);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ type: 'error', fatal: true });
    expect((events[0] as Extract<StsEvent, { type: 'error' }>).error).toBeInstanceOf(ProviderError);
    await session.close();
    expect(closed).toBe(1);
  });
});

describe('loopback adapter', () => {
  it('advertises 8 kHz PCM, server turn detection, truncation and DTMF', () => {
    const adapter = createLoopbackSts({ vad });
    expect(adapter.id).toBe('loopback');
    expect(adapter.capabilities).toEqual(LOOPBACK_CAPABILITIES);
    expect(LOOPBACK_CAPABILITIES).toMatchObject({
      inputSampleRates: [8000],
      outputSampleRates: [8000],
      encodings: ['pcm_s16le'],
      serverTurnDetection: true,
      userTranscripts: false,
      agentTranscripts: false,
      truncation: true,
      toolCalls: false,
      dtmf: true,
    });
    expect(() => createLoopbackSts({ vad, maxUtteranceMs: 10 })).toThrow(ProviderError);
  });

  it('defineLoopbackSts works with a VAD instance or definition and reports all env problems', async () => {
    const fromInstance = defineLoopbackSts(vad);
    expect(fromInstance).toMatchObject({ kind: 'sts', id: 'loopback', defaultPort: 6030 });
    expect(fromInstance.fromEnv({ LOOPBACK_MAX_UTTERANCE_MS: '20000' }, { logger }).id).toBe('loopback');

    const fromDefinition = defineLoopbackSts(defineSileroVad());
    const adapter = fromDefinition.fromEnv({ VAD_MIN_SPEECH_MS: '300' }, { logger });
    const session = await adapter.connect(callContext());
    await session.close();

    let error: unknown;
    try {
      fromDefinition.fromEnv({ LOOPBACK_MAX_UTTERANCE_MS: 'long', VAD_THRESHOLD: '2' }, { logger });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as ConfigError).problems.join('\n');
    expect(message).toMatch(/LOOPBACK_MAX_UTTERANCE_MS/);
    expect(message).toMatch(/VAD_THRESHOLD/);
  });
});
