import { describe, expect, it } from 'vitest';
import { ProviderError, ReconnectBudget, runWithReconnect } from '../src/index.js';

describe('runWithReconnect', () => {
  const policy = { maxAttempts: 2, firstDelayMs: 0, baseDelayMs: 1, maxDelayMs: 2, jitter: 0, stableAfterMs: 60_000 };

  it('retries retryable failures within the budget, then succeeds', async () => {
    let calls = 0;
    const result = await runWithReconnect(
      async () => {
        calls++;
        if (calls < 3) throw new ProviderError('x', 'connectivity', 'down');
        return 'up';
      },
      { provider: 'x', budget: new ReconnectBudget(policy), signal: new AbortController().signal },
    );
    expect(result).toBe('up');
    expect(calls).toBe(3);
  });

  it('stops at once on a non-retryable error and when the budget is spent', async () => {
    let calls = 0;
    const auth = runWithReconnect(
      () => {
        calls++;
        return Promise.reject(new ProviderError('x', 'auth', 'bad key'));
      },
      { provider: 'x', budget: new ReconnectBudget(policy), signal: new AbortController().signal },
    );
    await expect(auth).rejects.toMatchObject({ category: 'auth', message: 'bad key' });
    expect(calls).toBe(1);
    const spent = runWithReconnect(() => Promise.reject(new ProviderError('x', 'server', 'busy')), {
      provider: 'x',
      budget: new ReconnectBudget(policy),
      signal: new AbortController().signal,
      initialError: new ProviderError('x', 'connectivity', 'dropped'),
    });
    await expect(spent).rejects.toMatchObject({ category: 'server', retryable: false, message: 'busy (gave up after 2 reconnect attempts)' });
  });

  it('an aborted signal ends the loop with a closed error', async () => {
    const controller = new AbortController();
    const pending = runWithReconnect(
      () => {
        controller.abort();
        return Promise.reject(new ProviderError('x', 'connectivity', 'down'));
      },
      { provider: 'x', budget: new ReconnectBudget(policy), signal: controller.signal },
    );
    await expect(pending).rejects.toMatchObject({ category: 'closed', retryable: false });
  });
});
