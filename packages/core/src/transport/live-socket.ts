/**
 * `LiveSocket`: an open provider WebSocket with an owner. It sends (noting the time for the keepalive), keeps the
 * connection alive, decodes frames for the owner, and tells the owner once when the connection is lost, with the
 * failure classified; `close()` is idempotent, bounded, and removes every timer and listener.
 */
import type { Logger } from 'pino';
import { WebSocket } from 'ws';
import type { RawData } from 'ws';
import { ProviderError } from '../errors/provider-error.js';
import { closeWebSocket } from '../util/transport.js';
import { frameToBuffer } from './frames.js';
import { firstMessageHandshake } from './handshake.js';
import type { HandshakeOptions } from './handshake.js';
import { holdFrames } from './hold.js';
import type { HeldSocket } from './hold.js';
import { startKeepalive } from './keepalive.js';
import type { Keepalive, KeepaliveOptions } from './keepalive.js';
import { connectionClassifiers, openWebSocket, withBearerSecret } from './open.js';
import type { OpenWebSocketOptions, WebSocketClassifiers } from './open.js';
import type { ConnectionNames } from './errors.js';

export interface LiveSocketOptions extends ConnectionNames {
  readonly logger: Logger;
  /** Close and socket-error classifiers for a drop (defaults: the core ones). */
  readonly classify?: Pick<WebSocketClassifiers, 'close' | 'connection'>;
  readonly keepalive?: KeepaliveOptions;
  /** Every text frame, decoded, from `start()` on. */
  readonly onText?: (text: string) => void;
  /** Every binary frame, from `start()` on (without it, binary frames are ignored). */
  readonly onBinary?: (frame: Buffer) => void;
  /** The connection ended without `close()`: called once, with the server's reported error if it sent one first. */
  readonly onDrop: (error: ProviderError) => void;
  /** The server closed after `expectClose()` (a session it ended normally). */
  readonly onEnd?: () => void;
}

export class LiveSocket {
  readonly socket: WebSocket;
  /** Resolves once the socket is closed, however that happened. */
  readonly closed: Promise<void>;
  readonly #options: LiveSocketOptions;
  readonly #classify: Required<Pick<WebSocketClassifiers, 'close' | 'connection'>>;
  #keepalive: Keepalive | undefined;
  #started = false;
  /** What arrived before `start()`; the close, if it came then too. */
  #backlog: [Buffer, boolean][] = [];
  #earlyClose: [number, string] | undefined;
  #reported: ProviderError | undefined;
  #socketError: Error | undefined;
  #stalled = false;
  #expectingClose = false;
  #closing: Promise<void> | undefined;
  #over = false;
  #markClosed: () => void = () => undefined;

  /** Takes over an open socket (or one a handshake holds); frames reach `onText`/`onBinary` once `start()` is called. */
  constructor(source: WebSocket | HeldSocket, options: LiveSocketOptions) {
    const held = source instanceof WebSocket ? holdFrames(source) : source;
    this.socket = held.socket;
    this.#options = options;
    this.#classify = connectionClassifiers(options, options.classify);
    this.closed = new Promise<void>((resolve) => {
      this.#markClosed = resolve;
    });
    if (this.socket.readyState === WebSocket.CLOSED) this.#markClosed();
    this.socket.on('error', this.#onError);
    held.takeOver({ message: this.#onMessage, close: this.#onClose });
  }

  /** Starts delivering frames (those held first), the drop, and the keepalive. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    if (this.#options.keepalive !== undefined && this.#closing === undefined && !this.#over) {
      this.#keepalive = startKeepalive(this.socket, this.#options.keepalive, {
        onStall: () => {
          this.#stalled = true;
          this.#options.logger.warn({ pongTimeoutMs: this.#options.keepalive?.kind === 'ping' ? this.#options.keepalive.pongTimeoutMs : undefined }, `${this.#options.label} stopped answering pings`);
        },
      });
    }
    for (const [frame, isBinary] of this.#backlog.splice(0)) {
      if (this.#closing !== undefined) break;
      this.#deliver(frame, isBinary);
    }
    if (this.#earlyClose !== undefined) this.#closedBy(...this.#earlyClose);
  }

  get isOpen(): boolean {
    return this.#closing === undefined && this.socket.readyState === WebSocket.OPEN;
  }

  get bufferedAmount(): number {
    return this.socket.bufferedAmount;
  }

  /** Sends a text or binary frame; false (and nothing sent) when the socket is not open or is closing. */
  send(data: string | Buffer): boolean {
    if (!this.isOpen) return false;
    this.socket.send(data);
    this.#keepalive?.noteSent();
    return true;
  }

  /** The server reported this error (it usually closes right after): the drop that follows reports it. */
  report(error: ProviderError): void {
    this.#reported = error;
  }

  /** The server is ending the session normally: its close calls `onEnd`, not `onDrop`. */
  expectClose(): void {
    this.#expectingClose = true;
  }

  /** Stops the keepalive early (e.g. once the end of input is sent and the server is finishing). */
  stopKeepalive(): void {
    this.#keepalive?.stop();
  }

  /** Closes on purpose (1000, bounded wait, then terminate): no `onDrop`, no more frames. Idempotent. */
  close(reason = 'session closed'): Promise<void> {
    if (this.#closing === undefined) {
      this.#keepalive?.stop();
      this.#backlog = [];
      this.socket.off('message', this.#onMessage);
      this.#closing = closeWebSocket(this.socket, reason.slice(0, 100)).then(() => this.#release());
    }
    return this.#closing;
  }

  /** Ends the connection at once (no close handshake); a drop unless `close()` was called first. */
  terminate(): void {
    this.socket.terminate();
  }

  readonly #onMessage = (data: RawData, isBinary: boolean): void => {
    if (this.#closing !== undefined) return;
    const frame = frameToBuffer(data);
    if (!this.#started) this.#backlog.push([frame, isBinary]);
    else this.#deliver(frame, isBinary);
  };

  #deliver(frame: Buffer, isBinary: boolean): void {
    if (isBinary) this.#options.onBinary?.(frame);
    else this.#options.onText?.(frame.toString('utf8'));
  }

  readonly #onError = (error: Error): void => {
    this.#socketError ??= error;
  };

  readonly #onClose = (code: number, reason: Buffer): void => {
    if (!this.#started) {
      this.#earlyClose = [code, reason.toString('utf8')];
      this.#markClosed();
      return;
    }
    this.#closedBy(code, reason.toString('utf8'));
  };

  #closedBy(code: number, reason: string): void {
    this.#keepalive?.stop();
    if (this.#closing !== undefined || this.#over) {
      this.#release();
      return;
    }
    this.#over = true;
    this.#release();
    if (this.#expectingClose) {
      this.#options.onEnd?.();
      return;
    }
    this.#options.onDrop(this.#dropError(code, reason));
  }

  #dropError(code: number, reason: string): ProviderError {
    if (this.#stalled) {
      const timeout = this.#options.keepalive?.kind === 'ping' ? this.#options.keepalive.pongTimeoutMs : 0;
      return new ProviderError(this.#options.provider, 'timeout', `the ${this.#options.label} connection stalled (no pong within ${timeout} ms)`);
    }
    if (this.#reported !== undefined) return this.#reported;
    if (this.#socketError !== undefined) return this.#classify.connection(this.#socketError);
    return this.#classify.close({ code, reason });
  }

  /** The socket is closed: nothing of ours stays on it (a no-op 'error' listener stays, so a late error never throws). */
  #release(): void {
    if (this.socket.readyState !== WebSocket.CLOSED) return;
    this.socket.off('message', this.#onMessage);
    this.socket.off('close', this.#onClose);
    this.socket.off('error', this.#onError);
    if (this.socket.listenerCount('error') === 0) this.socket.on('error', () => undefined);
    this.#markClosed();
  }
}

export interface ConnectLiveSocketOptions extends OpenWebSocketOptions, Omit<LiveSocketOptions, 'classify'> {
  /** A first-message handshake after the upgrade; the handshake's own timeout defaults to `timeoutMs`. */
  readonly handshake?: Pick<HandshakeOptions, 'start' | 'what' | 'classify'> & { readonly timeoutMs?: number };
}

/**
 * `openWebSocket`, the handshake if there is one, then a `LiveSocket` (not started: its owner calls `start()`).
 * Rejects with a ProviderError; nothing stays open when it does.
 */
export async function connectLiveSocket(connect: ConnectLiveSocketOptions): Promise<LiveSocket> {
  const options = withBearerSecret(connect);
  let held = await openWebSocket(options);
  if (options.handshake !== undefined) {
    held = await firstMessageHandshake(held, {
      ...options.handshake,
      provider: options.provider,
      label: options.label,
      ...(options.secrets === undefined ? {} : { secrets: options.secrets }),
      timeoutMs: options.handshake.timeoutMs ?? options.timeoutMs,
      signal: options.signal,
      ...(options.classify?.close === undefined ? {} : { classifyClose: options.classify.close }),
    });
  }
  return new LiveSocket(held, options);
}
