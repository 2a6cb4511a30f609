// tricklePosts / hangingRequest: HTTP POSTs whose body never ends (one byte at a time, or a few bytes then nothing).
import { performance } from 'node:perf_hooks';
import { errorCode, hostPort, increment, requirePositive, sinceMs, type HostPort } from './common.js';
import { RawPost, postHead, type RawPostEvents } from './raw-post.js';

export interface TricklePostsOptions {
  readonly path: string;
  readonly count: number;
  /** Requests open at once (default: all of them). A slot is reused once its request got an answer, closed or was held holdMs. */
  readonly concurrency?: number;
  readonly headers?: Readonly<Record<string, string>>;
  /** Default application/json. */
  readonly contentType?: string;
  /** One body byte per socket every this many ms (default 1000). */
  readonly bytesEveryMs?: number;
  /** Each request is given up (destroyed and counted in stillOpenAtHold) this long after its connect started. */
  readonly holdMs: number;
  /** Declare this body length (never reached) instead of `Transfer-Encoding: chunked`. */
  readonly contentLength?: number;
}

export interface TrickleReport {
  /** Status code -> requests that got a response status line. */
  readonly statuses: Record<string, number>;
  /** Connected requests the server closed (FIN or reset) without a status line. */
  readonly closedWithoutResponse: number;
  /** Requests still open, without a response, after holdMs. */
  readonly stillOpenAtHold: number;
  /** Requests that never connected, by error code (ECONNREFUSED, EMFILE, ETIMEDOUT...). */
  readonly connectErrors: Record<string, number>;
  /** The most requests open at once. */
  readonly maxOpen: number;
  readonly elapsedMs: number;
}

/** Body of a never-ending JSON request: `{"text":"aaaa...`, one byte at a time. */
const TRICKLE_BODY_START = Buffer.from('{"text":"');
const TRICKLE_FILLER = 0x61;

function trickleByte(index: number): Buffer {
  return Buffer.of(TRICKLE_BODY_START[index] ?? TRICKLE_FILLER);
}

/**
 * `count` POSTs over raw TCP, at most `concurrency` open at once, each sending its body one byte every `bytesEveryMs`
 * and never finishing it (slowloris). A request ends when the server answers (status line: counted, socket destroyed),
 * closes or resets it, or after `holdMs` (counted as still open, destroyed). Resolves when every request has ended.
 */
export function tricklePosts(baseUrl: string, options: TricklePostsOptions): Promise<TrickleReport> {
  requirePositive('count', options.count, true);
  requirePositive('concurrency', options.concurrency);
  requirePositive('bytesEveryMs', options.bytesEveryMs);
  requirePositive('holdMs', options.holdMs);
  requirePositive('contentLength', options.contentLength);
  return new TrickleRun(baseUrl, options).run();
}

/** How often held requests are checked against holdMs. */
const HOLD_SWEEP_MS = 50;

class TrickleRun implements RawPostEvents {
  private readonly t0 = performance.now();
  private readonly target: HostPort;
  private readonly head: string;
  private readonly concurrency: number;
  private readonly open = new Set<RawPost>();
  private readonly statuses: Record<string, number> = {};
  private readonly connectErrors: Record<string, number> = {};
  private closedWithoutResponse = 0;
  private stillOpenAtHold = 0;
  private maxOpen = 0;
  private started = 0;
  private refill: NodeJS.Immediate | undefined;
  /** Requests given up at holdMs (destroyed by us: their close is not the server's). */
  private readonly heldOut = new WeakSet<RawPost>();
  private tickTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private resolve: ((report: TrickleReport) => void) | undefined;

  constructor(
    baseUrl: string,
    private readonly options: TricklePostsOptions,
  ) {
    this.target = hostPort(baseUrl, 80);
    this.head = postHead(this.target, options.path, options);
    this.concurrency = Math.max(1, Math.floor(options.concurrency ?? options.count));
  }

  run(): Promise<TrickleReport> {
    return new Promise((resolve) => {
      this.resolve = resolve;
      if (this.options.count === 0) {
        this.finish();
        return;
      }
      this.tickTimer = setInterval(this.tick, this.options.bytesEveryMs ?? 1000);
      this.sweepTimer = setInterval(this.sweep, Math.min(HOLD_SWEEP_MS, this.options.holdMs));
      this.fill();
    });
  }

  private fill(): void {
    while (this.open.size < this.concurrency && this.started < this.options.count) {
      this.started++;
      let post: RawPost;
      try {
        post = new RawPost(this.target, this.head, this.options.contentLength === undefined, this);
      } catch (error) {
        increment(this.connectErrors, errorCode(error));
        continue;
      }
      this.open.add(post);
    }
    this.maxOpen = Math.max(this.maxOpen, this.open.size);
    if (this.open.size === 0 && this.started >= this.options.count) this.finish();
  }

  onConnected(post: RawPost): void {
    post.writeBody(trickleByte(0));
  }

  onStatus(post: RawPost, status: number): void {
    increment(this.statuses, String(status));
    post.destroy();
  }

  onClose(post: RawPost): void {
    if (!this.open.delete(post)) return;
    if (post.status !== undefined || this.heldOut.has(post)) {
      // Counted already.
    } else if (post.connected) this.closedWithoutResponse++;
    else increment(this.connectErrors, post.error ?? 'closed');
    // Start the next ones on a later turn: a burst of closes then refills in one go.
    this.refill ??= setImmediate(() => {
      this.refill = undefined;
      this.fill();
    });
  }

  private readonly tick = (): void => {
    for (const post of this.open) if (post.status === undefined) post.writeBody(trickleByte(post.bodySent));
  };

  private readonly sweep = (): void => {
    const now = performance.now();
    for (const post of this.open) {
      if (post.status !== undefined || this.heldOut.has(post) || now - post.startedAt < this.options.holdMs) continue;
      this.heldOut.add(post);
      this.stillOpenAtHold++;
      post.destroy();
    }
  };

  private finish(): void {
    const resolve = this.resolve;
    if (resolve === undefined) return;
    this.resolve = undefined;
    clearInterval(this.tickTimer);
    clearInterval(this.sweepTimer);
    if (this.refill !== undefined) clearImmediate(this.refill);
    resolve({
      statuses: this.statuses,
      closedWithoutResponse: this.closedWithoutResponse,
      stillOpenAtHold: this.stillOpenAtHold,
      connectErrors: this.connectErrors,
      maxOpen: this.maxOpen,
      elapsedMs: sinceMs(this.t0),
    });
  }
}

export interface HangingRequestOptions {
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** Default application/json. */
  readonly contentType?: string;
}

export interface HangingRequest {
  /**
   * Resolves when the connection closes (the server's doing, or abort()): the response status if a status line arrived
   * before (undefined otherwise), and the time since the request started.
   */
  readonly closed: Promise<{ readonly status: number | undefined; readonly afterMs: number }>;
  /** Destroy the connection (resolves `closed`). */
  abort(): void;
}

/** One chunked POST that sends a few body bytes (`{"text":"hel`) and then nothing, ever. */
export function hangingRequest(baseUrl: string, options: HangingRequestOptions): HangingRequest {
  const target = hostPort(baseUrl, 80);
  let resolveClosed: (value: { status: number | undefined; afterMs: number }) => void = () => {};
  const closed = new Promise<{ status: number | undefined; afterMs: number }>((resolve) => (resolveClosed = resolve));
  const post = new RawPost(target, postHead(target, options.path, options), true, {
    onConnected: (p) => p.writeBody(Buffer.from('{"text":"hel')),
    onStatus: () => {},
    onClose: (p) => resolveClosed({ status: p.status, afterMs: sinceMs(p.startedAt) }),
  });
  return { closed, abort: () => post.destroy() };
}
