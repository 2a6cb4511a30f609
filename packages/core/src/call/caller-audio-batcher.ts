import { AVR_FRAME_MS, AVR_FRAME_SAMPLES } from '../protocol/avr-sts.js';
import type { CallClock, CallTimer } from './clock.js';

/**
 * Caller audio on its way to the provider, sent `framesPerSend()` AVR frames (20 ms each) at a time. One frame per
 * send is the default: each frame leaves as it arrives. More frames per send means fewer provider messages and system
 * calls per call-second, so a busy host can hold more calls, at the cost of the wait for the rest of the batch: with 2,
 * every other frame waits for the next one (about 20 ms). The host decides, frame by frame (the gateway batches only
 * while its event loop is busy). A batch still incomplete after `framesPerSend() x 20 ms` goes as it is: a peer that
 * pauses its audio never strands the frames held. One per call; `clear()` drops what is held and its timer.
 */
export class CallerAudioBatcher {
  private readonly held: Int16Array[] = [];
  private heldSamples = 0;
  private timer: CallTimer | undefined;

  constructor(
    private readonly send: (samples: Int16Array) => void,
    private readonly framesPerSend: () => number,
    private readonly clock: CallClock,
  ) {}

  push(samples: Int16Array): void {
    const frames = this.framesPerSend();
    if (frames <= 1 && this.heldSamples === 0) {
      this.send(samples);
      return;
    }
    this.held.push(samples);
    this.heldSamples += samples.length;
    if (this.heldSamples >= frames * AVR_FRAME_SAMPLES) this.flush();
    else this.timer ??= this.clock.setTimeout(this.flush, frames * AVR_FRAME_MS);
  }

  /** Sends what is held now (before a message that must not overtake it, e.g. a DTMF digit). */
  readonly flush = (): void => {
    this.timer?.clear();
    this.timer = undefined;
    if (this.heldSamples === 0) return;
    let samples: Int16Array;
    if (this.held.length === 1) {
      samples = this.held[0] as Int16Array;
    } else {
      samples = new Int16Array(this.heldSamples);
      let at = 0;
      for (const chunk of this.held) {
        samples.set(chunk, at);
        at += chunk.length;
      }
    }
    this.held.length = 0;
    this.heldSamples = 0;
    this.send(samples);
  };

  clear(): void {
    this.timer?.clear();
    this.timer = undefined;
    this.held.length = 0;
    this.heldSamples = 0;
  }
}
