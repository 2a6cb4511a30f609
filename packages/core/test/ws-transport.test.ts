/**
 * The WebSocket transport helpers against real `ws` servers on the loopback: upgrade rejections, timeouts, abort,
 * the first-message handshake, keepalive and `LiveSocket`'s drop classification and close.
 */
import { createHash } from 'node:crypto';
import { createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, test } from 'vitest';
import { WebSocketServer } from 'ws';
import type { WebSocket as ServerSocket } from 'ws';
import { LiveSocket, ProviderError, connectLiveSocket, firstMessageHandshake, frameToText, openWebSocket, sanitizeMessage } from '../src/index.js';
import type { LiveSocketOptions, OpenWebSocketOptions } from '../src/index.js';
import { listening, until } from './ws-helpers.js';

const SECRET = 'sk-test-secret-0123456789';
const silent = pino({ enabled: false });
const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

type VerifyClient = ConstructorParameters<typeof WebSocketServer>[0] extends infer O ? (O extends { verifyClient?: infer V } ? V : never) : never;

async function wsServer(options: { verifyClient?: VerifyClient; autoPong?: boolean } = {}): Promise<{ url: string; server: WebSocketServer; connections: ServerSocket[] }> {
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1', ...options });
  const connections: ServerSocket[] = [];
  server.on('connection', (socket) => connections.push(socket));
  const { url, close } = await listening(server);
  cleanups.push(close);
  return { url, server, connections };
}

/** A TCP server that accepts and never answers (an upgrade that never completes). */
async function silentTcpServer(): Promise<{ url: string; sockets: Socket[]; closed: Set<Socket> }> {
  const sockets: Socket[] = [];
  const closed = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => closed.add(socket));
    socket.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => {
    for (const socket of sockets) socket.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `ws://127.0.0.1:${String((server.address() as AddressInfo).port)}/`, sockets, closed };
}

function options(url: string, extra: Partial<OpenWebSocketOptions> = {}): OpenWebSocketOptions {
  return { url, provider: 'acme', label: 'Acme', secrets: [SECRET], timeoutMs: 2000, signal: new AbortController().signal, headers: { Authorization: `Bearer ${SECRET}` }, ...extra };
}

function failure(promise: Promise<unknown>): Promise<ProviderError> {
  return promise.then(
    () => {
      throw new Error('expected a failure');
    },
    (error: unknown) => {
      expect(error).toBeInstanceOf(ProviderError);
      return error as ProviderError;
    },
  );
}

function liveOptions(extra: Partial<LiveSocketOptions> = {}): LiveSocketOptions & { drops: ProviderError[]; frames: string[] } {
  const drops: ProviderError[] = [];
  const frames: string[] = [];
  return {
    provider: 'acme',
    label: 'Acme',
    secrets: [SECRET],
    logger: silent,
    onText: (text) => frames.push(text),
    onBinary: (frame) => frames.push(`binary:${frame.toString('hex')}`),
    onDrop: (error) => drops.push(error),
    drops,
    frames,
    ...extra,
  };
}

describe('openWebSocket', () => {
  test('sends the headers and resolves with the open socket', async () => {
    const headers: (string | undefined)[] = [];
    const { url } = await wsServer({ verifyClient: (info: { req: { headers: Record<string, string | string[] | undefined> } }) => (headers.push(String(info.req.headers.authorization)), true) });
    const { socket } = await openWebSocket(options(url));
    expect(socket.readyState).toBe(socket.OPEN);
    expect(headers).toEqual([`Bearer ${SECRET}`]);
    expect(socket.listenerCount('error')).toBe(1);
    for (const event of ['open', 'upgrade', 'unexpected-response']) expect(socket.listenerCount(event)).toBe(0);
    socket.terminate();
  });

  test('what the server sends at once (in the same read as the upgrade) and its close wait for the owner', async () => {
    const { url, server } = await wsServer();
    server.on('connection', (socket) => {
      socket.send('{"error_code":401}');
      socket.close(1000);
    });
    const held = await openWebSocket(options(url));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const seen: string[] = [];
    held.takeOver({ message: (data) => seen.push(frameToText(data)), close: (code) => seen.push(`close ${String(code)}`) });
    expect(seen).toEqual(['{"error_code":401}', 'close 1000']);
  });

  test('`bearer` is the Authorization header, and redacted from messages like a secret', async () => {
    const headers: string[] = [];
    const { url } = await wsServer({
      verifyClient: (info: { req: { headers: Record<string, string | string[] | undefined> } }, done: (ok: boolean, status: number, message: string) => void) => {
        headers.push(String(info.req.headers.authorization));
        done(false, 403, `key ek-bearer-token-42 is not allowed`);
      },
    });
    const error = await failure(openWebSocket({ url, provider: 'acme', label: 'Acme', timeoutMs: 2000, signal: new AbortController().signal, bearer: 'ek-bearer-token-42' }));
    expect(headers).toEqual(['Bearer ek-bearer-token-42']);
    expect(error).toMatchObject({ category: 'permission', message: 'Acme rejected the connection: permission denied (HTTP 403): key [redacted] is not allowed' });
  });

  test('an upgrade refused with 401: auth, not retryable, the body message without the secret', async () => {
    const { url } = await wsServer({ verifyClient: (_info: unknown, done: (ok: boolean, status: number, message: string) => void) => done(false, 401, `invalid key ${SECRET}`) });
    const error = await failure(openWebSocket(options(url)));
    expect(error).toMatchObject({ provider: 'acme', category: 'auth', statusCode: 401, retryable: false });
    expect(error.message).toContain('Acme rejected the connection');
    expect(error.message).not.toContain(SECRET);
  });

  test('an upgrade refused with 429 and Retry-After: rate_limit with the hint; a provider classifier replaces the default', async () => {
    const verifyClient = (_info: unknown, done: (ok: boolean, status: number, message: string, headers: Record<string, string>) => void) =>
      done(false, 429, 'slow down', { 'Retry-After': '3' });
    const { url } = await wsServer({ verifyClient });
    const error = await failure(openWebSocket(options(url)));
    expect(error).toMatchObject({ category: 'rate_limit', statusCode: 429, retryAfterMs: 3000, retryable: true });

    const custom = await failure(
      openWebSocket(
        options(url, {
          classify: { upgrade: (rejection) => new ProviderError('acme', 'quota', `custom ${rejection.status} ${rejection.body} ${String(rejection.retryAfterMs)}`, { retryable: false }) },
        }),
      ),
    );
    expect(custom).toMatchObject({ category: 'quota', message: 'custom 429 slow down 3000' });
  });

  test('an upgrade that never completes: a retryable timeout, and the TCP connection is closed', async () => {
    const { url, sockets, closed } = await silentTcpServer();
    const error = await failure(openWebSocket(options(url, { timeoutMs: 150 })));
    expect(error).toMatchObject({ category: 'timeout', retryable: true });
    await until(() => (sockets[0] !== undefined && closed.has(sockets[0])) || undefined);
  });

  test('abort during connect: a non-retryable closed error at once, and the connection is dropped', async () => {
    const { url, sockets, closed } = await silentTcpServer();
    const controller = new AbortController();
    const pending = openWebSocket(options(url, { timeoutMs: 5000, signal: controller.signal }));
    await until(() => sockets[0]);
    controller.abort();
    const error = await failure(pending);
    expect(error).toMatchObject({ category: 'closed', retryable: false });
    await until(() => (sockets[0] !== undefined && closed.has(sockets[0])) || undefined);
    // Already aborted: nothing is opened.
    expect(await failure(openWebSocket(options(url, { signal: controller.signal })))).toMatchObject({ category: 'closed' });
    expect(sockets).toHaveLength(1);
  });

  test('nothing listening: connectivity', async () => {
    const { url } = await silentTcpServer();
    cleanups.splice(0).forEach((cleanup) => void cleanup());
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await failure(openWebSocket(options(url)))).toMatchObject({ category: 'connectivity', retryable: true });
  });
});

describe('firstMessageHandshake', () => {
  test('sends the start message; a refusal is the error even though the server closes right after', async () => {
    const { url, server } = await wsServer();
    server.on('connection', (socket) =>
      socket.on('message', () => {
        socket.send('{"message":"Error","type":"not_authorised"}');
        socket.close(4001, 'not_authorised');
      }),
    );
    const held = await openWebSocket(options(url));
    const error = await failure(
      firstMessageHandshake(held, {
        provider: 'acme',
        label: 'Acme',
        start: '{"message":"Start"}',
        timeoutMs: 2000,
        signal: new AbortController().signal,
        what: 'start',
        classify: (text) => (text.includes('Error') ? new ProviderError('acme', 'auth', 'refused', { retryable: false }) : 'ignore'),
      }),
    );
    expect(error).toMatchObject({ category: 'auth', message: 'refused' });
  });

  test('no go-ahead in time: a retryable timeout, and the socket is terminated', async () => {
    const { url, connections } = await wsServer();
    const held = await openWebSocket(options(url));
    const error = await failure(
      firstMessageHandshake(held, { provider: 'acme', label: 'Acme', start: 'start', timeoutMs: 100, signal: new AbortController().signal, what: 'start the session', classify: () => 'ignore' }),
    );
    expect(error).toMatchObject({ category: 'timeout', retryable: true, message: 'Acme did not start the session within 100 ms' });
    await until(() => connections[0]?.readyState === connections[0]?.CLOSED || undefined);
  });

  test('frames in the same read as the go-ahead reach the owner, in order, with held ones from before it', async () => {
    // A raw server writes the go-ahead and what follows in one chunk, so the case is forced rather than left to timing.
    const frame = (opcode: 1 | 2, payload: Buffer): Buffer => Buffer.concat([Buffer.from([0x80 | opcode, payload.length]), payload]);
    const sockets: Socket[] = [];
    const server = createServer((socket) => {
      sockets.push(socket);
      let upgraded = false;
      socket.on('error', () => undefined);
      socket.on('data', (chunk: Buffer) => {
        if (!upgraded) {
          const key = /sec-websocket-key: (.+)\r\n/i.exec(chunk.toString('latin1'))?.[1]?.trim() ?? '';
          const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
          socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
          upgraded = true;
          return;
        }
        socket.write(Buffer.concat([frame(1, Buffer.from('early')), frame(1, Buffer.from('GO')), frame(2, Buffer.from([1, 0, 2, 0])), frame(1, Buffer.from('after'))]));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    });
    const url = `ws://127.0.0.1:${String((server.address() as AddressInfo).port)}/`;
    const opened = await openWebSocket(options(url));
    const held = await firstMessageHandshake(opened, {
      provider: 'acme',
      label: 'Acme',
      start: 'start',
      timeoutMs: 2000,
      signal: new AbortController().signal,
      what: 'start',
      classify: (text) => (text === 'GO' ? 'ready' : text === 'early' ? 'hold' : 'ignore'),
    });
    const received: string[] = [];
    held.takeOver({ message: (data, isBinary) => received.push(isBinary ? `binary:${frameToText(data).length}` : frameToText(data)), close: () => undefined });
    expect(received).toEqual(['early', 'binary:4', 'after']);
    held.socket.terminate();
  });
});

describe('LiveSocket', () => {
  test('a drop is classified by its close code; a reported server error wins; frames wait for start()', async () => {
    const { url, connections } = await wsServer();
    const first = liveOptions();
    const live = await connectLiveSocket({ ...options(url), ...first });
    const server = await until(() => connections[0]);
    server.send('hello');
    server.send(Buffer.from([1, 2]));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(first.frames).toEqual([]);
    live.start();
    expect(first.frames).toEqual(['hello', 'binary:0102']);
    server.close(1011, `overloaded ${SECRET}`);
    const [drop] = await until(() => (first.drops.length > 0 ? first.drops : undefined));
    expect(drop).toMatchObject({ category: 'server', retryable: true });
    expect(drop?.message).not.toContain(SECRET);
    expect(first.drops).toHaveLength(1);

    const second = liveOptions();
    const reported = await connectLiveSocket({ ...options(url), ...second });
    reported.start();
    reported.report(new ProviderError('acme', 'quota', 'quota exceeded', { retryable: false }));
    (await until(() => connections[1])).close(1000);
    expect((await until(() => second.drops[0])).category).toBe('quota');
  });

  test('expectClose(): the server ending the session calls onEnd, not onDrop', async () => {
    const { url, connections } = await wsServer();
    let ended = 0;
    const opts = liveOptions({ onEnd: () => ended++ });
    const live = await connectLiveSocket({ ...options(url), ...opts });
    live.start();
    live.expectClose();
    (await until(() => connections[0])).close(1000, 'bye');
    await live.closed;
    expect(ended).toBe(1);
    expect(opts.drops).toEqual([]);
  });

  test('close() is idempotent, reports no drop, and leaves no listener of its own on the socket', async () => {
    const { url, connections } = await wsServer();
    const opts = liveOptions({ keepalive: { kind: 'ping', intervalMs: 20, pongTimeoutMs: 1000 } });
    const live = await connectLiveSocket({ ...options(url), ...opts });
    live.start();
    const server = await until(() => connections[0]);
    const serverClosed = new Promise<number>((resolve) => server.once('close', (code: number) => resolve(code)));
    const a = live.close('done');
    const b = live.close();
    expect(a).toBe(b);
    await a;
    expect(await serverClosed).toBe(1000);
    expect(opts.drops).toEqual([]);
    expect(live.send('late')).toBe(false);
    for (const event of ['message', 'close', 'pong', 'open', 'upgrade', 'unexpected-response']) expect(live.socket.listenerCount(event)).toBe(0);
    expect(live.socket.listenerCount('error')).toBeGreaterThan(0);
  });

  test('ping keepalive: a server that stops answering pings is a stalled connection (timeout), logged once', async () => {
    const { url } = await wsServer({ autoPong: false });
    const warnings: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
    const opts = liveOptions({ logger, keepalive: { kind: 'ping', intervalMs: 30, pongTimeoutMs: 60 } });
    const live = await connectLiveSocket({ ...options(url), ...opts });
    live.start();
    const drop = await until(() => opts.drops[0]);
    expect(drop).toMatchObject({ category: 'timeout', retryable: true });
    expect(drop.message).toContain('stalled');
    expect(warnings.filter((line) => line.includes('Acme stopped answering pings'))).toHaveLength(1);
    expect(live.socket.listenerCount('pong')).toBe(0);
  });

  test('ping keepalive: a server that answers keeps the connection', async () => {
    const { url, connections } = await wsServer();
    let pings = 0;
    const opts = liveOptions({ keepalive: { kind: 'ping', intervalMs: 20, pongTimeoutMs: 40 } });
    const live = await connectLiveSocket({ ...options(url), ...opts });
    (await until(() => connections[0])).on('ping', () => pings++);
    live.start();
    await until(() => (pings >= 5 ? true : undefined));
    expect(opts.drops).toEqual([]);
    await live.close();
  });

  test('message keepalive: sent only while nothing else goes out', async () => {
    const { url, connections } = await wsServer();
    const received: string[] = [];
    const live = await connectLiveSocket({ ...options(url), ...liveOptions({ keepalive: { kind: 'message', intervalMs: 1000, message: '{"type":"keepalive"}' } }) });
    (await until(() => connections[0])).on('message', (data) => received.push(frameToText(data)));
    live.start();
    // Busy: a message every 20 ms, so no keepalive is due.
    for (let i = 0; i < 15; i++) {
      live.send('audio');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await until(() => (received.length >= 15 ? true : undefined));
    expect(received.filter((text) => text !== 'audio')).toEqual([]);
    // Idle: keepalives come.
    await until(() => (received.filter((text) => text.includes('keepalive')).length >= 2 ? true : undefined));
    await live.close();
  });

  test('connectLiveSocket with a handshake: a close during it is classified by the provider close classifier', async () => {
    const { url, server } = await wsServer();
    server.on('connection', (socket) => socket.on('message', () => socket.close(4005, 'quota_exceeded')));
    const error = await failure(
      connectLiveSocket({
        ...options(url),
        ...liveOptions(),
        classify: { close: (close) => new ProviderError('acme', 'quota', `closed ${close.code} ${close.reason}`) },
        handshake: { start: 'start', what: 'start', classify: () => 'ignore' },
      }),
    );
    expect(error).toMatchObject({ category: 'quota', message: 'closed 4005 quota_exceeded' });
  });

  test('a LiveSocket over an already-open socket', async () => {
    const { url, connections } = await wsServer();
    const socket = await openWebSocket(options(url));
    const opts = liveOptions();
    const live = new LiveSocket(socket, opts);
    live.start();
    (await until(() => connections[0])).send('x');
    await until(() => opts.frames[0]);
    await live.close();
  });
});

describe('sanitizeMessage', () => {
  test('removes the secrets, JWTs and bearer tokens, and caps the length', () => {
    const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl';
    expect(sanitizeMessage(`key ${SECRET} and ${jwt} via Authorization: Bearer abcdefgh12345`, [SECRET, undefined])).toBe(
      'key [redacted] and [redacted] via Authorization: Bearer [redacted]',
    );
    expect(sanitizeMessage('short key abc', 'abc')).toBe('short key abc');
    expect(sanitizeMessage('x'.repeat(400), undefined, { maxLength: 300 })).toHaveLength(303);
    expect(sanitizeMessage('token ek-abcdef123', undefined, { patterns: [/\bek-[\w]+/g] })).toBe('token [redacted]');
  });
});
