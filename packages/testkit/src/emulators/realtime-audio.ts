/**
 * Audio for the OpenAI Realtime emulator: decoding client audio in the session input format, encoding scripted
 * 24 kHz replies into the session output format, and a frame-energy VAD driven by the session's turn detection.
 */
import { createResampler, decodeAlaw, decodeMulaw, encodeAlaw, encodeMulaw } from '@stsgate/core';
import type { RealtimeAudioFormat, RealtimeTurnDetection } from './realtime-protocol.js';

export function formatRate(format: RealtimeAudioFormat): 24000 | 8000 {
  return format.type === 'audio/pcm' ? 24000 : 8000;
}

export function bytesPerMs(format: RealtimeAudioFormat): number {
  return format.type === 'audio/pcm' ? 48 : 8;
}

/** Decodes raw bytes of `format` to 16-bit samples at the format's rate. PCM needs an even byte count. */
export function decodeAudio(bytes: Uint8Array, format: RealtimeAudioFormat): Int16Array {
  switch (format.type) {
    case 'audio/pcm': {
      const out = new Int16Array(bytes.length >> 1);
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let i = 0; i < out.length; i++) out[i] = view.getInt16(i * 2, true);
      return out;
    }
    case 'audio/pcmu':
      return decodeMulaw(bytes);
    case 'audio/pcma':
      return decodeAlaw(bytes);
    default: {
      const exhaustive: never = format;
      throw new Error(`unsupported format ${JSON.stringify(exhaustive)}`);
    }
  }
}

/** Encodes 24 kHz PCM into `format` (G.711 formats are resampled to 8 kHz first). */
export function encodeAudio(pcm24k: Int16Array, format: RealtimeAudioFormat): Buffer {
  switch (format.type) {
    case 'audio/pcm':
      return pcmBytes(pcm24k);
    case 'audio/pcmu':
      return Buffer.from(encodeMulaw(to8k(pcm24k)));
    case 'audio/pcma':
      return Buffer.from(encodeAlaw(to8k(pcm24k)));
    default: {
      const exhaustive: never = format;
      throw new Error(`unsupported format ${JSON.stringify(exhaustive)}`);
    }
  }
}

export function pcmBytes(samples: Int16Array): Buffer {
  const out = Buffer.alloc(samples.length * 2);
  for (let i = 0; i < samples.length; i++) out.writeInt16LE(samples[i] as number, i * 2);
  return out;
}

function to8k(pcm24k: Int16Array): Int16Array {
  const resampler = createResampler(24000, 8000);
  const head = resampler.process(pcm24k);
  const tail = resampler.flush();
  const out = new Int16Array(head.length + tail.length);
  out.set(head, 0);
  out.set(tail, head.length);
  return out;
}

// ---- energy VAD -------------------------------------------------------------------------------------------------

export type VadEvent = { readonly kind: 'start'; readonly atMs: number } | { readonly kind: 'stop'; readonly atMs: number };

export interface VadSettings {
  /** Fixed detection threshold in dBFS; default derived from turn_detection.threshold: -50 + 40 x threshold. */
  readonly thresholdDbfs?: number;
  /** Voiced time needed before speech_started (default 30 ms). */
  readonly minSpeechMs?: number;
}

const FRAME_MS = 10;

/** Silence hangover for semantic_vad (the real one is a model; this maps eagerness to a fixed pause). */
const SEMANTIC_SILENCE_MS = { low: 1000, medium: 500, auto: 500, high: 250 } as const;

/**
 * 10 ms frame RMS against a threshold. Speech starts after `minSpeechMs` of consecutive voiced frames (reported
 * at the first of them) and stops once the silence run reaches the turn detection's silence duration (reported
 * at the end of that run, like `audio_end_ms` which includes the silence).
 */
export class EnergyVad {
  #pending = new Int16Array(0);
  #pendingRate = 0;
  #speaking = false;
  #voicedRunMs = 0;
  #voicedStartMs = 0;
  #silenceRunMs = 0;

  constructor(private readonly settings: VadSettings = {}) {}

  get speaking(): boolean {
    return this.#speaking;
  }

  reset(): void {
    this.#pending = new Int16Array(0);
    this.#speaking = false;
    this.#voicedRunMs = 0;
    this.#silenceRunMs = 0;
  }

  /** Feeds samples whose first sample (or the pending partial frame's first) is at audio clock `endMs - duration`. */
  process(samples: Int16Array, rate: number, endMs: number, detection: RealtimeTurnDetection): VadEvent[] {
    if (rate !== this.#pendingRate) {
      this.#pending = new Int16Array(0);
      this.#pendingRate = rate;
    }
    const all = new Int16Array(this.#pending.length + samples.length);
    all.set(this.#pending, 0);
    all.set(samples, this.#pending.length);
    const frame = (rate * FRAME_MS) / 1000;
    const frames = Math.floor(all.length / frame);
    this.#pending = all.slice(frames * frame);
    const firstMs = endMs - (all.length * 1000) / rate;
    const threshold = this.settings.thresholdDbfs ?? (detection.type === 'server_vad' ? -50 + 40 * detection.threshold : -30);
    const silenceMs = detection.type === 'server_vad' ? detection.silence_duration_ms : SEMANTIC_SILENCE_MS[detection.eagerness];
    const minSpeechMs = this.settings.minSpeechMs ?? 30;
    const events: VadEvent[] = [];
    for (let f = 0; f < frames; f++) {
      let energy = 0;
      for (let i = f * frame; i < (f + 1) * frame; i++) {
        const s = all[i] as number;
        energy += s * s;
      }
      const rms = Math.sqrt(energy / frame);
      const dbfs = rms > 0 ? 20 * Math.log10(rms / 32768) : -Infinity;
      const voiced = dbfs > threshold;
      const frameStartMs = firstMs + f * FRAME_MS;
      if (!this.#speaking) {
        if (voiced) {
          if (this.#voicedRunMs === 0) this.#voicedStartMs = frameStartMs;
          this.#voicedRunMs += FRAME_MS;
          if (this.#voicedRunMs >= minSpeechMs) {
            this.#speaking = true;
            this.#silenceRunMs = 0;
            events.push({ kind: 'start', atMs: Math.round(this.#voicedStartMs) });
          }
        } else {
          this.#voicedRunMs = 0;
        }
      } else if (voiced) {
        this.#silenceRunMs = 0;
      } else {
        this.#silenceRunMs += FRAME_MS;
        if (this.#silenceRunMs >= silenceMs) {
          this.#speaking = false;
          this.#voicedRunMs = 0;
          this.#silenceRunMs = 0;
          events.push({ kind: 'stop', atMs: Math.round(frameStartMs + FRAME_MS) });
        }
      }
    }
    return events;
  }
}
