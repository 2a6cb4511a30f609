// Hostile-client drivers: what a misbehaving or malicious AVR Core (or anything that can reach the gateway's port) can
// do, for reliability tests and bench/reliability.mjs. Each driver opens its own sockets and timers and closes every one
// of them before its promise resolves; none of them throws on what the server does (a refused upgrade, a reset, a
// close): that is what the report is for.
//
// - floodWebSocket: one WebSocket (the `ws` client) sending one message as fast as its own send buffer allows;
//   optionally a client that never reads, so the server's writes back up.
// - floodRawFrames: the RFC 6455 handshake by hand, then malformed or abusive frames as fast as the socket drains.
// - tricklePosts / hangingRequest: HTTP POSTs whose body never ends (one byte at a time, or a few bytes then nothing).
// - probeHealth: sequential GET /health on fresh connections, latency and failures.
// - echoCall: a well-behaved AVR Core call against the loopback provider, to see whether an attack hurts other calls.
import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import WebSocket, { type RawData } from 'ws';
import { AVR_FRAME_MS, AVR_FRAME_SAMPLES, AVR_SAMPLE_RATE, encodeAvrAudio } from '@stsgate/core';
import { detectSpeechSegments } from './speech-segments.js';

// ---- shared helpers ----------------------------------------------------------------------------

/** Keep the client's own send buffer under this (ws.bufferedAmount): a flood, not an out-of-memory in the client. */
const MAX_CLIENT_BUFFERED_BYTES = 1 << 20;
/** Messages sent per event-loop turn before yielding (so replies are read and timers fire). */
const BURST_MESSAGES = 512;
/** After our close frame, how long the server gets to answer before the socket is dropped. */
const CLOSE_WAIT_MS = 1000;
const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
/** How many AVR error texts a flood report keeps. */
const MAX_ERROR_MESSAGES = 20;

function round1(ms: number): number {
  return Math.round(ms * 10) / 10;
}

function sinceMs(t0: number): number {
  return round1(performance.now() - t0);
}

/** An error's code (ECONNRESET, EMFILE...) or, without one, its message. */
function errorCode(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    return typeof code === 'string' ? code : error.message;
  }
  return String(error);
}

function increment(record: Record<string, number>, key: string): void {
  record[key] = (record[key] ?? 0) + 1;
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The text of an AVR `{"type":"error"}` message, or undefined for anything else. */
function avrErrorText(data: RawData, isBinary: boolean): string | undefined {
  if (isBinary) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(toBuffer(data).toString('utf8'));
  } catch {
    return undefined;
  }
  if (!isRecord(parsed) || parsed.type !== 'error') return undefined;
  return typeof parsed.message === 'string' ? parsed.message : '';
}

function requirePositive(name: string, value: number | undefined, allowZero = false): void {
  if (value === undefined) return;
  if (!Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) throw new RangeError(`${name} must be ${allowZero ? '>= 0' : '> 0'} (got ${value})`);
}

interface HostPort {
  readonly host: string;
  readonly port: number;
  /** Path and query string. */
  readonly path: string;
  /** The Host header value. */
  readonly hostHeader: string;
}

function hostPort(url: string, defaultPort: number): HostPort {
  const parsed = new URL(url);
  return {
    host: parsed.hostname.replace(/^\[|\]$/g, ''),
    port: parsed.port === '' ? defaultPort : Number(parsed.port),
    path: `${parsed.pathname}${parsed.search}`,
    hostHeader: parsed.host,
  };
}

function headerLines(headers: Readonly<Record<string, string>> | undefined): string {
  return Object.entries(headers ?? {})
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
}

// ---- floodWebSocket ----------------------------------------------------------------------------

export interface FloodWebSocketOptions {
  /** Send `{"type":"init","uuid"}` first (omit it to flood a call that was never initialised). */
  readonly uuid?: string;
  /** The message sent over and over; a function gets the message's index (0 for the first after init). */
  readonly message: string | Uint8Array | ((index: number) => string);
  /** Send binary frames (default: true for a Uint8Array message, false otherwise). */
  readonly binary?: boolean;
  /** How long to flood, from the moment the connection is open. */
  readonly durationMs: number;
  readonly maxMessages?: number;
  /**
   * true (default): replies are read and counted. false: a client that never reads: the socket is paused right after
   * the upgrade, so everything the server writes backs up in the kernel and then in the server. Such a client notices a
   * close only when a write fails or at the end, when it resumes reading to take the close frame.
   */
  readonly readReplies?: boolean;
  /** Extra upgrade request headers (e.g. Authorization). */
  readonly headers?: Readonly<Record<string, string>>;
  /** WebSocket handshake timeout (default 5000 ms). */
  readonly connectTimeoutMs?: number;
}

export interface FloodReport {
  /** Messages handed to the socket (init not included). */
  readonly sent: number;
  /** Messages received from the server. */
  readonly replies: number;
  /** The first 20 AVR `{"type":"error"}` texts received. */
  readonly errorMessages: string[];
  /** Code of the close that ended the connection (the server's, or the answer to ours); undefined if none came. */
  readonly closeCode: number | undefined;
  readonly closeReason: string;
  /** When the server ended the connection before the flood was over, ms after the connection opened. */
  readonly closedAfterMs: number | undefined;
  /** Who ended the connection: the server (before the flood was over) or this client. */
  readonly closedBy: 'server' | 'client';
  /** A connection or socket error (a refused upgrade, a reset), if any. */
  readonly transportError: string | undefined;
  /** From the call to the report. */
  readonly elapsedMs: number;
}

/**
 * Send one message over one WebSocket as fast as the client's own backpressure allows (the send buffer is kept under
 * ~1 MB; the loop yields to the event loop between bursts so replies are read), until `durationMs`, `maxMessages` or
 * the server closes. Then the socket is closed (terminated if the server does not answer) and the report returned.
 */
export function floodWebSocket(url: string, options: FloodWebSocketOptions): Promise<FloodReport> {
  requirePositive('durationMs', options.durationMs, true);
  requirePositive('maxMessages', options.maxMessages, true);
  requirePositive('connectTimeoutMs', options.connectTimeoutMs);
  return new WebSocketFlood(url, options).run();
}

class WebSocketFlood {
  private readonly t0 = performance.now();
  private readonly ws: WebSocket;
  private readonly nextMessage: (index: number) => string | Buffer;
  private readonly binary: boolean;
  private openedAt: number | undefined;
  private sent = 0;
  private replies = 0;
  private readonly errorMessages: string[] = [];
  private closeCode: number | undefined;
  private closeReason = '';
  private closedAfterMs: number | undefined;
  private transportError: string | undefined;
  private stopping = false;
  private deadline: NodeJS.Timeout | undefined;
  private pumpTimer: NodeJS.Timeout | undefined;
  private pumpImmediate: NodeJS.Immediate | undefined;
  private closeTimer: NodeJS.Timeout | undefined;
  private resolve: ((report: FloodReport) => void) | undefined;

  constructor(
    url: string,
    private readonly options: FloodWebSocketOptions,
  ) {
    const message = options.message;
    if (typeof message === 'function') this.nextMessage = message;
    else {
      // Encoded once: ws sends a Buffer as is (text or binary by the `binary` flag).
      const bytes = typeof message === 'string' ? Buffer.from(message, 'utf8') : Buffer.from(message);
      this.nextMessage = () => bytes;
    }
    this.binary = options.binary ?? (typeof message !== 'string' && typeof message !== 'function');
    this.ws = new WebSocket(url, {
      perMessageDeflate: false,
      handshakeTimeout: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      ...(options.headers === undefined ? {} : { headers: { ...options.headers } }),
    });
  }

  run(): Promise<FloodReport> {
    return new Promise((resolve) => {
      this.resolve = resolve;
      this.ws.on('open', this.onOpen);
      this.ws.on('message', this.onMessage);
      this.ws.on('error', this.onError);
      this.ws.on('close', this.onClose);
    });
  }

  private readonly onOpen = (): void => {
    this.openedAt = performance.now();
    if (this.options.uuid !== undefined) this.ws.send(JSON.stringify({ type: 'init', uuid: this.options.uuid }));
    if (this.options.readReplies === false) this.ws.pause();
    this.deadline = setTimeout(this.stop, this.options.durationMs);
    this.pump();
  };

  private readonly pump = (): void => {
    this.pumpTimer = undefined;
    this.pumpImmediate = undefined;
    if (this.stopping || this.ws.readyState !== WebSocket.OPEN) return;
    const max = this.options.maxMessages ?? Number.POSITIVE_INFINITY;
    for (let burst = 0; burst < BURST_MESSAGES && this.ws.bufferedAmount < MAX_CLIENT_BUFFERED_BYTES; burst++) {
      if (this.sent >= max) {
        this.stop();
        return;
      }
      this.ws.send(this.nextMessage(this.sent), { binary: this.binary });
      this.sent++;
    }
    if (this.ws.bufferedAmount >= MAX_CLIENT_BUFFERED_BYTES) this.pumpTimer = setTimeout(this.pump, 1);
    else this.pumpImmediate = setImmediate(this.pump);
  };

  private readonly onMessage = (data: RawData, isBinary: boolean): void => {
    this.replies++;
    if (this.errorMessages.length >= MAX_ERROR_MESSAGES) return;
    const text = avrErrorText(data, isBinary);
    if (text !== undefined) this.errorMessages.push(text);
  };

  private readonly onError = (error: Error): void => {
    this.transportError ??= errorCode(error);
  };

  private readonly onClose = (code: number, reason: Buffer): void => {
    this.closeCode = code;
    this.closeReason = reason.toString('utf8');
    if (!this.stopping) this.closedAfterMs = this.openedAt === undefined ? undefined : sinceMs(this.openedAt);
    this.finish();
  };

  private readonly stop = (): void => {
    if (this.stopping) return;
    this.stopping = true;
    this.clearPump();
    if (this.ws.readyState === WebSocket.CLOSED) {
      this.finish();
      return;
    }
    if (this.ws.readyState === WebSocket.OPEN) {
      // A paused client resumes so the server's close frame (if it sent one) is read.
      if (this.ws.isPaused) this.ws.resume();
      this.ws.close(1000, 'flood over');
    }
    this.closeTimer = setTimeout(() => this.ws.terminate(), CLOSE_WAIT_MS);
  };

  private clearPump(): void {
    clearTimeout(this.deadline);
    clearTimeout(this.pumpTimer);
    if (this.pumpImmediate !== undefined) clearImmediate(this.pumpImmediate);
    this.deadline = undefined;
    this.pumpTimer = undefined;
    this.pumpImmediate = undefined;
  }

  private finish(): void {
    const resolve = this.resolve;
    if (resolve === undefined) return;
    this.resolve = undefined;
    const closedBy = this.stopping ? 'client' : 'server';
    this.stopping = true;
    this.clearPump();
    clearTimeout(this.closeTimer);
    this.ws.off('open', this.onOpen);
    this.ws.off('message', this.onMessage);
    this.ws.off('close', this.onClose);
    this.ws.off('error', this.onError);
    this.ws.on('error', () => {});
    this.ws.terminate();
    resolve({
      sent: this.sent,
      replies: this.replies,
      errorMessages: this.errorMessages,
      closeCode: this.closeCode,
      closeReason: this.closeReason,
      closedAfterMs: this.closedAfterMs,
      closedBy,
      transportError: this.transportError,
      elapsedMs: sinceMs(this.t0),
    });
  }
}

// ---- floodRawFrames ----------------------------------------------------------------------------

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

export interface FloodRawFramesOptions {
  readonly kind: RawFrameAbuse;
  /** How long to write, from the moment the upgrade succeeded. */
  readonly durationMs: number;
  /** Send a (valid, masked) `{"type":"init","uuid"}` text frame first. */
  readonly uuid?: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** TCP connect + upgrade timeout (default 5000 ms). */
  readonly connectTimeoutMs?: number;
}

export interface RawFloodReport {
  /** Abusive frames written (for `oversized-length`: the one frame header; its endless payload is in bytesSent). */
  readonly framesSent: number;
  /** Bytes written after the upgrade (init frame included). */
  readonly bytesSent: number;
  /**
   * Status code of the server's close frame, if one was read (1005 for a close frame without a code). A reset that
   * follows the close frame can discard it unread: undefined then, with transportError ECONNRESET.
   */
  readonly closeCode: number | undefined;
  /** The server closed the TCP connection (FIN or reset) before the flood was over. */
  readonly socketClosed: boolean;
  /** When the server closed the TCP connection, ms after the upgrade. */
  readonly closedAfterMs: number | undefined;
  readonly elapsedMs: number;
  /** Status of the upgrade response (101 when accepted; 0 when no response came). */
  readonly upgradeStatus: number;
  /** A connection or socket error (refused, reset, EPIPE, a bad Sec-WebSocket-Accept), if any. */
  readonly transportError: string | undefined;
}

/**
 * Open a TCP connection, upgrade it to a WebSocket by hand (RFC 6455 4.1), optionally send a masked init frame, then
 * write the `kind` of malformed frames as fast as the socket drains for `durationMs`. Frames the server sends back are
 * parsed only to find its close frame. A hostile client: it never answers the server's close frame.
 */
export function floodRawFrames(url: string, options: FloodRawFramesOptions): Promise<RawFloodReport> {
  if (!RAW_FRAME_ABUSES.includes(options.kind)) throw new RangeError(`unknown raw frame abuse "${String(options.kind)}"`);
  requirePositive('durationMs', options.durationMs, true);
  requirePositive('connectTimeoutMs', options.connectTimeoutMs);
  return new RawFrameFlood(url, options).run();
}

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** Bytes per write of the raw flood. */
const RAW_BATCH_BYTES = 16 * 1024;
/** Server frames longer than this are not buffered (only the close frame is of interest). */
const MAX_PARSED_SERVER_FRAME = 64 * 1024;
const MAX_RESPONSE_HEAD_BYTES = 16 * 1024;
const OPCODE = { continuation: 0x0, text: 0x1, close: 0x8, ping: 0x9, reserved: 0x3 } as const;

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
function encodeWsFrame(spec: FrameSpec, maskKey: Buffer): Buffer {
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

interface FrameBatch {
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
function abuseBatches(kind: RawFrameAbuse, key: Buffer): { readonly first: FrameBatch; readonly steady: FrameBatch } {
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

class RawFrameFlood {
  private readonly t0 = performance.now();
  private readonly target: HostPort;
  private readonly key = randomBytes(16).toString('base64');
  private readonly maskKey = randomBytes(4);
  private readonly batches: { readonly first: FrameBatch; readonly steady: FrameBatch };
  private socket: Socket | undefined;
  private head: Buffer = Buffer.alloc(0);
  private incoming: Buffer = Buffer.alloc(0);
  private parseServerFrames = true;
  private upgradedAt: number | undefined;
  private upgradeStatus = 0;
  private framesSent = 0;
  private bytesSent = 0;
  private wroteFirst = false;
  private closeCode: number | undefined;
  private socketClosed = false;
  private closedAfterMs: number | undefined;
  private transportError: string | undefined;
  private stopping = false;
  private waitingForDrain = false;
  private connectTimer: NodeJS.Timeout | undefined;
  private deadline: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private resolve: ((report: RawFloodReport) => void) | undefined;

  constructor(
    url: string,
    private readonly options: FloodRawFramesOptions,
  ) {
    this.target = hostPort(url, 80);
    this.batches = abuseBatches(options.kind, this.maskKey);
  }

  run(): Promise<RawFloodReport> {
    return new Promise((resolve) => {
      this.resolve = resolve;
      const socket = netConnect({ host: this.target.host, port: this.target.port });
      this.socket = socket;
      socket.setNoDelay(true);
      socket.on('connect', this.onConnect);
      socket.on('data', this.onData);
      socket.on('error', this.onError);
      socket.on('close', this.onClose);
      this.connectTimer = setTimeout(() => {
        this.transportError ??= 'upgrade timed out';
        this.stop();
      }, this.options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
    });
  }

  private readonly onConnect = (): void => {
    const request =
      `GET ${this.target.path} HTTP/1.1\r\nHost: ${this.target.hostHeader}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${this.key}\r\nSec-WebSocket-Version: 13\r\n${headerLines(this.options.headers)}\r\n`;
    this.socket?.write(request);
  };

  private readonly onData = (chunk: Buffer): void => {
    if (this.upgradedAt !== undefined) {
      this.readServerFrames(chunk);
      return;
    }
    this.head = Buffer.concat([this.head, chunk]);
    const end = this.head.indexOf('\r\n\r\n');
    if (end < 0) {
      if (this.head.length > MAX_RESPONSE_HEAD_BYTES) this.failUpgrade('upgrade response head too large');
      return;
    }
    const headText = this.head.subarray(0, end).toString('latin1');
    const rest = this.head.subarray(end + 4);
    this.head = Buffer.alloc(0);
    this.upgradeStatus = Number(/^HTTP\/1\.[01] (\d{3})/.exec(headText)?.[1] ?? 0);
    if (this.upgradeStatus !== 101) {
      this.failUpgrade(`upgrade refused with status ${this.upgradeStatus}`);
      return;
    }
    const accept = /^sec-websocket-accept:\s*(\S+)/im.exec(headText)?.[1];
    const expected = createHash('sha1').update(`${this.key}${WS_GUID}`).digest('base64');
    if (accept !== expected) {
      this.failUpgrade('bad Sec-WebSocket-Accept');
      return;
    }
    this.onUpgraded(rest);
  };

  private failUpgrade(reason: string): void {
    this.transportError ??= reason;
    this.stop();
  }

  private onUpgraded(rest: Buffer): void {
    clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    this.upgradedAt = performance.now();
    if (rest.length > 0) this.readServerFrames(rest);
    if (this.options.uuid !== undefined) {
      const init = encodeWsFrame({ fin: true, opcode: OPCODE.text, payload: Buffer.from(JSON.stringify({ type: 'init', uuid: this.options.uuid })), masked: true }, this.maskKey);
      this.socket?.write(init);
      this.bytesSent += init.length;
    }
    this.deadline = setTimeout(this.stop, this.options.durationMs);
    this.writeMore();
  }

  private readonly writeMore = (): void => {
    this.immediate = undefined;
    this.waitingForDrain = false;
    const socket = this.socket;
    if (this.stopping || socket === undefined || socket.destroyed || !socket.writable) return;
    const batch = this.wroteFirst ? this.batches.steady : this.batches.first;
    this.wroteFirst = true;
    this.framesSent += batch.frames;
    this.bytesSent += batch.bytes.length;
    if (socket.write(batch.bytes)) this.immediate = setImmediate(this.writeMore);
    else {
      this.waitingForDrain = true;
      socket.once('drain', this.writeMore);
    }
  };

  /** Just enough of a frame parser to find the server's close frame (server frames are not masked). */
  private readServerFrames(chunk: Buffer): void {
    if (!this.parseServerFrames) return;
    this.incoming = this.incoming.length === 0 ? chunk : Buffer.concat([this.incoming, chunk]);
    while (this.incoming.length >= 2) {
      const frame = parseFrameHeader(this.incoming);
      if (frame === undefined) return;
      if (frame.payloadLength > MAX_PARSED_SERVER_FRAME) {
        this.parseServerFrames = false;
        this.incoming = Buffer.alloc(0);
        return;
      }
      const end = frame.headerLength + frame.payloadLength;
      if (this.incoming.length < end) return;
      if (frame.opcode === OPCODE.close && this.closeCode === undefined) {
        this.closeCode = frame.payloadLength >= 2 ? this.incoming.readUInt16BE(frame.headerLength) : 1005;
      }
      this.incoming = this.incoming.subarray(end);
    }
  }

  private readonly onError = (error: Error): void => {
    this.transportError ??= errorCode(error);
  };

  private readonly onClose = (): void => {
    if (!this.stopping) {
      this.socketClosed = true;
      if (this.upgradedAt !== undefined) this.closedAfterMs = sinceMs(this.upgradedAt);
    }
    this.finish();
  };

  private readonly stop = (): void => {
    if (this.stopping) return;
    this.stopping = true;
    const socket = this.socket;
    if (socket === undefined || socket.destroyed) this.finish();
    else socket.destroy();
  };

  private finish(): void {
    const resolve = this.resolve;
    if (resolve === undefined) return;
    this.resolve = undefined;
    this.stopping = true;
    clearTimeout(this.connectTimer);
    clearTimeout(this.deadline);
    if (this.immediate !== undefined) clearImmediate(this.immediate);
    const socket = this.socket;
    if (socket !== undefined) {
      if (this.waitingForDrain) socket.off('drain', this.writeMore);
      socket.off('connect', this.onConnect);
      socket.off('data', this.onData);
      socket.off('close', this.onClose);
      socket.off('error', this.onError);
      socket.on('error', () => {});
      socket.destroy();
    }
    resolve({
      framesSent: this.framesSent,
      bytesSent: this.bytesSent,
      closeCode: this.closeCode,
      socketClosed: this.socketClosed,
      closedAfterMs: this.closedAfterMs,
      elapsedMs: sinceMs(this.t0),
      upgradeStatus: this.upgradeStatus,
      transportError: this.transportError,
    });
  }
}

function parseFrameHeader(bytes: Buffer): { opcode: number; headerLength: number; payloadLength: number } | undefined {
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

// ---- tricklePosts / hangingRequest --------------------------------------------------------------

export interface TricklePostsOptions {
  readonly path: string;
  readonly count: number;
  /** Requests open at once (default: all of them). A slot is reused once its request got an answer, closed or was held holdMs. */
  readonly concurrency?: number;
  readonly headers?: Readonly<Record<string, string>>;
  /** Default application/json. */
  readonly contentType?: string;
  /** One body byte per socket every this many ms (default 1000). */
  readonly bytesEveryMs?: number;
  /** Each request is given up (destroyed and counted in stillOpenAtHold) this long after its connect started. */
  readonly holdMs: number;
  /** Declare this body length (never reached) instead of `Transfer-Encoding: chunked`. */
  readonly contentLength?: number;
}

export interface TrickleReport {
  /** Status code -> requests that got a response status line. */
  readonly statuses: Record<string, number>;
  /** Connected requests the server closed (FIN or reset) without a status line. */
  readonly closedWithoutResponse: number;
  /** Requests still open, without a response, after holdMs. */
  readonly stillOpenAtHold: number;
  /** Requests that never connected, by error code (ECONNREFUSED, EMFILE, ETIMEDOUT...). */
  readonly connectErrors: Record<string, number>;
  /** The most requests open at once. */
  readonly maxOpen: number;
  readonly elapsedMs: number;
}

/** Body of a never-ending JSON request: `{"text":"aaaa...`, one byte at a time. */
const TRICKLE_BODY_START = Buffer.from('{"text":"');
const TRICKLE_FILLER = 0x61;

function trickleByte(index: number): Buffer {
  return Buffer.of(TRICKLE_BODY_START[index] ?? TRICKLE_FILLER);
}

interface RawPostEvents {
  /** Connected and the request head written. */
  onConnected(post: RawPost): void;
  /** The response status line arrived. */
  onStatus(post: RawPost, status: number): void;
  /** The socket closed, for whatever reason. */
  onClose(post: RawPost): void;
}

/** One raw HTTP/1.1 POST over node:net whose body is written by the caller, byte by byte, and never ended. */
class RawPost {
  readonly startedAt = performance.now();
  readonly socket: Socket;
  connected = false;
  status: number | undefined;
  error: string | undefined;
  private bodyBytes = 0;
  private response = '';

  constructor(
    target: HostPort,
    private readonly head: string,
    private readonly chunked: boolean,
    private readonly events: RawPostEvents,
  ) {
    this.socket = netConnect({ host: target.host, port: target.port });
    this.socket.setNoDelay(true);
    this.socket.on('connect', this.onConnect);
    this.socket.on('data', this.onData);
    this.socket.on('error', this.onError);
    this.socket.on('close', this.onClose);
  }

  /** Write body bytes (as one chunk with chunked framing). */
  writeBody(bytes: Buffer): void {
    if (!this.connected || this.socket.destroyed || !this.socket.writable || bytes.length === 0) return;
    this.bodyBytes += bytes.length;
    this.socket.write(this.chunked ? Buffer.concat([Buffer.from(`${bytes.length.toString(16)}\r\n`), bytes, Buffer.from('\r\n')]) : bytes);
  }

  get bodySent(): number {
    return this.bodyBytes;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private readonly onConnect = (): void => {
    this.connected = true;
    this.socket.write(this.head);
    this.events.onConnected(this);
  };

  private readonly onData = (chunk: Buffer): void => {
    if (this.status !== undefined) return;
    this.response += chunk.toString('latin1', 0, Math.min(chunk.length, 256));
    const lineEnd = this.response.indexOf('\r\n');
    if (lineEnd < 0 && this.response.length < 256) return;
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(this.response)?.[1] ?? 0);
    this.status = status;
    this.events.onStatus(this, status);
  };

  private readonly onError = (error: Error): void => {
    this.error ??= errorCode(error);
  };

  private readonly onClose = (): void => {
    this.socket.off('connect', this.onConnect);
    this.socket.off('data', this.onData);
    this.socket.off('close', this.onClose);
    this.events.onClose(this);
  };
}

function postHead(target: HostPort, path: string, options: { headers?: Readonly<Record<string, string>> | undefined; contentType?: string | undefined; contentLength?: number | undefined }): string {
  const framing = options.contentLength === undefined ? 'Transfer-Encoding: chunked' : `Content-Length: ${options.contentLength}`;
  return (
    `POST ${path} HTTP/1.1\r\nHost: ${target.hostHeader}\r\nContent-Type: ${options.contentType ?? 'application/json'}\r\n` +
    `${framing}\r\n${headerLines(options.headers)}\r\n`
  );
}

/**
 * `count` POSTs over raw TCP, at most `concurrency` open at once, each sending its body one byte every `bytesEveryMs`
 * and never finishing it (slowloris). A request ends when the server answers (status line: counted, socket destroyed),
 * closes or resets it, or after `holdMs` (counted as still open, destroyed). Resolves when every request has ended.
 */
export function tricklePosts(baseUrl: string, options: TricklePostsOptions): Promise<TrickleReport> {
  requirePositive('count', options.count, true);
  requirePositive('concurrency', options.concurrency);
  requirePositive('bytesEveryMs', options.bytesEveryMs);
  requirePositive('holdMs', options.holdMs);
  requirePositive('contentLength', options.contentLength);
  return new TrickleRun(baseUrl, options).run();
}

/** How often held requests are checked against holdMs. */
const HOLD_SWEEP_MS = 50;

class TrickleRun implements RawPostEvents {
  private readonly t0 = performance.now();
  private readonly target: HostPort;
  private readonly head: string;
  private readonly concurrency: number;
  private readonly open = new Set<RawPost>();
  private readonly statuses: Record<string, number> = {};
  private readonly connectErrors: Record<string, number> = {};
  private closedWithoutResponse = 0;
  private stillOpenAtHold = 0;
  private maxOpen = 0;
  private started = 0;
  private refill: NodeJS.Immediate | undefined;
  /** Requests given up at holdMs (destroyed by us: their close is not the server's). */
  private readonly heldOut = new WeakSet<RawPost>();
  private tickTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private resolve: ((report: TrickleReport) => void) | undefined;

  constructor(
    baseUrl: string,
    private readonly options: TricklePostsOptions,
  ) {
    this.target = hostPort(baseUrl, 80);
    this.head = postHead(this.target, options.path, options);
    this.concurrency = Math.max(1, Math.floor(options.concurrency ?? options.count));
  }

  run(): Promise<TrickleReport> {
    return new Promise((resolve) => {
      this.resolve = resolve;
      if (this.options.count === 0) {
        this.finish();
        return;
      }
      this.tickTimer = setInterval(this.tick, this.options.bytesEveryMs ?? 1000);
      this.sweepTimer = setInterval(this.sweep, Math.min(HOLD_SWEEP_MS, this.options.holdMs));
      this.fill();
    });
  }

  private fill(): void {
    while (this.open.size < this.concurrency && this.started < this.options.count) {
      this.started++;
      let post: RawPost;
      try {
        post = new RawPost(this.target, this.head, this.options.contentLength === undefined, this);
      } catch (error) {
        increment(this.connectErrors, errorCode(error));
        continue;
      }
      this.open.add(post);
    }
    this.maxOpen = Math.max(this.maxOpen, this.open.size);
    if (this.open.size === 0 && this.started >= this.options.count) this.finish();
  }

  onConnected(post: RawPost): void {
    post.writeBody(trickleByte(0));
  }

  onStatus(post: RawPost, status: number): void {
    increment(this.statuses, String(status));
    post.destroy();
  }

  onClose(post: RawPost): void {
    if (!this.open.delete(post)) return;
    if (post.status !== undefined || this.heldOut.has(post)) {
      // Counted already.
    } else if (post.connected) this.closedWithoutResponse++;
    else increment(this.connectErrors, post.error ?? 'closed');
    // Start the next ones on a later turn: a burst of closes then refills in one go.
    this.refill ??= setImmediate(() => {
      this.refill = undefined;
      this.fill();
    });
  }

  private readonly tick = (): void => {
    for (const post of this.open) if (post.status === undefined) post.writeBody(trickleByte(post.bodySent));
  };

  private readonly sweep = (): void => {
    const now = performance.now();
    for (const post of this.open) {
      if (post.status !== undefined || this.heldOut.has(post) || now - post.startedAt < this.options.holdMs) continue;
      this.heldOut.add(post);
      this.stillOpenAtHold++;
      post.destroy();
    }
  };

  private finish(): void {
    const resolve = this.resolve;
    if (resolve === undefined) return;
    this.resolve = undefined;
    clearInterval(this.tickTimer);
    clearInterval(this.sweepTimer);
    if (this.refill !== undefined) clearImmediate(this.refill);
    resolve({
      statuses: this.statuses,
      closedWithoutResponse: this.closedWithoutResponse,
      stillOpenAtHold: this.stillOpenAtHold,
      connectErrors: this.connectErrors,
      maxOpen: this.maxOpen,
      elapsedMs: sinceMs(this.t0),
    });
  }
}

export interface HangingRequestOptions {
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** Default application/json. */
  readonly contentType?: string;
}

export interface HangingRequest {
  /**
   * Resolves when the connection closes (the server's doing, or abort()): the response status if a status line arrived
   * before (undefined otherwise), and the time since the request started.
   */
  readonly closed: Promise<{ readonly status: number | undefined; readonly afterMs: number }>;
  /** Destroy the connection (resolves `closed`). */
  abort(): void;
}

/** One chunked POST that sends a few body bytes (`{"text":"hel`) and then nothing, ever. */
export function hangingRequest(baseUrl: string, options: HangingRequestOptions): HangingRequest {
  const target = hostPort(baseUrl, 80);
  let resolveClosed: (value: { status: number | undefined; afterMs: number }) => void = () => {};
  const closed = new Promise<{ status: number | undefined; afterMs: number }>((resolve) => (resolveClosed = resolve));
  const post = new RawPost(target, postHead(target, options.path, options), true, {
    onConnected: (p) => p.writeBody(Buffer.from('{"text":"hel')),
    onStatus: () => {},
    onClose: (p) => resolveClosed({ status: p.status, afterMs: sinceMs(p.startedAt) }),
  });
  return { closed, abort: () => post.destroy() };
}

// ---- probeHealth ------------------------------------------------------------------------------

export interface ProbeHealthOptions {
  /** Pause between the end of one probe and the start of the next (default 50 ms). */
  readonly intervalMs?: number;
  /** A probe without a complete answer after this long is a failure with this latency (default 2000 ms). */
  readonly timeoutMs?: number;
}

export interface HealthReport {
  readonly samples: number;
  readonly worstMs: number;
  readonly p99Ms: number;
  /** Probes that timed out, failed to connect or got another status than 200. */
  readonly failures: number;
}

export interface HealthProbe {
  /** Stop probing (after the probe in flight, if any) and summarise. */
  stop(): Promise<HealthReport>;
}

/**
 * Poll `GET <baseUrl>/health` one request at a time, each on a fresh connection (agent: false, Connection: close), and
 * record its latency (request sent -> response fully read).
 */
export function probeHealth(baseUrl: string, options: ProbeHealthOptions = {}): HealthProbe {
  requirePositive('intervalMs', options.intervalMs, true);
  requirePositive('timeoutMs', options.timeoutMs);
  const url = new URL('/health', baseUrl);
  const intervalMs = options.intervalMs ?? 50;
  const timeoutMs = options.timeoutMs ?? 2000;
  const latencies: number[] = [];
  let failures = 0;
  let stopped = false;
  let pause: { timer: NodeJS.Timeout; resolve: () => void } | undefined;
  const loop = (async () => {
    while (!stopped) {
      const probe = await probeOnce(url, timeoutMs);
      latencies.push(probe.ms);
      if (!probe.ok) failures++;
      if (stopped) break;
      await new Promise<void>((resolve) => (pause = { timer: setTimeout(resolve, intervalMs), resolve }));
      pause = undefined;
    }
  })();
  return {
    async stop() {
      stopped = true;
      if (pause !== undefined) {
        clearTimeout(pause.timer);
        pause.resolve();
      }
      await loop;
      const sorted = Float64Array.from(latencies).sort();
      const p99 = sorted.length === 0 ? 0 : (sorted[Math.min(sorted.length - 1, Math.ceil(0.99 * sorted.length) - 1)] as number);
      return { samples: sorted.length, worstMs: round1(sorted.at(-1) ?? 0), p99Ms: round1(p99), failures };
    },
  };
}

function probeOnce(url: URL, timeoutMs: number): Promise<{ ms: number; ok: boolean }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let settled = false;
    const done = (ok: boolean, timedOut = false): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ms: timedOut ? timeoutMs : performance.now() - t0, ok });
    };
    const req = httpRequest(url, { agent: false, headers: { connection: 'close' } }, (res) => {
      res.on('end', () => done(res.statusCode === 200));
      res.on('error', () => done(false));
      res.resume();
    });
    req.on('error', () => done(false));
    const timer = setTimeout(() => {
      done(false, true);
      req.destroy();
    }, timeoutMs);
    req.end();
  });
}

// ---- echoCall ---------------------------------------------------------------------------------

export interface EchoCallOptions {
  readonly uuid: string;
  /** The caller's speech, 8 kHz mono s16; streamed in real time as 20 ms frames (the last one zero-padded). */
  readonly speech: Int16Array;
  /** Silence streamed after the speech at least this long (default 1500 ms); more while the echo is still playing. */
  readonly trailingSilenceMs?: number;
  readonly headers?: Readonly<Record<string, string>>;
  /** The call is hung up at this point at the latest (default: speech + trailing silence + 5000 ms). */
  readonly timeoutMs?: number;
  /** WebSocket handshake timeout (default 5000 ms). */
  readonly connectTimeoutMs?: number;
}

export interface EchoReport {
  /** Agent audio received (all `audio` messages). */
  readonly agentAudioMs: number;
  /** The caller's speech as the test kit's energy detector finds it: first speech start to last speech end. */
  readonly expectedMs: number;
  /** agentAudioMs >= 0.9 x expectedMs (the loopback plays back the VAD's utterance plus its pads, ~+400 ms). */
  readonly complete: boolean;
  /** AVR `error` texts received, and a connection failure or protocol problem seen by this client. */
  readonly errors: string[];
  readonly interruptions: number;
  /** Code of the close that ended the call (the server's, or the answer to our close); undefined if none came. */
  readonly closeCode: number | undefined;
  readonly closedBy: 'server' | 'client' | undefined;
  /** Longest gap between consecutive agent audio messages once the echo started. */
  readonly maxGapMs: number;
  /** From the call to the report. */
  readonly elapsedMs: number;
}

/** The echo is over once the agent has been quiet this long, with at least this share of the speech received... */
const ECHO_DONE_QUIET_MS = 400;
const COMPLETE_SHARE = 0.9;
/** ...or this long whatever was received (a stall longer than this ends the call as incomplete). */
const ECHO_GIVE_UP_QUIET_MS = 2500;

/**
 * A well-behaved AVR Core call against the gateway's loopback provider (which plays each caller utterance back):
 * `init`, the speech in real-time 20 ms frames, then silence until the echo is over (or `timeoutMs`), then a normal
 * close. Never rejects: a failed connection is in `errors`.
 */
export function echoCall(url: string, options: EchoCallOptions): Promise<EchoReport> {
  if (!(options.speech instanceof Int16Array)) throw new TypeError('speech must be an Int16Array of 8 kHz samples');
  requirePositive('trailingSilenceMs', options.trailingSilenceMs, true);
  requirePositive('timeoutMs', options.timeoutMs);
  requirePositive('connectTimeoutMs', options.connectTimeoutMs);
  return new EchoCall(url, options).run();
}

/** Speech span (first start to last end) found by the test kit's energy detector, in ms. */
function speechSpanMs(speech: Int16Array): number {
  const segments = detectSpeechSegments(speech, { sampleRate: AVR_SAMPLE_RATE });
  const first = segments[0];
  const last = segments.at(-1);
  return first === undefined || last === undefined ? 0 : last.endMs - first.startMs;
}

class EchoCall {
  private readonly t0 = performance.now();
  private readonly ws: WebSocket;
  private readonly speechFrames: string[];
  private readonly silenceFrame = encodeAvrAudio(new Int16Array(AVR_FRAME_SAMPLES));
  private readonly trailingSilenceMs: number;
  private readonly timeoutMs: number;
  private readonly expectedMs: number;
  private callStart = 0;
  private nextFrame = 0;
  private agentSamples = 0;
  private firstAudioAt: number | undefined;
  private lastAudioAt: number | undefined;
  private maxGapMs = 0;
  private interruptions = 0;
  private readonly errors: string[] = [];
  private closeCode: number | undefined;
  private closedBy: 'server' | 'client' | undefined;
  private hangingUp = false;
  private frameTimer: NodeJS.Timeout | undefined;
  private closeTimer: NodeJS.Timeout | undefined;
  private resolve: ((report: EchoReport) => void) | undefined;

  constructor(
    url: string,
    private readonly options: EchoCallOptions,
  ) {
    this.speechFrames = [];
    for (let at = 0; at < options.speech.length; at += AVR_FRAME_SAMPLES) {
      const frame = new Int16Array(AVR_FRAME_SAMPLES);
      frame.set(options.speech.subarray(at, at + AVR_FRAME_SAMPLES));
      this.speechFrames.push(encodeAvrAudio(frame));
    }
    this.trailingSilenceMs = options.trailingSilenceMs ?? 1500;
    this.timeoutMs = options.timeoutMs ?? this.speechFrames.length * AVR_FRAME_MS + this.trailingSilenceMs + 5000;
    this.expectedMs = speechSpanMs(options.speech);
    this.ws = new WebSocket(url, {
      perMessageDeflate: false,
      handshakeTimeout: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      ...(options.headers === undefined ? {} : { headers: { ...options.headers } }),
    });
  }

  run(): Promise<EchoReport> {
    return new Promise((resolve) => {
      this.resolve = resolve;
      this.ws.on('open', this.onOpen);
      this.ws.on('message', this.onMessage);
      this.ws.on('error', this.onError);
      this.ws.on('close', this.onClose);
    });
  }

  private get agentAudioMs(): number {
    return (this.agentSamples * 1000) / AVR_SAMPLE_RATE;
  }

  private readonly onOpen = (): void => {
    this.ws.send(JSON.stringify({ type: 'init', uuid: this.options.uuid }));
    this.callStart = performance.now();
    this.tick();
  };

  /** Send every frame due by now (drift-free 20 ms schedule), then decide whether the call is over. */
  private readonly tick = (): void => {
    this.frameTimer = undefined;
    if (this.hangingUp || this.ws.readyState !== WebSocket.OPEN) return;
    const now = performance.now();
    const elapsed = now - this.callStart;
    while (this.nextFrame * AVR_FRAME_MS <= elapsed) {
      this.ws.send(this.speechFrames[this.nextFrame] ?? this.silenceFrame);
      this.nextFrame++;
    }
    if (this.isOver(now, elapsed)) {
      this.hangUp();
      return;
    }
    this.frameTimer = setTimeout(this.tick, Math.max(0, this.nextFrame * AVR_FRAME_MS - (performance.now() - this.callStart)));
  };

  private isOver(now: number, elapsed: number): boolean {
    if (elapsed >= this.timeoutMs) return true;
    const silenceSentMs = (this.nextFrame - this.speechFrames.length) * AVR_FRAME_MS;
    if (silenceSentMs < this.trailingSilenceMs || this.lastAudioAt === undefined) return false;
    const quietMs = now - this.lastAudioAt;
    const enough = this.agentAudioMs >= COMPLETE_SHARE * this.expectedMs;
    return quietMs >= (enough ? ECHO_DONE_QUIET_MS : ECHO_GIVE_UP_QUIET_MS);
  }

  private readonly onMessage = (data: RawData, isBinary: boolean): void => {
    if (isBinary) {
      this.errors.push('binary message from the server');
      return;
    }
    let message: unknown;
    try {
      message = JSON.parse(toBuffer(data).toString('utf8'));
    } catch {
      this.errors.push('message from the server is not JSON');
      return;
    }
    if (!isRecord(message)) return;
    if (message.type === 'audio' && typeof message.audio === 'string') this.onAudio(message.audio);
    else if (message.type === 'error') this.errors.push(typeof message.message === 'string' ? message.message : '');
    else if (message.type === 'interruption') this.interruptions++;
  };

  private onAudio(base64: string): void {
    const now = performance.now();
    // base64 length -> decoded bytes, without decoding.
    const padding = base64.endsWith('==') ? 2 : base64.endsWith('=') ? 1 : 0;
    const bytes = (base64.length / 4) * 3 - padding;
    this.agentSamples += Math.floor(bytes / 2);
    if (this.lastAudioAt !== undefined) this.maxGapMs = Math.max(this.maxGapMs, now - this.lastAudioAt);
    this.firstAudioAt ??= now;
    this.lastAudioAt = now;
  }

  private readonly onError = (error: Error): void => {
    const text = this.callStart === 0 ? `connection failed: ${error.message}` : `socket error: ${errorCode(error)}`;
    if (!this.errors.includes(text)) this.errors.push(text);
  };

  private readonly onClose = (code: number): void => {
    this.closeCode = code;
    this.closedBy = this.hangingUp ? 'client' : 'server';
    this.finish();
  };

  private hangUp(): void {
    if (this.hangingUp) return;
    this.hangingUp = true;
    clearTimeout(this.frameTimer);
    this.frameTimer = undefined;
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1000, 'call ended');
    this.closeTimer = setTimeout(() => this.ws.terminate(), CLOSE_WAIT_MS);
  }

  private finish(): void {
    const resolve = this.resolve;
    if (resolve === undefined) return;
    this.resolve = undefined;
    this.hangingUp = true;
    clearTimeout(this.frameTimer);
    clearTimeout(this.closeTimer);
    this.ws.off('open', this.onOpen);
    this.ws.off('message', this.onMessage);
    this.ws.off('error', this.onError);
    this.ws.off('close', this.onClose);
    this.ws.on('error', () => {});
    this.ws.terminate();
    const agentAudioMs = round1(this.agentAudioMs);
    resolve({
      agentAudioMs,
      expectedMs: this.expectedMs,
      complete: this.expectedMs > 0 && agentAudioMs >= COMPLETE_SHARE * this.expectedMs,
      errors: this.errors,
      interruptions: this.interruptions,
      closeCode: this.closeCode,
      closedBy: this.closedBy,
      maxGapMs: round1(this.maxGapMs),
      elapsedMs: sinceMs(this.t0),
    });
  }
}
