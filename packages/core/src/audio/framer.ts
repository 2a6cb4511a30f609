/**
 * Re-chunks a stream of PCM pieces of any size into fixed-size frames (the gateway uses 160 samples,
 * 20 ms at 8 kHz). Backed by a ring buffer: a push copies only the new samples (the buffer doubles when it
 * must grow, which copies the pending samples once), and a frame is copied out in at most two pieces.
 */
export class Framer {
  readonly frameSamples: number;
  private ring: Int16Array;
  /** Capacity - 1 (capacity is a power of two). */
  private mask: number;
  /** Index of the oldest buffered sample. */
  private head = 0;
  private size = 0;

  constructor(frameSamples: number) {
    if (!Number.isSafeInteger(frameSamples) || frameSamples <= 0) {
      throw new RangeError(`frameSamples must be a positive integer, got ${String(frameSamples)}`);
    }
    this.frameSamples = frameSamples;
    let capacity = 16;
    while (capacity < frameSamples * 4) capacity *= 2;
    this.ring = new Int16Array(capacity);
    this.mask = capacity - 1;
  }

  get bufferedSamples(): number {
    return this.size;
  }

  push(samples: Int16Array): void {
    const n = samples.length;
    if (n === 0) return;
    if (this.size + n > this.ring.length) this.grow(this.size + n);
    const capacity = this.ring.length;
    const tail = (this.head + this.size) & this.mask;
    const first = Math.min(n, capacity - tail);
    this.ring.set(first === n ? samples : samples.subarray(0, first), tail);
    if (first < n) this.ring.set(samples.subarray(first), 0);
    this.size += n;
  }

  /** The next full frame as a fresh array of exactly `frameSamples`, or undefined if not enough is buffered. */
  nextFrame(): Int16Array | undefined {
    if (this.size < this.frameSamples) return undefined;
    return this.take(this.frameSamples);
  }

  /**
   * The next frame even if incomplete: the remaining samples zero-padded to `frameSamples` (undefined when
   * nothing is buffered). With a full frame or more buffered it returns that next full frame, so calling
   * it until undefined drains everything.
   */
  flushPadded(): Int16Array | undefined {
    if (this.size === 0) return undefined;
    return this.take(Math.min(this.size, this.frameSamples));
  }

  /** Drops everything buffered (the capacity is kept). */
  clear(): void {
    this.head = 0;
    this.size = 0;
  }

  /** Copies the oldest `count` (<= frameSamples, <= size) samples into a new zero-padded frame. */
  private take(count: number): Int16Array {
    const frame = new Int16Array(this.frameSamples);
    const capacity = this.ring.length;
    const first = Math.min(count, capacity - this.head);
    frame.set(this.ring.subarray(this.head, this.head + first), 0);
    if (first < count) frame.set(this.ring.subarray(0, count - first), first);
    this.head = (this.head + count) & this.mask;
    this.size -= count;
    if (this.size === 0) this.head = 0;
    return frame;
  }

  private grow(needed: number): void {
    let capacity = this.ring.length * 2;
    while (capacity < needed) capacity *= 2;
    const grown = new Int16Array(capacity);
    const first = Math.min(this.size, this.ring.length - this.head);
    grown.set(this.ring.subarray(this.head, this.head + first), 0);
    if (first < this.size) grown.set(this.ring.subarray(0, this.size - first), first);
    this.ring = grown;
    this.mask = capacity - 1;
    this.head = 0;
  }
}
