/**
 * Models AVR Core's playout of the agent audio the gateway hands it: AVR Core queues what it receives and
 * plays it in real time, one queue, in order. Audio enqueued at time t starts playing at
 * max(t, end of the audio already queued). From that the clock answers how much of each reply (segment)
 * the caller has actually heard, which the gateway needs for barge-in (truncating the transcript at what
 * was heard) and for pacing.
 *
 * Internally every enqueued piece occupies an interval of the cumulative audio timeline (ms of audio ever
 * enqueued, minus what flush() discarded). The audio played so far is that total minus what is still
 * queued, so a segment's heard time is the overlap of its intervals with the played prefix. Consecutive
 * pieces of one segment are adjacent on that timeline even across underruns, so they merge into one
 * interval. Only the most recent MAX_SEGMENTS segments are remembered.
 */

/** Segments remembered; older ones are forgotten (heardMs/sentMs then report 0). */
const MAX_SEGMENTS = 16;

interface Segment {
  /** Enqueued audio, ms (flush() does not reduce it). */
  sent: number;
  /** [start, end) intervals on the audio timeline, flattened: starts at even indices, ends at odd. */
  spans: number[];
}

export class PlayoutClock {
  private readonly now: () => number;
  private readonly segments = new Map<string, Segment>();
  /** Audio timeline position (ms) where the next enqueued audio goes: all audio still kept, played or not. */
  private audioEnd = 0;
  /** Wall-clock time (ms) when the queued audio will have finished playing. */
  private playEnd = -Infinity;

  /** @param now millisecond clock; defaults to performance.now. Tests inject a fake one. */
  constructor(now: () => number = () => performance.now()) {
    this.now = now;
  }

  /** Records `durationMs` of audio of `segmentId` handed to AVR Core now. */
  enqueue(segmentId: string, durationMs: number): void {
    if (!Number.isFinite(durationMs) || durationMs < 0) {
      throw new RangeError(`durationMs must be a finite number >= 0, got ${String(durationMs)}`);
    }
    const t = this.now();
    let segment = this.segments.get(segmentId);
    if (segment === undefined) {
      segment = { sent: 0, spans: [] };
      this.segments.set(segmentId, segment);
      if (this.segments.size > MAX_SEGMENTS) {
        const oldest = this.segments.keys().next();
        if (oldest.done !== true) this.segments.delete(oldest.value);
      }
    }
    segment.sent += durationMs;
    if (durationMs === 0) return;

    const start = this.audioEnd;
    const end = start + durationMs;
    const spans = segment.spans;
    const last = spans.length - 1;
    if (last > 0 && spans[last] === start) spans[last] = end;
    else spans.push(start, end);
    this.audioEnd = end;
    this.playEnd = Math.max(t, this.playEnd) + durationMs;
  }

  /** How much of `segmentId` the caller has heard so far, ms (never more than was enqueued). */
  heardMs(segmentId: string): number {
    const segment = this.segments.get(segmentId);
    if (segment === undefined) return 0;
    const played = this.playedPosition();
    const spans = segment.spans;
    let heard = 0;
    for (let i = 0; i < spans.length; i += 2) {
      const start = spans[i] as number;
      const end = spans[i + 1] as number;
      if (played <= start) break;
      heard += Math.min(played, end) - start;
    }
    return Math.min(heard, segment.sent); // guards against float rounding of the interval ends
  }

  /** How much audio of `segmentId` was enqueued, ms. */
  sentMs(segmentId: string): number {
    return this.segments.get(segmentId)?.sent ?? 0;
  }

  /** Audio enqueued but not yet played, ms (AVR Core's buffer depth). */
  queuedMs(): number {
    return Math.max(0, this.playEnd - this.now());
  }

  isPlaying(): boolean {
    return this.queuedMs() > 0;
  }

  /**
   * AVR Core dropped its unplayed audio (interruption): the queue empties now, and what each segment had
   * been heard stays frozen at its current value.
   */
  flush(): void {
    const played = this.playedPosition();
    for (const segment of this.segments.values()) {
      const spans = segment.spans;
      // Drop or cut intervals beyond the played position.
      let keep = spans.length;
      while (keep > 0 && (spans[keep - 2] as number) >= played) keep -= 2;
      spans.length = keep;
      if (keep > 0 && (spans[keep - 1] as number) > played) spans[keep - 1] = played;
    }
    this.audioEnd = played;
    this.playEnd = Math.min(this.playEnd, this.now());
  }

  private playedPosition(): number {
    return this.audioEnd - this.queuedMs();
  }
}
