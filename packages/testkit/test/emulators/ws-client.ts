import WebSocket from 'ws';
import { concatPcm, silence } from '../../src/signals.js';
import { tone } from '../../src/emulators/common.js';

/** One frame from the server; `at` is ms since the client was created. */
export type WireFrame<M = Record<string, unknown>> =
  | { readonly kind: 'json'; readonly message: M; readonly at: number }
  | { readonly kind: 'text'; readonly text: string; readonly at: number }
  | { readonly kind: 'binary'; readonly data: Buffer; readonly at: number };

/** A raw `ws` client that records every frame the server sends. */
export interface RawWsClient<M extends Record<string, unknown> = Record<string, unknown>> {
  readonly ws: WebSocket;
  /** Every frame received, in order (text frames that are JSON objects as `json`). */
  readonly frames: WireFrame<M>[];
  /** The JSON object messages, in order. */
  readonly messages: M[];
  readonly closed: Promise<{ code: number; reason: string }>;
  /** Strings and buffers go out as they are, anything else as JSON text. */
  send(message: unknown): void;
  /** Resolves with the first truthy `probe()` (checked now and at every frame); rejects if the socket closes first or after `timeoutMs`. */
  until<T>(probe: () => T | undefined | null | false, what?: string, timeoutMs?: number): Promise<T>;
  /** Resolves with the first message (received or to come) matching `predicate`. */
  waitForMessage(predicate: (message: M) => boolean, what?: string): Promise<M>;
}

export interface RawWsClientOptions {
  readonly headers?: Record<string, string>;
  readonly protocols?: string[];
  /** Runs for every binary frame, after it is recorded. */
  readonly onBinary?: (data: Buffer, ws: WebSocket) => void;
  readonly clientOptions?: WebSocket.ClientOptions;
}

/** Connects (rejects when the upgrade is refused) and records what the server sends. */
export async function connectRawClient<M extends Record<string, unknown> = Record<string, unknown>>(
  url: string,
  options: RawWsClientOptions = {},
): Promise<RawWsClient<M>> {
  const ws = new WebSocket(url, options.protocols, { headers: options.headers ?? {}, ...options.clientOptions });
  const frames: WireFrame<M>[] = [];
  const messages: M[] = [];
  const listeners = new Set<() => void>();
  const created = performance.now();
  ws.on('message', (data: Buffer, isBinary) => {
    const at = performance.now() - created;
    if (isBinary) {
      const copy = Buffer.from(data);
      frames.push({ kind: 'binary', data: copy, at });
      options.onBinary?.(copy, ws);
    } else {
      const text = data.toString('utf8');
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
        const message = parsed as M;
        frames.push({ kind: 'json', message, at });
        messages.push(message);
      } else {
        frames.push({ kind: 'text', text, at });
      }
    }
    for (const listener of [...listeners]) listener();
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.on('close', (code, reason) => {
      resolve({ code, reason: reason.toString('utf8') });
      for (const listener of [...listeners]) listener();
    });
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.on('error', () => undefined);
  const received = (): string => frames.map((frame) => (frame.kind === 'json' ? String(frame.message.type ?? frame.message.message ?? 'json') : frame.kind)).join(', ');
  const until = <T>(probe: () => T | undefined | null | false, what = 'condition', timeoutMs = 5000): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const check = (): boolean => {
        const value = probe();
        if (value !== undefined && value !== null && value !== false) {
          listeners.delete(check);
          clearTimeout(timer);
          resolve(value);
          return true;
        }
        if (ws.readyState === WebSocket.CLOSED) {
          listeners.delete(check);
          clearTimeout(timer);
          reject(new Error(`socket closed before ${what}; got ${received()}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        listeners.delete(check);
        reject(new Error(`timed out waiting for ${what}; got ${received()}`));
      }, timeoutMs);
      if (!check()) listeners.add(check);
    });
  return {
    ws,
    frames,
    messages,
    closed,
    send: (message) => ws.send(typeof message === 'string' || Buffer.isBuffer(message) ? message : JSON.stringify(message)),
    until,
    waitForMessage: (predicate, what = 'a matching message') => until(() => messages.find(predicate), what),
  };
}

/** A raw `ws` client for the Realtime emulator that records every server event. */
export interface TestClient {
  readonly ws: WebSocket;
  readonly events: Record<string, unknown>[];
  send(event: Record<string, unknown>): void;
  /** Resolves with the first event of `type` (at or after index `from`) matching `predicate`. */
  next(type: string, predicate?: (event: Record<string, unknown>) => boolean, from?: number): Promise<Record<string, unknown>>;
  types(from?: number): string[];
  readonly closed: Promise<{ code: number; reason: string }>;
  close(): void;
}

export async function connectClient(url: string, headers: Record<string, string>, options: WebSocket.ClientOptions = {}): Promise<TestClient> {
  const client = await connectRawClient(url, { headers, clientOptions: options });
  const events = client.messages;
  return {
    ws: client.ws,
    events,
    send: (event) => client.send(event),
    next: (type, predicate, from = 0) => client.until(() => events.slice(from).find((event) => event.type === type && (predicate?.(event) ?? true)), type),
    types: (from = 0) => events.slice(from).map((event) => String(event.type)),
    closed: client.closed,
    close: () => client.ws.close(),
  };
}

/** The bytes of 16-bit PCM samples (s16le on every supported platform), without a copy. */
export function pcm16Bytes(samples: Int16Array): Buffer {
  return Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength);
}

/** PCM s16le frames of `frameSamples` samples (default 160: 20 ms at 8 kHz). */
export function pcm16Frames(samples: Int16Array, frameSamples = 160): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < samples.length; i += frameSamples) out.push(pcm16Bytes(samples.subarray(i, i + frameSamples)));
  return out;
}

export function pcm16Base64(samples: Int16Array): string {
  return pcm16Bytes(samples).toString('base64');
}

/** `speechMs` of tone followed by `silenceMs` of silence, at `rate`. */
export function utterance(speechMs: number, silenceMs: number, rate = 24000): Int16Array {
  return concatPcm(tone(speechMs, rate), silence(silenceMs, rate));
}

/** Appends 24 kHz PCM in 20 ms chunks (no pacing: the emulator runs on the audio clock). */
export function appendPcm24k(client: TestClient, samples: Int16Array): void {
  for (let i = 0; i < samples.length; i += 480) {
    client.send({ type: 'input_audio_buffer.append', audio: pcm16Base64(samples.subarray(i, i + 480)) });
  }
}

export const KEY = 'sk-test-emulator-key-1234';
export const AUTH = { Authorization: `Bearer ${KEY}` };
