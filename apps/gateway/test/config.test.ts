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
    expect(problems.join('\n')).toMatch(/PORT[\s\S]*LOG_LEVEL[\s\S]*STSGATE_AUTH_TOKEN[\s\S]*MAX_CALLS[\s\S]*unknown provider "nope" \(available: loopback, openai, xai, speechmatics-flow, cascade, speechmatics, soniox\)/);
  });

  it("includes the provider's own problems", () => {
    const problems = problemsOf(() => resolveServeSetup({ PORT: '0x', VAD_THRESHOLD: 'high' }, builtinRegistry(), silent));
    expect(problems.some((p) => p.startsWith('PORT'))).toBe(true);
    expect(problems.some((p) => p.startsWith('loopback:') && p.includes('VAD_THRESHOLD'))).toBe(true);
  });

  it('the cascade names each missing stage, and every stage problem, in one error', () => {
    const missing = problemsOf(() => resolveServeSetup({ STS_PROVIDER: 'cascade' }, builtinRegistry(), silent));
    expect(missing).toEqual([
      'cascade: ASR_PROVIDER is required: the ASR stage of STS_PROVIDER=cascade',
      'cascade: LLM_PROVIDER is required: the LLM stage of STS_PROVIDER=cascade',
      'cascade: TTS_PROVIDER is required: the TTS stage of STS_PROVIDER=cascade',
    ]);
    const stages = problemsOf(() =>
      resolveServeSetup({ STS_PROVIDER: 'cascade', ASR_PROVIDER: 'soniox', LLM_PROVIDER: 'nope', TTS_PROVIDER: 'speechmatics', CASCADE_MAX_REPLY_CHARS: '1' }, builtinRegistry(), silent),
    );
    // ASR_PROVIDER and TTS_PROVIDER also serve AVR's HTTP routes: their problems are still reported once.
    expect(stages).toEqual([
      'cascade: CASCADE_MAX_REPLY_CHARS: Too small: expected number to be >=50',
      'soniox: SONIOX_API_KEY: SONIOX_API_KEY is required',
      'LLM_PROVIDER: unknown provider "nope" (available: openai)',
      'speechmatics: SPEECHMATICS_API_KEY: SPEECHMATICS_API_KEY is required',
    ]);
  });

  it('STS_PROVIDER=speechmatics without an LLM says what to set, and why (Flow is withdrawn)', () => {
    const problems = problemsOf(() => resolveServeSetup({ STS_PROVIDER: 'speechmatics', SPEECHMATICS_API_KEY: 'sm-key' }, builtinRegistry(), silent));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^speechmatics: LLM_PROVIDER is required\. Speechmatics has withdrawn Flow.*LLM_PROVIDER=openai.*OPENAI_API_KEY.*STS_PROVIDER=speechmatics-flow/);
    // OpenAI's variables are enough: the LLM is then openai (AVR's documented Speechmatics agent), on port 6040.
    const setup = resolveServeSetup({ STS_PROVIDER: 'speechmatics', SPEECHMATICS_API_KEY: 'sm-key', OPENAI_API_KEY: 'sk-x' }, builtinRegistry(), silent);
    expect(setup.sts?.id).toBe('speechmatics');
    expect(setup.port).toBe(6040);
    expect(setup.sts?.adapter.capabilities).toMatchObject({ toolCalls: true, truncation: true, userTranscripts: true, agentTranscripts: true });
  });

  it('LLM_PROVIDER alone serves /prompt-stream on avr-llm-openai\'s port', () => {
    const setup = resolveServeSetup({ LLM_PROVIDER: 'openai', OPENAI_API_KEY: 'sk-x' }, builtinRegistry(), silent);
    expect(setup.port).toBe(6002);
    expect(setup.sts).toBeUndefined();
    expect(setup.llm?.id).toBe('openai');
    expect(setup.tools?.specs.map((tool) => tool.name)).toEqual(['avr_transfer', 'avr_hangup']);
  });

  it("avr-app's literal `undefined` (and `null`) is unset, for the gateway's variables and every provider's", () => {
    // avr-app starts provider containers with AMI_URL=${process.env.AMI_URL} and friends.
    const avr = { AMI_URL: 'undefined', PORT: 'undefined', LOG_LEVEL: 'null', STS_PROVIDER: 'undefined', TOOLS_DIR: 'undefined', VAD_THRESHOLD: 'undefined' };
    const loopback = resolveServeSetup(avr, builtinRegistry(), silent);
    expect(loopback.sts?.id).toBe('loopback');
    expect(loopback.port).toBe(6030);
    const openai = resolveServeSetup({ ...avr, STS_PROVIDER: 'openai', OPENAI_API_KEY: 'sk-x', OPENAI_INSTRUCTIONS: 'undefined', OPENAI_MODEL: 'undefined' }, builtinRegistry(), silent);
    expect(openai.sts?.id).toBe('openai');
    expect(openai.tools?.specs.map((tool) => tool.name)).toEqual(['avr_transfer', 'avr_hangup']);
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

  it('per-call budgets and HTTP timeouts: defaults, overrides, and a rate below real time refused', () => {
    const defaults = loadGatewayConfig({});
    expect(defaults.callLimits).toEqual({ idleTimeoutMs: 120_000, maxMessagesPerSecond: 200, maxProtocolErrors: 10, maxDtmfPerSecond: 10 });
    expect([defaults.httpBodyTimeoutMs, defaults.httpStreamIdleTimeoutMs]).toEqual([10_000, 300_000]);
    const set = loadGatewayConfig({ CALL_IDLE_TIMEOUT_MS: '60000', CALL_MAX_DTMF_PER_SECOND: '4', HTTP_BODY_TIMEOUT_MS: '2000' });
    expect(set.callLimits.idleTimeoutMs).toBe(60_000);
    expect(set.callLimits.maxDtmfPerSecond).toBe(4);
    expect(set.httpBodyTimeoutMs).toBe(2000);
    // AVR Core sends 50 audio messages a second: a budget below that would cut every call.
    expect(() => loadGatewayConfig({ CALL_MAX_MESSAGES_PER_SECOND: '50' })).toThrow('CALL_MAX_MESSAGES_PER_SECOND="50" is not a whole number from 60 to 100000');
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

describe('gateway configuration errors', () => {
  it('name the value the user typed and what was expected', () => {
    const problems = problemsOf(() =>
      loadGatewayConfig({
        PORT: 'abc',
        MAX_CALLS: '0',
        WS_MAX_PAYLOAD_BYTES: '1k',
        EARLY_AUDIO_BUFFER_MS: '-1',
        OUTBOUND_LEAD_MS: '1.5',
        OUTBOUND_START_BUFFER_MS: 'soon',
        PROVIDER_CONNECT_TIMEOUT_MS: '50',
        SHUTDOWN_GRACE_MS: '30s',
        LOG_LEVEL: 'loud',
        LOG_PRETTY: 'maybe',
      }),
    );
    expect(problems).toEqual([
      'PORT="abc" is not a port number (1-65535)',
      'LOG_LEVEL="loud" is not a log level (fatal, error, warn, info, debug, trace, silent)',
      'MAX_CALLS="0" is not a whole number from 1 to 100000',
      'WS_MAX_PAYLOAD_BYTES="1k" is not a size in bytes from 1024 to 16777216',
      'EARLY_AUDIO_BUFFER_MS="-1" is not a time in milliseconds from 0 to 60000',
      'OUTBOUND_LEAD_MS="1.5" is not a time in milliseconds from 20 to 5000',
      'OUTBOUND_START_BUFFER_MS="soon" is not a time in milliseconds from 0 to 1000',
      'PROVIDER_CONNECT_TIMEOUT_MS="50" is not a time in milliseconds from 100 to 120000',
      'SHUTDOWN_GRACE_MS="30s" is not a time in milliseconds from 0 to 3600000',
      'LOG_PRETTY="maybe" is not a boolean (true, false, 1, 0, yes, no)',
    ]);
  });

  it('never echo the auth token, and accept what they accepted before', () => {
    expect(problemsOf(() => loadGatewayConfig({ STSGATE_AUTH_TOKEN: 'short-secret' }))).toEqual([
      'STSGATE_AUTH_TOKEN must be at least 16 characters',
    ]);
    const config = loadGatewayConfig({ PORT: ' 7001 ', MAX_CALLS: '20', LOG_PRETTY: 'yes', SHUTDOWN_GRACE_MS: '0', LOG_LEVEL: 'debug' });
    expect(config).toMatchObject({ port: 7001, maxCalls: 20, logPretty: true, shutdownGraceMs: 0, logLevel: 'debug' });
  });
});
