/**
 * `StreamingSession`: the lifecycle every streaming provider session shares (real-time ASR, speech-to-speech), so an
 * adapter writes only its protocol. The session owns:
 *
 * - `events`, the AsyncQueue the host reads; a fatal error ends it;
 * - the connection: one attempt at a time through `runWithReconnect` and the call's reconnect budget, one standard log
 *   line per retry, and a new connection when the current one drops;
 * - a bounded gap buffer: audio (and control requests such as `finalize`) pushed while no connection is ready, or while
 *   an older backlog is still going out, is held in order; beyond `maxQueuedMs` the oldest audio goes (one warning);
 * - optionally, replay: audio sent that the provider has not made final yet (`maxReplayMs`) is sent again, first, to the
 *   next connection after a drop; the adapter says what is final with `discardReplayBefore`;
 * - optionally, paced catch-up: replay and backlog go out at no more than `catchUp.maxRate` times real time;
 * - the end of input: once the backlog is out, `sendEndOfInput` once per connection, and a deadline for the provider to
 *   finish (`finishTimeoutMs`);
 * - `close()`: idempotent, also run by the call's signal; every timer and listener is removed and the connection closed.
 *
 * The adapter supplies hooks: `connect` (one attempt: open, handshake, return a not-yet-started link, usually a
 * `LiveSocket`), `sendAudio`, and optionally `onLinkReady` (a config message), `sendControl`, `sendEndOfInput`,
 * `onDrop`, `reconnectFailed`, `beforeFail`, `beforeClose`. It parses server messages itself and pushes its events
 * into `events`.
 * `StreamingAsrSession` is the same session as an `AsrStream`, ready to return from `AsrAdapter.open`.
 */
import type { Logger } from 'pino';
import { msToSamples, samplesToMs } from '../audio/pcm.js';
import { PcmHistory } from '../audio/pcm-history.js';
import type { AsrEvent, AsrStream } from '../contracts/asr.js';
import type { CallContext, ErrorEvent, SampleRate } from '../contracts/common.js';
import { ProviderError, toProviderError } from '../errors/provider-error.js';
import { DEFAULT_RECONNECT_POLICY, ReconnectBudget } from '../retry/reconnect-policy.js';
import type { ReconnectPolicyOptions } from '../retry/reconnect-policy.js';
import { runWithReconnect } from '../retry/run-with-reconnect.js';
import { AsyncQueue } from '../util/async-queue.js';
import { GapBuffer } from './gap-buffer.js';

/** What the session needs of a connection. `LiveSocket` is one. */
export interface SessionLink {
  /** Begins delivering the connection's frames and its drop (called once the session has made it current). */
  start(): void;
  close(): Promise<void>;
}

/** One connection attempt. */
export interface LinkAttempt {
  /** Aborted when the session closes (or the call ends): pass it to `openWebSocket` / `connectLiveSocket`. */
  readonly signal: AbortSignal;
  /** Give this to the link (`LiveSocket`'s `onDrop`): a drop of the current link starts the reconnect. */
  readonly onDrop: (error: ProviderError) => void;
  /** The attempt replaces a connection that dropped. */
  readonly reconnect: boolean;
}

export interface LinkReadyInfo {
  readonly reconnected: boolean;
  /** Absolute sample position (since the session began) of this connection's first audio sample (replay included). */
  readonly startSamples: number;
  /** Samples replayed into this connection before the queued audio. */
  readonly replaySamples: number;
}

/** Paced catch-up: how fast replayed and queued audio may go out. */
export interface CatchUpPacing {
  /** Times real time, e.g. 2 (providers that drop clients sending bursts). */
  readonly maxRate: number;
  /** Default 20. */
  readonly tickMs?: number;
  /** A late tick sends at most this much wall time's worth (default 50), so it never becomes a burst. */
  readonly maxStepMs?: number;
}

export interface StreamingSessionOptions<TLink extends SessionLink, TControl> {
  /** `ProviderError.provider` and the host's reconnect counter. */
  readonly provider: string;
  /** Names the service in log lines and messages: "Soniox", "Speechmatics ASR", "Flow". */
  readonly label: string;
  /** The call: its signal closes the session, its observer hears of reconnects. */
  readonly call: Pick<CallContext, 'signal' | 'observer'>;
  /** Already bound to the call and provider. */
  readonly logger: Logger;
  /** Rate of the audio pushed. */
  readonly sampleRate: number;
  readonly reconnect?: ReconnectPolicyOptions;
  /** Audio held while not connected or catching up. */
  readonly maxQueuedMs: number;
  /** Audio not final yet that is replayed into the next connection (default 0: no replay). */
  readonly maxReplayMs?: number;
  /** Without it, the backlog goes out at once when a connection is ready. */
  readonly catchUp?: CatchUpPacing;
  /** From the end of input to `close()` (the adapter closes when the provider has finished): a fatal `timeout` after it. */
  readonly finishTimeoutMs?: number;

  /** One connection attempt; rejects with a ProviderError (or anything, mapped by `toProviderError`). */
  readonly connect: (attempt: LinkAttempt) => Promise<TLink>;
  /** The connection is current, before any frame of it is delivered and before the backlog goes out (send a config). */
  readonly onLinkReady?: (link: TLink, info: LinkReadyInfo) => void;
  /** Sends audio on the link (live audio, replay and backlog alike). */
  readonly sendAudio: (link: TLink, samples: Int16Array) => void;
  /** Sends a control request (`pushControl`) in its place in the stream. */
  readonly sendControl?: (link: TLink, control: TControl) => void;
  /** Ends the input on this link (an empty frame, `EndOfStream`): once per link, after the backlog. */
  readonly sendEndOfInput?: (link: TLink) => void;
  /** The link dropped (logged already); the reconnect follows. E.g. close the utterance in progress. */
  readonly onDrop?: (error: ProviderError) => void;
  /**
   * A dropped connection could not be replaced (the budget ran out, or a failure no retry fixes): the fatal error the
   * session ends with, e.g. one that says the session was lost (default: that failure as it is). Not called for the
   * first connection (`ready` rejects with the failure) nor after `close()`.
   */
  readonly reconnectFailed?: (error: ProviderError) => ProviderError;
  /** A fatal error is about to be pushed: e.g. flush the final text received so far. */
  readonly beforeFail?: (error: ProviderError) => void;
  /** `close()` is about to close the link (if there is one): e.g. a goodbye message. */
  readonly beforeClose?: (link: TLink | undefined) => void;
}

type Event<E> = E | ErrorEvent;

export class StreamingSession<E extends { readonly type: string }, TLink extends SessionLink, TControl = never> {
  readonly events = new AsyncQueue<Event<E>>();
  /** Settles when the first connection is ready, or rejects with the failure that ended the session before it. */
  readonly ready: Promise<void>;
  readonly #options: StreamingSessionOptions<TLink, TControl>;
  readonly #logger: Logger;
  readonly #budget: ReconnectBudget;
  /** Aborted by `close()`: stops connecting and retrying. */
  readonly #lifetime = new AbortController();
  readonly #gap: GapBuffer<TControl>;
  readonly #maxReplay: number;
  readonly #history: PcmHistory;
  #link: TLink | undefined;
  #linkStart = 0;
  /** History still to replay into the current link: [replayAt, replayEnd). */
  #replayAt = 0;
  #replayEnd = 0;
  #catchUpTimer: NodeJS.Timeout | undefined;
  #catchUpTickAt = 0;
  #finishTimer: NodeJS.Timeout | undefined;
  #inputEnded = false;
  #endSent = false;
  #closed = false;
  #unexpectedReported = false;
  #closing: Promise<void> | undefined;
  #settleReady: ((error?: ProviderError) => void) | undefined;
  readonly #onCallAbort = (): void => void this.close();

  constructor(options: StreamingSessionOptions<TLink, TControl>) {
    this.#options = options;
    this.#logger = options.logger;
    this.#budget = new ReconnectBudget(options.reconnect ?? DEFAULT_RECONNECT_POLICY);
    this.#gap = new GapBuffer<TControl>({
      maxSamples: msToSamples(options.maxQueuedMs, options.sampleRate),
      onOverflow: () => this.#logger.warn({ maxQueuedMs: options.maxQueuedMs }, `${options.label} not connected: oldest queued caller audio dropped`),
    });
    this.#maxReplay = msToSamples(options.maxReplayMs ?? 0, options.sampleRate);
    this.#history = new PcmHistory(Math.max(1, this.#maxReplay));
    this.ready = new Promise<void>((resolve, reject) => {
      this.#settleReady = (error) => {
        this.#settleReady = undefined;
        if (error === undefined) resolve();
        else reject(error);
      };
    });
    // A session nobody awaits must not turn a failed start into an unhandled rejection.
    this.ready.catch(() => undefined);
    if (options.call.signal.aborted) {
      void this.close();
      return;
    }
    options.call.signal.addEventListener('abort', this.#onCallAbort, { once: true });
    // After the constructor: the hooks may use the object that owns this session.
    queueMicrotask(() => {
      if (!this.#closed) this.#connect(undefined);
    });
  }

  /** The current connection (undefined while connecting or reconnecting, and once closed). */
  get link(): TLink | undefined {
    return this.#link;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get inputEnded(): boolean {
    return this.#inputEnded;
  }

  /** Absolute sample position of the current connection's first audio sample. */
  get linkStartSamples(): number {
    return this.#linkStart;
  }

  /** Absolute sample position where the next connection will start: the oldest audio not final yet. */
  get replayFrom(): number {
    return this.#history.first;
  }

  /** Pushes the adapter's events (mapped from the provider's messages) in order. */
  emit(events: Iterable<E>): void {
    for (const event of events) this.events.push(event);
  }

  /**
   * A message the adapter cannot read: the first one of the session is a non-fatal `protocol` error event, later ones
   * are only logged (debug). The session goes on.
   */
  reportUnexpected(reason: string): void {
    const { provider, label } = this.#options;
    this.#logger.debug({ reason: reason.slice(0, 200) }, `unexpected ${label} message`);
    if (this.#unexpectedReported || this.#closed) return;
    this.#unexpectedReported = true;
    this.events.push({ type: 'error', error: new ProviderError(provider, 'protocol', `unexpected ${label} message (${reason.slice(0, 200)})`), fatal: false });
  }

  /** Caller audio: sent at once when a connection is ready and no backlog is going out, else held in order. */
  pushAudio(samples: Int16Array): void {
    if (this.#closed || this.#inputEnded || samples.length === 0) return;
    const link = this.#link;
    if (link !== undefined && this.#catchUpTimer === undefined) this.#transmit(link, samples);
    else this.#gap.pushAudio(samples);
  }

  /**
   * A control request (`finalize`), in its place among the audio. With `coalesce`, a request equal to the last one
   * held is not held twice.
   */
  pushControl(control: TControl, options: { readonly coalesce?: boolean } = {}): void {
    if (this.#closed || this.#inputEnded) return;
    const link = this.#link;
    if (link !== undefined && this.#catchUpTimer === undefined) {
      this.#options.sendControl?.(link, control);
      return;
    }
    const last = this.#gap.last;
    if (options.coalesce === true && last?.kind === 'control' && last.control === control) return;
    this.#gap.pushControl(control);
  }

  /** No more audio: once the backlog is out, `sendEndOfInput`; the finish deadline starts then. */
  endInput(): void {
    if (this.#closed || this.#inputEnded) return;
    this.#inputEnded = true;
    const link = this.#link;
    if (link !== undefined && this.#catchUpTimer === undefined) this.#sendEnd(link);
  }

  /** The provider made everything before this absolute sample position final: it is never replayed. */
  discardReplayBefore(position: number): void {
    this.#history.discardBefore(Math.min(this.#history.end, position));
  }

  /** Ends the session with a fatal error event (after `beforeFail`), then closes it. At most once. */
  fail(error: ProviderError): void {
    if (this.#closed) return;
    this.#options.beforeFail?.(error);
    this.events.push({ type: 'error', error, fatal: true });
    this.#settleReady?.(error);
    void this.close();
  }

  /** Idempotent: stops connecting, removes every timer and listener, ends `events`, closes the connection. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      this.#lifetime.abort();
      this.#options.call.signal.removeEventListener('abort', this.#onCallAbort);
      this.#stopCatchUp();
      if (this.#finishTimer !== undefined) clearTimeout(this.#finishTimer);
      this.#finishTimer = undefined;
      this.#gap.clear();
      this.#history.release();
      const link = this.#link;
      this.#link = undefined;
      this.#options.beforeClose?.(link);
      this.events.end();
      this.#settleReady?.(new ProviderError(this.#options.provider, 'closed', `the ${this.#options.label} session was closed before it was ready`, { retryable: false }));
      if (link !== undefined) await link.close();
    })();
    return this.#closing;
  }

  // ---- connections -----------------------------------------------------------------------------------------------

  #connect(initialError: ProviderError | undefined): void {
    const { provider, label } = this.#options;
    const reconnect = initialError !== undefined;
    // A session that was up and dropped is being re-established (the host counts reconnects).
    if (reconnect) this.#options.call.observer?.reconnecting(provider);
    runWithReconnect(() => this.#attempt(reconnect), {
      provider,
      budget: this.#budget,
      signal: this.#lifetime.signal,
      ...(initialError === undefined ? {} : { initialError }),
      onRetry: (error, delayMs, attempt) => {
        this.#logger.warn({ category: error.category, err: error.message, attempt, delayMs }, `${label} connection failed; reconnecting`);
      },
    }).then(
      ({ link, early }) => {
        this.#attach(link, reconnect);
        const dropped = early();
        if (dropped !== undefined) this.#linkLost(link, dropped);
      },
      (error: unknown) => {
        const failure = toProviderError(provider, error);
        const reconnectFailed = this.#options.reconnectFailed;
        this.fail(reconnect && !this.#closed && reconnectFailed !== undefined ? reconnectFailed(failure) : failure);
      },
    )
      // A hook that throws ends the session with its error rather than an unhandled rejection.
      .catch((error: unknown) => this.fail(toProviderError(provider, error)));
  }

  async #attempt(reconnect: boolean): Promise<{ link: TLink; early: () => ProviderError | undefined }> {
    /** The link once `connect` returned it; a drop before that is kept and handled after the attach. */
    const state: { link?: TLink; early?: ProviderError } = {};
    const link = await this.#options.connect({
      signal: this.#lifetime.signal,
      reconnect,
      onDrop: (error) => {
        if (state.link === undefined) state.early ??= error;
        else this.#linkLost(state.link, error);
      },
    });
    state.link = link;
    return { link, early: () => state.early };
  }

  #attach(link: TLink, reconnected: boolean): void {
    if (this.#closed) {
      void link.close();
      return;
    }
    const { label, sampleRate } = this.#options;
    this.#link = link;
    this.#linkStart = this.#history.first;
    this.#replayAt = this.#history.first;
    this.#replayEnd = this.#history.end;
    this.#endSent = false;
    const replaySamples = this.#replayEnd - this.#replayAt;
    if (reconnected) this.#logger.info({ replayMs: samplesToMs(replaySamples, sampleRate) }, `${label} session restored`);
    else this.#logger.debug(`${label} session open`);
    this.#options.onLinkReady?.(link, { reconnected, startSamples: this.#linkStart, replaySamples });
    if (this.#link !== link) return;
    link.start();
    if (this.#link !== link) return;
    this.#settleReady?.();
    this.#catchUpTickAt = Date.now() - (this.#options.catchUp?.tickMs ?? 20);
    this.#drain(link);
  }

  #linkLost(link: TLink, error: ProviderError): void {
    if (this.#link !== link || this.#closed) return;
    this.#link = undefined;
    this.#stopCatchUp();
    this.#logger.warn({ category: error.category, err: error.message }, `${this.#options.label} connection lost`);
    void link.close();
    this.#options.onDrop?.(error);
    if (!this.#closed) this.#connect(error);
  }

  // ---- sending ---------------------------------------------------------------------------------------------------

  /**
   * Sends the next slice of the backlog: the replay first, then the queue (control requests in their place). Paced,
   * a slice is `maxRate` x the wall time since the last tick; once all is out, audio flows directly again.
   */
  #drain(link: TLink): void {
    if (this.#link !== link) return;
    const pacing = this.#options.catchUp;
    let budget = Number.POSITIVE_INFINITY;
    if (pacing !== undefined) {
      const now = Date.now();
      budget = msToSamples(Math.min(now - this.#catchUpTickAt, pacing.maxStepMs ?? 50) * pacing.maxRate, this.#options.sampleRate);
      this.#catchUpTickAt = now;
    }
    if (this.#replayAt < this.#replayEnd && budget > 0) {
      const end = Math.min(this.#replayEnd, this.#replayAt + budget);
      this.#options.sendAudio(link, this.#history.copy(this.#replayAt, end));
      budget -= end - this.#replayAt;
      this.#replayAt = end;
    }
    while (this.#replayAt >= this.#replayEnd && !this.#gap.isEmpty && this.#link === link) {
      if (this.#gap.peek()?.kind === 'audio' && budget <= 0) break;
      const item = this.#gap.shift(budget);
      if (item === undefined) break;
      if (item.kind === 'control') {
        this.#options.sendControl?.(link, item.control);
        continue;
      }
      budget -= item.samples.length;
      this.#transmit(link, item.samples);
    }
    if (this.#link !== link) return;
    if (this.#replayAt < this.#replayEnd || !this.#gap.isEmpty) {
      this.#catchUpTimer ??= setInterval(() => this.#drain(link), pacing?.tickMs ?? 20);
      return;
    }
    this.#stopCatchUp();
    if (this.#inputEnded) this.#sendEnd(link);
  }

  /** Sends audio and keeps it for a replay until it is final (or older than `maxReplayMs`). */
  #transmit(link: TLink, samples: Int16Array): void {
    this.#options.sendAudio(link, samples);
    if (this.#maxReplay <= 0) return;
    this.#history.append(samples);
    if (this.#history.end - this.#history.first > this.#maxReplay) this.#history.discardBefore(this.#history.end - this.#maxReplay);
  }

  #sendEnd(link: TLink): void {
    if (this.#endSent) return;
    this.#endSent = true;
    this.#options.sendEndOfInput?.(link);
    const ms = this.#options.finishTimeoutMs;
    if (ms === undefined || this.#closed) return;
    this.#finishTimer ??= setTimeout(() => {
      this.#finishTimer = undefined;
      this.fail(new ProviderError(this.#options.provider, 'timeout', `${this.#options.label} did not finish within ${ms} ms of the end of audio`, { retryable: false }));
    }, ms);
  }

  #stopCatchUp(): void {
    if (this.#catchUpTimer !== undefined) clearInterval(this.#catchUpTimer);
    this.#catchUpTimer = undefined;
  }
}

export interface StreamingAsrSessionOptions<TLink extends SessionLink> extends StreamingSessionOptions<TLink, 'finalize'> {
  readonly sampleRate: SampleRate;
  /** `finalize()` is ignored while this says no (e.g. a finalize is already in flight). */
  readonly canFinalize?: () => boolean;
}

/**
 * A `StreamingSession` that is itself the host's `AsrStream`: `pushAudio`, `endInput`, `close` and `events` as they
 * are, and `finalize()` queued as the control `'finalize'` (coalesced) that `sendControl` sends. A streaming ASR
 * adapter creates one in `open()` and returns it.
 */
export class StreamingAsrSession<TLink extends SessionLink> extends StreamingSession<AsrEvent, TLink, 'finalize'> implements AsrStream {
  readonly inputSampleRate: SampleRate;
  readonly #canFinalize: (() => boolean) | undefined;

  constructor(options: StreamingAsrSessionOptions<TLink>) {
    super(options);
    this.inputSampleRate = options.sampleRate;
    this.#canFinalize = options.canFinalize;
  }

  finalize(): void {
    if (this.#canFinalize?.() === false) return;
    this.pushControl('finalize', { coalesce: true });
  }
}
