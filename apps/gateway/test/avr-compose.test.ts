import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import { ConfigError } from '@stsgate/core';
import { buildGateway, builtinRegistry, resolveServeSetup, type Gateway } from '../src/index.js';

// The environment blocks of AVR's own documentation (avr-infra's docker-compose-*.yml, the AVR wiki), as compose
// hands them to the container: `${AMI_URL:-http://avr-ami:6006}` resolved, `$OPENAI_API_KEY` from the operator's
// .env, list-form values with their quotes. The only addition is the variable our image for that provider bakes in
// (STS_PROVIDER, ASR_PROVIDER or LLM_PROVIDER): the block itself is unchanged.
const silent = () => pino({ level: 'silent' });
const gateways: Gateway[] = [];
afterEach(async () => {
  for (const gateway of gateways.splice(0)) await gateway.app.close();
});

async function starts(image: Record<string, string>, block: Record<string, string>): Promise<{ port: number; served: string[] }> {
  const setup = resolveServeSetup({ ...image, ...block }, builtinRegistry(), silent);
  const gateway = await buildGateway(setup.config, { logger: setup.logger, sts: setup.sts, asr: setup.asr, tts: setup.tts, llm: setup.llm, tools: setup.tools });
  gateways.push(gateway);
  await gateway.app.listen({ host: '127.0.0.1', port: 0 });
  const health = await fetch(`http://127.0.0.1:${(gateway.app.server.address() as AddressInfo).port}/health`);
  expect(health.status).toBe(200);
  return { port: setup.port, served: [setup.sts?.id, setup.asr?.id, setup.llm?.id, setup.tts?.id].filter((id) => id !== undefined) };
}

describe("AVR's documented compose environments start the gateway unchanged", () => {
  it('avr-sts-openai (the AVR wiki block)', async () => {
    const block = {
      PORT: '6030',
      OPENAI_API_KEY: 'sk-operator-key',
      OPENAI_MODEL: 'gpt-4o-realtime-preview',
      OPENAI_INSTRUCTIONS: '"You are a helpful assistant."',
      OPENAI_TEMPERATURE: '0.8',
      OPENAI_MAX_TOKENS: '100',
      AMI_URL: 'http://avr-ami:6006',
    };
    expect(await starts({ STS_PROVIDER: 'openai' }, block)).toEqual({ port: 6030, served: ['openai'] });
  });

  it('avr-sts-speechmatics: runs as the deprecated Flow provider; the Speechmatics agent says it needs an LLM', async () => {
    const block = { PORT: '6040', SPEECHMATICS_API_KEY: 'sm-operator-key' };
    expect(await starts({ STS_PROVIDER: 'speechmatics-flow' }, block)).toEqual({ port: 6040, served: ['speechmatics-flow'] });
    expect(() => resolveServeSetup({ STS_PROVIDER: 'speechmatics', ...block }, builtinRegistry(), silent)).toThrow(ConfigError);
    expect(await starts({ STS_PROVIDER: 'speechmatics' }, { ...block, OPENAI_API_KEY: 'sk-operator-key' })).toEqual({ port: 6040, served: ['speechmatics'] });
  });

  it('avr-asr-soniox, avr-llm-openai and the pipeline around them', async () => {
    const asr = { PORT: '6018', SONIOX_API_KEY: 'soniox-operator-key', SONIOX_SPEECH_RECOGNITION_MODEL: 'stt-rt-v3', SONIOX_SPEECH_RECOGNITION_LANGUAGE: 'en' };
    expect(await starts({ ASR_PROVIDER: 'soniox' }, asr)).toEqual({ port: 6018, served: ['soniox'] });
    const llm = {
      PORT: '6002',
      OPENAI_API_KEY: 'sk-operator-key',
      OPENAI_MODEL: 'gpt-3.5-turbo',
      OPENAI_MAX_TOKENS: '100',
      OPENAI_TEMPERATURE: '0.0',
      AMI_URL: 'http://avr-ami:6006',
      SYSTEM_PROMPT: '"You are a helpful assistant."',
    };
    expect(await starts({ LLM_PROVIDER: 'openai' }, llm)).toEqual({ port: 6002, served: ['openai'] });
  });

  it('avr-app starts a provider with the literal `undefined` for variables it does not have', async () => {
    const block = { PORT: '6030', OPENAI_API_KEY: 'sk-operator-key', AMI_URL: 'undefined', OPENAI_URL_INSTRUCTIONS: 'undefined', TOOLS_DIR: 'undefined' };
    expect(await starts({ STS_PROVIDER: 'openai' }, block)).toEqual({ port: 6030, served: ['openai'] });
  });
});
