import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { echoCall, floodRawFrames, floodWebSocket, hangingRequest, probeHealth, tricklePosts } from '../src/index.js';
import { concatPcm, silence } from '../src/signals.js';

// The hostile-client drivers against minimal local servers (a `ws` WebSocketServer, node:http), never the gateway.

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface WsServerConnection {
  readonly ws: WebSocket;
  readonly request: IncomingMessage;
  readonly texts: string[];
  binaries: number;
  pings: number;
  readonly closed: Promise<number>;
}

/** A ws server with a 64 KiB message limit, like the gateway's; `onConnection` scripts it per test. */
async function startWsServer(onConnection: (connection: WsServerConnection) => void = () => {}) {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: 65536 });
  await new Promise<void>((resolve) => server.once('listening', resolve));
  const connections: WsServerConnection[] = [];
  server.on('connection', (ws, request) => {
    const connection: WsServerConnection = {
      ws,
      request,
      texts: [],
      binaries: 0,
      pings: 0,
      closed: new Promise((resolve) => ws.on('close', (code) => resolve(code))),
    };
    ws.on('error', () => {});
    ws.on('ping', () => connection.pings++);
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (isBinary) connection.binaries++;
      else connection.texts.push(String(data));
    });
    connections.push(connection);
    onConnection(connection);
  });
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const client of server.clients) client.terminate();
        server.close(() => resolve());
      }),
  );
  return { url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/call?x=1`, connections };
}

async function startHttpServer(handler: (req: IncomingMessage, res: ServerResponse) => void) {
  const server: HttpServer = createHttpServer(handler);
  let connections = 0;
  let open = 0;
  let maxOpen = 0;
  server.on('connection', (socket) => {
    connections++;
    open++;
    maxOpen = Math.max(maxOpen, open);
    socket.on('close', () => open--);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return {
    baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    stats: () => ({ connections, maxOpen }),
  };
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function tone(ms: number): Int16Array {
  const out = new Int16Array((ms * 8000) / 1000);
  for (let i = 0; i < out.length; i++) out[i] = Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / 8000));
  return out;
}

describe('floodWebSocket', () => {
  it('sends init, then the message as fast as it can until durationMs, and reads the AVR errors sent back', async () => {
    const { url, connections } = await startWsServer(({ ws, texts }) => {
      ws.on('message', () => {
        if (texts.length > 1) ws.send(JSON.stringify({ type: 'error', message: `bad message ${texts.length - 1}` }));
      });
    });
    const report = await floodWebSocket(url, { uuid: 'flood-1', message: 'x', durationMs: 300, headers: { authorization: 'Bearer t0k3n' } });
    const server = connections[0];
    if (server === undefined) throw new Error('no connection');
    await server.closed;
    expect(server.request.headers.authorization).toBe('Bearer t0k3n');
    expect(server.request.url).toBe('/call?x=1');
    expect(server.texts[0]).toBe('{"type":"init","uuid":"flood-1"}');
    expect(report.sent).toBeGreaterThan(1000);
    expect(server.texts.length - 1).toBe(report.sent); // every message sent arrived
    expect(server.texts.slice(1).every((t) => t === 'x')).toBe(true);
    expect(report.replies).toBeGreaterThan(100);
    expect(report.errorMessages).toHaveLength(20);
    expect(report.errorMessages[0]).toBe('bad message 1');
    expect(report).toMatchObject({ closeCode: 1000, closedBy: 'client', closedAfterMs: undefined, transportError: undefined });
    expect(report.elapsedMs).toBeGreaterThanOrEqual(300);
    expect(report.elapsedMs).toBeLessThan(1500);
  });

  it('stops at maxMessages; a function message gets the index; binary frames for a Uint8Array', async () => {
    const { url, connections } = await startWsServer();
    const counted = await floodWebSocket(url, { message: (i) => `m${i}`, durationMs: 5000, maxMessages: 500 });
    const binary = await floodWebSocket(url, { uuid: 'b', message: new Uint8Array(320), durationMs: 5000, maxMessages: 200 });
    await Promise.all(connections.map((c) => c.closed));
    expect(counted.sent).toBe(500);
    expect(counted.elapsedMs).toBeLessThan(2000);
    expect(connections[0]?.texts).toEqual(Array.from({ length: 500 }, (_, i) => `m${i}`)); // no init without a uuid
    expect(binary.sent).toBe(200);
    expect(connections[1]?.binaries).toBe(200);
    expect(connections[1]?.texts).toEqual(['{"type":"init","uuid":"b"}']);
  });

  it('reports the server closing the connection, with its code and when', async () => {
    const { url } = await startWsServer(({ ws, texts }) => {
      ws.on('message', () => {
        if (texts.length === 100) ws.close(1008, 'too many messages');
      });
    });
    const report = await floodWebSocket(url, { uuid: 'c', message: 'x', durationMs: 3000 });
    expect(report).toMatchObject({ closeCode: 1008, closeReason: 'too many messages', closedBy: 'server' });
    expect(report.sent).toBeGreaterThanOrEqual(99);
    expect(report.closedAfterMs).toBeLessThan(1000);
    expect(report.elapsedMs).toBeLessThan(1500);
  });

  it('readReplies: false never reads, so the server\'s writes back up; a reader keeps the server\'s buffer empty', async () => {
    const reply = Buffer.alloc(65536, 0x61);
    let connections = 0;
    /** The reader's connection: whether the server's send buffer emptied while it was open. */
    let readerDrained = false;
    /** The non-reader's connection: the server's send buffer 300 ms after the replies started. */
    let nonReaderBacklog: number | undefined;
    const { url } = await startWsServer(({ ws, texts }) => {
      const index = connections++;
      ws.on('message', () => {
        // 200 replies of 64 KiB (13 MB: more than the kernel buffers).
        if (texts.length > 1 && texts.length <= 201) ws.send(reply);
        if (index === 1 && texts.length === 2) setTimeout(() => (nonReaderBacklog = ws.bufferedAmount), 300);
        if (index === 0 && texts.length === 201) {
          // No deadline of its own: a loaded machine reads 13 MB more slowly, but a reader does read it.
          const poll = setInterval(() => {
            if (ws.bufferedAmount > 0) return;
            readerDrained = true;
            clearInterval(poll);
          }, 5);
          ws.once('close', () => clearInterval(poll));
        }
      });
    });
    // The reader floods long enough for its reads to empty the server's buffer while it is connected.
    const reader = await floodWebSocket(url, { uuid: 'r', message: 'x', durationMs: 2000 });
    const nonReader = await floodWebSocket(url, { uuid: 'n', message: 'x', durationMs: 500, readReplies: false });
    expect(reader.replies).toBe(200);
    expect(readerDrained).toBe(true);
    // The kernel's socket buffers take some of it, the rest waits in the server.
    expect(nonReaderBacklog).toBeGreaterThan(4 * 1024 * 1024);
    expect(nonReader.sent).toBeGreaterThan(1000);
    // It reads again at the end (to take a close frame): the replies are counted then.
    expect(nonReader.closeCode).toBe(1000);
  });

  it('a refused connection is a transport error, not a rejection', async () => {
    const port = await closedPort();
    const report = await floodWebSocket(`ws://127.0.0.1:${port}/`, { message: 'x', durationMs: 100 });
    expect(report).toMatchObject({ sent: 0, replies: 0, transportError: 'ECONNREFUSED', closeCode: 1006 });
  });
});

describe('floodRawFrames', () => {
  it('each malformed frame makes a ws server fail the connection with the RFC 6455 code', async () => {
    const { url } = await startWsServer();
    const kinds = ['unmasked', 'reserved-bits', 'bad-opcode', 'invalid-utf8', 'oversized-length', 'fragment-never-finished'] as const;
    const reports = await Promise.all(kinds.map((kind) => floodRawFrames(url, { kind, durationMs: 200, uuid: `raw-${kind}` })));
    const codes = Object.fromEntries(kinds.map((kind, i) => [kind, reports[i]?.closeCode]));
    expect(codes).toEqual({
      unmasked: 1002,
      'reserved-bits': 1002,
      'bad-opcode': 1002,
      'invalid-utf8': 1007,
      'oversized-length': 1009,
      'fragment-never-finished': 1009,
    });
    for (const report of reports) {
      expect(report.upgradeStatus).toBe(101);
      expect(report.bytesSent).toBeGreaterThan(16384);
      expect(report.transportError).toBeUndefined();
      // After a protocol error, ws ends the TCP connection right after its close frame.
      expect(report.socketClosed).toBe(true);
      expect(report.closedAfterMs).toBeLessThan(1000);
    }
    expect(reports[4]?.framesSent).toBe(1); // one header, then an endless payload
    expect(reports[5]?.framesSent).toBeGreaterThan(546); // 64 KiB / 120-byte fragments
  });

  it('valid frames: tiny invalid JSON arrives as messages after init; a ping flood gets the socket terminated', async () => {
    const { url, connections } = await startWsServer();
    const tiny = await floodRawFrames(url, { kind: 'tiny-invalid-json', durationMs: 200, uuid: 'tiny' });
    const pings = await floodRawFrames(url, { kind: 'ping-flood', durationMs: 200 });
    await sleep(100);
    const [tinyServer, pingServer] = connections;
    expect(tinyServer?.texts[0]).toBe('{"type":"init","uuid":"tiny"}');
    expect(tinyServer?.texts.length).toBeGreaterThan(1000);
    expect(tinyServer?.texts.slice(1).every((t) => t === 'x')).toBe(true);
    expect(tinyServer?.texts.length).toBeLessThanOrEqual(tiny.framesSent + 1);
    expect(tiny.closeCode).toBeUndefined();
    expect(tiny.socketClosed).toBe(false);
    // ws (8.23) answers pings with pongs and terminates a peer with too many pongs pending: no close frame.
    expect(pingServer?.pings).toBeGreaterThan(100);
    expect(pings.framesSent).toBeGreaterThanOrEqual(pingServer?.pings ?? 0);
    expect(pings.closeCode).toBeUndefined();
    expect(pings.socketClosed).toBe(true);
    expect(pings.closedAfterMs).toBeLessThan(200);
  });

  it('sees the server dropping the TCP connection, and a refused upgrade', async () => {
    const { url } = await startWsServer(({ ws, texts }) => {
      ws.on('message', () => {
        if (texts.length >= 10) ws.terminate();
      });
    });
    const dropped = await floodRawFrames(url, { kind: 'tiny-invalid-json', durationMs: 2000 });
    expect(dropped.socketClosed).toBe(true);
    expect(dropped.closedAfterMs).toBeLessThan(1000);
    expect(dropped.elapsedMs).toBeLessThan(1500);

    const http = await startHttpServer((_req, res) => res.end());
    const refused = await floodRawFrames(http.baseUrl.replace('http', 'ws'), { kind: 'unmasked', durationMs: 200 });
    expect(refused.upgradeStatus).toBe(200);
    expect(refused.framesSent).toBe(0);
    expect(refused.transportError).toBe('upgrade refused with status 200');
  });
});

describe('tricklePosts and hangingRequest', () => {
  it('counts statuses, keeps at most `concurrency` open, and trickles a chunked JSON body', async () => {
    const heads: string[] = [];
    const { baseUrl, stats } = await startHttpServer((req, res) => {
      heads.push(`${req.method} ${req.url} ${req.headers['transfer-encoding']} ${req.headers['content-type']} ${req.headers['x-test']}`);
      res.writeHead(401, { connection: 'close' }).end();
    });
    const report = await tricklePosts(baseUrl, { path: '/text-to-speech-stream', count: 60, concurrency: 10, holdMs: 2000, headers: { 'x-test': 'yes' } });
    expect(report).toMatchObject({ statuses: { 401: 60 }, closedWithoutResponse: 0, stillOpenAtHold: 0, connectErrors: {} });
    expect(report.maxOpen).toBe(10);
    expect(stats().maxOpen).toBeLessThanOrEqual(10);
    expect(stats().connections).toBe(60);
    expect(heads[0]).toBe('POST /text-to-speech-stream chunked application/json yes');
  });

  it('holds requests the server never answers until holdMs, in waves of `concurrency`', async () => {
    const bodies: string[] = [];
    const { baseUrl } = await startHttpServer((req) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
      req.on('close', () => bodies.push(body));
    });
    const report = await tricklePosts(baseUrl, { path: '/tts', count: 20, concurrency: 10, holdMs: 250, bytesEveryMs: 20 });
    expect(report).toMatchObject({ statuses: {}, closedWithoutResponse: 0, stillOpenAtHold: 20, maxOpen: 10 });
    expect(report.elapsedMs).toBeGreaterThanOrEqual(500);
    expect(report.elapsedMs).toBeLessThan(1500);
    await sleep(50);
    expect(bodies).toHaveLength(20);
    for (const body of bodies) {
      expect(body.length).toBeGreaterThanOrEqual(5);
      expect(`{"text":"${'a'.repeat(100)}`.startsWith(body)).toBe(true);
    }
  });

  it('closed without response, Content-Length framing, connect errors', async () => {
    const lengths: (string | undefined)[] = [];
    const { baseUrl } = await startHttpServer((req) => {
      lengths.push(req.headers['content-length']);
      req.socket.destroy();
    });
    const dropped = await tricklePosts(baseUrl, { path: '/x', count: 8, holdMs: 2000, contentLength: 4096 });
    expect(dropped).toMatchObject({ statuses: {}, closedWithoutResponse: 8, stillOpenAtHold: 0, maxOpen: 8 });
    expect(lengths).toEqual(Array(8).fill('4096'));

    const port = await closedPort();
    const refused = await tricklePosts(`http://127.0.0.1:${port}`, { path: '/x', count: 5, concurrency: 2, holdMs: 1000 });
    expect(refused).toMatchObject({ connectErrors: { ECONNREFUSED: 5 }, closedWithoutResponse: 0, stillOpenAtHold: 0 });
  });

  it('hangingRequest: sends a few bytes then nothing; resolves with the status once the server closes, or on abort', async () => {
    const bodies: string[] = [];
    const { baseUrl } = await startHttpServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
      setTimeout(() => {
        bodies.push(body);
        res.writeHead(503, { connection: 'close' }).end();
      }, 150);
    });
    const answered = await hangingRequest(baseUrl, { path: '/text-to-speech-stream', headers: { authorization: 'Bearer x' } }).closed;
    expect(answered.status).toBe(503);
    expect(answered.afterMs).toBeGreaterThanOrEqual(140);
    expect(bodies).toEqual(['{"text":"hel']);

    const silent = await startHttpServer(() => {});
    const hanging = hangingRequest(silent.baseUrl, { path: '/x' });
    await sleep(100);
    hanging.abort();
    const aborted = await hanging.closed;
    expect(aborted.status).toBeUndefined();
    expect(aborted.afterMs).toBeGreaterThanOrEqual(90);
  });
});

describe('probeHealth', () => {
  it('probes sequentially on fresh connections and reports the slow and failed ones', async () => {
    let requests = 0;
    const { baseUrl, stats } = await startHttpServer((req, res) => {
      requests++;
      expect(req.url).toBe('/health');
      const delay = requests === 3 ? 60 : requests === 5 ? 1000 : 0;
      setTimeout(() => res.writeHead(requests === 7 ? 503 : 200).end('{"status":"ok"}'), delay);
    });
    const probe = probeHealth(baseUrl, { intervalMs: 10, timeoutMs: 200 });
    await sleep(500);
    const report = await probe.stop();
    expect(report.samples).toBeGreaterThanOrEqual(8);
    expect(stats().connections).toBe(report.samples); // one connection per probe
    expect(report.failures).toBe(2); // the 1 s one timed out, the 503
    expect(report.worstMs).toBe(200); // a timeout counts as timeoutMs
    expect(report.p99Ms).toBeGreaterThanOrEqual(60);
  });

  it('a server that is gone: every probe fails', async () => {
    const port = await closedPort();
    const probe = probeHealth(`http://127.0.0.1:${port}`, { intervalMs: 20 });
    await sleep(150);
    const report = await probe.stop();
    expect(report.samples).toBeGreaterThan(2);
    expect(report.failures).toBe(report.samples);
  });
});

describe('echoCall', () => {
  /** A fake loopback: once the caller's voiced frames are followed by 10 silent ones, plays them back, 20 ms apart. */
  async function startEcho(options: { stallAfterFrames?: number; stallMs?: number; stopAfterFrames?: number } = {}) {
    return startWsServer(({ ws }) => {
      const voiced: string[] = [];
      let silentRun = 0;
      let played = false;
      ws.on('message', (data: RawData) => {
        const message = JSON.parse(String(data)) as { type: string; audio?: string };
        if (message.type !== 'audio' || message.audio === undefined || played) return;
        const bytes = Buffer.from(message.audio, 'base64');
        let voicedFrame = false;
        for (let i = 0; i + 1 < bytes.length; i += 2) if (Math.abs(bytes.readInt16LE(i)) > 100) voicedFrame = true;
        if (voicedFrame) {
          voiced.push(message.audio);
          silentRun = 0;
        } else if (voiced.length > 0 && ++silentRun === 10) {
          played = true;
          void playBack(ws, voiced, options);
        }
      });
    });
  }

  async function playBack(ws: WebSocket, frames: string[], options: { stallAfterFrames?: number; stallMs?: number; stopAfterFrames?: number }) {
    ws.send(JSON.stringify({ type: 'error', message: 'just a warning' }));
    for (let i = 0; i < frames.length; i++) {
      if (i === options.stopAfterFrames) return;
      if (i === options.stallAfterFrames) await sleep(options.stallMs ?? 0);
      if (ws.readyState !== ws.OPEN) return;
      ws.send(JSON.stringify({ type: 'audio', audio: frames[i] }));
      await sleep(20);
    }
  }

  it('streams init + speech + silence in real time, collects the whole echo and hangs up once it is over', async () => {
    const { url, connections } = await startEcho();
    const speech = concatPcm(silence(100), tone(400), silence(100));
    const report = await echoCall(url, { uuid: 'echo-1', speech, trailingSilenceMs: 300, headers: { 'x-test': '1' } });
    const server = connections[0];
    expect(server?.request.headers['x-test']).toBe('1');
    expect(server?.texts[0]).toBe('{"type":"init","uuid":"echo-1"}');
    expect(report).toMatchObject({ agentAudioMs: 400, expectedMs: 400, complete: true, errors: ['just a warning'], closeCode: 1000, closedBy: 'client', interruptions: 0 });
    expect(report.maxGapMs).toBeLessThan(100);
    // 600 ms of input, ~200 ms until the echo starts, 400 ms of echo, 400 ms of quiet.
    expect(report.elapsedMs).toBeGreaterThan(1200);
    expect(report.elapsedMs).toBeLessThan(2500);
    // Frames were paced: about one per 20 ms of the call.
    const frames = (server?.texts.length ?? 0) - 1;
    expect(frames).toBeGreaterThan(50);
    expect(frames).toBeLessThan(Math.ceil(report.elapsedMs / 20) + 2);
  });

  it('a gap in the echo shows as maxGapMs; an echo cut short is incomplete (ended by timeoutMs)', async () => {
    const stalling = await startEcho({ stallAfterFrames: 5, stallMs: 300 });
    const speech = concatPcm(tone(300), silence(60));
    const gap = await echoCall(stalling.url, { uuid: 'gap', speech, trailingSilenceMs: 200 });
    expect(gap.complete).toBe(true);
    expect(gap.maxGapMs).toBeGreaterThanOrEqual(300);

    const cut = await startEcho({ stopAfterFrames: 5 });
    const partial = await echoCall(cut.url, { uuid: 'cut', speech, trailingSilenceMs: 200, timeoutMs: 1200 });
    expect(partial).toMatchObject({ agentAudioMs: 100, expectedMs: 300, complete: false, closedBy: 'client' });
    expect(partial.elapsedMs).toBeLessThan(2000);
  });

  it('a refused upgrade is a failed call in the report', async () => {
    const http = await startHttpServer((_req, res) => res.writeHead(401).end());
    const report = await echoCall(http.baseUrl.replace('http', 'ws'), { uuid: 'x', speech: tone(200) });
    expect(report.complete).toBe(false);
    expect(report.agentAudioMs).toBe(0);
    expect(report.errors[0]).toMatch(/^connection failed: Unexpected server response: 401/);
    expect(report.closeCode).toBe(1006);
  });
});
