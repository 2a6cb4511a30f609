/**
 * Caller-audio segmentation of the speech-to-text emulators (Soniox STT, Speechmatics RT and Flow), all on the audio
 * clock: 10 ms analysis frames, an energy decision per frame, the open utterance with its audio and the view of it a
 * recogniser gets; and the timing of a transcript's words. Nothing here holds module-level mutable state.
 */
import type { SonioxUtterance } from './soniox-stt.js';

/** Mean power of `samples` in dBFS (-120 for silence). */
export function levelDbfs(samples: Int16Array): number {
  let energy = 0;
  for (const sample of samples) energy += sample * sample;
  return 10 * Math.log10(energy / samples.length / 32768 ** 2 + 1e-12);
}

/** An utterance being collected, from its first voiced frame to the last frame analysed. */
export interface OpenUtterance {
  /** 0-based among the utterances that held enough speech. */
  readonly index: number;
  readonly startSample: number;
  /** Stream sample count at the end of its last voiced frame. */
  lastVoicedEnd: number;
  voicedFrames: number;
  readonly chunks: Int16Array[];
  length: number;
  /** Samples since the last partial result (the emulator resets it). */
  sincePartial: number;
}

/**
 * Cuts decoded audio into 10 ms frames (at the current rate) and groups them into utterances: a frame is voiced when
 * its level is at or above `thresholdDbfs`; the first voiced frame opens an utterance, every later frame joins it
 * until the emulator ends it. An utterance with less than `minSpeechMs` of voiced frames does not count.
 */
export class SpeechSegmenter {
  #rate = 0;
  #frame = new Int16Array(0);
  #fill = 0;
  #samples = 0;
  #open: OpenUtterance | undefined;
  #count = 0;

  constructor(
    rate: number,
    private readonly thresholdDbfs: number,
    private readonly minSpeechMs: number,
  ) {
    this.setRate(rate);
  }

  get rate(): number {
    return this.#rate;
  }

  /** Samples analysed so far. */
  get samples(): number {
    return this.#samples;
  }

  /** Samples waiting in the incomplete frame. */
  get pending(): number {
    return this.#fill;
  }

  get open(): OpenUtterance | undefined {
    return this.#open;
  }

  /** Frames of 10 ms at `rate` from now on (an incomplete frame is dropped). */
  setRate(rate: number): void {
    this.#rate = rate;
    this.#frame = new Int16Array(Math.max(1, Math.round(rate / 100)));
    this.#fill = 0;
  }

  /** The complete frames `samples` fills (copies); the rest waits for the next call. Stopping early drops the rest. */
  *frames(samples: Int16Array): Generator<Int16Array, void, undefined> {
    for (let i = 0; i < samples.length; ) {
      const take = Math.min(samples.length - i, this.#frame.length - this.#fill);
      this.#frame.set(samples.subarray(i, i + take), this.#fill);
      this.#fill += take;
      i += take;
      if (this.#fill === this.#frame.length) {
        this.#fill = 0;
        yield this.#frame.slice();
      }
    }
  }

  /** The incomplete frame (at a finalize or the end of the audio), undefined when there is none. */
  flush(): Int16Array | undefined {
    if (this.#fill === 0) return undefined;
    const rest = this.#frame.slice(0, this.#fill);
    this.#fill = 0;
    return rest;
  }

  /** Analyses one frame and adds it to the open utterance (a voiced frame opens one); true when it is voiced. */
  addFrame(frame: Int16Array): boolean {
    const voiced = levelDbfs(frame) >= this.thresholdDbfs;
    const start = this.#samples;
    this.#samples += frame.length;
    const open = this.#open;
    if (open !== undefined) {
      open.chunks.push(frame);
      open.length += frame.length;
      open.sincePartial += frame.length;
    }
    if (voiced) {
      if (open === undefined) {
        this.#open = { index: this.#count, startSample: start, lastVoicedEnd: this.#samples, voicedFrames: 1, chunks: [frame], length: frame.length, sincePartial: frame.length };
      } else {
        open.lastVoicedEnd = this.#samples;
        open.voicedFrames++;
      }
    }
    return voiced;
  }

  /** Samples analysed since the end of the utterance's last voiced frame. */
  silenceAfter(open: OpenUtterance): number {
    return this.#samples - open.lastVoicedEnd;
  }

  /** Whether the utterance holds `minSpeechMs` of voiced frames. */
  longEnough(open: OpenUtterance): boolean {
    return open.voicedFrames * 10 >= this.minSpeechMs;
  }

  /** Ends the open utterance; returns it when it held enough speech (the next one then gets the next index). */
  end(): OpenUtterance | undefined {
    const open = this.#open;
    this.#open = undefined;
    if (open === undefined || !this.longEnough(open)) return undefined;
    this.#count++;
    return open;
  }

  /** What the recogniser sees: the audio from the first to the last voiced frame, times in whole ms. */
  view(open: OpenUtterance, complete: boolean): SonioxUtterance {
    const all = new Int16Array(open.length);
    let offset = 0;
    for (const chunk of open.chunks) {
      all.set(chunk, offset);
      offset += chunk.length;
    }
    const voicedLength = open.lastVoicedEnd - open.startSample;
    return {
      index: open.index,
      startMs: Math.round(this.ms(open.startSample)),
      audioMs: Math.round(this.ms(voicedLength)),
      samples: all.subarray(0, voicedLength),
      sampleRate: this.#rate,
      complete,
    };
  }

  /** `samples` in ms at the current rate (not rounded). */
  ms(samples: number): number {
    return (samples * 1000) / this.#rate;
  }

  /** `ms` in samples at the current rate (rounded). */
  samplesIn(ms: number): number {
    return Math.round((ms * this.#rate) / 1000);
  }
}

// ---- transcript words -----------------------------------------------------------------------------------------------

/** The words of `text` (split on white space). */
export function splitWords(text: string): string[] {
  return text.split(/\s+/).filter((word) => word.length > 0);
}

export interface TimedWord {
  readonly index: number;
  /** The word without its trailing punctuation (may be empty). */
  readonly core: string;
  /** Its trailing `.,!?;:` characters (may be empty). */
  readonly punctuation: string;
  readonly startMs: number;
  readonly endMs: number;
}

/** `words` spread evenly over [startMs, endMs] (times not rounded), each split into its core and trailing punctuation. */
export function spreadWords(words: readonly string[], startMs: number, endMs: number): TimedWord[] {
  const span = Math.max(0, endMs - startMs);
  return words.map((word, index) => {
    const match = /^(.*?)([.,!?;:]*)$/.exec(word);
    return {
      index,
      core: match?.[1] ?? word,
      punctuation: match?.[2] ?? '',
      startMs: startMs + (span * index) / words.length,
      endMs: startMs + (span * (index + 1)) / words.length,
    };
  });
}
