import { describe, expect, it } from 'vitest';
import { ProviderError, encodeMulaw } from '@stsgate/core';
import type { StsEvent } from '@stsgate/core';
import { audioCodec } from '../src/realtime/audio-codec.js';
import { RealtimeEventMapper } from '../src/realtime/map-events.js';
import type { LogLevel, MapperSink } from '../src/realtime/map-events.js';
import { parseServerMessage } from '../src/realtime/wire.js';
import type { ClientEvent } from '../src/realtime/wire.js';
import { createRealtimeAdapter, createXaiRealtime, flatSession, openAiProfile, xaiProfile } from '../src/index.js';
import type { RealtimeProfile } from '../src/index.js';

// What the xAI profile changes in the Realtime adapter, without a server: the mapper's requests and reports.
class Recorder implements MapperSink {
  events: StsEvent[] = [];
  sent: ClientEvent[] = [];
  logs: { level: LogLevel; message: string }[] = [];
  emit(event: StsEvent): void {
    this.events.push(event);
  }
  send(event: ClientEvent): void {
    this.sent.push(event);
  }
  log(level: LogLevel, _data: Record<string, unknown>, message: string): void {
    this.logs.push({ level, message });
  }
}

function setup(profile: RealtimeProfile = xaiProfile) {
  const sink = new Recorder();
  const mapper = new RealtimeEventMapper(sink, { codec: audioCodec('pcmu'), apiKey: 'xai-secret-key-0001', profile });
  const feed = (event: Record<string, unknown>): void => mapper.handle(parseServerMessage(JSON.stringify(event)));
  return { sink, mapper, feed };
}

const mulaw = (ms: number): string => Buffer.from(encodeMulaw(new Int16Array(ms * 8).fill(1000))).toString('base64');
const transcripts = (events: StsEvent[]) => events.flatMap((e) => (e.type === 'transcript' ? [`${e.role}:${e.final ? 'final' : 'partial'}:${e.text}`] : []));

describe('xAI profile: user transcripts', () => {
  it('a `completed` for the turn still being spoken is partial ("emitted for both partial and final transcripts"); a repeat is reported once', () => {
    const { sink, feed } = setup();
    feed({ type: 'input_audio_buffer.speech_started', item_id: 'u1', audio_start_ms: 100 });
    feed({ type: 'conversation.item.input_audio_transcription.completed', item_id: 'u1', transcript: 'What time' });
    feed({ type: 'input_audio_buffer.speech_stopped', item_id: 'u1', audio_end_ms: 1400 });
    feed({ type: 'input_audio_buffer.committed', item_id: 'u1' });
    feed({ type: 'conversation.item.input_audio_transcription.completed', item_id: 'u1', transcript: 'What time do you open?' });
    feed({ type: 'conversation.item.input_audio_transcription.completed', item_id: 'u1', transcript: 'What time do you open?' });
    expect(transcripts(sink.events)).toEqual(['user:partial:What time', 'user:final:What time do you open?']);
    expect(sink.logs.filter((log) => log.message.includes('unknown'))).toEqual([]);
  });

  it("grok-transcribe's cumulative `.updated` transcripts are partial ones, until the turn's final transcript", () => {
    const { sink, feed } = setup();
    feed({ type: 'conversation.item.input_audio_transcription.updated', item_id: 'u2', transcript: 'And' });
    feed({ type: 'conversation.item.input_audio_transcription.updated', item_id: 'u2', transcript: 'And on Sunday?' });
    feed({ type: 'conversation.item.input_audio_transcription.updated', item_id: 'u2', transcript: ' ' });
    feed({ type: 'conversation.item.input_audio_transcription.completed', item_id: 'u2', transcript: 'And on Sunday?' });
    feed({ type: 'conversation.item.input_audio_transcription.updated', item_id: 'u2', transcript: 'And on Sunday?' }); // late
    expect(transcripts(sink.events)).toEqual(['user:partial:And', 'user:partial:And on Sunday?', 'user:final:And on Sunday?']);
  });

  it('a bare-string status_details (xAI: "unimplemented") is not a malformed event', () => {
    const { sink, feed } = setup();
    feed({ type: 'response.created', response: { id: 'r1', status: 'in_progress', status_details: 'unimplemented' } });
    feed({ type: 'response.done', response: { id: 'r1', status: 'completed', status_details: 'unimplemented', output: [] } });
    expect(sink.events.filter((event) => event.type === 'error')).toEqual([]);
  });
});

describe('xAI profile: requests', () => {
  it('the welcome message is a force_message item (the server speaks it), not a response.create', () => {
    const { sink, mapper, feed } = setup();
    mapper.requestResponse('greeting', { verbatim: 'Welcome to ACME.' });
    expect(sink.sent).toEqual([
      {
        type: 'conversation.item.create',
        event_id: 'stsgate_response_1',
        // Not interruptible, as avr-sts-xai sends it: xAI drops the caller's audio until it has played.
        item: { type: 'force_message', role: 'assistant', interruptible: false, content: [{ type: 'output_text', text: 'Welcome to ACME.' }] },
      },
    ]);
    // Its response.created binds to the request: nothing else goes out until it is done.
    feed({ type: 'response.created', response: { id: 'r1' } });
    mapper.requestResponse('dtmf');
    expect(sink.sent).toHaveLength(1);
    feed({ type: 'response.done', response: { id: 'r1', status: 'completed', output: [] } });
    expect(sink.sent.map((event) => event.type)).toEqual(['conversation.item.create', 'response.create']);
    // OpenAI: the model is asked to read it
    const openai = setup(openAiProfile);
    openai.mapper.requestResponse('greeting', { verbatim: 'Welcome to ACME.' });
    expect(openai.sink.sent[0]).toMatchObject({ type: 'response.create', response: { input: [], tool_choice: 'none' } });
  });

  it('truncate(): the reply still being generated is cancelled, then conversation.item.truncate (xAI documents it) at what was heard', () => {
    const { sink, mapper, feed } = setup();
    feed({ type: 'response.created', response: { id: 'r1' } });
    feed({ type: 'response.output_item.added', response_id: 'r1', item: { id: 'a1', type: 'message', role: 'assistant' } });
    feed({ type: 'response.output_audio.delta', response_id: 'r1', item_id: 'a1', delta: mulaw(200) });
    feed({ type: 'response.output_audio_transcript.delta', item_id: 'a1', delta: 'Opening hours are nine to five' });
    mapper.truncate('a1', 100);
    feed({ type: 'response.output_audio.delta', response_id: 'r1', item_id: 'a1', delta: mulaw(200) });
    expect(sink.sent).toEqual([
      { type: 'response.cancel', event_id: 'stsgate_cancel_1', response_id: 'r1' },
      { type: 'conversation.item.truncate', event_id: 'stsgate_truncate_2', item_id: 'a1', content_index: 0, audio_end_ms: 100 },
    ]);
    expect(sink.events.filter((event) => event.type === 'audio')).toHaveLength(1);
    // xAI's confirmation carries the cut transcript (an extension): not an odd event
    feed({ type: 'conversation.item.truncated', item_id: 'a1', content_index: 0, audio_end_ms: 100, transcript: 'Opening hours' });
    expect(sink.events.filter((event) => event.type === 'error')).toEqual([]);
    // A replacement connection gets only what the caller heard (half of the 200 ms received).
    expect(mapper.log.toItems()).toEqual([{ kind: 'assistant', text: 'Opening hours' }]);
  });

  it('a restored conversation spells assistant text as xAI does (`text`)', () => {
    const { sink, mapper, feed } = setup();
    feed({ type: 'input_audio_buffer.committed', item_id: 'u1' });
    feed({ type: 'conversation.item.input_audio_transcription.completed', item_id: 'u1', transcript: 'Hi' });
    feed({ type: 'response.output_item.added', item: { id: 'a1', type: 'message', role: 'assistant' } });
    feed({ type: 'response.output_audio.delta', item_id: 'a1', delta: mulaw(500) });
    feed({ type: 'response.output_audio_transcript.done', item_id: 'a1', transcript: 'Hello, how can I help?' });
    mapper.connectionLost();
    sink.sent = [];
    mapper.restore();
    expect(sink.sent.map((event) => (event.type === 'conversation.item.create' ? event.item : undefined))).toEqual([
      { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Hi' }] },
      { type: 'message', role: 'assistant', content: [{ type: 'text', text: 'Hello, how can I help?' }] },
    ]);
  });
});

describe("xAI profile: its errors (code = type), told by their messages", () => {
  const xaiError = (message: string, eventId: string | null = null) => ({
    type: 'error',
    event_id: 'event_1',
    error: { type: 'invalid_request_error', code: 'invalid_request_error', message, param: null, event_id: eventId },
  });

  it('a cancel that raced with the end of the response ("Cancellation failed: no active response found") is only logged; other errors are reported', () => {
    const { sink, mapper, feed } = setup();
    mapper.requestResponse('greeting');
    feed({ type: 'response.created', response: { id: 'r1' } });
    mapper.callerStarted();
    const cancel = sink.sent.find((event) => event.type === 'response.cancel');
    feed({ type: 'response.done', response: { id: 'r1', status: 'completed', output: [] } });
    feed(xaiError('Cancellation failed: no active response found', cancel?.event_id ?? null));
    expect(sink.events.filter((event) => event.type === 'error')).toEqual([]);
    expect(sink.logs.map((log) => log.message)).toContain('harmless xAI error ignored');
    feed(xaiError("Invalid 'item.content[0].type'"));
    expect(sink.events).toMatchObject([{ type: 'error', fatal: false, error: { provider: 'xai', category: 'invalid_request', providerCode: 'invalid_request_error' } }]);
    // OpenAI's own races are told by code only, as before: the same message with another code is reported
    const openai = setup(openAiProfile);
    openai.feed(xaiError('Cancellation failed: no active response found'));
    expect(openai.sink.events).toMatchObject([{ type: 'error', error: { provider: 'openai' } }]);
  });

  it('a response.create that collided with a response the server started is asked again once that one is done', () => {
    const { sink, mapper, feed } = setup();
    mapper.userText('The caller pressed 1 on the keypad.', 'dtmf');
    const create = sink.sent.find((event) => event.type === 'response.create');
    feed({ type: 'response.created', response: { id: 'r_vad' } });
    feed(xaiError('Conversation already has an active response in progress: r_vad.', create?.event_id ?? null));
    expect(sink.events.filter((event) => event.type === 'error')).toEqual([]);
    sink.sent = [];
    feed({ type: 'response.done', response: { id: 'r_vad', status: 'completed', output: [] } });
    expect(sink.sent.map((event) => event.type)).toEqual(['response.create']);
  });

});

describe('xAI profile: options and session shape', () => {
  it('refuses options xAI has no field for, and formats it does not take, listing them all', () => {
    const build = () =>
      createXaiRealtime({
        apiKey: 'xai-key',
        maxOutputTokens: 100,
        noiseReduction: 'near_field',
        reasoningEffort: 'low',
        turnDetection: { type: 'semantic_vad' },
      });
    expect(build).toThrow(ProviderError);
    expect(build).toThrow('invalid xAI Realtime options: xAI has no semanticVad; xAI has no noiseReduction; xAI has no maxOutputTokens; xAI has no reasoningEffort');
    const only24: RealtimeProfile = { ...xaiProfile, audioFormats: ['pcm24'] };
    expect(() => createRealtimeAdapter(only24, { apiKey: 'k' })).not.toThrow();
    expect(() => createRealtimeAdapter(only24, { apiKey: 'k', audioFormat: 'pcmu' })).toThrow('xAI takes audio formats pcm24, not pcmu');
    expect(() => createRealtimeAdapter(openAiProfile, { apiKey: 'k', providerTools: [{ type: 'web_search' }] })).toThrow('OpenAI has no providerTools');
  });

  it('the flat session: GA fields left out, tools after the provider tools, manual turns as {type: null}', () => {
    const session = flatSession(
      {
        audioFormat: 'pcm24',
        voice: 'leo',
        instructions: '  ',
        turnDetection: { type: 'none', threshold: 0.4 },
        transcription: { model: 'whisper-1' },
        providerTools: [{ type: 'x_search', allowed_x_handles: ['xai'] }],
        tools: [{ name: 'avr_hangup', description: 'Hang up', parameters: { type: 'object' } }],
      },
      { label: 'xAI', languageKey: 'language_hint' },
    );
    expect(session).toEqual({
      voice: 'leo',
      turn_detection: { type: null },
      audio: { input: { format: { type: 'audio/pcm', rate: 24000 } }, output: { format: { type: 'audio/pcm', rate: 24000 } } },
      tools: [
        { type: 'x_search', allowed_x_handles: ['xai'] },
        { type: 'function', name: 'avr_hangup', description: 'Hang up', parameters: { type: 'object' } },
      ],
    });
  });
});
