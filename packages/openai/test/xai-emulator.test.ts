import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { ProviderError } from '@stsgate/core';
import { startXaiRealtimeEmulator } from '@stsgate/testkit';
import type { OpenAiRealtimeEmulator, RealtimeEmulatorConnection, RealtimeEmulatorTiming } from '@stsgate/testkit';
import { RealtimeEventMapper, audioCodec, createOpenAiRealtime, createXaiRealtime, parseServerMessage, xaiProfile } from '../src/index.js';
import type { MapperSink } from '../src/index.js';
import { callContext } from './helpers.js';

// The emulator in xAI mode refuses what xAI's Voice Agent API refuses (docs.x.ai), or more: a client that passes it
// sends only what xAI documents.
const API_KEY = 'xai-test-emulator-0123456789';

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function emulator(timing?: RealtimeEmulatorTiming): Promise<OpenAiRealtimeEmulator> {
  const emu = await startXaiRealtimeEmulator({
    apiKey: API_KEY,
    script: { defaultReply: { transcript: 'Hello there.', audioMs: 300 } },
    ...(timing === undefined ? {} : { timing }),
  });
  cleanups.push(() => emu.close());
  return emu;
}

type Json = Record<string, unknown>;

/** `ms` of a 440 Hz tone at 24 kHz, base64 PCM16 (speech as far as the emulator's energy VAD is concerned). */
function toneBase64(ms: number): string {
  const samples = new Int16Array((24000 * ms) / 1000).map((_, i) => Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / 24000)));
  return Buffer.from(samples.buffer).toString('base64');
}

/** A raw client: every server event, in order. */
async function client(emu: OpenAiRealtimeEmulator, query = '', headers: Record<string, string> = { Authorization: `Bearer ${API_KEY}` }, protocols?: string[]) {
  const ws = new WebSocket(`${emu.url}${query}`, protocols, { headers });
  cleanups.push(() => ws.terminate());
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const connection: RealtimeEmulatorConnection = await emu.waitForConnection(emu.connections.length - 1 < 0 ? 0 : emu.connections.length - 1);
  /** The first server event of `type` (as the emulator sent it) from index `from` on. */
  const waitFor = (type: string, from = 0): Promise<Json> => connection.waitForServerEvent(type, (event) => connection.serverEvents.indexOf(event) >= from);
  const send = (event: Json): void => ws.send(JSON.stringify(event));
  /** Sends `event` and returns the `error` it earned. */
  const refused = async (event: Json): Promise<Json> => {
    const from = connection.serverEvents.length;
    send(event);
    const error = await connection.waitForServerEvent('error', (e) => connection.serverEvents.indexOf(e) >= from);
    return error['error'] as Json;
  };
  await waitFor('conversation.created');
  return { ws, events: connection.serverEvents, connection, waitFor, send, refused };
}

/** The upgrade answer: the HTTP status and body of a refused upgrade. */
function refusedUpgrade(url: string, headers: Record<string, string>): Promise<{ status: number; body: Json }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.on('unexpected-response', (_request, response) => {
      let text = '';
      response.on('data', (chunk: Buffer) => (text += chunk.toString()));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) as Json }));
    });
    ws.on('open', () => reject(new Error('the upgrade was accepted')));
    ws.on('error', () => undefined);
  });
}

describe('emulator in xAI mode: connection', () => {
  it('checks the key and the model at the upgrade (HTTP 401 / 404, xAI REST body), never echoing the key', async () => {
    const emu = await emulator();
    const none = await refusedUpgrade(emu.url, {});
    expect(none.status).toBe(401);
    const wrong = await refusedUpgrade(emu.url, { Authorization: 'Bearer xai-wrongwrongwrong1234' });
    expect(wrong.status).toBe(401);
    expect(JSON.stringify(wrong.body)).not.toContain('xai-wrongwrongwrong1234');
    expect(wrong.body).toMatchObject({ code: expect.any(String) as unknown, error: expect.stringContaining('Incorrect API key') as unknown });
    const model = await refusedUpgrade(`${emu.url}?model=gpt-realtime`, { Authorization: `Bearer ${API_KEY}` });
    expect(model.status).toBe(404);
    expect(emu.connections).toHaveLength(0);
  });

  it('opens with session.created then conversation.created, xAI defaults, model grok-voice-latest when none is given', async () => {
    const emu = await emulator();
    const { events, connection } = await client(emu);
    expect(events.map((event) => event['type'])).toEqual(['session.created', 'conversation.created']);
    expect(connection.model).toBe('grok-voice-latest');
    expect(events[0]?.['session']).toMatchObject({
      voice: 'eve',
      turn_detection: { type: 'server_vad', threshold: 0.85, prefix_padding_ms: 333 },
      audio: { input: { format: { type: 'audio/pcm', rate: 24000 } } },
    });
    expect(events[0]?.['session']).not.toHaveProperty('type');
  });

  it('takes the browser subprotocol xai-client-secret.<key> too', async () => {
    const emu = await emulator();
    const { ws } = await client(emu, '?model=grok-voice-think-fast-1.0', {}, [`xai-client-secret.${API_KEY}`]);
    expect(ws.protocol).toBe(`xai-client-secret.${API_KEY}`);
  });
});

describe('emulator in xAI mode: what xAI does not take', () => {
  it('refuses conversation.item.retrieve ("Not supported") and GA-only events with an invalid_event error; the session stays open', async () => {
    const emu = await emulator();
    const { refused, waitFor, send, ws } = await client(emu);
    for (const type of ['conversation.item.retrieve', 'session.close', 'output_audio_buffer.clear']) {
      expect(await refused({ type, event_id: 'evt_1', item_id: 'item_x' })).toEqual({
        type: 'invalid_event',
        code: 'invalid_event', // xAI: "Error code string (same as type)"
        event_id: 'evt_1',
        param: 'type',
        message: `Unsupported event type: '${type}'.`,
      });
    }
    send({ type: 'session.update', session: { voice: 'ara' } });
    expect((await waitFor('session.updated'))['session']).toMatchObject({ voice: 'ara' });
    expect(ws.readyState).toBe(WebSocket.OPEN);
  });

  it("refuses OpenAI GA session fields and values, applying nothing of a refused update", async () => {
    const emu = await emulator();
    const { refused, connection } = await client(emu);
    const cases: [Json, string][] = [
      [{ type: 'realtime' }, 'session.type'],
      [{ output_modalities: ['audio'] }, 'session.output_modalities'],
      [{ tool_choice: 'auto' }, 'session.tool_choice'],
      [{ audio: { output: { voice: 'eve' } } }, 'session.audio.output.voice'],
      [{ turn_detection: { type: 'server_vad', create_response: true } }, 'session.turn_detection.create_response'],
      // Only the documented transcription model (avr-sts-xai's whisper-1 is not)
      [{ audio: { input: { transcription: { model: 'whisper-1' } } } }, 'session.audio.input.transcription.model'],
      [{ voice: 'alloy' }, 'session.voice'],
      [{ turn_detection: { type: 'semantic_vad' } }, 'session.turn_detection.type'],
      [{ turn_detection: { type: 'server_vad', threshold: 0.95 } }, 'session.turn_detection.threshold'],
      [{ voice: 'Sal', instructions: 7 }, 'session.instructions'],
    ];
    // Every error's code is its type (xAI's codes are not OpenAI's): `param` names the field.
    for (const [session, param] of cases) {
      expect(await refused({ type: 'session.update', session })).toMatchObject({ type: 'invalid_request_error', code: 'invalid_request_error', param });
    }
    expect(connection.xaiSession).toMatchObject({ voice: 'eve', instructions: '' }); // nothing of the last update applied
  });

  it('input_audio_buffer.commit only with turn_detection {type: null}; then the turn is committed and answered', async () => {
    const emu = await emulator();
    const { refused, send, waitFor, events } = await client(emu);
    const audio = toneBase64(400);
    send({ type: 'input_audio_buffer.append', audio });
    expect(await refused({ type: 'input_audio_buffer.commit' })).toMatchObject({ message: expect.stringContaining('turn_detection type is null') as unknown });
    send({ type: 'session.update', session: { turn_detection: { type: null } } });
    await waitFor('session.updated');
    send({ type: 'input_audio_buffer.append', audio });
    send({ type: 'input_audio_buffer.commit' });
    send({ type: 'response.create' });
    await waitFor('response.done');
    const types = events.map((event) => event['type']);
    expect(types).toContain('input_audio_buffer.committed');
    expect(types).toContain('conversation.item.input_audio_transcription.completed');
    // What xAI does not emit: conversation.item.done, transcription deltas, rate_limits.updated
    expect(types.filter((type) => ['conversation.item.done', 'conversation.item.input_audio_transcription.delta', 'rate_limits.updated'].includes(String(type)))).toEqual([]);
    const done = events.find((event) => event['type'] === 'response.done')?.['response'] as Json;
    expect(done['status_details']).toBe('unimplemented');
    expect(JSON.stringify(done['output'])).toContain('"type":"audio"');
  });

  it("items in xAI's parts: assistant text is `text`, not output_text; response.create takes modalities/instructions/metadata only", async () => {
    const emu = await emulator();
    const { refused, send, waitFor } = await client(emu);
    expect(
      await refused({ type: 'conversation.item.create', item: { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Hi' }] } }),
    ).toMatchObject({ code: 'invalid_request_error', param: 'item.content[0].type' });
    send({ type: 'conversation.item.create', item: { type: 'message', role: 'assistant', content: [{ type: 'text', text: 'Hi' }] } });
    expect(((await waitFor('conversation.item.added'))['item'] as Json)['content']).toEqual([{ type: 'text', text: 'Hi' }]);
    expect(await refused({ type: 'response.create', response: { output_modalities: ['audio'] } })).toMatchObject({ param: 'response.output_modalities' });
    expect(await refused({ type: 'response.create', response: { input: [] } })).toMatchObject({ param: 'response.input' });
  });

  it('force_message: the server speaks the text as a whole response, without response.create', async () => {
    const emu = await emulator();
    const { send, waitFor, connection } = await client(emu);
    send({ type: 'conversation.item.create', item: { type: 'force_message', role: 'assistant', content: [{ type: 'output_text', text: 'Welcome to ACME.' }] } });
    expect((await waitFor('response.output_audio_transcript.done'))['transcript']).toBe('Welcome to ACME.');
    await waitFor('response.done');
    expect(connection.responses.map((response) => [response.trigger, response.status])).toEqual([['force_message', 'completed']]);
  });

  it("force_message as strict as xAI's schema: role assistant required, one output_text part with text, interruptible a boolean, nothing else", async () => {
    const emu = await emulator();
    const { refused, connection } = await client(emu);
    const part = { type: 'output_text', text: 'Welcome.' };
    const cases: [Json, string][] = [
      [{ type: 'force_message', content: [part] }, 'item.role'],
      [{ type: 'force_message', role: 'user', content: [part] }, 'item.role'],
      [{ type: 'force_message', role: 'assistant' }, 'item.content'],
      [{ type: 'force_message', role: 'assistant', content: [{ type: 'text', text: 'Welcome.' }] }, 'item.content[0].type'],
      [{ type: 'force_message', role: 'assistant', content: [{ type: 'output_text' }] }, 'item.content[0].text'],
      [{ type: 'force_message', role: 'assistant', content: [part, part] }, 'item.content'],
      [{ type: 'force_message', role: 'assistant', content: [part], interruptible: 'no' }, 'item.interruptible'],
      [{ type: 'force_message', role: 'assistant', content: [part], voice: 'eve' }, 'item.voice'],
    ];
    for (const [item, param] of cases) expect(await refused({ type: 'conversation.item.create', item })).toMatchObject({ code: 'invalid_request_error', param });
    expect(connection.responses).toEqual([]);
  });

  it('force_message with interruptible: false drops the caller audio until it has played: no speech start, no barge-in, nothing to commit', async () => {
    // 100 ms of audio every 100 ms: the 1.2 s message plays long after the caller's audio is in.
    const emu = await emulator({ audioChunkMs: 100, chunkIntervalMs: 100 });
    const { send, waitFor, connection, events } = await client(emu);
    const text = 'This call is being recorded for quality.';
    send({ type: 'conversation.item.create', item: { type: 'force_message', role: 'assistant', interruptible: false, content: [{ type: 'output_text', text }] } });
    await waitFor('response.output_audio.delta');
    send({ type: 'input_audio_buffer.append', audio: toneBase64(600) });
    send({ type: 'input_audio_buffer.append', audio: Buffer.alloc(24 * 2 * 700).toString('base64') }); // silence that would end the turn
    await emu.waitFor(() => connection.clientEvents.filter((event) => event['type'] === 'input_audio_buffer.append').length === 2);
    expect(connection.activeResponse?.trigger).toBe('force_message'); // the audio arrived while it played
    const done = await waitFor('response.done');
    expect((done['response'] as Json)['status']).toBe('completed');
    const types = events.map((event) => event['type']);
    expect(types.filter((type) => String(type).startsWith('input_audio_buffer.'))).toEqual([]);
    expect(connection.responses.map((response) => response.trigger)).toEqual(['force_message']);
    // Once it has played, the caller is heard again
    const from = events.length;
    send({ type: 'input_audio_buffer.append', audio: toneBase64(600) });
    await waitFor('input_audio_buffer.speech_started', from);
  });

  it('force_message is interruptible by default (xAI: "Default: true"): speech cancels it', async () => {
    const emu = await emulator({ audioChunkMs: 100, chunkIntervalMs: 100 });
    const { send, waitFor, connection } = await client(emu);
    send({ type: 'conversation.item.create', item: { type: 'force_message', role: 'assistant', content: [{ type: 'output_text', text: 'This call is being recorded for quality.' }] } });
    await waitFor('response.output_audio.delta');
    send({ type: 'input_audio_buffer.append', audio: toneBase64(600) });
    await waitFor('input_audio_buffer.speech_started');
    expect(((await waitFor('response.done'))['response'] as Json)['status']).toBe('cancelled');
    expect(connection.responses[0]).toMatchObject({ trigger: 'force_message', status: 'cancelled', cancelReason: 'turn_detected' });
  });
});

describe('emulator in xAI mode: truncation, errors, transcription model', () => {
  it("conversation.item.truncate (xAI's API reference): the GA rules; conversation.item.truncated carries the transcript up to the cut", async () => {
    const emu = await startXaiRealtimeEmulator({ apiKey: API_KEY, script: { greeting: { transcript: 'Our opening hours are nine to five on weekdays.', audioMs: 1000 } } });
    cleanups.push(() => emu.close());
    const { send, waitFor, refused, connection } = await client(emu);
    send({ type: 'response.create' });
    const done = await waitFor('response.done');
    const itemId = String(((done['response'] as Json)['output'] as Json[])[0]?.['id']);
    expect(await refused({ type: 'conversation.item.truncate', item_id: itemId, content_index: 0, audio_end_ms: 1200 })).toMatchObject({
      type: 'invalid_request_error',
      code: 'invalid_request_error',
    });
    send({ type: 'conversation.item.truncate', event_id: 'trunc_1', item_id: itemId, content_index: 0, audio_end_ms: 500 });
    const truncated = await waitFor('conversation.item.truncated');
    expect(truncated).toMatchObject({ item_id: itemId, content_index: 0, audio_end_ms: 500, transcript: 'Our opening hours are' });
    expect(connection.truncations).toEqual([{ itemId, contentIndex: 0, audioEndMs: 500, audioSentMs: 1000 }]);
    // The model's context keeps what the caller heard (GA would delete the transcript)
    expect(connection.items.find((item) => item.id === itemId)).toMatchObject({ content: [{ type: 'output_audio', transcript: 'Our opening hours are' }] });
  });

  it('errors as the API reference has them, code = type: a cancel with no response and a response.create during one', async () => {
    const emu = await emulator({ audioChunkMs: 100, chunkIntervalMs: 100 });
    const { refused, send, waitFor } = await client(emu);
    expect(await refused({ type: 'response.cancel', event_id: 'cancel_1' })).toEqual({
      type: 'invalid_request_error',
      code: 'invalid_request_error',
      message: 'Cancellation failed: no active response found', // as pipecat saw it live
      param: null,
      event_id: 'cancel_1',
    });
    send({ type: 'response.create' });
    await waitFor('response.created');
    expect(await refused({ type: 'response.create', event_id: 'create_2' })).toMatchObject({
      type: 'invalid_request_error',
      code: 'invalid_request_error',
      message: expect.stringContaining('already has an active response') as unknown,
      event_id: 'create_2',
    });
  });

  it('audio.input.transcription.model grok-transcribe: cumulative .updated transcripts, then .completed; none without it', async () => {
    const emu = await startXaiRealtimeEmulator({ apiKey: API_KEY, script: { transcribe: () => 'What time do you open?' } });
    cleanups.push(() => emu.close());
    const { send, waitFor, events, connection } = await client(emu);
    const turn = async (): Promise<Json[]> => {
      const from = events.length;
      send({ type: 'input_audio_buffer.append', audio: toneBase64(500) });
      send({ type: 'input_audio_buffer.commit' });
      await waitFor('conversation.item.input_audio_transcription.completed', from);
      return events.slice(from).filter((event) => String(event['type']).startsWith('conversation.item.input_audio_transcription.'));
    };
    send({ type: 'session.update', session: { turn_detection: { type: null } } });
    await waitFor('session.updated');
    expect((await turn()).map((event) => event['type'])).toEqual(['conversation.item.input_audio_transcription.completed']);
    const from = events.length;
    send({ type: 'session.update', session: { audio: { input: { transcription: { model: 'grok-transcribe', language_hint: 'en' } } } } });
    expect(((await waitFor('session.updated', from))['session'] as Json)['audio']).toMatchObject({ input: { transcription: { model: 'grok-transcribe', language_hint: 'en' } } });
    expect((await turn()).map((event) => [event['type'], event['transcript']])).toEqual([
      ['conversation.item.input_audio_transcription.updated', 'What'],
      ['conversation.item.input_audio_transcription.updated', 'What time'],
      ['conversation.item.input_audio_transcription.updated', 'What time do'],
      ['conversation.item.input_audio_transcription.updated', 'What time do you'],
      ['conversation.item.input_audio_transcription.updated', 'What time do you open?'],
      ['conversation.item.input_audio_transcription.completed', 'What time do you open?'],
    ]);
    expect(connection.xaiSession?.audio.input.transcription).toEqual({ model: 'grok-transcribe', language_hint: 'en' });
  });
});

describe('emulator in xAI mode against the adapter', () => {
  /** The xAI profile's event mapper on a raw socket to the emulator; server events reach it when `deliver()` says. */
  async function mapperOn(emu: OpenAiRealtimeEmulator) {
    const { ws, send, waitFor, connection } = await client(emu);
    const inbox: string[] = [];
    let arrived: () => void = () => undefined;
    ws.on('message', (data: Buffer) => {
      inbox.push(data.toString());
      arrived();
    });
    const reported: string[] = [];
    const logged: string[] = [];
    const sink: MapperSink = {
      emit: (event) => {
        if (event.type === 'error') reported.push(event.error.message);
      },
      send: (event) => ws.send(JSON.stringify(event)),
      log: (_level, _data, message) => logged.push(message),
    };
    const mapper = new RealtimeEventMapper(sink, { codec: audioCodec('pcm24'), profile: xaiProfile, apiKey: API_KEY });
    /** Hands the mapper every server event received so far, up to and including the first of `upTo` (all without it). */
    const deliver = async (upTo?: string): Promise<void> => {
      while (upTo !== undefined && !inbox.some((text) => (JSON.parse(text) as Json)['type'] === upTo)) {
        await new Promise<void>((resolve) => (arrived = resolve));
      }
      while (inbox.length > 0) {
        const text = inbox.shift() as string;
        mapper.handle(parseServerMessage(text));
        if ((JSON.parse(text) as Json)['type'] === upTo) return;
      }
    };
    return { mapper, send, waitFor, connection, deliver, reported, logged };
  }

  it("the xAI mapper takes the emulator's cancel race for what it is: logged, not reported", async () => {
    const emu = await emulator();
    const { mapper, send, waitFor, connection, deliver, reported, logged } = await mapperOn(emu);
    send({ type: 'response.create' }); // a response the server runs on its own (as its VAD would)
    await deliver('response.created');
    await waitFor('response.done'); // over on the server, not yet for the mapper
    mapper.callerStarted(); // the gateway's VAD hears the caller: cancel what seems to be running
    const error = await waitFor('error');
    expect(error['error']).toMatchObject({ code: 'invalid_request_error', message: 'Cancellation failed: no active response found' });
    await deliver('error');
    expect(reported).toEqual([]);
    expect(logged).toContain('harmless xAI error ignored');
    expect(connection.clientEvents.map((event) => event['type'])).toEqual(['response.create', 'response.cancel']);
  });

  it("the xAI mapper asks again for a response.create the emulator refused during a response the server started itself", async () => {
    const emu = await emulator();
    const { mapper, send, waitFor, connection, deliver, reported, logged } = await mapperOn(emu);
    send({ type: 'response.create' }); // the server's own response...
    mapper.requestResponse('dtmf'); // ...and ours, sent before the mapper has heard of it
    const error = await waitFor('error');
    expect(error['error']).toMatchObject({ code: 'invalid_request_error', message: expect.stringContaining('already has an active response') as unknown });
    await deliver('response.done');
    await emu.waitFor(() => connection.responses[1]?.status === 'completed'); // ours, asked again
    expect(reported).toEqual([]);
    expect(logged).toContain('a response is already active: response.create queued');
    expect(connection.responses.map((response) => response.status)).toEqual(['completed', 'completed']);
    expect(connection.clientEvents.map((event) => event['type'])).toEqual(['response.create', 'response.create', 'response.create']);
  });

  it("refuses the OpenAI profile's GA session: the handshake fails, not retried", async () => {
    const emu = await emulator();
    const adapter = createOpenAiRealtime({ apiKey: API_KEY, url: `${emu.url.replace('/v1/realtime', '')}/v1/realtime`, model: 'grok-voice-latest' });
    const error = await adapter.connect(callContext()).then(
      () => undefined,
      (failure: unknown) => failure,
    );
    expect(error).toBeInstanceOf(ProviderError);
    expect(error).toMatchObject({ provider: 'openai', category: 'invalid_request', retryable: false });
    expect((error as ProviderError).message).toContain("OpenAI rejected the session configuration: Unknown parameter: 'session.type'.");
    expect(emu.connections).toHaveLength(1);
  });

  it('a wrong key is an auth ProviderError naming xAI, with the key redacted', async () => {
    const emu = await emulator();
    const key = 'xai-not-the-right-key-4242';
    const error = await createXaiRealtime({ apiKey: key, url: emu.url })
      .connect(callContext())
      .then(
        () => undefined,
        (failure: unknown) => failure,
      );
    expect(error).toMatchObject({ provider: 'xai', category: 'auth', retryable: false, statusCode: 401 });
    expect((error as Error).message).toMatch(/^xAI rejected the connection: authentication failed \(HTTP 401\): Incorrect API key/);
    expect((error as Error).message).not.toContain(key);
  });
});
