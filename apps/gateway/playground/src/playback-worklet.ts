// The agent's voice: 8 kHz audio from the gateway, upsampled to the context rate by core's resampler, played from a
// jitter buffer. A flush (AVR `interruption`) empties it between two render quanta, so the next quantum is silent.
import { createResampler } from '../../../../packages/core/src/audio/resampler.js';
import { JitterBuffer } from './jitter-buffer.js';
import { PLAYBACK_PROCESSOR, type PlaybackCommand, type PlaybackReport } from './messages.js';
import { energyOf, levelDbfs, pcm16ToFloat } from './pcm.js';
import { contextSampleRate, worklet, type WorkletProcessor } from './worklet-scope.js';

const AGENT_RATE = 8000;
/** Queued before playback starts; the gateway already sends up to OUTBOUND_LEAD_MS (120) ahead of real time. */
const JITTER_TARGET_MS = 60;
/** A provider cannot queue more than this (the gateway paces, so only a misbehaving server gets near it). */
const JITTER_MAX_MS = 30_000;
/** Output quanta quieter than this are silence (the echoed pauses of a loopback reply, dither). */
const AUDIBLE_DBFS = -55;
/** The agent's turn is over after this long without audible output. */
const QUIET_AFTER_S = 0.5;
const REPORT_EVERY_S = 0.05;

class PlaybackProcessor extends worklet.AudioWorkletProcessor implements WorkletProcessor {
  private readonly rate = contextSampleRate();
  private readonly resampler = createResampler(AGENT_RATE, this.rate);
  private readonly buffer = new JitterBuffer(this.samplesIn(JITTER_TARGET_MS), this.samplesIn(JITTER_MAX_MS));
  /** The resampler holds input whose output (its filter delay) is not queued yet. */
  private resamplerHoldsInput = false;
  private speaking = false;
  private lastAudibleEnd = 0;
  private audibleSamples = 0;
  private windowEnergy = 0;
  private windowSamples = 0;
  private nextReport = 0;

  constructor() {
    super();
    this.port.onmessage = (event: MessageEvent<PlaybackCommand>) => this.command(event.data);
  }

  process(_inputs: Float32Array[][], outputs: Float32Array[][]): boolean {
    const channel = outputs[0]?.[0];
    if (channel === undefined) return true;
    if (this.resamplerHoldsInput && this.buffer.bufferedSamples < channel.length) {
      // AVR marks no end of reply: when the queue is about to run dry, release the resampler's last few ms.
      this.queue(this.resampler.flush());
      this.resamplerHoldsInput = false;
    }
    this.buffer.read(channel);
    this.measure(channel);
    return true;
  }

  private command(command: PlaybackCommand): void {
    if (command.type === 'audio') {
      this.queue(this.resampler.process(command.samples));
      this.resamplerHoldsInput = true;
      return;
    }
    const discarded = this.buffer.clear();
    this.resampler.reset();
    this.resamplerHoldsInput = false;
    const wasSpeaking = this.speaking;
    this.speaking = false;
    this.post({ type: 'flushed', lastAudibleEnd: this.lastAudibleEnd, discardedMs: this.msIn(discarded), wasSpeaking });
  }

  private queue(samples: Int16Array): void {
    const dropped = this.buffer.push(pcm16ToFloat(samples));
    if (dropped > 0) this.post({ type: 'overflow', droppedMs: this.msIn(dropped) });
  }

  private measure(output: Float32Array): void {
    const start = worklet.currentTime;
    const end = start + output.length / this.rate;
    const energy = energyOf(output);
    this.windowEnergy += energy;
    this.windowSamples += output.length;
    if (levelDbfs(energy, output.length) > AUDIBLE_DBFS) {
      this.audibleSamples += output.length;
      this.lastAudibleEnd = end;
      if (!this.speaking) {
        this.speaking = true;
        this.post({ type: 'speaking', at: start });
      }
    } else if (this.speaking && end - this.lastAudibleEnd > QUIET_AFTER_S) {
      this.speaking = false;
      this.post({ type: 'quiet' });
    }
    if (end >= this.nextReport) {
      this.nextReport = end + REPORT_EVERY_S;
      this.post({ type: 'level', levelDbfs: levelDbfs(this.windowEnergy, this.windowSamples), audibleMs: this.msIn(this.audibleSamples) });
      this.windowEnergy = 0;
      this.windowSamples = 0;
    }
  }

  private post(report: PlaybackReport): void {
    this.port.postMessage(report);
  }

  private samplesIn(ms: number): number {
    return Math.round((ms * this.rate) / 1000);
  }

  private msIn(samples: number): number {
    return (samples * 1000) / this.rate;
  }
}

worklet.registerProcessor(PLAYBACK_PROCESSOR, PlaybackProcessor);
