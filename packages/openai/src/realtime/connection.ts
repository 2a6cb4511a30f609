/**
 * One WebSocket connection to an OpenAI Realtime (GA) endpoint, or a compatible provider's (its profile gives the
 * auth headers and the names in errors), on core's transport: `connectLiveSocket` opens it (headers, TLS, timeout,
 * abort, upgrade and close errors through the Realtime classifiers), runs the handshake (`session.created` ->
 * `session.update` -> `session.updated`) and keeps it alive with pings. No session logic: parsed server events go to
 * `onMessage` once the owner starts the returned `LiveSocket`.
 */
import type { Logger } from 'pino';
import { connectLiveSocket } from '@stsgate/core';
import type { HandshakeStep, LiveSocket, ProviderError, WebSocketTlsOptions } from '@stsgate/core';
import { realtimeClassifiers } from '../errors.js';
import { Handshake } from './handshake.js';
import type { RealtimeProfile } from './profile.js';
import { parseServerMessage } from './wire.js';
import type { ParsedServerMessage, RealtimeSessionUpdate } from './wire.js';

/** Extra trusted CA certificate(s), client certificate, `rejectUnauthorized`: core's WebSocket TLS options. */
export type TlsOptions = WebSocketTlsOptions;

export interface ConnectionOptions {
  /** Full URL including `?model=`. */
  readonly url: string;
  readonly apiKey: string;
  /** The provider's id and name (errors, logs) and its auth headers. */
  readonly profile: Pick<RealtimeProfile, 'id' | 'label' | 'authHeaders'>;
  readonly sessionUpdate: RealtimeSessionUpdate;
  /** The upgrade, then the handshake up to `session.updated`: each within this. */
  readonly handshakeTimeoutMs: number;
  /** 0 disables the keepalive. */
  readonly pingIntervalMs: number;
  readonly pongTimeoutMs: number;
  readonly tls?: TlsOptions;
  readonly signal: AbortSignal;
  readonly logger: Logger;
  /** Server events that are not part of the handshake (those that came during it first), from `start()` on. */
  readonly onMessage: (message: ParsedServerMessage) => void;
  /** The connection ended without `close()` being called. */
  readonly onDrop: (error: ProviderError) => void;
}

/** A binary frame, as a message the mapper reports: the protocol uses JSON text frames only. */
function binaryFrame(): ParsedServerMessage {
  return { kind: 'malformed', type: undefined, problem: 'binary frame (the protocol uses JSON text frames)' };
}

/**
 * Opens a socket with the profile's auth headers (OpenAI: `Authorization: Bearer`, no OpenAI-Beta header), waits for
 * `session.created`, sends the `session.update`, and resolves once `session.updated` arrives, with a LiveSocket its
 * owner starts. Rejects with a ProviderError; nothing stays open when it does.
 */
export function openRealtimeConnection(options: ConnectionOptions): Promise<LiveSocket> {
  const { apiKey, logger, profile } = options;
  const handshake = new Handshake(options.sessionUpdate, apiKey, profile);
  const classify = (text: string, isBinary: boolean, send: (message: string) => void): HandshakeStep => {
    const message = isBinary ? binaryFrame() : parseServerMessage(text);
    if (message.kind === 'event' && message.event.type === 'error') {
      // Logged here: during set-up an error is usually followed at once by a close.
      logger.debug({ code: message.event.error.code ?? undefined }, `${profile.label} error during set-up`);
    }
    const step = handshake.handle(message);
    switch (step.kind) {
      case 'send_update':
        send(JSON.stringify(step.event));
        return 'ignore';
      case 'configured':
        for (const warning of step.warnings) logger.warn({ warning }, `${profile.label} session differs from the requested configuration`);
        return 'ready';
      case 'failed':
        return step.error;
      case 'wait':
        return 'ignore';
      case 'pass':
        return 'hold';
    }
  };
  return connectLiveSocket({
    provider: profile.id,
    label: profile.label,
    secrets: apiKey,
    url: options.url,
    headers: profile.authHeaders(apiKey),
    ...(options.tls === undefined ? {} : { tls: options.tls }),
    timeoutMs: options.handshakeTimeoutMs,
    signal: options.signal,
    // A close during or after the handshake takes its message from the last `error` the handshake saw.
    classify: realtimeClassifiers(profile, apiKey, () => handshake.lastError),
    handshake: { what: 'configure the session', classify },
    logger,
    ...(options.pingIntervalMs > 0 ? { keepalive: { kind: 'ping', intervalMs: options.pingIntervalMs, pongTimeoutMs: options.pongTimeoutMs } as const } : {}),
    onText: (text) => options.onMessage(parseServerMessage(text)),
    onBinary: () => options.onMessage(binaryFrame()),
    onDrop: options.onDrop,
  });
}
