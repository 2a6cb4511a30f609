/**
 * WebSocket plumbing shared by the real-time ASR and Flow sessions: open (with a timeout, the call's signal and
 * HTTP-status mapping of a rejected upgrade), close (bounded wait) and frame decoding.
 *
 * The sessions use `ws` directly instead of `@speechmatics/real-time-client` / `@speechmatics/flow-client`: both
 * SDKs throw inside their socket listeners on a non-JSON text frame (and the flow client on an odd-length audio
 * frame), which is an uncaught exception that would end every call in the process (`test/sdk-limits.test.ts`).
 */
import type { ClientRequest, IncomingMessage } from 'node:http';
import { WebSocket } from 'ws';
import type { RawData } from 'ws';
import { ProviderError, parseRetryAfter, readErrorBody } from '@stsgate/core';
import { PROVIDER, connectionError, providerErrorFromClose, providerErrorFromStatus } from './errors.js';

export interface OpenSocketOptions {
  readonly url: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  readonly signal: AbortSignal;
  /** Removed from every error message (API key or temporary key). */
  readonly secret: string;
  /** Names the service in messages, e.g. "real-time ASR". */
  readonly what: string;
}

/** Resolves with the open socket (no listeners left attached but a no-op 'error'), or rejects with a ProviderError. */
export function openSocket(options: OpenSocketOptions): Promise<WebSocket> {
  const { secret, what } = options;
  return new Promise<WebSocket>((resolve, reject) => {
    if (options.signal.aborted) {
      reject(new ProviderError(PROVIDER, 'closed', `the call ended before the Speechmatics ${what} connection was ready`, { retryable: false }));
      return;
    }
    const socket = new WebSocket(options.url, {
      ...(options.headers === undefined ? {} : { headers: { ...options.headers } }),
      perMessageDeflate: false,
      handshakeTimeout: options.timeoutMs,
    });
    socket.binaryType = 'nodebuffer';
    let settled = false;
    let socketError: Error | undefined;
    const finish = (error: ProviderError | undefined): void => {
      if (settled) return;
      settled = true;
      options.signal.removeEventListener('abort', onAbort);
      socket.removeAllListeners();
      // Never leave the socket without an 'error' listener: an unhandled one would throw.
      socket.on('error', () => undefined);
      if (error === undefined) {
        resolve(socket);
        return;
      }
      if (socket.readyState !== WebSocket.CLOSED) socket.terminate();
      reject(error);
    };
    const onAbort = (): void => finish(new ProviderError(PROVIDER, 'closed', `the call ended before the Speechmatics ${what} connection was ready`, { retryable: false }));
    options.signal.addEventListener('abort', onAbort, { once: true });

    socket.on('unexpected-response', (request: ClientRequest, response: IncomingMessage) => {
      const status = response.statusCode ?? 0;
      const retryAfter = header(response.headers['retry-after']);
      readErrorBody(response).then(
        (body) => {
          request.destroy();
          finish(providerErrorFromStatus(status, body, { secret, what: `${what} rejected the connection`, retryAfterMs: parseRetryAfter(retryAfter) }));
        },
        () => {
          request.destroy();
          finish(providerErrorFromStatus(status, '', { secret, what: `${what} rejected the connection` }));
        },
      );
    });
    socket.on('error', (error: Error) => {
      socketError = error;
      finish(
        error.message.includes('Opening handshake has timed out')
          ? new ProviderError(PROVIDER, 'timeout', `the Speechmatics ${what} connection timed out after ${options.timeoutMs} ms`)
          : connectionError(error, `Speechmatics ${what} connection failed`, secret),
      );
    });
    socket.on('close', (code: number, reason: Buffer) => {
      finish(socketError !== undefined ? connectionError(socketError, `Speechmatics ${what} connection failed`, secret) : providerErrorFromClose(code, reason.toString('utf8'), secret));
    });
    socket.on('open', () => finish(undefined));
  });
}

export interface HandshakeOptions {
  /** The first message (`StartRecognition`, `StartConversation`). */
  readonly start: string;
  readonly timeoutMs: number;
  readonly signal: AbortSignal;
  readonly secret: string;
  /** Names the step in messages, e.g. "start recognition". */
  readonly what: string;
  /** A text frame: `true` when it is the go-ahead, a ProviderError when it is the server's refusal. */
  readonly classify: (text: string) => true | ProviderError | undefined;
}

/** A session the server has started, not yet handed to its owner. */
export interface StartedSocket {
  readonly socket: WebSocket;
  /**
   * Hands the socket over: `onMessage` first gets the frames that arrived since the go-ahead (they can come in the
   * same read as the go-ahead itself, e.g. Flow's first agent audio), then every later one; `onClose` runs once
   * when the socket closes, also if that already happened.
   */
  takeOver(onMessage: (data: RawData, isBinary: boolean) => void, onClose: (code: number, reason: Buffer) => void): void;
}

/** Keeps what a started socket receives until its owner takes it over. */
function holdFrames(socket: WebSocket): StartedSocket {
  const backlog: [RawData, boolean][] = [];
  let closed: [number, Buffer] | undefined;
  const keep = (data: RawData, isBinary: boolean): void => void backlog.push([data, isBinary]);
  const noteClose = (code: number, reason: Buffer): void => {
    closed = [code, reason];
  };
  socket.on('message', keep);
  socket.on('close', noteClose);
  return {
    socket,
    takeOver(onMessage, onClose) {
      socket.off('message', keep);
      socket.off('close', noteClose);
      socket.on('message', onMessage);
      socket.on('close', onClose);
      for (const [data, isBinary] of backlog.splice(0)) onMessage(data, isBinary);
      if (closed !== undefined) onClose(...closed);
    },
  };
}

/**
 * Sends the start message and resolves once the server's go-ahead arrives, holding later frames for the owner;
 * rejects (and terminates the socket) on the server's `Error`, a close, the timeout or the signal.
 */
export function handshake(socket: WebSocket, options: HandshakeOptions): Promise<StartedSocket> {
  return new Promise<StartedSocket>((resolve, reject) => {
    let refusal: ProviderError | undefined;
    const finish = (error: ProviderError | undefined): void => {
      clearTimeout(timer);
      options.signal.removeEventListener('abort', onAbort);
      socket.removeAllListeners();
      socket.on('error', () => undefined);
      if (error === undefined) {
        resolve(holdFrames(socket));
        return;
      }
      socket.terminate();
      reject(error);
    };
    const onAbort = (): void => finish(new ProviderError(PROVIDER, 'closed', `the call ended before Speechmatics could ${options.what}`, { retryable: false }));
    const timer = setTimeout(() => finish(new ProviderError(PROVIDER, 'timeout', `Speechmatics did not ${options.what} within ${options.timeoutMs} ms`)), options.timeoutMs);
    options.signal.addEventListener('abort', onAbort, { once: true });
    socket.on('message', (data: RawData, isBinary: boolean) => {
      if (isBinary) return;
      const outcome = options.classify(frameBytes(data).toString('utf8'));
      if (outcome === true) finish(undefined);
      else if (outcome !== undefined) {
        // The server closes right after its Error; report the Error, not the close.
        refusal = outcome;
        finish(outcome);
      }
    });
    socket.on('close', (code: number, reason: Buffer) => finish(refusal ?? providerErrorFromClose(code, reason.toString('utf8'), options.secret)));
    socket.send(options.start);
  });
}

export function frameBytes(data: RawData): Buffer {
  if (Array.isArray(data)) return Buffer.concat(data);
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  return data;
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
