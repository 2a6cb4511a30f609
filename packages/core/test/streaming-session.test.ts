/**
 * `StreamingSession` against a real `ws` server on the loopback: the gap buffer's bound, replay after a drop, paced
 * catch-up, controls in order, the end of input and its deadline, reconnect within the budget, and close.
 */
import { getEventListeners } from 'node:events';
import { pino } from 'pino';
import { afterEach, describe, expect, test } from 'vitest';
import { WebSocketServer } from 'ws';
import type { WebSocket as ServerSocket } from 'ws';
import { GapBuffer, ProviderError, StreamingAsrSession, StreamingSession, connectLiveSocket } from '../src/index.js';
import type { ErrorEvent, LiveSocket, StreamingSessionOptions } from '../src/index.js';
import { listening, until } from './ws-helpers.js';

type TestEvent = { type: 'text'; text: string } | ErrorEvent;

interface ServerConnection {
  readonly socket: ServerSocket;
  /** Every frame: `audio:<first sample>x<samples>` for binary, the text otherwise. */
  readonly frames: string[];
  samples: number[];
}

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function server(): Promise<{ url: string; connections: ServerConnection[] }> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  const connections: ServerConnection[] = [];
  wss.on('connection', (socket) => {
    const connection: ServerConnection = { socket, frames: [], samples: [] };
    connections.push(connection);
    socket.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) {
        connection.frames.push(data.toString('utf8'));
        if (data.toString('utf8') === 'end') socket.close(1000, 'finished');
        return;
      }
      const samples = new Int16Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
      connection.frames.push(`audio:${String(samples[0])}x${String(samples.length)}`);
      connection.samples.push(...samples);
    });
  });
  const { url, close } = await listening(wss);
  cleanups.push(close);
  return { url, connections };
}

function memoryLogger(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  return { logger: pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) }), lines };
}

/** 20 ms frames at 8 kHz whose samples hold their own absolute position (mod 32768). */
function frames(from: number, count: number): Int16Array[] {
  return Array.from({ length: count }, (_, i) => Int16Array.from({ length: 160 }, (_unused, j) => (from + i * 160 + j) % 32768));
}

interface Harness {
  session: StreamingSession<TestEvent, LiveSocket, 'finalize'>;
  events: TestEvent[];
  done: Promise<void>;
  lines: Record<string, unknown>[];
  signal: AbortController;
  reconnects: string[];
}

function harness(url: string, extra: Partial<StreamingSessionOptions<LiveSocket, 'finalize'>> & { gate?: (reconnect: boolean) => Promise<void> | undefined } = {}): Harness {
  const { gate, ...overrides } = extra;
  const { logger, lines } = memoryLogger();
  const signal = new AbortController();
  const reconnects: string[] = [];
  const events: TestEvent[] = [];
  const session: StreamingSession<TestEvent, LiveSocket, 'finalize'> = new StreamingSession<TestEvent, LiveSocket, 'finalize'>({
    provider: 'acme',
    label: 'Acme',
    call: { signal: signal.signal, observer: { reconnecting: (provider) => void reconnects.push(provider) } },
    logger,
    sampleRate: 8000,
    maxQueuedMs: 10_000,
    reconnect: { maxAttempts: 2, firstDelayMs: 0, baseDelayMs: 10, maxDelayMs: 20, jitter: 0, stableAfterMs: 30_000 },
    connect: async (attempt) => {
      await gate?.(attempt.reconnect);
      return connectLiveSocket({
        url,
        provider: 'acme',
        label: 'Acme',
        timeoutMs: 2000,
        signal: attempt.signal,
        logger,
        onText: (text) => session.events.push({ type: 'text', text }),
        onDrop: attempt.onDrop,
        onEnd: () => void session.close(),
      });
    },
    onLinkReady: (link) => link.send('config'),
    sendAudio: (link, samples) => link.send(Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength)),
    sendControl: (link, control) => link.send(control),
    sendEndOfInput: (link) => {
      link.expectClose();
      link.send('end');
    },
    ...overrides,
  });
  cleanups.push(() => session.close());
  const done = (async () => {
    for await (const event of session.events) events.push(event);
  })();
  return { session, events, done, lines, signal, reconnects };
}

describe('StreamingSession', () => {
  test('audio and controls pushed before the connection is ready go out after the config, in order; a repeated finalize is held once', async () => {
    const { url, connections } = await server();
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const { session } = harness(url, { gate: () => gate });
    const [a, b] = frames(0, 2) as [Int16Array, Int16Array];
    session.pushAudio(a);
    session.pushControl('finalize', { coalesce: true });
    session.pushControl('finalize', { coalesce: true });
    session.pushAudio(b);
    a.fill(-1); // the session holds a copy
    open();
    await session.ready;
    await until(() => connections[0]?.frames.length === 4);
    expect(connections[0]?.frames).toEqual(['config', 'audio:0x160', 'finalize', 'audio:160x160']);
  });

  test('the gap buffer is bounded: the oldest audio goes, with one warning', async () => {
    const { url, connections } = await server();
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const { session, lines } = harness(url, { gate: () => gate, maxQueuedMs: 300 });
    for (const frame of frames(0, 50)) session.pushAudio(frame); // 1 s
    open();
    await session.ready;
    await until(() => connections[0]?.samples.length === 2400);
    // The newest 300 ms: from sample 8000 - 2400.
    expect(connections[0]?.samples[0]).toBe(5600);
    expect(lines.filter((line) => line.msg === 'Acme not connected: oldest queued caller audio dropped')).toHaveLength(1);
  });

  test('after a drop, the audio not final yet is replayed first, then what came meanwhile; reconnects are logged and counted', async () => {
    const { url, connections } = await server();
    let reopen!: () => void;
    const reconnectGate = new Promise<void>((resolve) => (reopen = resolve));
    const { session, lines, reconnects, events } = harness(url, { maxReplayMs: 1000, gate: (reconnect) => (reconnect ? reconnectGate : undefined) });
    await session.ready;
    for (const frame of frames(0, 25)) session.pushAudio(frame); // 500 ms live
    await until(() => connections[0]?.samples.length === 4000);
    session.discardReplayBefore(1600); // the provider made the first 200 ms final
    expect(session.replayFrom).toBe(1600);
    connections[0]?.socket.terminate();
    await until(() => session.link === undefined);
    for (const frame of frames(4000, 5)) session.pushAudio(frame); // 100 ms during the gap
    reopen();
    await until(() => connections[1]?.samples.length === 2400 + 800);
    expect(connections[1]?.frames.slice(0, 2)).toEqual(['config', 'audio:1600x2400']);
    expect(connections[1]?.samples.slice(2400, 2401)).toEqual([4000]);
    expect(session.linkStartSamples).toBe(1600);
    expect(lines.find((line) => line.msg === 'Acme connection lost')).toMatchObject({ category: 'connectivity', level: 40 });
    expect(lines.find((line) => line.msg === 'Acme session restored')).toMatchObject({ replayMs: 300 });
    expect(reconnects).toEqual(['acme']);
    expect(events).toEqual([]);
  });

  test('without replay, nothing sent before the drop goes again', async () => {
    const { url, connections } = await server();
    const { session } = harness(url);
    await session.ready;
    for (const frame of frames(0, 5)) session.pushAudio(frame);
    await until(() => connections[0]?.samples.length === 800);
    connections[0]?.socket.close(1012, 'restart');
    await until(() => connections[1]?.frames.length === 1);
    session.pushAudio(frames(800, 1)[0] as Int16Array);
    await until(() => connections[1]?.frames.length === 2);
    expect(connections[1]?.frames).toEqual(['config', 'audio:800x160']);
  });

  test('paced catch-up sends a backlog in slices no larger than maxRate x maxStepMs, in order, and live audio queues behind it', async () => {
    const { url, connections } = await server();
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const { session } = harness(url, { gate: () => gate, catchUp: { maxRate: 2, tickMs: 20, maxStepMs: 50 } });
    for (const frame of frames(0, 25)) session.pushAudio(frame); // 500 ms
    open();
    await session.ready;
    session.pushAudio(frames(4000, 1)[0] as Int16Array);
    await until(() => connections[0]?.samples.length === 4160);
    const audio = connections[0]?.frames.filter((frame) => frame.startsWith('audio:')) ?? [];
    expect(audio.length).toBeGreaterThan(4);
    for (const frame of audio) expect(Number(frame.split('x')[1])).toBeLessThanOrEqual(800);
    expect(connections[0]?.samples.every((sample, index) => sample === index)).toBe(true);
  });

  test('endInput: the end goes out after the backlog; the server finishing closes the session without an error', async () => {
    const { url, connections } = await server();
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const { session, done, events } = harness(url, { gate: () => gate, finishTimeoutMs: 2000 });
    for (const frame of frames(0, 3)) session.pushAudio(frame);
    session.endInput();
    session.pushAudio(frames(480, 1)[0] as Int16Array); // ignored after endInput
    open();
    await done;
    expect(connections[0]?.frames).toEqual(['config', 'audio:0x160', 'audio:160x160', 'audio:320x160', 'end']);
    expect(events).toEqual([]);
  });

  test('a provider that does not finish after the end of input: one fatal timeout, and the events end', async () => {
    const { url } = await server();
    const { session, done, events } = harness(url, { finishTimeoutMs: 100, sendEndOfInput: (link) => link.send('not the end') });
    await session.ready;
    session.endInput();
    await done;
    expect(events).toEqual([{ type: 'error', fatal: true, error: expect.objectContaining({ category: 'timeout', retryable: false }) as ProviderError }]);
  });

  test('a refused first connection: one fatal error, `ready` rejects; retries run out with a clear message', async () => {
    const refused = harness('ws://127.0.0.1:9/', {
      connect: () => Promise.reject(new ProviderError('acme', 'auth', 'bad key', { retryable: false })),
    });
    await expect(refused.session.ready).rejects.toMatchObject({ category: 'auth' });
    await refused.done;
    expect(refused.events).toMatchObject([{ type: 'error', fatal: true, error: { category: 'auth' } }]);

    let attempts = 0;
    const flaky = harness('ws://127.0.0.1:9/', {
      connect: () => {
        attempts++;
        return Promise.reject(new ProviderError('acme', 'server', 'busy'));
      },
    });
    await flaky.done;
    expect(attempts).toBe(3);
    expect(flaky.events).toMatchObject([{ type: 'error', fatal: true, error: { category: 'server', retryable: false, message: 'busy (gave up after 2 reconnect attempts)' } }]);
    expect(flaky.lines.filter((line) => line.msg === 'Acme connection failed; reconnecting')).toHaveLength(2);
  });

  test('close() is idempotent, ends the events, closes the connection and removes every listener and timer; the call signal does the same', async () => {
    const { url, connections } = await server();
    const { session, done, events, signal } = harness(url, { finishTimeoutMs: 100, sendEndOfInput: (link) => link.send('not the end') });
    await session.ready;
    session.endInput(); // arms the finish deadline
    const serverClosed = new Promise<number>((resolve) => connections[0]?.socket.once('close', (code: number) => resolve(code)));
    const first = session.close();
    expect(session.close()).toBe(first);
    await first;
    await done;
    expect(await serverClosed).toBe(1000);
    expect(getEventListeners(signal.signal, 'abort')).toHaveLength(0);
    await new Promise((resolve) => setTimeout(resolve, 200)); // past the finish deadline: it was cleared
    expect(events).toEqual([]);
    expect(session.link).toBeUndefined();

    const second = harness(url);
    await second.session.ready;
    const link = second.session.link;
    second.signal.abort();
    await second.done;
    await link?.closed;
    expect(link?.socket.listenerCount('message')).toBe(0);
    expect(getEventListeners(second.signal.signal, 'abort')).toHaveLength(0);
    expect(second.events).toEqual([]);
  });

  test('closed while connecting: the connection that arrives late is closed, `ready` rejects with closed', async () => {
    const { url, connections } = await server();
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const { session, done } = harness(url, { gate: () => gate });
    await session.close();
    await expect(session.ready).rejects.toMatchObject({ category: 'closed' });
    open();
    await done;
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(connections.filter((connection) => connection.socket.readyState === connection.socket.OPEN)).toEqual([]);
  });
});

describe('StreamingAsrSession', () => {
  test('is the AsrStream: finalize is queued in order (coalesced, or refused by canFinalize), a bad message is one non-fatal error', async () => {
    const { url, connections } = await server();
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    let inFlight = false;
    const session: StreamingAsrSession<LiveSocket> = new StreamingAsrSession<LiveSocket>({
      provider: 'acme',
      label: 'Acme',
      call: { signal: new AbortController().signal },
      logger: pino({ enabled: false }),
      sampleRate: 8000,
      maxQueuedMs: 1000,
      canFinalize: () => !inFlight,
      connect: async (attempt) => {
        await gate;
        return connectLiveSocket({ url, provider: 'acme', label: 'Acme', timeoutMs: 2000, signal: attempt.signal, logger: pino({ enabled: false }), onDrop: attempt.onDrop });
      },
      sendAudio: (link, samples) => link.send(Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength)),
      sendControl: (link, control) => {
        inFlight = true;
        link.send(control);
      },
    });
    cleanups.push(() => session.close());
    const events: unknown[] = [];
    const done = (async () => {
      for await (const event of session.events) events.push(event);
    })();
    expect(session.inputSampleRate).toBe(8000);
    session.pushAudio(frames(0, 1)[0] as Int16Array);
    session.finalize();
    session.finalize();
    open();
    await session.ready;
    await until(() => connections[0]?.frames.length === 2);
    session.finalize(); // refused: one is in flight
    session.reportUnexpected('not JSON');
    session.reportUnexpected('not JSON either');
    session.emit([{ type: 'partial', text: 'hi' }]);
    await session.close();
    await done;
    expect(connections[0]?.frames).toEqual(['audio:0x160', 'finalize']);
    expect(events).toMatchObject([{ type: 'error', fatal: false, error: { category: 'protocol', message: 'unexpected Acme message (not JSON)' } }, { type: 'partial', text: 'hi' }]);
  });
});

describe('GapBuffer', () => {
  test('drops the oldest audio beyond the bound (controls stay), warns once, and hands out audio in slices', () => {
    let overflows = 0;
    const gap = new GapBuffer<'finalize'>({ maxSamples: 300, onOverflow: () => overflows++ });
    gap.pushAudio(new Int16Array(200).fill(1));
    gap.pushControl('finalize');
    gap.pushAudio(new Int16Array(200).fill(2));
    gap.pushAudio(new Int16Array(100).fill(3));
    expect(gap.samples).toBe(300);
    expect(overflows).toBe(1);
    gap.pushAudio(new Int16Array(100).fill(4));
    expect(overflows).toBe(1);
    expect(gap.shift()).toEqual({ kind: 'control', control: 'finalize' });
    const part = gap.shift(50);
    expect(part).toMatchObject({ kind: 'audio' });
    expect(part?.kind === 'audio' ? [part.samples.length, part.samples[0]] : []).toEqual([50, 3]);
    expect(gap.samples).toBe(150);
  });
});
