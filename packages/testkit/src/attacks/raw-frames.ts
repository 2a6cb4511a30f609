// floodRawFrames: the RFC 6455 handshake by hand, then malformed or abusive frames as fast as the socket drains.
import { createHash, randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { DEFAULT_CONNECT_TIMEOUT_MS, headerLines, hostPort, requirePositive, sinceMs, type HostPort } from './common.js';
import { RawTcpClient, responseStatus } from './tcp-client.js';
import { OPCODE, RAW_FRAME_ABUSES, abuseBatches, encodeWsFrame, parseFrameHeader, type FrameBatch, type RawFrameAbuse } from './ws-frames.js';

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
  const target = hostPort(url, 80);
  // The connect happens inside the executor: a connect that throws rejects the promise.
  return new Promise((resolve) => new RawFrameFlood(target, options, resolve));
}

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** Server frames longer than this are not buffered (only the close frame is of interest). */
const MAX_PARSED_SERVER_FRAME = 64 * 1024;
const MAX_RESPONSE_HEAD_BYTES = 16 * 1024;

class RawFrameFlood extends RawTcpClient {
  private readonly key = randomBytes(16).toString('base64');
  private readonly maskKey = randomBytes(4);
  private readonly batches: { readonly first: FrameBatch; readonly steady: FrameBatch };
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
  private stopping = false;
  private waitingForDrain = false;
  private connectTimer: NodeJS.Timeout | undefined;
  private deadline: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private resolve: ((report: RawFloodReport) => void) | undefined;

  constructor(
    private readonly target: HostPort,
    private readonly options: FloodRawFramesOptions,
    resolve: (report: RawFloodReport) => void,
  ) {
    super(target);
    this.resolve = resolve;
    this.batches = abuseBatches(options.kind, this.maskKey);
    this.connectTimer = setTimeout(() => {
      this.error ??= 'upgrade timed out';
      this.stop();
    }, options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
  }

  protected onConnect(): void {
    const request =
      `GET ${this.target.path} HTTP/1.1\r\nHost: ${this.target.hostHeader}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${this.key}\r\nSec-WebSocket-Version: 13\r\n${headerLines(this.options.headers)}\r\n`;
    this.socket.write(request);
  }

  protected onData(chunk: Buffer): void {
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
    this.upgradeStatus = responseStatus(headText);
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
  }

  private failUpgrade(reason: string): void {
    this.error ??= reason;
    this.stop();
  }

  private onUpgraded(rest: Buffer): void {
    clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    this.upgradedAt = performance.now();
    if (rest.length > 0) this.readServerFrames(rest);
    if (this.options.uuid !== undefined) {
      const init = encodeWsFrame({ fin: true, opcode: OPCODE.text, payload: Buffer.from(JSON.stringify({ type: 'init', uuid: this.options.uuid })), masked: true }, this.maskKey);
      this.socket.write(init);
      this.bytesSent += init.length;
    }
    this.deadline = setTimeout(this.stop, this.options.durationMs);
    this.writeMore();
  }

  private readonly writeMore = (): void => {
    this.immediate = undefined;
    this.waitingForDrain = false;
    const socket = this.socket;
    if (this.stopping || socket.destroyed || !socket.writable) return;
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

  protected onClose(): void {
    if (!this.stopping) {
      this.socketClosed = true;
      if (this.upgradedAt !== undefined) this.closedAfterMs = sinceMs(this.upgradedAt);
    }
    this.finish();
  }

  private readonly stop = (): void => {
    if (this.stopping) return;
    this.stopping = true;
    if (this.socket.destroyed) this.finish();
    else this.socket.destroy();
  };

  private finish(): void {
    const resolve = this.resolve;
    if (resolve === undefined) return;
    this.resolve = undefined;
    this.stopping = true;
    clearTimeout(this.connectTimer);
    clearTimeout(this.deadline);
    if (this.immediate !== undefined) clearImmediate(this.immediate);
    if (this.waitingForDrain) this.socket.off('drain', this.writeMore);
    this.detach();
    this.socket.destroy();
    resolve({
      framesSent: this.framesSent,
      bytesSent: this.bytesSent,
      closeCode: this.closeCode,
      socketClosed: this.socketClosed,
      closedAfterMs: this.closedAfterMs,
      elapsedMs: sinceMs(this.startedAt),
      upgradeStatus: this.upgradeStatus,
      transportError: this.error,
    });
  }
}
