import OpenAI from 'openai';
import { OpenAIRealtimeWS } from 'openai/realtime/ws';
import type { RealtimeServerEvent } from 'openai/resources/realtime/realtime';
import { afterEach, describe, expect, it } from 'vitest';
import { startOpenAiRealtimeEmulator, type OpenAiRealtimeEmulator } from '../../src/emulators/openai-realtime.js';
import { KEY, pcm16Base64, utterance } from './ws-client.js';

let emulator: OpenAiRealtimeEmulator | undefined;
let realtime: OpenAIRealtimeWS | undefined;

afterEach(async () => {
  realtime?.socket.terminate();
  realtime = undefined;
  await emulator?.close();
  emulator = undefined;
});

interface SdkErrorLike {
  readonly message: string;
  readonly error?: { readonly code?: string | null; readonly param?: string | null; readonly event_id?: string | null };
}

describe('official openai SDK against the TLS emulator', () => {
  it('parses session.created, session.updated, errors and a spoken turn', async () => {
    emulator = await startOpenAiRealtimeEmulator({
      apiKey: KEY,
      tls: true,
      script: { onUserTurn: () => ({ transcript: 'Hello from the emulator.', audioMs: 400 }) },
    });
    expect(emulator.url.startsWith('wss://127.0.0.1:')).toBe(true);
    expect(emulator.certificatePem).toContain('BEGIN CERTIFICATE');
    const client = new OpenAI({ apiKey: KEY, baseURL: emulator.baseUrl, maxRetries: 0 });
    const rt = new OpenAIRealtimeWS({ model: 'gpt-realtime', options: { ca: emulator.certificatePem } }, client);
    realtime = rt;
    const events: RealtimeServerEvent[] = [];
    const errors: SdkErrorLike[] = [];
    const changed = new Set<() => void>();
    const until = <T>(probe: () => T | undefined): Promise<T> =>
      new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out; events: ${events.map((event) => event.type).join(', ')}`)), 5000);
        const check = (): void => {
          const value = probe();
          if (value === undefined) return;
          changed.delete(check);
          clearTimeout(timer);
          resolve(value);
        };
        changed.add(check);
        check();
      });
    rt.on('event', (event) => {
      events.push(event);
      for (const check of [...changed]) check();
    });
    rt.on('error', (error) => {
      errors.push(error as SdkErrorLike);
      for (const check of [...changed]) check();
    });

    const created = await until(() => events.find((event) => event.type === 'session.created'));
    expect(created.type === 'session.created' && created.session.type).toBe('realtime');

    rt.send({
      type: 'session.update',
      session: {
        type: 'realtime',
        instructions: 'Be brief.',
        audio: { input: { transcription: { model: 'gpt-4o-mini-transcribe' } }, output: { voice: 'marin' } },
      },
    });
    const updated = await until(() => events.find((event) => event.type === 'session.updated'));
    expect(updated.type === 'session.updated' && updated.session.type === 'realtime' && updated.session.instructions).toBe('Be brief.');

    // The GA API has no session.temperature; the SDK surfaces the error event on its error listener.
    const badUpdate = { type: 'realtime', temperature: 0.8 } as unknown as { type: 'realtime' };
    rt.send({ type: 'session.update', event_id: 'evt_temp', session: badUpdate });
    const error = await until(() => errors[0]);
    expect(error.error).toMatchObject({ code: 'unknown_parameter', param: 'session.temperature', event_id: 'evt_temp' });
    expect(error.message).toContain("Unknown parameter: 'session.temperature'.");

    const speech = utterance(500, 700); // the default 500 ms of silence ends the turn
    for (let i = 0; i < speech.length; i += 2400) {
      rt.send({ type: 'input_audio_buffer.append', audio: pcm16Base64(speech.subarray(i, i + 2400)) });
    }
    const done = await until(() => events.find((event) => event.type === 'response.done'));
    expect(done.type === 'response.done' && done.response.status).toBe('completed');
    const types = events.map((event) => event.type);
    expect(types).toContain('input_audio_buffer.speech_started');
    expect(types).toContain('input_audio_buffer.committed');
    const audioBytes = events.reduce(
      (sum, event) => sum + (event.type === 'response.output_audio.delta' ? Buffer.from(event.delta, 'base64').length : 0),
      0,
    );
    expect(audioBytes).toBe(400 * 48);
    const transcript = events.find((event) => event.type === 'response.output_audio_transcript.done');
    expect(transcript?.type === 'response.output_audio_transcript.done' && transcript.transcript).toBe('Hello from the emulator.');
    const input = await until(() => events.find((event) => event.type === 'conversation.item.input_audio_transcription.completed'));
    expect(input.type === 'conversation.item.input_audio_transcription.completed' && input.transcript).toBe('Caller turn 1.');

    const connection = emulator.connections[0];
    expect(connection?.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(connection?.headers['openai-beta']).toBeUndefined();
    expect(connection?.path).toBe('/v1/realtime');
    expect(errors).toHaveLength(1);
  });
});
