import { safeUrl } from './env.js';

export type FetchImpl = typeof fetch;

export type RequestFailureKind = 'timeout' | 'cancelled' | 'network' | 'too_large';

/** A failed HTTP exchange. The message is safe to log: it never carries the URL's query string or credentials. */
export class RequestFailure extends Error {
  override readonly name = 'RequestFailure';
  constructor(
    readonly kind: RequestFailureKind,
    message: string,
  ) {
    super(message);
  }
}

export interface TextResponse {
  readonly status: number;
  readonly ok: boolean;
  readonly text: string;
}

export interface RequestOptions {
  readonly method: 'GET' | 'POST';
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: string;
  /** Covers the whole exchange, body included. */
  readonly timeoutMs: number;
  /** Aborts the request (e.g. the call ended); reported as `cancelled`. */
  readonly signal?: AbortSignal;
  /** Larger bodies are abandoned (`too_large`). */
  readonly maxBytes: number;
}

/** One HTTP request with a timeout and a bounded body; rejects with a RequestFailure. */
export async function requestText(fetchImpl: FetchImpl, url: string, options: RequestOptions): Promise<TextResponse> {
  const { signal, timeoutMs } = options;
  if (signal?.aborted) throw new RequestFailure('cancelled', 'the call ended');
  const controller = new AbortController();
  let reason: 'timeout' | 'cancelled' | undefined;
  const timer = setTimeout(() => {
    reason = 'timeout';
    controller.abort();
  }, timeoutMs);
  const onAbort = (): void => {
    reason ??= 'cancelled';
    controller.abort();
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const response = await fetchImpl(url, {
      method: options.method,
      headers: { ...options.headers },
      ...(options.body === undefined ? {} : { body: options.body }),
      signal: controller.signal,
    });
    const text = await readBounded(response, options.maxBytes);
    return { status: response.status, ok: response.ok, text };
  } catch (error) {
    if (error instanceof RequestFailure) throw error;
    if (reason === 'timeout') throw new RequestFailure('timeout', `timed out after ${timeoutMs} ms`);
    if (reason === 'cancelled') throw new RequestFailure('cancelled', 'the call ended');
    throw new RequestFailure('network', describeNetworkError(error, url));
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}

async function readBounded(response: Response, maxBytes: number): Promise<string> {
  if (response.body === null) return '';
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let total = 0;
  let text = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => undefined);
      throw new RequestFailure('too_large', `response body larger than ${maxBytes} bytes`);
    }
    text += decoder.decode(value, { stream: true });
  }
  return text + decoder.decode();
}

/** "connection failed (ECONNREFUSED)" and the like; any copy of the URL in a message is reduced to host and path. */
export function describeNetworkError(error: unknown, url: string): string {
  const code = errorCode(error) ?? errorCode(error instanceof Error ? error.cause : undefined);
  if (code !== undefined) return `connection failed (${code})`;
  const cause = error instanceof Error && error.cause instanceof Error ? `: ${error.cause.message}` : '';
  const message = error instanceof Error ? `${error.message}${cause}` : String(error);
  return redactUrl(message, url);
}

function errorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null || !('code' in error)) return undefined;
  const { code } = error as { code: unknown };
  return typeof code === 'string' && /^E[A-Z_]+$/.test(code) ? code : undefined;
}

function redactUrl(message: string, url: string): string {
  const safe = safeUrl(url);
  let result = message.split(url).join(safe);
  try {
    result = result.split(new URL(url).href).join(safe);
  } catch {
    // not a URL: nothing more to redact
  }
  return result;
}
