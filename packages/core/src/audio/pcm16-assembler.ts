/** Byte chunks of PCM s16le -> Int16 samples, carrying an odd trailing byte into the next chunk. */
export class Pcm16Assembler {
  private carry = -1;

  push(chunk: Uint8Array): Int16Array {
    if (chunk.length === 0) return new Int16Array(0);
    const lead = this.carry >= 0;
    const out = new Int16Array((chunk.length + (lead ? 1 : 0)) >> 1);
    let s = 0;
    let start = 0;
    if (lead) {
      out[s++] = (((chunk[0] as number) << 24) >> 16) | this.carry;
      start = 1;
      this.carry = -1;
    }
    const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    for (let i = start; i + 1 < chunk.length; i += 2) out[s++] = view.getInt16(i, true);
    if ((chunk.length - start) % 2 === 1) this.carry = chunk[chunk.length - 1] as number;
    return out;
  }

  /** Bytes left over (0 or 1) at the end of the stream. */
  get pendingBytes(): number {
    return this.carry >= 0 ? 1 : 0;
  }
}
