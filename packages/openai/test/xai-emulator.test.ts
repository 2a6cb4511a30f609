import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { ProviderError } from '@stsgate/core';
import { startXaiRealtimeEmulator } from '@stsgate/testkit';
import type { OpenAiRealtimeEmulator, RealtimeEmulatorConnection } from '@stsgate/testkit';
import { createOpenAiRealtime, createXaiRealtime } from '../src/index.js';
import { callContext } from './helpers.js';

// The emulator in xAI mode refuses what xAI's Voice Agent API refuses (docs.x.ai), or more: a client that passes it
// sends only what xAI documents.
const API_KEY = 'xai-test-emulator-0123456789';

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function emulator(): Promise<OpenAiRealtimeEmulator> {
  const emu = await startXaiRealtimeEmulator({ apiKey: API_KEY, script: { defaultReply: { transcript: 'Hello there.', audioMs: 300 } } });
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
  it('refuses conversation.item.truncate and .retrieve ("Not supported") with an invalid_event error; the session stays open', async () => {
    const emu = await emulator();
    const { refused, waitFor, send, ws } = await client(emu);
    for (const type of ['conversation.item.truncate', 'conversation.item.retrieve', 'session.close', 'output_audio_buffer.clear']) {
      expect(await refused({ type, event_id: 'evt_1', item_id: 'item_x', content_index: 0, audio_end_ms: 100 })).toMatchObject({
        type: 'invalid_event',
        event_id: 'evt_1',
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
      [{ audio: { input: { transcription: { model: 'whisper-1' } } } }, 'session.audio.input.transcription.model'],
    ];
    for (const [session, param] of cases) expect(await refused({ type: 'session.update', session })).toMatchObject({ code: 'unknown_parameter', param });
    expect(await refused({ type: 'session.update', session: { voice: 'alloy' } })).toMatchObject({ code: 'invalid_value', param: 'session.voice' });
    expect(await refused({ type: 'session.update', session: { turn_detection: { type: 'semantic_vad' } } })).toMatchObject({
      code: 'invalid_value',
      param: 'session.turn_detection.type',
    });
    expect(await refused({ type: 'session.update', session: { turn_detection: { type: 'server_vad', threshold: 0.95 } } })).toMatchObject({
      param: 'session.turn_detection.threshold',
    });
    expect(await refused({ type: 'session.update', session: { voice: 'Sal', instructions: 7 } })).toMatchObject({ code: 'invalid_type' });
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
    ).toMatchObject({ code: 'invalid_value', param: 'item.content[0].type' });
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
});

describe('emulator in xAI mode against the adapter', () => {
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
