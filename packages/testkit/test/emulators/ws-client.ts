import WebSocket from 'ws';
import { concatPcm, silence } from '../../src/signals.js';
import { tone } from '../../src/emulators/common.js';

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
  const ws = new WebSocket(url, { headers, ...options });
  const events: Record<string, unknown>[] = [];
  const listeners = new Set<() => void>();
  ws.on('message', (data) => {
    events.push(JSON.parse(String(data)) as Record<string, unknown>);
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
  return {
    ws,
    events,
    send: (event) => ws.send(JSON.stringify(event)),
    next: (type, predicate, from = 0) =>
      new Promise((resolve, reject) => {
        const check = (): boolean => {
          const found = events.slice(from).find((event) => event.type === type && (predicate?.(event) ?? true));
          if (found !== undefined) {
            listeners.delete(listener);
            clearTimeout(timer);
            resolve(found);
            return true;
          }
          if (ws.readyState === WebSocket.CLOSED) {
            listeners.delete(listener);
            clearTimeout(timer);
            reject(new Error(`socket closed before ${type}; got ${events.map((event) => String(event.type)).join(', ')}`));
            return true;
          }
          return false;
        };
        const listener = (): void => void check();
        const timer = setTimeout(() => {
          listeners.delete(listener);
          reject(new Error(`timed out waiting for ${type}; got ${events.map((event) => String(event.type)).join(', ')}`));
        }, 5000);
        if (!check()) listeners.add(listener);
      }),
    types: (from = 0) => events.slice(from).map((event) => String(event.type)),
    closed,
    close: () => ws.close(),
  };
}

export function pcm16Base64(samples: Int16Array): string {
  return Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength).toString('base64');
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
