/**
 * Turns per-frame speech probabilities into utterance boundaries (Silero-style hysteresis).
 * Pure and synchronous: positions are absolute sample indices of the stream, so it is tested without a model.
 *
 * - A frame with probability >= `threshold` is speech; one below `negThreshold` is silence; in between keeps
 *   the current state (but does not interrupt a silence run, as in Silero's reference segmentation).
 * - The first speech frame opens a candidate segment at its start. The candidate is confirmed (a real
 *   utterance) once it holds `minSpeechSamples` worth of speech frames.
 * - `minSilenceSamples` of continuous non-speech ends the segment at the first silent frame: an `end` if it was
 *   confirmed, a `misfire` otherwise.
 * - A confirmed segment reaching `maxSpeechSamples` is ended where it stands (bounds memory and latency); if the
 *   caller is still talking, the next speech frame opens a new candidate.
 */

export interface SegmenterConfig {
  readonly threshold: number;
  readonly negThreshold: number;
  readonly minSpeechSamples: number;
  readonly minSilenceSamples: number;
  readonly maxSpeechSamples: number;
}

export type SegmentEvent =
  | { readonly type: 'start'; readonly at: number }
  | { readonly type: 'end'; readonly start: number; readonly end: number }
  | { readonly type: 'misfire'; readonly start: number; readonly end: number };

export class Segmenter {
  private triggered = false;
  private confirmed = false;
  private startAt = 0;
  private speechSamples = 0;
  /** Start of the current run of non-speech inside a segment, or -1. */
  private silenceAt = -1;

  constructor(private readonly config: SegmenterConfig) {}

  /** Inside a (possibly unconfirmed) segment. */
  get active(): boolean {
    return this.triggered;
  }

  /** Where the current segment began (meaningful while `active`). */
  get segmentStart(): number {
    return this.startAt;
  }

  /** Feeds the probability of the frame [frameStart, frameEnd); returns at most two events. */
  push(probability: number, frameStart: number, frameEnd: number): SegmentEvent[] {
    const { threshold, negThreshold, minSpeechSamples, minSilenceSamples, maxSpeechSamples } = this.config;
    const isSpeech = probability >= threshold;
    const events: SegmentEvent[] = [];

    if (!this.triggered) {
      if (!isSpeech) return events;
      this.triggered = true;
      this.confirmed = false;
      this.startAt = frameStart;
      this.speechSamples = 0;
      this.silenceAt = -1;
    }

    if (isSpeech) {
      this.speechSamples += frameEnd - frameStart;
      this.silenceAt = -1;
    } else if (probability < negThreshold && this.silenceAt < 0) {
      this.silenceAt = frameStart;
    }

    if (!this.confirmed && isSpeech && this.speechSamples >= minSpeechSamples) {
      this.confirmed = true;
      events.push({ type: 'start', at: this.startAt });
    }

    if (this.silenceAt >= 0 && frameEnd - this.silenceAt >= minSilenceSamples) {
      events.push(
        this.confirmed
          ? { type: 'end', start: this.startAt, end: this.silenceAt }
          : { type: 'misfire', start: this.startAt, end: this.silenceAt },
      );
      this.reset();
    } else if (this.confirmed && frameEnd - this.startAt >= maxSpeechSamples) {
      events.push({ type: 'end', start: this.startAt, end: frameEnd });
      this.reset();
    }
    return events;
  }

  reset(): void {
    this.triggered = false;
    this.confirmed = false;
    this.speechSamples = 0;
    this.silenceAt = -1;
  }
}
