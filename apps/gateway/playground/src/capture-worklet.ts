// The caller's voice: microphone audio at the context rate, low-passed and decimated to AVR's 8 kHz by core's
// resampler (no sample is dropped: its anti-alias filter stops at 4 kHz), sent to the page in 20 ms frames.
import { createResampler } from '../../../../packages/core/src/audio/resampler.js';
import { CAPTURE_PROCESSOR, type CapturedFrame } from './messages.js';
import { floatToPcm16 } from './pcm.js';
import { contextSampleRate, worklet, type WorkletProcessor } from './worklet-scope.js';

const AVR_RATE = 8000;
const FRAME_MS = 20;
const FRAME_SAMPLES = (AVR_RATE * FRAME_MS) / 1000;

class CaptureProcessor extends worklet.AudioWorkletProcessor implements WorkletProcessor {
  private readonly resampler = createResampler(contextSampleRate(), AVR_RATE);
  private frame = new Int16Array(FRAME_SAMPLES);
  private filled = 0;
  private framesSent = 0;
  /** Context time of the first captured sample. */
  private startTime: number | undefined;

  process(inputs: Float32Array[][]): boolean {
    // The node takes one channel (the graph down-mixes a stereo microphone).
    const channel = inputs[0]?.[0];
    if (channel === undefined) return true;
    this.startTime ??= worklet.currentTime;
    for (const sample of this.resampler.process(floatToPcm16(channel))) {
      this.frame[this.filled++] = sample;
      if (this.filled === FRAME_SAMPLES) this.send();
    }
    return true;
  }

  private send(): void {
    this.framesSent++;
    const frame: CapturedFrame = { samples: this.frame, endTime: (this.startTime ?? 0) + (this.framesSent * FRAME_MS) / 1000 };
    this.port.postMessage(frame, [this.frame.buffer]);
    this.frame = new Int16Array(FRAME_SAMPLES);
    this.filled = 0;
  }
}

worklet.registerProcessor(CAPTURE_PROCESSOR, CaptureProcessor);
