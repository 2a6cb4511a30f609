/**
 * Temporary keys (JWTs) from the management platform via `@speechmatics/auth`. Flow only takes a temporary key
 * (`?jwt=`), so every call needs one: a key is minted with a TTL longer than it is reused for, shared by the calls
 * that start while it is fresh, and minted again shortly before it expires (one request in flight at a time).
 * The key is only checked when a session opens, so a call may outlive it.
 */
import { createSpeechmaticsJWT, SpeechmaticsJWTError } from '@speechmatics/auth';
import { ProviderError } from '@stsgate/core';
import { PROVIDER, connectionError, sanitizeMessage } from './errors.js';

export const DEFAULT_MANAGEMENT_URL = 'https://mp.speechmatics.com/v1';
export const DEFAULT_TEMPORARY_KEY_TTL_S = 300;

export type TemporaryKeyType = 'rt' | 'flow' | 'tts';

export interface TemporaryKeyOptions {
  readonly apiKey: string;
  /** Default `https://mp.speechmatics.com/v1`. */
  readonly managementUrl?: string;
  /** Lifetime asked for, 60..86400 s. Default 300; a key is reused until 60 s before it expires. */
  readonly ttlSeconds?: number;
  /** Per request. Default 10000. */
  readonly timeoutMs?: number;
  /** For tests. */
  readonly now?: () => number;
}

const REUSE_MARGIN_MS = 60_000;

export class TemporaryKeys {
  private readonly cached = new Map<TemporaryKeyType, { key: string; reuseUntil: number }>();
  private readonly inFlight = new Map<TemporaryKeyType, Promise<string>>();
  private readonly ttlSeconds: number;
  private readonly now: () => number;

  constructor(private readonly options: TemporaryKeyOptions) {
    this.ttlSeconds = options.ttlSeconds ?? DEFAULT_TEMPORARY_KEY_TTL_S;
    if (!(Number.isInteger(this.ttlSeconds) && this.ttlSeconds >= 60 && this.ttlSeconds <= 86_400)) {
      throw new RangeError(`temporary key TTL must be an integer in [60, 86400] seconds, got ${String(this.ttlSeconds)}`);
    }
    this.now = options.now ?? Date.now;
  }

  /** A key valid for at least the reuse margin (or a fresh one); rejects with a ProviderError. */
  get(type: TemporaryKeyType, signal: AbortSignal): Promise<string> {
    const cached = this.cached.get(type);
    if (cached !== undefined && this.now() < cached.reuseUntil) return Promise.resolve(cached.key);
    let pending = this.inFlight.get(type);
    if (pending === undefined) {
      pending = this.mint(type).finally(() => this.inFlight.delete(type));
      this.inFlight.set(type, pending);
    }
    return abortable(pending, signal);
  }

  /** A key the server refused (e.g. revoked): the next `get` mints a new one. */
  invalidate(type: TemporaryKeyType, key: string): void {
    if (this.cached.get(type)?.key === key) this.cached.delete(type);
  }

  private async mint(type: TemporaryKeyType): Promise<string> {
    const started = this.now();
    const timeoutMs = this.options.timeoutMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new ProviderError(PROVIDER, 'timeout', `the Speechmatics key endpoint did not answer within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      const key = await Promise.race([
        createSpeechmaticsJWT({ type, apiKey: this.options.apiKey, ttl: this.ttlSeconds, managementPlatformURL: this.options.managementUrl ?? DEFAULT_MANAGEMENT_URL }),
        timeout,
      ]);
      if (typeof key !== 'string' || key === '') throw new ProviderError(PROVIDER, 'protocol', 'the Speechmatics key endpoint returned no key');
      this.cached.set(type, { key, reuseUntil: started + Math.max(0, this.ttlSeconds * 1000 - REUSE_MARGIN_MS) });
      return key;
    } catch (error) {
      throw keyError(error, this.options.apiKey);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** `@speechmatics/auth` errors: 403 is `Unauthorized`, 422 `ValidationFailed`, anything else `UnknownError`. */
function keyError(error: unknown, secret: string): ProviderError {
  if (error instanceof ProviderError) return error;
  if (error instanceof SpeechmaticsJWTError) {
    const detail = sanitizeMessage(error.message, secret);
    switch (error.type) {
      case 'Unauthorized':
        return new ProviderError(PROVIDER, 'auth', 'Speechmatics refused the API key when creating a temporary key', { retryable: false, statusCode: 403 });
      case 'ValidationFailed':
        return new ProviderError(PROVIDER, 'invalid_request', `Speechmatics rejected the temporary key request: ${detail}`, { retryable: false, statusCode: 422 });
      case 'UnknownError': {
        const status = /status (\d{3})/.exec(error.message)?.[1];
        const code = status === undefined ? undefined : Number(status);
        if (code === 401) return new ProviderError(PROVIDER, 'auth', 'Speechmatics refused the API key when creating a temporary key', { retryable: false, statusCode: 401 });
        if (code === 429) return new ProviderError(PROVIDER, 'rate_limit', 'the Speechmatics key endpoint is rate limiting', { statusCode: 429 });
        return new ProviderError(PROVIDER, 'server', `the Speechmatics key endpoint failed: ${detail}`, code === undefined ? {} : { statusCode: code });
      }
    }
  }
  return connectionError(error, 'the Speechmatics key endpoint could not be reached', secret);
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new ProviderError(PROVIDER, 'closed', 'the call ended before a temporary key was ready', { retryable: false }));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new ProviderError(PROVIDER, 'closed', 'the call ended before a temporary key was ready', { retryable: false }));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}
