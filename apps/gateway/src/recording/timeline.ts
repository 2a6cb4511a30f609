const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
/** Samples per channel per millisecond (AVR's 8 kHz). */
export const SAMPLES_PER_MS = 8;
/** One 20 ms frame, per channel. */
const FRAME_SAMPLES = 160;
/** AVR Core plays in 20 ms ticks: audio handed to an idle player starts within the next tick, on average half a tick later. */
const HALF_TICK_SAMPLES = FRAME_SAMPLES / 2;
/** Agent frames this close to the end of the previous one are joined to it (rounding of the call clock). */
const AGENT_JOIN_SAMPLES = 8;
/** Caller audio running late must stay late for this long (of arrival time) before it counts as a pause of the stream. */
const PAUSE_CONFIRM_SAMPLES = 3 * FRAME_SAMPLES;

export interface TimelineSettings {
  /**
   * Caller audio arriving up to this late (ms) is placed right after the caller audio before it, so network or
   * event-loop jitter never cuts a gap into it. Later than that for {@link PAUSE_CONFIRM_SAMPLES} of arrivals: AVR Core
   * paused the stream, and the audio since goes where it arrived. A burst after a stall catches up first and stays joined.
   */
  readonly callerJitterMs: number;
  /** Most audio (ms) held in memory beyond what was handed out; audio beyond it is dropped (counted). */
  readonly maxPendingMs: number;
  /** Memory reserved up front (ms): what is normally held between two takes (default 1000). */
  readonly initialPendingMs?: number;
}

/** A caller stream that fell behind its arrival times: where it did, and since when (arrival position). */
interface SuspectedPause {
  readonly at: number;
  readonly since: number;
}

/**
 * Two channels of 8 kHz audio on the call clock, left the caller and right the agent, positions in samples from the
 * start of the recording. Audio is held here from the last position handed out (`take`) on, so agent audio scheduled
 * ahead of time can still be cut by an interruption. Synchronous and allocation-free on the audio path.
 */
export class StereoTimeline {
  /** Each channel from `committed` on (planar: audio is copied in with `set`, interleaved once when handed out). */
  private channels: [Int16Array, Int16Array];
  /** What `take` hands out (one stereo sample per element), reused: one write at a time reads it. */
  private output = new Uint32Array(0);
  /** Samples per channel already handed out. */
  private committed = 0;
  /** End (exclusive) of the audio written so far. */
  private written = 0;
  private callerCursor: number | undefined;
  /** Where the caller audio last placed would have gone by its arrival time, minus where it went. */
  private callerLag = 0;
  private suspectedPause: SuspectedPause | undefined;
  private agentCursor = 0;
  private readonly jitterSamples: number;
  private readonly maxPendingSamples: number;
  /** Samples (per channel) dropped: beyond the memory bound, or arriving for a position already handed out. */
  droppedSamples = 0;

  constructor(settings: TimelineSettings) {
    this.jitterSamples = Math.round(settings.callerJitterMs * SAMPLES_PER_MS);
    this.maxPendingSamples = Math.round(settings.maxPendingMs * SAMPLES_PER_MS);
    const initial = Math.min(this.maxPendingSamples, Math.round((settings.initialPendingMs ?? 1000) * SAMPLES_PER_MS));
    this.channels = [new Int16Array(initial), new Int16Array(initial)];
  }

  /** Samples per channel handed out so far (the audio's length on disk). */
  get committedSamples(): number {
    return this.committed;
  }

  /** Caller audio that arrived at `arrivalPos`: joined to the caller audio before it unless the stream paused. */
  caller(samples: Int16Array, arrivalPos: number): void {
    const cursor = this.callerCursor ?? Math.max(0, arrivalPos);
    const lag = arrivalPos - cursor;
    const pause = this.suspectedPause;
    if (pause === undefined) {
      if (lag > this.jitterSamples) this.suspectedPause = { at: cursor, since: arrivalPos };
    } else if (lag <= this.jitterSamples) {
      this.suspectedPause = undefined; // a burst after a stall: it caught up, the audio was contiguous
    }
    this.callerLag = lag;
    this.callerCursor = cursor + this.write(0, samples, cursor);
    if (this.suspectedPause !== undefined && arrivalPos - this.suspectedPause.since >= PAUSE_CONFIRM_SAMPLES) this.confirmPause();
  }

  /**
   * One agent frame that starts playing at `playPos` (after what AVR Core had queued): placed half a tick later when
   * it starts on an idle player, right after the previous frame when it was queued behind it.
   */
  agent(frame: Int16Array, playPos: number): void {
    const tickStart = playPos + HALF_TICK_SAMPLES;
    const start = tickStart <= this.agentCursor + AGENT_JOIN_SAMPLES ? this.agentCursor : tickStart;
    this.agentCursor = start + this.write(1, frame, start);
  }

  /** AVR Core dropped its queued agent audio at `pos`: nothing of the agent channel plays from there on. */
  cutAgent(pos: number): void {
    const from = Math.max(pos, this.committed);
    if (from < this.written) this.channels[1].fill(0, from - this.committed, this.written - this.committed);
    if (this.agentCursor > pos) this.agentCursor = Math.max(pos, this.committed);
  }

  /**
   * Interleaved stereo from the last position handed out up to `upTo` (silence where nothing was written), or
   * undefined when there is nothing new; forgotten here. The array is valid until the next `take` (it is reused).
   * A caller stream suspected of pausing holds the position back until that is settled (`final`: settle it now, as a
   * pause if it is still behind).
   */
  take(upTo: number, final = false): Int16Array | undefined {
    if (this.suspectedPause !== undefined) {
      // Settled now, or once the position handed out passes the confirmation window (no caller audio came to settle it).
      if (final || upTo - this.suspectedPause.since >= PAUSE_CONFIRM_SAMPLES) this.confirmPause();
      else upTo = Math.min(upTo, this.suspectedPause.at);
    }
    upTo = Math.min(upTo, this.committed + this.maxPendingSamples);
    const count = upTo - this.committed;
    if (count <= 0) return undefined;
    this.ensureCapacity(count);
    const used = Math.max(0, this.written - this.committed);
    const [left, right] = this.channels;
    if (this.output.length < count) this.output = new Uint32Array(Math.ceil(count * 1.25));
    const out = new Int16Array(this.output.buffer, 0, count * 2);
    if (LITTLE_ENDIAN) {
      // One store per stereo sample: left in the low half, right in the high half (s16le left, then right).
      const packed = this.output;
      for (let i = 0; i < count; i++) packed[i] = ((left[i] as number) & 0xffff) | ((right[i] as number) << 16);
    } else {
      for (let i = 0, o = 0; i < count; i++, o += 2) {
        out[o] = left[i] as number;
        out[o + 1] = right[i] as number;
      }
    }
    for (const channel of this.channels) {
      if (used > count) {
        channel.copyWithin(0, count, used);
        channel.fill(0, used - count, used);
      } else {
        channel.fill(0, 0, used);
      }
    }
    this.committed = upTo;
    if (this.written < upTo) this.written = upTo;
    return out;
  }

  /** Everything from `pos` on is dropped (the call ended there). */
  truncate(pos: number): void {
    if (pos >= this.written) return;
    const from = Math.max(pos, this.committed);
    for (const channel of this.channels) channel.fill(0, from - this.committed, this.written - this.committed);
    this.written = from;
    this.agentCursor = Math.min(this.agentCursor, from);
    if (this.callerCursor !== undefined) this.callerCursor = Math.min(this.callerCursor, from);
  }

  /** Memory back (after the last `take`, or when the recording failed). */
  release(): void {
    this.channels = [new Int16Array(0), new Int16Array(0)];
    this.output = new Uint32Array(0);
    this.written = this.committed;
  }

  /** The caller stream stayed behind its arrival times: the audio since it fell behind moves to where it arrived. */
  private confirmPause(): void {
    const pause = this.suspectedPause;
    this.suspectedPause = undefined;
    if (pause === undefined || this.callerCursor === undefined) return;
    const shift = Math.min(this.callerLag, this.committed + this.maxPendingSamples - this.callerCursor);
    if (shift <= 0) return;
    const from = Math.max(pause.at, this.committed);
    const end = this.callerCursor;
    this.ensureCapacity(end + shift - this.committed);
    const left = this.channels[0];
    left.copyWithin(from - this.committed + shift, from - this.committed, end - this.committed);
    left.fill(0, from - this.committed, Math.min(end, from + shift) - this.committed);
    this.callerCursor = end + shift;
    if (this.written < this.callerCursor) this.written = this.callerCursor;
  }

  /** Copies `samples` into `channel` from `pos`; returns how far the channel's cursor advances (its length). */
  private write(channel: 0 | 1, samples: Int16Array, pos: number): number {
    const length = samples.length;
    let skip = 0;
    if (pos < this.committed) skip = this.committed - pos; // already handed out: too late to place
    const limit = this.committed + this.maxPendingSamples;
    const end = Math.min(pos + length, limit);
    const count = end - pos - skip;
    this.droppedSamples += length - Math.max(0, count);
    if (count <= 0) return length;
    this.ensureCapacity(end - this.committed);
    this.channels[channel].set(skip === 0 && count === length ? samples : samples.subarray(skip, skip + count), pos + skip - this.committed);
    if (end > this.written) this.written = end;
    return length;
  }

  private ensureCapacity(samplesPerChannel: number): void {
    const current = this.channels[0].length;
    if (samplesPerChannel <= current) return;
    let size = Math.max(current, FRAME_SAMPLES);
    while (size < samplesPerChannel) size *= 2;
    size = Math.min(size, this.maxPendingSamples + FRAME_SAMPLES);
    const used = Math.max(0, this.written - this.committed);
    this.channels = this.channels.map((channel) => {
      const grown = new Int16Array(size);
      grown.set(channel.subarray(0, used));
      return grown;
    }) as [Int16Array, Int16Array];
  }
}
