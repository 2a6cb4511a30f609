/**
 * STS (speech-to-speech) adapter conformance suite: the behaviour every `StsAdapter` owes the host, checked against
 * whatever server the setup wires (a local emulator in CI).
 *
 *   describeStsConformance('openai', async () => {
 *     const emulator = await startOpenAiRealtimeEmulator({ apiKey: 'k', script: { onUserTurn: ... } });
 *     return {
 *       adapter: createOpenAiRealtime({ apiKey: 'k', url: emulator.url, greeting: false }),
 *       tool: { name: 'lookup_order' },   // the provider calls it on the first caller turn when it is offered
 *       cleanup: () => emulator.close(),
 *     };
 *   });
 *
 * API (stable; append-only):
 *   describeStsConformance(name, setup, options?)   registers one vitest `describe` with a test per check (a check
 *                                                   that does not apply is reported as skipped, with the reason)
 *   runStsConformanceCheck(check, setup, options?)  runs one check (setup, check, cleanup); resolves with
 *                                                   `{status: 'passed'}` or `{status: 'skipped', reason}`, rejects when
 *                                                   it fails
 *   STS_CONFORMANCE_CHECKS                           the checks by name (each `(harness, options) => Promise<StsCheckResult>`)
 *
 * The caller turn is `harness.callerTurn()` (8 kHz; default: the question.wav fixture + 1.5 s of silence), converted
 * to `session.inputSampleRate` with core's resampler and sent in 20 ms frames, paced by the event loop (or in real time
 * with `options.realTime`). The adapter must not speak first (turn a greeting off): any reply audio after a turn is
 * taken as the answer to it.
 *
 * Checks:
 * - `replyAudio`: input/outputSampleRate are among the declared capabilities; 250 ms after connect() the caller turn
 *   gets a reply: `audio` events of one responseId, then `response_done` for it; at least `minReplyMs` (default 200 ms)
 *   at outputSampleRate, not digital silence, and no audio for that id after its response_done (watched for
 *   `quietMs`, default 500 ms).
 * - `transcripts` (skipped when the adapter declares neither userTranscripts nor agentTranscripts): a final,
 *   non-empty transcript of each declared role arrives; no control tokens (`<end>`, `<fin>`, `</s>`...) in any
 *   transcript.
 * - `earlyAudio`: the whole caller turn sent synchronously right after connect() resolves (before a provider socket
 *   may be open) is not lost: it gets a reply.
 * - `concurrentIsolation`: two sessions at once; the turn goes to A while B gets as much silence, and only A replies
 *   (B has no audio within `quietMs` after A's reply); then the other way round.
 * - `closeIdempotent`: close() twice concurrently while a reply is playing and once more all resolve, the events
 *   iterator ends, and sendAudio/sendDtmf/truncate/submitToolResult after close do not throw.
 * - `abortBeforeConnect`: connect() with an already-aborted call.signal rejects with a ProviderError of category
 *   `closed`.
 * - `badInputSafe`: sendAudio(empty), sendDtmf('x') and sendDtmf('5') (with capabilities.dtmf), truncate() of an
 *   unknown response id (with capabilities.truncation), submitToolResult() of an unknown call id: none throws, and once
 *   the session is quiet it still replies to a caller turn.
 * - `bargeInTruncate` (skipped without capabilities.truncation): while a reply plays, the host calls truncate(id,
 *   heardMs) with the audio received so far, as the gateway does on barge-in: the reply ends (`response_done` for it,
 *   if it had not already), no audio for it follows, and the session still replies to the next caller turn.
 * - `toolRoundTrip` (skipped without capabilities.toolCalls or without `harness.tool`): with the tool offered in
 *   call.tools, the caller turn gives a `tool_call` for it with a non-empty callId and JSON-object argumentsJson; after
 *   submitToolResult the session replies (audio then response_done).
 * Every check also fails on any `error` event, on an event iteration that throws, on an `audio` event whose samples
 * are not a non-empty Int16Array, and on audio for a responseId after its response_done.
 */
import { ProviderError, createResampler, type SampleRate, type StsAdapter, type StsCallContext, type StsEvent, type StsSession, type ToolSpec } from '@stsgate/core';
import { pino } from 'pino';
import { describe, test } from 'vitest';
import { fixturePath } from '../fixtures.js';
import { concatPcm, silence } from '../signals.js';
import { readWavAs8k } from '../wav.js';

/** A tool the provider under test calls on the first caller turn when it is offered. */
export interface StsConformanceTool {
  readonly name: string;
  /** Default: a generic description. */
  readonly description?: string;
  /** JSON Schema of the arguments (default: an object with any properties). */
  readonly parameters?: Readonly<Record<string, unknown>>;
  /** What the suite answers with submitToolResult (default `{"ok":true}`). */
  readonly output?: string;
}

export interface StsConformanceHarness {
  readonly adapter: StsAdapter;
  /**
   * A fresh call context per session (default: a silent logger, no metadata, a signal never aborted, no tools).
   * Return a plain object: the suite spreads it to replace `signal` (abortBeforeConnect) and to add the harness tool
   * to `tools` (toolRoundTrip).
   */
  readonly call?: () => StsCallContext;
  /** 8 kHz audio that makes the provider answer (default: question.wav + 1.5 s of silence). */
  readonly callerTurn?: () => Int16Array;
  /** See StsConformanceTool; needed by `toolRoundTrip`. Only that check offers it to the provider. */
  readonly tool?: StsConformanceTool;
  cleanup?(): Promise<void>;
}

export type StsConformanceSetup = () => Promise<StsConformanceHarness>;

export interface StsConformanceOptions {
  /** Safety net for every wait (default 10000 ms). */
  readonly timeoutMs?: number;
  /** How long a session must stay without audio to count as silent, and to be quiet before a new turn (default 500 ms). */
  readonly quietMs?: number;
  /** Shortest reply accepted (default 200 ms). */
  readonly minReplyMs?: number;
  /** Send caller audio in real time (one 20 ms frame every 20 ms) instead of as fast as the event loop allows. */
  readonly realTime?: boolean;
  readonly skip?: readonly StsCheckName[];
}

export type StsCheckName =
  | 'replyAudio'
  | 'transcripts'
  | 'earlyAudio'
  | 'concurrentIsolation'
  | 'closeIdempotent'
  | 'abortBeforeConnect'
  | 'badInputSafe'
  | 'bargeInTruncate'
  | 'toolRoundTrip';

export type StsCheckResult = { readonly status: 'passed' } | { readonly status: 'skipped'; readonly reason: string };

export type StsCheck = (harness: StsConformanceHarness, options: StsConformanceOptions) => Promise<StsCheckResult>;

// ---- helpers --------------------------------------------------------------------------------------------------------

const PASSED: StsCheckResult = { status: 'passed' };
const skipped = (reason: string): StsCheckResult => ({ status: 'skipped', reason });
/** How long checks other than earlyAudio wait after connect() before the caller speaks. */
const SETTLE_MS = 250;
/** `<end>`, `<fin>`, `</s>`, `<|endoftext|>`... */
const CONTROL = /<\/?\|?[a-z_]+\|?>/i;

const sleep = (ms: number): Promise<void> => new Promise<void>((resolve) => setTimeout(resolve, ms));

function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${String(timeoutMs)} ms waiting for ${what}`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function callFor(harness: StsConformanceHarness, index: number, overrides: { signal?: AbortSignal; tools?: readonly ToolSpec[] } = {}): StsCallContext {
  const base: StsCallContext = harness.call?.() ?? {
    callId: `sts-conformance-${String(index)}`,
    metadata: {},
    signal: new AbortController().signal,
    logger: pino({ level: 'silent' }),
    tools: [],
  };
  return {
    ...base,
    ...(overrides.signal === undefined ? {} : { signal: overrides.signal }),
    ...(overrides.tools === undefined ? {} : { tools: [...base.tools, ...overrides.tools] }),
  };
}

function callerTurn(harness: StsConformanceHarness): Int16Array {
  return harness.callerTurn?.() ?? concatPcm(readWavAs8k(fixturePath('question.wav')), silence(1500));
}

/** 8 kHz audio converted to the session's input rate. */
function toSessionRate(samples8k: Int16Array, rate: SampleRate): Int16Array {
  if (rate === 8000) return samples8k;
  const resampler = createResampler(8000, rate);
  return concatPcm(resampler.process(samples8k), resampler.flush());
}

function frames(session: StsSession, samples8k: Int16Array): Int16Array[] {
  const audio = toSessionRate(samples8k, session.inputSampleRate);
  const frame = (session.inputSampleRate / 1000) * 20;
  const out: Int16Array[] = [];
  for (let i = 0; i < audio.length; i += frame) out.push(audio.slice(i, i + frame));
  return out;
}

/** Sends 20 ms frames, yielding to the event loop between them (or in real time). */
async function sendPaced(session: StsSession, samples8k: Int16Array, options: StsConformanceOptions): Promise<void> {
  const started = Date.now();
  let index = 0;
  for (const frame of frames(session, samples8k)) {
    session.sendAudio(frame);
    index++;
    if (options.realTime === true) await sleep(Math.max(0, started + index * 20 - Date.now()));
    else await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

function sendAll(session: StsSession, samples8k: Int16Array): void {
  for (const frame of frames(session, samples8k)) session.sendAudio(frame);
}

interface Reply {
  readonly responseId: string;
  readonly samples: number;
  readonly peak: number;
}

/** The first response whose first audio is at index >= `from` and whose response_done has arrived. */
function replyAfter(events: readonly StsEvent[], from: number): Reply | undefined {
  const firstAudio = new Map<string, number>();
  let responseId: string | undefined;
  for (let i = 0; i < events.length && responseId === undefined; i++) {
    const event = events[i] as StsEvent;
    if (event.type === 'audio' && !firstAudio.has(event.responseId)) firstAudio.set(event.responseId, i);
    else if (event.type === 'response_done' && (firstAudio.get(event.responseId) ?? -1) >= from) responseId = event.responseId;
  }
  if (responseId === undefined) return undefined;
  let samples = 0;
  let peak = 0;
  for (const event of events) {
    if (event.type !== 'audio' || event.responseId !== responseId) continue;
    samples += event.samples.length;
    for (const sample of event.samples) peak = Math.max(peak, Math.abs(sample));
  }
  return { responseId, samples, peak };
}

function summarise(event: StsEvent): string {
  switch (event.type) {
    case 'audio':
      return `audio(${event.responseId}, ${String(event.samples.length)})`;
    case 'response_done':
      return `response_done(${event.responseId})`;
    case 'transcript':
      return `transcript(${event.role}${event.final ? ', final' : ''}: ${JSON.stringify(event.text)})`;
    case 'tool_call':
      return `tool_call(${event.name})`;
    case 'error':
      return `error(${event.error.category}: ${event.error.message})`;
    case 'interrupted':
      return `interrupted(${event.responseId ?? ''})`;
    default:
      return event.type;
  }
}

/** Consumes a session's events in the background and lets a check wait on them. */
class StsRecorder {
  readonly events: StsEvent[] = [];
  ended = false;
  failure: unknown;
  lastEventAt = Date.now();
  readonly #listeners = new Set<() => void>();

  constructor(session: StsSession) {
    void (async () => {
      try {
        for await (const event of session.events) {
          this.events.push(event);
          this.lastEventAt = Date.now();
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

  /** The events, consecutive audio of one response collapsed. */
  describe(): string {
    const parts: string[] = [];
    let run: { id: string; count: number } | undefined;
    for (const event of this.events) {
      if (event.type === 'audio') {
        if (run?.id === event.responseId) {
          run.count++;
          continue;
        }
        run = { id: event.responseId, count: 1 };
        parts.push('');
        continue;
      }
      if (run !== undefined) parts[parts.length - 1] = `audio(${run.id}) x${String(run.count)}`;
      run = undefined;
      parts.push(summarise(event));
    }
    if (run !== undefined) parts[parts.length - 1] = `audio(${run.id}) x${String(run.count)}`;
    return `[${parts.join(', ')}]${this.failure === undefined ? '' : `; iteration threw ${String(this.failure)}`}`;
  }

  /** Resolves with the first truthy probe result; rejects at once on an `error` event or the end of the events. */
  waitFor<T>(probe: (events: readonly StsEvent[]) => T | undefined, timeoutMs: number, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const check = (): boolean => {
        const error = this.events.find((event) => event.type === 'error');
        if (error !== undefined) {
          finish();
          reject(new Error(`an error event arrived while waiting for ${what}: ${summarise(error)}; got ${this.describe()}`));
          return true;
        }
        const value = probe(this.events);
        if (value !== undefined) {
          finish();
          resolve(value);
          return true;
        }
        if (this.ended) {
          finish();
          reject(new Error(`events ended before ${what}; got ${this.describe()}`));
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

  waitForReply(from: number, timeoutMs: number, what: string): Promise<Reply> {
    return this.waitFor((events) => replyAfter(events, from), timeoutMs, what);
  }

  untilEnded(timeoutMs: number, what: string): Promise<void> {
    if (this.ended) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (!this.ended) return;
        clearTimeout(timer);
        this.#listeners.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#listeners.delete(check);
        reject(new Error(`timed out after ${String(timeoutMs)} ms waiting for ${what}; got ${this.describe()}`));
      }, timeoutMs);
      this.#listeners.add(check);
    });
  }

  /** Waits until every response that has audio is done and no event arrived for `quietMs`. */
  async untilQuiet(quietMs: number, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.assertClean();
      const open = this.openResponses();
      const idleMs = Date.now() - this.lastEventAt;
      if (open.length === 0 && idleMs >= quietMs) return;
      if (Date.now() > deadline) {
        throw new Error(`timed out after ${String(timeoutMs)} ms waiting for ${what} (open responses: ${JSON.stringify(open)}); got ${this.describe()}`);
      }
      await sleep(Math.max(10, Math.min(50, quietMs - idleMs)));
    }
  }

  openResponses(): string[] {
    const open = new Set<string>();
    for (const event of this.events) {
      if (event.type === 'audio') open.add(event.responseId);
      else if (event.type === 'response_done') open.delete(event.responseId);
    }
    return [...open];
  }

  audioSince(from: number): number {
    return this.events.slice(from).filter((event) => event.type === 'audio').length;
  }

  /** No error event, no iteration failure, well-formed audio, no audio for a response after its response_done. */
  assertClean(): void {
    if (this.failure !== undefined) throw new Error(`event iteration threw: ${String(this.failure)}`);
    const done = new Set<string>();
    for (const event of this.events) {
      switch (event.type) {
        case 'error':
          throw new Error(`unexpected error event: ${summarise(event)}; got ${this.describe()}`);
        case 'audio':
          if (!(event.samples instanceof Int16Array)) throw new Error(`audio event samples must be an Int16Array (response ${event.responseId})`);
          if (event.samples.length === 0) throw new Error(`empty audio event (response ${event.responseId})`);
          if (typeof event.responseId !== 'string' || event.responseId === '') throw new Error('audio event without a responseId');
          if (done.has(event.responseId)) throw new Error(`audio for response ${event.responseId} after its response_done; got ${this.describe()}`);
          break;
        case 'response_done':
          done.add(event.responseId);
          break;
        default:
          break;
      }
    }
  }
}

/** Opens a session, runs `body`, and always closes it. */
async function withSession(
  harness: StsConformanceHarness,
  index: number,
  body: (session: StsSession, recorder: StsRecorder) => Promise<void>,
  tools?: readonly ToolSpec[],
): Promise<void> {
  const session = await harness.adapter.connect(callFor(harness, index, tools === undefined ? {} : { tools }));
  const recorder = new StsRecorder(session);
  try {
    await body(session, recorder);
    recorder.assertClean();
  } finally {
    await session.close();
  }
}

function timeoutOf(options: StsConformanceOptions): number {
  return options.timeoutMs ?? 10_000;
}

function quietOf(options: StsConformanceOptions): number {
  return options.quietMs ?? 500;
}

function attempt(what: string, run: () => void): void {
  try {
    run();
  } catch (error) {
    throw new Error(`${what} threw: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}

// ---- checks ---------------------------------------------------------------------------------------------------------

const replyAudio: StsCheck = async (harness, options) => {
  const capabilities = harness.adapter.capabilities;
  await withSession(harness, 0, async (session, recorder) => {
    if (!capabilities.inputSampleRates.includes(session.inputSampleRate)) {
      throw new Error(`inputSampleRate ${String(session.inputSampleRate)} is not among the declared ${JSON.stringify(capabilities.inputSampleRates)}`);
    }
    if (!capabilities.outputSampleRates.includes(session.outputSampleRate)) {
      throw new Error(`outputSampleRate ${String(session.outputSampleRate)} is not among the declared ${JSON.stringify(capabilities.outputSampleRates)}`);
    }
    await sleep(SETTLE_MS);
    const from = recorder.events.length;
    await sendPaced(session, callerTurn(harness), options);
    const reply = await recorder.waitForReply(from, timeoutOf(options), 'a reply to the caller turn (audio, then response_done)');
    // Anything late for the same response would show up now.
    await sleep(quietOf(options));
    recorder.assertClean();
    const ms = (reply.samples * 1000) / session.outputSampleRate;
    const minMs = options.minReplyMs ?? 200;
    if (ms < minMs) throw new Error(`the reply has ${ms.toFixed(0)} ms of audio at ${String(session.outputSampleRate)} Hz, expected at least ${String(minMs)} ms`);
    if (reply.peak === 0) throw new Error('the reply is digital silence');
  });
  return PASSED;
};

const transcripts: StsCheck = async (harness, options) => {
  const capabilities = harness.adapter.capabilities;
  const roles = [...(capabilities.userTranscripts ? ['user' as const] : []), ...(capabilities.agentTranscripts ? ['agent' as const] : [])];
  if (roles.length === 0) return skipped('the adapter declares neither userTranscripts nor agentTranscripts');
  await withSession(harness, 0, async (session, recorder) => {
    await sleep(SETTLE_MS);
    const from = recorder.events.length;
    await sendPaced(session, callerTurn(harness), options);
    const hasFinal = (events: readonly StsEvent[], role: 'user' | 'agent'): boolean =>
      events.some((event) => event.type === 'transcript' && event.role === role && event.final && event.text.trim() !== '');
    await recorder.waitFor(
      (events) => (roles.every((role) => hasFinal(events, role)) && replyAfter(events, from) !== undefined ? true : undefined),
      timeoutOf(options),
      `a final non-empty transcript of each declared role (${roles.join(', ')}) and the reply`,
    );
    for (const event of recorder.events) {
      if (event.type === 'transcript' && CONTROL.test(event.text)) throw new Error(`control token leaked into a ${event.role} transcript: ${JSON.stringify(event.text)}`);
    }
  });
  return PASSED;
};

const earlyAudio: StsCheck = async (harness, options) => {
  await withSession(harness, 0, async (session, recorder) => {
    // Synchronously, before the adapter had any chance to see a provider socket open.
    sendAll(session, callerTurn(harness));
    await recorder.waitForReply(0, timeoutOf(options), 'a reply to the caller turn sent right after connect()');
  });
  return PASSED;
};

const concurrentIsolation: StsCheck = async (harness, options) => {
  const timeoutMs = timeoutOf(options);
  const turn = callerTurn(harness);
  const quiet = new Int16Array(turn.length);
  await withSession(harness, 0, async (a, recordA) => {
    await withSession(harness, 1, async (b, recordB) => {
      await sleep(SETTLE_MS);
      const phase = async (speaker: StsSession, speakerLog: StsRecorder, listener: StsSession, listenerLog: StsRecorder, names: [string, string]): Promise<void> => {
        const fromSpeaker = speakerLog.events.length;
        const fromListener = listenerLog.events.length;
        await Promise.all([sendPaced(speaker, turn, options), sendPaced(listener, quiet, options)]);
        await speakerLog.waitForReply(fromSpeaker, timeoutMs, `session ${names[0]}'s reply to its caller turn`);
        await sleep(quietOf(options));
        listenerLog.assertClean();
        const leaked = listenerLog.audioSince(fromListener);
        if (leaked > 0) {
          throw new Error(`session ${names[1]} emitted ${String(leaked)} audio events although only session ${names[0]} got caller speech; ${names[1]}: ${listenerLog.describe()}`);
        }
      };
      await phase(a, recordA, b, recordB, ['A', 'B']);
      await phase(b, recordB, a, recordA, ['B', 'A']);
    });
  });
  return PASSED;
};

const closeIdempotent: StsCheck = async (harness, options) => {
  const timeoutMs = timeoutOf(options);
  const capabilities = harness.adapter.capabilities;
  const session = await harness.adapter.connect(callFor(harness, 0));
  const recorder = new StsRecorder(session);
  let responseId = 'sts-conformance-response';
  try {
    await sleep(SETTLE_MS);
    await sendPaced(session, callerTurn(harness), options);
    // Close while the reply is playing: the usual hang-up.
    responseId = await recorder.waitFor(
      (events) => events.flatMap((event) => (event.type === 'audio' ? [event.responseId] : []))[0],
      timeoutMs,
      'the first reply audio',
    );
  } catch (error) {
    await session.close();
    throw error;
  }
  await withTimeout(Promise.all([session.close(), session.close()]), timeoutMs, 'two concurrent close() calls');
  await withTimeout(session.close(), timeoutMs, 'a third close()');
  await recorder.untilEnded(timeoutMs, 'the events to end after close()');
  recorder.assertClean();
  // Calls after close must not throw either.
  attempt('sendAudio after close', () => session.sendAudio(new Int16Array((session.inputSampleRate / 1000) * 20)));
  if (capabilities.dtmf) attempt('sendDtmf after close', () => session.sendDtmf('1'));
  if (capabilities.truncation) attempt('truncate after close', () => session.truncate(responseId, 100));
  attempt('submitToolResult after close', () => session.submitToolResult('sts-conformance-call', '{}'));
  return PASSED;
};

const abortBeforeConnect: StsCheck = async (harness, options) => {
  const controller = new AbortController();
  controller.abort();
  let session: StsSession | undefined;
  let caught: unknown;
  try {
    session = await withTimeout(harness.adapter.connect(callFor(harness, 0, { signal: controller.signal })), timeoutOf(options), 'connect() with an aborted signal');
  } catch (error) {
    caught = error;
  }
  if (session !== undefined) {
    await session.close();
    throw new Error('connect() resolved although call.signal was already aborted');
  }
  if (!(caught instanceof ProviderError)) throw new Error(`connect() with an aborted signal: expected a ProviderError, got ${String(caught)}`);
  if (caught.category !== 'closed') throw new Error(`connect() with an aborted signal: expected category closed, got ${caught.category} (${caught.message})`);
  return PASSED;
};

const badInputSafe: StsCheck = async (harness, options) => {
  const capabilities = harness.adapter.capabilities;
  await withSession(harness, 0, async (session, recorder) => {
    await sleep(SETTLE_MS);
    attempt('sendAudio(empty Int16Array)', () => session.sendAudio(new Int16Array(0)));
    if (capabilities.dtmf) {
      attempt("sendDtmf('x')", () => session.sendDtmf('x'));
      attempt("sendDtmf('5')", () => session.sendDtmf('5'));
    }
    if (capabilities.truncation) attempt('truncate(unknown response id)', () => session.truncate('sts-conformance-unknown-response', 500));
    attempt('submitToolResult(unknown call id)', () => session.submitToolResult('sts-conformance-unknown-call', '{"ok":true}'));
    // A reply to the digit (or to the stray tool result) may be playing: let it finish first.
    await recorder.untilQuiet(quietOf(options), timeoutOf(options), 'the session to be quiet after the bad input');
    const from = recorder.events.length;
    await sendPaced(session, callerTurn(harness), options);
    await recorder.waitForReply(from, timeoutOf(options), 'a reply to a caller turn after the bad input');
  });
  return PASSED;
};

const bargeInTruncate: StsCheck = async (harness, options) => {
  if (!harness.adapter.capabilities.truncation) return skipped('capabilities.truncation is false');
  const timeoutMs = timeoutOf(options);
  await withSession(harness, 0, async (session, recorder) => {
    await sleep(SETTLE_MS);
    const from = recorder.events.length;
    await sendPaced(session, callerTurn(harness), options);
    const first = await recorder.waitFor(
      (events) => events.slice(from).find((event): event is Extract<StsEvent, { type: 'audio' }> => event.type === 'audio'),
      timeoutMs,
      'the first audio of a reply to the caller turn',
    );
    const heardSamples = recorder.events.reduce((sum, event) => sum + (event.type === 'audio' && event.responseId === first.responseId ? event.samples.length : 0), 0);
    const heardMs = Math.round((heardSamples * 1000) / session.outputSampleRate);
    attempt('truncate(the reply playing)', () => session.truncate(first.responseId, heardMs));
    await recorder.waitFor(
      (events) => (events.some((event) => event.type === 'response_done' && event.responseId === first.responseId) ? true : undefined),
      timeoutMs,
      `response_done for the truncated reply ${first.responseId}`,
    );
    // Audio for the truncated reply after its response_done would show up now (assertClean).
    await recorder.untilQuiet(quietOf(options), timeoutMs, 'the session to be quiet after the truncation');
    const next = recorder.events.length;
    await sendPaced(session, callerTurn(harness), options);
    await recorder.waitForReply(next, timeoutMs, 'a reply to the caller turn after the truncation');
  });
  return PASSED;
};

const toolRoundTrip: StsCheck = async (harness, options) => {
  if (!harness.adapter.capabilities.toolCalls) return skipped('capabilities.toolCalls is false');
  const tool = harness.tool;
  if (tool === undefined) return skipped('the harness names no tool (harness.tool) for the provider to call');
  const spec: ToolSpec = {
    name: tool.name,
    description: tool.description ?? 'Conformance test tool: call it to look up what the caller asks about.',
    parameters: tool.parameters ?? { type: 'object', properties: {} },
  };
  const timeoutMs = timeoutOf(options);
  await withSession(
    harness,
    0,
    async (session, recorder) => {
      await sleep(SETTLE_MS);
      const from = recorder.events.length;
      await sendPaced(session, callerTurn(harness), options);
      const call = await recorder.waitFor(
        (events) => events.slice(from).find((event): event is Extract<StsEvent, { type: 'tool_call' }> => event.type === 'tool_call' && event.name === tool.name),
        timeoutMs,
        `a tool_call for ${tool.name}`,
      );
      if (typeof call.callId !== 'string' || call.callId === '') throw new Error('the tool_call has no callId');
      let parsed: unknown;
      try {
        parsed = JSON.parse(call.argumentsJson);
      } catch (error) {
        throw new Error(`tool_call argumentsJson is not JSON: ${JSON.stringify(call.argumentsJson)}`, { cause: error });
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
        throw new Error(`tool_call argumentsJson must be a JSON object, got ${JSON.stringify(call.argumentsJson)}`);
      }
      const afterSubmit = recorder.events.length;
      attempt('submitToolResult', () => session.submitToolResult(call.callId, tool.output ?? '{"ok":true}'));
      await recorder.waitForReply(afterSubmit, timeoutMs, 'a reply after submitToolResult (audio, then response_done)');
    },
    [spec],
  );
  return PASSED;
};

export const STS_CONFORMANCE_CHECKS: Readonly<Record<StsCheckName, StsCheck>> = {
  replyAudio,
  transcripts,
  earlyAudio,
  concurrentIsolation,
  closeIdempotent,
  abortBeforeConnect,
  badInputSafe,
  bargeInTruncate,
  toolRoundTrip,
};

const TITLES: Readonly<Record<StsCheckName, string>> = {
  replyAudio: 'a caller turn gets reply audio, then response_done, at a declared sample rate',
  transcripts: 'final transcripts of each declared role, without control tokens',
  earlyAudio: 'audio sent right after connect() is not lost',
  concurrentIsolation: 'two concurrent sessions are isolated (only the one spoken to replies)',
  closeIdempotent: 'close() is idempotent, ends the events, and later calls do not throw',
  abortBeforeConnect: 'connect() with an aborted signal rejects with ProviderError closed',
  badInputSafe: 'bad input (empty audio, bad digit, unknown ids) is harmless',
  bargeInTruncate: 'truncate() of the reply playing ends it, and the next caller turn gets a reply',
  toolRoundTrip: 'tool_call -> submitToolResult -> the session replies',
};

export async function runStsConformanceCheck(check: StsCheckName, setup: StsConformanceSetup, options: StsConformanceOptions = {}): Promise<StsCheckResult> {
  const harness = await setup();
  try {
    return await STS_CONFORMANCE_CHECKS[check](harness, options);
  } finally {
    await harness.cleanup?.();
  }
}

export function describeStsConformance(name: string, setup: StsConformanceSetup, options: StsConformanceOptions = {}): void {
  describe(`STS conformance: ${name}`, () => {
    for (const check of Object.keys(STS_CONFORMANCE_CHECKS) as StsCheckName[]) {
      if (options.skip?.includes(check) === true) continue;
      test(TITLES[check], async (context) => {
        const result = await runStsConformanceCheck(check, setup, options);
        if (result.status === 'skipped') context.skip(result.reason);
      });
    }
  });
}
