import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import { ConfigError, ProviderError, type VadAdapter } from '@stsgate/core';
import { memoryLogger } from '@stsgate/testkit';
import { builtinRegistry, gatewayConfig, resolveServeSetup, serve, type Gateway } from '../src/index.js';
import { ScriptedSts } from './scripted-sts.js';

// `stsgate serve` loads the VADs' models before it listens: the first call does not wait for them, and a model that
// cannot load stops the start-up with one clear line instead of failing every call.
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const OPENAI = { STS_PROVIDER: 'openai', OPENAI_API_KEY: 'sk-test-prepare', HOST: '127.0.0.1' };

function fakeVad(id: string, prepare: () => Promise<void>): VadAdapter {
  return {
    id,
    capabilities: { inputSampleRates: [8000] },
    open: () => Promise.reject(new Error('not used')),
    prepare,
  };
}

describe('serve() prepares the VADs before it listens', () => {
  it('resolveServeSetup lists the VADs the chosen providers use, and only those', () => {
    const registry = builtinRegistry();
    const silent = () => pino({ level: 'silent' });
    expect(resolveServeSetup(OPENAI, registry, silent).vads?.map((vad) => vad.id)).toEqual([]);
    expect(resolveServeSetup({ ...OPENAI, OPENAI_TURN_DETECTION: 'none' }, registry, silent).vads?.map((vad) => vad.id)).toEqual(['silero']);
    const cascade = { STS_PROVIDER: 'cascade', ASR_PROVIDER: 'soniox', LLM_PROVIDER: 'openai', TTS_PROVIDER: 'soniox', SONIOX_API_KEY: 'k', OPENAI_API_KEY: 'k' };
    expect(resolveServeSetup(cascade, registry, silent).vads?.map((vad) => vad.id)).toEqual(['silero']);
  });

  it("loads Silero's model before the gateway listens (OPENAI_TURN_DETECTION=none)", async () => {
    const { logger, lines } = memoryLogger('debug');
    const setup = resolveServeSetup({ ...OPENAI, OPENAI_TURN_DETECTION: 'none' }, builtinRegistry(), () => logger);
    const gateway: Gateway = await serve({ ...setup, port: 0 });
    cleanups.push(() => gateway.app.close());
    const messages = lines.map((line) => line.msg);
    const loaded = messages.indexOf('silero vad model loaded');
    expect(loaded).toBeGreaterThanOrEqual(0);
    expect(loaded).toBeLessThan(messages.findIndex((msg) => msg.startsWith('stsgate listening')));
  });

  it('a VAD that cannot prepare stops the start-up with a ConfigError naming it; nothing listens', async () => {
    const calls: string[] = [];
    const broken = fakeVad('broken', () => {
      calls.push('broken');
      return Promise.reject(new ProviderError('broken', 'unknown', 'failed to load the model', { cause: new Error('ENOENT: model.onnx') }));
    });
    const fine = fakeVad('fine', () => {
      calls.push('fine');
      return Promise.resolve();
    });
    const sts = new ScriptedSts();
    const signalListeners = process.listenerCount('SIGTERM');
    const start = serve({
      config: gatewayConfig({ host: '127.0.0.1' }),
      port: 0,
      sts: { id: 'scripted', adapter: sts },
      logger: pino({ level: 'silent' }),
      asr: undefined,
      llm: undefined,
      tts: undefined,
      tools: undefined,
      vads: [fine, broken],
    });
    const error = await start.then(
      (gateway) => {
        cleanups.push(() => gateway.app.close());
        return undefined;
      },
      (reason: unknown) => reason,
    );
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual(['vad:broken: failed to load the model: ENOENT: model.onnx']);
    expect(calls.sort()).toEqual(['broken', 'fine']);
    expect(process.listenerCount('SIGTERM')).toBe(signalListeners);
  });
});
