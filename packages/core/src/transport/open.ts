/**
 * `openWebSocket`: one client WebSocket to a provider, open or failed with a ProviderError. Headers (the key goes in
 * a header, never in a URL or a message), TLS, one deadline for the whole upgrade, the call's AbortSignal, and every
 * failure mapped through classifiers the provider may replace.
 */
import type { ClientRequest, IncomingMessage } from 'node:http';
import { WebSocket } from 'ws';
import { ProviderError, parseRetryAfter } from '../errors/provider-error.js';
import { readErrorBody } from '../util/transport.js';
import { providerErrorFromCloseCode, providerErrorFromConnection, providerErrorFromUpgrade } from './errors.js';
import type { CloseInfo, ConnectionNames, UpgradeRejection } from './errors.js';
import { holdFrames } from './hold.js';
import type { HeldSocket } from './hold.js';

export interface WebSocketTlsOptions {
  /** Extra trusted CA certificate(s), e.g. a self-hosted server's. */
  readonly ca?: string | Buffer | readonly (string | Buffer)[];
  /** Client certificate and key (mutual TLS). */
  readonly cert?: string | Buffer;
  readonly key?: string | Buffer;
  /** Default true; false accepts any certificate (tests, private networks only). */
  readonly rejectUnauthorized?: boolean;
}

/** Provider-specific mapping of connection failures; each defaults to the core classifier of the same kind. */
export interface WebSocketClassifiers {
  /** The upgrade was answered with an HTTP status (401, 429 with `Retry-After`, ...). */
  readonly upgrade?: (rejection: UpgradeRejection) => ProviderError;
  /** The socket closed (before it opened here; `LiveSocket` uses the same classifier for a drop). */
  readonly close?: (close: CloseInfo) => ProviderError;
  /** A socket error: DNS, refused, reset, TLS. */
  readonly connection?: (error: Error) => ProviderError;
}

export interface OpenWebSocketOptions extends ConnectionNames {
  readonly url: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** Sent as `Authorization: Bearer <token>` (the key in a header, never in a URL or a message) and redacted like `secrets`. */
  readonly bearer?: string;
  readonly tls?: WebSocketTlsOptions;
  /** From the start of the connection to the end of the upgrade: a retryable `timeout` error after it. */
  readonly timeoutMs: number;
  /** Aborting it (the call ended, the session closed) fails the attempt with a non-retryable `closed` error. */
  readonly signal: AbortSignal;
  readonly classify?: WebSocketClassifiers;
  /** The server's HTTP answer to the upgrade (101 or an error status), e.g. to read a request id or to ref/unref its socket. */
  readonly onResponse?: (response: IncomingMessage) => void;
}

/** The classifiers of `options` with the core defaults filled in. */
export function connectionClassifiers(names: ConnectionNames, classify: WebSocketClassifiers = {}): Required<WebSocketClassifiers> {
  return {
    upgrade: classify.upgrade ?? ((rejection) => providerErrorFromUpgrade(names, rejection)),
    close: classify.close ?? ((close) => providerErrorFromCloseCode(names, close)),
    connection: classify.connection ?? ((error) => providerErrorFromConnection(names, error)),
  };
}

/** `names` with the bearer token among its secrets. */
export function withBearerSecret<T extends ConnectionNames & { readonly bearer?: string }>(names: T): T {
  if (names.bearer === undefined) return names;
  const secrets = names.secrets === undefined ? [] : typeof names.secrets === 'string' ? [names.secrets] : names.secrets;
  return { ...names, secrets: [...secrets, names.bearer] };
}

/** The error of an attempt the call's signal (or the owner) ended. */
export function abortedError(names: ConnectionNames, what = 'connection'): ProviderError {
  return new ProviderError(names.provider, 'closed', `the call ended before the ${names.label} ${what} was ready`, { retryable: false });
}

/**
 * Resolves with the open socket, held: whatever the server sends from the moment it is open (a first message can
 * come in the same read as the upgrade) waits for the owner's `takeOver`, or `firstMessageHandshake`, or `LiveSocket`.
 * Per-message deflate is off, binary frames are Buffers, and a no-op 'error' listener stays so a late error never
 * throws. Rejects with a ProviderError; a failed socket is terminated.
 */
export function openWebSocket(options: OpenWebSocketOptions): Promise<HeldSocket> {
  const names = withBearerSecret(options);
  const classify = connectionClassifiers(names, options.classify);
  return new Promise<HeldSocket>((resolve, reject) => {
    if (options.signal.aborted) {
      reject(abortedError(options));
      return;
    }
    const tls = options.tls;
    const headers = { ...options.headers, ...(options.bearer === undefined ? {} : { Authorization: `Bearer ${options.bearer}` }) };
    const socket = new WebSocket(options.url, {
      headers,
      perMessageDeflate: false,
      ...(tls?.ca === undefined ? {} : { ca: Array.isArray(tls.ca) ? [...(tls.ca as readonly (string | Buffer)[])] : (tls.ca as string | Buffer) }),
      ...(tls?.cert === undefined ? {} : { cert: tls.cert }),
      ...(tls?.key === undefined ? {} : { key: tls.key }),
      ...(tls?.rejectUnauthorized === undefined ? {} : { rejectUnauthorized: tls.rejectUnauthorized }),
    });
    socket.binaryType = 'nodebuffer';
    let settled = false;
    let socketError: Error | undefined;
    const finish = (error: ProviderError | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal.removeEventListener('abort', onAbort);
      socket.removeAllListeners();
      // Never leave the socket without an 'error' listener: an unhandled one would throw.
      socket.on('error', () => undefined);
      if (error === undefined) {
        resolve(holdFrames(socket));
        return;
      }
      if (socket.readyState !== WebSocket.CLOSED) socket.terminate();
      reject(error);
    };
    const onAbort = (): void => finish(abortedError(options));
    options.signal.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => {
      finish(new ProviderError(options.provider, 'timeout', `the ${options.label} connection timed out after ${options.timeoutMs} ms`));
    }, options.timeoutMs);

    socket.on('upgrade', (response: IncomingMessage) => options.onResponse?.(response));
    socket.on('unexpected-response', (request: ClientRequest, response: IncomingMessage) => {
      options.onResponse?.(response);
      const status = response.statusCode ?? 0;
      const header = response.headers['retry-after'];
      const retryAfterMs = parseRetryAfter(Array.isArray(header) ? header[0] : header);
      const rejected = (body: string): void => {
        request.destroy();
        finish(classify.upgrade({ status, body, retryAfterMs, headers: response.headers }));
      };
      readErrorBody(response).then(rejected, () => rejected(''));
    });
    socket.on('error', (error: Error) => {
      socketError = error;
      finish(classify.connection(error));
    });
    socket.on('close', (code: number, reason: Buffer) => {
      finish(socketError === undefined ? classify.close({ code, reason: reason.toString('utf8') }) : classify.connection(socketError));
    });
    socket.on('open', () => finish(undefined));
  });
}
