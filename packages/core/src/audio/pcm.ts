/** Small PCM helpers shared by the gateway and the adapters. */

/** Duration in milliseconds of `samples` mono samples at `sampleRate` (fractional, not rounded). */
export function samplesToMs(samples: number, sampleRate: number): number {
  return (samples * 1000) / sampleRate;
}

/** Number of whole samples closest to `ms` milliseconds at `sampleRate`. */
export function msToSamples(ms: number, sampleRate: number): number {
  return Math.round((ms * sampleRate) / 1000);
}

/** Int16 PCM to float in [-1, 1): each sample divided by 32768. */
export function int16ToFloat32(pcm: Int16Array): Float32Array {
  const n = pcm.length;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (pcm[i] as number) / 32768;
  return out;
}

/**
 * Float PCM to Int16: scaled by 32768, rounded to nearest, clamped to [-32768, 32767] (never wraps).
 * NaN becomes 0.
 */
export function float32ToInt16(samples: Float32Array): Int16Array {
  const n = samples.length;
  const out = new Int16Array(n);
  for (let i = 0; i < n; i++) {
    const v = (samples[i] as number) * 32768;
    if (v >= 32767) out[i] = 32767;
    else if (v <= -32768) out[i] = -32768;
    else if (v === v) out[i] = Math.round(v);
    // NaN stays 0
  }
  return out;
}
