import { describe, expect, test } from 'vitest';
import type { StsEvent } from '@stsgate/core';
import { FlowEventMapper, RtTranscriptMapper, parseFlowMessage, parseRtMessage } from '../src/index.js';
import type { FlowServerMessage, TranscriptMessage } from '../src/index.js';

function transcript(kind: 'AddTranscript' | 'AddPartialTranscript', text: string, start = 0, end = 1): TranscriptMessage {
  const parsed = parseRtMessage(
    JSON.stringify({
      message: kind,
      format: '2.1',
      metadata: { start_time: start, end_time: end, transcript: text },
      results: text
        .trim()
        .split(/\s+/)
        .filter((word) => word !== '')
        .map((word, index) => ({ type: 'word', start_time: start + index * 0.1, end_time: start + index * 0.1 + 0.1, alternatives: [{ content: word, confidence: 0.8, language: 'en' }] })),
    }),
  );
  if (parsed.kind !== 'transcript') throw new Error(`not a transcript: ${JSON.stringify(parsed)}`);
  return parsed.message;
}

function flow(json: Record<string, unknown>): FlowServerMessage {
  return parseFlowMessage(JSON.stringify(json));
}

describe('parseRtMessage', () => {
  test('every server message maps to its kind; garbage is invalid, never thrown', () => {
    expect(parseRtMessage('{"message":"RecognitionStarted","id":"abc"}')).toEqual({ kind: 'started', id: 'abc' });
    expect(parseRtMessage('{"message":"AudioAdded","seq_no":3}')).toEqual({ kind: 'audio_added', seqNo: 3 });
    expect(parseRtMessage('{"message":"EndOfUtterance","metadata":{"start_time":1.5,"end_time":1.5}}')).toEqual({ kind: 'end_of_utterance', endMs: 1500 });
    expect(parseRtMessage('{"message":"EndOfTranscript"}')).toEqual({ kind: 'end_of_transcript' });
    expect(parseRtMessage('{"message":"Error","type":"not_authorised","reason":"bad"}')).toEqual({ kind: 'error', type: 'not_authorised', reason: 'bad' });
    expect(parseRtMessage('{"message":"Warning","type":"idle_timeout"}')).toEqual({ kind: 'warning', type: 'idle_timeout', reason: undefined });
    expect(parseRtMessage('{"message":"AudioEventStarted"}')).toEqual({ kind: 'ignored', message: 'AudioEventStarted' });
    expect(parseRtMessage('not json').kind).toBe('invalid');
    expect(parseRtMessage('[1,2]').kind).toBe('invalid');
    expect(parseRtMessage('{"message":"AudioAdded"}').kind).toBe('invalid');
    expect(parseRtMessage('{"message":"AddTranscript","metadata":{}}').kind).toBe('invalid');
    expect(parseRtMessage('{"message":"Surprise"}')).toEqual({ kind: 'invalid', reason: 'unknown message "Surprise"' });
  });
});

describe('RtTranscriptMapper', () => {
  test('partials grow, finals come once, EndOfUtterance carries the whole utterance', () => {
    const mapper = new RtTranscriptMapper();
    const events = [
      ...mapper.transcript(transcript('AddPartialTranscript', 'Hello')),
      ...mapper.transcript(transcript('AddPartialTranscript', 'Hello')),
      ...mapper.transcript(transcript('AddTranscript', 'Hello there. ', 0.5, 1.2)),
      ...mapper.transcript(transcript('AddPartialTranscript', 'how are')),
      ...mapper.transcript(transcript('AddTranscript', 'How are you? ', 1.3, 2)),
      ...mapper.endOfUtterance(),
      ...mapper.endOfUtterance(),
    ];
    expect(events).toEqual([
      { type: 'speech_started' },
      { type: 'partial', text: 'Hello' },
      { type: 'final', text: 'Hello there.', startMs: 500, endMs: 1200, confidence: 0.8 },
      { type: 'partial', text: 'Hello there. how are' },
      { type: 'final', text: 'How are you?', startMs: 1300, endMs: 2000, confidence: expect.closeTo(0.8, 6) as number },
      { type: 'end_of_utterance', text: 'Hello there. How are you?' },
    ]);
    expect(mapper.finalEndMs).toBe(2000);
  });

  test('empty finals are ignored; flush closes a pending utterance; restart shifts times', () => {
    const mapper = new RtTranscriptMapper();
    expect(mapper.transcript(transcript('AddTranscript', ' '))).toEqual([]);
    mapper.transcript(transcript('AddTranscript', 'One. '));
    mapper.restart(3000);
    const events = mapper.transcript(transcript('AddTranscript', 'Two. ', 0.2, 0.6));
    expect(events).toEqual([{ type: 'final', text: 'Two.', startMs: 3200, endMs: 3600, confidence: 0.8 }]);
    expect(mapper.flush()).toEqual([{ type: 'end_of_utterance', text: 'One. Two.' }]);
    expect(mapper.flush()).toEqual([]);
  });
});

describe('parseFlowMessage', () => {
  test('maps every documented server message', () => {
    expect(flow({ message: 'ConversationStarted', id: 'c1' })).toEqual({ kind: 'conversation_started', id: 'c1' });
    expect(flow({ message: 'ResponseStarted', content: 'Hi there', start_time: 1 })).toEqual({ kind: 'response_started', content: 'Hi there' });
    expect(flow({ message: 'ResponseCompleted', content: 'Hi there', start_time: 1, end_time: 2 })).toEqual({ kind: 'response_completed', content: 'Hi there' });
    expect(flow({ message: 'ResponseInterrupted', content: 'Hi', start_time: 1, end_time: 1.2 })).toEqual({ kind: 'response_interrupted', content: 'Hi' });
    expect(flow({ message: 'ToolInvoke', id: 't1', type: 'function', function: { name: 'transfer', arguments: { ext: '200' } } })).toEqual({
      kind: 'tool_invoke',
      id: 't1',
      name: 'transfer',
      argumentsJson: '{"ext":"200"}',
    });
    expect(flow({ message: 'ConversationEnding' })).toEqual({ kind: 'conversation_ending' });
    expect(flow({ message: 'ConversationEnded' })).toEqual({ kind: 'conversation_ended' });
    expect(flow({ message: 'Error', type: 'quota_exceeded', reason: 'no' })).toEqual({ kind: 'error', type: 'quota_exceeded', reason: 'no' });
    expect(flow({ message: 'Debug' })).toEqual({ kind: 'ignored', message: 'Debug' });
    expect(flow({ message: 'ToolInvoke', id: 't1' }).kind).toBe('invalid');
    expect(flow({ message: 'ToolInvoke', id: 't1', function: { name: 'x', arguments: '{"a":1}' } }).kind).toBe('invalid');
    expect(parseFlowMessage('\u0000garbage').kind).toBe('invalid');
  });
});

describe('FlowEventMapper', () => {
  const audio = (n: number): Int16Array => new Int16Array(n).fill(100);

  test('a turn: user finals become one transcript when the reply starts; audio and done share the reply id', () => {
    const mapper = new FlowEventMapper();
    const events: StsEvent[] = [
      ...mapper.message(flow({ message: 'AddPartialTranscript', metadata: { start_time: 0, end_time: 1, transcript: 'What time' }, results: [] })),
      ...mapper.message(flow({ message: 'AddTranscript', metadata: { start_time: 0, end_time: 1, transcript: 'What time is it? ' }, results: [] })),
      ...mapper.message(flow({ message: 'AddTranscript', metadata: { start_time: 1, end_time: 2, transcript: 'Thanks. ' }, results: [] })),
      ...mapper.message(flow({ message: 'ResponseStarted', content: 'It is noon.' })),
      ...mapper.audio(audio(320)),
      ...mapper.audio(audio(320)),
      ...mapper.message(flow({ message: 'ResponseCompleted', content: 'It is noon.' })),
    ];
    expect(events.map((event) => (event.type === 'audio' ? { type: 'audio', responseId: event.responseId, n: event.samples.length } : event))).toEqual([
      { type: 'transcript', role: 'user', text: 'What time', final: false },
      { type: 'transcript', role: 'user', text: 'What time is it? Thanks.', final: true },
      { type: 'audio', responseId: 'flow-reply-1', n: 320 },
      { type: 'audio', responseId: 'flow-reply-1', n: 320 },
      { type: 'response_done', responseId: 'flow-reply-1' },
      { type: 'transcript', role: 'agent', text: 'It is noon.', final: true },
    ]);
  });

  test('interruption: interrupted then done, spoken text as agent transcript, stale audio dropped until the next reply', () => {
    const mapper = new FlowEventMapper();
    mapper.message(flow({ message: 'ResponseStarted', content: 'A long answer that goes on' }));
    mapper.audio(audio(640));
    expect(mapper.message(flow({ message: 'ResponseInterrupted', content: 'A long answer' }))).toEqual([
      { type: 'interrupted', responseId: 'flow-reply-1' },
      { type: 'response_done', responseId: 'flow-reply-1' },
      { type: 'transcript', role: 'agent', text: 'A long answer', final: true },
    ]);
    expect(mapper.audio(audio(640))).toEqual([]);
    mapper.message(flow({ message: 'ResponseStarted', content: 'Next' }));
    const next = mapper.audio(audio(10));
    expect(next).toHaveLength(1);
    expect(next[0]).toMatchObject({ type: 'audio', responseId: 'flow-reply-2' });
  });

  test('a new ResponseStarted closes an unfinished reply; tool calls and resets flush the caller text', () => {
    const mapper = new FlowEventMapper();
    mapper.message(flow({ message: 'ResponseStarted', content: 'one' }));
    expect(mapper.message(flow({ message: 'ResponseStarted', content: 'two' }))).toEqual([{ type: 'response_done', responseId: 'flow-reply-1' }]);
    mapper.message(flow({ message: 'AddTranscript', metadata: { start_time: 0, end_time: 1, transcript: 'Transfer me. ' }, results: [] }));
    expect(mapper.message(flow({ message: 'ToolInvoke', id: 'call-1', function: { name: 'avr_transfer', arguments: { extension: '200' } } }))).toEqual([
      { type: 'transcript', role: 'user', text: 'Transfer me.', final: true },
      { type: 'tool_call', callId: 'call-1', name: 'avr_transfer', argumentsJson: '{"extension":"200"}' },
    ]);
    mapper.message(flow({ message: 'AddTranscript', metadata: { start_time: 0, end_time: 1, transcript: 'Bye. ' }, results: [] }));
    expect(mapper.reset()).toEqual([
      { type: 'transcript', role: 'user', text: 'Bye.', final: true },
      { type: 'response_done', responseId: 'flow-reply-2' },
    ]);
    expect(mapper.currentResponseId).toBeUndefined();
  });

  test('audio without ResponseStarted opens a reply of its own; empty frames are ignored', () => {
    const mapper = new FlowEventMapper();
    expect(mapper.audio(new Int16Array(0))).toEqual([]);
    expect(mapper.audio(audio(4))[0]).toMatchObject({ type: 'audio', responseId: 'flow-reply-1' });
    expect(mapper.message(flow({ message: 'ResponseInterrupted', content: '' }))).toEqual([
      { type: 'interrupted', responseId: 'flow-reply-1' },
      { type: 'response_done', responseId: 'flow-reply-1' },
    ]);
  });
});
