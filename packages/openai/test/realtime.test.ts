import { afterEach, describe, expect, it } from 'vitest';
import { ProviderError, createResampler } from '@stsgate/core';
import type { StsEvent, StsSession, ToolSpec } from '@stsgate/core';
import { concatPcm, fixturePath, readWavAs8k, silence, startOpenAiRealtimeEmulator } from '@stsgate/testkit';
import type { OpenAiRealtimeEmulator, OpenAiRealtimeEmulatorOptions, RealtimeEmulatorConnection } from '@stsgate/testkit';
import { createOpenAiRealtime } from '../src/index.js';
import type { OpenAiRealtimeOptions } from '../src/index.js';
import { EnergyTestVad, EventLog, callContext, isType, memoryLogger, speak, speakFrameByFrame, waitForLog } from './helpers.js';

const API_KEY = 'sk-test-0123456789abcdef';
const speech8k = concatPcm(silence(300), readWavAs8k(fixturePath('short')), silence(900));

/** The caller's speech at the session's input rate (the host resamples 8 kHz to it). */
function speechFor(session: StsSession): Int16Array {
  if (session.inputSampleRate === 8000) return speech8k;
  const resampler = createResampler(8000, session.inputSampleRate);
  return concatPcm(resampler.process(speech8k), resampler.flush());
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

async function emulator(options: Partial<OpenAiRealtimeEmulatorOptions> = {}): Promise<OpenAiRealtimeEmulator> {
  const emu = await startOpenAiRealtimeEmulator({ apiKey: API_KEY, ...options });
  cleanups.push(() => emu.close());
  return emu;
}

function adapterFor(emu: OpenAiRealtimeEmulator, options: Partial<OpenAiRealtimeOptions> = {}) {
  return createOpenAiRealtime({
    apiKey: API_KEY,
    url: emu.url,
    instructions: (call) => `You answer calls from ${call.metadata['from'] ?? 'unknown'}.`,
    reconnect: { maxAttempts: 3, firstDelayMs: 0, baseDelayMs: 10, maxDelayMs: 50, jitter: 0 },
    // "Yes, please." has a short pause at the comma: one turn, not two
    turnDetection: { type: 'server_vad', silenceDurationMs: 600 },
    ...(emu.certificatePem === undefined ? {} : { tls: { ca: emu.certificatePem } }),
    ...options,
  });
}

async function open(emu: OpenAiRealtimeEmulator, options: Partial<OpenAiRealtimeOptions> = {}, tools: readonly ToolSpec[] = []) {
  const { logger, lines } = memoryLogger();
  const session = await adapterFor(emu, options).connect(callContext({ logger, tools }));
  cleanups.push(() => session.close());
  const events = new EventLog(session);
  return { session, events, lines };
}

const clientEvents = (connection: RealtimeEmulatorConnection, type: string) => connection.clientEvents.filter((e) => e['type'] === type);

const TRANSFER: ToolSpec = {
  name: 'avr_transfer',
  description: 'Transfer the caller to a human operator.',
  parameters: { type: 'object', properties: { transfer_extension: { type: 'string' } }, required: ['transfer_extension'] },
};

describe('OpenAI Realtime adapter against the GA emulator: session set-up', () => {
  for (const tls of [false, true]) {
    it(`configures the GA session and greets exactly once (${tls ? 'wss' : 'ws'})`, async () => {
      const emu = await emulator({ tls, script: { greeting: { transcript: 'Welcome to ACME.', audioMs: 400 } } });
      expect(emu.url.startsWith(tls ? 'wss://' : 'ws://')).toBe(true);
      const { session, events } = await open(emu, {}, [TRANSFER]);
      expect(session.inputSampleRate).toBe(8000);
      expect(session.outputSampleRate).toBe(8000);
      const connection = await emu.waitForConnection(0);
      expect(connection.headers['authorization']).toBe(`Bearer ${API_KEY}`);
      expect(connection.headers['openai-beta']).toBeUndefined();
      expect(connection.model).toBe('gpt-realtime-2');

      const updates = clientEvents(connection, 'session.update');
      expect(updates).toHaveLength(1);
      const sent = updates[0]?.['session'] as Record<string, unknown>;
      expect(sent).not.toHaveProperty('temperature');
      expect(sent).toMatchObject({
        type: 'realtime',
        instructions: 'You answer calls from +15550100.',
        audio: {
          input: { format: { type: 'audio/pcmu' }, transcription: { model: 'whisper-1' }, turn_detection: { type: 'server_vad' } },
          output: { format: { type: 'audio/pcmu' }, voice: 'alloy' },
        },
        tools: [{ type: 'function', name: 'avr_transfer', description: TRANSFER.description, parameters: TRANSFER.parameters }],
        tool_choice: 'auto',
      });
      // the emulator accepted it whole
      expect(connection.session.audio.output.format.type).toBe('audio/pcmu');
      expect(connection.serverEvents.filter((e) => e.type === 'error')).toEqual([]);

      const done = await events.waitFor(isType('response_done'));
      const transcript = await events.waitFor(isType('transcript'));
      expect(transcript).toEqual({ type: 'transcript', role: 'agent', text: 'Welcome to ACME.', final: true });
      const audio = events.of('audio').filter((e) => e.responseId === done.responseId);
      expect(audio.reduce((n, e) => n + e.samples.length, 0)).toBe(400 * 8);

      // a later session.updated must not trigger another response (avr-sts-openai bug B12)
      connection.sendEvent({ type: 'session.updated', session: connection.session as unknown as Record<string, unknown> });
      connection.sendEvent({ type: 'input_audio_buffer.cleared' }); // a marker: once it is handled, so was the update
      await connection.waitForServerEvent('input_audio_buffer.cleared');
      await session.close();
      expect(clientEvents(connection, 'response.create')).toHaveLength(1);
      expect(clientEvents(connection, 'session.update')).toHaveLength(1);
      await connection.closed;
      expect(connection.closeInfo?.code).toBe(1000);
    });
  }

  it('does not greet when the greeting is off, and maps the optional settings', async () => {
    const emu = await emulator();
    await open(emu, {
      greeting: false,
      voice: 'marin',
      transcription: { model: 'gpt-4o-mini-transcribe', language: 'it' },
      turnDetection: { type: 'semantic_vad', eagerness: 'low' },
      noiseReduction: 'near_field',
      maxOutputTokens: 512,
    });
    const connection = await emu.waitForConnection(0);
    await connection.waitForServerEvent('session.updated');
    expect(clientEvents(connection, 'session.update')[0]?.['session']).toMatchObject({
      audio: {
        input: {
          transcription: { model: 'gpt-4o-mini-transcribe', language: 'it' },
          turn_detection: { type: 'semantic_vad', eagerness: 'low' },
          noise_reduction: { type: 'near_field' },
        },
        output: { voice: 'marin' },
      },
      max_output_tokens: 512,
    });
    expect(connection.session.audio.input.turn_detection).toMatchObject({ type: 'semantic_vad', eagerness: 'low' });
    expect(clientEvents(connection, 'response.create')).toHaveLength(0);
  });
});

describe('OpenAI Realtime adapter: a conversation', () => {
  it('OPENAI_INPUT_BATCH_MS-style batching: several 20 ms frames per append, every sample delivered', async () => {
    const emu = await emulator({ script: { onUserTurn: () => ({ transcript: 'Fine.', audioMs: 200 }) } });
    const { session, events } = await open(emu, { greeting: false, inputBatchMs: 60 });
    const speech = speechFor(session);
    speak(session, speech);
    await events.waitFor(isType('response_done'));
    const connection = await emu.waitForConnection(0);
    // The last, partial batch goes out when its 60 ms are up.
    await emu.waitFor(() => connection.inputAudioMs >= (speech.length * 1000) / 8000 - 0.5);
    expect(connection.inputAudioMs).toBeCloseTo((speech.length * 1000) / 8000, 0);
    expect(clientEvents(connection, 'input_audio_buffer.append').length).toBeLessThanOrEqual(Math.ceil(speech.length / 480) + 1);
  });

  it('without batching, the frames of one event-loop turn (a backlog read at once) leave as one append, every sample delivered', async () => {
    const emu = await emulator({ script: { onUserTurn: () => ({ transcript: 'Fine.', audioMs: 200 }) } });
    const { session } = await open(emu, { greeting: false });
    const connection = await emu.waitForConnection(0);
    const frame = 160;
    const backlog = speechFor(session).subarray(0, 5 * frame);
    speak(session, backlog); // five frames in one turn
    await new Promise((resolve) => setImmediate(resolve));
    await speakFrameByFrame(session, speechFor(session).subarray(5 * frame, 8 * frame)); // three, one per turn
    await emu.waitFor(() => connection.inputAudioMs >= 8 * 20 - 0.5);
    const appends = clientEvents(connection, 'input_audio_buffer.append').map((event) => Buffer.from(String(event['audio']), 'base64').length);
    // pcmu: one byte per sample.
    expect(appends).toEqual([5 * frame, frame, frame, frame]);
    expect(connection.inputAudioMs).toBeCloseTo(8 * 20, 5);
  });

  for (const audioFormat of ['pcmu', 'pcm24'] as const) {
    it(`caller audio -> speech_started, transcripts, agent audio (${audioFormat})`, async () => {
      const emu = await emulator({ script: { onUserTurn: () => ({ transcript: 'We open at nine.', audioMs: 600 }) } });
      const { session, events } = await open(emu, { audioFormat, greeting: false });
      const rate = audioFormat === 'pcmu' ? 8000 : 24000;
      expect(session.inputSampleRate).toBe(rate);
      await speakFrameByFrame(session, speechFor(session));

      await events.waitFor(isType('speech_started'));
      await events.waitFor(isType('speech_stopped'));
      const user = await events.waitFor((e) => e.type === 'transcript' && e.role === 'user');
      expect(user).toMatchObject({ text: 'Caller turn 1.' });
      const done = await events.waitFor(isType('response_done'));
      const agent = await events.waitFor((e) => e.type === 'transcript' && e.role === 'agent');
      expect(agent).toMatchObject({ text: 'We open at nine.' });
      const samples = events.of('audio').filter((e) => e.responseId === done.responseId).reduce((n, e) => n + e.samples.length, 0);
      expect(samples).toBe((600 * rate) / 1000);

      const connection = await emu.waitForConnection(0);
      const format = connection.session.audio.input.format;
      expect(format.type).toBe(audioFormat === 'pcmu' ? 'audio/pcmu' : 'audio/pcm');
      // every caller sample arrived, one append per 20 ms frame as it came (no batching by default)
      const appends = clientEvents(connection, 'input_audio_buffer.append');
      expect(connection.inputAudioMs).toBeCloseTo((speechFor(session).length * 1000) / rate, 0);
      expect(appends.length).toBe(Math.ceil(speechFor(session).length / ((rate * 20) / 1000)));
    });
  }

  it('truncates the interrupted item to what was heard, clamped to the audio received', async () => {
    const emu = await emulator({
      script: { greeting: { transcript: 'A long welcome message that the caller will interrupt.', audioMs: 4000 } },
      timing: { audioChunkMs: 100, chunkIntervalMs: 20 },
    });
    const { session, events } = await open(emu);
    const first = await events.waitFor(isType('audio'));
    speak(session, speech8k);
    await events.waitFor(isType('speech_started'));
    const received = events.of('audio').filter((e) => e.responseId === first.responseId).reduce((n, e) => n + e.samples.length, 0) / 8;
    expect(received).toBeLessThan(4000);
    // the host's playout clock says more than the provider ever sent: the adapter clamps
    session.truncate(first.responseId, received + 5000.7);
    const connection = await emu.waitForConnection(0);
    const record = await emu.waitFor(() => connection.truncations[0]);
    expect(record).toMatchObject({ itemId: first.responseId, contentIndex: 0, audioEndMs: Math.floor(received) });
    expect(record.audioEndMs).toBeLessThanOrEqual(record.audioSentMs);
    await connection.waitForServerEvent('conversation.item.truncated');
    const truncate = clientEvents(connection, 'conversation.item.truncate')[0];
    expect(Number.isInteger(truncate?.['audio_end_ms'])).toBe(true);
    expect(events.of('error')).toEqual([]);
    // the response was cancelled by the barge-in and the item is closed for the host
    await events.waitFor((e) => e.type === 'response_done' && e.responseId === first.responseId);
  });

  it('sends a fractional heard time as an integer below the received audio', async () => {
    const emu = await emulator({ script: { greeting: { transcript: 'Hello there caller.', audioMs: 1000 } } });
    const { session, events } = await open(emu);
    const done = await events.waitFor(isType('response_done'));
    session.truncate(done.responseId, 333.9);
    const connection = await emu.waitForConnection(0);
    const record = await emu.waitFor(() => connection.truncations[0]);
    expect(record.audioEndMs).toBe(333);
    expect(events.of('error')).toEqual([]);
  });

  it('DTMF becomes a user message; its response.create waits for the active response', async () => {
    const emu = await emulator({
      script: {
        greeting: { transcript: 'Press one for sales.', audioMs: 1500 },
        onUserText: (text) => ({ transcript: `You said: ${text}`, audioMs: 300 }),
      },
      timing: { audioChunkMs: 100, chunkIntervalMs: 20 },
    });
    const { session, events } = await open(emu, { dtmfMessage: 'Keypad: {{digit}}' });
    await events.waitFor(isType('audio')); // the greeting is streaming
    session.sendDtmf('1');
    const connection = await emu.waitForConnection(0);
    const item = await connection.waitForClientEvent('conversation.item.create');
    expect(item['item']).toEqual({ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Keypad: 1' }] });
    expect(clientEvents(connection, 'response.create')).toHaveLength(1); // only the greeting so far

    const reply = await events.waitFor((e) => e.type === 'transcript' && e.text === 'You said: Keypad: 1');
    expect(reply).toBeDefined();
    expect(clientEvents(connection, 'response.create')).toHaveLength(2);
    // the second response.create came after the greeting's response.done: no collision error
    expect(connection.serverEvents.filter((e) => e.type === 'error')).toEqual([]);
    expect(connection.responses.map((r) => [r.trigger, r.status])).toEqual([
      ['greeting', 'completed'],
      ['user_text', 'completed'],
    ]);
    session.sendDtmf('x'); // not a digit: ignored
    expect(clientEvents(connection, 'conversation.item.create')).toHaveLength(1);
  });

  it('tool call -> tool_call event -> submitToolResult -> function_call_output + response.create', async () => {
    const emu = await emulator({
      script: {
        greeting: { transcript: '', functionCall: { name: 'avr_transfer', arguments: '{"transfer_extension":"100"}', callId: 'call_abc' } },
        onToolOutput: (callId, output) => ({ transcript: `Transferring (${callId}: ${output}).`, audioMs: 300 }),
      },
    });
    const { session, events } = await open(emu, {}, [TRANSFER]);
    const call = await events.waitFor(isType('tool_call'));
    expect(call).toEqual({ type: 'tool_call', callId: 'call_abc', name: 'avr_transfer', argumentsJson: '{"transfer_extension":"100"}' });
    session.submitToolResult('call_abc', '{"message":"ok"}');
    await events.waitFor((e) => e.type === 'transcript' && e.text === 'Transferring (call_abc: {"message":"ok"}).');
    const connection = await emu.waitForConnection(0);
    expect(clientEvents(connection, 'conversation.item.create').map((e) => e['item'])).toEqual([
      { type: 'function_call_output', call_id: 'call_abc', output: '{"message":"ok"}' },
    ]);
    expect(connection.responses.map((r) => r.trigger)).toEqual(['greeting', 'tool_output']);
    expect(events.of('tool_call')).toHaveLength(1);
    expect(connection.serverEvents.filter((e) => e.type === 'error')).toEqual([]);
  });
});

describe('OpenAI Realtime adapter: failures', () => {
  it('a bad key (close 3000) rejects with a non-retryable auth error, after one attempt', async () => {
    const emu = await emulator();
    const { logger, lines } = memoryLogger();
    const adapter = createOpenAiRealtime({ apiKey: 'sk-wrong-key-000000000000', url: emu.url });
    const error = await adapter.connect(callContext({ logger })).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ProviderError);
    expect(error).toMatchObject({ category: 'auth', retryable: false, providerCode: 'invalid_api_key' });
    expect((error as Error).message).toContain('authentication failed');
    expect((error as Error).message).not.toContain('wrong-key');
    expect(emu.upgrades).toHaveLength(1);
    expect(JSON.stringify(lines)).not.toContain('sk-wrong-key');
  });

  it('an upgrade rejected with 429 is a retryable rate_limit error, retried until the budget runs out', async () => {
    const emu = await emulator({ faults: [{ rejectUpgrade: { status: 429, headers: { 'Retry-After': '0' } }, connections: Infinity }] });
    const error = await adapterFor(emu, { reconnect: { maxAttempts: 2, firstDelayMs: 0, baseDelayMs: 5, maxDelayMs: 10, jitter: 0 } })
      .connect(callContext())
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toMatchObject({ category: 'rate_limit', statusCode: 429 });
    expect((error as ProviderError).cause).toMatchObject({ retryable: true, retryAfterMs: 0 });
    expect((error as Error).message).toContain('Rate limit reached');
    expect((error as Error).message).toContain('gave up after 2 reconnect attempts');
    expect(emu.upgrades.map((u) => u.status)).toEqual([429, 429, 429]);
  });

  it('an upgrade rejected with 401 is an auth error and is not retried', async () => {
    const emu = await emulator({ faults: [{ rejectUpgrade: { status: 401 }, connections: Infinity }] });
    const error = await adapterFor(emu).connect(callContext()).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ category: 'auth', retryable: false, statusCode: 401 });
    expect(emu.upgrades).toHaveLength(1);
  });

  it('a transient upgrade failure (503) at connect time is retried', async () => {
    const emu = await emulator({ faults: [{ rejectUpgrade: { status: 503 } }] });
    const { events } = await open(emu, { greeting: false });
    expect(emu.upgrades.map((u) => u.status)).toEqual([503, 101]);
    expect(events.ended).toBe(false);
  });

  it('a rejected session.update is fatal with a clear message, and not retried', async () => {
    const emu = await emulator();
    // GA allows 1..4096 (or "inf"): the whole update is rejected
    const error = await adapterFor(emu, { maxOutputTokens: 5000 })
      .connect(callContext())
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toMatchObject({ category: 'invalid_request', retryable: false });
    expect((error as Error).message).toContain('OpenAI rejected the session configuration');
    expect((error as Error).message).toContain('session.max_output_tokens');
    expect(emu.upgrades).toHaveLength(1);
    await emu.connections[0]?.closed; // the failed socket is not left open
  });

  it('a refused transcription model (e.g. shut down) leaves transcription out: the call goes on without user transcripts, with a warning', async () => {
    const emu = await emulator({
      refusedTranscriptionModels: ['whisper-1'],
      script: { onUserTurn: () => ({ transcript: 'We open at nine.', audioMs: 300 }) },
    });
    const { session, events, lines } = await open(emu, { greeting: false });
    const connection = await emu.waitForConnection(0);
    const updates = clientEvents(connection, 'session.update').map((e) => e['session'] as { audio: { input: Record<string, unknown> } });
    expect(updates).toHaveLength(2);
    expect(updates[0]?.audio.input['transcription']).toEqual({ model: 'whisper-1' });
    expect(updates[1]?.audio.input).not.toHaveProperty('transcription');
    expect(updates[1]?.audio.input['turn_detection']).toMatchObject({ type: 'server_vad' }); // the rest is unchanged
    expect(connection.session.audio.input.transcription).toBeNull();
    const warning = lines.find((l) => l['warning'] !== undefined);
    expect(String(warning?.['warning'])).toContain("the input transcription was refused, so the caller's words are not transcribed");
    expect(String(warning?.['warning'])).toContain('session.audio.input.transcription.model');

    await speakFrameByFrame(session, speechFor(session));
    const agent = await events.waitFor((e) => e.type === 'transcript' && e.role === 'agent');
    expect(agent).toMatchObject({ text: 'We open at nine.' });
    expect(events.all.filter((e) => e.type === 'transcript' && e.role === 'user')).toEqual([]);
    expect(events.all.filter((e) => e.type === 'error')).toEqual([]);
  });

  it('an unknown model (close 4000) is a non-retryable invalid_request error', async () => {
    const emu = await emulator();
    const error = await adapterFor(emu, { model: 'no-such-model' }).connect(callContext()).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ category: 'invalid_request', retryable: false, providerCode: 'invalid_model' });
    expect(emu.upgrades).toHaveLength(1);
  });

  it('an error event is reported as a non-fatal error and the session goes on', async () => {
    const emu = await emulator({ script: { onUserText: () => ({ transcript: 'Still here.', audioMs: 200 }) } });
    const { session, events } = await open(emu, { greeting: false });
    const connection = await emu.waitForConnection(0);
    connection.inject({ action: { type: 'error', code: 'server_overloaded', message: 'Try later', errorType: 'server_error' } });
    const error = await events.waitFor(isType('error'));
    expect(error.fatal).toBe(false);
    expect(error.error).toMatchObject({ category: 'server', providerCode: 'server_overloaded' });
    session.sendDtmf('9');
    await events.waitFor((e) => e.type === 'transcript' && e.text === 'Still here.');
    // the harmless one is only logged
    connection.inject({ action: { type: 'error', code: 'response_cancel_not_active', message: 'no active response' } });
    connection.sendEvent({ type: 'input_audio_buffer.cleared' });
    await connection.waitForServerEvent('input_audio_buffer.cleared');
    expect(events.of('error')).toHaveLength(1);
  });

  it('a failed response is a non-fatal server error', async () => {
    const emu = await emulator({
      script: { greeting: { transcript: 'This will fail.', audioMs: 3000 } },
      timing: { audioChunkMs: 100, chunkIntervalMs: 20 },
    });
    const { events } = await open(emu);
    await events.waitFor(isType('audio'));
    const connection = await emu.waitForConnection(0);
    connection.inject({ action: { type: 'fail_response', message: 'boom' } });
    const error = await events.waitFor(isType('error'));
    expect(error).toMatchObject({ fatal: false, error: { category: 'server' } });
    expect(events.ended).toBe(false);
  });
});

describe('OpenAI Realtime adapter: reconnect', () => {
  it('a dropped socket is replaced: same session.update, conversation restored, no second greeting, audio flows again', async () => {
    const emu = await emulator({
      script: {
        greeting: { transcript: 'Hello, this is ACME.', audioMs: 400 },
        onUserTurn: (turn) => ({ transcript: `Answer ${turn.index + 1} on connection ${turn.connection.index + 1}.`, audioMs: 400 }),
      },
    });
    const { session, events, lines } = await open(emu, { reconnect: { maxAttempts: 3, firstDelayMs: 150, baseDelayMs: 10, maxDelayMs: 200, jitter: 0 } });
    await events.waitFor((e) => e.type === 'transcript' && e.text === 'Hello, this is ACME.');
    speak(session, speech8k);
    await events.waitFor((e) => e.type === 'transcript' && e.text === 'Answer 1 on connection 1.');
    const first = await emu.waitForConnection(0);
    await first.waitForServerEvent('response.done', (e) => (e['response'] as { status?: string }).status === 'completed' && first.responses.length === 2);

    first.inject({ action: { type: 'terminate' } });
    // caller audio during the gap is buffered and sent once the new connection is ready
    await waitForLog(lines, (l) => l.msg === 'OpenAI connection lost');
    const fromEvent = events.all.length;
    speak(session, speech8k);

    const second = await emu.waitForConnection(1);
    await waitForLog(lines, (l) => l.msg === 'OpenAI session restored');
    // The restore is sent before that log line; the emulator records it as the messages arrive.
    await second.waitForClientEvent('conversation.item.create', () => clientEvents(second, 'conversation.item.create').length === 3);
    expect(clientEvents(second, 'session.update').map((e) => e['session'])).toEqual(clientEvents(first, 'session.update').map((e) => e['session']));
    expect(clientEvents(second, 'conversation.item.create').map((e) => e['item'])).toEqual([
      { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Hello, this is ACME.' }] },
      { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Caller turn 1.' }] },
      { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Answer 1 on connection 1.' }] },
    ]);
    // the emulator holds the restored conversation
    expect(second.items.slice(0, 3).map((item) => (item.type === 'message' ? item.role : item.type))).toEqual(['assistant', 'user', 'assistant']);

    // the buffered speech reached the new connection and is answered there
    await events.waitFor((e) => e.type === 'transcript' && e.text === 'Answer 1 on connection 2.', fromEvent);
    await events.waitFor(isType('speech_started'), fromEvent);
    expect(second.inputAudioMs).toBeGreaterThan(1000);
    expect(second.responses.map((r) => r.trigger)).toEqual(['user_audio']); // no greeting again
    expect(events.of('error')).toEqual([]);
    expect(lines.some((l) => l.level === 40 && l.msg.includes('connection lost'))).toBe(true);
  });

  it('a stalled connection (no pong) is detected and replaced', async () => {
    const emu = await emulator({ script: { onUserText: (text, connection) => ({ transcript: `${text} on ${connection.index}`, audioMs: 200 }) } });
    const { session, events, lines } = await open(emu, { greeting: false, pingIntervalMs: 50, pongTimeoutMs: 100 });
    const first = await emu.waitForConnection(0);
    first.inject({ action: { type: 'stall' } });
    const second = await emu.waitForConnection(1);
    await waitForLog(lines, (l) => l.msg === 'OpenAI session restored');
    expect(lines.some((l) => l.level === 40 && l.msg === 'OpenAI stopped answering pings')).toBe(true);
    // the drop is reported as the stall, not as the close that ended the socket
    expect(lines.find((l) => l.msg === 'OpenAI connection lost')).toMatchObject({ category: 'timeout', err: 'the OpenAI connection stalled (no pong within 100 ms)' });
    session.sendDtmf('4');
    await events.waitFor((e) => e.type === 'transcript' && e.text === 'The caller pressed 4 on the keypad. on 1');
    expect(clientEvents(second, 'session.update')).toHaveLength(1);
  });

  it('an interrupted tool round trip is finished on the new connection', async () => {
    const emu = await emulator({
      script: {
        greeting: { transcript: '', functionCall: { name: 'avr_transfer', arguments: '{"transfer_extension":"7"}', callId: 'call_t' } },
        onToolOutput: (_callId, output) => ({ transcript: `Done: ${output}`, audioMs: 200 }),
      },
    });
    const { session, events } = await open(emu, {}, [TRANSFER]);
    await events.waitFor(isType('tool_call'));
    const first = await emu.waitForConnection(0);
    await first.waitForServerEvent('response.done');
    first.inject({ action: { type: 'terminate' } });
    await first.closed;
    session.submitToolResult('call_t', 'transferred'); // arrives while reconnecting (or just after)
    await events.waitFor((e) => e.type === 'transcript' && e.text === 'Done: transferred');
    const second = await emu.waitForConnection(1);
    const items = clientEvents(second, 'conversation.item.create').map((e) => e['item']);
    expect(items).toContainEqual({ type: 'function_call', call_id: 'call_t', name: 'avr_transfer', arguments: '{"transfer_extension":"7"}' });
    expect(items).toContainEqual({ type: 'function_call_output', call_id: 'call_t', output: 'transferred' });
    expect(clientEvents(second, 'response.create')).toHaveLength(1);
    expect(second.serverEvents.filter((e) => e.type === 'error')).toEqual([]);
  });

  it('gives up with a fatal error event when the budget is exhausted, and ends the events', async () => {
    const emu = await emulator();
    const { events } = await open(emu, { greeting: false, reconnect: { maxAttempts: 2, firstDelayMs: 0, baseDelayMs: 5, maxDelayMs: 10, jitter: 0 } });
    emu.queueConnectionFaults({ rejectUpgrade: { status: 503 }, connections: Infinity });
    const first = await emu.waitForConnection(0);
    first.inject({ action: { type: 'close', code: 1011, reason: 'internal error' } });
    const fatal = await events.waitFor((e) => e.type === 'error' && e.fatal);
    expect(fatal).toMatchObject({ error: { category: 'server', retryable: false } });
    expect((fatal as Extract<StsEvent, { type: 'error' }>).error.message).toContain('could not restore');
    await events.waitForEnd();
    expect(events.ended).toBe(true);
    expect(emu.upgrades.map((u) => u.status)).toEqual([101, 503, 503]);
  });

  it('a close that is not retryable (3000 mid-call) is fatal at once', async () => {
    const emu = await emulator();
    const { events } = await open(emu, { greeting: false });
    const first = await emu.waitForConnection(0);
    first.inject({ action: { type: 'error', code: 'invalid_api_key', message: 'key revoked', errorType: 'invalid_request_error' } });
    first.inject({ action: { type: 'close', code: 3000, reason: 'invalid_request_error.invalid_api_key' } });
    const fatal = await events.waitFor((e) => e.type === 'error' && e.fatal);
    expect(fatal).toMatchObject({ error: { category: 'auth' } });
    await events.waitForEnd();
    expect(emu.upgrades).toHaveLength(1);
  });

  it('never reconnects after close()', async () => {
    const emu = await emulator();
    const { session, events } = await open(emu, { greeting: false });
    const first = await emu.waitForConnection(0);
    await session.close();
    await first.closed;
    expect(first.closeInfo?.code).toBe(1000);
    await events.waitForEnd();
    expect(emu.upgrades).toHaveLength(1);
    session.sendAudio(new Int16Array(160));
    session.sendDtmf('1');
    expect(emu.upgrades).toHaveLength(1);
  });
});

describe('OpenAI Realtime adapter: resources', () => {
  const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

  it('close() releases every timer and socket the session created (keepalive, batching, reconnect)', async () => {
    const emu = await emulator({ timing: { pingIntervalMs: 60_000 } });
    const before = timers();
    const { logger } = memoryLogger();
    const controller = new AbortController();
    const session = await adapterFor(emu, { greeting: false, pingIntervalMs: 20, pongTimeoutMs: 1000, inputBatchMs: 60 }).connect(
      callContext({ logger, signal: controller.signal }),
    );
    const events = new EventLog(session);
    session.sendAudio(new Int16Array(160)); // a partial batch: its flush timer is pending
    const connection = await emu.waitForConnection(0);
    expect(timers()).toBeGreaterThan(before);
    controller.abort(); // the call ends: the session closes itself
    await events.done;
    await connection.closed;
    await session.close();
    expect(timers()).toBe(before);
    expect(emu.upgrades).toHaveLength(1);
  });
});

describe('OpenAI Realtime adapter: isolation', () => {
  it('two concurrent sessions share nothing', async () => {
    const emu = await emulator({
      script: { onUserText: (text, connection) => ({ transcript: `[${connection.index}] ${text}`, audioMs: 300 }) },
    });
    const a = await open(emu, { greeting: false, dtmfMessage: 'A pressed {{digit}}' });
    const b = await open(emu, { greeting: false, dtmfMessage: 'B pressed {{digit}}', audioFormat: 'pcm24' });
    a.session.sendDtmf('1');
    b.session.sendDtmf('2');
    const ta = await a.events.waitFor((e) => e.type === 'transcript' && e.role === 'agent');
    const tb = await b.events.waitFor((e) => e.type === 'transcript' && e.role === 'agent');
    expect(ta).toMatchObject({ text: '[0] A pressed 1' });
    expect(tb).toMatchObject({ text: '[1] B pressed 2' });
    speak(a.session, speechFor(a.session));
    await a.events.waitFor(isType('speech_started'));
    const [ca, cb] = [await emu.waitForConnection(0), await emu.waitForConnection(1)];
    expect(ca.inputAudioMs).toBeGreaterThan(0);
    expect(cb.inputAudioMs).toBe(0);
    expect(b.events.of('speech_started')).toEqual([]);
    const idsA = new Set(a.events.of('audio').map((e) => e.responseId));
    const idsB = new Set(b.events.of('audio').map((e) => e.responseId));
    expect([...idsA].some((id) => idsB.has(id))).toBe(false);
    expect(b.events.of('audio').every((e) => e.samples.length % 3 === 0 || e.samples.length > 0)).toBe(true);
    await a.session.close();
    expect(b.events.ended).toBe(false);
    b.session.sendDtmf('3');
    await b.events.waitFor((e) => e.type === 'transcript' && e.text === '[1] B pressed 3');
  });
});

describe('OpenAI Realtime adapter: real-world fidelity', () => {
  it('sends no instructions when none are configured or they resolve empty (the server default stays)', async () => {
    const emu = await emulator();
    for (const instructions of [undefined, () => '  ']) {
      const adapter = createOpenAiRealtime({ apiKey: API_KEY, url: emu.url, greeting: false, ...(instructions === undefined ? {} : { instructions }) });
      const session = await adapter.connect(callContext());
      cleanups.push(() => session.close());
    }
    for (const index of [0, 1]) {
      const connection = await emu.waitForConnection(index);
      await connection.waitForServerEvent('session.updated');
      expect(clientEvents(connection, 'session.update')[0]?.['session']).not.toHaveProperty('instructions');
      expect(connection.session.instructions).toContain('helpful'); // the server default
    }
  });

  it('a barge-in during argument streaming runs no tool with cut-off arguments', async () => {
    const emu = await emulator({
      script: { greeting: { transcript: '', functionCall: { name: 'avr_transfer', arguments: '{"transfer_extension":"600"}', callId: 'call_cut' } } },
      faults: [{ faults: [{ action: { type: 'cancel_response', reason: 'turn_detected' }, when: { on: 'function_call_arguments', response: 1, delta: 1 } }] }],
    });
    const { events } = await open(emu, {}, [TRANSFER]);
    const connection = await emu.waitForConnection(0);
    const done = await connection.waitForServerEvent('response.done');
    expect(done['response']).toMatchObject({ status: 'cancelled', output: [{ type: 'function_call', status: 'incomplete' }] });
    // the server does send the cut-off arguments as "done"
    const argsDone = await connection.waitForServerEvent('response.function_call_arguments.done');
    expect(argsDone['arguments']).not.toBe('{"transfer_extension":"600"}');
    connection.sendEvent({ type: 'input_audio_buffer.cleared' }); // a marker: once it is handled, so was everything before
    await connection.waitForServerEvent('input_audio_buffer.cleared');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(events.of('tool_call')).toEqual([]);
    expect(events.of('error')).toEqual([]);
  });

  it('parallel calls: one response.create once every call of the response has its result', async () => {
    const emu = await emulator({
      script: {
        greeting: {
          transcript: '',
          functionCalls: [
            { name: 'lookup_hours', arguments: '{"day":"monday"}', callId: 'call_a' },
            { name: 'lookup_hours', arguments: '{"day":"sunday"}', callId: 'call_b' },
          ],
        },
        onToolOutput: () => ({ transcript: 'Monday nine to five, Sunday closed.', audioMs: 300 }),
      },
    });
    const { session, events } = await open(emu, {}, [{ name: 'lookup_hours', description: 'Opening hours', parameters: { type: 'object' } }]);
    await events.waitFor((e) => e.type === 'tool_call' && e.callId === 'call_b');
    const connection = await emu.waitForConnection(0);
    await connection.waitForServerEvent('response.done');
    session.submitToolResult('call_b', 'closed');
    await connection.waitForClientEvent('conversation.item.create');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(clientEvents(connection, 'response.create')).toHaveLength(1); // the greeting only
    session.submitToolResult('call_a', '9-17');
    await events.waitFor((e) => e.type === 'transcript' && e.text === 'Monday nine to five, Sunday closed.');
    expect(connection.clientEvents.slice(-3).map((e) => e['type'])).toEqual(['conversation.item.create', 'conversation.item.create', 'response.create']);
    expect(clientEvents(connection, 'response.create')).toHaveLength(2);
    expect(connection.serverEvents.filter((e) => e.type === 'error')).toEqual([]);
  });
});

describe("OpenAI Realtime adapter: turn detection by the gateway's VAD (turn_detection none)", () => {
  const speechAfterPause = concatPcm(silence(2000), readWavAs8k(fixturePath('short')), silence(900));

  it('commits the caller turn at the end of speech and asks for the answer; sends only the speech (with pre-roll)', async () => {
    const emu = await emulator({ script: { onUserTurn: () => ({ transcript: 'We open at nine.', audioMs: 400 }) } });
    const vad = new EnergyTestVad();
    const { session, events } = await open(emu, { greeting: false, turnDetection: { type: 'none', silenceDurationMs: 600 }, vad });
    const connection = await emu.waitForConnection(0);
    await connection.waitForServerEvent('session.updated');
    expect(connection.session.audio.input.turn_detection).toBeNull();
    expect(vad.opened).toEqual([{ rate: 8000, options: { threshold: 0.5, minSilenceMs: 600, speechPadMs: 300 } }]);
    speak(session, speechAfterPause);
    await events.waitFor(isType('speech_started'));
    await events.waitFor(isType('speech_stopped'));
    const agent = await events.waitFor((e) => e.type === 'transcript' && e.role === 'agent');
    expect(agent).toMatchObject({ text: 'We open at nine.' });
    expect(connection.clientEvents.map((e) => e['type']).filter((t) => t !== 'input_audio_buffer.append').slice(-2)).toEqual([
      'input_audio_buffer.commit',
      'response.create',
    ]);
    expect(connection.responses.map((r) => r.trigger)).toEqual(['user_audio']);
    // the leading 2 s of silence never went out; the speech (plus up to 300 ms before it) did
    const totalMs = speechAfterPause.length / 8;
    expect(connection.inputAudioMs).toBeLessThan(totalMs - 1500);
    expect(connection.inputAudioMs).toBeGreaterThan(totalMs - 2000 - 100);
    expect(connection.serverEvents.filter((e) => e.type === 'error')).toEqual([]);
    await session.close();
    expect(vad.closed).toBe(1);
  });

  it('a turn that ends while reconnecting is committed on the new connection, after its audio and the restored conversation', async () => {
    const emu = await emulator({
      script: {
        onUserText: () => ({ transcript: 'Noted.', audioMs: 200 }),
        onUserTurn: (turn) => ({ transcript: `Answer on connection ${turn.connection.index + 1}.`, audioMs: 300 }),
      },
    });
    const vad = new EnergyTestVad();
    const { session, events, lines } = await open(emu, {
      greeting: false,
      turnDetection: { type: 'none', silenceDurationMs: 600 },
      vad,
      reconnect: { maxAttempts: 3, firstDelayMs: 300, baseDelayMs: 10, maxDelayMs: 300, jitter: 0 },
    });
    session.sendDtmf('5'); // a turn to restore
    await events.waitFor((e) => e.type === 'transcript' && e.text === 'Noted.');
    const first = await emu.waitForConnection(0);
    first.inject({ action: { type: 'terminate' } });
    await waitForLog(lines, (l) => l.msg === 'OpenAI connection lost');
    // The whole turn (speech, then its end) is judged while there is no connection.
    speak(session, speechAfterPause);
    await events.waitFor(isType('speech_stopped'));
    expect(emu.connections).toHaveLength(1);
    await events.waitFor((e) => e.type === 'transcript' && e.text === 'Answer on connection 2.');
    const second = await emu.waitForConnection(1);
    const types = second.clientEvents.map((e) => e['type']);
    const restored = types.indexOf('conversation.item.create');
    const firstAppend = types.indexOf('input_audio_buffer.append');
    const commit = types.indexOf('input_audio_buffer.commit');
    expect(restored).toBeGreaterThan(types.indexOf('session.update'));
    expect(firstAppend).toBeGreaterThan(restored);
    expect(commit).toBeGreaterThan(types.lastIndexOf('input_audio_buffer.append'));
    expect(types.slice(commit)).toEqual(['input_audio_buffer.commit', 'response.create']);
    expect(second.inputAudioMs).toBeGreaterThan(500);
    expect(second.responses.map((r) => r.trigger)).toEqual(['user_audio']);
    expect(second.serverEvents.filter((e) => e.type === 'error')).toEqual([]);
    expect(events.of('error')).toEqual([]);
  });

  it('speech over the agent: speech_started for the host and response.cancel for the active response', async () => {
    const emu = await emulator({
      script: { greeting: { transcript: 'A long welcome that the caller talks over.', audioMs: 6000 } },
      timing: { audioChunkMs: 100, chunkIntervalMs: 60 },
    });
    const vad = new EnergyTestVad();
    const { session, events } = await open(emu, { turnDetection: { type: 'none' }, vad });
    const first = await events.waitFor(isType('audio'));
    speak(session, speech8k);
    await events.waitFor(isType('speech_started'));
    const connection = await emu.waitForConnection(0);
    const cancel = await connection.waitForClientEvent('response.cancel');
    expect(cancel['response_id']).toBe(connection.responses[0]?.id);
    const done = await connection.waitForServerEvent('response.done');
    expect(done['response']).toMatchObject({ status: 'cancelled', status_details: { reason: 'client_cancelled' } });
    await events.waitFor((e) => e.type === 'response_done' && e.responseId === first.responseId);
    // the caller's words are then answered
    await connection.waitForClientEvent('input_audio_buffer.commit');
    await connection.waitForServerEvent('response.done', (e) => (e['response'] as { status?: string }).status === 'completed');
    expect(connection.serverEvents.filter((e) => e.type === 'error')).toEqual([]);
  });

  it('needs a VAD, and a VAD that fails ends the session (the caller could no longer be heard)', async () => {
    const emu = await emulator();
    expect(() => adapterFor(emu, { turnDetection: { type: 'none' } })).toThrow(/turnDetection none needs a vad/);
    const vad = new EnergyTestVad();
    const { session, events } = await open(emu, { greeting: false, turnDetection: { type: 'none' }, vad });
    vad.fail = true;
    speak(session, speech8k);
    const fatal = await events.waitFor((e) => e.type === 'error' && e.fatal);
    expect((fatal as Extract<StsEvent, { type: 'error' }>).error.message).toContain('VAD');
    await events.waitForEnd();
    await session.close();
    expect(vad.closed).toBe(1);
  });
});
