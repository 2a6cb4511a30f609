// The node:net side shared by the raw-socket drivers (floodRawFrames, tricklePosts, hangingRequest): a TCP connection
// with Nagle off, its handlers wired at once, the first socket error kept, and the handlers unwired when it is over.
import { connect as netConnect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { errorCode, type HostPort } from './common.js';

/** The status code of an HTTP/1.x response that starts with `head` (0 when it is not a status line). */
export function responseStatus(head: string): number {
  return Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
}

export abstract class RawTcpClient {
  /** When the connect started. */
  readonly startedAt = performance.now();
  readonly socket: Socket;
  /** The first socket error's code (ECONNREFUSED, ECONNRESET, EPIPE...) or a subclass's own reason, if any. */
  error: string | undefined;

  constructor(target: HostPort) {
    this.socket = netConnect({ host: target.host, port: target.port });
    this.socket.setNoDelay(true);
    this.socket.on('connect', this.handleConnect);
    this.socket.on('data', this.handleData);
    this.socket.on('error', this.handleError);
    this.socket.on('close', this.handleClose);
  }

  protected abstract onConnect(): void;
  protected abstract onData(chunk: Buffer): void;
  /** The socket closed, for whatever reason (the handlers are unwired already). */
  protected abstract onClose(): void;

  /**
   * Unwire connect, data and close. The error handler stays: an error after this is recorded in `error` rather than
   * thrown as an unhandled 'error' event.
   */
  protected detach(): void {
    this.socket.off('connect', this.handleConnect);
    this.socket.off('data', this.handleData);
    this.socket.off('close', this.handleClose);
  }

  private readonly handleConnect = (): void => this.onConnect();
  private readonly handleData = (chunk: Buffer): void => this.onData(chunk);

  private readonly handleError = (error: Error): void => {
    this.error ??= errorCode(error);
  };

  private readonly handleClose = (): void => {
    this.detach();
    this.onClose();
  };
}
