import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import type { Logger } from 'pino';

/** How often the event loop's utilization is sampled. */
export const LOAD_SAMPLE_MS = 1000;
/** Samples averaged: the guard reacts to a saturated core within about this many seconds, not to one slow second (a GC). */
export const LOAD_WINDOW_SAMPLES = 3;
/**
 * Batching stops below this share of the utilization it started at. Batching itself lowers the utilization (fewer
 * messages); without the margin, the saving would end it and the cost come back, every few seconds.
 */
export const BATCHING_OFF_RATIO = 0.75;
/** Caller frames per provider message while batching: 40 ms, every other frame waits ~20 ms for the next. */
const BATCHED_CALLER_FRAMES = 2;

export interface LoadGuardOptions {
  /**
   * Refuse new calls and requests while the event loop's utilization (the share of time it was busy, 0-1) over the
   * window is above this, and new calls that would take it there. Undefined: only measure.
   */
  readonly maxUtilization: number | undefined;
  /**
   * Caller audio goes to the providers two frames at a time while the window's utilization is above this, until it is
   * below {@link BATCHING_OFF_RATIO} of it. Undefined: never.
   */
  readonly batchCallerAudioAbove?: number | undefined;
  /** Calls in progress now. */
  readonly activeCalls: () => number;
  readonly logger: Logger;
  /** Called after each sample with the window's utilization and whether caller audio is batched (the gateway's gauges). */
  readonly onSample?: (utilization: number, batchingCallerAudio: boolean) => void;
  /** Default: {@link LOAD_SAMPLE_MS}. */
  readonly sampleMs?: number;
  /** Default: Node's `performance.eventLoopUtilization` (the same signature). */
  readonly eventLoopUtilization?: (current?: EventLoopUtilization, previous?: EventLoopUtilization) => EventLoopUtilization;
}

/** Why a new call or request is refused, as its answer says it; undefined: admitted. */
export type LoadRefusal = string | undefined;

interface LoadSample {
  /** The event loop's utilization over the interval. */
  readonly utilization: number;
  /** Calls in progress over the interval (the mean of its two ends). */
  readonly calls: number;
}

/**
 * Admission by load: one core runs every call's audio, so a gateway past that core's capacity makes every call late,
 * not only the new ones. A static `MAX_CALLS` cannot know that capacity: it depends on the provider, the audio format
 * and the machine. This measures it. Every second it samples how busy the event loop was, and over the last three
 * seconds, with a limit set:
 * - above the limit, every new call and request is refused (503 at the upgrade): the calls in progress keep their real
 *   time, and the refused call gets a clear answer at once;
 * - from half the limit on, the calls' share of the loop gives what one call costs, and so how many calls fit under
 *   the limit: a new call beyond that is refused although the loop is not there yet. A trailing window alone lags:
 *   calls arriving faster than it reacts (a queue released after an outage) would all be admitted before it sees
 *   their cost. The estimate counts everything the loop did as the calls' (fixed costs too), so it errs low.
 *
 * With `batchCallerAudioAbove`, it also lowers what each call costs while the loop is busy: above that share, caller
 * audio goes to the providers two 20 ms frames per message (half the messages and system calls towards them), until
 * the loop is well below it again.
 */
export class LoadGuard {
  private readonly measure: NonNullable<LoadGuardOptions['eventLoopUtilization']>;
  private readonly samples: LoadSample[] = [];
  private last: EventLoopUtilization | undefined;
  private callsAtLast = 0;
  private timer: NodeJS.Timeout | undefined;
  private refusingValue = false;
  private batchingValue = false;
  private closed = false;

  constructor(private readonly options: LoadGuardOptions) {
    this.measure = options.eventLoopUtilization ?? performance.eventLoopUtilization;
  }

  /** Starts sampling (once its owner has registered `close()`). */
  start(): void {
    if (this.closed || this.timer !== undefined) return;
    this.last = this.measure();
    this.callsAtLast = this.options.activeCalls();
    this.timer = setInterval(() => this.sample(), this.options.sampleMs ?? LOAD_SAMPLE_MS);
    // Sampling must not keep a process that is otherwise done alive.
    this.timer.unref();
  }

  /** Mean utilization over the last samples (0-1); undefined before the first sample. */
  get utilization(): number | undefined {
    if (this.samples.length === 0) return undefined;
    return this.samples.reduce((sum, s) => sum + s.utilization, 0) / this.samples.length;
  }

  /**
   * How many calls fit under the limit at what they cost now; undefined without a limit, below half of it, or
   * without calls.
   */
  get callCapacity(): number | undefined {
    const limit = this.options.maxUtilization;
    const utilization = this.utilization;
    if (limit === undefined || utilization === undefined || utilization < limit / 2) return undefined;
    const calls = this.samples.reduce((sum, s) => sum + s.calls, 0) / this.samples.length;
    if (calls === 0) return undefined;
    return Math.floor((limit * calls) / utilization);
  }

  /** Caller frames per provider message now (the call runtime's `callerAudioFramesPerSend`). */
  readonly callerAudioFramesPerSend = (): number => (this.batchingValue ? BATCHED_CALLER_FRAMES : 1);

  /** Whether caller audio is batched now. */
  get batchingCallerAudio(): boolean {
    return this.batchingValue;
  }

  /** Whether a new call (`call`: counts against the calls' capacity) or HTTP request is refused now, and why. */
  refusal(call: boolean): LoadRefusal {
    const limit = this.options.maxUtilization;
    const utilization = this.utilization;
    if (this.closed || limit === undefined || utilization === undefined) return undefined;
    if (utilization > limit) {
      return `the gateway is overloaded: its event loop was ${percent(utilization)} busy over the last ${this.windowSeconds()} s (limit ${percent(limit)})`;
    }
    const capacity = this.callCapacity;
    const active = this.options.activeCalls();
    if (call && capacity !== undefined && active >= capacity) {
      return `the gateway is at its load limit: ${active === 1 ? '1 call keeps' : `${active} calls keep`} its event loop ${percent(utilization)} busy, one more would take it past ${percent(limit)}`;
    }
    return undefined;
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private windowSeconds(): number {
    return round((this.samples.length * (this.options.sampleMs ?? LOAD_SAMPLE_MS)) / 1000);
  }

  private sample(): void {
    const now = this.measure();
    const calls = this.options.activeCalls();
    this.samples.push({ utilization: this.measure(now, this.last).utilization, calls: (calls + this.callsAtLast) / 2 });
    this.last = now;
    this.callsAtLast = calls;
    if (this.samples.length > LOAD_WINDOW_SAMPLES) this.samples.shift();
    this.updateBatching(calls);
    this.options.onSample?.(this.utilization ?? 0, this.batchingValue);
    this.updateRefusing(calls);
  }

  private updateBatching(calls: number): void {
    const above = this.options.batchCallerAudioAbove;
    const utilization = this.utilization ?? 0;
    if (above === undefined || this.closed) return;
    const batching = this.batchingValue ? utilization >= above * BATCHING_OFF_RATIO : utilization > above;
    if (batching === this.batchingValue) return;
    this.batchingValue = batching;
    const fields = { utilization: round(utilization), batchAbove: above, activeCalls: calls };
    if (batching) this.options.logger.info(fields, 'event loop busy: caller audio goes to the providers 40 ms at a time');
    else this.options.logger.info(fields, 'event loop has room: caller audio goes to the providers frame by frame again');
  }

  /** One log line each way when the gateway starts or stops refusing new calls. */
  private updateRefusing(calls: number): void {
    const limit = this.options.maxUtilization;
    if (limit === undefined) return;
    const refusing = this.refusal(true) !== undefined;
    if (refusing === this.refusingValue) return;
    this.refusingValue = refusing;
    const fields = { utilization: round(this.utilization ?? 0), limit, activeCalls: calls, callCapacity: this.callCapacity ?? null };
    if (refusing) this.options.logger.warn(fields, 'at the load limit: refusing new calls until the event loop has room');
    else this.options.logger.info(fields, 'load under the limit: accepting new calls');
  }
}

const percent = (share: number) => `${Math.round(share * 100)}%`;
const round = (value: number) => Math.round(value * 1000) / 1000;
