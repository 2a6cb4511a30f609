import { readFileSync, writeFileSync } from 'node:fs';
import wavefile from 'wavefile';
import { AVR_SAMPLE_RATE, SAMPLE_RATES, createResampler, type SampleRate } from '@stsgate/core';

export interface WavAudio {
  readonly sampleRate: number;
  /** Mono PCM s16 (multi-channel files are mixed down by averaging). */
  readonly samples: Int16Array;
}

interface WavFmt {
  audioFormat: number;
  numChannels: number;
  sampleRate: number;
}

/**
 * Read a WAV file (path or bytes) into mono 16-bit samples. Accepts whatever `wavefile` decodes: integer PCM of
 * 8-32 bits, 32/64-bit float, G.711 mu-law/A-law and IMA ADPCM, RIFF/RIFX/RF64, any channel count.
 */
export function readWav(source: string | Uint8Array): WavAudio {
  const bytes = typeof source === 'string' ? readFileSync(source) : source;
  const label = typeof source === 'string' ? source : 'WAV buffer';
  let wav: wavefile.WaveFile;
  try {
    wav = new wavefile.WaveFile(bytes);
  } catch (error) {
    throw new Error(`${label}: not a readable WAV file (${error instanceof Error ? error.message : String(error)})`, {
      cause: error,
    });
  }
  switch (wav.bitDepth) {
    case '8m':
      wav.fromMuLaw('16');
      break;
    case '8a':
      wav.fromALaw('16');
      break;
    case '4':
      wav.fromIMAADPCM('16');
      break;
    case '16':
      break;
    default:
      wav.toBitDepth('16');
  }
  const fmt = wav.fmt as WavFmt;
  const channels = fmt.numChannels;
  if (!Number.isInteger(channels) || channels < 1) throw new Error(`${label}: invalid channel count ${channels}`);
  if (!Number.isInteger(fmt.sampleRate) || fmt.sampleRate <= 0) {
    throw new Error(`${label}: invalid sample rate ${fmt.sampleRate}`);
  }
  const interleaved = wav.getSamples(true, Float64Array);
  const frames = Math.floor(interleaved.length / channels);
  const samples = new Int16Array(frames);
  for (let i = 0; i < frames; i++) {
    let sum = 0;
    for (let c = 0; c < channels; c++) sum += interleaved[i * channels + c] ?? 0;
    samples[i] = clamp16(Math.round(sum / channels));
  }
  return { sampleRate: fmt.sampleRate, samples };
}

/** Core's resampler covers the telephony and provider rates; a file at any other rate is first brought to this one. */
const BRIDGE_RATE: SampleRate = 48000;

/**
 * Read a WAV file at any sample rate and convert it to AVR's 8 kHz. The 8 kHz step is always core's anti-aliased
 * resampler (the gateway's own); a rate it does not take (22.05, 44.1, 11.025, 96 kHz...) is first brought to 48 kHz
 * with wavefile's windowed-sinc converter. wavefile is already the WAV reader and converts synchronously
 * (libsamplerate-js needs an async WASM start); its own low-pass at 4 kHz lets aliases through at -56 dB, so the
 * 8 kHz filtering stays with core, and every input gets the same passband and alias rejection (below -90 dB).
 */
export function readWavAs8k(source: string | Uint8Array): Int16Array {
  const { sampleRate, samples } = readWav(source);
  if (sampleRate === AVR_SAMPLE_RATE) return samples;
  if (isSupportedRate(sampleRate)) return resampleTo8k(samples, sampleRate);
  const bridge = new wavefile.WaveFile();
  bridge.fromScratch(1, sampleRate, '16', samples);
  // Going up, core's filter removes whatever the interpolation leaves above 4 kHz; wavefile's own low-pass is only
  // needed going down (and, run forwards and backwards over the file, it would add transients at both ends).
  bridge.toSampleRate(BRIDGE_RATE, { method: 'sinc', LPF: sampleRate > BRIDGE_RATE });
  return resampleTo8k(Int16Array.from(bridge.getSamples(false, Float64Array)), BRIDGE_RATE);
}

function resampleTo8k(samples: Int16Array, sampleRate: SampleRate): Int16Array {
  const resampler = createResampler(sampleRate, AVR_SAMPLE_RATE);
  const head = resampler.process(samples);
  const tail = resampler.flush();
  const out = new Int16Array(head.length + tail.length);
  out.set(head, 0);
  out.set(tail, head.length);
  return out;
}

/** Encode mono s16 samples as a canonical 44-byte-header PCM WAV. */
export function encodeWav(samples: Int16Array, sampleRate: number): Buffer {
  if (!Number.isInteger(sampleRate) || sampleRate <= 0) throw new Error(`invalid sample rate ${sampleRate}`);
  const dataBytes = samples.length * 2;
  const out = Buffer.alloc(44 + dataBytes);
  out.write('RIFF', 0, 'ascii');
  out.writeUInt32LE(36 + dataBytes, 4);
  out.write('WAVE', 8, 'ascii');
  out.write('fmt ', 12, 'ascii');
  out.writeUInt32LE(16, 16);
  out.writeUInt16LE(1, 20); // PCM
  out.writeUInt16LE(1, 22); // mono
  out.writeUInt32LE(sampleRate, 24);
  out.writeUInt32LE(sampleRate * 2, 28);
  out.writeUInt16LE(2, 32);
  out.writeUInt16LE(16, 34);
  out.write('data', 36, 'ascii');
  out.writeUInt32LE(dataBytes, 40);
  for (let i = 0; i < samples.length; i++) out.writeInt16LE(samples[i] ?? 0, 44 + i * 2);
  return out;
}

/** Write mono s16 samples to `path` as a PCM WAV file. */
export function writeWav(path: string, samples: Int16Array, sampleRate: number): void {
  writeFileSync(path, encodeWav(samples, sampleRate));
}

function isSupportedRate(rate: number): rate is SampleRate {
  return (SAMPLE_RATES as readonly number[]).includes(rate);
}

function clamp16(value: number): number {
  return value > 32767 ? 32767 : value < -32768 ? -32768 : value;
}
