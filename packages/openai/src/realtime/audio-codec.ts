/**
 * Wire audio <-> PCM samples for the two formats the adapter speaks. Pure; per-item decode state (an odd
 * trailing byte of PCM16) lives in the caller's `PcmCarry`.
 */
import { decodeMulaw, encodeMulaw } from '@stsgate/core';
import type { SampleRate } from '@stsgate/core';
import type { WireAudioFormat } from './wire.js';

export interface PcmCarry {
  /** A byte left over from an odd-length PCM16 delta, or -1. */
  carry: number;
}

export interface AudioCodec {
  readonly format: WireAudioFormat;
  /** The PCM rate of the session (and of the wire: no resampling in the adapter). */
  readonly sampleRate: SampleRate;
  /** Wire bytes per millisecond of audio (8 for mu-law at 8 kHz, 48 for PCM16 at 24 kHz). */
  readonly bytesPerMs: number;
  /** PCM samples -> base64 of the wire bytes. */
  encode(samples: Int16Array): string;
  /** Wire bytes -> PCM samples (a fresh array, safe to hand on). */
  decode(bytes: Uint8Array, state: PcmCarry): Int16Array;
  /** Wire bytes for `samples` samples. */
  bytesFor(samples: number): number;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

const mulawCodec: AudioCodec = {
  format: 'pcmu',
  sampleRate: 8000,
  bytesPerMs: 8,
  encode: (samples) => toBase64(encodeMulaw(samples)),
  decode: (bytes) => decodeMulaw(bytes),
  bytesFor: (samples) => samples,
};

/** PCM16 little-endian; an odd byte is carried to the next delta of the same item. */
function decodePcm16(bytes: Uint8Array, state: PcmCarry): Int16Array {
  const lead = state.carry >= 0 ? 1 : 0;
  const total = bytes.length + lead;
  const count = total >> 1;
  const out = new Int16Array(count);
  if (lead === 0 && LITTLE_ENDIAN) {
    new Uint8Array(out.buffer).set(bytes.subarray(0, count * 2));
  } else {
    const at = (i: number): number => (lead === 1 ? (i === 0 ? state.carry : (bytes[i - 1] as number)) : (bytes[i] as number));
    for (let s = 0; s < count; s++) {
      const lo = at(2 * s);
      const hi = at(2 * s + 1);
      out[s] = ((hi << 24) >> 16) | lo;
    }
  }
  state.carry = total % 2 === 1 ? (bytes[bytes.length - 1] as number) : -1;
  return out;
}

function encodePcm16(samples: Int16Array): string {
  if (LITTLE_ENDIAN) return toBase64(new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength));
  const out = Buffer.alloc(samples.length * 2);
  for (let i = 0; i < samples.length; i++) out.writeInt16LE(samples[i] as number, i * 2);
  return out.toString('base64');
}

const pcm24Codec: AudioCodec = {
  format: 'pcm24',
  sampleRate: 24000,
  bytesPerMs: 48,
  encode: encodePcm16,
  decode: decodePcm16,
  bytesFor: (samples) => samples * 2,
};

export function audioCodec(format: WireAudioFormat): AudioCodec {
  return format === 'pcmu' ? mulawCodec : pcm24Codec;
}
