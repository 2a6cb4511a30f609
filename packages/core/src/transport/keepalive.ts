/**
 * Keeping a provider connection alive, the two ways providers ask for: WebSocket pings with a deadline for the pong
 * (a silent peer is a stalled connection), or an application message whenever nothing else went out for a while
 * (providers that close idle sessions).
 */
import type { WebSocket } from 'ws';

export type KeepaliveOptions =
  | {
      readonly kind: 'ping';
      /** A ping this often; 0 disables the keepalive. */
      readonly intervalMs: number;
      /** No pong within this long after a ping: `onStall`, then the socket is terminated. */
      readonly pongTimeoutMs: number;
      /** Unref the timers so they never keep the process alive (default false). */
      readonly unref?: boolean;
    }
  | {
      readonly kind: 'message';
      /** Silence between two sends never exceeds this: ticks at half of it send `message` when nothing else went out. */
      readonly intervalMs: number;
      readonly message: string | (() => string);
      readonly unref?: boolean;
    };

export interface Keepalive {
  /** Something went out: an application-message keepalive is not needed for a while. */
  noteSent(): void;
  /** Removes every timer and listener; idempotent. */
  stop(): void;
}

export interface KeepaliveHooks {
  /** The pong deadline passed (called once, just before the socket is terminated). */
  readonly onStall?: () => void;
}

/** Starts keeping `socket` alive; `stop()` it when the socket closes (LiveSocket does). */
export function startKeepalive(socket: WebSocket, options: KeepaliveOptions, hooks: KeepaliveHooks = {}): Keepalive {
  return options.kind === 'ping' ? pingKeepalive(socket, options, hooks) : messageKeepalive(socket, options);
}

const OPEN = 1;

function pingKeepalive(socket: WebSocket, options: Extract<KeepaliveOptions, { kind: 'ping' }>, hooks: KeepaliveHooks): Keepalive {
  let pongTimer: NodeJS.Timeout | undefined;
  let stopped = false;
  const onPong = (): void => {
    if (pongTimer !== undefined) clearTimeout(pongTimer);
    pongTimer = undefined;
  };
  const stop = (): void => {
    if (stopped) return;
    stopped = true;
    if (pingTimer !== undefined) clearInterval(pingTimer);
    onPong();
    socket.off('pong', onPong);
  };
  const pingTimer =
    options.intervalMs > 0
      ? setInterval(() => {
          if (pongTimer !== undefined || socket.readyState !== OPEN) return;
          pongTimer = setTimeout(() => {
            pongTimer = undefined;
            hooks.onStall?.();
            stop();
            socket.terminate();
          }, options.pongTimeoutMs);
          if (options.unref === true) pongTimer.unref();
          socket.ping();
        }, options.intervalMs)
      : undefined;
  if (options.unref === true) pingTimer?.unref();
  if (pingTimer !== undefined) socket.on('pong', onPong);
  return { noteSent: () => undefined, stop };
}

function messageKeepalive(socket: WebSocket, options: Extract<KeepaliveOptions, { kind: 'message' }>): Keepalive {
  const half = Math.max(100, Math.floor(options.intervalMs / 2));
  let lastSentAt = Date.now();
  const timer = setInterval(() => {
    if (socket.readyState !== OPEN || Date.now() - lastSentAt < half) return;
    socket.send(typeof options.message === 'string' ? options.message : options.message());
    lastSentAt = Date.now();
  }, half);
  if (options.unref === true) timer.unref();
  return {
    noteSent: () => {
      lastSentAt = Date.now();
    },
    stop: () => clearInterval(timer),
  };
}
