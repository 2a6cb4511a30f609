import { describe, expect, it } from 'vitest';
import { PcmHistory } from './pcm-history.js';

const seq = (from: number, count: number) => Int16Array.from({ length: count }, (_, i) => from + i);

describe('PcmHistory', () => {
  it('addresses samples by absolute position across discards, compaction and growth', () => {
    const history = new PcmHistory(8);
    history.append(seq(0, 6));
    history.discardBefore(4);
    history.append(seq(6, 5)); // compacts in place (fits after dropping 4)
    expect(history.first).toBe(4);
    expect(history.end).toBe(11);
    expect([...history.copy(4, 11)]).toEqual([4, 5, 6, 7, 8, 9, 10]);
    history.append(seq(11, 20)); // grows
    expect([...history.copy(9, 14)]).toEqual([9, 10, 11, 12, 13]);
    expect([...history.copy(0, 6)]).toEqual([4, 5]); // clamped to what is held
    expect(history.copy(40, 50).length).toBe(0);
  });

  it('reads floats and refuses ranges it does not hold', () => {
    const history = new PcmHistory(4);
    history.append(new Int16Array([-32768, 16384, 0]));
    const out = new Float32Array(3);
    history.readFloat(0, 3, out, 0);
    expect([...out]).toEqual([-1, 0.5, 0]);
    expect(() => history.readFloat(1, 3, out, 0)).toThrow(RangeError);
  });

  it('keeps counting positions after release', () => {
    const history = new PcmHistory(4);
    history.append(seq(0, 3));
    history.release();
    expect(history.first).toBe(3);
    history.append(seq(3, 2));
    expect([...history.copy(0, 10)]).toEqual([3, 4]);
  });
});
