/** Web Audio's float samples <-> PCM s16, and levels. */

export function floatToPcm16(input: Float32Array): Int16Array {
  const out = new Int16Array(input.length);
  for (let i = 0; i < input.length; i++) {
    const scaled = Math.round((input[i] as number) * 32768);
    out[i] = scaled > 32767 ? 32767 : scaled < -32768 ? -32768 : scaled;
  }
  return out;
}

export function pcm16ToFloat(input: Int16Array): Float32Array {
  const out = new Float32Array(input.length);
  for (let i = 0; i < input.length; i++) out[i] = (input[i] as number) / 32768;
  return out;
}

/** Sum of squares of float samples (full scale 1). */
export function energyOf(samples: Float32Array): number {
  let energy = 0;
  for (const sample of samples) energy += sample * sample;
  return energy;
}

/** Mean power in dBFS of `count` float samples with this energy (-120 for digital silence). */
export function levelDbfs(energy: number, count: number): number {
  return count === 0 ? -120 : 10 * Math.log10(energy / count + 1e-12);
}

/** Mean power of PCM s16 samples in dBFS. */
export function pcmLevelDbfs(samples: Int16Array): number {
  let energy = 0;
  for (const sample of samples) energy += sample * sample;
  return levelDbfs(energy / 32768 ** 2, samples.length);
}
