import { describe, expect, it } from 'vitest';
import {
  applySessionUpdate,
  defaultSession,
  parseItem,
  parseResponseParams,
  parseTruncate,
  RealtimeWireError,
  type RealtimeSessionConfig,
} from '../../src/emulators/realtime-protocol.js';
import { EnergyVad } from '../../src/emulators/realtime-audio.js';
import { tone } from '../../src/emulators/common.js';
import { silence } from '../../src/signals.js';

const base = defaultSession('sess_1', 'gpt-realtime', 0);
const context = { assistantAudioPresent: false };

function wireError(run: () => unknown): RealtimeWireError {
  try {
    run();
  } catch (error) {
    if (error instanceof RealtimeWireError) return error;
    throw error;
  }
  throw new Error('expected a RealtimeWireError');
}

function update(session: unknown, current: RealtimeSessionConfig = base, ctx = context): RealtimeSessionConfig {
  return applySessionUpdate(current, session, ctx);
}

describe('session.update validation', () => {
  it('reports the first problem in key order with GA codes', () => {
    expect(wireError(() => update({ type: 'realtime', audio: { input: { turn_detection: { type: 'server_vad', eagerness: 'low' } } } }))).toMatchObject({
      code: 'unknown_parameter',
      param: 'session.audio.input.turn_detection.eagerness',
    });
    expect(wireError(() => update({ type: 'realtime', audio: { input: { format: { type: 'audio/pcmu', rate: 8000 } } } }))).toMatchObject({
      code: 'unknown_parameter',
      param: 'session.audio.input.format.rate',
    });
    expect(wireError(() => update({ type: 'realtime', audio: { input: { format: { type: 'audio/pcm', rate: 48000 } } } }))).toMatchObject({
      code: 'integer_above_max_value',
      message: "Invalid 'session.audio.input.format.rate': integer above maximum value. Expected a value <= 24000, but got 48000 instead.",
    });
    expect(wireError(() => update({ type: 'realtime', audio: { input: { turn_detection: { type: 'server_vad', threshold: 2 } } } }))).toMatchObject({
      code: 'decimal_above_max_value',
    });
    expect(wireError(() => update({ type: 'realtime', output_modalities: ['audio', 'text'] }))).toMatchObject({
      code: 'invalid_value',
      param: 'session.output_modalities',
    });
    expect(wireError(() => update({ type: 'realtime', max_output_tokens: 'infinite' }))).toMatchObject({ code: 'invalid_value' });
    expect(wireError(() => update({ type: 'realtime', tools: [{ type: 'function', description: 'no name' }] }))).toMatchObject({
      code: 'missing_required_parameter',
      param: 'session.tools[0].name',
    });
    expect(wireError(() => update({ type: 'realtime', modalities: ['audio'] }))).toMatchObject({ param: 'session.modalities' });
    expect(wireError(() => update({ type: 'realtime', voice: 'alloy' }))).toMatchObject({ param: 'session.voice' });
    expect(wireError(() => update({ type: 'transcription' })).param).toBe('session.type');
  });

  it('merges nested objects and keeps untouched fields', () => {
    const first = update({ type: 'realtime', audio: { input: { turn_detection: { type: 'semantic_vad', eagerness: 'high' } } } });
    expect(first.audio.input.turn_detection).toEqual({ type: 'semantic_vad', eagerness: 'high', create_response: true, interrupt_response: true });
    const second = update({ type: 'realtime', audio: { input: { turn_detection: { type: 'semantic_vad', create_response: false } } } }, first);
    expect(second.audio.input.turn_detection).toEqual({ type: 'semantic_vad', eagerness: 'high', create_response: false, interrupt_response: true });
    const third = update({ type: 'realtime', audio: { output: { speed: 1.2 } } }, second);
    expect(third.audio.output).toEqual({ format: { type: 'audio/pcm', rate: 24000 }, voice: 'alloy', speed: 1.2 });
    expect(third.audio.input.turn_detection).toEqual(second.audio.input.turn_detection);
    const off = update({ type: 'realtime', audio: { input: { turn_detection: null, noise_reduction: { type: 'far_field' } } } }, third);
    expect(off.audio.input.turn_detection).toBeNull();
    expect(off.audio.input.noise_reduction).toEqual({ type: 'far_field', strength: 1 });
  });

  it('refuses a voice change once assistant audio exists', () => {
    expect(wireError(() => update({ type: 'realtime', audio: { output: { voice: 'marin' } } }, base, { assistantAudioPresent: true })).code).toBe(
      'cannot_update_voice',
    );
    expect(update({ type: 'realtime', audio: { output: { voice: 'alloy' } } }, base, { assistantAudioPresent: true }).audio.output.voice).toBe('alloy');
  });
});

describe('items, responses and truncate', () => {
  it('validates items and response params', () => {
    expect(parseItem({ type: 'message', role: 'system', content: [{ type: 'input_text', text: 'x' }] }, 'item')).toEqual({
      type: 'message',
      role: 'system',
      content: [{ type: 'input_text', text: 'x' }],
    });
    expect(wireError(() => parseItem({ type: 'message', role: 'assistant', content: [{ type: 'text', text: 'beta' }] }, 'item'))).toMatchObject({
      code: 'invalid_value',
      param: 'item.content[0].type',
    });
    expect(wireError(() => parseItem({ type: 'function_call_output', call_id: 'c', output: { ok: true } }, 'item'))).toMatchObject({
      code: 'invalid_type',
      param: 'item.output',
    });
    expect(parseResponseParams({ instructions: 'Greet', conversation: 'none', metadata: { topic: 'x' } })).toMatchObject({
      instructions: 'Greet',
      conversation: 'none',
      metadata: { topic: 'x' },
    });
    expect(wireError(() => parseResponseParams({ modalities: ['audio'] }))).toMatchObject({ code: 'unknown_parameter', param: 'response.modalities' });
  });

  it('requires integer audio_end_ms >= 0', () => {
    expect(parseTruncate({ type: 'conversation.item.truncate', item_id: 'i', content_index: 0, audio_end_ms: 10 })).toEqual({
      itemId: 'i',
      contentIndex: 0,
      audioEndMs: 10,
    });
    expect(wireError(() => parseTruncate({ type: 'conversation.item.truncate', item_id: 'i', content_index: 0, audio_end_ms: 1.5 }))).toMatchObject({
      code: 'invalid_type',
      message: "Invalid type for 'audio_end_ms': expected an integer, but got a decimal number instead.",
    });
    expect(wireError(() => parseTruncate({ type: 'conversation.item.truncate', item_id: 'i', content_index: 0 }))).toMatchObject({
      code: 'missing_required_parameter',
      param: 'audio_end_ms',
    });
  });
});

describe('energy VAD', () => {
  it('starts after 30 ms of voice and stops after the silence duration', () => {
    const vad = new EnergyVad();
    const detection = base.audio.input.turn_detection;
    if (detection === null) throw new Error('default session has VAD');
    const audio = [silence(200, 8000), tone(300, 8000), silence(550, 8000)];
    let clock = 0;
    const events = audio.flatMap((part) => {
      clock += (part.length * 1000) / 8000;
      return vad.process(part, 8000, clock, detection);
    });
    expect(events).toEqual([
      { kind: 'start', atMs: 200 },
      { kind: 'stop', atMs: 1000 }, // 200 + 300 + the default 500 ms silence_duration_ms
    ]);
    expect(new EnergyVad().process(tone(300, 8000, 440, 30), 8000, 300, detection)).toEqual([]);
  });
});
