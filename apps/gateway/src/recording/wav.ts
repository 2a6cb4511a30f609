import { endianness } from 'node:os';

export const WAV_SAMPLE_RATE = 8000;
export const WAV_CHANNELS = 2;
const BITS_PER_SAMPLE = 16;
const BLOCK_ALIGN = (WAV_CHANNELS * BITS_PER_SAMPLE) / 8;
/** RIFF + fmt (16-byte PCM) + data chunk header. */
export const WAV_HEADER_BYTES = 44;
/** The RIFF size field is 32 bits: the data chunk can hold this much (about 37 hours of 8 kHz stereo). */
export const WAV_MAX_DATA_BYTES = 0xffff_ffff - (WAV_HEADER_BYTES - 8);
export const WAV_BYTES_PER_SAMPLE_FRAME = BLOCK_ALIGN;

/**
 * Writes the 44-byte header of a 16-bit PCM WAV (8 kHz, stereo) whose data chunk holds `dataBytes`, into `target`.
 * A file whose header is rewritten after each append stays a valid WAV of everything appended so far.
 */
export function writeWavHeader(target: Buffer, dataBytes: number): Buffer {
  target.write('RIFF', 0, 'latin1');
  target.writeUInt32LE(WAV_HEADER_BYTES - 8 + dataBytes, 4);
  target.write('WAVE', 8, 'latin1');
  target.write('fmt ', 12, 'latin1');
  target.writeUInt32LE(16, 16);
  target.writeUInt16LE(1, 20); // PCM
  target.writeUInt16LE(WAV_CHANNELS, 22);
  target.writeUInt32LE(WAV_SAMPLE_RATE, 24);
  target.writeUInt32LE(WAV_SAMPLE_RATE * BLOCK_ALIGN, 28);
  target.writeUInt16LE(BLOCK_ALIGN, 32);
  target.writeUInt16LE(BITS_PER_SAMPLE, 34);
  target.write('data', 36, 'latin1');
  target.writeUInt32LE(dataBytes, 40);
  return target;
}

const LITTLE_ENDIAN = endianness() === 'LE';

/** Interleaved samples as s16le bytes (no copy on a little-endian machine; the array is handed over). */
export function pcmBytes(samples: Int16Array): Buffer {
  const bytes = Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength);
  return LITTLE_ENDIAN ? bytes : bytes.swap16();
}
