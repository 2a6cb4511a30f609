export type ProviderErrorCategory =
  | 'auth'
  | 'permission'
  | 'invalid_request'
  | 'rate_limit'
  | 'quota'
  | 'connectivity'
  | 'timeout'
  | 'protocol'
  | 'server'
  | 'closed'
  | 'unknown';

/** Categories that a reconnect can fix unless told otherwise. */
const RETRYABLE_BY_DEFAULT: ReadonlySet<ProviderErrorCategory> = new Set([
  'rate_limit',
  'connectivity',
  'timeout',
  'server',
  'closed',
]);

export interface ProviderErrorOptions {
  retryable?: boolean;
  statusCode?: number;
  /** Provider's own error code, e.g. OpenAI `invalid_api_key`. */
  providerCode?: string;
  requestId?: string;
  /** Server hint, e.g. from `Retry-After`. */
  retryAfterMs?: number;
  cause?: unknown;
}

/**
 * Every failure an adapter reports. The message must be safe to log and to show AVR Core:
 * no API keys, no audio, no transcripts.
 */
export class ProviderError extends Error {
  override readonly name = 'ProviderError';
  readonly retryable: boolean;
  readonly statusCode: number | undefined;
  readonly providerCode: string | undefined;
  readonly requestId: string | undefined;
  readonly retryAfterMs: number | undefined;

  constructor(
    readonly provider: string,
    readonly category: ProviderErrorCategory,
    message: string,
    options: ProviderErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.retryable = options.retryable ?? RETRYABLE_BY_DEFAULT.has(category);
    this.statusCode = options.statusCode;
    this.providerCode = options.providerCode;
    this.requestId = options.requestId;
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** Map an HTTP status (from a REST call or a rejected WebSocket upgrade) to a category. */
export function categoryForStatus(status: number): ProviderErrorCategory {
  if (status === 401) return 'auth';
  if (status === 403) return 'permission';
  if (status === 402) return 'quota';
  if (status === 408) return 'timeout';
  if (status === 429) return 'rate_limit';
  if (status >= 500) return 'server';
  if (status >= 400) return 'invalid_request';
  return 'unknown';
}

export function providerErrorFromStatus(
  provider: string,
  status: number,
  message: string,
  options: Omit<ProviderErrorOptions, 'statusCode'> = {},
): ProviderError {
  return new ProviderError(provider, categoryForStatus(status), message, { ...options, statusCode: status });
}

/** Wrap anything thrown by IO code; keeps ProviderErrors as they are. */
export function toProviderError(provider: string, error: unknown): ProviderError {
  if (error instanceof ProviderError) return error;
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'ENOTFOUND' || code === 'EPIPE') {
      return new ProviderError(provider, 'connectivity', `connection failed (${code})`, { cause: error });
    }
    if (error.name === 'AbortError' || error.name === 'TimeoutError' || code === 'ETIMEDOUT') {
      return new ProviderError(provider, 'timeout', 'request timed out', { cause: error });
    }
    return new ProviderError(provider, 'unknown', error.message, { cause: error });
  }
  return new ProviderError(provider, 'unknown', 'unknown failure', { cause: error });
}

/** `Retry-After` as seconds or an HTTP date, in ms. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.round(seconds * 1000);
  const date = Date.parse(value);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}
