import { describe, expect, it } from 'vitest';
import { Pcm16Assembler } from './pcm16-assembler.js';

describe('Pcm16Assembler', () => {
  it('carries an odd byte across chunks of any size', () => {
    const samples = Int16Array.from([1, -2, 300, -32768, 32767, 1234, -4321]);
    const bytes = new Uint8Array(samples.buffer);
    const assembler = new Pcm16Assembler();
    const out: number[] = [];
    for (const [a, b] of [[0, 3], [3, 4], [4, 4], [4, 9], [9, 14]] as const) out.push(...assembler.push(bytes.subarray(a, b)));
    expect(out).toEqual([...samples]);
    expect(assembler.pendingBytes).toBe(0);
    assembler.push(Uint8Array.of(7));
    expect(assembler.pendingBytes).toBe(1);
  });
});
