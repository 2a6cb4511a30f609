/**
 * Plumbing of the HTTP text-to-speech emulators (Soniox TTS, Speechmatics TTS): a loopback server that reads and
 * parses each JSON request body, the request records, fault queue, timers and the members every such emulator object
 * shares (`requests`, `queueFault`, `waitFor`, `waitForRequest`, `close`), refusing a request that fails its checks,
 * and audio streamed as a chunked body on a timer with the `stall`/`abort` faults (a cut after N chunks) and an early
 * end (for error trailers). Nothing here holds module-level mutable state.
 */
import { createServer, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { ChangeWaiters, closeServer, FaultQueue, listenOnLoopback, readBody, sendJson, TimerSet, type JsonValue, type WaitOptions } from './common.js';

/** A request refused with `status` before any audio is sent. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Runs a request's checks: an HttpError they throw goes to `refuse` (and the result is undefined); other errors propagate. */
export function checkRequest<T>(check: () => T, refuse: (status: number, message: string) => void): T | undefined {
  try {
    return check();
  } catch (error) {
    if (!(error instanceof HttpError)) throw error;
    refuse(error.status, error.message);
    return undefined;
  }
}

export interface JsonRequest {
  readonly incoming: IncomingMessage;
  readonly url: URL;
  /** The body as received. */
  readonly raw: Buffer;
  /** The body parsed as JSON; null when it is empty or not JSON. */
  readonly body: JsonValue;
  /** False only for a non-empty body that is not JSON. */
  readonly json: boolean;
}

export interface JsonServerOptions {
  readonly logger: Logger;
  /** For the log line of a failed request (`<name>: request failed`). */
  readonly name: string;
  /** The 500 answer to a request whose handling threw. */
  readonly errorBody: JsonValue;
}

/**
 * An HTTP server that reads each request's body (a failed read destroys the socket) and hands it to `handle`. A throw
 * in `handle` is logged and answered with 500 and `errorBody` (the socket is destroyed once the headers are out).
 */
function createJsonRequestServer(handle: (request: JsonRequest, response: ServerResponse) => void, options: JsonServerOptions): Server {
  return createServer((incoming: IncomingMessage, response: ServerResponse) => {
    const url = new URL(incoming.url ?? '/', 'http://127.0.0.1');
    void (async () => {
      let raw: Buffer;
      try {
        raw = await readBody(incoming);
      } catch {
        response.destroy();
        return;
      }
      let body: JsonValue = null;
      let json = raw.length === 0;
      try {
        body = raw.length === 0 ? null : (JSON.parse(raw.toString('utf8')) as JsonValue);
        json = true;
      } catch {
        body = null;
      }
      handle({ incoming, url, raw, body, json }, response);
    })().catch((error: unknown) => {
      options.logger.error({ err: error }, `${options.name}: request failed`);
      if (!response.headersSent) sendJson(response, 500, options.errorBody);
      else response.destroy();
    });
  });
}

/** The members every TTS emulator object has (spread `host.api` into it). */
export interface HttpEmulatorApi<R, F> {
  /** Every request, in arrival order. */
  readonly requests: readonly R[];
  readonly queueFault: (fault: F) => void;
  readonly waitFor: <T>(probe: () => T | undefined | null | false, options?: WaitOptions) => Promise<T>;
  /** Resolves with the first request matching `predicate` (default: any). */
  readonly waitForRequest: (predicate?: (record: R) => boolean, options?: WaitOptions) => Promise<R>;
  /** Stops streaming, fails pending waits, closes the server. */
  readonly close: () => Promise<void>;
}

/** The shared half of a TTS emulator: records, faults, timers and waiting; the emulator handles the requests. */
export interface HttpEmulatorHost<R, F extends { readonly times?: number }> {
  readonly requests: R[];
  readonly faults: FaultQueue<F>;
  /** Owns every streaming timer. */
  readonly timers: TimerSet;
  /** Re-evaluates the pending `waitFor` probes (call after every record change). */
  readonly notify: () => void;
  /** Serves `handle` (see `createJsonRequestServer`) on 127.0.0.1 (OS-assigned port) and returns the port. */
  readonly serve: (handle: (request: JsonRequest, response: ServerResponse) => void, options: JsonServerOptions) => Promise<number>;
  readonly api: HttpEmulatorApi<R, F>;
}

export function createHttpEmulatorHost<R, F extends { readonly times?: number }>(faults: readonly F[] = []): HttpEmulatorHost<R, F> {
  const requests: R[] = [];
  const queue = new FaultQueue(faults);
  const timers = new TimerSet();
  const waiters = new ChangeWaiters();
  const notify = (): void => waiters.notify();
  let server: Server | undefined;
  return {
    requests,
    faults: queue,
    timers,
    notify,
    serve: (handle, options) => {
      server = createJsonRequestServer(handle, options);
      return listenOnLoopback(server);
    },
    api: {
      requests,
      queueFault: (fault) => queue.push(fault),
      waitFor: (probe, waitOptions) => waiters.waitFor(probe, waitOptions),
      waitForRequest: (predicate, waitOptions) =>
        waiters.waitFor(() => requests.find((record) => predicate?.(record) ?? true), waitOptions, 'tts request'),
      close: async () => {
        timers.clear();
        waiters.close();
        if (server !== undefined) await closeServer(server);
      },
    },
  };
}

/** What a streamed response records. */
export interface StreamRecord {
  status: number | undefined;
  chunksSent: number;
  /** Body bytes written (a WAV header included). */
  bytesSent: number;
  /** The body ended (normally or early). */
  completed: boolean;
  /** The connection closed before the body ended. */
  aborted: boolean;
}

export interface ChunkedBody {
  readonly bytes: Buffer;
  readonly chunkBytes: number;
  /** Bytes that travel with the first chunk on top of `chunkBytes` (a WAV header). */
  readonly headerBytes: number;
  readonly intervalMs: number;
  /** After `afterChunks` chunks: `stall` sends nothing more (the connection stays open), `abort` destroys the socket. */
  readonly cut?: { readonly type: 'stall' | 'abort'; readonly afterChunks: number } | undefined;
  /** After `afterChunks` chunks the body ends; `beforeEnd` runs first (to add trailers). */
  readonly endEarly?: { readonly afterChunks: number; readonly beforeEnd: () => void } | undefined;
}

/**
 * Answers 200 with `headers` and streams `body.bytes`, one chunk now and one every `intervalMs` (owned by `timers`);
 * a connection that closes first stops it and marks the record aborted. `notify` follows every record change.
 */
export function streamChunked(
  response: ServerResponse,
  record: StreamRecord,
  headers: OutgoingHttpHeaders,
  body: ChunkedBody,
  timers: TimerSet,
  notify: () => void,
): void {
  const { bytes, chunkBytes, headerBytes, intervalMs, cut, endEarly } = body;
  record.status = 200;
  response.writeHead(200, headers);
  response.flushHeaders();
  let position = 0;
  let timer: NodeJS.Timeout | undefined;
  response.on('close', () => {
    timers.cancel(timer);
    timer = undefined;
    if (!record.completed) {
      record.aborted = true;
      notify();
    }
  });
  const end = (): void => {
    record.completed = true;
    response.end();
    notify();
  };
  const step = (): void => {
    timer = undefined;
    if (response.destroyed) return;
    if (cut !== undefined && record.chunksSent >= cut.afterChunks) {
      if (cut.type === 'abort') response.socket?.destroy();
      return; // stall: the connection stays open until the client (or close()) ends it
    }
    if (endEarly !== undefined && record.chunksSent >= endEarly.afterChunks) {
      endEarly.beforeEnd();
      end();
      return;
    }
    if (position >= bytes.length) {
      end();
      return;
    }
    // The WAV header travels with the first chunk.
    const stop = Math.min(bytes.length, position + chunkBytes + (position === 0 ? headerBytes : 0));
    const chunk = bytes.subarray(position, stop);
    position = stop;
    record.chunksSent++;
    record.bytesSent += chunk.length;
    response.write(chunk);
    notify();
    timer = timers.after(intervalMs, step);
  };
  step();
}
