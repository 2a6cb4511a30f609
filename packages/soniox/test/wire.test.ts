import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { ConfigError, splitList } from '@stsgate/core';
import type { SttSessionConfig } from '@soniox/node';
import {
  DEFAULT_STT_MODEL,
  buildSttConfig,
  buildTtsRequest,
  defineSonioxAsr,
  defineSonioxTts,
  parseSttMessage,
  providerErrorFromSoniox,
  sonioxAsrEnvSchema,
  sonioxTtsEnvSchema,
} from '../src/index.js';

const context = { logger: pino({ enabled: false }) };

describe('language list', () => {
  it('splits a comma list, trims, drops empty entries and duplicates (B11: not one hint)', () => {
    expect(splitList('en')).toEqual(['en']);
    expect(splitList(' en , it,, de ,en,')).toEqual(['en', 'it', 'de']);
    expect(splitList('')).toEqual([]);
    expect(splitList(undefined)).toEqual([]);
  });
});

describe('buildSttConfig', () => {
  it('builds the documented config message, without api_key', () => {
    const config = buildSttConfig({ model: DEFAULT_STT_MODEL, sampleRate: 8000, languageHints: ['en', 'it'] }, 'call-uuid-1');
    expect(config).toEqual({
      model: 'stt-rt-v5',
      audio_format: 'pcm_s16le',
      sample_rate: 8000,
      num_channels: 1,
      language_hints: ['en', 'it'],
      enable_endpoint_detection: true,
      // Soniox would wait up to 2000 ms for <end>; the cascade needs it sooner (see wire.ts).
      max_endpoint_delay_ms: 1000,
      client_reference_id: 'call-uuid-1',
    });
    expect(config).not.toHaveProperty('api_key');
    // It is a valid config for the official SDK too.
    const sdk: SttSessionConfig = config;
    expect(sdk.model).toBe('stt-rt-v5');
  });

  it('sends the configured endpoint delay; adds context only when configured; drops empty hints', () => {
    const config = buildSttConfig({
      model: 'stt-rt-v5',
      sampleRate: 16000,
      languageHints: [' en ', ''],
      maxEndpointDelayMs: 800,
      contextText: ' Dental clinic bookings ',
      contextTerms: ['Asterisk', ' ', 'AVR'],
    });
    expect(config).toMatchObject({
      sample_rate: 16000,
      language_hints: ['en'],
      max_endpoint_delay_ms: 800,
      context: { text: 'Dental clinic bookings', terms: ['Asterisk', 'AVR'] },
    });
    expect(config).not.toHaveProperty('client_reference_id');
    expect(buildSttConfig({ model: 'm', sampleRate: 8000, languageHints: [] })).not.toHaveProperty('language_hints');
    expect(buildSttConfig({ model: 'm', sampleRate: 8000, languageHints: [], contextTerms: ['X'] }).context).toEqual({ terms: ['X'] });
  });

  it('caps client_reference_id at 256 characters', () => {
    expect(buildSttConfig({ model: 'm', sampleRate: 8000, languageHints: [] }, 'x'.repeat(300)).client_reference_id).toHaveLength(256);
  });
});

describe('parseSttMessage', () => {
  it('parses results, errors and garbage', () => {
    expect(parseSttMessage('{"tokens":[{"text":"Hi","is_final":true}],"final_audio_proc_ms":10,"total_audio_proc_ms":20}')).toMatchObject({
      kind: 'result',
      result: { tokens: [{ text: 'Hi', is_final: true }], final_audio_proc_ms: 10 },
    });
    expect(parseSttMessage('{"tokens":[],"finished":true}')).toMatchObject({ kind: 'result', result: { finished: true } });
    expect(parseSttMessage('{"error_code":401,"error_message":"Invalid API key."}')).toEqual({ kind: 'error', code: 401, message: 'Invalid API key.' });
    expect(parseSttMessage('{"tokens":[],"error_code":503,"error_message":"Cannot continue request (code 1). Please restart the request."}')).toMatchObject({
      kind: 'error',
      code: 503,
    });
    expect(parseSttMessage('not json').kind).toBe('invalid');
    expect(parseSttMessage('{"tokens":[{"is_final":true}]}').kind).toBe('invalid');
  });

  it('maps error codes to categories', () => {
    const cases: [number, string, boolean][] = [
      [401, 'auth', false],
      [400, 'invalid_request', false],
      [402, 'quota', false],
      [429, 'rate_limit', true],
      [408, 'timeout', true],
      [500, 'server', true],
      [503, 'server', true],
    ];
    for (const [code, category, retryable] of cases) {
      const error = providerErrorFromSoniox(code, 'boom', { secret: 'secret-key-123' });
      expect(error.category, String(code)).toBe(category);
      expect(error.retryable, String(code)).toBe(retryable);
      expect(error.statusCode).toBe(code);
    }
    expect(providerErrorFromSoniox(401, 'bad key secret-key-123', { secret: 'secret-key-123' }).message).not.toContain('secret-key-123');
  });
});

describe('buildTtsRequest', () => {
  it('builds the REST body; request voice/language win; speed only when set', () => {
    const settings = { model: 'tts-rt-v1', language: 'en', voice: 'Adrian', sampleRate: 8000 };
    expect(buildTtsRequest(settings, 'Hello')).toEqual({
      model: 'tts-rt-v1',
      language: 'en',
      voice: 'Adrian',
      audio_format: 'pcm_s16le',
      sample_rate: 8000,
      text: 'Hello',
    });
    expect(buildTtsRequest({ ...settings, speed: 1.1 }, 'Ciao', { voice: 'Maya', language: 'it' })).toMatchObject({
      voice: 'Maya',
      language: 'it',
      speed: 1.1,
    });
  });
});

describe('ASR environment (avr-asr-soniox names)', () => {
  it('applies defaults', () => {
    expect(sonioxAsrEnvSchema.parse({ SONIOX_API_KEY: 'k' })).toEqual({
      SONIOX_API_KEY: 'k',
      SONIOX_WEBSOCKET_URL: 'wss://stt-rt.soniox.com/transcribe-websocket',
      SONIOX_SPEECH_RECOGNITION_MODEL: 'stt-rt-v5',
      SONIOX_SPEECH_RECOGNITION_LANGUAGE: ['en'],
      SONIOX_TERMS: [],
    });
  });

  it('parses every variable; blank means unset', () => {
    const env = sonioxAsrEnvSchema.parse({
      SONIOX_API_KEY: ' k ',
      SONIOX_WEBSOCKET_URL: 'ws://127.0.0.1:9/transcribe-websocket',
      SONIOX_SPEECH_RECOGNITION_MODEL: 'stt-rt-v3',
      SONIOX_SPEECH_RECOGNITION_LANGUAGE: 'en, it ,',
      SONIOX_MAX_ENDPOINT_DELAY_MS: '1000',
      SONIOX_CONTEXT: 'Dentist',
      SONIOX_TERMS: 'Asterisk, AVR',
    });
    expect(env).toMatchObject({
      SONIOX_API_KEY: 'k',
      SONIOX_SPEECH_RECOGNITION_MODEL: 'stt-rt-v3',
      SONIOX_SPEECH_RECOGNITION_LANGUAGE: ['en', 'it'],
      SONIOX_MAX_ENDPOINT_DELAY_MS: 1000,
      SONIOX_CONTEXT: 'Dentist',
      SONIOX_TERMS: ['Asterisk', 'AVR'],
    });
    expect(sonioxAsrEnvSchema.parse({ SONIOX_API_KEY: 'k', SONIOX_SPEECH_RECOGNITION_LANGUAGE: ' ' }).SONIOX_SPEECH_RECOGNITION_LANGUAGE).toEqual(['en']);
  });

  it('reports every problem at once and never echoes the key', () => {
    const definition = defineSonioxAsr();
    expect(definition).toMatchObject({ kind: 'asr', id: 'soniox', defaultPort: 6018 });
    let error: unknown;
    try {
      definition.fromEnv({ SONIOX_WEBSOCKET_URL: 'https://x', SONIOX_MAX_ENDPOINT_DELAY_MS: '100' }, context);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join('\n');
    expect(problems).toContain('SONIOX_API_KEY');
    expect(problems).toContain('SONIOX_WEBSOCKET_URL');
    expect(problems).toContain('SONIOX_MAX_ENDPOINT_DELAY_MS');
    const adapter = definition.fromEnv({ SONIOX_API_KEY: 'k' }, context);
    expect(adapter.id).toBe('soniox');
    expect(adapter.capabilities).toEqual({
      inputSampleRates: [8000, 16000],
      encodings: ['pcm_s16le'],
      interimResults: true,
      endpointing: true,
      finalize: true,
      diarization: false,
    });
  });
});

describe('TTS environment (avr-tts-soniox names)', () => {
  it('applies defaults', () => {
    expect(sonioxTtsEnvSchema.parse({ SONIOX_API_KEY: 'k' })).toEqual({
      SONIOX_API_KEY: 'k',
      SONIOX_TTS_URL: 'https://tts-rt.soniox.com/tts',
      SONIOX_TTS_WEBSOCKET_URL: 'wss://tts-rt.soniox.com/tts-websocket',
      SONIOX_TTS_MODEL: 'tts-rt-v1',
      SONIOX_TTS_LANGUAGE: 'en',
      SONIOX_TTS_VOICE: 'Adrian',
    });
  });

  it('accepts 8000 and pcm_s16le only; parses the timeout', () => {
    expect(sonioxTtsEnvSchema.parse({ SONIOX_API_KEY: 'k', SONIOX_TTS_SAMPLE_RATE: '8000', SONIOX_TTS_AUDIO_FORMAT: 'PCM_S16LE', SONIOX_TTS_TIMEOUT_MS: '5000' })).toMatchObject({
      SONIOX_TTS_SAMPLE_RATE: 8000,
      SONIOX_TTS_AUDIO_FORMAT: 'pcm_s16le',
      SONIOX_TTS_TIMEOUT_MS: 5000,
    });
    const definition = defineSonioxTts();
    expect(definition).toMatchObject({ kind: 'tts', id: 'soniox', defaultPort: 6011 });
    expect(() => definition.fromEnv({ SONIOX_API_KEY: 'k', SONIOX_TTS_SAMPLE_RATE: '16000' }, context)).toThrow(/SONIOX_TTS_SAMPLE_RATE.*8000/);
    expect(() => definition.fromEnv({ SONIOX_API_KEY: 'k', SONIOX_TTS_AUDIO_FORMAT: 'mp3' }, context)).toThrow(/SONIOX_TTS_AUDIO_FORMAT/);
    expect(() => definition.fromEnv({}, context)).toThrow(/SONIOX_API_KEY is required/);
    const adapter = definition.fromEnv({ SONIOX_API_KEY: 'k' }, context);
    expect(adapter.capabilities).toEqual({ outputSampleRates: [8000], encodings: ['pcm_s16le'], streamingInput: true });
    expect(typeof adapter.streamText).toBe('function');
  });
});
