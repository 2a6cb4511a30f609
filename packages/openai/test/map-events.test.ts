import { describe, expect, it } from 'vitest';
import { encodeMulaw } from '@stsgate/core';
import type { StsEvent } from '@stsgate/core';
import { audioCodec } from '../src/realtime/audio-codec.js';
import { RealtimeEventMapper, clampAudioEndMs } from '../src/realtime/map-events.js';
import type { LogLevel, MapperSink } from '../src/realtime/map-events.js';
import { parseServerMessage } from '../src/realtime/wire.js';
import type { ClientEvent } from '../src/realtime/wire.js';

class Recorder implements MapperSink {
  events: StsEvent[] = [];
  /** Caller audio the session has delivered on this connection (undefined: a session that does not say). */
  deliveredMs: number | undefined;
  sent: ClientEvent[] = [];
  logs: { level: LogLevel; data: Record<string, unknown>; message: string }[] = [];
  emit(event: StsEvent): void {
    this.events.push(event);
  }
  send(event: ClientEvent): void {
    this.sent.push(event);
  }
  log(level: LogLevel, data: Record<string, unknown>, message: string): void {
    this.logs.push({ level, data, message });
  }
  inputAudioMs(): number | undefined {
    return this.deliveredMs;
  }
  take(): { events: StsEvent[]; sent: ClientEvent[] } {
    const out = { events: this.events, sent: this.sent };
    this.events = [];
    this.sent = [];
    return out;
  }
}

function setup(format: 'pcmu' | 'pcm24' = 'pcmu') {
  const sink = new Recorder();
  const mapper = new RealtimeEventMapper(sink, { codec: audioCodec(format), apiKey: 'sk-test-secret-key' });
  const feed = (event: Record<string, unknown>): void => mapper.handle(parseServerMessage(JSON.stringify(event)));
  return { sink, mapper, feed };
}

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64');
/** `ms` of mu-law audio (8 bytes per ms) of a constant level. */
const mulaw = (ms: number, level = 1000): string => b64(encodeMulaw(new Int16Array(ms * 8).fill(level)));

const types = (events: StsEvent[]): string[] => events.map((e) => e.type);

describe('RealtimeEventMapper: audio and responses', () => {
  it('decodes mu-law deltas to audio events keyed by the assistant item id, and ends the item once', () => {
    const { sink, feed } = setup('pcmu');
    feed({ type: 'response.created', response: { id: 'resp_1' } });
    feed({ type: 'response.output_item.added', response_id: 'resp_1', item: { id: 'item_A', type: 'message', role: 'assistant' } });
    feed({ type: 'response.output_audio.delta', response_id: 'resp_1', item_id: 'item_A', delta: mulaw(20, 1000) });
    feed({ type: 'response.audio.delta', response_id: 'resp_1', item_id: 'item_A', delta: mulaw(40, -1000) }); // beta alias
    feed({ type: 'response.output_audio.done', response_id: 'resp_1', item_id: 'item_A' });
    feed({ type: 'response.done', response: { id: 'resp_1', status: 'completed', output: [{ id: 'item_A', type: 'message' }] } });
    const { events } = sink.take();
    expect(types(events)).toEqual(['audio', 'audio', 'response_done']);
    const [first, second] = events as [Extract<StsEvent, { type: 'audio' }>, Extract<StsEvent, { type: 'audio' }>];
    expect(first.responseId).toBe('item_A');
    expect(first.samples.length).toBe(160);
    expect(second.samples.length).toBe(320);
    // mu-law of 1000 decodes to within the quantisation step
    expect(Math.abs((first.samples[0] as number) - 1000)).toBeLessThan(40);
    expect(second.samples[0]).toBeLessThan(0);
    expect(events[2]).toEqual({ type: 'response_done', responseId: 'item_A' });
  });

  it('decodes 24 kHz PCM16 deltas, carrying an odd byte to the next delta', () => {
    const { sink, mapper, feed } = setup('pcm24');
    const pcm = new Int16Array([1, -2, 300, -400, 32767, -32768]);
    const bytes = new Uint8Array(pcm.buffer);
    feed({ type: 'response.output_audio.delta', item_id: 'item_P', delta: b64(bytes.subarray(0, 5)) });
    feed({ type: 'response.output_audio.delta', item_id: 'item_P', delta: b64(bytes.subarray(5)) });
    const samples = sink.events.flatMap((e) => (e.type === 'audio' ? [...e.samples] : []));
    expect(samples).toEqual([...pcm]);
    expect(mapper.receivedMs('item_P')).toBeCloseTo(12 / 48);
  });

  it('only ends items that carried audio, and response.done closes those without output_audio.done', () => {
    const { sink, feed } = setup();
    feed({ type: 'response.output_audio.delta', item_id: 'item_A', delta: mulaw(20) });
    feed({
      type: 'response.done',
      response: {
        id: 'resp_1',
        status: 'cancelled',
        status_details: { type: 'cancelled', reason: 'turn_detected' },
        output: [
          { id: 'item_A', type: 'message' },
          { id: 'item_T', type: 'message' },
        ],
      },
    });
    expect(sink.events.filter((e) => e.type === 'response_done')).toEqual([{ type: 'response_done', responseId: 'item_A' }]);
  });

  it('maps speech, transcripts, and skips empty transcripts', () => {
    const { sink, feed } = setup();
    feed({ type: 'input_audio_buffer.speech_started', audio_start_ms: 100, item_id: 'item_U' });
    feed({ type: 'input_audio_buffer.speech_stopped', audio_end_ms: 900, item_id: 'item_U' });
    feed({ type: 'conversation.item.input_audio_transcription.completed', item_id: 'item_U', content_index: 0, transcript: ' Hello there ' });
    feed({ type: 'conversation.item.input_audio_transcription.completed', item_id: 'item_V', content_index: 0, transcript: '  ' });
    feed({ type: 'response.output_audio_transcript.done', item_id: 'item_A', transcript: 'Hi! How can I help?' });
    feed({ type: 'response.audio_transcript.done', item_id: 'item_B', transcript: 'Beta name.' });
    expect(sink.events).toEqual([
      { type: 'speech_started' },
      { type: 'speech_stopped' },
      { type: 'transcript', role: 'user', text: 'Hello there', final: true },
      { type: 'transcript', role: 'agent', text: 'Hi! How can I help?', final: true },
      { type: 'transcript', role: 'agent', text: 'Beta name.', final: true },
    ]);
  });

  it("locates the caller's speech onset from the server's audio_start_ms and the audio delivered on the connection", () => {
    const { sink, feed } = setup();
    sink.deliveredMs = 1340;
    feed({ type: 'input_audio_buffer.speech_started', audio_start_ms: 1100, item_id: 'item_U' });
    // A server position past what was delivered (clock skew in a batch) is no negative delay.
    sink.deliveredMs = 1000;
    feed({ type: 'input_audio_buffer.speech_started', audio_start_ms: 1100, item_id: 'item_V' });
    feed({ type: 'input_audio_buffer.speech_started', item_id: 'item_W' });
    expect(sink.events).toEqual([{ type: 'speech_started', onsetAgoMs: 240 }, { type: 'speech_started', onsetAgoMs: 0 }, { type: 'speech_started' }]);
  });

  it("counts the server VAD's prefix padding, which its audio_start_ms includes, out of the onset", () => {
    const sink = new Recorder();
    const mapper = new RealtimeEventMapper(sink, { codec: audioCodec('pcmu'), speechPaddingMs: 300 });
    sink.deliveredMs = 2000;
    mapper.handle(parseServerMessage(JSON.stringify({ type: 'input_audio_buffer.speech_started', audio_start_ms: 1200, item_id: 'item_U' })));
    expect(sink.events).toEqual([{ type: 'speech_started', onsetAgoMs: 500 }]);
  });
});

describe('RealtimeEventMapper: truncate', () => {
  it('clamps audio_end_ms to the audio received, as an integer', () => {
    expect(clampAudioEndMs(1234.9, 5000)).toBe(1234);
    expect(clampAudioEndMs(9000, 2500.5)).toBe(2500);
    expect(clampAudioEndMs(-20, 100)).toBe(0);
    expect(clampAudioEndMs(Number.NaN, 100)).toBe(0);
    expect(clampAudioEndMs(Number.POSITIVE_INFINITY, 75)).toBe(75);
  });

  it('sends conversation.item.truncate clamped to the received audio, and drops later deltas of that item', () => {
    const { sink, mapper, feed } = setup();
    feed({ type: 'response.output_audio.delta', item_id: 'item_A', delta: mulaw(300) });
    feed({ type: 'response.output_audio.delta', item_id: 'item_A', delta: mulaw(200) });
    sink.take();
    mapper.truncate('item_A', 1800.7); // heard more than was received (the host's clock ran ahead)
    const { sent } = sink.take();
    expect(sent).toEqual([{ type: 'conversation.item.truncate', event_id: expect.any(String), item_id: 'item_A', content_index: 0, audio_end_ms: 500 }]);
    mapper.truncate('item_A', 120.6);
    expect(sink.take().sent).toMatchObject([{ audio_end_ms: 120 }]);
    feed({ type: 'response.output_audio.delta', item_id: 'item_A', delta: mulaw(100) });
    expect(sink.events).toEqual([]);
  });

  it('a reply still being generated is cancelled before its truncate (the server truncates only finished audio)', () => {
    const { sink, mapper, feed } = setup();
    feed({ type: 'response.created', response: { id: 'resp_1' } });
    feed({ type: 'response.output_audio.delta', item_id: 'item_A', delta: mulaw(300) });
    sink.take();
    mapper.truncate('item_A', 200);
    expect(sink.take().sent).toMatchObject([
      { type: 'response.cancel', response_id: 'resp_1' },
      { type: 'conversation.item.truncate', item_id: 'item_A', audio_end_ms: 200 },
    ]);
    // The gateway's VAD already cancelled the response (callerStarted): the truncate sends no second cancel.
    feed({ type: 'response.created', response: { id: 'resp_3' } });
    feed({ type: 'response.output_audio.delta', item_id: 'item_C', delta: mulaw(300) });
    sink.take();
    mapper.callerStarted();
    mapper.truncate('item_C', 100);
    expect(sink.take().sent.map((e) => e['type'])).toEqual(['response.cancel', 'conversation.item.truncate']);
    mapper.callerStopped(false);
    // The server's VAD heard the caller: it cancels the response itself, so the truncate sends no cancel.
    feed({ type: 'response.created', response: { id: 'resp_4' } });
    feed({ type: 'response.output_audio.delta', item_id: 'item_D', delta: mulaw(300) });
    feed({ type: 'input_audio_buffer.speech_started', audio_start_ms: 0, item_id: 'item_user' });
    sink.take();
    mapper.truncate('item_D', 100);
    expect(sink.take().sent.map((e) => e['type'])).toEqual(['conversation.item.truncate']);
    // A finished reply (response.done seen) is only truncated.
    feed({ type: 'response.created', response: { id: 'resp_2' } });
    feed({ type: 'response.output_audio.delta', item_id: 'item_B', delta: mulaw(300) });
    feed({ type: 'response.done', response: { id: 'resp_2', status: 'completed', output: [{ id: 'item_B', type: 'message' }] } });
    sink.take();
    mapper.truncate('item_B', 100);
    expect(sink.take().sent).toMatchObject([{ type: 'conversation.item.truncate', item_id: 'item_B' }]);
  });

  it('skips a truncate of an item without received audio', () => {
    const { sink, mapper } = setup();
    mapper.truncate('item_unknown', 500);
    expect(sink.sent).toEqual([]);
  });
});

describe('RealtimeEventMapper: responses never collide', () => {
  it('queues response.create while a response is active and sends it after response.done', () => {
    const { sink, mapper, feed } = setup();
    mapper.requestResponse('greeting');
    expect(sink.take().sent).toMatchObject([{ type: 'response.create' }]);
    feed({ type: 'response.created', response: { id: 'resp_1' } });
    mapper.userText('The caller pressed 5 on the keypad.', 'dtmf');
    const during = sink.take().sent;
    expect(during).toEqual([
      {
        type: 'conversation.item.create',
        event_id: expect.any(String),
        item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'The caller pressed 5 on the keypad.' }] },
      },
    ]);
    mapper.userText('The caller pressed 6 on the keypad.', 'dtmf');
    expect(sink.take().sent.map((e) => e.type)).toEqual(['conversation.item.create']);
    feed({ type: 'response.done', response: { id: 'resp_1', status: 'completed', output: [] } });
    expect(sink.take().sent.map((e) => e.type)).toEqual(['response.create']); // one, for both digits
  });

  it('a response.create still unanswered also blocks a second one', () => {
    const { sink, mapper } = setup();
    mapper.requestResponse('greeting');
    mapper.requestResponse('dtmf');
    expect(sink.take().sent.map((e) => e.type)).toEqual(['response.create']);
    expect(mapper.queuedResponse).toBe(true);
  });

  it('re-queues a response.create that lost the race with a server-started response', () => {
    const { sink, mapper, feed } = setup();
    mapper.userText('The caller pressed 1 on the keypad.', 'dtmf');
    const create = sink.take().sent.find((e) => e.type === 'response.create');
    expect(create).toBeDefined();
    feed({ type: 'response.created', response: { id: 'resp_vad' } });
    feed({
      type: 'error',
      event_id: 'event_1',
      error: { type: 'invalid_request_error', code: 'conversation_already_has_active_response', message: 'busy', param: null, event_id: create?.event_id },
    });
    expect(sink.events).toEqual([]); // handled, not reported
    feed({ type: 'response.done', response: { id: 'resp_vad', status: 'completed', output: [] } });
    expect(sink.take().sent.map((e) => e.type)).toEqual(['response.create']);
  });

  it('ignores a later session.updated (no response.create, unlike avr-sts-openai)', () => {
    const { sink, feed } = setup();
    feed({ type: 'session.updated', session: { type: 'realtime' } });
    expect(sink.sent).toEqual([]);
    expect(sink.events).toEqual([]);
  });
});

describe('RealtimeEventMapper: tools', () => {
  it('reports each function call once, whichever events carry it', () => {
    const { sink, feed } = setup();
    const item = { id: 'item_F', type: 'function_call', call_id: 'call_1', name: 'avr_transfer', arguments: '', status: 'in_progress' };
    feed({ type: 'response.output_item.added', response_id: 'resp_1', item });
    feed({ type: 'response.function_call_arguments.done', response_id: 'resp_1', item_id: 'item_F', call_id: 'call_1', arguments: '{"extension":"100"}' });
    feed({ type: 'response.output_item.done', response_id: 'resp_1', item: { ...item, arguments: '{"extension":"100"}', status: 'completed' } });
    feed({ type: 'response.done', response: { id: 'resp_1', status: 'completed', output: [{ ...item, arguments: '{"extension":"100"}', status: 'completed' }] } });
    expect(sink.events).toEqual([{ type: 'tool_call', callId: 'call_1', name: 'avr_transfer', argumentsJson: '{"extension":"100"}' }]);
  });

  it('reports a call seen only in response.output_item.done, but not an incomplete one', () => {
    const { sink, feed } = setup();
    feed({ type: 'response.output_item.done', item: { id: 'i1', type: 'function_call', call_id: 'c1', name: 'f', arguments: '{}', status: 'completed' } });
    feed({ type: 'response.output_item.done', item: { id: 'i2', type: 'function_call', call_id: 'c2', name: 'g', arguments: '{"a":', status: 'incomplete' } });
    expect(sink.events).toEqual([{ type: 'tool_call', callId: 'c1', name: 'f', argumentsJson: '{}' }]);
  });

  it('answers a tool result with function_call_output and response.create (queued while the call response is active)', () => {
    const { sink, mapper, feed } = setup();
    feed({ type: 'response.created', response: { id: 'resp_1' } });
    feed({ type: 'response.output_item.done', item: { id: 'i1', type: 'function_call', call_id: 'c1', name: 'f', arguments: '{}', status: 'completed' } });
    sink.take();
    mapper.toolResult('c1', '{"message":"done"}');
    expect(sink.take().sent).toEqual([
      { type: 'conversation.item.create', event_id: expect.any(String), item: { type: 'function_call_output', call_id: 'c1', output: '{"message":"done"}' } },
    ]);
    feed({ type: 'response.done', response: { id: 'resp_1', status: 'completed', output: [] } });
    expect(sink.take().sent.map((e) => e.type)).toEqual(['response.create']);
  });
});

describe('RealtimeEventMapper: errors and odd input', () => {
  it('reports error events as non-fatal errors, with the key redacted, except harmless codes', () => {
    const { sink, feed } = setup();
    feed({ type: 'error', error: { type: 'invalid_request_error', code: 'response_cancel_not_active', message: 'no active response', param: null, event_id: null } });
    feed({
      type: 'error',
      error: { type: 'invalid_request_error', code: 'invalid_value', message: 'bad value near sk-test-secret-key', param: 'item.type', event_id: null },
    });
    expect(sink.events).toHaveLength(1);
    const event = sink.events[0] as Extract<StsEvent, { type: 'error' }>;
    expect(event.fatal).toBe(false);
    expect(event.error.category).toBe('invalid_request');
    expect(event.error.providerCode).toBe('invalid_value');
    expect(event.error.message).not.toContain('secret');
  });

  it('turns a failed response into a non-fatal server error', () => {
    const { sink, feed } = setup();
    feed({
      type: 'response.done',
      response: { id: 'r', status: 'failed', status_details: { type: 'failed', error: { type: 'server_error', code: 'boom', message: 'internal' } }, output: [] },
    });
    expect(sink.events).toMatchObject([{ type: 'error', fatal: false, error: { category: 'server' } }]);
  });

  it('ignores unknown event types (logged once per type) and reports malformed ones once per type', () => {
    const { sink, mapper, feed } = setup();
    feed({ type: 'response.brand_new_thing', x: 1 });
    feed({ type: 'response.brand_new_thing', x: 2 });
    feed({ type: 'rate_limits.updated', rate_limits: [] });
    expect(sink.events).toEqual([]);
    expect(sink.logs.filter((l) => l.message.includes('unknown'))).toHaveLength(1);
    feed({ type: 'response.output_audio.delta', item_id: 42 });
    feed({ type: 'response.output_audio.delta', item_id: 43 });
    mapper.handle(parseServerMessage('not json'));
    expect(sink.events).toMatchObject([
      { type: 'error', fatal: false, error: { category: 'protocol' } },
      { type: 'error', fatal: false, error: { category: 'protocol' } },
    ]);
  });
});

describe('RealtimeEventMapper: conversation log and restore', () => {
  it('restores the conversation in order, assistant text cut to what was heard, tool calls paired', () => {
    const { sink, mapper, feed } = setup();
    // greeting, heard in full
    feed({ type: 'response.created', response: { id: 'r1' } });
    feed({ type: 'response.output_item.added', item: { id: 'a1', type: 'message', role: 'assistant' } });
    feed({ type: 'response.output_audio.delta', item_id: 'a1', delta: mulaw(1000) });
    feed({ type: 'response.output_audio_transcript.done', item_id: 'a1', transcript: 'Hello, how can I help?' });
    feed({ type: 'response.done', response: { id: 'r1', status: 'completed', output: [{ id: 'a1', type: 'message' }] } });
    // the caller's turn: committed before its transcript arrives (after the reply started)
    feed({ type: 'input_audio_buffer.committed', item_id: 'u1', previous_item_id: 'a1' });
    feed({ type: 'response.created', response: { id: 'r2' } });
    feed({ type: 'response.output_item.added', item: { id: 'a2', type: 'message', role: 'assistant' } });
    feed({ type: 'response.output_audio_transcript.done', item_id: 'a2', transcript: 'one two three four five six seven eight' });
    feed({ type: 'response.output_audio.delta', item_id: 'a2', delta: mulaw(1000) });
    feed({ type: 'conversation.item.input_audio_transcription.completed', item_id: 'u1', transcript: 'Transfer me please' });
    mapper.truncate('a2', 500); // heard half
    feed({ type: 'response.done', response: { id: 'r2', status: 'cancelled', output: [{ id: 'a2', type: 'message' }] } });
    // a tool round trip
    feed({ type: 'response.output_item.done', item: { id: 'f1', type: 'function_call', call_id: 'c1', name: 'avr_transfer', arguments: '{"x":1}', status: 'completed' } });
    mapper.toolResult('c1', 'ok');
    sink.take();

    mapper.connectionLost();
    const restored = mapper.restore();
    const { sent } = sink.take();
    expect(restored).toBe(5);
    expect(sent.filter((e) => e.type === 'conversation.item.create').map((e) => e.item)).toEqual([
      { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Hello, how can I help?' }] },
      { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Transfer me please' }] },
      { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'one two three four' }] },
      { type: 'function_call', call_id: 'c1', name: 'avr_transfer', arguments: '{"x":1}' },
      { type: 'function_call_output', call_id: 'c1', output: 'ok' },
    ]);
    // the conversation ended on a tool result: the agent still owes an answer
    expect(sent.at(-1)?.type).toBe('response.create');
  });

  it('closes streaming items when the connection is lost, and keeps host requests for the restore', () => {
    const { sink, mapper, feed } = setup();
    feed({ type: 'response.created', response: { id: 'r1' } });
    feed({ type: 'response.output_audio.delta', item_id: 'a1', delta: mulaw(100) });
    feed({ type: 'response.output_audio_transcript.delta', item_id: 'a1', delta: 'Partial answer' });
    sink.take();
    mapper.connectionLost();
    expect(sink.take().events).toEqual([{ type: 'response_done', responseId: 'a1' }]);
    mapper.userText('The caller pressed 1 on the keypad.', 'dtmf'); // during the gap
    mapper.truncate('a1', 60); // 60% of 'Partial answer' keeps the first word
    expect(sink.take().sent).toEqual([]); // nothing goes out without a connection
    mapper.restore();
    const sent = sink.take().sent;
    expect(sent.map((e) => (e.type === 'conversation.item.create' ? e.item : e.type))).toEqual([
      { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Partial' }] },
      { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'The caller pressed 1 on the keypad.' }] },
      'response.create',
    ]);
  });

  it('asks for no response after a restore when the agent had the last word', () => {
    const { sink, mapper, feed } = setup();
    feed({ type: 'conversation.item.input_audio_transcription.completed', item_id: 'u1', transcript: 'Hi' });
    feed({ type: 'response.output_audio.delta', item_id: 'a1', delta: mulaw(100) });
    feed({ type: 'response.output_audio_transcript.done', item_id: 'a1', transcript: 'Hello' });
    mapper.connectionLost();
    sink.take();
    mapper.restore();
    expect(sink.take().sent.map((e) => e.type)).toEqual(['conversation.item.create', 'conversation.item.create']);
  });
});

describe('RealtimeEventMapper: tool calls only from completed items', () => {
  it('never reports a call whose response was interrupted during argument streaming (cut-off JSON)', () => {
    const { sink, feed } = setup();
    const item = { id: 'item_F', type: 'function_call', call_id: 'call_cut', name: 'avr_transfer', arguments: '', status: 'in_progress' };
    feed({ type: 'response.created', response: { id: 'resp_1' } });
    feed({ type: 'response.output_item.added', response_id: 'resp_1', item });
    feed({ type: 'response.function_call_arguments.delta', response_id: 'resp_1', item_id: 'item_F', call_id: 'call_cut', delta: '{"transfer_ext' });
    // GA: `.done` is also emitted when the response is interrupted, with the arguments as far as they got
    feed({ type: 'response.function_call_arguments.done', response_id: 'resp_1', item_id: 'item_F', call_id: 'call_cut', name: 'avr_transfer', arguments: '{"transfer_ext' });
    feed({ type: 'response.output_item.done', response_id: 'resp_1', item: { ...item, arguments: '{"transfer_ext', status: 'incomplete' } });
    feed({
      type: 'response.done',
      response: {
        id: 'resp_1',
        status: 'cancelled',
        status_details: { type: 'cancelled', reason: 'turn_detected' },
        output: [{ ...item, arguments: '{"transfer_ext', status: 'incomplete' }],
      },
    });
    expect(sink.events.filter((e) => e.type === 'tool_call')).toEqual([]);
  });

  it('waits for the completed item: function_call_arguments.done alone reports nothing', () => {
    const { sink, feed } = setup();
    feed({ type: 'response.created', response: { id: 'resp_1' } });
    feed({ type: 'response.output_item.added', response_id: 'resp_1', item: { id: 'i1', type: 'function_call', call_id: 'c1', name: 'f', arguments: '', status: 'in_progress' } });
    feed({ type: 'response.function_call_arguments.done', response_id: 'resp_1', item_id: 'i1', call_id: 'c1', name: 'f', arguments: '{}' });
    expect(sink.events).toEqual([]);
    // an item without a status (compatible servers) counts only once its response completed
    feed({ type: 'response.output_item.done', response_id: 'resp_1', item: { id: 'i1', type: 'function_call', call_id: 'c1', name: 'f', arguments: '{}' } });
    expect(sink.events).toEqual([]);
    feed({ type: 'response.done', response: { id: 'resp_1', status: 'completed', output: [{ id: 'i1', type: 'function_call', call_id: 'c1', name: 'f', arguments: '{}' }] } });
    expect(sink.events).toEqual([{ type: 'tool_call', callId: 'c1', name: 'f', argumentsJson: '{}' }]);
  });

  it('reports nothing from the output of a cancelled or incomplete response that no completed item announced', () => {
    const { sink, feed } = setup();
    for (const status of ['cancelled', 'incomplete', 'failed']) {
      feed({ type: 'response.done', response: { id: `r_${status}`, status, output: [{ id: `i_${status}`, type: 'function_call', call_id: `c_${status}`, name: 'f', arguments: '{}' }] } });
    }
    expect(sink.events.filter((e) => e.type === 'tool_call')).toEqual([]);
  });
});

describe('RealtimeEventMapper: parallel function calls', () => {
  function twoCalls(feed: (event: Record<string, unknown>) => void): void {
    feed({ type: 'response.created', response: { id: 'resp_p' } });
    const call = (n: number) => ({ id: `item_${n}`, type: 'function_call', call_id: `call_${n}`, name: `tool_${n}`, arguments: '{}', status: 'completed' });
    feed({ type: 'response.output_item.done', response_id: 'resp_p', item: call(1) });
    feed({ type: 'response.output_item.done', response_id: 'resp_p', item: call(2) });
    feed({ type: 'response.done', response: { id: 'resp_p', status: 'completed', output: [call(1), call(2)] } });
  }

  it('sends response.create once, after every call of the response has its output', () => {
    const { sink, mapper, feed } = setup();
    twoCalls(feed);
    expect(sink.take().events.map((e) => (e.type === 'tool_call' ? e.callId : e.type))).toEqual(['call_1', 'call_2']);
    mapper.toolResult('call_2', 'two');
    expect(sink.take().sent.map((e) => e.type)).toEqual(['conversation.item.create']);
    mapper.toolResult('call_1', 'one');
    expect(sink.take().sent.map((e) => e.type)).toEqual(['conversation.item.create', 'response.create']);
  });

  it('results that arrive before response.done are answered once it is done, with one response.create', () => {
    const { sink, mapper, feed } = setup();
    feed({ type: 'response.created', response: { id: 'resp_p' } });
    const call = (n: number) => ({ id: `item_${n}`, type: 'function_call', call_id: `call_${n}`, name: `tool_${n}`, arguments: '{}', status: 'completed' });
    feed({ type: 'response.output_item.done', response_id: 'resp_p', item: call(1) });
    mapper.toolResult('call_1', 'one');
    feed({ type: 'response.output_item.done', response_id: 'resp_p', item: call(2) });
    feed({ type: 'response.done', response: { id: 'resp_p', status: 'completed', output: [call(1), call(2)] } });
    expect(sink.take().sent.map((e) => e.type)).toEqual(['conversation.item.create']);
    mapper.toolResult('call_2', 'two');
    expect(sink.take().sent.map((e) => e.type)).toEqual(['conversation.item.create', 'response.create']);
  });

  it('a restored connection does not answer before the last result of the response is in', () => {
    const { sink, mapper, feed } = setup();
    twoCalls(feed);
    mapper.toolResult('call_1', 'one');
    mapper.connectionLost();
    mapper.restore();
    expect(sink.take().sent.filter((e) => e.type === 'response.create')).toEqual([]);
    mapper.toolResult('call_2', 'two');
    expect(sink.take().sent.map((e) => e.type)).toEqual(['conversation.item.create', 'response.create']);
  });
});

describe('RealtimeEventMapper: tool results', () => {
  it('does not send a result for a call it never reported (the server would reject the unknown call_id)', () => {
    const { sink, mapper } = setup();
    mapper.toolResult('call_never_seen', '{}');
    expect(sink.sent).toEqual([]);
    expect(sink.logs.some((l) => l.level === 'warn' && l.data['callId'] === 'call_never_seen')).toBe(true);
  });
});

describe('RealtimeEventMapper: known events it has no use for', () => {
  it('skips every other GA server event without calling it unknown', () => {
    const { sink, feed } = setup();
    for (const type of [
      'input_audio_buffer.dtmf_event_received',
      'input_audio_buffer.timeout_triggered',
      'conversation.item.input_audio_transcription.segment',
      'mcp_list_tools.in_progress',
      'mcp_list_tools.completed',
      'mcp_list_tools.failed',
      'response.mcp_call_arguments.delta',
      'response.mcp_call_arguments.done',
      'response.mcp_call.in_progress',
      'response.mcp_call.completed',
      'response.mcp_call.failed',
      'rate_limits.updated',
    ]) {
      feed({ type });
    }
    expect(sink.logs.filter((l) => l.message.includes('unknown'))).toEqual([]);
    expect(sink.events).toEqual([]);
  });
});

describe('RealtimeEventMapper: a verbatim welcome message', () => {
  it('asks for it with its own context, no tools, and warns when the spoken transcript differs', () => {
    const { sink, mapper, feed } = setup();
    mapper.requestResponse('greeting', { verbatim: 'Welcome to ACME, how can I help?' });
    const [create] = sink.take().sent;
    expect(create).toMatchObject({ type: 'response.create', response: { input: [], tool_choice: 'none' } });
    const instructions = create?.type === 'response.create' ? (create.response?.instructions ?? '') : '';
    expect(instructions).toContain('Welcome to ACME, how can I help?');
    feed({ type: 'response.created', response: { id: 'r_w' } });
    feed({ type: 'response.output_audio_transcript.done', response_id: 'r_w', item_id: 'a1', transcript: 'welcome to ACME how can I help' });
    expect(sink.logs.filter((l) => l.level === 'warn')).toEqual([]); // case, punctuation and spacing do not count
    feed({ type: 'response.done', response: { id: 'r_w', status: 'completed', output: [] } });

    mapper.requestResponse('greeting', { verbatim: 'Press one for sales.' });
    feed({ type: 'response.created', response: { id: 'r_x' } });
    feed({ type: 'response.output_audio_transcript.done', response_id: 'r_x', item_id: 'a2', transcript: 'Sure! Press one for sales, or two for support.' });
    feed({ type: 'response.done', response: { id: 'r_x', status: 'completed', output: [] } });
    expect(sink.logs.filter((l) => l.level === 'warn').map((l) => l.message)).toEqual(['the welcome message was not spoken verbatim']);
    // one the caller interrupted is cut short, not wrong
    mapper.requestResponse('greeting', { verbatim: 'Press one for sales.' });
    feed({ type: 'response.created', response: { id: 'r_y' } });
    feed({ type: 'response.output_audio_transcript.done', response_id: 'r_y', item_id: 'a3', transcript: 'Press one' });
    feed({ type: 'response.done', response: { id: 'r_y', status: 'cancelled', output: [] } });
    expect(sink.logs.filter((l) => l.level === 'warn')).toHaveLength(1);
  });
});

describe("RealtimeEventMapper: races with the server VAD's own responses", () => {
  const alreadyActive = (eventId: string | undefined) => ({
    type: 'error',
    event_id: 'event_9',
    error: { type: 'invalid_request_error', code: 'conversation_already_has_active_response', message: 'busy', param: null, event_id: eventId },
  });

  it('a welcome message that lost the race to the answer of the caller is not asked again, and that answer is not checked against it', () => {
    const { sink, mapper, feed } = setup();
    mapper.requestResponse('greeting', { verbatim: 'Welcome to ACME.' });
    const [create] = sink.take().sent;
    // The caller said "Hello?" at pickup: the server VAD's response was created before our request reached it.
    feed({ type: 'response.created', response: { id: 'r_vad' } });
    feed(alreadyActive(create?.event_id));
    feed({ type: 'response.output_audio_transcript.done', response_id: 'r_vad', item_id: 'a1', transcript: 'Hi! How can I help you?' });
    feed({ type: 'response.done', response: { id: 'r_vad', status: 'completed', output: [] } });
    expect(sink.take().sent).toEqual([]); // no second response after the answer
    expect(sink.logs.filter((l) => l.level === 'warn')).toEqual([]);
    expect(sink.logs.map((l) => l.message)).toContain('the caller spoke before the welcome message started: it is not spoken');
    expect(sink.events.filter((e) => e.type === 'error')).toEqual([]);
  });

  it('our response created while the server VAD hears the caller is cancelled; the answer the server makes after the turn is not', () => {
    const { sink, mapper, feed } = setup();
    mapper.userText('The caller pressed 5 on the keypad.', 'dtmf');
    sink.take();
    feed({ type: 'input_audio_buffer.speech_started', item_id: 'u1', audio_start_ms: 100 });
    feed({ type: 'response.created', response: { id: 'r_dtmf' } });
    expect(sink.take().sent).toEqual([{ type: 'response.cancel', event_id: expect.any(String), response_id: 'r_dtmf' }]);
    feed({ type: 'response.done', response: { id: 'r_dtmf', status: 'cancelled', output: [] } });
    feed({ type: 'input_audio_buffer.speech_stopped', item_id: 'u1', audio_end_ms: 900 });
    feed({ type: 'input_audio_buffer.committed', item_id: 'u1' });
    feed({ type: 'response.created', response: { id: 'r_turn' } });
    expect(sink.take().sent).toEqual([]);
  });
});

describe("RealtimeEventMapper: turns taken by the gateway's VAD", () => {
  it('speech cancels the running response; its end commits the turn and asks for one answer, which held requests join', () => {
    const { sink, mapper, feed } = setup();
    mapper.requestResponse('greeting');
    feed({ type: 'response.created', response: { id: 'r1' } });
    sink.take();
    mapper.callerStarted();
    expect(sink.take().sent).toEqual([{ type: 'response.cancel', event_id: expect.any(String), response_id: 'r1' }]);
    feed({ type: 'response.done', response: { id: 'r1', status: 'cancelled', output: [] } });
    mapper.userText('The caller pressed 1 on the keypad.', 'dtmf'); // while the caller still talks
    expect(sink.take().sent.map((e) => e.type)).toEqual(['conversation.item.create']);
    mapper.callerStopped(true);
    expect(sink.take().sent.map((e) => e.type)).toEqual(['input_audio_buffer.commit', 'response.create']);
  });

  it('speech right after a request cancels the response it creates; a turn too short to commit still lets held requests go', () => {
    const { sink, mapper, feed } = setup();
    mapper.requestResponse('dtmf');
    sink.take();
    mapper.callerStarted();
    expect(sink.take().sent).toEqual([]);
    feed({ type: 'response.created', response: { id: 'r2' } });
    expect(sink.take().sent).toMatchObject([{ type: 'response.cancel', response_id: 'r2' }]);
    feed({ type: 'response.done', response: { id: 'r2', status: 'cancelled', output: [] } });
    mapper.requestResponse('dtmf');
    expect(sink.take().sent).toEqual([]);
    mapper.callerStopped(false);
    expect(sink.take().sent.map((e) => e.type)).toEqual(['response.create']);
  });
});
