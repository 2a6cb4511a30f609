/** Shared by the transport and session tests. */
import type { AddressInfo } from 'node:net';
import type { WebSocketServer } from 'ws';

/** Polls `check` every few ms until it gives a value (not undefined/false); rejects after `timeoutMs`. */
export function until<T>(check: () => T | undefined | false, timeoutMs = 5000): Promise<T> {
  const started = Date.now();
  return new Promise<T>((resolve, reject) => {
    const tick = (): void => {
      const value = check();
      if (value !== undefined && value !== false) resolve(value);
      else if (Date.now() - started > timeoutMs) reject(new Error('condition not met in time'));
      else setTimeout(tick, 5);
    };
    tick();
  });
}

/** Waits until `server` listens; returns its ws:// URL and a cleanup that terminates its clients and closes it. */
export async function listening(server: WebSocketServer): Promise<{ url: string; close: () => Promise<void> }> {
  await new Promise<void>((resolve) => server.once('listening', resolve));
  const close = (): Promise<void> =>
    new Promise<void>((resolve) => {
      for (const socket of server.clients) socket.terminate();
      server.close(() => resolve());
    });
  return { url: `ws://127.0.0.1:${String((server.address() as AddressInfo).port)}/`, close };
}
