/**
 * `GapBuffer`: what a streaming session holds while it has no connection (connecting, reconnecting) or is still
 * sending an older backlog: caller audio, bounded (the oldest audio goes first), and the control requests in between
 * (`finalize`), in order.
 */

export type GapItem<C> = { readonly kind: 'audio'; samples: Int16Array } | { readonly kind: 'control'; readonly control: C };

export interface GapBufferOptions {
  /** Audio held at most; beyond it the oldest audio is dropped (control items stay). */
  readonly maxSamples: number;
  /** Called once, the first time audio is dropped (the owner logs one warning). */
  readonly onOverflow?: () => void;
}

export class GapBuffer<C = never> {
  readonly #items: GapItem<C>[] = [];
  #samples = 0;
  #overflowed = false;

  constructor(private readonly options: GapBufferOptions) {}

  /** Samples of audio held. */
  get samples(): number {
    return this.#samples;
  }

  get isEmpty(): boolean {
    return this.#items.length === 0;
  }

  /** The newest item, e.g. to coalesce a repeated control request. */
  get last(): GapItem<C> | undefined {
    return this.#items.at(-1);
  }

  /** Holds a copy of `samples` (the caller may reuse its array); drops the oldest audio beyond the bound. */
  pushAudio(samples: Int16Array): void {
    if (samples.length === 0) return;
    this.#items.push({ kind: 'audio', samples: samples.slice() });
    this.#samples += samples.length;
    this.#trim();
  }

  pushControl(control: C): void {
    this.#items.push({ kind: 'control', control });
  }

  /** The oldest item, still held. */
  peek(): GapItem<C> | undefined {
    return this.#items[0];
  }

  /** Removes the oldest item; a control item is returned whole, an audio item up to `maxSamples` of it. */
  shift(maxSamples = Number.POSITIVE_INFINITY): GapItem<C> | undefined {
    const item = this.#items[0];
    if (item === undefined) return undefined;
    if (item.kind === 'audio' && item.samples.length > maxSamples) {
      const part = item.samples.subarray(0, maxSamples);
      item.samples = item.samples.subarray(maxSamples);
      this.#samples -= part.length;
      return { kind: 'audio', samples: part };
    }
    this.#items.shift();
    if (item.kind === 'audio') this.#samples -= item.samples.length;
    return item;
  }

  clear(): void {
    this.#items.length = 0;
    this.#samples = 0;
  }

  #trim(): void {
    while (this.#samples > this.options.maxSamples) {
      const index = this.#items.findIndex((item) => item.kind === 'audio');
      if (index < 0) return;
      const [dropped] = this.#items.splice(index, 1);
      if (dropped?.kind === 'audio') this.#samples -= dropped.samples.length;
      if (!this.#overflowed) {
        this.#overflowed = true;
        this.options.onOverflow?.();
      }
    }
  }
}
