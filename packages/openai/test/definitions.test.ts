import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { AdapterRegistry, ConfigError } from '@stsgate/core';
import type { AdapterKind, AdapterKinds } from '@stsgate/core';
import { startOpenAiRealtimeEmulator } from '@stsgate/testkit';
import type { OpenAiRealtimeEmulator } from '@stsgate/testkit';
import { defineOpenAiLlm, defineOpenAiRealtime, defineOpenAiTts, llmModelFromEnv, openAiRealtimeEnvSchema } from '../src/index.js';
import { EnergyTestVad, EventLog, callContext, memoryLogger } from './helpers.js';

const quiet = { logger: pino({ enabled: false }) };
const API_KEY = 'sk-test-definitions-000';

function problems(run: () => unknown): readonly string[] {
  try {
    run();
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

let emu: OpenAiRealtimeEmulator | undefined;
afterEach(async () => {
  await emu?.close();
  emu = undefined;
});

describe('defineOpenAiRealtime', () => {
  it('is the openai STS provider on AVR port 6030 and registers explicitly', () => {
    const definition = defineOpenAiRealtime();
    expect(definition).toMatchObject({ kind: 'sts', id: 'openai', defaultPort: 6030 });
    const registry = new AdapterRegistry([definition, defineOpenAiLlm(), defineOpenAiTts()]);
    expect(registry.ids('sts')).toEqual(['openai']);
    expect(registry.ids('llm')).toEqual(['openai']);
    expect(registry.ids('tts')).toEqual(['openai']);
  });

  it('defaults: mu-law 8 kHz, server VAD, transcripts, truncation, tools, DTMF', () => {
    const adapter = defineOpenAiRealtime().fromEnv({ OPENAI_API_KEY: API_KEY }, quiet);
    expect(adapter.capabilities).toEqual({
      inputSampleRates: [8000],
      outputSampleRates: [8000],
      encodings: ['mulaw'],
      serverTurnDetection: true,
      userTranscripts: true,
      agentTranscripts: true,
      truncation: true,
      toolCalls: true,
      dtmf: true,
    });
    const pcm = defineOpenAiRealtime().fromEnv({ OPENAI_API_KEY: API_KEY, OPENAI_AUDIO_FORMAT: 'PCM24' }, quiet);
    expect(pcm.capabilities).toMatchObject({ inputSampleRates: [24000], outputSampleRates: [24000], encodings: ['pcm_s16le'] });
  });

  it("OPENAI_TURN_DETECTION=none takes the gateway's VAD (vad:silero) and still ends the caller's turns itself", () => {
    const vad = new EnergyTestVad();
    const asked: string[] = [];
    const resolve = <K extends AdapterKind>(kind: K, id: string): AdapterKinds[K] => {
      asked.push(`${kind}:${id}`);
      return vad as unknown as AdapterKinds[K];
    };
    const none = defineOpenAiRealtime().fromEnv({ OPENAI_API_KEY: API_KEY, OPENAI_TURN_DETECTION: 'none' }, { ...quiet, resolve });
    expect(asked).toEqual(['vad:silero']);
    // the session decides when the caller's turn ends (with the VAD): the host needs none of its own
    expect(none.capabilities.serverTurnDetection).toBe(true);
    defineOpenAiRealtime().fromEnv({ OPENAI_API_KEY: API_KEY }, { ...quiet, resolve });
    expect(asked).toEqual(['vad:silero']); // server VAD: no VAD is built
    const found = problems(() => defineOpenAiRealtime().fromEnv({ OPENAI_API_KEY: API_KEY, OPENAI_TURN_DETECTION: 'none' }, quiet));
    expect(found.join('\n')).toContain('OPENAI_TURN_DETECTION=none');
  });

  it('lists every problem at once; empty values count as unset', () => {
    const found = problems(() =>
      defineOpenAiRealtime().fromEnv(
        {
          OPENAI_API_KEY: '  ',
          OPENAI_AUDIO_FORMAT: 'g722',
          OPENAI_TURN_DETECTION: 'magic',
          OPENAI_TURN_DETECTION_EAGERNESS: 'very',
          OPENAI_MAX_TOKENS: '5000',
          OPENAI_GREETING: 'maybe',
          OPENAI_REALTIME_URL: 'ftp://example.com',
          OPENAI_DTMF_MESSAGE: 'no placeholder',
          OPENAI_VOICE: '',
          OPENAI_MODEL: '',
          OPENAI_LANGUAGE: '',
        },
        quiet,
      ),
    );
    const keys = found.map((p) => p.split(':')[0]);
    expect(keys.sort()).toEqual(
      [
        'OPENAI_API_KEY',
        'OPENAI_AUDIO_FORMAT',
        'OPENAI_DTMF_MESSAGE',
        'OPENAI_GREETING',
        'OPENAI_MAX_TOKENS',
        'OPENAI_REALTIME_URL',
        'OPENAI_TURN_DETECTION',
        'OPENAI_TURN_DETECTION_EAGERNESS',
      ].sort(),
    );
    expect(found.join('\n')).toContain('OPENAI_API_KEY is required');
  });

  it('parses AVR values: inf tokens, language hints, booleans, the instruction variables', () => {
    const parsed = openAiRealtimeEnvSchema.parse({
      OPENAI_API_KEY: API_KEY,
      OPENAI_MAX_TOKENS: 'inf',
      OPENAI_GREETING: 'FALSE',
      OPENAI_LANGUAGE: 'auto',
      OPENAI_INSTRUCTIONS: '',
      OPENAI_URL_INSTRUCTIONS: 'http://agents.local/prompt',
    });
    expect(parsed).toMatchObject({
      OPENAI_MAX_TOKENS: 'inf',
      OPENAI_GREETING: false,
      OPENAI_MODEL: 'gpt-realtime-2',
      OPENAI_VOICE: 'alloy',
      OPENAI_AUDIO_FORMAT: 'pcmu',
      OPENAI_REALTIME_URL: 'wss://api.openai.com/v1/realtime',
      OPENAI_URL_INSTRUCTIONS: 'http://agents.local/prompt',
    });
    expect(parsed.OPENAI_INSTRUCTIONS).toBeUndefined();
  });

  it('fails at boot on a missing instructions file', () => {
    const found = problems(() =>
      defineOpenAiRealtime().fromEnv({ OPENAI_API_KEY: API_KEY, OPENAI_FILE_INSTRUCTIONS: '/nonexistent/stsgate/prompt.txt' }, quiet),
    );
    expect(found.join('\n')).toContain('prompt.txt');
  });

  it('end to end from the environment: templated instructions, no temperature (one warning), language hint', async () => {
    emu = await startOpenAiRealtimeEmulator({ apiKey: API_KEY });
    const dir = mkdtempSync(path.join(tmpdir(), 'stsgate-openai-'));
    const file = path.join(dir, 'prompt.txt');
    writeFileSync(file, 'You are the assistant of call {{uuid}} from {{from}}.');
    const { logger, lines } = memoryLogger();
    const adapter = defineOpenAiRealtime().fromEnv(
      {
        OPENAI_API_KEY: API_KEY,
        OPENAI_REALTIME_URL: emu.url,
        OPENAI_FILE_INSTRUCTIONS: file,
        OPENAI_TEMPERATURE: '0.8',
        OPENAI_LANGUAGE: 'it',
        OPENAI_TRANSCRIPTION_MODEL: 'gpt-4o-mini-transcribe',
        OPENAI_TURN_DETECTION: 'semantic_vad',
        OPENAI_TURN_DETECTION_EAGERNESS: 'high',
        OPENAI_REASONING_EFFORT: 'low',
        OPENAI_GREETING: 'false',
      },
      { logger },
    );
    expect(lines.filter((l) => l.msg.includes('OPENAI_TEMPERATURE'))).toHaveLength(1);
    const session = await adapter.connect(callContext({ logger, callId: 'uuid-42' }));
    const events = new EventLog(session);
    const connection = await emu.waitForConnection(0);
    const update = connection.clientEvents.find((e) => e['type'] === 'session.update');
    const sent = update?.['session'] as Record<string, unknown>;
    expect(sent).not.toHaveProperty('temperature');
    expect(sent).toMatchObject({
      instructions: 'You are the assistant of call uuid-42 from +15550100.',
      reasoning: { effort: 'low' },
      audio: {
        input: { transcription: { model: 'gpt-4o-mini-transcribe', language: 'it' }, turn_detection: { type: 'semantic_vad', eagerness: 'high' } },
      },
    });
    expect(connection.serverEvents.filter((e) => e.type === 'error')).toEqual([]);
    expect(connection.clientEvents.filter((e) => e['type'] === 'response.create')).toEqual([]);
    await session.close();
    await events.done;
    expect(JSON.stringify(lines)).not.toContain(API_KEY);
  });
});

describe('defineOpenAiRealtime against the emulator: turn detection defaults and the welcome message', () => {
  it('sends the documented server_vad defaults and speaks OPENAI_WELCOME_MESSAGE (templated) instead of a model greeting', async () => {
    emu = await startOpenAiRealtimeEmulator({ apiKey: API_KEY });
    const adapter = defineOpenAiRealtime().fromEnv(
      { OPENAI_API_KEY: API_KEY, OPENAI_REALTIME_URL: emu.url, OPENAI_WELCOME_MESSAGE: 'Hello {{from}}, welcome to ACME.', OPENAI_GREETING: 'false' },
      quiet,
    );
    const session = await adapter.connect(callContext());
    const events = new EventLog(session);
    const connection = await emu.waitForConnection(0);
    const create = await connection.waitForClientEvent('response.create');
    const update = connection.clientEvents.find((e) => e['type'] === 'session.update')?.['session'] as { audio: { input: { turn_detection: unknown } } };
    expect(update.audio.input.turn_detection).toEqual({
      type: 'server_vad',
      threshold: 0.5,
      prefix_padding_ms: 300,
      silence_duration_ms: 500,
      create_response: true,
      interrupt_response: true,
    });
    const response = create['response'] as { instructions: string; input: unknown[]; tool_choice: string };
    expect(response.instructions).toContain('Hello +15550100, welcome to ACME.');
    expect(response).toMatchObject({ input: [], tool_choice: 'none' });
    await connection.waitForServerEvent('response.done');
    expect(connection.clientEvents.filter((e) => e['type'] === 'response.create')).toHaveLength(1);
    expect(connection.serverEvents.filter((e) => e.type === 'error')).toEqual([]);
    await session.close();
    await events.done;
  });
});

describe('defineOpenAiLlm / defineOpenAiTts', () => {
  it('picks the LLM model: OPENAI_LLM_MODEL, else a non-realtime OPENAI_MODEL, else the default', () => {
    expect(llmModelFromEnv({ OPENAI_LLM_MODEL: 'gpt-4.1-mini', OPENAI_MODEL: 'gpt-4o' })).toBe('gpt-4.1-mini');
    expect(llmModelFromEnv({ OPENAI_MODEL: 'gpt-4o' })).toBe('gpt-4o');
    expect(llmModelFromEnv({ OPENAI_MODEL: 'gpt-realtime-2' })).toBe('gpt-4o-mini');
    expect(llmModelFromEnv({})).toBe('gpt-4o-mini');
  });

  it('needs a key unless a base URL (a compatible server) is given', () => {
    expect(problems(() => defineOpenAiLlm().fromEnv({}, quiet)).join()).toContain('OPENAI_API_KEY');
    expect(problems(() => defineOpenAiTts().fromEnv({ OPENAI_API_KEY: '' }, quiet)).join()).toContain('OPENAI_API_KEY');
    expect(defineOpenAiLlm().fromEnv({ OPENAI_BASEURL: 'http://ollama:11434/v1' }, quiet).id).toBe('openai');
    expect(problems(() => defineOpenAiTts().fromEnv({ OPENAI_API_KEY: API_KEY, OPENAI_TTS_SPEED: '9', OPENAI_BASE_URL: 'ws://x' }, quiet))).toHaveLength(2);
    const tts = defineOpenAiTts().fromEnv({ OPENAI_API_KEY: API_KEY }, quiet);
    // TTS_PROVIDER=openai alone listens where avr-tts-openai does
    expect(defineOpenAiTts().defaultPort).toBe(6011);
    expect(tts.capabilities).toEqual({ outputSampleRates: [24000], encodings: ['pcm_s16le'], streamingInput: false });
  });
});
