/**
 * ITU-T G.711 companding (mu-law and A-law) for 16-bit linear PCM.
 *
 * Follows the ITU-T G.191 reference algorithm: a 16-bit sample is reduced to the 14-bit (mu-law) or
 * 13-bit (A-law) resolution G.711 defines, negative samples use the one's complement (so -1 encodes like
 * -0), and decoding returns the midpoint of each quantisation interval scaled back to 16 bits.
 *
 * Encoding is branch-light arithmetic (Math.clz32 for the segment); decoding uses two immutable 256-entry
 * tables computed once at module load. There is no other module state.
 */

function clampInt16(sample: number): number {
  if (!(sample > -32768)) return sample === sample ? -32768 : 0; // NaN -> 0
  if (sample > 32767) return 32767;
  return Math.trunc(sample);
}

/** mu-law encode of one in-range int16 (no validation). */
function mulawEncodeInt16(x: number): number {
  // One's complement for negatives, drop to 14 bits, add the bias of 33 (0x21), clip to 13-bit magnitude.
  const negative = x < 0;
  let mag = ((negative ? ~x : x) >> 2) + 33;
  if (mag > 0x1fff) mag = 0x1fff;
  // Segment 1..8: 1 + number of significant bits of mag >> 6.
  const seg = 33 - Math.clz32(mag >> 6);
  const code = (((8 - seg) << 4) | (15 - ((mag >> seg) & 15))) & 0x7f;
  return negative ? code : code | 0x80;
}

/** A-law encode of one in-range int16 (no validation). */
function alawEncodeInt16(x: number): number {
  const negative = x < 0;
  let mag = (negative ? ~x : x) >> 4; // 12-bit magnitude
  let code: number;
  if (mag < 32) {
    // Segments 0 and 1 share a step size of 2 (in 13-bit units); mag 16..31 already lands on 0x10..0x1f.
    code = mag;
  } else {
    const exp = 28 - Math.clz32(mag); // 2..7: mag in [2^(exp+3), 2^(exp+4))
    mag = (mag >> (exp - 1)) & 15; // drop the implicit leading one
    code = (exp << 4) | mag;
  }
  if (!negative) code |= 0x80;
  return code ^ 0x55;
}

function buildMulawDecodeTable(): Int16Array {
  const table = new Int16Array(256);
  for (let code = 0; code < 256; code++) {
    const inv = ~code & 0xff;
    const exponent = (inv >> 4) & 7;
    const mantissa = inv & 15;
    const step = 4 << (exponent + 1);
    const magnitude = (0x80 << exponent) + step * mantissa + step / 2 - 4 * 33;
    table[code] = code < 0x80 ? -magnitude : magnitude;
  }
  return table;
}

function buildAlawDecodeTable(): Int16Array {
  const table = new Int16Array(256);
  for (let code = 0; code < 256; code++) {
    const ix = (code ^ 0x55) & 0x7f;
    const exponent = ix >> 4;
    let mantissa = ix & 15;
    if (exponent > 0) mantissa += 16;
    mantissa = (mantissa << 4) + 8;
    if (exponent > 1) mantissa <<= exponent - 1;
    table[code] = code > 0x7f ? mantissa : -mantissa;
  }
  return table;
}

// Immutable after construction; never exposed.
const MULAW_DECODE: Int16Array = buildMulawDecodeTable();
const ALAW_DECODE: Int16Array = buildAlawDecodeTable();

/** Encodes one linear sample (clamped to int16, truncated toward zero) to a mu-law byte. */
export function linearToMulaw(sample: number): number {
  return mulawEncodeInt16(clampInt16(sample));
}

/** Decodes one mu-law byte (only the low 8 bits are used) to a linear int16 sample. */
export function mulawToLinear(code: number): number {
  return MULAW_DECODE[code & 0xff] as number;
}

/** Encodes one linear sample (clamped to int16, truncated toward zero) to an A-law byte. */
export function linearToAlaw(sample: number): number {
  return alawEncodeInt16(clampInt16(sample));
}

/** Decodes one A-law byte (only the low 8 bits are used) to a linear int16 sample. */
export function alawToLinear(code: number): number {
  return ALAW_DECODE[code & 0xff] as number;
}

/** mu-law code of every int16 sample, indexed by its 16-bit pattern (64 KiB, built once: immutable). */
const MULAW_ENCODE = (() => {
  const table = new Uint8Array(65536);
  for (let bits = 0; bits < 65536; bits++) table[bits] = mulawEncodeInt16((bits << 16) >> 16);
  return table;
})();

export function encodeMulaw(pcm: Int16Array): Uint8Array {
  const n = pcm.length;
  const out = new Uint8Array(n);
  const bits = new Uint16Array(pcm.buffer, pcm.byteOffset, n);
  const table = MULAW_ENCODE;
  for (let i = 0; i < n; i++) out[i] = table[bits[i] as number] as number;
  return out;
}

export function decodeMulaw(data: Uint8Array): Int16Array {
  const n = data.length;
  const out = new Int16Array(n);
  const table = MULAW_DECODE;
  for (let i = 0; i < n; i++) out[i] = table[data[i] as number] as number;
  return out;
}

export function encodeAlaw(pcm: Int16Array): Uint8Array {
  const n = pcm.length;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = alawEncodeInt16(pcm[i] as number);
  return out;
}

export function decodeAlaw(data: Uint8Array): Int16Array {
  const n = data.length;
  const out = new Int16Array(n);
  const table = ALAW_DECODE;
  for (let i = 0; i < n; i++) out[i] = table[data[i] as number] as number;
  return out;
}
