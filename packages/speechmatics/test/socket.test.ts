/**
 * The handshake hands over every frame that follows the server's go-ahead, even one that arrives in the same read
 * (Flow starts the greeting's audio right after ConversationStarted). A raw TCP server writes both frames in one
 * chunk, so the case is forced rather than left to timing.
 */
import { createHash } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, expect, test } from 'vitest';
import { handshake, openSocket } from '../src/socket.js';

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

/** An unmasked server frame (payloads under 126 bytes). */
function frame(opcode: 1 | 2, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0x80 | opcode, payload.length]), payload]);
}

/** Accepts one upgrade; after the client's first frame, writes `reply` in a single chunk. */
async function rawServer(reply: Buffer): Promise<string> {
  const server = createServer((socket: Socket) => {
    let upgraded = false;
    socket.on('data', (chunk: Buffer) => {
      if (!upgraded) {
        const key = /sec-websocket-key: (.+)\r\n/i.exec(chunk.toString('latin1'))?.[1]?.trim() ?? '';
        const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
        socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
        upgraded = true;
        return;
      }
      socket.write(reply);
    });
    socket.on('error', () => undefined);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `ws://127.0.0.1:${String((server.address() as AddressInfo).port)}/v1/flow`;
}

test('frames in the same read as the go-ahead reach the owner, in order', async () => {
  const audio = Buffer.from([1, 0, 2, 0]);
  const url = await rawServer(
    Buffer.concat([frame(1, Buffer.from('{"message":"ConversationStarted","id":"c"}')), frame(2, audio), frame(1, Buffer.from('{"message":"Info","type":"x"}'))]),
  );
  const signal = new AbortController().signal;
  const socket = await openSocket({ url, timeoutMs: 2000, signal, secret: 'k', what: 'test' });
  const started = await handshake(socket, {
    start: '{"message":"StartConversation"}',
    timeoutMs: 2000,
    signal,
    secret: 'k',
    what: 'start',
    classify: (text) => (text.includes('ConversationStarted') ? true : undefined),
  });
  const received: string[] = [];
  started.takeOver(
    (data, isBinary) => received.push(isBinary ? `binary:${(data as Buffer).toString('hex')}` : (data as Buffer).toString('utf8')),
    () => undefined,
  );
  expect(received).toEqual(['binary:01000200', '{"message":"Info","type":"x"}']);
  socket.terminate();
});
