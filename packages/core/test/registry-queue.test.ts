import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import pino from 'pino';
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

  it('allows only one consumer', () => {
    const queue = new AsyncQueue<number>();
    queue[Symbol.asyncIterator]();
    expect(() => queue[Symbol.asyncIterator]()).toThrow(/single consumer/);
  });
});
