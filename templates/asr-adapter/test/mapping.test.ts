// The pure parts, without a socket: server messages -> AsrEvents, the boundary parser and the config message.
import { describe, expect, it } from 'vitest';
import { TranscriptMapper } from '../src/mapping.js';
import { configMessage, parseServerMessage } from '../src/wire.js';
import type { ServerMessage } from '../src/wire.js';

const message = (...tokens: [text: string, isFinal: boolean][]): ServerMessage => ({ tokens: tokens.map(([text, is_final]) => ({ text, is_final })) });

describe('TranscriptMapper', () => {
  it('non-finals are partials; finals come once; <end> ends the utterance with its whole final text', () => {
    const mapper = new TranscriptMapper();
    expect(mapper.map(message(['How', false]))).toEqual([{ type: 'partial', text: 'How' }]);
    expect(mapper.map(message(['How', false]))).toEqual([]); // the same partial is not repeated
    expect(mapper.map(message(['How', true], [' are', true], [' you', false]))).toEqual([
      { type: 'final', text: 'How are' },
      { type: 'partial', text: 'How are you' },
    ]);
    expect(mapper.map(message([' you', true], ['?', true], ['<end>', true]))).toEqual([
      { type: 'final', text: ' you?' },
      { type: 'end_of_utterance', text: 'How are you?' },
    ]);
    // The next utterance starts clean: its first token's leading space is dropped.
    expect(mapper.map(message([' Fine', true], ['<end>', true]))).toEqual([
      { type: 'final', text: 'Fine' },
      { type: 'end_of_utterance', text: 'Fine' },
    ]);
  });

  it('<fin> answers finalize, even with no words; an <end> without words says nothing; control tokens are never text', () => {
    const mapper = new TranscriptMapper();
    expect(mapper.map(message(['<fin>', true]))).toEqual([{ type: 'end_of_utterance', text: '' }]);
    expect(mapper.map(message(['<end>', true]))).toEqual([]);
    const events = mapper.map(message(['Book', true], [' it', true], ['<fin>', true], [' Then', false]));
    expect(events).toEqual([
      { type: 'final', text: 'Book it' },
      { type: 'end_of_utterance', text: 'Book it' },
      { type: 'partial', text: 'Then' },
    ]);
    expect(JSON.stringify(events)).not.toMatch(/<end>|<fin>/);
  });

  it('flush: final text not ended yet becomes the last utterance, non-finals are dropped; nothing twice', () => {
    const mapper = new TranscriptMapper();
    mapper.map(message(['Good', true], ['bye', false]));
    expect(mapper.flush()).toEqual([{ type: 'end_of_utterance', text: 'Good' }]);
    expect(mapper.flush()).toEqual([]);
    mapper.map(message(['maybe', false]));
    expect(mapper.flush()).toEqual([]);
  });
});

describe('wire', () => {
  it('parses a result at the boundary (defaults filled in) and an error with a string code', () => {
    expect(parseServerMessage('{"tokens":[{"text":"Hi"}],"final_audio_proc_ms":120,"total_audio_proc_ms":240}')).toEqual({
      tokens: [{ text: 'Hi', is_final: false }],
      final_audio_proc_ms: 120,
    });
    expect(parseServerMessage('{"error_code":"401","error_message":"Invalid API key."}')).toEqual({ tokens: [], error_code: 401, error_message: 'Invalid API key.' });
  });

  it('says why a frame is not a message, without throwing', () => {
    expect(parseServerMessage('not json')).toBe('not JSON');
    expect(parseServerMessage('{"tokens":[{"text":3}]}')).toMatch(/tokens\[0\]\.text/);
    expect(parseServerMessage('{"finished":"yes"}')).toMatch(/finished/);
  });

  it('the config message: raw 8 kHz PCM, endpoint detection, hints only when given, no key', () => {
    expect(JSON.parse(configMessage('stt-rt-v5', 8000, ['en', 'it'], 'call-1'))).toEqual({
      model: 'stt-rt-v5',
      audio_format: 'pcm_s16le',
      sample_rate: 8000,
      num_channels: 1,
      enable_endpoint_detection: true,
      max_endpoint_delay_ms: 1000,
      language_hints: ['en', 'it'],
      client_reference_id: 'call-1',
    });
    const bare = JSON.parse(configMessage('stt-rt-v5', 8000, [], 'x'.repeat(300))) as Record<string, unknown>;
    expect(bare.language_hints).toBeUndefined();
    expect(bare.client_reference_id).toHaveLength(256);
    expect(Object.keys(bare).some((key) => key.includes('key'))).toBe(false);
  });
});
