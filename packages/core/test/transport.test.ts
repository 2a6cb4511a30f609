import { EventEmitter } from 'node:events';
import { createServer, request, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect, test } from 'vitest';
import { closeWebSocket, readErrorBody } from '../src/index.js';

/** A response whose body sends `first` and then stalls (never ends). */
async function stalledResponse(first: string): Promise<{ response: IncomingMessage; close: () => void }> {
  const server = createServer((_req, res) => {
    res.writeHead(503, { 'content-type': 'application/json' });
    res.write(first);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const response = await new Promise<IncomingMessage>((resolve) => request(`http://127.0.0.1:${port}/`, resolve).end());
  return {
    response,
    close: () => {
      response.destroy();
      server.closeAllConnections();
      server.close();
    },
  };
}

test('readErrorBody: a body that stalls is cut at maxWaitMs, and capped at maxBytes', async () => {
  const { response, close } = await stalledResponse('{"error":"overloaded, please retry"}');
  const body = await readErrorBody(response, { maxBytes: 10, maxWaitMs: 100 });
  close();
  expect(body).toBe('{"error":"');
});

class FakeSocket extends EventEmitter {
  readyState = 1;
  closeCalls: [number | undefined, string | undefined][] = [];
  terminated = false;
  constructor(private readonly answersClose: boolean) {
    super();
  }
  close(code?: number, reason?: string): void {
    this.closeCalls.push([code, reason]);
    this.readyState = 2;
    if (this.answersClose) setImmediate(() => this.finish());
  }
  terminate(): void {
    this.terminated = true;
    this.finish();
  }
  private finish(): void {
    this.readyState = 3;
    this.emit('close');
  }
}

test('closeWebSocket: a clean close with 1000; a peer that never answers is terminated after waitMs', async () => {
  const polite = new FakeSocket(true);
  await closeWebSocket(polite, 'bye');
  expect(polite.closeCalls).toEqual([[1000, 'bye']]);
  expect(polite.terminated).toBe(false);

  const silent = new FakeSocket(false);
  await closeWebSocket(silent, 'bye', 50);
  expect(silent.terminated).toBe(true);
  // Closing again, or an error after the close, is harmless.
  await closeWebSocket(silent);
  silent.emit('error', new Error('late'));
});
