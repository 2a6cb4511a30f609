import { afterAll, describe, expect, it, vi } from 'vitest';
import { ConfigError, ProviderError, createResampler } from '@stsgate/core';
import type { VadEvent, VadStream } from '@stsgate/core';
import { pino } from 'pino';
import { createSileroVad, defineSileroVad } from '../src/index.js';
import { SileroModel } from '../src/model.js';
import {
  audibleSpan,
  chunkPcm as chunks,
  concatPcm as concat,
  fixturePath,
  readWavAs8k,
  silence,
  whiteNoise,
} from '@stsgate/testkit';

const readFixture = (name: 'greeting' | 'short' | 'question') => readWavAs8k(fixturePath(name));

const vad = createSileroVad();
afterAll(() => vad.close());

const LEAD_MS = 1000;
const TAIL_MS = 1500;
const PAD_MS = 200;

/** Feeds 20 ms chunks (AVR's framing), awaiting each, and collects the events. */
async function feed(stream: VadStream, samples: Int16Array, chunk = 160): Promise<VadEvent[]> {
  const events: VadEvent[] = [];
  for (const part of chunks(samples, chunk)) events.push(...(await stream.process(part)));
  return events;
}

function kinds(events: VadEvent[]): string[] {
  return events.map((e) => e.type);
}

describe('Silero VAD stream (8 kHz native)', () => {
  for (const name of ['greeting', 'short', 'question'] as const) {
    it(`finds exactly one utterance in ${name}.wav padded with silence`, async () => {
      const utterance = readFixture(name);
      const span = audibleSpan(utterance);
      const input = concat(silence(LEAD_MS), utterance, silence(TAIL_MS));
      const stream = await vad.open(8000);
      const events = await feed(stream, input);
      await stream.close();

      expect(kinds(events)).toEqual(['speech_start', 'speech_end']);
      const [start, end] = events as [Extract<VadEvent, { type: 'speech_start' }>, Extract<VadEvent, { type: 'speech_end' }>];
      const audibleStartMs = LEAD_MS + span.start / 8;
      const audibleEndMs = LEAD_MS + span.end / 8;
      expect(Math.abs(start.atMs - audibleStartMs)).toBeLessThan(100);
      expect(Math.abs(end.atMs - audibleEndMs)).toBeLessThan(200);

      // The utterance audio is the input itself, from the start minus the pre-roll, about as long as the speech.
      const from = start.atMs * 8 - PAD_MS * 8;
      expect(end.audio).toEqual(input.slice(from, from + end.audio.length));
      const spanSamples = span.end - span.start;
      expect(end.audio.length).toBeGreaterThan(spanSamples);
      expect(end.audio.length).toBeLessThan(spanSamples + 2 * PAD_MS * 8 + 2400);
    });
  }

  it('tracks continuous speech without fragmenting it (needs the inter-window context)', async () => {
    const stream = await vad.open(8000, { minSilenceMs: 100, minSpeechMs: 100 });
    const events = await feed(stream, concat(silence(500), readFixture('question'), silence(1000)));
    await stream.close();
    expect(kinds(events)).toEqual(['speech_start', 'speech_end']);
  });

  it('skips the model on long near-digital silence, with the same utterances as running it on every window', async () => {
    const input = concat(silence(2000), readFixture('question'), silence(3000), readFixture('short'), silence(2000));
    const infer = vi.spyOn(SileroModel.prototype, 'infer');
    const gated = await vad.open(8000);
    const gatedEvents = await feed(gated, input);
    const gatedRuns = infer.mock.calls.length;
    const everyWindow = createSileroVad({ silenceFloorDbfs: -Infinity });
    const full = await everyWindow.open(8000);
    infer.mockClear();
    const fullEvents = await feed(full, input);
    const fullRuns = infer.mock.calls.length;
    infer.mockRestore();
    await Promise.all([gated.close(), everyWindow.close()]);
    expect(kinds(gatedEvents)).toEqual(['speech_start', 'speech_end', 'speech_start', 'speech_end']);
    expect(kinds(fullEvents)).toEqual(kinds(gatedEvents));
    gatedEvents.forEach((event, i) => expect(Math.abs(event.atMs - (fullEvents[i]?.atMs ?? 0))).toBeLessThanOrEqual(64));
    // 10.5 s of audio is 328 windows; 7 s of it is silence the gated stream mostly does not run the model on.
    expect(fullRuns).toBe(Math.floor(input.length / 256));
    expect(gatedRuns).toBeLessThan(fullRuns * 0.5);
  });

  it('streams processed together (one batched model run) get exactly the events they get alone', async () => {
    const inputs = [concat(silence(400), readFixture('greeting'), silence(800)), concat(silence(900), readFixture('short'), silence(1200))];
    const alone = [];
    for (const input of inputs) {
      const stream = await vad.open(8000);
      alone.push(await feed(stream, input));
      await stream.close();
    }
    const streams = await Promise.all(inputs.map(() => vad.open(8000)));
    const together: VadEvent[][] = inputs.map(() => []);
    const parts = inputs.map((input) => [...chunks(input, 160)]);
    for (let i = 0; i < Math.max(...parts.map((p) => p.length)); i++) {
      const results = await Promise.all(streams.map((stream, s) => stream.process(parts[s]?.[i] ?? new Int16Array(0))));
      results.forEach((events, s) => together[s]?.push(...events));
    }
    await Promise.all(streams.map((stream) => stream.close()));
    expect(together).toEqual(alone);
    expect(kinds(together[0] ?? [])).toEqual(['speech_start', 'speech_end']);
  });

  it('yields nothing for pure silence', async () => {
    const stream = await vad.open(8000);
    expect(await feed(stream, silence(5000))).toEqual([]);
    await stream.close();
  });

  it('yields no speech for low white noise', async () => {
    const stream = await vad.open(8000);
    const events = await feed(stream, concat(whiteNoise(5000, 300, 7), whiteNoise(3000, 1000, 11)));
    await stream.close();
    expect(events.filter((e) => e.type !== 'misfire')).toEqual([]);
  });

  it('accepts any chunking: one big buffer gives the same events as 20 ms chunks', async () => {
    const input = concat(silence(300), readFixture('short'), silence(1000));
    const a = await vad.open(8000);
    const b = await vad.open(8000);
    const small = await feed(a, input);
    const big = await b.process(input);
    await Promise.all([a.close(), b.close()]);
    expect(big).toEqual(small);
    expect(kinds(big)).toEqual(['speech_start', 'speech_end']);
  });

  it('isolates concurrent streams: interleaved feeding gives the same events as feeding each alone', async () => {
    const inputA = concat(silence(700), readFixture('greeting'), silence(1200));
    const inputB = concat(silence(1500), readFixture('question'), silence(900), readFixture('short'), silence(1000));
    const aloneA = await feed(await vad.open(8000), inputA);
    const aloneB = await feed(await vad.open(8000), inputB);
    expect(kinds(aloneB)).toEqual(['speech_start', 'speech_end', 'speech_start', 'speech_end']);

    const a = await vad.open(8000);
    const b = await vad.open(8000);
    const partsA = chunks(inputA, 160);
    const partsB = chunks(inputB, 240);
    const pendingA: Promise<VadEvent[]>[] = [];
    const pendingB: Promise<VadEvent[]>[] = [];
    // Interleave without awaiting: both streams have inference in flight at the same time on the shared model.
    for (let i = 0; i < Math.max(partsA.length, partsB.length); i++) {
      const partA = partsA[i];
      const partB = partsB[i];
      if (partA) pendingA.push(a.process(partA));
      if (partB) pendingB.push(b.process(partB));
    }
    const eventsA = (await Promise.all(pendingA)).flat();
    const eventsB = (await Promise.all(pendingB)).flat();
    await Promise.all([a.close(), b.close()]);
    expect(eventsA).toEqual(aloneA);
    expect(eventsB).toEqual(aloneB);
  });

  it('reset() forgets the current utterance', async () => {
    const utterance = readFixture('greeting');
    const stream = await vad.open(8000);
    const first = await feed(stream, concat(silence(500), utterance.subarray(0, 8000)));
    expect(kinds(first)).toEqual(['speech_start']);
    stream.reset();
    const after = await feed(stream, silence(2000));
    expect(after.filter((e) => e.type === 'speech_end')).toEqual([]);
    // and it still detects the next utterance
    const next = await feed(stream, concat(readFixture('short'), silence(1000)));
    expect(kinds(next)).toEqual(['speech_start', 'speech_end']);
    await stream.close();
  });

  it('honours per-stream options (long minSpeechMs turns a short word into a misfire)', async () => {
    const stream = await vad.open(8000, { minSpeechMs: 5000 });
    const events = await feed(stream, concat(silence(300), readFixture('short'), silence(1000)));
    await stream.close();
    expect(kinds(events)).toEqual(['misfire']);
  });

  it('close() is idempotent, releases the stream, and later process() calls yield nothing', async () => {
    const before = vad.openStreams;
    const stream = await vad.open(8000);
    expect(vad.openStreams).toBe(before + 1);
    const pending = stream.process(concat(silence(200), readFixture('short')));
    await stream.close();
    await stream.close();
    expect(vad.openStreams).toBe(before);
    expect(await pending).toEqual([]);
    expect(await stream.process(readFixture('short'))).toEqual([]);
  });
});

describe('Silero VAD at 16 kHz', () => {
  it('finds one utterance in an upsampled fixture', async () => {
    const resampler = createResampler(8000, 16000);
    const input = concat(resampler.process(concat(silence(LEAD_MS), readFixture('greeting'), silence(TAIL_MS))), resampler.flush());
    const stream = await vad.open(16000);
    expect(stream.sampleRate).toBe(16000);
    const events = await feed(stream, input, 320);
    await stream.close();
    expect(kinds(events)).toEqual(['speech_start', 'speech_end']);
    const start = events[0] as Extract<VadEvent, { type: 'speech_start' }>;
    expect(Math.abs(start.atMs - (LEAD_MS + audibleSpan(readFixture('greeting')).start / 8))).toBeLessThan(100);
  });
});

describe('Silero VAD adapter', () => {
  it('rejects unsupported rates and invalid options with ProviderErrors', async () => {
    await expect(vad.open(24000)).rejects.toBeInstanceOf(ProviderError);
    await expect(vad.open(8000, { threshold: 1.5 })).rejects.toMatchObject({ category: 'invalid_request' });
    expect(() => createSileroVad({ minSilenceMs: -1 })).toThrow(ProviderError);
  });

  it('close() waits for inference in flight, then rejects open()', async () => {
    const own = createSileroVad();
    const stream = await own.open(8000);
    const inFlight = stream.process(concat(silence(300), readFixture('greeting'), silence(1000)));
    await new Promise((resolve) => setImmediate(resolve));
    await own.close();
    await own.close();
    expect(await inFlight).toEqual([]);
    expect(own.openStreams).toBe(0);
    expect(await stream.process(silence(100))).toEqual([]);
    await expect(own.open(8000)).rejects.toMatchObject({ category: 'closed' });
  });

  it('reports a missing model as a ProviderError', async () => {
    const broken = createSileroVad({ modelPath: '/nonexistent/silero.onnx' });
    await expect(broken.prepare()).rejects.toBeInstanceOf(ProviderError);
    await broken.close();
  });

  it('defineSileroVad parses VAD_* variables with defaults and coercion', async () => {
    const definition = defineSileroVad();
    expect(definition).toMatchObject({ kind: 'vad', id: 'silero' });
    const logger = pino({ enabled: false });
    const adapter = definition.fromEnv({ VAD_THRESHOLD: '0.6', VAD_MIN_SILENCE_MS: '', VAD_MIN_SPEECH_MS: '5000' }, { logger });
    expect(adapter.id).toBe('silero');
    // VAD_MIN_SPEECH_MS=5000 is applied: the short word is a misfire.
    const stream = await adapter.open(8000);
    const events = await feed(stream, concat(silence(300), readFixture('short'), silence(1000)));
    expect(kinds(events)).toEqual(['misfire']);
    await stream.close();
    expect(() => definition.fromEnv({ VAD_THRESHOLD: 'loud' }, { logger })).toThrow(ConfigError);
    expect(() => definition.fromEnv({ VAD_SPEECH_PAD_MS: '-5' }, { logger })).toThrow(/VAD_SPEECH_PAD_MS/);
  });
});
