/**
 * TTS adapter conformance suite: the behaviour every `TtsAdapter` owes the host, checked against whatever server the
 * setup wires (a local emulator in CI).
 *
 *   describeTtsConformance('soniox', async () => {
 *     const emulator = await startSonioxTtsEmulator({ apiKey: 'k', chunkIntervalMs: 20 });
 *     return {
 *       adapter: createSonioxTts({ apiKey: 'k', url: emulator.baseUrl }),
 *       badKeyAdapter: createSonioxTts({ apiKey: 'wrong', url: emulator.baseUrl }),
 *       upstream: () => emulator.requests.at(-1),   // { aborted, completed } of the last upstream request
 *       cleanup: () => emulator.close(),
 *     };
 *   });
 *
 * API (stable; append-only):
 *   describeTtsConformance(name, setup, options?)   registers one vitest `describe` with a test per check
 *   runTtsConformanceCheck(check, setup, options?)  runs one check (setup, check, cleanup); rejects when it fails
 *   TTS_CONFORMANCE_CHECKS                           the checks by name (each `(harness, options) => Promise<void>`)
 *
 * Checks: `pcmOutput` (Int16Array chunks at the declared outputSampleRate, one of capabilities.outputSampleRates, not
 * a container: no RIFF header, audible), `plausibleDuration` (between `minMsPerWord` per word and `maxMsPerChar` per
 * character plus 1 s), `streamed` (several chunks; with `upstream`, the first chunk arrives while the upstream response
 * is still incomplete), `abortStopsUpstream` (aborting call.signal after the first chunk ends the audio iterator, and
 * with `upstream` the upstream request is recorded as aborted), `returnStopsUpstream` (leaving the for-await loop
 * early aborts the upstream too), `authError` (a bad key -> ProviderError with category `auth`), `emptyText`
 * (empty text -> ProviderError `invalid_request`, and nothing reaches upstream as a synthesis).
 */
import { ProviderError, type CallContext, type TtsAdapter } from '@stsgate/core';
import { pino } from 'pino';
import { describe, test } from 'vitest';

export interface TtsUpstreamState {
  readonly aborted: boolean;
  readonly completed: boolean;
}

export interface TtsConformanceHarness {
  readonly adapter: TtsAdapter;
  /** The same adapter configured with a wrong API key. */
  readonly badKeyAdapter: TtsAdapter;
  /** State of the latest upstream request, when the server can tell (an emulator can). */
  readonly upstream?: () => TtsUpstreamState | undefined;
  /** A call context for `signal` (default: a silent logger, no metadata). */
  readonly call?: (signal: AbortSignal) => CallContext;
  cleanup?(): Promise<void>;
}

export type TtsConformanceSetup = () => Promise<TtsConformanceHarness>;

export interface TtsConformanceOptions {
  /** Safety net for every wait (default 10000 ms). */
  readonly timeoutMs?: number;
  /** Shortest plausible speech per word (default 40 ms). */
  readonly minMsPerWord?: number;
  /** Longest plausible speech per character (default 250 ms). */
  readonly maxMsPerChar?: number;
  readonly skip?: readonly TtsCheckName[];
}

export type TtsCheckName = 'pcmOutput' | 'plausibleDuration' | 'streamed' | 'abortStopsUpstream' | 'returnStopsUpstream' | 'authError' | 'emptyText';

export type TtsCheck = (harness: TtsConformanceHarness, options: TtsConformanceOptions) => Promise<void>;

const SENTENCE = 'Hello, I would like to book an appointment for tomorrow morning, please.';
const LONG_TEXT = 'This is a longer answer that takes several seconds to speak, so that it is streamed in many pieces.';

function callFor(harness: TtsConformanceHarness, signal: AbortSignal = new AbortController().signal): CallContext {
  return harness.call?.(signal) ?? { callId: 'tts-conformance', metadata: {}, signal, logger: pino({ level: 'silent' }) };
}

function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${String(timeoutMs)} ms waiting for ${what}`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function waitUntil(probe: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${String(timeoutMs)} ms waiting for ${what}`);
    await new Promise<void>((resolve) => setTimeout(resolve, 5));
  }
}

async function collect(audio: AsyncIterable<Int16Array>, timeoutMs: number): Promise<Int16Array[]> {
  const chunks: Int16Array[] = [];
  await withTimeout(
    (async () => {
      for await (const chunk of audio) chunks.push(chunk);
    })(),
    timeoutMs,
    'the synthesis to finish',
  );
  return chunks;
}

async function expectProviderError(run: () => Promise<unknown>, category: ProviderError['category'], timeoutMs: number, what: string): Promise<void> {
  let caught: unknown;
  try {
    await withTimeout(run(), timeoutMs, what);
  } catch (error) {
    caught = error;
  }
  if (caught === undefined) throw new Error(`${what}: expected a ProviderError (${category}), but it succeeded`);
  if (!(caught instanceof ProviderError)) throw new Error(`${what}: expected a ProviderError, got ${String(caught)}`);
  if (caught.category !== category) throw new Error(`${what}: expected category ${category}, got ${caught.category} (${caught.message})`);
}

function totalSamples(chunks: readonly Int16Array[]): number {
  return chunks.reduce((sum, chunk) => sum + chunk.length, 0);
}

// ---- checks ---------------------------------------------------------------------------------------------------------

const pcmOutput: TtsCheck = async (harness, options) => {
  const synthesis = harness.adapter.synthesize({ text: SENTENCE }, callFor(harness));
  if (!harness.adapter.capabilities.outputSampleRates.includes(synthesis.outputSampleRate)) {
    throw new Error(`outputSampleRate ${String(synthesis.outputSampleRate)} is not among the declared ${JSON.stringify(harness.adapter.capabilities.outputSampleRates)}`);
  }
  const chunks = await collect(synthesis.audio, options.timeoutMs ?? 10_000);
  if (chunks.some((chunk) => !(chunk instanceof Int16Array))) throw new Error('audio chunks must be Int16Array');
  const first = chunks.find((chunk) => chunk.length >= 2);
  if (first === undefined) throw new Error('no audio');
  // "RIFF" read as two little-endian int16 samples.
  if (first[0] === 0x4952 && first[1] === 0x4646) throw new Error('audio starts with a RIFF header: a container, not raw PCM');
  let energy = 0;
  for (const chunk of chunks) for (const sample of chunk) energy += sample * sample;
  if (energy / totalSamples(chunks) < 100 ** 2) throw new Error('audio is (nearly) silent');
};

const plausibleDuration: TtsCheck = async (harness, options) => {
  const synthesis = harness.adapter.synthesize({ text: SENTENCE }, callFor(harness));
  const chunks = await collect(synthesis.audio, options.timeoutMs ?? 10_000);
  const ms = (totalSamples(chunks) * 1000) / synthesis.outputSampleRate;
  const words = SENTENCE.split(/\s+/).length;
  const min = words * (options.minMsPerWord ?? 40);
  const max = SENTENCE.length * (options.maxMsPerChar ?? 250) + 1000;
  if (ms < min || ms > max) throw new Error(`duration ${ms.toFixed(0)} ms is implausible for ${String(words)} words (expected ${String(min)}..${String(max)} ms)`);
};

const streamed: TtsCheck = async (harness, options) => {
  const synthesis = harness.adapter.synthesize({ text: LONG_TEXT }, callFor(harness));
  const chunks: Int16Array[] = [];
  let upstreamDoneAtFirstChunk: boolean | undefined;
  await withTimeout(
    (async () => {
      for await (const chunk of synthesis.audio) {
        if (chunks.length === 0) upstreamDoneAtFirstChunk = harness.upstream?.()?.completed;
        chunks.push(chunk);
      }
    })(),
    options.timeoutMs ?? 10_000,
    'the synthesis to finish',
  );
  if (chunks.length < 2) throw new Error(`expected the audio in several chunks, got ${String(chunks.length)}`);
  if (upstreamDoneAtFirstChunk === true) throw new Error('the first chunk was yielded only after the whole upstream response had arrived (buffered, not streamed)');
};

async function stopAfterFirstChunk(harness: TtsConformanceHarness, options: TtsConformanceOptions, how: 'abort' | 'return'): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const controller = new AbortController();
  const synthesis = harness.adapter.synthesize({ text: LONG_TEXT }, callFor(harness, controller.signal));
  const iterator = synthesis.audio[Symbol.asyncIterator]();
  const first = await withTimeout(iterator.next(), timeoutMs, 'the first chunk');
  if (first.done === true) throw new Error('no audio before the stop');
  if (how === 'abort') {
    controller.abort();
    // The iterator must end (done or a rejection) instead of streaming the rest.
    await withTimeout(
      (async () => {
        try {
          for (let next = await iterator.next(), count = 0; next.done !== true; next = await iterator.next(), count++) {
            if (count > 1000) throw new Error('audio kept coming after call.signal was aborted');
          }
        } catch (error) {
          if (error instanceof Error && error.message.startsWith('audio kept coming')) throw error;
        }
      })(),
      timeoutMs,
      'the audio to stop after abort',
    );
  } else {
    if (iterator.return === undefined) throw new Error('the audio iterator has no return(): leaving the loop cannot cancel the upstream');
    await withTimeout(iterator.return(), timeoutMs, 'iterator.return()');
  }
  const upstream = harness.upstream;
  if (upstream !== undefined) {
    await waitUntil(() => upstream()?.aborted === true, timeoutMs, `the upstream request to be aborted (after ${how})`);
    if (upstream()?.completed === true) throw new Error('the upstream request completed although it was stopped');
  }
}

const abortStopsUpstream: TtsCheck = (harness, options) => stopAfterFirstChunk(harness, options, 'abort');
const returnStopsUpstream: TtsCheck = (harness, options) => stopAfterFirstChunk(harness, options, 'return');

const authError: TtsCheck = (harness, options) =>
  expectProviderError(
    async () => {
      await collect(harness.badKeyAdapter.synthesize({ text: SENTENCE }, callFor(harness)).audio, options.timeoutMs ?? 10_000);
    },
    'auth',
    options.timeoutMs ?? 10_000,
    'synthesis with a bad key',
  );

const emptyText: TtsCheck = (harness, options) =>
  expectProviderError(
    async () => {
      await collect(harness.adapter.synthesize({ text: '' }, callFor(harness)).audio, options.timeoutMs ?? 10_000);
    },
    'invalid_request',
    options.timeoutMs ?? 10_000,
    'synthesis of empty text',
  );

export const TTS_CONFORMANCE_CHECKS: Readonly<Record<TtsCheckName, TtsCheck>> = {
  pcmOutput,
  plausibleDuration,
  streamed,
  abortStopsUpstream,
  returnStopsUpstream,
  authError,
  emptyText,
};

const TITLES: Readonly<Record<TtsCheckName, string>> = {
  pcmOutput: 'synthesize yields raw PCM (no container) at the declared outputSampleRate',
  plausibleDuration: 'the duration is plausible for the text',
  streamed: 'audio is streamed in several chunks, the first before the synthesis is done',
  abortStopsUpstream: 'aborting call.signal stops the audio and the upstream request',
  returnStopsUpstream: 'leaving the audio loop early stops the upstream request',
  authError: 'a bad key is a ProviderError with category auth',
  emptyText: 'empty text is rejected with a ProviderError invalid_request',
};

export async function runTtsConformanceCheck(check: TtsCheckName, setup: TtsConformanceSetup, options: TtsConformanceOptions = {}): Promise<void> {
  const harness = await setup();
  try {
    await TTS_CONFORMANCE_CHECKS[check](harness, options);
  } finally {
    await harness.cleanup?.();
  }
}

export function describeTtsConformance(name: string, setup: TtsConformanceSetup, options: TtsConformanceOptions = {}): void {
  describe(`TTS conformance: ${name}`, () => {
    for (const check of Object.keys(TTS_CONFORMANCE_CHECKS) as TtsCheckName[]) {
      if (options.skip?.includes(check) === true) continue;
      test(TITLES[check], async () => {
        await runTtsConformanceCheck(check, setup, options);
      });
    }
  });
}
