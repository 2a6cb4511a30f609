import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import pino from 'pino';
import { AdapterRegistry, AdapterResolver, ConfigError, defineAdapter, type AdapterDefinition, type LlmAdapter } from '../src/index.js';

const logger = pino({ level: 'silent' });

const llm = (id: string): LlmAdapter => ({ id, capabilities: { streaming: true, toolCalls: false }, chat: async function* () {} });

function llmDefinition(id: string, built: string[]): AdapterDefinition<'llm'> {
  return defineAdapter({
    kind: 'llm',
    id,
    description: id,
    envSchema: z.object({ KEY: z.string({ error: 'KEY is required' }) }),
    create: () => {
      built.push(id);
      return llm(id);
    },
  });
}

describe('AdapterResolver', () => {
  it('builds each adapter once, for the host and for composite adapters alike', () => {
    const built: string[] = [];
    const composite: AdapterDefinition<'llm'> = {
      kind: 'llm',
      id: 'pair',
      description: 'uses "one" twice',
      fromEnv: (_env, context) => {
        const a = context.resolve?.('llm', 'one');
        const b = context.resolve?.('llm', 'one');
        expect(a).toBe(b);
        return llm('pair');
      },
    };
    const resolver = new AdapterResolver(new AdapterRegistry([llmDefinition('one', built), composite]), { KEY: 'k' }, { logger });
    resolver.resolve('llm', 'pair');
    const direct = resolver.resolve('llm', 'one');
    expect(direct.id).toBe('one');
    expect(built).toEqual(['one']);
  });

  it('scopes and remembers configuration problems, and words an unknown id as the host does', () => {
    const resolver = new AdapterResolver(new AdapterRegistry([llmDefinition('one', [])]), {}, { logger });
    const problems = (run: () => unknown) => {
      try {
        run();
      } catch (error) {
        if (error instanceof ConfigError) return { problems: error.problems, scoped: error.scoped };
      }
      throw new Error('expected a ConfigError');
    };
    expect(problems(() => resolver.resolve('llm', 'one'))).toEqual({ problems: ['one: KEY: KEY is required'], scoped: true });
    expect(problems(() => resolver.resolve('llm', 'one'))).toEqual({ problems: ['one: KEY: KEY is required'], scoped: true });
    expect(problems(() => resolver.resolve('tts', 'x'))).toEqual({ problems: ['TTS_PROVIDER: unknown provider "x" (available: none)'], scoped: true });
  });

  it('refuses an adapter that depends on itself', () => {
    const loop: AdapterDefinition<'llm'> = { kind: 'llm', id: 'loop', description: 'loop', fromEnv: (_env, context) => context.resolve?.('llm', 'loop') ?? llm('x') };
    const resolver = new AdapterResolver(new AdapterRegistry([loop]), {}, { logger });
    expect(() => resolver.resolve('llm', 'loop')).toThrow(/depends on itself/);
  });
});
