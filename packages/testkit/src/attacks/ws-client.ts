// The `ws` client side shared by floodWebSocket and echoCall: one socket with the same options, its handlers wired on
// run() and unwired on finish, a normal close that turns into a terminate when the server does not answer, and a report
// once the socket is gone.
import { performance } from 'node:perf_hooks';
import WebSocket, { type RawData } from 'ws';
import { DEFAULT_CONNECT_TIMEOUT_MS } from './common.js';

/** After our close frame, how long the server gets to answer before the socket is dropped. */
const CLOSE_WAIT_MS = 1000;

export interface AvrWsClientOptions {
  /** Extra upgrade request headers (e.g. Authorization). */
  readonly headers?: Readonly<Record<string, string>>;
  /** WebSocket handshake timeout (default 5000 ms). */
  readonly connectTimeoutMs?: number;
}

export type ClosedBy = 'server' | 'client';

export abstract class AvrWsClient<Report> {
  protected readonly t0 = performance.now();
  protected readonly ws: WebSocket;
  /** This client is closing (or has closed) the connection: a close from now on is the answer to ours. */
  protected closing = false;
  /** Code of the close that ended the connection; undefined until one came. */
  protected closeCode: number | undefined;
  protected closeReason = '';
  private closeTimer: NodeJS.Timeout | undefined;
  private resolve: ((report: Report) => void) | undefined;

  constructor(url: string, options: AvrWsClientOptions) {
    this.ws = new WebSocket(url, {
      perMessageDeflate: false,
      handshakeTimeout: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      ...(options.headers === undefined ? {} : { headers: { ...options.headers } }),
    });
  }

  run(): Promise<Report> {
    return new Promise((resolve) => {
      this.resolve = resolve;
      this.ws.on('open', this.handleOpen);
      this.ws.on('message', this.handleMessage);
      this.ws.on('error', this.handleError);
      this.ws.on('close', this.handleClose);
    });
  }

  protected abstract onOpen(): void;
  protected abstract onMessage(data: RawData, isBinary: boolean): void;
  protected abstract onError(error: Error): void;
  /** The close event, before the report (closeCode and closeReason are set; `closing` tells who closed). */
  protected onClose(): void {}
  /** Stop sending: clear the driver's own timers (called when closing and when finishing). */
  protected abstract stopSending(): void;
  protected abstract report(closedBy: ClosedBy): Report;

  /** Send our close (1000, `reason`) and terminate the socket if the server has not answered within CLOSE_WAIT_MS. */
  protected hangUp(reason: string): void {
    if (this.closing) return;
    this.closing = true;
    this.stopSending();
    if (this.ws.readyState === WebSocket.CLOSED) {
      this.finish();
      return;
    }
    if (this.ws.readyState === WebSocket.OPEN) {
      // A paused client resumes so the server's close frame (if it sent one) is read.
      if (this.ws.isPaused) this.ws.resume();
      this.ws.close(1000, reason);
    }
    this.closeTimer = setTimeout(() => this.ws.terminate(), CLOSE_WAIT_MS);
  }

  private readonly handleOpen = (): void => this.onOpen();
  private readonly handleMessage = (data: RawData, isBinary: boolean): void => this.onMessage(data, isBinary);
  private readonly handleError = (error: Error): void => this.onError(error);

  private readonly handleClose = (code: number, reason: Buffer): void => {
    this.closeCode = code;
    this.closeReason = reason.toString('utf8');
    this.onClose();
    this.finish();
  };

  private finish(): void {
    const resolve = this.resolve;
    if (resolve === undefined) return;
    this.resolve = undefined;
    const closedBy = this.closing ? 'client' : 'server';
    this.closing = true;
    this.stopSending();
    clearTimeout(this.closeTimer);
    this.ws.off('open', this.handleOpen);
    this.ws.off('message', this.handleMessage);
    this.ws.off('error', this.handleError);
    this.ws.off('close', this.handleClose);
    this.ws.on('error', () => {});
    this.ws.terminate();
    resolve(this.report(closedBy));
  }
}
