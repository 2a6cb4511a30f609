import { describe, expect, it } from 'vitest';
import {
  DEFAULT_RECONNECT_POLICY,
  ProviderError,
  ReconnectBudget,
  categoryForStatus,
  parseRetryAfter,
  providerErrorFromStatus,
  toProviderError,
} from '../src/index.js';

describe('ProviderError', () => {
  it('maps HTTP statuses to categories and retryability', () => {
    expect(categoryForStatus(401)).toBe('auth');
    expect(categoryForStatus(403)).toBe('permission');
    expect(categoryForStatus(429)).toBe('rate_limit');
    expect(categoryForStatus(400)).toBe('invalid_request');
    expect(categoryForStatus(503)).toBe('server');
    expect(providerErrorFromStatus('x', 401, 'bad key').retryable).toBe(false);
    expect(providerErrorFromStatus('x', 429, 'slow down').retryable).toBe(true);
    expect(providerErrorFromStatus('x', 500, 'oops').retryable).toBe(true);
    expect(new ProviderError('x', 'server', 'no', { retryable: false }).retryable).toBe(false);
  });

  it('classifies socket errors', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    expect(toProviderError('x', refused)).toMatchObject({ category: 'connectivity', retryable: true });
    const abort = Object.assign(new Error('aborted'), { name: 'TimeoutError' });
    expect(toProviderError('x', abort)).toMatchObject({ category: 'timeout', retryable: true });
    const kept = new ProviderError('x', 'auth', 'no');
    expect(toProviderError('x', kept)).toBe(kept);
  });
});

describe('parseRetryAfter', () => {
  it('reads seconds or an HTTP date, and ignores garbage', () => {
    expect(parseRetryAfter('2')).toBe(2000);
    expect(parseRetryAfter('0.5')).toBe(500);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4_000)).toBe(6000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(' ')).toBeUndefined();
    expect(parseRetryAfter(undefined)).toBeUndefined();
  });
});

describe('ReconnectBudget', () => {
  const dropped = () => new ProviderError('x', 'closed', 'socket closed');

  it('retries at once first, then backs off exponentially up to the cap, then gives up', () => {
    let now = 0;
    const budget = new ReconnectBudget({ ...DEFAULT_RECONNECT_POLICY, jitter: 0, maxAttempts: 5 }, () => now);
    const delays = [];
    for (let i = 0; i < 5; i++) {
      const decision = budget.next(dropped());
      if (!decision.retry) throw new Error('expected retry');
      delays.push(decision.delayMs);
      now += 10;
    }
    expect(delays).toEqual([0, 250, 500, 1000, 2000]);
    expect(budget.next(dropped())).toMatchObject({ retry: false });
  });

  it('caps delays at maxDelayMs', () => {
    const budget = new ReconnectBudget({ ...DEFAULT_RECONNECT_POLICY, jitter: 0, maxAttempts: 20 });
    let last = 0;
    for (let i = 0; i < 20; i++) {
      const decision = budget.next(dropped());
      if (decision.retry) last = decision.delayMs;
    }
    expect(last).toBe(DEFAULT_RECONNECT_POLICY.maxDelayMs);
  });

  it('applies jitter within the configured fraction', () => {
    const low = new ReconnectBudget({ ...DEFAULT_RECONNECT_POLICY, jitter: 0.5 }, Date.now, () => 1);
    const high = new ReconnectBudget({ ...DEFAULT_RECONNECT_POLICY, jitter: 0.5 }, Date.now, () => 0);
    low.next(dropped());
    high.next(dropped());
    expect(low.next(dropped())).toMatchObject({ delayMs: 125 });
    expect(high.next(dropped())).toMatchObject({ delayMs: 250 });
  });

  it('never retries non-retryable errors', () => {
    const budget = new ReconnectBudget();
    expect(budget.next(new ProviderError('x', 'auth', 'bad key'))).toMatchObject({ retry: false });
  });

  it('honours a server retry-after hint', () => {
    const budget = new ReconnectBudget({ ...DEFAULT_RECONNECT_POLICY, jitter: 0 });
    expect(budget.next(new ProviderError('x', 'rate_limit', 'slow', { retryAfterMs: 7000 }))).toMatchObject({ delayMs: 7000 });
  });

  it('never waits less than the hint: jitter only adds to it', () => {
    for (const random of [0, 0.5, 0.99]) {
      const budget = new ReconnectBudget({ ...DEFAULT_RECONNECT_POLICY, jitter: 0.3 }, Date.now, () => random);
      const decision = budget.next(new ProviderError('x', 'rate_limit', 'slow', { retryAfterMs: 5000 }));
      if (!decision.retry) throw new Error('expected a retry');
      expect(decision.delayMs).toBe(Math.round(5000 * (1 + 0.3 * random)));
    }
  });

  it('resets the budget after a connection stayed up long enough', () => {
    let now = 0;
    const budget = new ReconnectBudget({ ...DEFAULT_RECONNECT_POLICY, maxAttempts: 2, jitter: 0 }, () => now);
    budget.next(dropped());
    budget.markConnected();
    now += 1000; // short-lived: budget keeps counting
    expect(budget.next(dropped())).toMatchObject({ retry: true, attempt: 2 });
    budget.markConnected();
    now += DEFAULT_RECONNECT_POLICY.stableAfterMs; // stable: fresh budget
    expect(budget.next(dropped())).toMatchObject({ retry: true, attempt: 1, delayMs: 0 });
    expect(budget.next(dropped())).toMatchObject({ retry: true, attempt: 2 });
    expect(budget.next(dropped())).toMatchObject({ retry: false });
  });
});
