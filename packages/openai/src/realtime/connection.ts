/**
 * One WebSocket connection to an OpenAI Realtime (GA) endpoint: open it, run the handshake, keep it alive,
 * and report when it goes away. No session logic: parsed server events go to `onMessage`.
 */
import type { IncomingMessage } from 'node:http';
import type { ClientRequest } from 'node:http';
import type { Logger } from 'pino';
import { WebSocket } from 'ws';
import type { RawData } from 'ws';
import { ProviderError, closeWebSocket, readErrorBody, toProviderError } from '@stsgate/core';
import type { SessionUpdateEvent } from 'openai/resources/realtime/realtime';
import { PROVIDER, providerErrorFromClose, providerErrorFromUpgrade, sanitizeMessage } from '../errors.js';
import { Handshake } from './handshake.js';
import { parseServerMessage } from './wire.js';
import type { ClientEvent, ParsedServerMessage, ServerError } from './wire.js';

export interface TlsOptions {
  /** Extra trusted CA certificate(s), e.g. a self-hosted server's. */
  readonly ca?: string | Buffer | readonly (string | Buffer)[];
  readonly rejectUnauthorized?: boolean;
}

export interface ConnectionOptions {
  /** Full URL including `?model=`. */
  readonly url: string;
  readonly apiKey: string;
  readonly sessionUpdate: SessionUpdateEvent;
  /** From opening the socket to `session.updated`. */
  readonly handshakeTimeoutMs: number;
  readonly pingIntervalMs: number;
  readonly pongTimeoutMs: number;
  readonly tls?: TlsOptions;
  readonly signal: AbortSignal;
  readonly logger: Logger;
  /** Server events that are not part of the handshake (also during it). */
  readonly onMessage: (message: ParsedServerMessage) => void;
  /** The connection ended without `close()` being called (only after it was configured). */
  readonly onDrop: (error: ProviderError) => void;
}


export class RealtimeConnection {
  private closing: Promise<void> | undefined;
  /** Configured and handed to the session: from now on an unexpected close is a drop. */
  private live = false;
  private dropped = false;
  private pingTimer: NodeJS.Timeout | undefined;
  private pongTimer: NodeJS.Timeout | undefined;
  private stalled = false;
  private socketError: Error | undefined;

  /** @internal use `openRealtimeConnection`. */
  constructor(
    private readonly socket: WebSocket,
    private readonly handshake: Handshake,
    private readonly options: ConnectionOptions,
  ) {}

  get bufferedAmount(): number {
    return this.socket.bufferedAmount;
  }

  /** Sends one client event; false if the socket is not open (the event is dropped). */
  send(event: ClientEvent): boolean {
    if (this.socket.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(event));
    return true;
  }

  /** Closes on purpose (no `onDrop`). Idempotent. */
  close(): Promise<void> {
    if (this.closing === undefined) {
      this.stopKeepalive();
      this.closing = closeWebSocket(this.socket);
    }
    return this.closing;
  }

  /** @internal the handshake is done. */
  markLive(): void {
    this.live = true;
    this.startKeepalive();
  }

  private startKeepalive(): void {
    const { pingIntervalMs, pongTimeoutMs } = this.options;
    if (pingIntervalMs <= 0) return;
    this.pingTimer = setInterval(() => {
      if (this.pongTimer !== undefined || this.socket.readyState !== WebSocket.OPEN) return;
      this.pongTimer = setTimeout(() => {
        this.pongTimer = undefined;
        this.stalled = true;
        this.options.logger.warn({ pongTimeoutMs }, 'OpenAI connection stalled: no pong');
        this.socket.terminate();
      }, pongTimeoutMs);
      this.socket.ping();
    }, pingIntervalMs);
  }

  /** @internal */
  onPong(): void {
    if (this.pongTimer !== undefined) clearTimeout(this.pongTimer);
    this.pongTimer = undefined;
  }

  /** @internal */
  onSocketError(error: Error): void {
    this.socketError = error;
  }

  /** @internal the socket closed after the handshake. */
  onClose(code: number, reason: string, lastError: ServerError | undefined): void {
    this.stopKeepalive();
    if (!this.live || this.closing !== undefined || this.dropped) return;
    this.dropped = true;
    let error: ProviderError;
    if (this.stalled) {
      error = new ProviderError(PROVIDER, 'timeout', `the OpenAI connection stalled (no pong within ${this.options.pongTimeoutMs} ms)`);
    } else if (code === 1006 && this.socketError !== undefined) {
      error = toProviderError(PROVIDER, this.socketError);
      if (error.category === 'unknown') error = providerErrorFromClose(code, reason, lastError, this.options.apiKey);
    } else {
      error = providerErrorFromClose(code, reason, lastError, this.options.apiKey);
    }
    this.options.onDrop(error);
  }

  private stopKeepalive(): void {
    if (this.pingTimer !== undefined) clearInterval(this.pingTimer);
    if (this.pongTimer !== undefined) clearTimeout(this.pongTimer);
    this.pingTimer = undefined;
    this.pongTimer = undefined;
  }
}

/**
 * Opens a socket with `Authorization: Bearer` (no OpenAI-Beta header), waits for `session.created`, sends
 * the `session.update`, and resolves once `session.updated` arrives. Rejects with a ProviderError.
 */
export function openRealtimeConnection(options: ConnectionOptions): Promise<RealtimeConnection> {
  const { apiKey, logger } = options;
  return new Promise<RealtimeConnection>((resolve, reject) => {
    if (options.signal.aborted) {
      reject(new ProviderError(PROVIDER, 'closed', 'the call ended before the provider connection was ready', { retryable: false }));
      return;
    }
    const socket = new WebSocket(options.url, {
      headers: { Authorization: `Bearer ${apiKey}` },
      perMessageDeflate: false,
      handshakeTimeout: options.handshakeTimeoutMs,
      ...(options.tls?.ca === undefined ? {} : { ca: options.tls.ca as string | Buffer | (string | Buffer)[] }),
      ...(options.tls?.rejectUnauthorized === undefined ? {} : { rejectUnauthorized: options.tls.rejectUnauthorized }),
    });
    const handshake = new Handshake(options.sessionUpdate, apiKey);
    const connection = new RealtimeConnection(socket, handshake, options);
    let settled = false;
    let socketError: Error | undefined;

    const timer = setTimeout(() => {
      fail(new ProviderError(PROVIDER, 'timeout', `OpenAI session was not ready within ${options.handshakeTimeoutMs} ms`));
    }, options.handshakeTimeoutMs);

    const onAbort = (): void => {
      fail(new ProviderError(PROVIDER, 'closed', 'the call ended before the provider connection was ready', { retryable: false }));
    };
    options.signal.addEventListener('abort', onAbort, { once: true });

    function settle(): boolean {
      if (settled) return false;
      settled = true;
      clearTimeout(timer);
      options.signal.removeEventListener('abort', onAbort);
      return true;
    }

    function fail(error: ProviderError): void {
      if (!settle()) return;
      if (socket.readyState !== WebSocket.CLOSED) socket.terminate();
      reject(error);
    }

    socket.on('unexpected-response', (request: ClientRequest, response: IncomingMessage) => {
      const status = response.statusCode ?? 0;
      const retryAfter = headerValue(response.headers['retry-after']);
      readErrorBody(response).then(
        (body) => {
          request.destroy();
          fail(providerErrorFromUpgrade(status, body, retryAfter, apiKey));
        },
        () => {
          request.destroy();
          fail(providerErrorFromUpgrade(status, '', retryAfter, apiKey));
        },
      );
    });

    socket.on('error', (error: Error) => {
      socketError = error;
      connection.onSocketError(error);
      if (!settled) {
        const providerError = toProviderError(PROVIDER, error);
        logger.debug({ category: providerError.category }, 'OpenAI socket error while connecting');
        fail(
          providerError.category === 'unknown'
            ? new ProviderError(PROVIDER, 'connectivity', `could not connect to OpenAI: ${sanitizeMessage(error.message, apiKey)}`, {
                cause: error,
              })
            : providerError,
        );
      }
    });

    socket.on('pong', () => connection.onPong());

    socket.on('message', (data: RawData, isBinary: boolean) => {
      const message: ParsedServerMessage = isBinary
        ? { kind: 'malformed', type: undefined, problem: 'binary frame (the protocol uses JSON text frames)' }
        : parseServerMessage(rawText(data));
      if (settled && handshake.done) {
        options.onMessage(message);
        return;
      }
      if (message.kind === 'event' && message.event.type === 'error') {
        // Logged here: during set-up an error is usually followed at once by a close.
        logger.debug({ code: message.event.error.code ?? undefined }, 'OpenAI error during set-up');
      }
      const step = handshake.handle(message);
      switch (step.kind) {
        case 'send_update':
          connection.send(step.event);
          return;
        case 'configured':
          for (const warning of step.warnings) logger.warn({ warning }, 'OpenAI session differs from the requested configuration');
          if (!settle()) return;
          connection.markLive();
          resolve(connection);
          return;
        case 'failed':
          fail(step.error);
          return;
        case 'wait':
          return;
        case 'pass':
          if (!settled) options.onMessage(message);
          return;
      }
    });

    socket.on('close', (code: number, reasonBuffer: Buffer) => {
      const reason = reasonBuffer.toString('utf8');
      if (!settled) {
        let error = providerErrorFromClose(code, reason, handshake.lastError, apiKey);
        if (code === 1006 && socketError !== undefined) {
          const fromSocket = toProviderError(PROVIDER, socketError);
          if (fromSocket.category !== 'unknown') error = fromSocket;
        }
        fail(error);
        return;
      }
      connection.onClose(code, reason, handshake.lastError);
    });
  });
}

function rawText(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
