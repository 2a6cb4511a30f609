/**
 * Text of one agent reply round -> TTS -> audio, in order. Two shapes, chosen by the TTS's declared capability:
 * - `ChunkedSpeech`: one TTS request per chunk (sentence or clause). The first chunk is requested the moment it is
 *   complete; the next one is synthesized while the current one plays (`prefetch`), and audio is emitted strictly
 *   in chunk order.
 * - `StreamedSpeech`: one `streamText` synthesis fed piece by piece (TTS with streaming input).
 * A request that fails before its first audio is retried within the reconnect budget; after audio has been
 * emitted it cannot be retried without repeating words, so the round ends there with the error.
 */
import type { Logger } from 'pino';
import { ProviderError, ReconnectBudget, createResampler, delay, samplesToMs, toProviderError } from '@stsgate/core';
import type { CallContext, ReconnectPolicyOptions, Resampler, SampleRate, TtsAdapter, TtsStreamRequest, TtsTextStream } from '@stsgate/core';
import { SpokenTimeline } from './timeline.js';
import { withTimeout } from './timing.js';

export interface SpeechSettings {
  readonly tts: TtsAdapter;
  /** The reply's context: its signal aborts every request of the round. */
  readonly call: CallContext;
  readonly request: TtsStreamRequest;
  /** Rate of the audio handed to `emit` (the session's output rate). */
  readonly outputSampleRate: SampleRate;
  /** No audio this long after a request was sent: the request is abandoned (and retried if nothing was emitted). */
  readonly firstAudioTimeoutMs: number;
  /** No audio this long in the middle of a synthesis: abandoned. */
  readonly idleTimeoutMs: number;
  readonly retry: ReconnectPolicyOptions;
  /** Chunk requests in flight ahead of the one playing (chunked shape). */
  readonly prefetch: number;
  readonly logger: Logger;
  /** Audio, in order. Never called after `cancel()`. */
  readonly emit: (samples: Int16Array) => void;
  /** The round's first audio, `ms` after its first text was handed to the TTS. */
  readonly onFirstAudio: (ms: number) => void;
}

/** How a round's speech ended. */
export type SpeechOutcome = { readonly type: 'spoken' } | { readonly type: 'cancelled' } | { readonly type: 'failed'; readonly error: ProviderError };

export interface Speech {
  /** Text to speak after what was added before; ignored once `done` has settled (failed or cancelled). */
  add(text: string): void;
  /** No more text: `done` resolves once everything added is spoken. */
  end(): void;
  /** Stops at once: no audio is emitted after this returns; requests in flight are aborted. */
  cancel(): void;
  readonly done: Promise<SpeechOutcome>;
  /** Which words sit where in the emitted audio. */
  readonly timeline: SpokenTimeline;
}

export function createSpeech(settings: SpeechSettings): Speech {
  return settings.tts.capabilities.streamingInput && settings.tts.streamText !== undefined ? new StreamedSpeech(settings) : new ChunkedSpeech(settings);
}

/** Shared by both shapes: cancellation, the outcome, resampling, first-audio timing, timeouts. */
abstract class SpeechBase implements Speech {
  readonly timeline = new SpokenTimeline();
  readonly done: Promise<SpeechOutcome>;
  protected cancelled = false;
  protected ended = false;
  protected readonly abort = new AbortController();
  private firstTextAt: number | undefined;
  private firstAudioSeen = false;
  private settle!: (outcome: SpeechOutcome) => void;
  /** The outcome is known: text added from now on is not spoken (and requests no synthesis). */
  protected settled = false;
  private readonly onCallAbort = (): void => this.cancel();

  constructor(protected readonly settings: SpeechSettings) {
    this.done = new Promise((resolve) => (this.settle = resolve));
    if (settings.call.signal.aborted) this.cancel();
    else settings.call.signal.addEventListener('abort', this.onCallAbort, { once: true });
  }

  abstract add(text: string): void;
  abstract end(): void;

  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.abort.abort();
    this.finish({ type: 'cancelled' });
  }

  /**
   * The context of one request: aborted by `cancel()` (and so by the reply's signal), and by `release()` once the
   * request is over. A request abandoned for its silence must stop upstream now: an iterator suspended inside the
   * adapter would only see its `return()` after its next chunk.
   */
  protected requestCall(): { call: CallContext; release: () => void } {
    const request = new AbortController();
    const onAbort = (): void => request.abort();
    if (this.abort.signal.aborted) request.abort();
    else this.abort.signal.addEventListener('abort', onAbort, { once: true });
    return {
      call: { ...this.settings.call, signal: request.signal },
      release: () => {
        this.abort.signal.removeEventListener('abort', onAbort);
        request.abort();
      },
    };
  }

  protected textSent(): void {
    this.firstTextAt ??= performance.now();
  }

  /** Emits audio at the provider's rate through `resampler` (when the rates differ). */
  protected emitAudio(samples: Int16Array, resampler: Resampler | undefined): void {
    const out = resampler === undefined ? samples : resampler.process(samples);
    if (out.length === 0 || this.cancelled) return;
    if (!this.firstAudioSeen) {
      this.firstAudioSeen = true;
      this.settings.onFirstAudio(performance.now() - (this.firstTextAt ?? performance.now()));
    }
    this.timeline.addAudio(samplesToMs(out.length, this.settings.outputSampleRate));
    this.settings.emit(out);
  }

  protected resamplerFor(rate: SampleRate): Resampler | undefined {
    return rate === this.settings.outputSampleRate ? undefined : createResampler(rate, this.settings.outputSampleRate);
  }

  protected finish(outcome: SpeechOutcome): void {
    if (this.settled) return;
    this.settled = true;
    this.settings.call.signal.removeEventListener('abort', this.onCallAbort);
    if (outcome.type !== 'cancelled') this.abort.abort();
    // A segment cut by a failure keeps its estimated length: only the words its audio covered count as heard.
    if (outcome.type === 'spoken') this.timeline.completeLast();
    this.settle(outcome);
  }

  /** Runs `attempt` until it succeeds, emits audio and then fails (not retryable), or the budget runs out. */
  protected async withRetry(what: string, attempt: () => Promise<void>, emittedSince: () => boolean): Promise<void> {
    const budget = new ReconnectBudget(this.settings.retry);
    for (;;) {
      try {
        await attempt();
        return;
      } catch (error) {
        const failure = this.cancelled ? cancelledError(this.settings.tts.id) : toProviderError(this.settings.tts.id, error);
        if (this.cancelled || emittedSince()) throw failure;
        const decision = budget.next(failure);
        if (!decision.retry) throw failure;
        this.settings.logger.warn({ err: failure, attempt: decision.attempt, delayMs: decision.delayMs }, `${what} failed; retrying`);
        await delay(decision.delayMs, this.abort.signal);
        if (this.cancelled) throw cancelledError(this.settings.tts.id);
      }
    }
  }

  /** Iterates `audio`, failing with a `timeout` ProviderError when it is silent for too long. */
  protected async *timed(audio: AsyncIterable<Int16Array>, limitMs: (first: boolean) => number | undefined): AsyncGenerator<Int16Array> {
    const iterator = audio[Symbol.asyncIterator]();
    let first = true;
    try {
      for (;;) {
        const limit = limitMs(first);
        const next = await withTimeout(iterator.next(), limit, () => {
          const what = first ? 'first audio' : 'more audio';
          return new ProviderError(this.settings.tts.id, 'timeout', `TTS sent no ${what} for ${limit} ms`);
        });
        if (next.done === true) return;
        first = false;
        yield next.value;
      }
    } finally {
      // Abandoning the iterator cancels the upstream request (the TtsAdapter contract).
      void Promise.resolve(iterator.return?.()).catch(() => undefined);
    }
  }
}

interface Chunk {
  readonly text: string;
  readonly pieces: Int16Array[];
  rate: SampleRate | undefined;
  finished: boolean;
  error: ProviderError | undefined;
  started: boolean;
  wake: (() => void) | undefined;
}

/** One TTS request per chunk, prefetching, audio emitted in chunk order. */
class ChunkedSpeech extends SpeechBase {
  private readonly chunks: Chunk[] = [];
  private playing = 0;
  private wakeEmitter: (() => void) | undefined;

  constructor(settings: SpeechSettings) {
    super(settings);
    void this.emitInOrder();
  }

  add(text: string): void {
    if (this.settled || this.ended || text.trim() === '') return;
    this.chunks.push({ text, pieces: [], rate: undefined, finished: false, error: undefined, started: false, wake: undefined });
    this.startDue();
    this.wakeEmitter?.();
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.wakeEmitter?.();
  }

  override cancel(): void {
    super.cancel();
    this.wakeEmitter?.();
    for (const chunk of this.chunks) chunk.wake?.();
  }

  /** Starts the chunk playing and up to `prefetch` after it. */
  private startDue(): void {
    const last = Math.min(this.chunks.length, this.playing + 1 + this.settings.prefetch);
    for (let i = this.playing; i < last; i++) {
      const chunk = this.chunks[i] as Chunk;
      if (!chunk.started) {
        chunk.started = true;
        void this.synthesize(chunk);
      }
    }
  }

  private async synthesize(chunk: Chunk): Promise<void> {
    const wake = (): void => chunk.wake?.();
    let received = false;
    try {
      this.textSent();
      await this.withRetry(
        'TTS request',
        async () => {
          const { call, release } = this.requestCall();
          try {
            const synthesis = this.settings.tts.synthesize({ ...this.settings.request, text: chunk.text }, call);
            chunk.rate = synthesis.outputSampleRate;
            for await (const piece of this.timed(synthesis.audio, (first) => (first ? this.settings.firstAudioTimeoutMs : this.settings.idleTimeoutMs))) {
              if (this.cancelled) return;
              received = true;
              chunk.pieces.push(piece);
              wake();
            }
          } finally {
            release();
          }
        },
        () => received,
      );
    } catch (error) {
      chunk.error = toProviderError(this.settings.tts.id, error);
    }
    chunk.finished = true;
    wake();
  }

  private async emitInOrder(): Promise<void> {
    while (!this.cancelled) {
      const chunk = this.chunks[this.playing];
      if (chunk === undefined) {
        if (this.ended) {
          this.finish({ type: 'spoken' });
          return;
        }
        await new Promise<void>((resolve) => (this.wakeEmitter = resolve));
        this.wakeEmitter = undefined;
        continue;
      }
      this.startDue();
      this.timeline.begin(chunk.text);
      let resampler: Resampler | undefined;
      for (;;) {
        if (this.cancelled) return;
        const piece = chunk.pieces.shift();
        if (piece !== undefined) {
          resampler ??= this.resamplerFor(chunk.rate ?? this.settings.outputSampleRate);
          this.emitAudio(piece, resampler);
          continue;
        }
        if (chunk.finished) break;
        await new Promise<void>((resolve) => (chunk.wake = resolve));
        chunk.wake = undefined;
      }
      const tail = resampler?.flush();
      if (tail !== undefined && tail.length > 0) this.emitAudio(tail, undefined);
      if (chunk.error === undefined) this.timeline.completeLast();
      else {
        if (!this.cancelled) this.finish({ type: 'failed', error: chunk.error });
        return;
      }
      this.playing++;
    }
  }
}

/**
 * One `streamText` synthesis fed as the text comes (TTS with streaming input). It opens when the round begins, so
 * its connection is ready by the time the LLM's first words are.
 */
class StreamedSpeech extends SpeechBase {
  private readonly texts: string[] = [];
  private stream: TtsTextStream | undefined;

  constructor(settings: SpeechSettings) {
    super(settings);
    if (!this.cancelled) void this.run();
  }

  add(text: string): void {
    if (this.settled || this.ended || text.trim() === '') return;
    // Chunks come trimmed: the space after each one tells the TTS its last word is complete (it may then speak it
    // without waiting for the next chunk) and keeps "Sure." and "We" apart.
    const piece = `${text.trim()} `;
    this.textSent();
    this.texts.push(piece);
    this.timeline.appendText(text);
    this.stream?.pushText(piece);
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.stream?.endText();
  }

  override cancel(): void {
    super.cancel();
    void this.stream?.close();
  }

  private async run(): Promise<void> {
    let received = false;
    try {
      await this.withRetry(
        'TTS stream',
        async () => {
          const { call, release } = this.requestCall();
          const stream = (this.settings.tts.streamText as NonNullable<TtsAdapter['streamText']>)(this.settings.request, call);
          this.stream = stream;
          // A new stream (a retry before any audio) gets every piece so far.
          for (const text of this.texts) stream.pushText(text);
          if (this.ended) stream.endText();
          const resampler = this.resamplerFor(stream.outputSampleRate);
          try {
            // While the reply is still being written, silence may be the LLM's, not the TTS's: no limit until the end.
            const limit = (first: boolean): number | undefined =>
              this.ended ? (first ? this.settings.firstAudioTimeoutMs : this.settings.idleTimeoutMs) : undefined;
            for await (const piece of this.timed(stream.audio, limit)) {
              if (this.cancelled) return;
              received = true;
              this.emitAudio(piece, resampler);
            }
            const tail = resampler?.flush();
            if (tail !== undefined && tail.length > 0) this.emitAudio(tail, undefined);
          } finally {
            release();
            await stream.close();
          }
        },
        () => received,
      );
      if (!this.cancelled) this.finish({ type: 'spoken' });
    } catch (error) {
      if (!this.cancelled) this.finish({ type: 'failed', error: toProviderError(this.settings.tts.id, error) });
    }
  }
}

function cancelledError(provider: string): ProviderError {
  return new ProviderError(provider, 'closed', 'speech cancelled', { retryable: false });
}
