import { describe, expect, it } from 'vitest';
import { createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { WebSocketTransport } from '../src/call-transport.js';

/** A real ws server whose accepted TCP sockets count the system calls that write to them. */
async function countingServer() {
  const wss = new WebSocketServer({ noServer: true });
  const writes = { count: 0 };
  const sockets: { ws: WebSocket; tcp: Socket }[] = [];
  const server = createServer();
  server.on('connection', (tcp) => {
    // Node writes through _writev when several chunks are buffered (corked), _write otherwise: one syscall each.
    const stream = tcp as unknown as { _write: (...args: unknown[]) => void; _writev: (...args: unknown[]) => void };
    const write = stream._write.bind(tcp);
    const writev = stream._writev.bind(tcp);
    stream._write = (...args) => ((writes.count += 1), write(...args));
    stream._writev = (...args) => ((writes.count += 1), writev(...args));
    tcp.once('data', (head) => {
      tcp.pause();
      // Hand the upgrade request to ws by hand: it needs the request as an IncomingMessage.
      const request = Object.assign(Object.create(null) as object, {
        method: 'GET',
        url: '/',
        headers: Object.fromEntries(
          head
            .toString('latin1')
            .split('\r\n')
            .slice(1)
            .filter((line) => line.includes(':'))
            .map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]),
        ),
      });
      wss.handleUpgrade(request as never, tcp, Buffer.alloc(0), (ws) => sockets.push({ ws, tcp }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, wss, writes, sockets, port: (server.address() as AddressInfo).port };
}

describe('WebSocketTransport', () => {
  it('writes what one event-loop turn sends in one system call, in order, controls included', async () => {
    const { server, wss, writes, sockets, port } = await countingServer();
    const client = new WebSocket(`ws://127.0.0.1:${port}/`);
    const received: string[] = [];
    client.on('message', (data) => received.push(String(data)));
    await new Promise((resolve) => client.once('open', resolve));
    const [accepted] = sockets;
    if (accepted === undefined) throw new Error('no connection');
    const transport = new WebSocketTransport(accepted.ws, accepted.tcp);

    const before = writes.count;
    transport.sendAudio(new Int16Array(160).fill(1));
    transport.sendControl({ type: 'interruption' });
    transport.sendAudio(new Int16Array(160).fill(2));
    await new Promise((resolve) => setImmediate(resolve));
    expect(writes.count - before).toBe(1);
    // The next turn's message is a write of its own.
    transport.sendControl({ type: 'transcript', role: 'agent', text: 'Hi.' });
    await new Promise((resolve) => setImmediate(resolve));
    expect(writes.count - before).toBe(2);

    await new Promise<void>((resolve) => {
      const check = () => (received.length === 4 ? resolve() : setTimeout(check, 5));
      check();
    });
    expect(received.map((text) => (JSON.parse(text) as { type: string }).type)).toEqual(['audio', 'interruption', 'audio', 'transcript']);
    client.close();
    wss.close();
    server.close();
  });
});
