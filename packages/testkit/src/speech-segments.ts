import { AVR_SAMPLE_RATE } from '@stsgate/core';

export interface SpeechSegment {
  /** Start of the first voiced frame, ms from the start of the signal. */
  readonly startMs: number;
  /** End of the last voiced frame (the hangover is not included). */
  readonly endMs: number;
}

export interface SpeechDetectorOptions {
  /** Sample rate of the input (default 8000). */
  readonly sampleRate?: number;
  /** Analysis frame length (default 20 ms). */
  readonly frameMs?: number;
  /** A frame is voiced when its RMS is at or above this level in dBFS (default -40). */
  readonly thresholdDbfs?: number;
  /** Unvoiced time that ends a segment; shorter pauses (commas, between words) are bridged (default 400 ms). */
  readonly hangoverMs?: number;
  /** Segments with less voiced time than this are dropped as clicks/noise (default 60 ms). */
  readonly minSpeechMs?: number;
}

/**
 * A simple energy detector: frame RMS against a fixed threshold, with a hangover that bridges pauses between
 * words. Deterministic and good enough for clean synthetic or studio speech; not a VAD for noisy lines.
 */
export function detectSpeechSegments(samples: Int16Array, options: SpeechDetectorOptions = {}): SpeechSegment[] {
  const sampleRate = options.sampleRate ?? AVR_SAMPLE_RATE;
  const frameMs = options.frameMs ?? 20;
  const thresholdDbfs = options.thresholdDbfs ?? -40;
  const hangoverMs = options.hangoverMs ?? 400;
  const minSpeechMs = options.minSpeechMs ?? 60;
  const frameSamples = Math.round((sampleRate * frameMs) / 1000);
  if (frameSamples < 1) throw new Error(`frame of ${frameMs} ms at ${sampleRate} Hz has no samples`);
  // Compare mean squares to avoid a sqrt/log per frame.
  const thresholdMeanSquare = (32768 * 10 ** (thresholdDbfs / 20)) ** 2;
  const hangoverFrames = Math.ceil(hangoverMs / frameMs);
  const frameCount = Math.ceil(samples.length / frameSamples);

  const segments: SpeechSegment[] = [];
  let open: { startFrame: number; lastVoiced: number; voiced: number } | undefined;
  const closeSegment = (segment: { startFrame: number; lastVoiced: number; voiced: number }): void => {
    if (segment.voiced * frameMs >= minSpeechMs) {
      segments.push({
        startMs: segment.startFrame * frameMs,
        endMs: Math.min((segment.lastVoiced + 1) * frameMs, (samples.length * 1000) / sampleRate),
      });
    }
  };

  for (let frame = 0; frame < frameCount; frame++) {
    const from = frame * frameSamples;
    const to = Math.min(from + frameSamples, samples.length);
    let energy = 0;
    for (let i = from; i < to; i++) {
      const s = samples[i] ?? 0;
      energy += s * s;
    }
    // A short final frame is judged over a full frame length, so a few loud samples do not count as speech.
    const voiced = energy / frameSamples >= thresholdMeanSquare;
    if (voiced) {
      if (open === undefined) open = { startFrame: frame, lastVoiced: frame, voiced: 1 };
      else {
        open.lastVoiced = frame;
        open.voiced++;
      }
    } else if (open !== undefined && frame - open.lastVoiced >= hangoverFrames) {
      closeSegment(open);
      open = undefined;
    }
  }
  if (open !== undefined) closeSegment(open);
  return segments;
}
