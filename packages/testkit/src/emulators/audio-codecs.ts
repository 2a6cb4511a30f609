/**
 * Sample codecs of the speech-to-text emulators (Soniox STT, Speechmatics RT and Flow): raw format names, the codecs
 * of a WAVE `fmt ` chunk, and a streaming decoder to mono 16-bit. Nothing here holds module-level mutable state.
 */
import { decodeAlaw, decodeMulaw } from '@stsgate/core';

export type SampleCodec =
  | { readonly kind: 'int'; readonly bytes: 1 | 2 | 3 | 4; readonly signed: boolean; readonly little: boolean }
  | { readonly kind: 'float'; readonly bytes: 4 | 8; readonly little: boolean }
  | { readonly kind: 'mulaw' }
  | { readonly kind: 'alaw' };

const RAW_FORMAT = /^pcm_(?:([su])8|([su])(16|24|32)(le|be)|f(32|64)(le|be))$/;

/** The codec of a raw format name: `pcm_s8`/`pcm_u8`, `pcm_[su](16|24|32)(le|be)`, `pcm_f(32|64)(le|be)`, `mulaw`, `alaw`. */
export function rawSampleCodec(format: string): SampleCodec | undefined {
  if (format === 'mulaw') return { kind: 'mulaw' };
  if (format === 'alaw') return { kind: 'alaw' };
  const match = RAW_FORMAT.exec(format);
  if (match === null) return undefined;
  const [, sign8, sign, bits, endian, floatBits, floatEndian] = match;
  if (sign8 !== undefined) return { kind: 'int', bytes: 1, signed: sign8 === 's', little: true };
  if (sign !== undefined) {
    return { kind: 'int', bytes: (Number(bits) / 8) as 2 | 3 | 4, signed: sign === 's', little: endian === 'le' };
  }
  return { kind: 'float', bytes: floatBits === '64' ? 8 : 4, little: floatEndian === 'le' };
}

/** `rawSampleCodec` of a name a schema already accepted (throws for an unknown name). */
export function knownRawSampleCodec(format: string): SampleCodec {
  const codec = rawSampleCodec(format);
  if (codec === undefined) throw new Error(`unknown raw audio format ${format}`);
  return codec;
}

/** The codec of a WAVE format tag: PCM (1) of 8 (unsigned), 16, 24 or 32 bits, float (3) of 32 or 64, A-law (6), mu-law (7). */
export function wavSampleCodec(tag: number, bits: number): SampleCodec | undefined {
  if (tag === 1 && [8, 16, 24, 32].includes(bits)) return { kind: 'int', bytes: (bits / 8) as 1 | 2 | 3 | 4, signed: bits !== 8, little: true };
  if (tag === 3 && (bits === 32 || bits === 64)) return { kind: 'float', bytes: bits / 8 === 4 ? 4 : 8, little: true };
  if (tag === 6) return { kind: 'alaw' };
  if (tag === 7) return { kind: 'mulaw' };
  return undefined;
}

function codecBytes(codec: SampleCodec): number {
  return codec.kind === 'mulaw' || codec.kind === 'alaw' ? 1 : codec.bytes;
}

/** One sample at `offset`, scaled to the 16-bit range (not rounded). */
function readSample(view: DataView, offset: number, codec: SampleCodec): number {
  switch (codec.kind) {
    case 'int': {
      let value: number;
      if (codec.bytes === 1) value = codec.signed ? view.getInt8(offset) : view.getUint8(offset) - 128;
      else if (codec.bytes === 2) value = codec.signed ? view.getInt16(offset, codec.little) : view.getUint16(offset, codec.little) - 0x8000;
      else if (codec.bytes === 4) value = codec.signed ? view.getInt32(offset, codec.little) : view.getUint32(offset, codec.little) - 0x80000000;
      else {
        const b0 = view.getUint8(offset);
        const b1 = view.getUint8(offset + 1);
        const b2 = view.getUint8(offset + 2);
        const unsigned = codec.little ? b0 | (b1 << 8) | (b2 << 16) : (b0 << 16) | (b1 << 8) | b2;
        value = codec.signed ? (unsigned << 8) >> 8 : unsigned - 0x800000;
      }
      return value / 2 ** (codec.bytes * 8 - 16);
    }
    case 'float':
      return (codec.bytes === 4 ? view.getFloat32(offset, codec.little) : view.getFloat64(offset, codec.little)) * 32767;
    case 'mulaw':
      return decodeMulaw(new Uint8Array(view.buffer, view.byteOffset + offset, 1))[0] as number;
    case 'alaw':
      return decodeAlaw(new Uint8Array(view.buffer, view.byteOffset + offset, 1))[0] as number;
    default: {
      const exhaustive: never = codec;
      throw new Error(`unknown codec ${JSON.stringify(exhaustive)}`);
    }
  }
}

/**
 * Streaming decoder to mono 16-bit: channels are averaged, then rounded and clamped (NaN becomes 0); a partial
 * sample frame at the end of a chunk waits for the next one.
 */
export class StreamDecoder {
  #leftover: Buffer = Buffer.alloc(0);
  constructor(
    readonly codec: SampleCodec,
    readonly channels: number,
  ) {}

  decode(chunk: Buffer): Int16Array {
    const data = this.#leftover.length > 0 ? Buffer.concat([this.#leftover, chunk]) : chunk;
    const sampleBytes = codecBytes(this.codec);
    const frameBytes = sampleBytes * this.channels;
    const frames = Math.floor(data.length / frameBytes);
    this.#leftover = Buffer.from(data.subarray(frames * frameBytes));
    // G.711 mono is a plain table lookup of the whole chunk.
    if (this.channels === 1 && this.codec.kind === 'mulaw') return decodeMulaw(data.subarray(0, frames));
    if (this.channels === 1 && this.codec.kind === 'alaw') return decodeAlaw(data.subarray(0, frames));
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const out = new Int16Array(frames);
    for (let f = 0; f < frames; f++) {
      let sum = 0;
      for (let c = 0; c < this.channels; c++) sum += readSample(view, f * frameBytes + c * sampleBytes, this.codec);
      out[f] = Math.max(-32768, Math.min(32767, Math.round(sum / this.channels)));
    }
    return out;
  }
}
