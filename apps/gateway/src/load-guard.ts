import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import type { Logger } from 'pino';

/** How often the event loop's utilization is sampled. */
export const LOAD_SAMPLE_MS = 1000;
/** Samples averaged: the guard reacts to a saturated core within about this many seconds, not to one slow second (a GC). */
export const LOAD_WINDOW_SAMPLES = 3;

export interface LoadGuardOptions {
  /**
   * Refuse new calls and requests while the event loop's utilization (the share of time it was busy, 0-1) over the
   * window is above this. Undefined: only measure (the `utilization` is still reported).
   */
  readonly maxUtilization: number | undefined;
  readonly logger: Logger;
  /** Called with the window's utilization after each sample (the gateway's gauge). */
  readonly onSample?: (utilization: number) => void;
  /** Default: {@link LOAD_SAMPLE_MS}. */
  readonly sampleMs?: number;
  /** Default: Node's `performance.eventLoopUtilization` (the same signature). */
  readonly eventLoopUtilization?: (current?: EventLoopUtilization, previous?: EventLoopUtilization) => EventLoopUtilization;
}

/**
 * Admission by load: one core runs every call's audio, so a gateway past that core's capacity makes every call late,
 * not only the new ones. This measures how busy the event loop was over the last few seconds and, with a limit set,
 * says that a new call should be refused while it is above it: the calls in progress keep their real time, and the
 * refused call gets a clear answer at once (503 at the upgrade). A static `MAX_CALLS` cannot do this: what one core
 * holds depends on the provider, the audio format and the machine. A trailing window cannot stop a burst (hundreds of
 * calls within a second or two): `MAX_CALLS` is the cap for that.
 */
export class LoadGuard {
  private readonly measure: NonNullable<LoadGuardOptions['eventLoopUtilization']>;
  private readonly samples: number[] = [];
  private last: EventLoopUtilization | undefined;
  private timer: NodeJS.Timeout | undefined;
  private overloadedValue = false;
  private closed = false;

  constructor(private readonly options: LoadGuardOptions) {
    this.measure = options.eventLoopUtilization ?? performance.eventLoopUtilization;
  }

  /** Starts sampling (once its owner has registered `close()`). */
  start(): void {
    if (this.closed || this.timer !== undefined) return;
    this.last = this.measure();
    this.timer = setInterval(() => this.sample(), this.options.sampleMs ?? LOAD_SAMPLE_MS);
    // Sampling must not keep a process that is otherwise done alive.
    this.timer.unref();
  }

  /** Mean utilization over the last samples (0-1); undefined before the first sample. */
  get utilization(): number | undefined {
    if (this.samples.length === 0) return undefined;
    return this.samples.reduce((sum, value) => sum + value, 0) / this.samples.length;
  }

  /** A limit is set and the window's utilization is above it. */
  get overloaded(): boolean {
    return this.overloadedValue;
  }

  /** The answer to a refused call or request. */
  refusal(): string {
    return `the gateway is overloaded: its event loop was ${percent(this.utilization ?? 0)} busy over the last ${round((this.samples.length * (this.options.sampleMs ?? LOAD_SAMPLE_MS)) / 1000)} s (limit ${percent(this.options.maxUtilization ?? 1)})`;
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.timer = undefined;
    this.overloadedValue = false;
  }

  private sample(): void {
    const now = this.measure();
    this.samples.push(this.measure(now, this.last).utilization);
    this.last = now;
    if (this.samples.length > LOAD_WINDOW_SAMPLES) this.samples.shift();
    const utilization = this.utilization ?? 0;
    this.options.onSample?.(utilization);
    const limit = this.options.maxUtilization;
    if (limit === undefined) return;
    const overloaded = utilization > limit;
    if (overloaded === this.overloadedValue) return;
    this.overloadedValue = overloaded;
    const fields = { utilization: round(utilization), limit };
    if (overloaded) this.options.logger.warn(fields, 'overloaded: refusing new calls until the event loop is less busy');
    else this.options.logger.info(fields, 'load back under the limit: accepting new calls');
  }
}

const percent = (share: number) => `${Math.round(share * 100)}%`;
const round = (value: number) => Math.round(value * 1000) / 1000;
