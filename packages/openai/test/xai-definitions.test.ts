import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { AdapterRegistry, ConfigError } from '@stsgate/core';
import type { AdapterKind, AdapterKinds, Env, StsAdapter } from '@stsgate/core';
import { concatPcm, silence, startXaiRealtimeEmulator, whiteNoise } from '@stsgate/testkit';
import type { OpenAiRealtimeEmulator, RealtimeEmulatorConnection } from '@stsgate/testkit';
import { defineOpenAiRealtime, defineXaiRealtime, xaiRealtimeEnvSchema } from '../src/index.js';
import { EnergyTestVad, EventLog, callContext, memoryLogger, speak } from './helpers.js';

// `STS_PROVIDER=xai` as AVR's avr-sts-xai configures it: its XAI_* names, defaults and port.
const quiet = { logger: pino({ enabled: false }) };
const API_KEY = 'xai-test-definitions-0001';

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

/** Connects a session built from `env` (plus the emulator's URL) and returns what the emulator received. */
async function connectWith(env: Env): Promise<{ connection: RealtimeEmulatorConnection; update: Record<string, unknown>; adapter: StsAdapter }> {
  emu = await startXaiRealtimeEmulator({ apiKey: API_KEY, script: { greeting: { transcript: 'Hi.', audioMs: 300 } } });
  const adapter = defineXaiRealtime().fromEnv({ XAI_API_KEY: API_KEY, XAI_REALTIME_URL: emu.url, ...env }, quiet);
  const session = await adapter.connect(callContext());
  const connection = emu.connections[0];
  if (connection === undefined) throw new Error('no connection');
  await session.close();
  const update = connection.clientEvents.find((event) => event['type'] === 'session.update');
  if (update === undefined) throw new Error('no session.update');
  return { connection, update: update['session'] as Record<string, unknown>, adapter };
}

describe('defineXaiRealtime', () => {
  it('is the xai STS provider on avr-sts-xai port 6041, next to openai', () => {
    const definition = defineXaiRealtime();
    expect(definition).toMatchObject({ kind: 'sts', id: 'xai', defaultPort: 6041 });
    expect(new AdapterRegistry([defineOpenAiRealtime(), definition]).ids('sts')).toEqual(['openai', 'xai']);
  });

  it('defaults: model grok-voice-latest, voice eve, server VAD as xAI defaults it, mu-law 8 kHz, truncation', async () => {
    const { connection, update, adapter } = await connectWith({});
    expect(adapter.id).toBe('xai');
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
    expect(connection.model).toBe('grok-voice-latest');
    expect(connection.query['model']).toBe('grok-voice-latest');
    expect(connection.headers.authorization).toBe(`Bearer ${API_KEY}`);
    // xAI's flat session, and only what avr-sts-xai sets: no tuning unless configured, no transcription config
    expect(update).toEqual({
      instructions: expect.stringContaining('phone call') as unknown,
      voice: 'eve',
      turn_detection: { type: 'server_vad' },
      audio: { input: { format: { type: 'audio/pcmu' } }, output: { format: { type: 'audio/pcmu' } } },
    });
    expect(connection.xaiSession?.turn_detection).toMatchObject({ type: 'server_vad', threshold: 0.85, prefix_padding_ms: 333 });
  });

  it("reads avr-sts-xai's variables: model, voice (any case), language hint, VAD tuning, built-in tools, instructions", async () => {
    const { connection, update } = await connectWith({
      XAI_MODEL: 'grok-voice-think-fast-1.0',
      XAI_VOICE: 'Rex',
      XAI_LANGUAGE: 'it',
      XAI_TURN_DETECTION: 'SERVER_VAD',
      XAI_TURN_DETECTION_THRESHOLD: '0.6',
      XAI_TURN_DETECTION_SILENCE_MS: '700',
      XAI_TURN_DETECTION_PREFIX_PADDING_MS: '250',
      XAI_BUILTIN_TOOLS: 'web_search, x_search,file_search',
      XAI_COLLECTION_IDS: 'col-1, col-2',
      XAI_INSTRUCTIONS: 'You answer calls for ACME.',
      XAI_AUDIO_FORMAT: 'pcm24',
    });
    expect(connection.model).toBe('grok-voice-think-fast-1.0');
    expect(update).toEqual({
      instructions: 'You answer calls for ACME.',
      voice: 'rex',
      turn_detection: { type: 'server_vad', threshold: 0.6, silence_duration_ms: 700, prefix_padding_ms: 250 },
      audio: {
        input: { format: { type: 'audio/pcm', rate: 24000 }, transcription: { language_hint: 'it' } },
        output: { format: { type: 'audio/pcm', rate: 24000 } },
      },
      tools: [{ type: 'web_search' }, { type: 'x_search' }, { type: 'file_search', vector_store_ids: ['col-1', 'col-2'], max_num_results: 10 }],
    });
    expect(connection.xaiSession).toMatchObject({ voice: 'rex', audio: { input: { transcription: { language_hint: 'it' } } } });
  });

  it('XAI_FILE_INSTRUCTIONS and XAI_LANGUAGE=auto (no hint), as avr-app writes them', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'stsgate-xai-'));
    const file = path.join(dir, 'prompt.txt');
    writeFileSync(file, 'Prompt from a file for {{from}}.');
    const { update } = await connectWith({ XAI_FILE_INSTRUCTIONS: file, XAI_LANGUAGE: 'auto', XAI_VOICE: 'undefined' });
    expect(update['instructions']).toBe('Prompt from a file for +15550100.');
    expect(update['voice']).toBe('eve');
    expect(update['audio']).toEqual({ input: { format: { type: 'audio/pcmu' } }, output: { format: { type: 'audio/pcmu' } } });
  });

  it('XAI_WELCOME_MESSAGE is spoken by xAI itself (force_message), never as a response.create', async () => {
    emu = await startXaiRealtimeEmulator({ apiKey: API_KEY });
    const adapter = defineXaiRealtime().fromEnv({ XAI_API_KEY: API_KEY, XAI_REALTIME_URL: emu.url, XAI_WELCOME_MESSAGE: 'Welcome to ACME, caller {{from}}.' }, quiet);
    const { logger, lines } = memoryLogger();
    const session = await adapter.connect(callContext({ logger }));
    const events = new EventLog(session);
    const transcript = await events.waitFor((event) => event.type === 'transcript' && event.role === 'agent');
    await session.close();
    expect(transcript).toMatchObject({ text: 'Welcome to ACME, caller +15550100.', final: true });
    const connection = emu.connections[0];
    const sent = connection?.clientEvents.map((event) => event['type']) ?? [];
    expect(sent).not.toContain('response.create');
    expect(connection?.clientEvents.find((event) => event['type'] === 'conversation.item.create')?.['item']).toEqual({
      type: 'force_message',
      role: 'assistant',
      interruptible: false, // as avr-sts-xai sends it
      content: [{ type: 'output_text', text: 'Welcome to ACME, caller +15550100.' }],
    });
    expect(connection?.responses.map((response) => response.trigger)).toEqual(['force_message']);
    expect(lines.some((line) => line.level >= 40)).toBe(false); // spoken as written: no "not verbatim" warning
  });

  it("XAI_TURN_DETECTION=none takes the gateway's VAD and sends turn_detection {type: null}", async () => {
    const vad = new EnergyTestVad();
    const asked: string[] = [];
    const resolve = <K extends AdapterKind>(kind: K, id: string): AdapterKinds[K] => {
      asked.push(`${kind}:${id}`);
      return vad as unknown as AdapterKinds[K];
    };
    emu = await startXaiRealtimeEmulator({ apiKey: API_KEY });
    const adapter = defineXaiRealtime().fromEnv({ XAI_API_KEY: API_KEY, XAI_REALTIME_URL: emu.url, XAI_TURN_DETECTION: 'none', XAI_GREETING: 'false' }, { ...quiet, resolve });
    expect(asked).toEqual(['vad:silero']);
    const session = await adapter.connect(callContext());
    await session.close();
    expect(emu.connections[0]?.xaiSession?.turn_detection).toEqual({ type: null });
    const found = problems(() => defineXaiRealtime().fromEnv({ XAI_API_KEY: API_KEY, XAI_TURN_DETECTION: 'none' }, quiet));
    expect(found.join('\n')).toContain('XAI_TURN_DETECTION=none');
  });

  it('the welcome message plays whole: caller audio while xAI speaks it neither interrupts it nor starts a turn', async () => {
    // 100 ms of audio every 100 ms: the message is still playing when the caller's audio is in.
    emu = await startXaiRealtimeEmulator({ apiKey: API_KEY, timing: { audioChunkMs: 100, chunkIntervalMs: 100 } });
    const text = 'This call is recorded for quality. Welcome to ACME.';
    const adapter = defineXaiRealtime().fromEnv({ XAI_API_KEY: API_KEY, XAI_REALTIME_URL: emu.url, XAI_WELCOME_MESSAGE: text }, quiet);
    const session = await adapter.connect(callContext());
    const events = new EventLog(session);
    await events.waitFor((event) => event.type === 'audio');
    speak(session, concatPcm(whiteNoise(600, 8000), silence(800)));
    const connection = emu.connections[0];
    if (connection === undefined) throw new Error('no connection');
    await emu.waitFor(() => connection.inputAudioMs >= 1400);
    expect(connection.activeResponse?.trigger).toBe('force_message'); // the caller's audio arrived while it played
    const transcript = await events.waitFor((event) => event.type === 'transcript' && event.role === 'agent');
    await session.close();
    expect(transcript).toMatchObject({ text, final: true });
    expect(connection.responses.map((response) => [response.trigger, response.status])).toEqual([['force_message', 'completed']]);
    expect(events.all.filter((event) => event.type === 'speech_started' || event.type === 'error')).toEqual([]);
  });

  it('XAI_TRANSCRIPTION_MODEL: grok-transcribe is sent (with the language hint); another model is not, with one warning', async () => {
    const { logger, lines } = memoryLogger();
    defineXaiRealtime().fromEnv({ XAI_API_KEY: API_KEY, XAI_TRANSCRIPTION_MODEL: 'whisper-1' }, { logger });
    defineXaiRealtime().fromEnv({ XAI_API_KEY: API_KEY, XAI_TRANSCRIPTION_MODEL: 'grok-transcribe' }, { logger });
    expect(lines.filter((line) => line.level === 40).map((line) => line.msg)).toEqual(['XAI_TRANSCRIPTION_MODEL is not sent: xAI documents only grok-transcribe']);
    const { connection, update } = await connectWith({ XAI_TRANSCRIPTION_MODEL: 'grok-transcribe', XAI_LANGUAGE: 'pt-BR' });
    expect(update['audio']).toEqual({
      input: { format: { type: 'audio/pcmu' }, transcription: { model: 'grok-transcribe', language_hint: 'pt-BR' } },
      output: { format: { type: 'audio/pcmu' } },
    });
    expect(connection.xaiSession?.audio.input.transcription).toEqual({ model: 'grok-transcribe', language_hint: 'pt-BR' });
  });

  it('XAI_LANGUAGE that xAI ignores (bare es/pt, an unlisted code) is sent as avr-sts-xai does, with one warning at start-up', async () => {
    const warnings = (language: string): string[] => {
      const { logger, lines } = memoryLogger();
      defineXaiRealtime().fromEnv({ XAI_API_KEY: API_KEY, XAI_LANGUAGE: language }, { logger });
      return lines.filter((line) => line.level === 40).map((line) => line.msg);
    };
    for (const recognised of ['it', 'en', 'es-MX', 'pt-br', 'ar-SA', 'auto']) expect(warnings(recognised)).toEqual([]);
    expect(warnings('es')).toEqual(['XAI_LANGUAGE is ignored by xAI: xAI needs a regional variant for Spanish and Portuguese (es-MX, es-ES, pt-BR, pt-PT)']);
    expect(warnings('PT')).toHaveLength(1);
    expect(warnings('nl')[0]).toMatch(/^XAI_LANGUAGE is ignored by xAI: xAI recognises only en, ar, ar-EG, /);
    const { update } = await connectWith({ XAI_LANGUAGE: 'es' });
    expect(update['audio']).toMatchObject({ input: { transcription: { language_hint: 'es' } } });
  });

  it('lists every problem at once, never quoting the key', () => {
    const found = problems(() =>
      defineXaiRealtime().fromEnv(
        {
          XAI_API_KEY: ' ',
          XAI_VOICE: 'alloy',
          XAI_AUDIO_FORMAT: 'g722',
          XAI_TURN_DETECTION: 'semantic_vad',
          XAI_TURN_DETECTION_THRESHOLD: '0.95',
          XAI_TURN_DETECTION_SILENCE_MS: '20000',
          XAI_BUILTIN_TOOLS: 'web_search,code_interpreter',
          XAI_CONNECT_TIMEOUT_MS: '10',
          XAI_REALTIME_URL: 'ftp://example.com',
          XAI_DTMF_MESSAGE: 'no placeholder',
        },
        quiet,
      ),
    );
    expect(found.map((problem) => problem.split(':')[0]).sort()).toEqual(
      [
        'XAI_API_KEY',
        'XAI_AUDIO_FORMAT',
        'XAI_BUILTIN_TOOLS.1',
        'XAI_CONNECT_TIMEOUT_MS',
        'XAI_DTMF_MESSAGE',
        'XAI_REALTIME_URL',
        'XAI_TURN_DETECTION',
        'XAI_TURN_DETECTION_SILENCE_MS',
        'XAI_TURN_DETECTION_THRESHOLD',
        'XAI_VOICE',
      ].sort(),
    );
    expect(found.join('\n')).toContain('XAI_API_KEY is required');
  });

  it('file_search needs XAI_COLLECTION_IDS (avr-sts-xai skipped it with a console warning)', () => {
    expect(problems(() => defineXaiRealtime().fromEnv({ XAI_API_KEY: API_KEY, XAI_BUILTIN_TOOLS: 'file_search' }, quiet))).toEqual([
      'XAI_COLLECTION_IDS: is required by XAI_BUILTIN_TOOLS=file_search',
    ]);
    const parsed = xaiRealtimeEnvSchema.parse({ XAI_API_KEY: API_KEY, XAI_BUILTIN_TOOLS: 'FILE_SEARCH', XAI_COLLECTION_IDS: 'c1' });
    expect(parsed.XAI_BUILTIN_TOOLS).toEqual(['file_search']);
  });
});
