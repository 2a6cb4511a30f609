import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import {
  FIXTURE_TEXT,
  concatPcm,
  fixturePath,
  readWavAs8k,
  silence,
  simulateCall,
  startOpenAiRestEmulator,
  startSonioxSttEmulator,
  startSonioxTtsEmulator,
  type OpenAiRestEmulatorOptions,
} from '@stsgate/testkit';
import { buildGateway, builtinRegistry, resolveServeSetup } from '../src/index.js';

const KEY = 'cascade-e2e-key-0123456789';
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const fixture = (name: 'greeting' | 'short' | 'question') => readWavAs8k(fixturePath(name));

async function sonioxStack(chat: OpenAiRestEmulatorOptions['chat'], env: Record<string, string> = {}) {
  const stt = await startSonioxSttEmulator({ apiKey: KEY });
  cleanups.push(() => stt.close());
  const tts = await startSonioxTtsEmulator({ apiKey: KEY });
  cleanups.push(() => tts.close());
  const rest = await startOpenAiRestEmulator({ apiKey: KEY, ...(chat === undefined ? {} : { chat }) });
  cleanups.push(() => rest.close());
  const setup = resolveServeSetup(
    {
      STS_PROVIDER: 'soniox',
      SONIOX_API_KEY: KEY,
      SONIOX_WEBSOCKET_URL: stt.url,
      SONIOX_TTS_URL: tts.url,
      SONIOX_TTS_WEBSOCKET_URL: tts.wsUrl,
      LLM_PROVIDER: 'openai',
      OPENAI_API_KEY: KEY,
      OPENAI_BASE_URL: rest.baseUrl,
      LOG_LEVEL: process.env.E2E_LOG ?? 'silent',
      ...env,
    },
    builtinRegistry(),
    () => pino({ level: process.env.E2E_LOG ?? 'silent' }),
  );
  const gateway = await buildGateway(setup.config, { sts: setup.sts, logger: setup.logger, tools: setup.tools });
  await gateway.app.listen({ host: '127.0.0.1', port: 0 });
  cleanups.push(() => gateway.app.close());
  const port = (gateway.app.server.address() as AddressInfo).port;
  return { stt, tts, rest, gateway, url: `ws://127.0.0.1:${port}/?from=2001&to=5001` };
}

describe('cascade STS, end to end', () => {
  it('soniox preset: a three-turn conversation', async () => {
    const { url, rest } = await sonioxStack(undefined, { SONIOX_GREETING: 'false' });
    const input = concatPcm(silence(300), fixture('greeting'), silence(3500), fixture('question'), silence(3500), fixture('short'), silence(500));
    const report = await simulateCall({ url, input, tailMs: 4000 });
    console.log(JSON.stringify({ b: report.bargeIns, l: report.responseLatencies, s: report.callerSpeech }));
    expect(report.errors).toEqual([]);
    expect(report.transcripts.filter((t) => t.role === 'user').map((t) => t.text)).toEqual([
      FIXTURE_TEXT['greeting.wav'],
      FIXTURE_TEXT['question.wav'],
      FIXTURE_TEXT['short.wav'],
    ]);
    expect(rest.requests.filter((r) => r.route === 'chat')).toHaveLength(3);
  });
});
