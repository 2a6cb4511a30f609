import { describe, expect, test } from 'vitest';
import { pino } from 'pino';
import type { StartRecognition } from '@speechmatics/real-time-client';
import { DEFAULT_RECONNECT_POLICY, ReconnectBudget } from '@stsgate/core';
import { memoryLogger } from '@stsgate/testkit';
import {
  SPEECHMATICS_REGIONS,
  buildStartConversation,
  createSpeechmaticsAsr,
  defineSpeechmaticsAsr,
  speechmaticsRtUrl,
  buildStartRecognition,
  categoryForErrorType,
  flowConnectUrl,
  flowTools,
  parseAdditionalVocab,
  providerErrorFromClose,
  providerErrorFromServerError,
  providerErrorFromStatus,
  sanitizeMessage,
  speechmaticsAsrEnvSchema,
  speechmaticsFlowEnvSchema,
  ttsGenerateUrl,
  defineSpeechmaticsFlow,
  DEFAULT_TEMPLATE_ID,
} from '../src/index.js';

describe('wire builders', () => {
  test('StartRecognition: raw 8 kHz PCM, the configured transcription settings, nothing unset', () => {
    const message: StartRecognition = buildStartRecognition({
      sampleRate: 8000,
      language: 'it',
      model: 'enhanced',
      maxDelay: 1,
      additionalVocab: ['AVR', { content: 'Asterisk', sounds_like: ['as ter isk'] }],
      diarization: 'speaker',
      endOfUtteranceSilence: 0.6,
      enablePartials: true,
    });
    expect(message).toEqual({
      message: 'StartRecognition',
      audio_format: { type: 'raw', encoding: 'pcm_s16le', sample_rate: 8000 },
      transcription_config: {
        language: 'it',
        enable_partials: true,
        conversation_config: { end_of_utterance_silence_trigger: 0.6 },
        model: 'enhanced',
        max_delay: 1,
        additional_vocab: ['AVR', { content: 'Asterisk', sounds_like: ['as ter isk'] }],
        diarization: 'speaker',
      },
    });
  });

  test('StartConversation and the Flow URL', () => {
    expect(buildStartConversation({ templateId: 't:latest', templateVariables: { persona: 'p' }, sampleRate: 8000, tools: [] })).toEqual({
      message: 'StartConversation',
      conversation_config: { template_id: 't:latest', template_variables: { persona: 'p' } },
      audio_format: { type: 'raw', encoding: 'pcm_s16le', sample_rate: 8000 },
    });
    expect(flowConnectUrl('ws://127.0.0.1:9000', 'j.w.t')).toBe('ws://127.0.0.1:9000/v1/flow?jwt=j.w.t&sm-app=stsgate');
    expect(flowConnectUrl('wss://flow.example.com/custom/flow?x=1', 'k')).toBe('wss://flow.example.com/custom/flow?x=1&jwt=k&sm-app=stsgate');
    expect(flowConnectUrl('https://flow.example.com', 'k')).toBe('wss://flow.example.com/v1/flow?jwt=k&sm-app=stsgate');
    expect(ttsGenerateUrl('https://preview.tts.speechmatics.com', 'sarah')).toBe('https://preview.tts.speechmatics.com/generate/sarah?output_format=pcm_16000');
    expect(ttsGenerateUrl('http://127.0.0.1:1234/tts/', 'a b')).toBe('http://127.0.0.1:1234/tts/generate/a%20b?output_format=pcm_16000');
  });

  test('tools: scalar parameters pass, others are left out with a reason', () => {
    const { tools, skipped } = flowTools([
      {
        name: 'avr_transfer',
        description: 'Transfer the call',
        parameters: { type: 'object', properties: { extension: { type: 'string', description: 'where to' }, priority: { type: 'integer' } }, required: ['extension', 'ghost'] },
      },
      { name: 'avr_hangup', description: 'Hang up', parameters: { type: 'object', properties: {} } },
      { name: 'lookup', description: 'Look up', parameters: { type: 'object', properties: { items: { type: 'array' } } } },
    ]);
    expect(tools).toEqual([
      {
        type: 'function',
        function: {
          name: 'avr_transfer',
          description: 'Transfer the call',
          parameters: { type: 'object', properties: { extension: { type: 'string', description: 'where to' }, priority: { type: 'integer' } }, required: ['extension'] },
        },
      },
      { type: 'function', function: { name: 'avr_hangup', description: 'Hang up', parameters: { type: 'object', properties: {} } } },
    ]);
    expect(skipped).toEqual([{ name: 'lookup', reason: 'parameter "items" has type "array"; Flow only takes integer, number, string or boolean' }]);
  });

  test('tools: enum and example survive the conversion (example as a string, as Flow takes it), other keywords do not', () => {
    const { tools } = flowTools([
      {
        name: 'route',
        description: 'Route the call',
        parameters: {
          type: 'object',
          properties: {
            department: { type: 'string', description: 'where to', enum: ['sales', 'support'], example: 'sales', minLength: 2 },
            extension: { type: 'integer', enum: [200, 201], example: 200 },
            urgent: { type: 'boolean', enum: [true], example: false },
            note: { type: 'string', enum: 'not-a-list', example: { nested: true } },
          },
        },
      },
    ]);
    expect(tools[0]?.function.parameters.properties).toEqual({
      department: { type: 'string', description: 'where to', enum: ['sales', 'support'], example: 'sales' },
      extension: { type: 'integer', enum: [200, 201], example: '200' },
      urgent: { type: 'boolean', example: 'false' },
      note: { type: 'string' },
    });
  });
});

describe('errors', () => {
  test('error types, close codes and statuses map to categories; retry only where the docs say', () => {
    expect(categoryForErrorType('not_authorised')).toEqual({ category: 'auth', retryable: false });
    expect(categoryForErrorType('quota_exceeded')).toEqual({ category: 'quota', retryable: true });
    expect(categoryForErrorType('job_error')).toEqual({ category: 'server', retryable: true });
    expect(categoryForErrorType('config_error')).toEqual({ category: 'invalid_request', retryable: false });
    expect(categoryForErrorType('whatever')).toEqual({ category: 'unknown', retryable: false });
    const auth = providerErrorFromServerError('not_authorised', 'key sk-live-123 is bad', 'sk-live-123');
    expect(auth.message).toBe('Speechmatics error not_authorised: key [redacted] is bad');
    expect(auth.retryable).toBe(false);
    expect(providerErrorFromClose(4001, 'not_authorised')).toMatchObject({ category: 'auth', retryable: false });
    expect(providerErrorFromClose(4005, 'quota_exceeded')).toMatchObject({ category: 'quota', retryable: true });
    expect(providerErrorFromClose(4013, 'job_error')).toMatchObject({ category: 'server', retryable: true });
    expect(providerErrorFromClose(1011, '')).toMatchObject({ category: 'server', retryable: true });
    expect(providerErrorFromClose(1003, 'protocol_error')).toMatchObject({ category: 'protocol', retryable: false });
    expect(providerErrorFromClose(1006, '')).toMatchObject({ category: 'connectivity', retryable: true });
    expect(providerErrorFromStatus(401, '{"detail":"Invalid API key"}', { what: 'TTS request failed' })).toMatchObject({
      category: 'auth',
      statusCode: 401,
      message: 'Speechmatics TTS request failed (HTTP 401): Invalid API key',
    });
  });

  test('quota_exceeded, job_error and internal_error (and their close codes) wait 5-10 s before a retry, others do not', () => {
    const backoff = [
      providerErrorFromServerError('quota_exceeded', undefined),
      providerErrorFromServerError('job_error', 'busy'),
      providerErrorFromServerError('internal_error', undefined),
      providerErrorFromClose(4005, 'quota_exceeded'),
      providerErrorFromClose(4013, 'job_error'),
      providerErrorFromClose(1011, 'internal_error'),
    ];
    for (const error of backoff) {
      expect(error.retryable).toBe(true);
      // The budget takes its jitter off the hint: the shortest and the longest wait of the default policy.
      for (const random of [0, 0.999_999]) {
        const decision = new ReconnectBudget(DEFAULT_RECONNECT_POLICY, Date.now, () => random).next(error);
        expect(decision.retry).toBe(true);
        const delayMs = decision.retry ? decision.delayMs : 0;
        expect(delayMs).toBeGreaterThanOrEqual(5000);
        expect(delayMs).toBeLessThanOrEqual(10_000);
      }
    }
    for (const error of [providerErrorFromClose(1006, ''), providerErrorFromServerError('idle_timeout', undefined), providerErrorFromClose(1008, 'idle_timeout')]) {
      expect(error.retryAfterMs).toBeUndefined();
    }
  });

  test('temporary keys and the API key never survive sanitising', () => {
    const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl';
    expect(sanitizeMessage(`GET /v1/flow?jwt=${jwt} failed for key-abcdef`, 'key-abcdef')).toBe('GET /v1/flow?jwt=[redacted] failed for [redacted]');
    expect(sanitizeMessage('x'.repeat(400)).length).toBeLessThan(310);
  });
});

describe('environment', () => {
  const base = { SPEECHMATICS_API_KEY: 'k' };

  test('Flow: AVR defaults, template variables JSON, every problem reported', () => {
    const env = speechmaticsFlowEnvSchema.parse(base);
    expect(env.SPEECHMATICS_TEMPLATE_ID).toBe(DEFAULT_TEMPLATE_ID);
    expect(env.SPEECHMATICS_TEMPLATE_ID).toBe('094671aa-4b53-496d-a4d1-ceea2b9736b9:latest');
    expect(env.SPEECHMATICS_FLOW_URL).toBe('wss://flow.api.speechmatics.com/v1/flow');
    expect(env.SPEECHMATICS_REGION).toBe('eu');
    expect(speechmaticsFlowEnvSchema.parse({ ...base, SPEECHMATICS_TEMPLATE_VARIABLES: '{"persona":"Anna","year":2026,"vip":true}' }).SPEECHMATICS_TEMPLATE_VARIABLES).toEqual({
      persona: 'Anna',
      year: '2026',
      vip: 'true',
    });
    const bad = speechmaticsFlowEnvSchema.safeParse({ SPEECHMATICS_TEMPLATE_VARIABLES: '{"a":{"b":1}}', SPEECHMATICS_FLOW_URL: 'http://x', SPEECHMATICS_REGION: 'mars' });
    expect(bad.success).toBe(false);
    const paths = bad.error?.issues.map((issue) => issue.path.join('.')).sort();
    expect(paths).toEqual(['SPEECHMATICS_API_KEY', 'SPEECHMATICS_FLOW_URL', 'SPEECHMATICS_REGION', 'SPEECHMATICS_TEMPLATE_VARIABLES']);
  });

  test('ASR: vocabulary with sounds-like, ranges checked', () => {
    expect(parseAdditionalVocab('AVR, Asterisk:as ter isk|aster risk, ,Flow:')).toEqual(['AVR', { content: 'Asterisk', sounds_like: ['as ter isk', 'aster risk'] }, 'Flow']);
    const env = speechmaticsAsrEnvSchema.parse({ ...base, SPEECHMATICS_MAX_DELAY: '1.5', SPEECHMATICS_DIARIZATION: 'speaker' });
    expect(env.SPEECHMATICS_MAX_DELAY).toBe(1.5);
    expect(env.SPEECHMATICS_LANGUAGE).toBe('en');
    expect(speechmaticsAsrEnvSchema.safeParse({ ...base, SPEECHMATICS_MAX_DELAY: '0.2' }).success).toBe(false);
    expect(speechmaticsAsrEnvSchema.safeParse({ ...base, SPEECHMATICS_END_OF_UTTERANCE_SILENCE: '3' }).success).toBe(false);
  });

  test('SPEECHMATICS_REGION: AVR\'s values (eu, usa, au) and ours (us, global) all start, each on a real-time endpoint', () => {
    expect(SPEECHMATICS_REGIONS).toEqual(['eu', 'usa', 'au', 'us', 'global']);
    const logger = memoryLogger('warn');
    for (const region of SPEECHMATICS_REGIONS) {
      const env = { ...base, SPEECHMATICS_REGION: region };
      expect(() => defineSpeechmaticsAsr().fromEnv(env, { logger: logger.logger })).not.toThrow();
      expect(() => defineSpeechmaticsFlow().fromEnv(env, { logger: pino({ level: 'silent' }) })).not.toThrow();
    }
    expect(SPEECHMATICS_REGIONS.map((region) => speechmaticsRtUrl(region))).toEqual([
      'wss://eu.rt.speechmatics.com/v2',
      'wss://us.rt.speechmatics.com/v2',
      'wss://global.rt.speechmatics.com/v2',
      'wss://us.rt.speechmatics.com/v2',
      'wss://global.rt.speechmatics.com/v2',
    ]);
    // No Australian real-time endpoint is documented: said once, at start-up, for `au` only.
    expect(logger.lines.map((line) => line.msg)).toEqual([expect.stringMatching(/SPEECHMATICS_REGION=au.*global.*SPEECHMATICS_RT_URL/)]);
    defineSpeechmaticsAsr().fromEnv({ ...base, SPEECHMATICS_REGION: 'au', SPEECHMATICS_RT_URL: 'wss://rt.example.com/v2' }, { logger: logger.logger });
    expect(logger.lines).toHaveLength(1);
  });

  test('ASR: end_of_utterance_silence_trigger not below max_delay is accepted, as the service does, with one warning at start-up', () => {
    const definition = defineSpeechmaticsAsr();
    const warnings = (env: Record<string, string>): string[] => {
      const logger = memoryLogger('warn');
      definition.fromEnv({ ...base, ...env }, { logger: logger.logger });
      return logger.lines.map((line) => line.msg);
    };
    expect(warnings({ SPEECHMATICS_MAX_DELAY: '0.7', SPEECHMATICS_END_OF_UTTERANCE_SILENCE: '0.8' })).toEqual([
      expect.stringMatching(/^Speechmatics ASR: end_of_utterance_silence_trigger \(0\.8 s\) is not lower than max_delay \(0\.7 s\).*advises against/),
    ]);
    expect(warnings({ SPEECHMATICS_MAX_DELAY: '1', SPEECHMATICS_END_OF_UTTERANCE_SILENCE: '1' })).toHaveLength(1);
    // One of them unset: its default counts (end of utterance 0.5 s, Speechmatics' max_delay 4 s).
    expect(warnings({ SPEECHMATICS_MAX_DELAY: '0.7' })).toEqual([]);
    expect(warnings({ SPEECHMATICS_END_OF_UTTERANCE_SILENCE: '2' })).toEqual([]);
    // 0 turns EndOfUtterance off: nothing to compare.
    expect(warnings({ SPEECHMATICS_MAX_DELAY: '0.7', SPEECHMATICS_END_OF_UTTERANCE_SILENCE: '0' })).toEqual([]);
  });

  test('ASR adapter: end_of_utterance_silence_trigger not below max_delay is accepted with one warning, at creation or else at the first call', async () => {
    const direct = memoryLogger('warn');
    createSpeechmaticsAsr({ apiKey: 'k', maxDelay: 0.7, endOfUtteranceSilence: 0.9, logger: direct.logger });
    expect(direct.lines.map((line) => line.msg)).toEqual([expect.stringMatching(/end_of_utterance_silence_trigger \(0\.9 s\) is not lower than max_delay \(0\.7 s\)/)]);
    expect(direct.lines[0]).toMatchObject({ provider: 'speechmatics', endOfUtteranceSilence: 0.9, maxDelay: 0.7 });

    const calls = memoryLogger('warn');
    const adapter = createSpeechmaticsAsr({ apiKey: 'k', maxDelay: 0.7, endOfUtteranceSilence: 0.9 });
    expect(calls.lines).toEqual([]);
    // Calls that ended before the stream opened: no socket, but the first one still carries the warning.
    const ended = new AbortController();
    ended.abort();
    const context = { callId: 'c', metadata: {}, logger: calls.logger, signal: ended.signal };
    await expect(adapter.open(context)).rejects.toMatchObject({ category: 'closed' });
    await expect(adapter.open(context)).rejects.toMatchObject({ category: 'closed' });
    expect(calls.lines.map((line) => line.msg)).toEqual([expect.stringMatching(/end_of_utterance_silence_trigger \(0\.9 s\)/)]);
    expect(() => createSpeechmaticsAsr({ apiKey: 'k', maxDelay: 0.7 })).not.toThrow();
  });

  test('the STS definition builds an adapter with Flow capabilities', () => {
    const definition = defineSpeechmaticsFlow();
    expect(definition.defaultPort).toBe(6040);
    const adapter = definition.fromEnv(base, { logger: pino({ level: 'silent' }) });
    expect(() => definition.fromEnv({}, { logger: pino({ level: 'silent' }) })).toThrow(/SPEECHMATICS_API_KEY is required/);
    expect(adapter.capabilities).toMatchObject({ inputSampleRates: [8000], outputSampleRates: [16000], truncation: false, toolCalls: true, dtmf: true });
  });
});
