import { PcmHistory } from '@stsgate/core';
import type { VadEvent, VadOptions, VadStream } from '@stsgate/core';
import type { Inference, SileroModel, SileroRate } from './model.js';
import { Segmenter } from './segmenter.js';
import type { SegmentEvent } from './segmenter.js';

/** About 256 ms at 32 ms windows: the model sees the start of every silence, so its hangover within speech is kept. */
const QUIET_WINDOWS_BEFORE_SKIP = 8;

export interface StreamSettings extends VadOptions {
  /** Speech probability below which a frame counts as silence. */
  readonly negThreshold: number;
  readonly maxSpeechMs: number;
  /**
   * Once `QUIET_WINDOWS_BEFORE_SKIP` windows in a row were quieter than this (RMS, dBFS), further quiet windows are
   * silence without running the model (probability 0; the recurrent state, which has just seen that silence, is
   * kept): on a VoIP line much of a call is near-digital silence, and the model is the largest CPU cost per call.
   * `-Infinity` runs the model on every window.
   */
  readonly silenceFloorDbfs: number;
}

/**
 * One call's VAD. Owns its recurrent state, context window, audio history and hysteresis; only the model
 * (InferenceSession, stateless between runs) is shared.
 *
 * `process()` copies the audio into the history synchronously and runs inference serially: concurrent calls
 * are processed in call order, each resolving with the events its own audio produced.
 */
export class SileroVadStream implements VadStream {
  readonly sampleRate: 8000 | 16000;
  private readonly frameSamples: number;
  private readonly contextSamples: number;
  private readonly padSamples: number;
  private readonly segmenter: Segmenter;
  private readonly history: PcmHistory;
  private readonly window: Float32Array;
  /** Mean square of a window at the silence floor, in the model's float scale. */
  private readonly floorPower: number;
  /** Consecutive windows below the silence floor. */
  private quietWindows = 0;
  private state: Float32Array;
  /** Absolute position of the first sample not yet run through the model. */
  private processed = 0;
  private chain: Promise<unknown> = Promise.resolve();
  /** Bumped by reset(): an inference started before it is discarded. */
  private generation = 0;
  private closed = false;

  constructor(
    private readonly model: SileroModel,
    rate: SileroRate,
    settings: StreamSettings,
    private readonly onClose: (stream: SileroVadStream) => void,
  ) {
    this.sampleRate = rate.sampleRate;
    this.frameSamples = rate.frameSamples;
    this.contextSamples = rate.contextSamples;
    const samples = (ms: number): number => Math.round((ms * rate.sampleRate) / 1000);
    this.padSamples = samples(settings.speechPadMs);
    this.segmenter = new Segmenter({
      threshold: settings.threshold,
      negThreshold: settings.negThreshold,
      minSpeechSamples: samples(settings.minSpeechMs),
      minSilenceSamples: samples(settings.minSilenceMs),
      maxSpeechSamples: Math.max(samples(settings.maxSpeechMs), rate.frameSamples),
    });
    this.history = new PcmHistory(rate.sampleRate * 4);
    this.window = new Float32Array(rate.contextSamples + rate.frameSamples);
    this.state = model.initialState();
    this.floorPower = 10 ** (settings.silenceFloorDbfs / 10);
  }

  process(samples: Int16Array): Promise<VadEvent[]> {
    if (this.closed) return Promise.resolve([]);
    this.history.append(samples);
    const until = this.history.end;
    const run = this.chain.then(() => this.runUntil(until));
    this.chain = run.catch(() => undefined);
    return run;
  }

  reset(): void {
    if (this.closed) return;
    this.generation++;
    this.segmenter.reset();
    this.state = this.model.initialState();
    this.quietWindows = 0;
    this.window.fill(0, 0, this.contextSamples);
    this.history.discardBefore(this.processed - this.padSamples);
  }

  /** Resolves once an inference in flight (if any) has finished, so the model can be released after it. */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.generation++;
      this.segmenter.reset();
      this.history.release();
      this.onClose(this);
    }
    await this.chain;
  }

  private async runUntil(until: number): Promise<VadEvent[]> {
    const events: VadEvent[] = [];
    const frame = this.frameSamples;
    const context = this.contextSamples;
    while (!this.closed && until - this.processed >= frame) {
      const frameStart = this.processed;
      const generation = this.generation;
      this.history.readFloat(frameStart, frame, this.window, context);
      let probability = 0;
      this.quietWindows = this.belowFloor() ? this.quietWindows + 1 : 0;
      if (this.quietWindows > QUIET_WINDOWS_BEFORE_SKIP) {
        this.processed = frameStart + frame;
      } else {
        let result: Inference;
        try {
          result = await this.model.infer(this.window, this.state, this.sampleRate);
        } catch (error) {
          if (this.closed) return [];
          throw error;
        }
        if (this.closed) return [];
        this.processed = frameStart + frame;
        if (generation !== this.generation) {
          // reset() happened during this inference: drop its result and start from a clean context.
          this.window.fill(0, 0, context);
          continue;
        }
        this.state = result.state;
        probability = result.probability;
      }
      this.window.copyWithin(0, frame, frame + context);
      for (const event of this.segmenter.push(probability, frameStart, this.processed)) {
        events.push(this.toVadEvent(event));
      }
      this.history.discardBefore((this.segmenter.active ? this.segmenter.segmentStart : this.processed) - this.padSamples);
    }
    return events;
  }

  /** The window's frame (not its context) is quieter than the silence floor. */
  private belowFloor(): boolean {
    if (this.floorPower <= 0) return false;
    let energy = 0;
    for (let i = this.contextSamples; i < this.window.length; i++) {
      const sample = this.window[i] as number;
      energy += sample * sample;
    }
    return energy / this.frameSamples < this.floorPower;
  }

  private toVadEvent(event: SegmentEvent): VadEvent {
    switch (event.type) {
      case 'start':
        return { type: 'speech_start', atMs: this.toMs(event.at) };
      case 'end':
        return {
          type: 'speech_end',
          atMs: this.toMs(event.end),
          audio: this.history.copy(event.start - this.padSamples, Math.min(event.end + this.padSamples, this.processed)),
        };
      case 'misfire':
        return { type: 'misfire', atMs: this.toMs(event.end) };
    }
  }

  private toMs(position: number): number {
    return (position * 1000) / this.sampleRate;
  }
}
