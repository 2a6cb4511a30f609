/**
 * Connection plumbing every network adapter needs, whatever its provider: reading the start of an HTTP error
 * answer (a rejected WebSocket upgrade, a failed REST call) and closing a WebSocket without waiting forever.
 * The socket is typed structurally, so core needs no WebSocket library.
 */
import type { IncomingMessage } from 'node:http';

export interface ErrorBodyOptions {
  /** Keep at most this many bytes (default 4096). */
  readonly maxBytes?: number;
  /** Stop waiting for the end after this long and use what arrived (default 1000 ms). */
  readonly maxWaitMs?: number;
}

/** The start of an error answer's body, as text. Rejects only on a stream error. */
export function readErrorBody(response: IncomingMessage, options: ErrorBodyOptions = {}): Promise<string> {
  const maxBytes = options.maxBytes ?? 4096;
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (): void => {
      clearTimeout(timer);
      response.off('data', onData);
      resolve(Buffer.concat(chunks).toString('utf8').slice(0, maxBytes));
    };
    const onData = (chunk: Buffer): void => {
      if (size >= maxBytes) return;
      chunks.push(chunk);
      size += chunk.length;
    };
    const timer = setTimeout(done, options.maxWaitMs ?? 1000);
    response.on('data', onData);
    response.once('end', done);
    response.once('error', (error: Error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/** What `closeWebSocket` needs of a socket (the `ws` package's WebSocket has it). */
export interface ClosableWebSocket {
  readonly readyState: number;
  close(code?: number, reason?: string): void;
  terminate(): void;
  once(event: 'close', listener: () => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
}

const OPEN = 1;
const CLOSED = 3;

/**
 * Closes with 1000 and resolves once the socket is closed; a peer that does not answer the close within `waitMs`
 * (default 2000) has the socket terminated. Safe to call on a socket in any state.
 */
export function closeWebSocket(socket: ClosableWebSocket, reason = 'call ended', waitMs = 2000): Promise<void> {
  return new Promise<void>((resolve) => {
    if (socket.readyState === CLOSED) {
      resolve();
      return;
    }
    const timer = setTimeout(() => socket.terminate(), waitMs);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    // A late socket error must not become an unhandled 'error' event.
    socket.on('error', () => undefined);
    if (socket.readyState === OPEN) socket.close(1000, reason);
    else socket.terminate();
  });
}
