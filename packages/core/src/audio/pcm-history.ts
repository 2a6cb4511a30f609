/**
 * A growable PCM buffer addressed by absolute stream position (sample index since the stream opened).
 * The owner appends at the end and discards from the front; memory is reused (compaction on append),
 * so steady-state operation allocates nothing.
 */
export class PcmHistory {
  private buffer: Int16Array;
  /** Index in `buffer` of the absolute position `firstIndex`. */
  private offset = 0;
  private length = 0;
  private firstIndex = 0;

  constructor(initialCapacity: number) {
    this.buffer = new Int16Array(Math.max(1, initialCapacity));
  }

  /** Absolute position of the oldest sample still held. */
  get first(): number {
    return this.firstIndex;
  }

  /** Absolute position just after the newest sample (= samples appended so far). */
  get end(): number {
    return this.firstIndex + this.length;
  }

  append(samples: Int16Array): void {
    const n = samples.length;
    if (n === 0) return;
    if (this.offset + this.length + n > this.buffer.length) {
      if (this.length + n <= this.buffer.length) {
        this.buffer.copyWithin(0, this.offset, this.offset + this.length);
      } else {
        const grown = new Int16Array(Math.max(this.buffer.length * 2, this.length + n));
        grown.set(this.buffer.subarray(this.offset, this.offset + this.length));
        this.buffer = grown;
      }
      this.offset = 0;
    }
    this.buffer.set(samples, this.offset + this.length);
    this.length += n;
  }

  /** Forget every sample before absolute position `position`. */
  discardBefore(position: number): void {
    const drop = Math.min(this.length, position - this.firstIndex);
    if (drop <= 0) return;
    this.offset += drop;
    this.length -= drop;
    this.firstIndex += drop;
    if (this.length === 0) this.offset = 0;
  }

  /** A fresh copy of [from, to), clamped to what is held. */
  copy(from: number, to: number): Int16Array {
    const start = Math.max(from, this.firstIndex);
    const stop = Math.min(to, this.end);
    if (stop <= start) return new Int16Array(0);
    const base = this.offset - this.firstIndex;
    return this.buffer.slice(base + start, base + stop);
  }

  /** Writes [from, from + count) as float in [-1, 1) into `target` at `targetOffset`; the range must be held. */
  readFloat(from: number, count: number, target: Float32Array, targetOffset: number): void {
    if (from < this.firstIndex || from + count > this.end) throw new RangeError('PCM range is not buffered');
    const base = this.offset + (from - this.firstIndex);
    const source = this.buffer;
    for (let i = 0; i < count; i++) target[targetOffset + i] = (source[base + i] as number) / 32768;
  }

  /** Drops everything and releases the memory; positions keep counting from `end`. */
  release(): void {
    this.firstIndex = this.end;
    this.length = 0;
    this.offset = 0;
    this.buffer = new Int16Array(1);
  }
}
