import { describe, expect, it } from 'vitest';
import {
  alawToLinear,
  decodeAlaw,
  decodeMulaw,
  encodeAlaw,
  encodeMulaw,
  linearToAlaw,
  linearToMulaw,
  mulawToLinear,
} from './g711.js';

// Straight transliteration of the ITU-T G.191 (STL) reference loops, kept deliberately different in form
// from the implementation (segment search by shifting instead of clz32, no tables).
function refUlawCompress(x: number): number {
  let absno = x < 0 ? (~x >> 2) + 33 : (x >> 2) + 33;
  if (absno > 0x1fff) absno = 0x1fff;
  let i = absno >> 6;
  let segno = 1;
  while (i !== 0) {
    segno++;
    i >>= 1;
  }
  const high = 0x8 - segno;
  const low = 0xf - ((absno >> segno) & 0xf);
  let out = (high << 4) | low;
  if (x >= 0) out |= 0x80;
  return out;
}

function refUlawExpand(code: number): number {
  const sign = code < 0x80 ? -1 : 1;
  let mantissa = ~code;
  const exponent = (mantissa >> 4) & 0x7;
  const segment = exponent + 1;
  mantissa &= 0xf;
  const step = 4 << segment;
  return sign * ((0x80 << exponent) + step * mantissa + step / 2 - 4 * 33) + 0; // + 0: no -0
}

function refAlawCompress(x: number): number {
  let ix = x < 0 ? ~x >> 4 : x >> 4;
  if (ix > 15) {
    let iexp = 1;
    while (ix > 16 + 15) {
      ix >>= 1;
      iexp++;
    }
    ix -= 16;
    ix += iexp << 4;
  }
  if (x >= 0) ix |= 0x80;
  return ix ^ 0x55;
}

function refAlawExpand(code: number): number {
  let ix = code ^ 0x55;
  ix &= 0x7f;
  const iexp = ix >> 4;
  let mant = ix & 0xf;
  if (iexp > 0) mant += 16;
  mant = (mant << 4) + 0x8;
  if (iexp > 1) mant <<= iexp - 1;
  return code > 127 ? mant : -mant;
}

const ALL_INT16 = Int16Array.from({ length: 65536 }, (_, i) => i - 32768);
const ALL_CODES = Uint8Array.from({ length: 256 }, (_, i) => i);

describe('G.711 mu-law', () => {
  it('encodes the reference values', () => {
    expect(linearToMulaw(0)).toBe(0xff);
    expect(linearToMulaw(1)).toBe(0xff);
    expect(linearToMulaw(-1)).toBe(0x7f); // one's complement: -1 is "negative zero"
    expect(linearToMulaw(32767)).toBe(0x80);
    expect(linearToMulaw(-32768)).toBe(0x00);
    expect(linearToMulaw(32124)).toBe(0x80);
    expect(linearToMulaw(-32124)).toBe(0x00);
    // First segment boundary (14-bit magnitude 31 | 32, i.e. 16-bit 123 | 124).
    expect(linearToMulaw(123)).toBe(0xf0);
    expect(linearToMulaw(124)).toBe(0xef);
  });

  it('decodes the reference values', () => {
    expect(mulawToLinear(0x00)).toBe(-32124);
    expect(mulawToLinear(0x80)).toBe(32124);
    expect(mulawToLinear(0xff)).toBe(0);
    expect(mulawToLinear(0x7f)).toBe(0);
    expect(mulawToLinear(0xf0)).toBe(120);
    expect(mulawToLinear(0xef)).toBe(132);
    expect(mulawToLinear(0x7e)).toBe(-8);
  });

  it('matches the ITU-T G.191 reference algorithm for every int16 and every code', () => {
    const encoded = encodeMulaw(ALL_INT16);
    for (let i = 0; i < ALL_INT16.length; i++) {
      const x = ALL_INT16[i] as number;
      if (encoded[i] !== refUlawCompress(x)) expect.fail(`mu-law encode ${x}: ${encoded[i]} != ${refUlawCompress(x)}`);
      if (linearToMulaw(x) !== encoded[i]) expect.fail(`scalar and array encode differ at ${x}`);
    }
    // A view into a larger buffer encodes its own samples only.
    expect([...encodeMulaw(ALL_INT16.subarray(3, 7))]).toEqual([...encoded.subarray(3, 7)]);
    const decoded = decodeMulaw(ALL_CODES);
    for (let c = 0; c < 256; c++) {
      expect(decoded[c]).toBe(refUlawExpand(c));
      expect(mulawToLinear(c)).toBe(decoded[c]);
    }
  });

  it('round-trips every code except negative zero, with monotonic levels and 8 segments of 16 steps', () => {
    for (let c = 0; c < 256; c++) {
      expect(linearToMulaw(mulawToLinear(c))).toBe(c === 0x7f ? 0xff : c);
    }
    // Positive codes 0xFF..0x80 are increasing levels; the step doubles every 16 codes (8, 16, ..., 1024)
    // and across a segment boundary it is half the old step plus half the new one.
    let previous = mulawToLinear(0xff);
    for (let c = 0xfe; c >= 0x80; c--) {
      const level = mulawToLinear(c);
      const segment = (0xff - c) >> 4;
      const step = 8 << segment;
      const expected = (c & 0x0f) === 0x0f ? step / 4 + step / 2 : step;
      expect(level - previous).toBe(expected);
      expect(mulawToLinear(c & 0x7f)).toBe(-level); // 0x7F..0x00 mirror 0xFF..0x80
      previous = level;
    }
  });

  it('quantises monotonically, each code owning one contiguous interval centred on its level', () => {
    checkDecisionIntervals(encodeMulaw(ALL_INT16), mulawToLinear, 4);
  });
});

describe('G.711 A-law', () => {
  it('encodes the reference values', () => {
    expect(linearToAlaw(0)).toBe(0xd5);
    expect(linearToAlaw(15)).toBe(0xd5);
    expect(linearToAlaw(16)).toBe(0xd4);
    expect(linearToAlaw(-1)).toBe(0x55);
    expect(linearToAlaw(32767)).toBe(0xaa);
    expect(linearToAlaw(-32768)).toBe(0x2a);
  });

  it('decodes the reference values', () => {
    expect(alawToLinear(0x55)).toBe(-8);
    expect(alawToLinear(0xd5)).toBe(8);
    expect(alawToLinear(0xaa)).toBe(32256);
    expect(alawToLinear(0x2a)).toBe(-32256);
  });

  it('matches the ITU-T G.191 reference algorithm for every int16 and every code', () => {
    const encoded = encodeAlaw(ALL_INT16);
    for (let i = 0; i < ALL_INT16.length; i++) {
      const x = ALL_INT16[i] as number;
      if (encoded[i] !== refAlawCompress(x)) expect.fail(`A-law encode ${x}: ${encoded[i]} != ${refAlawCompress(x)}`);
      if (linearToAlaw(x) !== encoded[i]) expect.fail(`scalar and array encode differ at ${x}`);
    }
    const decoded = decodeAlaw(ALL_CODES);
    for (let c = 0; c < 256; c++) {
      expect(decoded[c]).toBe(refAlawExpand(c));
      expect(alawToLinear(c)).toBe(decoded[c]);
    }
  });

  it('round-trips all 256 codes, with 256 distinct sign-symmetric levels', () => {
    for (let c = 0; c < 256; c++) expect(linearToAlaw(alawToLinear(c))).toBe(c);
    expect(new Set(decodeAlaw(ALL_CODES)).size).toBe(256);
    for (let c = 0; c < 128; c++) expect(alawToLinear(c)).toBe(-alawToLinear(c | 0x80));
  });

  it('quantises monotonically, each code owning one contiguous interval centred on its level', () => {
    checkDecisionIntervals(encodeAlaw(ALL_INT16), alawToLinear, 16);
  });
});

describe('G.711 scalar input handling', () => {
  it('clamps out-of-range and truncates fractional input', () => {
    expect(linearToMulaw(100000)).toBe(linearToMulaw(32767));
    expect(linearToMulaw(-100000)).toBe(linearToMulaw(-32768));
    expect(linearToAlaw(1e9)).toBe(0xaa);
    expect(linearToAlaw(-1e9)).toBe(0x2a);
    expect(linearToMulaw(1000.9)).toBe(linearToMulaw(1000));
    expect(linearToMulaw(Number.NaN)).toBe(linearToMulaw(0));
  });

  it('uses only the low 8 bits of a code', () => {
    expect(mulawToLinear(0x100)).toBe(mulawToLinear(0));
    expect(alawToLinear(0x1d5)).toBe(alawToLinear(0xd5));
  });

  it('handles empty arrays', () => {
    expect(encodeMulaw(new Int16Array(0))).toHaveLength(0);
    expect(decodeAlaw(new Uint8Array(0))).toHaveLength(0);
  });
});

/**
 * Scans every int16 in order: the reconstructed level never decreases, each code appears in exactly one
 * contiguous run of inputs (its decision interval), and its level lies at the centre of that run within the
 * input truncation granularity (4 for mu-law's 14 bits, 16 for A-law's 12-bit magnitude).
 */
function checkDecisionIntervals(encoded: Uint8Array, decode: (code: number) => number, granularity: number): void {
  const seen = new Set<number>();
  let runStart = -32768;
  let previousLevel = -Infinity;
  for (let i = 0; i <= encoded.length; i++) {
    const code = i < encoded.length ? (encoded[i] as number) : -1;
    const previousCode = i > 0 ? (encoded[i - 1] as number) : -2;
    if (code === previousCode) continue;
    if (i > 0) {
      // Close the run of previousCode: inputs runStart..i-1-32768.
      const lo = runStart;
      const hi = i - 1 - 32768;
      const level = decode(previousCode);
      // Skip mu-law's +0/-0 pair (straddles zero) and the runs that include clipped inputs.
      const skip = level === 0 || lo === -32768 || hi === 32767;
      if (!skip) {
        expect(Math.abs(level - (lo + hi + 1) / 2)).toBeLessThanOrEqual(granularity / 2);
      }
      if (seen.has(previousCode)) expect.fail(`code ${previousCode} owns two intervals`);
      seen.add(previousCode);
      if (level < previousLevel) expect.fail(`level decreases at input ${lo}`);
      previousLevel = level;
    }
    runStart = i - 32768;
  }
}
