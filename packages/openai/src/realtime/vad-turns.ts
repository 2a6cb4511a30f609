/**
 * Turn-taking by the gateway's VAD, for a session whose server does not detect turns (`turn_detection: null`).
 * Caller audio waits here until the VAD has judged it: speech goes to the provider (with `prefixPaddingMs` of
 * audio before it), silence does not, so the committed turn holds the utterance and not the minutes of line noise
 * around it. The VAD's speech start interrupts the agent; its speech end commits the turn and asks for the answer.
 */
import { ProviderError, createResampler, msToSamples, samplesToMs, toProviderError } from '@stsgate/core';
import type { Resampler, SampleRate, VadEvent, VadStream } from '@stsgate/core';

export interface VadTurnsSink {
  /** Caller audio (at the session rate) that belongs to a turn: send it to the provider. */
  forward(samples: Int16Array): void;
  /** `onsetAgoMs`: caller audio pushed since the speech began. */
  speechStarted(onsetAgoMs: number): void;
  speechEnded(): void;
  /** The VAD broke or fell too far behind: the caller can no longer be heard. Called once. */
  failed(error: ProviderError): void;
}

/** Audio judged silent is kept this long behind the VAD's position, for a speech start it confirms late. */
const KEEP_BEHIND_VAD_MS = 2000;
/** A VAD this far behind the call cannot take turns any more. */
const MAX_VAD_BACKLOG_MS = 5000;

export class VadTurnTaker {
  private readonly resampler: Resampler | undefined;
  private chain: Promise<void> = Promise.resolve();
  /** Session-rate samples pushed, and those the VAD has judged. */
  private pushed = 0;
  private judged = 0;
  private speaking = false;
  /** Audio not sent while nobody speaks, oldest first, with the index of its first sample. */
  private held: { start: number; samples: Int16Array }[] = [];
  private stopped = false;

  constructor(
    private readonly stream: VadStream,
    private readonly rate: SampleRate,
    private readonly prefixPaddingMs: number,
    private readonly vadId: string,
    private readonly sink: VadTurnsSink,
  ) {
    this.resampler = stream.sampleRate === rate ? undefined : createResampler(rate, stream.sampleRate);
  }

  push(samples: Int16Array): void {
    if (this.stopped || samples.length === 0) return;
    const copy = samples.slice();
    if (this.speaking) this.sink.forward(copy);
    else this.held.push({ start: this.pushed, samples: copy });
    this.pushed += copy.length;
    if (samplesToMs(this.pushed - this.judged, this.rate) > MAX_VAD_BACKLOG_MS) {
      this.fail(new ProviderError(this.vadId, 'timeout', `the VAD is more than ${MAX_VAD_BACKLOG_MS} ms behind the call`, { retryable: false }));
      return;
    }
    const audio = this.resampler === undefined ? copy : this.resampler.process(copy);
    // Serialised: each batch's events are handled in stream order.
    this.chain = this.chain
      .then(() => this.stream.process(audio))
      .then(
        (events) => {
          this.judged += copy.length;
          if (this.stopped) return;
          for (const event of events) this.onEvent(event);
          this.trimHeld();
        },
        (error: unknown) => this.fail(toProviderError(this.vadId, error)),
      );
  }

  /** Stops taking turns and closes the VAD stream (after the batch it may be judging). */
  async close(): Promise<void> {
    this.stopped = true;
    this.held = [];
    await this.chain;
    await this.stream.close();
  }

  private onEvent(event: VadEvent): void {
    switch (event.type) {
      case 'speech_start': {
        if (this.speaking) return;
        this.speaking = true;
        const from = msToSamples(Math.max(0, event.atMs - this.prefixPaddingMs), this.rate);
        for (const part of this.held) {
          const end = part.start + part.samples.length;
          if (end <= from) continue;
          this.sink.forward(part.start >= from ? part.samples : part.samples.subarray(from - part.start));
        }
        this.held = [];
        this.sink.speechStarted(Math.max(0, samplesToMs(this.pushed, this.rate) - event.atMs));
        return;
      }
      case 'speech_end':
        if (!this.speaking) return;
        this.speaking = false;
        this.sink.speechEnded();
        return;
      case 'misfire':
        return;
    }
  }

  /** Held audio too old to be a pre-roll: dropped. */
  private trimHeld(): void {
    const keepFrom = this.judged - msToSamples(KEEP_BEHIND_VAD_MS + this.prefixPaddingMs, this.rate);
    while (this.held.length > 0) {
      const first = this.held[0] as { start: number; samples: Int16Array };
      if (first.start + first.samples.length > keepFrom) return;
      this.held.shift();
    }
  }

  private fail(error: ProviderError): void {
    if (this.stopped) return;
    this.stopped = true;
    this.held = [];
    this.sink.failed(error);
  }
}
