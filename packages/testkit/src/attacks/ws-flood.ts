// floodWebSocket: one WebSocket (the `ws` client) sending one message as fast as its own send buffer allows;
// optionally a client that never reads, so the server's writes back up.
import { performance } from 'node:perf_hooks';
import WebSocket, { type RawData } from 'ws';
import { errorCode, isRecord, requirePositive, sinceMs, toBuffer } from './common.js';
import { AvrWsClient, type ClosedBy } from './ws-client.js';

/** Keep the client's own send buffer under this (ws.bufferedAmount): a flood, not an out-of-memory in the client. */
const MAX_CLIENT_BUFFERED_BYTES = 1 << 20;
/** Messages sent per event-loop turn before yielding (so replies are read and timers fire). */
const BURST_MESSAGES = 512;
/** How many AVR error texts a flood report keeps. */
const MAX_ERROR_MESSAGES = 20;

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

class WebSocketFlood extends AvrWsClient<FloodReport> {
  private readonly nextMessage: (index: number) => string | Buffer;
  private readonly binary: boolean;
  private openedAt: number | undefined;
  private sent = 0;
  private replies = 0;
  private readonly errorMessages: string[] = [];
  private closedAfterMs: number | undefined;
  private transportError: string | undefined;
  private deadline: NodeJS.Timeout | undefined;
  private pumpTimer: NodeJS.Timeout | undefined;
  private pumpImmediate: NodeJS.Immediate | undefined;

  constructor(
    url: string,
    private readonly options: FloodWebSocketOptions,
  ) {
    super(url, options);
    const message = options.message;
    if (typeof message === 'function') this.nextMessage = message;
    else {
      // Encoded once: ws sends a Buffer as is (text or binary by the `binary` flag).
      const bytes = typeof message === 'string' ? Buffer.from(message, 'utf8') : Buffer.from(message);
      this.nextMessage = () => bytes;
    }
    this.binary = options.binary ?? (typeof message !== 'string' && typeof message !== 'function');
  }

  protected onOpen(): void {
    this.openedAt = performance.now();
    if (this.options.uuid !== undefined) this.ws.send(JSON.stringify({ type: 'init', uuid: this.options.uuid }));
    if (this.options.readReplies === false) this.ws.pause();
    this.deadline = setTimeout(this.stop, this.options.durationMs);
    this.pump();
  }

  private readonly pump = (): void => {
    this.pumpTimer = undefined;
    this.pumpImmediate = undefined;
    if (this.closing || this.ws.readyState !== WebSocket.OPEN) return;
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

  private readonly stop = (): void => this.hangUp('flood over');

  protected onMessage(data: RawData, isBinary: boolean): void {
    this.replies++;
    if (this.errorMessages.length >= MAX_ERROR_MESSAGES) return;
    const text = avrErrorText(data, isBinary);
    if (text !== undefined) this.errorMessages.push(text);
  }

  protected onError(error: Error): void {
    this.transportError ??= errorCode(error);
  }

  protected override onClose(): void {
    if (!this.closing) this.closedAfterMs = this.openedAt === undefined ? undefined : sinceMs(this.openedAt);
  }

  protected stopSending(): void {
    clearTimeout(this.deadline);
    clearTimeout(this.pumpTimer);
    if (this.pumpImmediate !== undefined) clearImmediate(this.pumpImmediate);
    this.deadline = undefined;
    this.pumpTimer = undefined;
    this.pumpImmediate = undefined;
  }

  protected report(closedBy: ClosedBy): FloodReport {
    return {
      sent: this.sent,
      replies: this.replies,
      errorMessages: this.errorMessages,
      closeCode: this.closeCode,
      closeReason: this.closeReason,
      closedAfterMs: this.closedAfterMs,
      closedBy,
      transportError: this.transportError,
      elapsedMs: sinceMs(this.t0),
    };
  }
}
