/**
 * What the STS conformance checks share (sts.ts, sts-resilience.ts): the harness and options types, caller audio, and
 * the recorder that consumes a session's events and lets a check wait on them. Not a public entry point: the public
 * names are re-exported by sts.ts.
 */
import { createResampler, type SampleRate, type StsAdapter, type StsCallContext, type StsEvent, type StsSession, type ToolSpec } from '@stsgate/core';
import { pino } from 'pino';
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
  /** See StsConformanceTool; needed by `toolRoundTrip` and `toolTimeout`. Only those checks offer it to the provider. */
  readonly tool?: StsConformanceTool;
  /**
   * Drops the provider connection(s) of every session open now, as a network failure does (no close frame, e.g. an
   * emulator's socket destroyed); resolves once they are down. Needed by `reconnect`: an adapter whose test gives it
   * says it survives a drop.
   */
  dropConnection?(): Promise<void>;
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
  /**
   * The host's tool timeout in `toolTimeout`: how long the suite, as the host, leaves a tool call unanswered before it
   * answers with the timeout error its tool runner gives (default 3000 ms; the gateway's TOOL_TIMEOUT_MS defaults to
   * 10 000 ms: pass that to prove the provider holds a tool call that long).
   */
  readonly toolTimeoutMs?: number;
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
  | 'toolRoundTrip'
  | 'reconnect'
  | 'toolTimeout';

export type StsCheckResult = { readonly status: 'passed' } | { readonly status: 'skipped'; readonly reason: string };

export type StsCheck = (harness: StsConformanceHarness, options: StsConformanceOptions) => Promise<StsCheckResult>;

// ---- helpers --------------------------------------------------------------------------------------------------------

export const PASSED: StsCheckResult = { status: 'passed' };
export const skipped = (reason: string): StsCheckResult => ({ status: 'skipped', reason });
/** How long checks other than earlyAudio wait after connect() before the caller speaks. */
export const SETTLE_MS = 250;
/** `<end>`, `<fin>`, `</s>`, `<|endoftext|>`... */
export const CONTROL = /<\/?\|?[a-z_]+\|?>/i;

export const sleep = (ms: number): Promise<void> => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${String(timeoutMs)} ms waiting for ${what}`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export function callFor(harness: StsConformanceHarness, index: number, overrides: { signal?: AbortSignal; tools?: readonly ToolSpec[] } = {}): StsCallContext {
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

export function callerTurn(harness: StsConformanceHarness): Int16Array {
  return harness.callerTurn?.() ?? concatPcm(readWavAs8k(fixturePath('question.wav')), silence(1500));
}

/** 8 kHz audio converted to the session's input rate. */
export function toSessionRate(samples8k: Int16Array, rate: SampleRate): Int16Array {
  if (rate === 8000) return samples8k;
  const resampler = createResampler(8000, rate);
  return concatPcm(resampler.process(samples8k), resampler.flush());
}

export function frames(session: StsSession, samples8k: Int16Array): Int16Array[] {
  const audio = toSessionRate(samples8k, session.inputSampleRate);
  const frame = (session.inputSampleRate / 1000) * 20;
  const out: Int16Array[] = [];
  for (let i = 0; i < audio.length; i += frame) out.push(audio.slice(i, i + frame));
  return out;
}

/** Sends 20 ms frames, yielding to the event loop between them (or in real time). */
export async function sendPaced(session: StsSession, samples8k: Int16Array, options: StsConformanceOptions): Promise<void> {
  const started = Date.now();
  let index = 0;
  for (const frame of frames(session, samples8k)) {
    session.sendAudio(frame);
    index++;
    if (options.realTime === true) await sleep(Math.max(0, started + index * 20 - Date.now()));
    else await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

export function sendAll(session: StsSession, samples8k: Int16Array): void {
  for (const frame of frames(session, samples8k)) session.sendAudio(frame);
}

export interface Reply {
  readonly responseId: string;
  readonly samples: number;
  readonly peak: number;
}

/** The first response whose first audio is at index >= `from` and whose response_done has arrived. */
export function replyAfter(events: readonly StsEvent[], from: number): Reply | undefined {
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

export function summarise(event: StsEvent): string {
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
export class StsRecorder {
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

  /** The first `tool_call` for `name` from event `from` on. */
  waitForToolCall(from: number, name: string, timeoutMs: number): Promise<Extract<StsEvent, { type: 'tool_call' }>> {
    return this.waitFor(
      (events) => events.slice(from).find((event): event is Extract<StsEvent, { type: 'tool_call' }> => event.type === 'tool_call' && event.name === name),
      timeoutMs,
      `a tool_call for ${name}`,
    );
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

  /**
   * Waits at least `minMs`, then until no event arrived for `quietMs` (at most `timeoutMs` in all); rejects at once on
   * an `error` event or the end of the events, naming `when` (e.g. "after the provider connection dropped").
   */
  async staysUp(when: string, minMs: number, quietMs: number, timeoutMs: number): Promise<void> {
    const started = Date.now();
    for (;;) {
      const error = this.events.find((event) => event.type === 'error');
      if (error !== undefined) throw new Error(`an error event arrived ${when}: ${summarise(error)}; got ${this.describe()}`);
      if (this.failure !== undefined) throw new Error(`event iteration threw ${when}: ${String(this.failure)}`);
      if (this.ended) throw new Error(`the session ended ${when}; got ${this.describe()}`);
      const now = Date.now();
      const idleMs = now - Math.max(this.lastEventAt, started);
      if (now - started >= minMs && idleMs >= quietMs) return;
      if (now - started > timeoutMs) throw new Error(`timed out after ${String(timeoutMs)} ms waiting for the session to be quiet ${when}; got ${this.describe()}`);
      await sleep(Math.min(20, Math.max(1, minMs - (now - started), quietMs - idleMs)));
    }
  }

  /** Calls `listener` with every event from index `from` on, as it arrives; returns what stops it. */
  follow(from: number, listener: (event: StsEvent) => void): () => void {
    let next = from;
    const run = (): void => {
      while (next < this.events.length) listener(this.events[next++] as StsEvent);
    };
    this.#listeners.add(run);
    run();
    return () => this.#listeners.delete(run);
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
export async function withSession(
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

/** The harness tool as the ToolSpec offered in call.tools. */
export function toolSpec(tool: StsConformanceTool): ToolSpec {
  return {
    name: tool.name,
    description: tool.description ?? 'Conformance test tool: call it to look up what the caller asks about.',
    parameters: tool.parameters ?? { type: 'object', properties: {} },
  };
}

export function timeoutOf(options: StsConformanceOptions): number {
  return options.timeoutMs ?? 10_000;
}

export function quietOf(options: StsConformanceOptions): number {
  return options.quietMs ?? 500;
}

export function attempt(what: string, run: () => void): void {
  try {
    run();
  } catch (error) {
    throw new Error(`${what} threw: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}
