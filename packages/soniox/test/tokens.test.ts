import { describe, expect, it } from 'vitest';
import type { AsrEvent } from '@stsgate/core';
import { TokenAccumulator, sttResponseSchema } from '../src/index.js';
import type { SttResponse } from '../src/index.js';

type Tok = [text: string, isFinal: boolean, startMs?: number, endMs?: number];

function response(tokens: Tok[], extra: Record<string, unknown> = {}): SttResponse {
  return sttResponseSchema.parse({
    tokens: tokens.map(([text, is_final, start_ms, end_ms]) => ({
      text,
      is_final,
      confidence: 0.9,
      ...(start_ms === undefined ? {} : { start_ms }),
      ...(end_ms === undefined ? {} : { end_ms }),
    })),
    final_audio_proc_ms: 0,
    total_audio_proc_ms: 0,
    ...extra,
  });
}

function texts(events: AsrEvent[]): string[] {
  return events.flatMap((event) => ('text' in event ? [event.text] : []));
}

function run(acc: TokenAccumulator, responses: Tok[][]): AsrEvent[] {
  return responses.flatMap((tokens) => acc.push(response(tokens)));
}

describe('TokenAccumulator', () => {
  it('groups finals into one utterance and never leaks <end>', () => {
    const acc = new TokenAccumulator();
    const events = run(acc, [
      [['Hel', false]],
      [['Hello', true, 0, 300], [' I', false]],
      [[' I', true, 300, 400], [' would', true, 400, 600], [' like', false]],
      [[' like', true, 600, 800], ['<end>', true]],
    ]);
    expect(events.map((e) => e.type)).toEqual([
      'speech_started',
      'partial',
      'final',
      'partial',
      'final',
      'partial',
      'final',
      'end_of_utterance',
    ]);
    expect(events).toContainEqual({ type: 'end_of_utterance', text: 'Hello I would like' });
    expect(events.filter((e) => e.type === 'end_of_utterance')).toHaveLength(1);
    for (const text of texts(events)) expect(text).not.toMatch(/<end>|<fin>/);
    expect(events.filter((e) => e.type === 'partial').map((e) => (e as { text: string }).text)).toEqual(['Hel', 'Hello I', 'Hello I would like']);
  });

  it('partial = finals of the utterance so far + the latest non-finals (which may change or vanish)', () => {
    const acc = new TokenAccumulator();
    expect(acc.push(response([['Book', true], [' a', false], [' table', false]]))).toContainEqual({ type: 'partial', text: 'Book a table' });
    expect(acc.push(response([[' an', false], [' appointment', false]]))).toContainEqual({ type: 'partial', text: 'Book an appointment' });
    // Non-finals vanish: the partial falls back to the finals.
    expect(acc.push(response([]))).toEqual([{ type: 'partial', text: 'Book' }]);
    expect(acc.push(response([]))).toEqual([]);
    expect(acc.push(response([[' now', false]]))).toContainEqual({ type: 'partial', text: 'Book now' });
  });

  it('emits final with timestamps and mean confidence, text keeping inner spacing', () => {
    const acc = new TokenAccumulator({ offsetMs: 1000 });
    const events = acc.push(response([['Yes', true, 100, 300], [',', true, 300, 320], [' please', true, 400, 700]]));
    const final = events.find((e) => e.type === 'final');
    expect(final).toEqual({ type: 'final', text: 'Yes, please', startMs: 1100, endMs: 1700, confidence: expect.closeTo(0.9, 5) as number });
  });

  it('two utterances give two end_of_utterance events and two speech_started', () => {
    const acc = new TokenAccumulator();
    const events = run(acc, [
      [['Yes', true], [',', true], [' please', true], ['<end>', true], [' What', false]],
      [[' What', true], [' time', true], ['?', true], ['<end>', true]],
    ]);
    expect(events.filter((e) => e.type === 'end_of_utterance')).toEqual([
      { type: 'end_of_utterance', text: 'Yes, please' },
      { type: 'end_of_utterance', text: 'What time?' },
    ]);
    expect(events.filter((e) => e.type === 'speech_started')).toHaveLength(2);
    // The second utterance's first final does not start with the token's leading space.
    expect(events.filter((e) => e.type === 'final').map((e) => (e as { text: string }).text)).toEqual(['Yes, please', 'What time?']);
    // After <end> in the same response, the partial belongs to the next utterance only.
    expect(events).toContainEqual({ type: 'partial', text: 'What' });
  });

  it('an <end> with no words emits nothing', () => {
    const acc = new TokenAccumulator();
    expect(acc.push(response([['<end>', true]]))).toEqual([]);
  });

  it('<fin> answers a finalize request with the whole utterance; <fin> is stripped', () => {
    const acc = new TokenAccumulator();
    acc.push(response([['What', true], [' time', false]]));
    acc.finalizeRequested();
    expect(acc.finalizePending).toBe(true);
    const events = acc.push(response([[' time', true], [' do', true], ['<fin>', true]]));
    expect(events).toContainEqual({ type: 'end_of_utterance', text: 'What time do' });
    expect(acc.finalizePending).toBe(false);
    for (const text of texts(events)) expect(text).not.toContain('<fin>');
  });

  it('an unrequested <fin> is stripped but does not end the utterance', () => {
    const acc = new TokenAccumulator();
    const events = acc.push(response([['Hello', true], ['<fin>', true]]));
    expect(events.map((e) => e.type)).toEqual(['speech_started', 'final', 'partial']);
    expect(acc.utteranceText).toBe('Hello');
  });

  it('a finalize with no speech is still answered (empty end_of_utterance)', () => {
    const acc = new TokenAccumulator();
    acc.finalizeRequested();
    expect(acc.push(response([['<fin>', true]]))).toEqual([{ type: 'end_of_utterance', text: '' }]);
  });

  it('flush turns pending finals into an end_of_utterance and drops non-finals', () => {
    const acc = new TokenAccumulator();
    acc.push(response([['Thank', true], [' you', true], [' very', false]]));
    expect(acc.flush()).toEqual([{ type: 'end_of_utterance', text: 'Thank you' }]);
    expect(acc.flush()).toEqual([]);
  });

  it('restart keeps finals, forgets non-finals, shifts timestamps and answers a pending finalize', () => {
    const acc = new TokenAccumulator();
    acc.push(response([['Hello', true, 0, 200], [' there', false]]));
    expect(acc.restart(500)).toEqual([]);
    const events = acc.push(response([[' there', true, 0, 100], ['<end>', true]]));
    expect(events).toContainEqual(expect.objectContaining({ type: 'final', text: ' there', startMs: 500, endMs: 600 }));
    expect(events).toContainEqual({ type: 'end_of_utterance', text: 'Hello there' });

    acc.push(response([['Wait', true]]));
    acc.finalizeRequested();
    expect(acc.restart(900)).toEqual([{ type: 'end_of_utterance', text: 'Wait' }]);
    expect(acc.finalizePending).toBe(false);
  });

  it("after a restart, the new session's first token (no leading space) is joined with a space", () => {
    const acc = new TokenAccumulator();
    acc.push(response([['Hello', true], [' the', false]]));
    acc.restart(0);
    expect(acc.push(response([['there', false]]))).toContainEqual({ type: 'partial', text: 'Hello there' });
    expect(acc.push(response([['there', true], [' friend', false]]))).toContainEqual({ type: 'final', text: ' there', confidence: 0.9 });
    const events = acc.push(response([[' friend', true], ['<end>', true]]));
    expect(events).toContainEqual({ type: 'end_of_utterance', text: 'Hello there friend' });
    // A new utterance needs no join.
    acc.restart(0);
    expect(acc.push(response([['Next', true]]))).toContainEqual({ type: 'final', text: 'Next', confidence: 0.9 });
  });

  it('skips translated tokens', () => {
    const acc = new TokenAccumulator();
    const events = acc.push(
      sttResponseSchema.parse({
        tokens: [
          { text: 'Hola', is_final: true, translation_status: 'original' },
          { text: 'Hello', is_final: true, translation_status: 'translation' },
        ],
      }),
    );
    expect(texts(events)).toEqual(['Hola', 'Hola']);
  });
});
