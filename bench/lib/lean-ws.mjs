// Minimal RFC 6455 WebSocket framing for the scale bench's load generator (bench/scale.mjs), both ends: AVR Core
// clients towards the gateway and the fake OpenAI Realtime server the gateway connects to. The `ws` package costs
// several microseconds and a few allocations per message; at 500 calls (~45,000 messages a second) that alone
// would make the load generator the bottleneck. Here outgoing frames are pre-built buffers and incoming frames are
// views into the received chunk. No extensions (neither side offers permessage-deflate), no fragmented messages
// (neither `ws` nor the gateway fragments; one would be reported as a protocol problem by the caller).
import { createHash, randomBytes } from 'node:crypto';
import { connect, createServer } from 'node:net';

export const OPCODE = { continuation: 0, text: 1, binary: 2, close: 8, ping: 9, pong: 10 };

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const HEADER_END = Buffer.from('\r\n\r\n');
const MAX_HANDSHAKE_BYTES = 16 * 1024;

/**
 * One whole frame from `parts` (Buffers, written back to back as the payload). `masked`: a client frame, which must
 * be masked; its mask key is zero, so the payload goes out as is and the frame can be built once and sent to every
 * call (the server unmasks it all the same: the gateway's cost does not depend on the key).
 */
export function encodeFrame(opcode, parts, masked = false) {
  let length = 0;
  for (const part of parts) length += part.length;
  const lengthBytes = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const headerLength = 2 + lengthBytes + (masked ? 4 : 0);
  const frame = Buffer.allocUnsafe(headerLength + length);
  frame[0] = 0x80 | opcode;
  frame[1] = (masked ? 0x80 : 0) | (lengthBytes === 0 ? length : lengthBytes === 2 ? 126 : 127);
  if (lengthBytes === 2) frame.writeUInt16BE(length, 2);
  else if (lengthBytes === 8) frame.writeBigUInt64BE(BigInt(length), 2);
  if (masked) frame.writeUInt32BE(0, 2 + lengthBytes);
  let at = headerLength;
  for (const part of parts) at += part.copy(frame, at);
  return frame;
}

/** A text frame of a string. */
export function textFrame(text, masked = false) {
  return encodeFrame(OPCODE.text, [Buffer.from(text)], masked);
}

/** A close frame with a status code. */
export function closeFrame(code, masked = false) {
  const payload = Buffer.allocUnsafe(2);
  payload.writeUInt16BE(code, 0);
  return encodeFrame(OPCODE.close, [payload], masked);
}

/**
 * Splits a byte stream into frames: `onFrame(opcode, payload, fin)` with `payload` a view into the received chunk,
 * unmasked in place (valid until the callback returns, unless the caller copies it). Only a frame cut across chunks
 * is copied.
 */
export class FrameReader {
  constructor(onFrame) {
    this.onFrame = onFrame;
    this.pending = undefined;
  }

  push(chunk) {
    const buffer = this.pending === undefined ? chunk : Buffer.concat([this.pending, chunk]);
    this.pending = undefined;
    let offset = 0;
    while (buffer.length - offset >= 2) {
      const b0 = buffer[offset];
      const b1 = buffer[offset + 1];
      let length = b1 & 0x7f;
      let at = offset + 2;
      if (length === 126) {
        if (buffer.length - at < 2) break;
        length = buffer.readUInt16BE(at);
        at += 2;
      } else if (length === 127) {
        if (buffer.length - at < 8) break;
        length = Number(buffer.readBigUInt64BE(at));
        at += 8;
      }
      const masked = (b1 & 0x80) !== 0;
      const maskAt = at;
      if (masked) at += 4;
      if (buffer.length - at < length) break;
      const payload = buffer.subarray(at, at + length);
      if (masked) unmask(payload, buffer, maskAt);
      offset = at + length;
      this.onFrame(b0 & 0x0f, payload, (b0 & 0x80) !== 0);
    }
    if (offset < buffer.length) this.pending = buffer.subarray(offset);
  }
}

function unmask(payload, buffer, maskAt) {
  const m0 = buffer[maskAt];
  const m1 = buffer[maskAt + 1];
  const m2 = buffer[maskAt + 2];
  const m3 = buffer[maskAt + 3];
  if ((m0 | m1 | m2 | m3) === 0) return;
  const n = payload.length;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    payload[i] ^= m0;
    payload[i + 1] ^= m1;
    payload[i + 2] ^= m2;
    payload[i + 3] ^= m3;
  }
  const mask = [m0, m1, m2, m3];
  for (; i < n; i++) payload[i] ^= mask[i & 3];
}

/** Reads an HTTP head (up to the blank line); resolves with the head text and the bytes after it. */
function readHead(socket) {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const onData = (chunk) => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf(HEADER_END);
      if (end === -1) {
        if (buffered.length > MAX_HANDSHAKE_BYTES) done(new Error('WebSocket handshake too long'));
        return;
      }
      done(undefined, { head: buffered.toString('latin1', 0, end), rest: buffered.subarray(end + HEADER_END.length) });
    };
    const onError = (error) => done(error);
    const onClose = () => done(new Error('socket closed during the WebSocket handshake'));
    function done(error, value) {
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
      if (error) reject(error);
      else resolve(value);
    }
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
  });
}

function acceptKey(key) {
  return createHash('sha1').update(key + GUID).digest('base64');
}

/**
 * Opens a client WebSocket to 127.0.0.1:`port` at `path`; resolves with the socket (Nagle off, like `ws`) once the
 * server answered 101, and the bytes that followed the handshake (frames already sent).
 */
export async function connectClient(port, path, timeoutMs = 20_000) {
  const socket = connect({ host: '127.0.0.1', port, noDelay: true });
  const timer = setTimeout(() => socket.destroy(new Error(`WebSocket connect timed out after ${timeoutMs} ms`)), timeoutMs);
  try {
    await new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const key = randomBytes(16).toString('base64');
    socket.write(
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    const { head, rest } = await readHead(socket);
    if (!/^HTTP\/1\.1 101 /.test(head)) throw new Error(`WebSocket upgrade refused: ${head.split('\r\n')[0]}`);
    const accept = /^sec-websocket-accept:\s*(\S+)/im.exec(head)?.[1];
    if (accept !== acceptKey(key)) throw new Error('WebSocket upgrade: wrong Sec-WebSocket-Accept');
    return { socket, rest };
  } catch (error) {
    socket.destroy();
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A WebSocket server on 127.0.0.1 (free port): `onConnection(socket, request, rest)` for each completed upgrade, with
 * `request` = { path, headers } (lower-case names). `authorize(request)` returning false answers 401 instead.
 */
export async function startServer(onConnection, authorize = () => true) {
  const server = createServer({ noDelay: true }, (socket) => {
    socket.on('error', () => {});
    readHead(socket).then(
      ({ head, rest }) => {
        const [requestLine, ...lines] = head.split('\r\n');
        const headers = {};
        for (const line of lines) {
          const colon = line.indexOf(':');
          if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
        }
        const request = { path: requestLine.split(' ')[1] ?? '/', headers };
        const key = headers['sec-websocket-key'];
        if (key === undefined || headers.upgrade?.toLowerCase() !== 'websocket') {
          socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
          return;
        }
        if (!authorize(request)) {
          socket.end('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\n\r\n');
          return;
        }
        socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\n\r\n`);
        onConnection(socket, request, rest);
      },
      () => socket.destroy(),
    );
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return server;
}
