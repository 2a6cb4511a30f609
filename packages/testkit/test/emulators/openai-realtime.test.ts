import { decodeMulaw } from '@stsgate/core';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { tone } from '../../src/emulators/common.js';
import {
  startOpenAiRealtimeEmulator,
  type OpenAiRealtimeEmulator,
  type OpenAiRealtimeEmulatorOptions,
} from '../../src/emulators/openai-realtime.js';
import { goertzel, silence } from '../../src/signals.js';
import { appendPcm24k, AUTH, connectClient, KEY, utterance, type TestClient } from './ws-client.js';

let emulator: OpenAiRealtimeEmulator | undefined;
const clients: TestClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.ws.terminate();
  await emulator?.close();
  emulator = undefined;
});

async function start(options: Partial<OpenAiRealtimeEmulatorOptions> = {}): Promise<OpenAiRealtimeEmulator> {
  emulator = await startOpenAiRealtimeEmulator({ apiKey: KEY, ...options });
  return emulator;
}

async function open(
  emu: OpenAiRealtimeEmulator,
  query = '?model=gpt-realtime',
  headers: Record<string, string> = AUTH,
): Promise<TestClient> {
  const client = await connectClient(`${emu.url}${query}`, headers);
  clients.push(client);
  return client;
}

async function session(emu: OpenAiRealtimeEmulator): Promise<TestClient> {
  const client = await open(emu);
  await client.next('session.created');
  return client;
}

function errorOf(event: Record<string, unknown>): Record<string, unknown> {
  return event.error as Record<string, unknown>;
}

describe('handshake', () => {
  it('sends session.created with the GA defaults', async () => {
    const emu = await start();
    const client = await open(emu);
    const created = await client.next('session.created');
    expect(created.event_id).toMatch(/^event_/);
    expect(created.session).toMatchObject({
      type: 'realtime',
      object: 'realtime.session',
      model: 'gpt-realtime',
      output_modalities: ['audio'],
      max_output_tokens: 'inf',
      audio: {
        input: {
          format: { type: 'audio/pcm', rate: 24000 },
          transcription: null,
          turn_detection: { type: 'server_vad', threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 500, create_response: true, interrupt_response: true },
        },
        output: { format: { type: 'audio/pcm', rate: 24000 }, voice: 'alloy' },
      },
    });
    const connection = await emu.waitForConnection();
    expect(connection.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(connection.query).toEqual({ model: 'gpt-realtime' });
    expect(connection.accepted).toBe(true);
  });

  it('closes 3000 after an invalid_api_key error for a wrong key', async () => {
    const emu = await start();
    const client = await open(emu, '?model=gpt-realtime', { Authorization: 'Bearer sk-wrong-key-0000' });
    const closed = await client.closed;
    expect(closed).toEqual({ code: 3000, reason: 'invalid_request_error.invalid_api_key' });
    expect(client.types()).toEqual(['error']);
    expect(errorOf(client.events[0] as Record<string, unknown>)).toMatchObject({
      type: 'invalid_request_error',
      code: 'invalid_api_key',
      param: null,
      event_id: null,
    });
    expect(String(errorOf(client.events[0] as Record<string, unknown>).message)).not.toContain('sk-wrong-key-0000');
  });

  it('closes 3000 with the missing-auth error shape when no key is sent', async () => {
    const emu = await start();
    const client = await open(emu, '?model=gpt-realtime', {});
    expect(await client.closed).toEqual({ code: 3000, reason: 'invalid_request_error' });
    expect(errorOf(client.events[0] as Record<string, unknown>)).toMatchObject({
      code: null,
      message: 'Missing bearer or basic authentication in header',
    });
  });

  it('accepts the browser subprotocol key', async () => {
    const emu = await start();
    const ws = new WebSocket(`${emu.url}?model=gpt-realtime`, ['realtime', `openai-insecure-api-key.${KEY}`]);
    const first = await new Promise<Record<string, unknown>>((resolve) => ws.once('message', (data) => resolve(JSON.parse(String(data)) as Record<string, unknown>)));
    expect(first.type).toBe('session.created');
    expect(ws.protocol).toBe('realtime');
    ws.terminate();
  });

  it('refuses the beta shape with beta_api_shape_disabled and close 4000', async () => {
    const emu = await start();
    const client = await open(emu, '?model=gpt-realtime', { ...AUTH, 'OpenAI-Beta': 'realtime=v1' });
    expect((await client.closed).code).toBe(4000);
    expect(errorOf(client.events[0] as Record<string, unknown>)).toMatchObject({
      code: 'beta_api_shape_disabled',
      message: 'The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API.',
    });
  });

  it('closes 4000 for a missing or unknown model', async () => {
    const emu = await start();
    const missing = await open(emu, '');
    expect(await missing.closed).toEqual({ code: 4000, reason: 'invalid_request_error.missing_model' });
    expect(errorOf(missing.events[0] as Record<string, unknown>).code).toBe('missing_model');
    const unknown = await open(emu, '?model=gpt-3.5-turbo');
    expect(await unknown.closed).toEqual({ code: 4000, reason: 'invalid_request_error.invalid_model' });
  });

  it('answers other paths with 404', async () => {
    const emu = await start();
    const ws = new WebSocket(`ws://127.0.0.1:${String(emu.port)}/v1/other?model=gpt-realtime`, { headers: AUTH });
    const status = await new Promise<number>((resolve) => {
      ws.on('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0));
      ws.on('error', () => undefined);
    });
    expect(status).toBe(404);
    const http = await fetch(`${emu.baseUrl}/realtime`);
    expect(http.status).toBe(426);
  });

  it('answers pings', async () => {
    const emu = await start();
    const client = await session(emu);
    const pong = new Promise<string>((resolve) => client.ws.once('pong', (data) => resolve(data.toString())));
    client.ws.ping('hello');
    expect(await pong).toBe('hello');
  });
});

describe('session.update', () => {
  it('rejects session.temperature as unknown_parameter and drops the whole update', async () => {
    const emu = await start();
    const client = await session(emu);
    client.send({
      type: 'session.update',
      event_id: 'evt_client_1',
      session: { type: 'realtime', instructions: 'Be brief.', temperature: 0.8 },
    });
    const error = await client.next('error');
    expect(error.event_id).toMatch(/^event_/);
    expect(error.error).toEqual({
      type: 'invalid_request_error',
      code: 'unknown_parameter',
      message: "Unknown parameter: 'session.temperature'.",
      param: 'session.temperature',
      event_id: 'evt_client_1',
    });
    const connection = emu.connections[0];
    expect(connection?.session.instructions).not.toBe('Be brief.');
    expect(client.types()).not.toContain('session.updated');
  });

  it('requires session.type', async () => {
    const emu = await start();
    const client = await session(emu);
    client.send({ type: 'session.update', session: { instructions: 'x' } });
    expect(errorOf(await client.next('error'))).toMatchObject({ code: 'missing_required_parameter', param: 'session.type' });
  });

  it('rejects string audio formats and PCM rates other than 24000', async () => {
    const emu = await start();
    const client = await session(emu);
    client.send({ type: 'session.update', session: { type: 'realtime', audio: { input: { format: 'pcm16' } } } });
    expect(errorOf(await client.next('error'))).toMatchObject({
      code: 'invalid_type',
      param: 'session.audio.input.format',
      message: "Invalid type for 'session.audio.input.format': expected an object, but got a string instead.",
    });
    client.send({ type: 'session.update', session: { type: 'realtime', audio: { input: { format: { type: 'audio/pcm', rate: 16000 } } } } });
    expect(errorOf(await client.next('error', undefined, 2))).toMatchObject({
      code: 'integer_below_min_value',
      param: 'session.audio.input.format.rate',
    });
    client.send({ type: 'session.update', session: { type: 'realtime', audio: { output: { format: { type: 'g711_ulaw' } } } } });
    expect(errorOf(await client.next('error', undefined, 3))).toMatchObject({ code: 'invalid_value', param: 'session.audio.output.format.type' });
  });

  it('refuses an unknown voice or transcription model, and a transcription model it was told is shut down', async () => {
    const emu = await start({ refusedTranscriptionModels: ['whisper-1'] });
    const client = await session(emu);
    client.send({ type: 'session.update', session: { type: 'realtime', audio: { output: { voice: 'eve' } } } });
    expect(errorOf(await client.next('error'))).toMatchObject({ code: 'invalid_value', param: 'session.audio.output.voice' });
    client.send({ type: 'session.update', session: { type: 'realtime', audio: { input: { transcription: { model: 'whisper-2' } } } } });
    expect(errorOf(await client.next('error', undefined, 2))).toMatchObject({ code: 'invalid_value', param: 'session.audio.input.transcription.model' });
    client.send({ type: 'session.update', session: { type: 'realtime', audio: { input: { transcription: { model: 'whisper-1' } } } } });
    expect(errorOf(await client.next('error', undefined, 3))).toMatchObject({ code: 'invalid_value', param: 'session.audio.input.transcription.model' });
    expect(client.types()).not.toContain('session.updated');
    client.send({ type: 'session.update', session: { type: 'realtime', audio: { input: { transcription: { model: 'gpt-live-transcribe' } }, output: { voice: { id: 'voice_123' } } } } });
    expect((await client.next('session.updated')).session).toMatchObject({ audio: { input: { transcription: { model: 'gpt-live-transcribe' } }, output: { voice: { id: 'voice_123' } } } });
  });

  it('replies session.updated with the merged effective session', async () => {
    const emu = await start();
    const client = await session(emu);
    client.send({
      type: 'session.update',
      session: {
        type: 'realtime',
        instructions: 'You are the phone assistant of ACME.',
        audio: {
          input: {
            format: { type: 'audio/pcmu' },
            transcription: { model: 'gpt-4o-mini-transcribe', language: 'en' },
            turn_detection: { type: 'server_vad', silence_duration_ms: 500 },
          },
          output: { format: { type: 'audio/pcmu' }, voice: 'marin' },
        },
        tools: [{ type: 'function', name: 'avr_transfer', description: 'Transfer', parameters: { type: 'object', properties: {} } }],
        tool_choice: 'auto',
      },
    });
    const updated = await client.next('session.updated');
    expect(updated.session).toMatchObject({
      type: 'realtime',
      instructions: 'You are the phone assistant of ACME.',
      output_modalities: ['audio'],
      audio: {
        input: {
          format: { type: 'audio/pcmu' },
          transcription: { model: 'gpt-4o-mini-transcribe', language: 'en' },
          turn_detection: { type: 'server_vad', threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 500, create_response: true },
        },
        output: { format: { type: 'audio/pcmu' }, voice: 'marin', speed: 1 },
      },
      tools: [{ type: 'function', name: 'avr_transfer' }],
    });
    expect(emu.connections[0]?.session).toEqual(updated.session);
  });
});

describe('malformed input', () => {
  it('reports invalid_json, invalid_value and invalid_event and keeps the session open', async () => {
    const emu = await start();
    const client = await session(emu);
    client.ws.send('{not json');
    expect(errorOf(await client.next('error')).code).toBe('invalid_json');
    client.send({ type: 'response.audio.delta', event_id: 'e2' });
    const unknownType = errorOf(await client.next('error', (event) => errorOf(event).code !== 'invalid_json'));
    expect(unknownType).toMatchObject({ code: 'invalid_value', param: 'type', event_id: 'e2' });
    expect(String(unknownType.message)).toContain("'session.update'");
    client.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    expect(errorOf(await client.next('error', (event) => errorOf(event).code === 'invalid_event'))).toMatchObject({
      message: 'Expected a text WebSocket message; binary frames are not supported.',
    });
    client.send({ type: 'session.update', session: { type: 'realtime', instructions: 'still here' } });
    expect(((await client.next('session.updated')).session as Record<string, unknown>).instructions).toBe('still here');
    expect(emu.connections[0]?.invalidFrames).toBe(2);
  });
});

describe('spoken turn', () => {
  it('runs VAD, commits the user item, transcribes and streams a scripted reply in the documented order', async () => {
    const turns: { index: number; audioMs: number; transcriptHint?: string }[] = [];
    const emu = await start({
      script: {
        transcribe: ({ index }) => `hello number ${String(index + 1)}`,
        onUserTurn: (turn) => {
          turns.push({ index: turn.index, audioMs: turn.audioMs, ...(turn.transcriptHint === undefined ? {} : { transcriptHint: turn.transcriptHint }) });
          return { transcript: 'Hi there, how can I help?', audioMs: 500 };
        },
      },
    });
    const client = await session(emu);
    client.send({
      type: 'session.update',
      session: { type: 'realtime', audio: { input: { transcription: { model: 'gpt-4o-mini-transcribe' } } } },
    });
    await client.next('session.updated');
    appendPcm24k(client, concat(silence(400, 24000), utterance(600, 700)));
    const finished = await client.next('response.done');
    await client.next('conversation.item.input_audio_transcription.completed');
    await client.next('rate_limits.updated', undefined, client.events.indexOf(finished));

    const started = await client.next('input_audio_buffer.speech_started');
    const stopped = await client.next('input_audio_buffer.speech_stopped');
    expect(started.audio_start_ms).toBe(100); // 400 ms of silence, minus 300 ms prefix padding
    expect(stopped.audio_end_ms).toBe(1500); // 400 + 600 + 500 ms silence_duration_ms
    expect(stopped.item_id).toBe(started.item_id);
    expect(turns).toEqual([{ index: 0, audioMs: 1400, transcriptHint: 'hello number 1' }]);

    const order = client.types().filter((type) => !type.startsWith('conversation.item.input_audio_transcription') && type !== 'session.updated');
    const compact = order.filter((type, index) => type !== order[index - 1]);
    expect(compact).toEqual([
      'session.created',
      'input_audio_buffer.speech_started',
      'input_audio_buffer.speech_stopped',
      'input_audio_buffer.committed',
      'conversation.item.added',
      'conversation.item.done',
      'response.created',
      'rate_limits.updated',
      'response.output_item.added',
      'conversation.item.added',
      'response.content_part.added',
      'response.output_audio.delta',
      'response.output_audio_transcript.delta',
      'response.output_audio.delta',
      'response.output_audio_transcript.delta',
      'response.output_audio.delta',
      'response.output_audio_transcript.delta',
      'response.output_audio.delta',
      'response.output_audio_transcript.delta',
      'response.output_audio.delta',
      'response.output_audio_transcript.delta',
      'response.output_audio.done',
      'response.output_audio_transcript.done',
      'response.content_part.done',
      'conversation.item.done',
      'response.output_item.done',
      'response.done',
      'rate_limits.updated',
    ]);
    const audio = client.events
      .filter((event) => event.type === 'response.output_audio.delta')
      .map((event) => Buffer.from(String(event.delta), 'base64'));
    expect(audio.map((chunk) => chunk.length)).toEqual([4800, 4800, 4800, 4800, 4800]);
    const transcript = client.events
      .filter((event) => event.type === 'response.output_audio_transcript.delta')
      .map((event) => String(event.delta))
      .join('');
    expect(transcript).toBe('Hi there, how can I help?');
    expect((await client.next('response.output_audio_transcript.done')).transcript).toBe('Hi there, how can I help?');
    const done = await client.next('response.done');
    expect(done.response).toMatchObject({ status: 'completed', status_details: null, object: 'realtime.response' });
    expect((done.response as { usage: { total_tokens: number } }).usage.total_tokens).toBeGreaterThan(0);
    const completed = await client.next('conversation.item.input_audio_transcription.completed');
    expect(completed).toMatchObject({ item_id: started.item_id, content_index: 0, transcript: 'hello number 1' });
    const deltas = client.events.filter((event) => event.type === 'conversation.item.input_audio_transcription.delta').map((event) => event.delta);
    expect(deltas.join('')).toBe('hello number 1');
    const connection = emu.connections[0];
    expect(connection?.inputAudioMs).toBe(1700);
    expect(connection?.items.map((item) => (item.type === 'message' ? item.role : item.type))).toEqual(['user', 'assistant']);
    expect(client.events.every((event) => typeof event.event_id === 'string')).toBe(true);
  });

  it('decodes and encodes G.711 µ-law at 8 kHz', async () => {
    const emu = await start({ script: { onUserTurn: () => ({ transcript: 'ok', audio: tone(300, 24000, 1000) }) } });
    const client = await session(emu);
    client.send({
      type: 'session.update',
      session: { type: 'realtime', audio: { input: { format: { type: 'audio/pcmu' } }, output: { format: { type: 'audio/pcmu' } } } },
    });
    await client.next('session.updated');
    const { encodeMulaw } = await import('@stsgate/core');
    const speech = utterance(400, 600, 8000); // the default 500 ms of silence ends the turn
    for (let i = 0; i < speech.length; i += 160) {
      client.send({ type: 'input_audio_buffer.append', audio: Buffer.from(encodeMulaw(speech.subarray(i, i + 160))).toString('base64') });
    }
    await client.next('response.done');
    expect(emu.connections[0]?.inputAudioMs).toBe(1000);
    const bytes = Buffer.concat(
      client.events.filter((event) => event.type === 'response.output_audio.delta').map((event) => Buffer.from(String(event.delta), 'base64')),
    );
    expect(bytes.length).toBe(2400); // 300 ms at 8 bytes/ms
    const decoded = decodeMulaw(bytes);
    expect(goertzel(decoded.subarray(400, 2000), 1000)).toBeGreaterThan(100 * goertzel(decoded.subarray(400, 2000), 2500));
  });

  it('answers a user text message through onUserText and supports text output', async () => {
    const emu = await start({ script: { onUserText: (text) => ({ transcript: `You said: ${text}` }) } });
    const client = await session(emu);
    client.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Say hello' }] } });
    const added = await client.next('conversation.item.added');
    expect(added.item).toMatchObject({ type: 'message', role: 'user', status: 'completed', content: [{ type: 'input_text', text: 'Say hello' }] });
    await client.next('conversation.item.done');
    client.send({ type: 'response.create', response: { output_modalities: ['text'] } });
    const done = await client.next('response.done');
    expect(client.types()).toContain('response.output_text.delta');
    expect((await client.next('response.output_text.done')).text).toBe('You said: Say hello');
    expect(done.response).toMatchObject({ status: 'completed', output_modalities: ['text'] });
    expect(emu.connections[0]?.responses[0]?.trigger).toBe('user_text');
  });

  it('validates items per role', async () => {
    const emu = await start();
    const client = await session(emu);
    client.send({ type: 'conversation.item.create', item: { type: 'message', role: 'assistant', content: [{ type: 'input_text', text: 'x' }] } });
    expect(errorOf(await client.next('error'))).toMatchObject({ code: 'invalid_value', param: 'item.content[0].type' });
    client.send({ type: 'conversation.item.create', item: { type: 'function_call_output', output: '{}' } });
    expect(errorOf(await client.next('error', undefined, 2))).toMatchObject({ code: 'missing_required_parameter', param: 'item.call_id' });
  });

  it('commits manually with turn detection off and refuses an empty commit', async () => {
    const emu = await start();
    const client = await session(emu);
    client.send({ type: 'session.update', session: { type: 'realtime', audio: { input: { turn_detection: null } } } });
    await client.next('session.updated');
    client.send({ type: 'input_audio_buffer.commit' });
    expect(errorOf(await client.next('error'))).toMatchObject({
      code: 'input_audio_buffer_commit_empty',
      message: 'Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but buffer only has 0.00ms of audio.',
    });
    appendPcm24k(client, utterance(300, 300));
    client.send({ type: 'input_audio_buffer.commit' });
    await client.next('input_audio_buffer.committed');
    await client.next('conversation.item.done');
    expect(client.types()).not.toContain('input_audio_buffer.speech_started');
    expect(client.types()).not.toContain('response.created');
    client.send({ type: 'response.create' });
    await client.next('response.done');
    expect(emu.connections[0]?.responses[0]?.trigger).toBe('user_audio');
  });
});

describe('responses', () => {
  it('refuses a second response while one is active and a cancel with none active', async () => {
    const emu = await start({ script: { greeting: { transcript: 'Welcome to ACME.', audioMs: 2000 } } });
    const client = await session(emu);
    client.send({ type: 'response.cancel', event_id: 'c1' });
    expect(errorOf(await client.next('error'))).toMatchObject({
      code: 'response_cancel_not_active',
      message: 'Cancellation failed: no active response found',
      event_id: 'c1',
    });
    client.send({ type: 'response.create' });
    const created = await client.next('response.created');
    client.send({ type: 'response.create' });
    const busy = errorOf(await client.next('error', (event) => errorOf(event).code !== 'response_cancel_not_active'));
    const id = String((created.response as Record<string, unknown>).id);
    expect(busy).toMatchObject({
      code: 'conversation_already_has_active_response',
      message: `Conversation already has an active response in progress: ${id}. Wait until the response is finished before creating a new one.`,
    });
    await client.next('response.output_audio.delta');
    client.send({ type: 'response.cancel' });
    const done = await client.next('response.done');
    expect(done.response).toMatchObject({ id, status: 'cancelled', status_details: { type: 'cancelled', reason: 'client_cancelled' } });
    const item = (done.response as { output: Record<string, unknown>[] }).output[0];
    expect(item).toMatchObject({ type: 'message', role: 'assistant', status: 'incomplete' });
    expect(emu.connections[0]?.responses[0]?.trigger).toBe('greeting');
  });

  it('cancels the active response on speech_started (barge-in) and enforces the truncate rules', async () => {
    const emu = await start({ script: { greeting: { transcript: 'A long greeting that goes on.', audioMs: 3000 } } });
    const client = await session(emu);
    client.send({ type: 'response.create' });
    await client.next('response.output_audio.delta');
    await emu.waitFor(() => (emu.connections[0]?.activeResponse?.audioChunks ?? 0) >= 3);
    appendPcm24k(client, tone(200, 24000));
    const started = await client.next('input_audio_buffer.speech_started');
    const done = await client.next('response.done');
    expect(client.events.indexOf(started)).toBeLessThan(client.events.indexOf(done));
    expect(done.response).toMatchObject({ status: 'cancelled', status_details: { type: 'cancelled', reason: 'turn_detected' } });
    const connection = emu.connections[0];
    const record = connection?.responses[0];
    const itemId = String(record?.messageItemId);
    const sentMs = connection?.assistantAudioMs(itemId) ?? 0;
    expect(sentMs).toBeGreaterThanOrEqual(300);
    expect(sentMs).toBeLessThan(3000);

    const attempts: Record<string, unknown>[] = [
      { item_id: itemId, content_index: 0, audio_end_ms: sentMs + 1000 },
      { item_id: itemId, content_index: 0, audio_end_ms: 12.5 },
      { item_id: itemId, content_index: 0, audio_end_ms: -11 },
      { item_id: 'item_nope', content_index: 0, audio_end_ms: 0 },
    ];
    for (const attempt of attempts) client.send({ type: 'conversation.item.truncate', ...attempt });
    await client.next('error', (event) => errorOf(event).param === 'item_id'); // errors arrive in request order
    const errors = client.events.filter((event) => event.type === 'error').map(errorOf);
    expect(errors).toHaveLength(4);
    expect(errors[0]).toMatchObject({ code: null, message: `Audio content of ${String(sentMs)}ms is already shorter than ${String(sentMs + 1000)}ms` });
    expect(errors[1]).toMatchObject({ code: 'invalid_type', param: 'audio_end_ms' });
    expect(errors[2]).toMatchObject({
      code: 'integer_below_min_value',
      message: "Invalid 'audio_end_ms': integer below minimum value. Expected a value >= 0, but got -11 instead.",
    });
    expect(errors[3]).toMatchObject({ param: 'item_id' });
    client.send({ type: 'conversation.item.truncate', item_id: itemId, content_index: 0, audio_end_ms: sentMs - 100 });
    const truncated = await client.next('conversation.item.truncated');
    expect(truncated).toMatchObject({ item_id: itemId, content_index: 0, audio_end_ms: sentMs - 100 });
    expect(connection?.truncations).toEqual([{ itemId, contentIndex: 0, audioEndMs: sentMs - 100, audioSentMs: sentMs }]);
    expect(connection?.assistantAudioMs(itemId)).toBe(sentMs - 100);
  });

  it('refuses to truncate a user item', async () => {
    const emu = await start();
    const client = await session(emu);
    client.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hi' }] } });
    const added = await client.next('conversation.item.added');
    client.send({ type: 'conversation.item.truncate', item_id: (added.item as { id: string }).id, content_index: 0, audio_end_ms: 0 });
    expect(errorOf(await client.next('error'))).toMatchObject({ code: null, message: 'Only model output audio messages can be truncated' });
  });

  it('runs a function call round trip', async () => {
    const outputs: { callId: string; output: string }[] = [];
    const emu = await start({
      script: {
        greeting: { transcript: '', functionCall: { name: 'avr_transfer', arguments: '{"transfer_extension":"600"}', callId: 'call_fixed' } },
        onToolOutput: (callId, output) => {
          outputs.push({ callId, output });
          return { transcript: 'Transferring you now.', audioMs: 300 };
        },
      },
    });
    const client = await session(emu);
    client.send({ type: 'response.create' });
    const done = await client.next('response.done');
    await client.next('rate_limits.updated', undefined, client.events.indexOf(done));
    expect(client.types(1)).toEqual([
      'response.created',
      'rate_limits.updated',
      'response.output_item.added',
      'conversation.item.added',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.done',
      'conversation.item.done',
      'response.output_item.done',
      'response.done',
      'rate_limits.updated',
    ]);
    expect((await client.next('response.output_item.added')).item).toMatchObject({
      type: 'function_call',
      name: 'avr_transfer',
      call_id: 'call_fixed',
      arguments: '',
      status: 'in_progress',
    });
    const argsDone = await client.next('response.function_call_arguments.done');
    expect(argsDone).toMatchObject({ call_id: 'call_fixed', name: 'avr_transfer', arguments: '{"transfer_extension":"600"}' });
    expect(done.response).toMatchObject({
      status: 'completed',
      output: [{ type: 'function_call', call_id: 'call_fixed', arguments: '{"transfer_extension":"600"}', status: 'completed' }],
    });
    const mark = client.events.length;
    client.send({ type: 'conversation.item.create', item: { type: 'function_call_output', call_id: 'call_fixed', output: '{"status":"transferred"}' } });
    client.send({ type: 'response.create' });
    await client.next('response.done', undefined, mark);
    expect(outputs).toEqual([{ callId: 'call_fixed', output: '{"status":"transferred"}' }]);
    expect((await client.next('response.output_audio_transcript.done', undefined, mark)).transcript).toBe('Transferring you now.');
    expect(emu.connections[0]?.items.map((item) => item.type)).toEqual(['function_call', 'function_call_output', 'message']);
  });
});

describe('strict like the GA server', () => {
  it('rejects a function_call_output whose call_id is not in the conversation', async () => {
    const emu = await start();
    const client = await session(emu);
    client.send({ type: 'conversation.item.create', event_id: 'out_1', item: { type: 'function_call_output', call_id: 'call_nope', output: '{}' } });
    expect(errorOf(await client.next('error'))).toEqual({
      type: 'invalid_request_error',
      code: 'invalid_tool_call_id',
      message: "Tool call ID 'call_nope' not found in conversation.",
      param: null,
      event_id: 'out_1',
    });
    expect(emu.connections[0]?.items).toEqual([]);
    // a call the client created itself is in the conversation: its output is accepted
    client.send({ type: 'conversation.item.create', item: { type: 'function_call', call_id: 'call_mine', name: 'f', arguments: '{}' } });
    client.send({ type: 'conversation.item.create', item: { type: 'function_call_output', call_id: 'call_mine', output: '{}' } });
    await client.next('conversation.item.added', (event) => (event.item as { type?: string }).type === 'function_call_output');
  });

  it('cannot populate assistant audio with conversation.item.create', async () => {
    const emu = await start();
    const client = await session(emu);
    client.send({
      type: 'conversation.item.create',
      item: { type: 'message', role: 'assistant', content: [{ type: 'output_audio', transcript: 'Thanks for calling.' }] },
    });
    expect(errorOf(await client.next('error'))).toMatchObject({
      code: 'missing_required_parameter',
      message: "Missing required parameter: 'item.content[0].text'.",
      param: 'item.content[0].text',
    });
    client.send({ type: 'conversation.item.create', item: { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Thanks for calling.' }] } });
    await client.next('conversation.item.added');
  });

  it('truncation deletes the transcript the caller did not hear', async () => {
    const emu = await start({ script: { greeting: { transcript: 'A long greeting that goes on and on.', audioMs: 3000 } } });
    const client = await session(emu);
    client.send({ type: 'response.create' });
    await emu.waitFor(() => (emu.connections[0]?.activeResponse?.audioChunks ?? 0) >= 3);
    client.send({ type: 'response.cancel' });
    const done = await client.next('response.done');
    const itemId = String(((done.response as { output: { id: string }[] }).output[0] ?? { id: '' }).id);
    client.send({ type: 'conversation.item.truncate', item_id: itemId, content_index: 0, audio_end_ms: 150 });
    await client.next('conversation.item.truncated');
    client.send({ type: 'conversation.item.retrieve', item_id: itemId });
    const retrieved = await client.next('conversation.item.retrieved');
    expect(retrieved.item).toMatchObject({ id: itemId, content: [{ type: 'output_audio', transcript: '' }] });
  });

  it('sends rate_limits.updated at the start of every response', async () => {
    const emu = await start({ script: { greeting: { transcript: 'Hi.', audioMs: 300 } } });
    const client = await session(emu);
    client.send({ type: 'response.create' });
    await client.next('response.done');
    const types = client.types();
    expect(types[types.indexOf('response.created') + 1]).toBe('rate_limits.updated');
  });
});

describe('function calls', () => {
  it('streams several calls in one response (parallel tool calls)', async () => {
    const emu = await start({
      script: {
        greeting: {
          transcript: '',
          functionCalls: [
            { name: 'lookup', arguments: '{"day":"mon"}', callId: 'call_1' },
            { name: 'lookup', arguments: '{"day":"sun"}', callId: 'call_2' },
          ],
        },
        onToolOutput: (callId) => ({ transcript: `Answer after ${callId}.`, audioMs: 300 }),
      },
    });
    const client = await session(emu);
    client.send({ type: 'response.create' });
    const done = await client.next('response.done');
    expect(done.response).toMatchObject({
      status: 'completed',
      output: [
        { type: 'function_call', call_id: 'call_1', arguments: '{"day":"mon"}', status: 'completed' },
        { type: 'function_call', call_id: 'call_2', arguments: '{"day":"sun"}', status: 'completed' },
      ],
    });
    const argsDone = client.events.filter((event) => event.type === 'response.function_call_arguments.done');
    expect(argsDone.map((event) => [event.call_id, event.output_index])).toEqual([
      ['call_1', 0],
      ['call_2', 1],
    ]);
    expect(emu.connections[0]?.responses[0]?.callIds).toEqual(['call_1', 'call_2']);
    const mark = client.events.length;
    client.send({ type: 'conversation.item.create', item: { type: 'function_call_output', call_id: 'call_1', output: 'a' } });
    client.send({ type: 'conversation.item.create', item: { type: 'function_call_output', call_id: 'call_2', output: 'b' } });
    client.send({ type: 'response.create' });
    expect((await client.next('response.output_audio_transcript.done', undefined, mark)).transcript).toBe('Answer after call_2.');
  });

  it('a response interrupted during argument streaming ends the call item incomplete, with the cut-off arguments', async () => {
    const emu = await start({
      script: { greeting: { transcript: '', functionCall: { name: 'avr_transfer', arguments: '{"transfer_extension":"600"}', callId: 'call_cut' } } },
      faults: [{ faults: [{ action: { type: 'cancel_response', reason: 'turn_detected' }, when: { on: 'function_call_arguments', response: 1, delta: 1 } }] }],
    });
    const client = await session(emu);
    client.send({ type: 'response.create' });
    const done = await client.next('response.done');
    await client.next('rate_limits.updated', undefined, client.events.indexOf(done));
    expect(client.types(1)).toEqual([
      'response.created',
      'rate_limits.updated',
      'response.output_item.added',
      'conversation.item.added',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.done',
      'conversation.item.done',
      'response.output_item.done',
      'response.done',
      'rate_limits.updated',
    ]);
    const delta = await client.next('response.function_call_arguments.delta');
    const argsDone = await client.next('response.function_call_arguments.done');
    expect(argsDone).toMatchObject({ call_id: 'call_cut', name: 'avr_transfer', arguments: delta.delta });
    expect((await client.next('response.output_item.done')).item).toMatchObject({ type: 'function_call', status: 'incomplete', arguments: delta.delta });
    expect(done.response).toMatchObject({ status: 'cancelled', status_details: { type: 'cancelled', reason: 'turn_detected' } });
  });
});

describe('faults', () => {
  it('rejects upgrades with an HTTP status and JSON body, for the planned number of attempts', async () => {
    const emu = await start({ faults: [{ rejectUpgrade: { status: 429 }, connections: 2 }] });
    for (let attempt = 0; attempt < 2; attempt++) {
      const ws = new WebSocket(`${emu.url}?model=gpt-realtime`, { headers: AUTH });
      ws.on('error', () => undefined);
      const { status, body, retryAfter } = await new Promise<{ status: number; body: string; retryAfter: string | undefined }>((resolve) => {
        ws.on('unexpected-response', (_request, response) => {
          let text = '';
          response.on('data', (chunk: Buffer) => (text += chunk.toString()));
          response.on('end', () => resolve({ status: response.statusCode ?? 0, body: text, retryAfter: response.headers['retry-after'] }));
        });
      });
      expect(status).toBe(429);
      expect(retryAfter).toBe('1');
      expect(JSON.parse(body)).toMatchObject({ error: { code: 'rate_limit_exceeded' } });
    }
    const client = await session(emu);
    expect(client.types()).toEqual(['session.created']);
    expect(emu.upgrades.map((upgrade) => upgrade.status)).toEqual([429, 429, 101]);
  });

  it('injects an error event and a close at run time', async () => {
    const emu = await start();
    const client = await session(emu);
    const connection = await emu.waitForConnection();
    connection.inject({ action: { type: 'error', code: 'server_error', message: 'boom' } });
    expect(errorOf(await client.next('error'))).toMatchObject({ code: 'server_error', message: 'boom', type: 'server_error' });
    connection.inject({ action: { type: 'close', code: 1011, reason: 'internal' }, when: { on: 'client_event', type: 'session.update' } });
    client.send({ type: 'session.update', session: { type: 'realtime' } });
    expect(await client.closed).toEqual({ code: 1011, reason: 'internal' });
    expect(client.types()).toContain('session.updated');
  });

  it("drops the socket right after the Kth response's first audio chunk", async () => {
    const emu = await start({ faults: [{ faults: [{ action: { type: 'terminate' }, when: { on: 'response_audio', response: 2 } }] }] });
    const client = await session(emu);
    client.send({ type: 'response.create' });
    await client.next('response.done');
    client.send({ type: 'response.create' });
    expect((await client.closed).code).toBe(1006);
    const secondCreated = client.events.filter((event) => event.type === 'response.created')[1];
    const after = client.events.slice(client.events.indexOf(secondCreated as Record<string, unknown>));
    expect(after.filter((event) => event.type === 'response.output_audio.delta')).toHaveLength(1);
    expect(emu.connections[0]?.responses[1]?.audioChunks).toBe(1);
  });

  it('stalls: no more events, no pongs', async () => {
    const emu = await start({ faults: [{ faults: [{ action: { type: 'stall' }, when: { on: 'server_events', count: 1 } }] }] });
    const client = await session(emu);
    const connection = await emu.waitForConnection();
    let ponged = false;
    client.ws.on('pong', () => (ponged = true));
    client.ws.ping();
    client.send({ type: 'session.update', session: { type: 'realtime', instructions: 'x' } });
    await connection.waitForClientEvent('session.update');
    // A ping sent after the session.update is handled: give the emulator the same round trip to (not) answer it.
    const probe = await connectClient(`${emu.url}?model=gpt-realtime`, AUTH);
    clients.push(probe);
    await probe.next('session.created');
    expect(ponged).toBe(false);
    expect(client.types()).toEqual(['session.created']);
    expect(connection.stalled).toBe(true);
    expect(connection.clientEvents).toHaveLength(1);
  });

  it('ends the active response as failed', async () => {
    const emu = await start({ script: { greeting: { transcript: 'hello there', audioMs: 1000 } } });
    const client = await session(emu);
    client.send({ type: 'response.create' });
    await client.next('response.output_audio.delta');
    emu.connections[0]?.inject({ action: { type: 'fail_response' } });
    const done = await client.next('response.done');
    expect(done.response).toMatchObject({ status: 'failed', status_details: { type: 'failed', error: { type: 'server_error' } } });
  });
});

function concat(...parts: Int16Array[]): Int16Array {
  const out = new Int16Array(parts.reduce((n, part) => n + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
