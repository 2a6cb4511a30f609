import { describe, expect, it } from 'vitest';
import { createResampler } from '@stsgate/core';
import { FIXTURE_NAMES, concatPcm, fixturePath, readWavAs8k } from '@stsgate/testkit';
import { audioCodec } from '../src/realtime/audio-codec.js';

/**
 * The quality side of the default-format choice (README, "Audio format"); bandwidth and CPU are measured by
 * scripts/compare-audio-formats.mjs.
 */
function snrDb(reference: Int16Array, test: Int16Array): number {
  let signal = 0;
  let noise = 0;
  for (let i = 0; i < reference.length; i++) {
    const r = reference[i] as number;
    signal += r * r;
    noise += (r - (test[i] as number)) ** 2;
  }
  return noise === 0 ? Number.POSITIVE_INFINITY : 10 * Math.log10(signal / noise);
}

/** Through the adapter's wire codec and back (what the server decodes, or what the adapter decodes). */
function wireRoundTrip(format: 'pcmu' | 'pcm24', samples: Int16Array): Int16Array {
  const codec = audioCodec(format);
  return codec.decode(Buffer.from(codec.encode(samples), 'base64'), { carry: -1 });
}

/** 8 kHz -> 24 kHz -> 8 kHz with the core resampler, in 20 ms frames (the host's path for pcm24). */
function resampleRoundTrip(samples: Int16Array): Int16Array {
  const up = createResampler(8000, 24000);
  const down = createResampler(24000, 8000);
  const parts: Int16Array[] = [];
  for (let i = 0; i < samples.length; i += 160) parts.push(down.process(up.process(samples.subarray(i, i + 160))));
  parts.push(down.process(up.flush()), down.flush());
  return concatPcm(...parts).subarray(0, samples.length);
}

describe('wire formats on the speech fixtures', () => {
  for (const name of FIXTURE_NAMES) {
    it(`${name}: mu-law costs ~37 dB SNR, lossless on audio that already came through G.711; pcm24 round trip > 60 dB`, () => {
      const speech = readWavAs8k(fixturePath(name));
      const mulaw = snrDb(speech, wireRoundTrip('pcmu', speech));
      expect(mulaw).toBeGreaterThan(35);
      expect(mulaw).toBeLessThan(40);
      // A caller on a mu-law trunk reaches AVR as decoded mu-law: re-encoding it is exact.
      const trunk = wireRoundTrip('pcmu', speech);
      expect(wireRoundTrip('pcmu', trunk)).toEqual(trunk);
      // PCM16 on the wire is exact; the cost of pcm24 is the two resamplings.
      expect(wireRoundTrip('pcm24', speech)).toEqual(speech);
      expect(snrDb(speech, resampleRoundTrip(speech))).toBeGreaterThan(60);
    });
  }
});
