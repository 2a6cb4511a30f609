import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import pino from 'pino';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { AdapterRegistry, AsyncQueue, ConfigError, defineAdapter, type StsAdapter } from '../src/index.js';

const fakeSts = (id: string): StsAdapter => ({
  id,
  capabilities: {
    inputSampleRates: [8000],
    outputSampleRates: [8000],
    encodings: ['pcm_s16le'],
    serverTurnDetection: false,
    userTranscripts: false,
    agentTranscripts: false,
    truncation: false,
    toolCalls: false,
    dtmf: false,
  },
  connect: () => Promise.reject(new Error('not used')),
});

describe('AdapterRegistry', () => {
  const definition = defineAdapter({
    kind: 'sts',
    id: 'demo',
    description: 'demo',
    defaultPort: 6099,
    envSchema: z.object({ DEMO_KEY: z.string().min(1), DEMO_RATE: z.coerce.number().int().default(8000) }),
    create: (config) => fakeSts(`demo-${config.DEMO_RATE}`),
  });
  const logger = pino({ level: 'silent' });

  it('looks adapters up by kind and id', () => {
    const registry = new AdapterRegistry([definition]);
    expect(registry.get('sts', 'demo')).toBe(definition);
    expect(registry.get('asr', 'demo')).toBeUndefined();
    expect(registry.ids('sts')).toEqual(['demo']);
  });

  it('refuses duplicates', () => {
    expect(() => new AdapterRegistry([definition, definition])).toThrow(/twice/);
  });

  it('parses the adapter env and lists every problem at once', () => {
    expect(definition.fromEnv({ DEMO_KEY: 'k', DEMO_RATE: '16000' }, { logger }).id).toBe('demo-16000');
    try {
      definition.fromEnv({ DEMO_RATE: 'fast' }, { logger });
      throw new Error('expected ConfigError');
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).problems).toHaveLength(2);
      expect((error as ConfigError).message).toMatch(/DEMO_KEY[\s\S]*DEMO_RATE/);
    }
  });
});

/** V8's full garbage collection: `gc` exists in contexts created after --expose-gc is set. */
function collectAllGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

describe('AsyncQueue', () => {
  it('delivers pushed items in order, then ends', async () => {
    const queue = new AsyncQueue<number>();
    queue.push(1);
    queue.push(2);
    setTimeout(() => {
      queue.push(3);
      queue.end();
      queue.push(4);
    }, 5);
    const seen = [];
    for await (const item of queue) seen.push(item);
    expect(seen).toEqual([1, 2, 3]);
  });

  it('propagates failure to the consumer', async () => {
    const queue = new AsyncQueue<number>();
    setTimeout(() => queue.fail(new Error('boom')), 5);
    await expect(async () => {
      for await (const _ of queue) void _;
    }).rejects.toThrow('boom');
  });

  it('keeps the order across many pushes and takes, drained or not in between', async () => {
    const queue = new AsyncQueue<number>();
    const iterator = queue[Symbol.asyncIterator]();
    const seen: number[] = [];
    let next = 0;
    // Bursts of 0..2999 items, each taken only partly before the next burst: the queue is drained at times, and
    // holds more than a thousand taken slots at others.
    for (const [burst, take] of [[3, 3], [2000, 1500], [1, 400], [2999, 1000], [0, 2100]] as const) {
      for (let i = 0; i < burst; i++) queue.push(next++);
      for (let i = 0; i < take; i++) seen.push((await iterator.next()).value as number);
    }
    expect(seen).toEqual(Array.from({ length: next }, (_, i) => i));
    expect(queue.size).toBe(0);
  });

  it('holds no reference to an item the consumer has taken', async () => {
    const queue = new AsyncQueue<{ samples: Int16Array }>();
    const iterator = queue[Symbol.asyncIterator]();
    const taken: WeakRef<object>[] = [];
    const pushAndTake = async (count: number, leave: number) => {
      for (let i = 0; i < count; i++) queue.push({ samples: new Int16Array(800) });
      for (let i = 0; i < count - leave; i++) taken.push(new WeakRef((await iterator.next()).value as object));
    };
    // Taken one by one as they come, then from a backlog that is never drained.
    for (let i = 0; i < 5; i++) await pushAndTake(1, 0);
    await pushAndTake(10, 2);
    // A WeakRef keeps its target until the job that made it ends.
    await new Promise((resolve) => setImmediate(resolve));
    collectAllGarbage();
    expect(taken.filter((ref) => ref.deref() !== undefined)).toHaveLength(0);
    expect(queue.size).toBe(2);
  });

  it('allows only one consumer', () => {
    const queue = new AsyncQueue<number>();
    queue[Symbol.asyncIterator]();
    expect(() => queue[Symbol.asyncIterator]()).toThrow(/single consumer/);
  });
});
