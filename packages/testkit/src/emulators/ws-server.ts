/**
 * Server plumbing of the WebSocket provider emulators (Soniox STT, Speechmatics RT and Flow): a loopback HTTP server
 * whose upgrades a `noServer` WebSocketServer completes, the accepted connections, the fault queue, the members every
 * emulator object shares (`connections`, `queueFault`, `waitFor`, `waitForConnection`, `close`), raw HTTP answers to
 * refused upgrades (`upgrade` faults included) and the faults a connection took at its upgrade. Nothing here holds
 * module-level mutable state.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type ServerOptions, type WebSocket } from 'ws';
import { ChangeWaiters, closeServer, FaultQueue, listenOnLoopback, type JsonValue, type WaitOptions } from './common.js';

export function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/** Answers an upgrade request with a plain HTTP response and a JSON body, then ends the socket. */
export function writeRawHttp(socket: Duplex, status: number, body: JsonValue, statusText = 'Error'): void {
  const text = JSON.stringify(body);
  socket.end(
    `HTTP/1.1 ${String(status)} ${statusText}\r\nContent-Type: application/json\r\nContent-Length: ${String(Buffer.byteLength(text))}\r\nConnection: close\r\n\r\n${text}`,
  );
}

/** The `upgrade` fault action every WebSocket emulator has. */
export interface HttpUpgradeFault {
  readonly type: 'http';
  readonly status: number;
  readonly body?: JsonValue;
}

/**
 * Carries out a fault queued for an upgrade: `http` answers with its status and body (default `defaultBody(status)`),
 * any other action (`undefined` here) destroys the socket. Returns the status to record (0 for a destroyed socket).
 */
export function failUpgrade(socket: Duplex, http: HttpUpgradeFault | undefined, defaultBody: (status: number) => JsonValue): number {
  if (http === undefined) {
    socket.destroy();
    return 0;
  }
  writeRawHttp(socket, http.status, http.body ?? defaultBody(http.status));
  return http.status;
}

/** The faults a connection took at its upgrade, armed for their trigger (the `upgrade` ones are already spent). */
export class ArmedFaults<Trigger, Action> {
  #armed: { readonly at: Trigger; readonly action: Action }[];

  constructor(faults: readonly { readonly at?: Trigger | 'upgrade'; readonly action: Action }[], defaultAt: Trigger) {
    this.#armed = faults.flatMap((fault) => {
      const at = fault.at ?? defaultAt;
      return at === 'upgrade' ? [] : [{ at, action: fault.action }];
    });
  }

  /** Disarms and returns the actions whose trigger `matches`, in queue order. */
  take(matches: (at: Trigger) => boolean): Action[] {
    const due = this.#armed.filter((fault) => matches(fault.at));
    if (due.length > 0) this.#armed = this.#armed.filter((fault) => !due.includes(fault));
    return due.map((fault) => fault.action);
  }
}

/** What the emulators' `waitFor`, `waitForConnection` and `close` need of a connection. */
export interface WsHostConnection {
  /** Emulator shutdown: drop the socket, stop the timers. */
  dispose(): void;
}

/** The members every WebSocket emulator object has (spread `host.api` into it). */
export interface WsEmulatorApi<C, F> {
  /** Accepted upgrades, in order. */
  readonly connections: readonly C[];
  /** For the next connection attempt(s) that get that far. */
  readonly queueFault: (fault: F) => void;
  readonly waitFor: <T>(probe: () => T | undefined | null | false, options?: WaitOptions) => Promise<T>;
  /** Resolves with connection `index` (default: the next one not yet returned by this method). */
  readonly waitForConnection: (index?: number, options?: WaitOptions) => Promise<C>;
  /** Disposes every connection, fails pending waits, closes both servers. */
  readonly close: () => Promise<void>;
}

/** The shared half of a WebSocket emulator; the emulator routes `server`'s `request` and `upgrade` events itself. */
export interface WsEmulatorHost<C, F extends { readonly times?: number }> {
  readonly server: Server;
  readonly faults: FaultQueue<F>;
  /** Re-evaluates the pending `waitFor` probes (call after every state change). */
  readonly notify: () => void;
  /** Completes an upgrade and adds the connection `create` makes of the socket (`index`: its place in `connections`). */
  readonly accept: (request: IncomingMessage, socket: Duplex, head: Buffer, create: (ws: WebSocket, index: number) => C) => void;
  /** Listens on 127.0.0.1 (OS-assigned port) and returns the port. */
  readonly listen: () => Promise<number>;
  readonly api: WsEmulatorApi<C, F>;
}

export function createWsEmulatorHost<C extends WsHostConnection, F extends { readonly times?: number }>(
  wssOptions: Omit<ServerOptions, 'noServer' | 'server' | 'port'>,
  faults: readonly F[] = [],
): WsEmulatorHost<C, F> {
  const server = createServer();
  const wss = new WebSocketServer({ ...wssOptions, noServer: true });
  const queue = new FaultQueue(faults);
  const waiters = new ChangeWaiters();
  const connections: C[] = [];
  const notify = (): void => waiters.notify();
  let nextWaited = 0;
  return {
    server,
    faults: queue,
    notify,
    accept: (request, socket, head, create) => {
      wss.handleUpgrade(request, socket, head, (ws) => {
        connections.push(create(ws, connections.length));
        notify();
      });
    },
    listen: () => listenOnLoopback(server),
    api: {
      connections,
      queueFault: (fault) => queue.push(fault),
      waitFor: (probe, waitOptions) => waiters.waitFor(probe, waitOptions),
      waitForConnection: (index, waitOptions) => {
        const wanted = index ?? nextWaited;
        if (index === undefined) nextWaited++;
        return waiters.waitFor(() => connections[wanted], waitOptions, `connection ${String(wanted)}`);
      },
      close: async () => {
        for (const connection of connections) connection.dispose();
        waiters.close();
        await new Promise<void>((resolve) => wss.close(() => resolve()));
        await closeServer(server);
      },
    },
  };
}
