// WebSocket frames written by hand (RFC 6455 5.2) for floodRawFrames: the client frame encoder, just enough of a
// header parser to find the server's close frame, and the batches of malformed frames each abuse writes.

export const RAW_FRAME_ABUSES = [
  'unmasked',
  'reserved-bits',
  'bad-opcode',
  'invalid-utf8',
  'oversized-length',
  'tiny-invalid-json',
  'ping-flood',
  'fragment-never-finished',
] as const;

/**
 * - `unmasked`: client text frames without the mask bit (RFC 6455 5.1: the server must fail the connection, 1002).
 * - `reserved-bits`: masked text frames with RSV1 set although no extension was negotiated (1002).
 * - `bad-opcode`: masked frames with the reserved opcode 0x3 (1002).
 * - `invalid-utf8`: masked text frames whose payload is not UTF-8 (1007).
 * - `oversized-length`: one masked text frame header claiming a 4 GiB payload, then payload bytes without end (1009
 *   from a server with a message size limit; a server without one buffers it all).
 * - `tiny-invalid-json`: valid masked text frames of one byte (`x`): well-formed WebSocket, invalid AVR messages.
 * - `ping-flood`: valid masked ping frames (a server answers each with a pong).
 * - `fragment-never-finished`: a text frame without FIN, then continuation frames without FIN, without end (1009 once
 *   the message exceeds a server's size limit).
 */
export type RawFrameAbuse = (typeof RAW_FRAME_ABUSES)[number];

/** Bytes per write of the raw flood. */
const RAW_BATCH_BYTES = 16 * 1024;
export const OPCODE = { continuation: 0x0, text: 0x1, close: 0x8, ping: 0x9, reserved: 0x3 } as const;

interface FrameSpec {
  readonly fin: boolean;
  readonly rsv1?: boolean;
  readonly opcode: number;
  readonly payload: Buffer;
  readonly masked: boolean;
  /** Length written in the header when it differs from the payload's (a lie). */
  readonly declaredLength?: number;
}

function maskBytes(payload: Buffer, key: Buffer): Buffer {
  const out = Buffer.allocUnsafe(payload.length);
  for (let i = 0; i < payload.length; i++) out[i] = (payload[i] as number) ^ (key[i & 3] as number);
  return out;
}

/** One WebSocket frame as a client would write it (RFC 6455 5.2). */
export function encodeWsFrame(spec: FrameSpec, maskKey: Buffer): Buffer {
  const length = spec.declaredLength ?? spec.payload.length;
  const first = (spec.fin ? 0x80 : 0) | (spec.rsv1 === true ? 0x40 : 0) | (spec.opcode & 0x0f);
  const maskBit = spec.masked ? 0x80 : 0;
  let lengthBytes: Buffer;
  if (length < 126) lengthBytes = Buffer.from([maskBit | length]);
  else if (length < 0x10000) {
    lengthBytes = Buffer.alloc(3);
    lengthBytes[0] = maskBit | 126;
    lengthBytes.writeUInt16BE(length, 1);
  } else {
    lengthBytes = Buffer.alloc(9);
    lengthBytes[0] = maskBit | 127;
    lengthBytes.writeBigUInt64BE(BigInt(length), 1);
  }
  const parts = [Buffer.from([first]), lengthBytes];
  if (spec.masked) parts.push(maskKey, maskBytes(spec.payload, maskKey));
  else parts.push(spec.payload);
  return Buffer.concat(parts);
}

export function parseFrameHeader(bytes: Buffer): { opcode: number; headerLength: number; payloadLength: number } | undefined {
  const b0 = bytes[0] as number;
  const b1 = bytes[1] as number;
  const masked = (b1 & 0x80) !== 0;
  let payloadLength = b1 & 0x7f;
  let headerLength = 2;
  if (payloadLength === 126) {
    if (bytes.length < 4) return undefined;
    payloadLength = bytes.readUInt16BE(2);
    headerLength = 4;
  } else if (payloadLength === 127) {
    if (bytes.length < 10) return undefined;
    payloadLength = Number(bytes.readBigUInt64BE(2));
    headerLength = 10;
  }
  if (masked) headerLength += 4;
  return { opcode: b0 & 0x0f, headerLength, payloadLength };
}

export interface FrameBatch {
  readonly bytes: Buffer;
  readonly frames: number;
}

function repeatFrame(frame: Buffer, lead?: Buffer): FrameBatch {
  const count = Math.max(1, Math.floor((RAW_BATCH_BYTES - (lead?.length ?? 0)) / frame.length));
  const parts = lead === undefined ? [] : [lead];
  for (let i = 0; i < count; i++) parts.push(frame);
  return { bytes: Buffer.concat(parts), frames: count + (lead === undefined ? 0 : 1) };
}

/** The first write and every later one for an abuse. */
export function abuseBatches(kind: RawFrameAbuse, key: Buffer): { readonly first: FrameBatch; readonly steady: FrameBatch } {
  const avrMessage = Buffer.from('{"type":"dtmf_digit","digit":"5"}');
  const same = (frame: Buffer): { first: FrameBatch; steady: FrameBatch } => {
    const batch = repeatFrame(frame);
    return { first: batch, steady: batch };
  };
  switch (kind) {
    case 'unmasked':
      return same(encodeWsFrame({ fin: true, opcode: OPCODE.text, payload: avrMessage, masked: false }, key));
    case 'reserved-bits':
      return same(encodeWsFrame({ fin: true, rsv1: true, opcode: OPCODE.text, payload: avrMessage, masked: true }, key));
    case 'bad-opcode':
      return same(encodeWsFrame({ fin: true, opcode: OPCODE.reserved, payload: Buffer.from('x'), masked: true }, key));
    case 'invalid-utf8':
      return same(encodeWsFrame({ fin: true, opcode: OPCODE.text, payload: Buffer.from([0xc3, 0x28, 0xff, 0xfe]), masked: true }, key));
    case 'tiny-invalid-json':
      return same(encodeWsFrame({ fin: true, opcode: OPCODE.text, payload: Buffer.from('x'), masked: true }, key));
    case 'ping-flood':
      return same(encodeWsFrame({ fin: true, opcode: OPCODE.ping, payload: Buffer.from('ping'), masked: true }, key));
    case 'fragment-never-finished': {
      const chunk = Buffer.alloc(120, 0x61);
      const continuation = encodeWsFrame({ fin: false, opcode: OPCODE.continuation, payload: chunk, masked: true }, key);
      const start = encodeWsFrame({ fin: false, opcode: OPCODE.text, payload: Buffer.concat([Buffer.from('{"type":"'), chunk]), masked: true }, key);
      return { first: repeatFrame(continuation, start), steady: repeatFrame(continuation) };
    }
    case 'oversized-length': {
      const header = encodeWsFrame({ fin: true, opcode: OPCODE.text, payload: Buffer.alloc(0), masked: true, declaredLength: 2 ** 32 }, key);
      const payload = Buffer.alloc(RAW_BATCH_BYTES, 0x61);
      return { first: { bytes: Buffer.concat([header, payload]), frames: 1 }, steady: { bytes: payload, frames: 0 } };
    }
  }
}
