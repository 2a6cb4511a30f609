import { describe, expect, it } from 'vitest';
import { memoryLogger } from '@stsgate/testkit';
import { PeerWarnings, RateBudget } from '@stsgate/core';

describe('RateBudget', () => {
  it('lets a burst through, then the sustained rate, on its own clock', () => {
    let now = 0;
    const budget = new RateBudget(10, 20, () => now);
    const taken = () => Array.from({ length: 100 }, () => budget.take()).filter(Boolean).length;
    expect(taken()).toBe(20);
    now += 1000;
    expect(taken()).toBe(10);
    now += 50;
    expect(budget.take()).toBe(false); // half a token
    now += 50;
    expect(budget.take()).toBe(true);
    now += 60_000; // refills up to the burst, no further
    expect(taken()).toBe(20);
  });
});

describe('PeerWarnings', () => {
  it('logs 5 lines per 10 s, then counts; the count goes out with the next line and on flush', () => {
    let now = 0;
    const { logger, lines } = memoryLogger('info');
    const warnings = new PeerWarnings(() => logger, 5, 10_000, () => now);
    for (let i = 0; i < 1000; i++) warnings.warn({ i }, 'bad message');
    expect(lines.map((l) => l.i)).toEqual([0, 1, 2, 3, 4]);
    now += 2000; // one line's worth of budget back
    warnings.warn({ i: 'next' }, 'bad message');
    expect(lines.at(-1)).toMatchObject({ i: 'next', suppressedSinceLastWarning: 995 });
    warnings.warn({}, 'bad message');
    warnings.flush();
    expect(lines.at(-1)).toMatchObject({ msg: 'further warnings from this connection were not logged', suppressedWarnings: 1 });
    warnings.flush();
    expect(lines).toHaveLength(7);
  });
});
