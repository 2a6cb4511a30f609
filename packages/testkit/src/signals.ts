/** Test signals and measurements on 16-bit PCM, shared by the adapters' and the gateway's tests. */

export function silence(ms: number, rate = 8000): Int16Array {
  return new Int16Array(Math.round((ms * rate) / 1000));
}

/** Deterministic uniform white noise with the given peak amplitude. */
export function whiteNoise(ms: number, peak: number, seed = 1, rate = 8000): Int16Array {
  const out = new Int16Array(Math.round((ms * rate) / 1000));
  let state = seed >>> 0 || 1;
  for (let i = 0; i < out.length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    out[i] = Math.round(((state >>> 0) / 0xffffffff - 0.5) * 2 * peak);
  }
  return out;
}

export function concatPcm(...parts: Int16Array[]): Int16Array {
  const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

export function chunkPcm(samples: Int16Array, size: number): Int16Array[] {
  const out: Int16Array[] = [];
  for (let i = 0; i < samples.length; i += size) out.push(samples.slice(i, i + size));
  return out;
}

/** Power of `frequency` in `samples` (Goertzel), normalised by length. */
export function goertzel(samples: Int16Array, frequency: number, rate = 8000): number {
  const coefficient = 2 * Math.cos((2 * Math.PI * frequency) / rate);
  let s1 = 0;
  let s2 = 0;
  for (const x of samples) {
    const s0 = x + coefficient * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  return (s1 * s1 + s2 * s2 - coefficient * s1 * s2) / samples.length ** 2;
}

/**
 * Offset of `needle` in `haystack` with the highest normalised correlation, and that correlation.
 * `from`/`to` bound the offsets searched (a full search is O(haystack x needle)).
 */
export function bestAlignment(
  haystack: Int16Array,
  needle: Int16Array,
  from = 0,
  to = haystack.length - needle.length,
): { offset: number; correlation: number } {
  let needleEnergy = 0;
  for (const x of needle) needleEnergy += x * x;
  let best = { offset: -1, correlation: -Infinity };
  for (let offset = Math.max(0, from); offset <= to && offset + needle.length <= haystack.length; offset++) {
    let dot = 0;
    let energy = 0;
    for (let i = 0; i < needle.length; i++) {
      const h = haystack[offset + i] as number;
      dot += h * (needle[i] as number);
      energy += h * h;
    }
    const correlation = dot / Math.sqrt(needleEnergy * energy + 1e-9);
    if (correlation > best.correlation) best = { offset, correlation };
  }
  return best;
}

/** First and last sample (exclusive) of 10 ms blocks louder than `dbfs`: the audible extent of a recording. */
export function audibleSpan(samples: Int16Array, dbfs = -45, rate = 8000): { start: number; end: number } {
  const block = rate / 100;
  let start = -1;
  let end = -1;
  for (let i = 0; i + block <= samples.length; i += block) {
    let energy = 0;
    for (let j = i; j < i + block; j++) energy += (samples[j] as number) ** 2;
    const level = 10 * Math.log10(energy / block / 32768 ** 2 + 1e-12);
    if (level > dbfs) {
      if (start < 0) start = i;
      end = i + block;
    }
  }
  if (start < 0) throw new Error('no audible audio');
  return { start, end };
}
