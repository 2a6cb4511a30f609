/**
 * Agent audio waiting to be played, at the output rate. Network delivery is uneven, so playback starts only once
 * `targetSamples` are queued (or the first queued audio has waited that long, so a short reply is not held back
 * forever), and after running dry it waits again: a late packet costs one gap, not a crackle on every quantum.
 */
export class JitterBuffer {
  private readonly chunks: Float32Array[] = [];
  /** Read position in chunks[0]. */
  private offset = 0;
  private queued = 0;
  private playing = false;
  /** Output samples asked for while audio waited for the target (not playing). */
  private waited = 0;

  constructor(
    private readonly targetSamples: number,
    private readonly maxSamples: number,
  ) {}

  get bufferedSamples(): number {
    return this.queued;
  }

  /** Queues samples; beyond the maximum the oldest are dropped. Returns how many were dropped. */
  push(samples: Float32Array): number {
    if (samples.length === 0) return 0;
    this.chunks.push(samples);
    this.queued += samples.length;
    let dropped = 0;
    while (this.queued > this.maxSamples) dropped += this.skip(this.queued - this.maxSamples);
    return dropped;
  }

  /** Fills `out` with queued audio, silence for the rest. Returns how many samples were audio. */
  read(out: Float32Array): number {
    if (!this.playing) {
      if (this.queued === 0) {
        out.fill(0);
        return 0;
      }
      this.waited += out.length;
      if (this.queued < this.targetSamples && this.waited < this.targetSamples) {
        out.fill(0);
        return 0;
      }
      this.playing = true;
    }
    let written = 0;
    while (written < out.length && this.chunks.length > 0) {
      const chunk = this.chunks[0] as Float32Array;
      const count = Math.min(out.length - written, chunk.length - this.offset);
      out.set(chunk.subarray(this.offset, this.offset + count), written);
      written += count;
      this.advance(count);
    }
    if (written < out.length) {
      out.fill(0, written);
      this.playing = false;
      this.waited = 0;
    }
    return written;
  }

  /** Drops everything queued. Returns how many samples were dropped. */
  clear(): number {
    const dropped = this.queued;
    this.chunks.length = 0;
    this.offset = 0;
    this.queued = 0;
    this.playing = false;
    this.waited = 0;
    return dropped;
  }

  /** Drops up to `count` of the oldest samples (at most the rest of the first chunk). */
  private skip(count: number): number {
    const chunk = this.chunks[0] as Float32Array;
    const skipped = Math.min(count, chunk.length - this.offset);
    this.advance(skipped);
    return skipped;
  }

  private advance(count: number): void {
    this.offset += count;
    this.queued -= count;
    if (this.offset === (this.chunks[0] as Float32Array).length) {
      this.chunks.shift();
      this.offset = 0;
    }
  }
}
