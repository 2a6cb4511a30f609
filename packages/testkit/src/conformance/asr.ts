/**
 * ASR adapter conformance suite: the behaviour every `AsrAdapter` owes the host, checked against whatever server the
 * setup wires (a local emulator in CI).
 *
 *   describeAsrConformance('soniox', async () => {
 *     const emulator = await startSonioxSttEmulator({ apiKey: 'k' });
 *     return { adapter: createSonioxAsr({ apiKey: 'k', url: emulator.url }), cleanup: () => emulator.close() };
 *   });
 *
 * API (stable; append-only):
 *   describeAsrConformance(name, setup, options?)   registers one vitest `describe` with a test per check
 *   runAsrConformanceCheck(check, setup, options?)  runs one check (setup, check, cleanup); rejects when it fails
 *   ASR_CONFORMANCE_CHECKS                           the checks by name (each `(harness, options) => Promise<void>`)
 *   wordErrorRate(reference, hypothesis)             case- and punctuation-insensitive WER
 *
 * Checks: `fixtureTranscript` (a fixture streamed at 8 kHz in 20 ms frames, paced by the event loop, gives exactly one
 * end_of_utterance (or, without `capabilities.endpointing`, final) text within `maxWordErrorRate` of the fixture
 * text), `noControlTokens` (no `<end>`/`<fin>`/`<...>` in any partial/final/end_of_utterance text), `utteranceGrouping`
 * (two utterances separated by 1.5 s of silence give exactly two end_of_utterance events, one per utterance; with
 * `endpointing` only, else the finals must hold both texts), `finalize` (with `capabilities.finalize`: finalize()
 * without trailing silence makes the pending text final before endInput; otherwise finalize() must not throw),
 * `endInputEndsEvents`, `closeIdempotent` (close() twice, concurrently and again, ends the events),
 * `concurrentIsolation` (two streams fed at the same time get their own text), `earlyAudio` (audio pushed
 * synchronously right after open() resolves, before the provider socket may be open, is not lost).
 * Any `error` event fails a check.
 */
import { createResampler, type AsrAdapter, type AsrEvent, type AsrStream, type CallContext, type SampleRate } from '@stsgate/core';
import { pino } from 'pino';
import { describe, test } from 'vitest';
import { FIXTURE_TEXT, fixturePath, type FixtureName } from '../fixtures.js';
import { concatPcm, silence } from '../signals.js';
import { readWavAs8k } from '../wav.js';

export interface AsrConformanceHarness {
  readonly adapter: AsrAdapter;
  /** A fresh call context per stream (default: a silent logger, no metadata, a signal never aborted). */
  readonly call?: () => CallContext;
  cleanup?(): Promise<void>;
}

export type AsrConformanceSetup = () => Promise<AsrConformanceHarness>;

export interface AsrConformanceOptions {
  /** Highest word error rate accepted (default 0.25). */
  readonly maxWordErrorRate?: number;
  /** Safety net for every wait (default 10000 ms). */
  readonly timeoutMs?: number;
  /** Checks to leave out (e.g. a provider without endpointing has no grouping to check). */
  readonly skip?: readonly AsrCheckName[];
}

export type AsrCheckName =
  | 'fixtureTranscript'
  | 'noControlTokens'
  | 'utteranceGrouping'
  | 'finalize'
  | 'endInputEndsEvents'
  | 'closeIdempotent'
  | 'concurrentIsolation'
  | 'earlyAudio';

export type AsrCheck = (harness: AsrConformanceHarness, options: AsrConformanceOptions) => Promise<void>;

// ---- helpers --------------------------------------------------------------------------------------------------------

function normaliseWords(text: string): string[] {
  return text
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s']/gu, ' ')
    .split(/\s+/)
    .filter((word) => word.length > 0);
}

/** Word-level Levenshtein distance over the reference length, ignoring case and punctuation. */
export function wordErrorRate(reference: string, hypothesis: string): number {
  const ref = normaliseWords(reference);
  const hyp = normaliseWords(hypothesis);
  if (ref.length === 0) return hyp.length === 0 ? 0 : 1;
  let previous = Array.from({ length: hyp.length + 1 }, (_, j) => j);
  for (let i = 1; i <= ref.length; i++) {
    const current = [i];
    for (let j = 1; j <= hyp.length; j++) {
      const substitution = (previous[j - 1] as number) + (ref[i - 1] === hyp[j - 1] ? 0 : 1);
      current.push(Math.min(substitution, (previous[j] as number) + 1, (current[j - 1] as number) + 1));
    }
    previous = current;
  }
  return (previous[hyp.length] as number) / ref.length;
}

function defaultCall(index: number): CallContext {
  return { callId: `conformance-${String(index)}`, metadata: {}, signal: new AbortController().signal, logger: pino({ level: 'silent' }) };
}

/** Consumes a stream's events in the background and lets a check wait on them. */
class EventRecorder {
  readonly events: AsrEvent[] = [];
  ended = false;
  failure: unknown;
  readonly #listeners = new Set<() => void>();

  constructor(stream: AsrStream) {
    void (async () => {
      try {
        for await (const event of stream.events) {
          this.events.push(event);
          this.#notify();
        }
      } catch (error) {
        this.failure = error;
      }
      this.ended = true;
      this.#notify();
    })();
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) listener();
  }

  describe(): string {
    return JSON.stringify(this.events.map((event) => (event.type === 'error' ? { type: 'error', message: event.error.message } : event)));
  }

  waitFor(predicate: (events: readonly AsrEvent[]) => boolean, timeoutMs: number, what: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const check = (): boolean => {
        if (predicate(this.events)) {
          finish();
          resolve();
          return true;
        }
        if (this.ended) {
          finish();
          reject(new Error(`events ended before ${what}; got ${this.describe()}${this.failure === undefined ? '' : `; iteration threw ${String(this.failure)}`}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`timed out after ${String(timeoutMs)} ms waiting for ${what}; got ${this.describe()}`));
      }, timeoutMs);
      const finish = (): void => {
        clearTimeout(timer);
        this.#listeners.delete(check);
      };
      if (!check()) this.#listeners.add(check);
    });
  }

  untilEnded(timeoutMs: number, what = 'the end of the events'): Promise<void> {
    return this.waitFor(() => this.ended, timeoutMs, what).catch((error: unknown) => {
      if (this.ended) return;
      throw error;
    });
  }

  assertNoErrors(): void {
    const error = this.events.find((event) => event.type === 'error');
    if (error !== undefined) throw new Error(`unexpected error event: ${error.error.message}`);
    if (this.failure !== undefined) throw new Error(`event iteration threw: ${String(this.failure)}`);
  }

  texts(type: 'final' | 'end_of_utterance'): string[] {
    return this.events.flatMap((event) => (event.type === type ? [event.text] : []));
  }
}

function fixture(name: FixtureName): Int16Array {
  return readWavAs8k(fixturePath(name));
}

/** 8 kHz audio converted to the stream's input rate. */
function toStreamRate(samples: Int16Array, rate: SampleRate): Int16Array {
  if (rate === 8000) return samples;
  const resampler = createResampler(8000, rate);
  return concatPcm(resampler.process(samples), resampler.flush());
}

async function pushPaced(stream: AsrStream, samples8k: Int16Array): Promise<void> {
  const audio = toStreamRate(samples8k, stream.inputSampleRate);
  const frame = (stream.inputSampleRate / 1000) * 20;
  for (let i = 0; i < audio.length; i += frame) {
    stream.pushAudio(audio.slice(i, i + frame));
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

function pushAll(stream: AsrStream, samples8k: Int16Array): void {
  const audio = toStreamRate(samples8k, stream.inputSampleRate);
  const frame = (stream.inputSampleRate / 1000) * 20;
  for (let i = 0; i < audio.length; i += frame) stream.pushAudio(audio.slice(i, i + frame));
}

function assertWer(reference: string, hypothesis: string, options: AsrConformanceOptions, what: string): void {
  const max = options.maxWordErrorRate ?? 0.25;
  const wer = wordErrorRate(reference, hypothesis);
  if (!(wer <= max)) {
    throw new Error(`${what}: word error rate ${wer.toFixed(2)} > ${String(max)} (expected "${reference}", got "${hypothesis}")`);
  }
}

const CONTROL = /<\/?[a-z_]+>/i;

function assertNoControlTokens(recorder: EventRecorder): void {
  for (const event of recorder.events) {
    if ((event.type === 'partial' || event.type === 'final' || event.type === 'end_of_utterance') && CONTROL.test(event.text)) {
      throw new Error(`control token leaked into ${event.type} text: "${event.text}"`);
    }
  }
}

/** Opens a stream, runs `body`, and always closes it. */
async function withStream(harness: AsrConformanceHarness, index: number, body: (stream: AsrStream, recorder: EventRecorder) => Promise<void>): Promise<void> {
  const stream = await harness.adapter.open(harness.call?.() ?? defaultCall(index));
  const recorder = new EventRecorder(stream);
  try {
    await body(stream, recorder);
  } finally {
    await stream.close();
  }
}

/** Text of the whole stream: end_of_utterance texts with endpointing, else the finals. */
function streamText(harness: AsrConformanceHarness, recorder: EventRecorder): string {
  const texts = recorder.texts(harness.adapter.capabilities.endpointing ? 'end_of_utterance' : 'final');
  return texts.join(' ');
}

// ---- checks ---------------------------------------------------------------------------------------------------------

const fixtureTranscript: AsrCheck = async (harness, options) => {
  const timeoutMs = options.timeoutMs ?? 10_000;
  await withStream(harness, 0, async (stream, recorder) => {
    await pushPaced(stream, concatPcm(fixture('greeting.wav'), silence(1500)));
    stream.endInput();
    await recorder.untilEnded(timeoutMs);
    recorder.assertNoErrors();
    const utterances = recorder.texts('end_of_utterance');
    if (harness.adapter.capabilities.endpointing && utterances.length !== 1) {
      throw new Error(`expected exactly 1 end_of_utterance for one spoken sentence, got ${String(utterances.length)}: ${JSON.stringify(utterances)}`);
    }
    assertWer(FIXTURE_TEXT['greeting.wav'], streamText(harness, recorder), options, 'greeting.wav');
  });
};

const noControlTokens: AsrCheck = async (harness, options) => {
  const timeoutMs = options.timeoutMs ?? 10_000;
  await withStream(harness, 0, async (stream, recorder) => {
    await pushPaced(stream, concatPcm(fixture('short.wav'), silence(1500), fixture('question.wav')));
    if (harness.adapter.capabilities.finalize) stream.finalize();
    await pushPaced(stream, silence(300));
    stream.endInput();
    await recorder.untilEnded(timeoutMs);
    recorder.assertNoErrors();
    if (recorder.texts('final').length === 0 && recorder.texts('end_of_utterance').length === 0) {
      throw new Error(`no text at all; got ${recorder.describe()}`);
    }
    assertNoControlTokens(recorder);
  });
};

const utteranceGrouping: AsrCheck = async (harness, options) => {
  const timeoutMs = options.timeoutMs ?? 10_000;
  await withStream(harness, 0, async (stream, recorder) => {
    await pushPaced(stream, concatPcm(fixture('short.wav'), silence(1500), fixture('question.wav'), silence(1500)));
    stream.endInput();
    await recorder.untilEnded(timeoutMs);
    recorder.assertNoErrors();
    assertNoControlTokens(recorder);
    if (!harness.adapter.capabilities.endpointing) {
      assertWer(`${FIXTURE_TEXT['short.wav']} ${FIXTURE_TEXT['question.wav']}`, recorder.texts('final').join(' '), options, 'finals');
      return;
    }
    const utterances = recorder.texts('end_of_utterance');
    if (utterances.length !== 2) throw new Error(`expected 2 end_of_utterance events, got ${String(utterances.length)}: ${JSON.stringify(utterances)}`);
    assertWer(FIXTURE_TEXT['short.wav'], utterances[0] as string, options, 'first utterance');
    assertWer(FIXTURE_TEXT['question.wav'], utterances[1] as string, options, 'second utterance');
  });
};

const finalize: AsrCheck = async (harness, options) => {
  const timeoutMs = options.timeoutMs ?? 10_000;
  await withStream(harness, 0, async (stream, recorder) => {
    // No trailing silence: without finalize nothing would end the utterance.
    await pushPaced(stream, fixture('question.wav'));
    if (!harness.adapter.capabilities.finalize) {
      stream.finalize();
      stream.endInput();
      await recorder.untilEnded(timeoutMs);
      recorder.assertNoErrors();
      return;
    }
    const before = recorder.events.length;
    stream.finalize();
    await recorder.waitFor(
      (events) =>
        wordErrorRate(
          FIXTURE_TEXT['question.wav'],
          events
            .slice(before)
            .flatMap((event) => (event.type === (harness.adapter.capabilities.endpointing ? 'end_of_utterance' : 'final') ? [event.text] : []))
            .join(' '),
        ) <= (options.maxWordErrorRate ?? 0.25),
      timeoutMs,
      'the finalized text of question.wav (before endInput)',
    );
    recorder.assertNoErrors();
    assertNoControlTokens(recorder);
    stream.endInput();
    await recorder.untilEnded(timeoutMs);
  });
};

const endInputEndsEvents: AsrCheck = async (harness, options) => {
  const timeoutMs = options.timeoutMs ?? 10_000;
  await withStream(harness, 0, async (stream, recorder) => {
    await pushPaced(stream, concatPcm(fixture('short.wav'), silence(200)));
    stream.endInput();
    await recorder.untilEnded(timeoutMs, 'the events to end after endInput()');
    recorder.assertNoErrors();
  });
};

const closeIdempotent: AsrCheck = async (harness, options) => {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const stream = await harness.adapter.open(harness.call?.() ?? defaultCall(0));
  const recorder = new EventRecorder(stream);
  await pushPaced(stream, fixture('short.wav'));
  await Promise.all([stream.close(), stream.close()]);
  await stream.close();
  await recorder.untilEnded(timeoutMs, 'the events to end after close()');
  // Calls after close must not throw either.
  stream.pushAudio(new Int16Array(160));
  stream.finalize();
  stream.endInput();
};

const concurrentIsolation: AsrCheck = async (harness, options) => {
  const timeoutMs = options.timeoutMs ?? 10_000;
  await withStream(harness, 0, async (first, firstRecorder) => {
    await withStream(harness, 1, async (second, secondRecorder) => {
      await Promise.all([
        pushPaced(first, concatPcm(fixture('greeting.wav'), silence(1500))),
        pushPaced(second, concatPcm(fixture('question.wav'), silence(1500))),
      ]);
      first.endInput();
      second.endInput();
      await Promise.all([firstRecorder.untilEnded(timeoutMs), secondRecorder.untilEnded(timeoutMs)]);
      firstRecorder.assertNoErrors();
      secondRecorder.assertNoErrors();
      assertWer(FIXTURE_TEXT['greeting.wav'], streamText(harness, firstRecorder), options, 'first stream');
      assertWer(FIXTURE_TEXT['question.wav'], streamText(harness, secondRecorder), options, 'second stream');
    });
  });
};

const earlyAudio: AsrCheck = async (harness, options) => {
  const timeoutMs = options.timeoutMs ?? 10_000;
  await withStream(harness, 0, async (stream, recorder) => {
    // Synchronously, before the adapter had any chance to see its provider socket open.
    pushAll(stream, concatPcm(fixture('greeting.wav'), silence(1500)));
    stream.endInput();
    await recorder.untilEnded(timeoutMs);
    recorder.assertNoErrors();
    assertWer(FIXTURE_TEXT['greeting.wav'], streamText(harness, recorder), options, 'audio pushed right after open()');
  });
};

export const ASR_CONFORMANCE_CHECKS: Readonly<Record<AsrCheckName, AsrCheck>> = {
  fixtureTranscript,
  noControlTokens,
  utteranceGrouping,
  finalize,
  endInputEndsEvents,
  closeIdempotent,
  concurrentIsolation,
  earlyAudio,
};

const TITLES: Readonly<Record<AsrCheckName, string>> = {
  fixtureTranscript: 'a speech fixture streamed at 8 kHz in 20 ms frames is transcribed',
  noControlTokens: 'no control tokens (<end>, <fin>) in any text',
  utteranceGrouping: 'finals are grouped per utterance (two utterances -> two end_of_utterance)',
  finalize: 'finalize() forces the pending text final',
  endInputEndsEvents: 'endInput() ends the event stream',
  closeIdempotent: 'close() is idempotent and ends the events',
  concurrentIsolation: 'two concurrent streams are isolated',
  earlyAudio: 'audio pushed before the provider socket is open is not lost',
};

export async function runAsrConformanceCheck(check: AsrCheckName, setup: AsrConformanceSetup, options: AsrConformanceOptions = {}): Promise<void> {
  const harness = await setup();
  try {
    await ASR_CONFORMANCE_CHECKS[check](harness, options);
  } finally {
    await harness.cleanup?.();
  }
}

export function describeAsrConformance(name: string, setup: AsrConformanceSetup, options: AsrConformanceOptions = {}): void {
  describe(`ASR conformance: ${name}`, () => {
    for (const check of Object.keys(ASR_CONFORMANCE_CHECKS) as AsrCheckName[]) {
      if (options.skip?.includes(check) === true) continue;
      test(TITLES[check], async () => {
        await runAsrConformanceCheck(check, setup, options);
      });
    }
  });
}
