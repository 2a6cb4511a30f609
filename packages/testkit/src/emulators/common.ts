/**
 * Small helpers shared by the provider emulators: ids, loopback listening, request bodies, JSON answers, Bearer tokens,
 * waiting on state changes, fault queues, test tones and JSON narrowing. Nothing here holds module-level mutable state.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** An OpenAI-looking id: `<prefix>_` followed by 22 random alphanumerics (e.g. `event_Ct1Ox...`). */
export function randomId(prefix: string, length = 22): string {
  const bytes = randomBytes(length);
  let out = '';
  for (const byte of bytes) out += ID_ALPHABET[byte % ID_ALPHABET.length] as string;
  return `${prefix}_${out}`;
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** Listens on 127.0.0.1 with an OS-assigned port and returns the port. */
export function listenOnLoopback(server: HttpServer): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const onError = (error: Error): void => reject(error);
    server.once('error', onError);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', onError);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** Closes a server after destroying its open sockets (keep-alive, stalled streams). */
export function closeServer(server: HttpServer): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** Reads a request body up to `limit` bytes (rejects beyond). */
export function readBody(request: IncomingMessage, limit = 8 * 1024 * 1024): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(new Error(`request body larger than ${String(limit)} bytes`));
        request.destroy();
        return;
      }
      chunks.push(chunk);
    });
    request.on('end', () => resolve(Buffer.concat(chunks)));
    request.on('error', reject);
  });
}

/** Answers with `status` and a JSON body. */
export function sendJson(response: ServerResponse, status: number, body: JsonValue): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
}

/** The token of an `Authorization: Bearer <token>` header; undefined when the header is missing or not Bearer. */
export function bearerToken(headers: IncomingHttpHeaders): string | undefined {
  return /^Bearer\s+(.+)$/i.exec(headers.authorization?.trim() ?? '')?.[1]?.trim();
}

/** Why a request's Bearer key is refused (`Missing API key.` or `Invalid API key.`); undefined when it is one of `keys`. */
export function apiKeyProblem(headers: IncomingHttpHeaders, keys: ReadonlySet<string>): string | undefined {
  const key = bearerToken(headers);
  if (key === undefined) return 'Missing API key.';
  return keys.has(key) ? undefined : 'Invalid API key.';
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Narrows a value that came out of JSON.parse (so it cannot hold functions, undefined or cycles). */
export function asJson(value: unknown): JsonValue {
  if (value === null || typeof value === 'boolean' || typeof value === 'number' || typeof value === 'string') return value;
  if (Array.isArray(value)) return value.map(asJson);
  if (isRecord(value)) {
    const out: JsonObject = {};
    for (const [key, entry] of Object.entries(value)) out[key] = asJson(entry);
    return out;
  }
  throw new TypeError(`not a JSON value: ${typeof value}`);
}

/** Name of a JSON value's type as OpenAI's validation messages spell it. */
export function jsonTypeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'string':
      return 'a string';
    case 'boolean':
      return 'a boolean';
    case 'number':
      return Number.isInteger(value) ? 'an integer' : 'a decimal number';
    case 'object':
      return 'an object';
    default:
      return typeof value;
  }
}

/**
 * A sine tone with 5 ms fades, 16-bit mono. The default amplitude (8000, about -15 dBFS RMS) is well above
 * every energy detector in the test kit.
 */
export function tone(ms: number, rate = 24000, frequency = 440, amplitude = 8000): Int16Array {
  const n = Math.max(0, Math.round((ms * rate) / 1000));
  const fade = Math.min(Math.round(rate / 200), Math.floor(n / 2));
  const out = new Int16Array(n);
  for (let i = 0; i < n; i++) {
    const gain = fade === 0 ? 1 : Math.min(1, i / fade, (n - 1 - i) / fade);
    out[i] = Math.round(amplitude * gain * Math.sin((2 * Math.PI * frequency * i) / rate));
  }
  return out;
}

/**
 * A voiced-like stand-in for synthesised speech: `f0` plus half its third harmonic under a 4 Hz syllable envelope,
 * 10 ms fades, 60 ms per character of `text` (300..20000 ms), at `rate`.
 */
export function syllableSpeech(text: string, rate: number, f0: number): Int16Array {
  const ms = Math.min(20_000, Math.max(300, text.length * 60));
  const n = Math.round((ms * rate) / 1000);
  const fade = Math.round(rate / 100);
  const out = new Int16Array(n);
  for (let i = 0; i < n; i++) {
    const t = i / rate;
    const envelope = 0.55 + 0.45 * Math.sin(2 * Math.PI * 4 * t);
    const edge = Math.min(1, i / fade, (n - 1 - i) / fade);
    out[i] = Math.round(6000 * envelope * edge * (Math.sin(2 * Math.PI * f0 * t) + 0.5 * Math.sin(2 * Math.PI * 3 * f0 * t)));
  }
  return out;
}

export interface WaitOptions {
  /** Safety net so a broken test fails instead of hanging (default 5000 ms). */
  readonly timeoutMs?: number;
}

/**
 * Re-evaluates probes whenever the owner signals a state change; `waitFor` resolves with the first truthy
 * probe result. Every pending wait is rejected on `close()`.
 */
export class ChangeWaiters {
  readonly #waiters = new Set<{ check: () => boolean; fail: (error: Error) => void }>();

  waitFor<T>(probe: () => T | undefined | null | false, options: WaitOptions = {}, describe = 'condition'): Promise<T> {
    const first = probe();
    if (first !== undefined && first !== null && first !== false) return Promise.resolve(first);
    const timeoutMs = options.timeoutMs ?? 5000;
    return new Promise<T>((resolve, reject) => {
      const waiter = {
        check: (): boolean => {
          let value: T | undefined | null | false;
          try {
            value = probe();
          } catch (error) {
            finish();
            reject(error instanceof Error ? error : new Error(String(error)));
            return true;
          }
          if (value === undefined || value === null || value === false) return false;
          finish();
          resolve(value);
          return true;
        },
        fail: (error: Error): void => {
          finish();
          reject(error);
        },
      };
      const timer = setTimeout(() => waiter.fail(new Error(`waitFor(${describe}) timed out after ${String(timeoutMs)} ms`)), timeoutMs);
      const finish = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(waiter);
      };
      this.#waiters.add(waiter);
    });
  }

  notify(): void {
    for (const waiter of [...this.#waiters]) waiter.check();
  }

  close(reason = 'emulator closed'): void {
    for (const waiter of [...this.#waiters]) waiter.fail(new Error(reason));
  }
}

/** FIFO of queued faults; the head one serves `times` (default 1) consecutive takers, then leaves. */
export class FaultQueue<F extends { readonly times?: number }> {
  readonly #queue: { readonly fault: F; remaining: number }[] = [];

  constructor(faults: readonly F[] = []) {
    for (const fault of faults) this.push(fault);
  }

  push(fault: F): void {
    this.#queue.push({ fault, remaining: fault.times ?? 1 });
  }

  /** The head fault, or undefined when the queue is empty. */
  take(): F | undefined {
    const head = this.#queue[0];
    if (head === undefined) return undefined;
    head.remaining -= 1;
    if (head.remaining <= 0) this.#queue.shift();
    return head.fault;
  }
}

/** Set of timers that can all be cleared at once (every timer of an emulator has an owner). */
export class TimerSet {
  readonly #timers = new Set<NodeJS.Timeout>();

  after(ms: number, run: () => void): NodeJS.Timeout {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      run();
    }, ms);
    this.#timers.add(timer);
    return timer;
  }

  every(ms: number, run: () => void): NodeJS.Timeout {
    const timer = setInterval(run, ms);
    this.#timers.add(timer);
    return timer;
  }

  cancel(timer: NodeJS.Timeout | undefined): void {
    if (timer === undefined) return;
    clearTimeout(timer);
    clearInterval(timer);
    this.#timers.delete(timer);
  }

  clear(): void {
    for (const timer of this.#timers) {
      clearTimeout(timer);
      clearInterval(timer);
    }
    this.#timers.clear();
  }
}

/** Redacts an API key the way OpenAI's error messages do (first 3 and last 4 characters kept). */
export function redactKey(key: string): string {
  if (key.length <= 8) return '*'.repeat(key.length);
  return `${key.slice(0, 3)}${'*'.repeat(Math.max(4, key.length - 7))}${key.slice(-4)}`;
}

/** OpenAI's JSON error bodies for common HTTP statuses. */
export function defaultOpenAiErrorBody(status: number): JsonValue {
  switch (status) {
    case 401:
      return {
        error: {
          message: 'Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.',
          type: 'invalid_request_error',
          param: null,
          code: 'invalid_api_key',
        },
      };
    case 429:
      return {
        error: {
          message: 'Rate limit reached for requests. Please try again in 1s.',
          type: 'requests',
          param: null,
          code: 'rate_limit_exceeded',
        },
      };
    case 503:
      return { error: { message: 'The engine is currently overloaded, please try again later', type: 'server_error', param: null, code: null } };
    default:
      return {
        error: {
          message: 'The server had an error while processing your request. Sorry about that!',
          type: status >= 500 ? 'server_error' : 'invalid_request_error',
          param: null,
          code: null,
        },
      };
  }
}
