// Helpers shared by the hostile-client drivers: timing, error codes, option checks, URL and header formatting.
import { performance } from 'node:perf_hooks';
import type { RawData } from 'ws';

export const DEFAULT_CONNECT_TIMEOUT_MS = 5000;

export function round1(ms: number): number {
  return Math.round(ms * 10) / 10;
}

export function sinceMs(t0: number): number {
  return round1(performance.now() - t0);
}

/** An error's code (ECONNRESET, EMFILE...) or, without one, its message. */
export function errorCode(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    return typeof code === 'string' ? code : error.message;
  }
  return String(error);
}

export function increment(record: Record<string, number>, key: string): void {
  record[key] = (record[key] ?? 0) + 1;
}

export function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function requirePositive(name: string, value: number | undefined, allowZero = false): void {
  if (value === undefined) return;
  if (!Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) throw new RangeError(`${name} must be ${allowZero ? '>= 0' : '> 0'} (got ${value})`);
}

export interface HostPort {
  readonly host: string;
  readonly port: number;
  /** Path and query string. */
  readonly path: string;
  /** The Host header value. */
  readonly hostHeader: string;
}

export function hostPort(url: string, defaultPort: number): HostPort {
  const parsed = new URL(url);
  return {
    host: parsed.hostname.replace(/^\[|\]$/g, ''),
    port: parsed.port === '' ? defaultPort : Number(parsed.port),
    path: `${parsed.pathname}${parsed.search}`,
    hostHeader: parsed.host,
  };
}

export function headerLines(headers: Readonly<Record<string, string>> | undefined): string {
  return Object.entries(headers ?? {})
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
}
