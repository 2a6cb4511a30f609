import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { ConfigError } from '@stsgate/core';
import { builtinRegistry, callMetadata, loadGatewayConfig, loggerOptions, resolveServeSetup } from '../src/index.js';

const silent = () => pino({ level: 'silent' });

function problemsOf(run: () => unknown): readonly string[] {
  try {
    run();
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('gateway configuration', () => {
  it('has drop-in defaults', () => {
    const setup = resolveServeSetup({}, builtinRegistry(), silent);
    expect(setup.port).toBe(6030);
    expect(setup.sts?.id).toBe('loopback');
    expect(setup.config.host).toBe('0.0.0.0');
  });

  it('honours PORT and treats empty values as unset', () => {
    expect(resolveServeSetup({ PORT: '7001', LOG_LEVEL: '' }, builtinRegistry(), silent).port).toBe(7001);
  });

  it('lists every problem in one error', () => {
    const problems = problemsOf(() =>
      resolveServeSetup(
        { PORT: 'eighty', LOG_LEVEL: 'loud', MAX_CALLS: '0', STSGATE_AUTH_TOKEN: 'short', STS_PROVIDER: 'nope' },
        builtinRegistry(),
        silent,
      ),
    );
    expect(problems).toHaveLength(5);
    expect(problems.join('\n')).toMatch(/PORT[\s\S]*LOG_LEVEL[\s\S]*STSGATE_AUTH_TOKEN[\s\S]*MAX_CALLS[\s\S]*unknown provider "nope" \(available: loopback, openai, speechmatics-flow, cascade, speechmatics, soniox\)/);
  });

  it("includes the provider's own problems", () => {
    const problems = problemsOf(() => resolveServeSetup({ PORT: '0x', VAD_THRESHOLD: 'high' }, builtinRegistry(), silent));
    expect(problems.some((p) => p.startsWith('PORT'))).toBe(true);
    expect(problems.some((p) => p.startsWith('loopback:') && p.includes('VAD_THRESHOLD'))).toBe(true);
  });

  it('keeps the query string as metadata, decoded, without the auth token', () => {
    expect(callMetadata('/?from=2000&to=5001&channel=PJSIP%2F2000-1&token=t&vip=yes')).toEqual({
      from: '2000',
      to: '5001',
      channel: 'PJSIP/2000-1',
      vip: 'yes',
    });
    expect(callMetadata('/')).toEqual({});
  });

  it('rejects a gateway config field by field', () => {
    expect(() => loadGatewayConfig({ OUTBOUND_LEAD_MS: '5' })).toThrow(/OUTBOUND_LEAD_MS/);
  });
});

describe('logging', () => {
  it('redacts secrets and never logs query strings', () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString('utf8'));
        done();
      },
    });
    const { transport: _transport, ...options } = loggerOptions('info', false);
    const logger = pino(options, sink);
    logger.info({ apiKey: 'sk-live-123', provider: { api_key: 'abc', authorization: 'Bearer xyz' } }, 'connecting');
    logger.info({ req: { method: 'GET', url: '/?token=supersecret&from=2000', id: 'r1' } }, 'request');
    const output = lines.join('');
    expect(output).not.toMatch(/sk-live-123|abc|xyz|supersecret|2000/);
    expect(output).toContain('[redacted]');
  });
});
