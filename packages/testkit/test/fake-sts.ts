import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';

/** One AVR Core connection as seen by the fake STS server. */
export interface FakeConnection {
  readonly ws: WebSocket;
  readonly requestUrl: string;
  /** Every text message received, parsed, in order. */
  readonly messages: Record<string, unknown>[];
  /** Decoded caller audio frames, in order. */
  readonly frames: Buffer[];
  /** Resolves with the close code and reason once the socket has closed. */
  readonly closed: Promise<{ code: number; reason: string }>;
}

export interface FakeSts {
  readonly url: string;
  readonly connections: FakeConnection[];
  close(): Promise<void>;
}

/** A minimal STS endpoint on 127.0.0.1:<random port>; `onConnection` scripts its behaviour per test. */
export async function startFakeSts(
  onConnection: (connection: FakeConnection, request: IncomingMessage) => void,
): Promise<FakeSts> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const connections: FakeConnection[] = [];
  server.on('connection', (ws, request) => {
    const messages: Record<string, unknown>[] = [];
    const frames: Buffer[] = [];
    const closed = new Promise<{ code: number; reason: string }>((resolve) => {
      ws.on('close', (code, reason) => resolve({ code, reason: reason.toString('utf8') }));
    });
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      const message = JSON.parse(String(data)) as Record<string, unknown>;
      messages.push(message);
      if (message.type === 'audio' && typeof message.audio === 'string') frames.push(Buffer.from(message.audio, 'base64'));
    });
    const connection: FakeConnection = { ws, requestUrl: request.url ?? '', messages, frames, closed };
    connections.push(connection);
    onConnection(connection, request);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `ws://127.0.0.1:${port}`,
    connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of server.clients) client.terminate();
        server.close(() => resolve());
      }),
  };
}

export function audioMessage(samples: Int16Array): string {
  return JSON.stringify({
    type: 'audio',
    audio: Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength).toString('base64'),
  });
}

/** Send samples as 20 ms (160-sample) audio messages, all at once (faster than real time, like most STS). */
export function sendFrames(ws: WebSocket, samples: Int16Array): void {
  for (let i = 0; i < samples.length; i += 160) {
    const frame = new Int16Array(160);
    frame.set(samples.subarray(i, Math.min(i + 160, samples.length)));
    ws.send(audioMessage(frame));
  }
}

export function frameSamples(frame: Buffer): Int16Array {
  const out = new Int16Array(frame.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = frame.readInt16LE(i * 2);
  return out;
}

export function meanSquare(samples: Int16Array): number {
  let sum = 0;
  for (const s of samples) sum += s * s;
  return samples.length === 0 ? 0 : sum / samples.length;
}

export function tone(ms: number, hz: number, amplitude: number): Int16Array {
  const out = new Int16Array(ms * 8);
  for (let i = 0; i < out.length; i++) out[i] = Math.round(amplitude * Math.sin((2 * Math.PI * hz * i) / 8000));
  return out;
}

