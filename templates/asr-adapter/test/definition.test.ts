// The registry definition: what a gateway builds from the environment (STSGATE_ADAPTERS, ASR_PROVIDER=example-asr).
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '@stsgate/core';
import { adapters } from '../src/index.js';

const context = { logger: pino({ level: 'silent' }) };
const definition = adapters[0];

describe('the example-asr definition', () => {
  it('is one ASR definition whose adapter has its id and declares what it does', () => {
    expect(adapters).toHaveLength(1);
    expect(definition).toMatchObject({ kind: 'asr', id: 'example-asr' });
    const adapter = definition?.fromEnv({ EXAMPLE_ASR_API_KEY: 'k-123456' }, context);
    expect(adapter?.id).toBe('example-asr');
    expect(adapter?.capabilities).toMatchObject({ inputSampleRates: [8000], endpointing: true, finalize: true });
  });

  it('lists every problem at once, naming the variables and never the values', () => {
    const error = (() => {
      try {
        definition?.fromEnv({ EXAMPLE_ASR_URL: 'https://secret-host.example', EXAMPLE_ASR_API_KEY: '' }, context);
      } catch (caught) {
        return caught;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems;
    expect(problems).toHaveLength(2);
    expect(problems.join('\n')).toContain('EXAMPLE_ASR_API_KEY is required');
    expect(problems.join('\n')).toContain('EXAMPLE_ASR_URL');
    expect(problems.join('\n')).not.toContain('secret-host');
  });
});
