import { afterEach, describe, expect, it, vi } from 'vitest';
import { Conversation, MISSING_TOOL_RESULT, SpokenTimeline, TurnDetector, wholeWordsPrefix, type Turn } from '../src/index.js';

describe('SpokenTimeline: what the caller heard of a reply', () => {
  it('keeps whole segments heard, and the whole words of the one being played', () => {
    const timeline = new SpokenTimeline();
    timeline.begin('Our shop opens at nine.');
    timeline.addAudio(2000);
    timeline.completeLast();
    timeline.begin('On Saturdays we close at noon.');
    timeline.addAudio(3000);
    timeline.completeLast();
    expect(timeline.heardText(0)).toBe('');
    expect(timeline.heardText(1999)).toBe('Our shop opens at');
    expect(timeline.heardText(2000)).toBe('Our shop opens at nine.');
    // Half of the second segment's characters: "On Saturdays we" (15 of 30).
    expect(timeline.heardText(3500)).toBe('Our shop opens at nine. On Saturdays we');
    expect(timeline.heardText(99_999)).toBe(timeline.text);
  });

  it('estimates a segment still being synthesized at the speaking rate, not at its audio so far', () => {
    const timeline = new SpokenTimeline();
    timeline.appendText('One two three four five six seven eight nine ten.');
    timeline.addAudio(500);
    // 50 characters at 65 ms: 3250 ms expected; 500 ms heard covers 7 characters, "One two".
    expect(timeline.heardText(500)).toBe('One two');
  });

  it('cuts at word boundaries', () => {
    expect(wholeWordsPrefix('hello world', 0.5)).toBe('hello');
    expect(wholeWordsPrefix('hello world', 0.3)).toBe('');
    expect(wholeWordsPrefix('hello world', 1)).toBe('hello world');
  });
});

describe('Conversation', () => {
  it('answers every tool call right after it, a missing result included', () => {
    const conversation = new Conversation(50);
    conversation.setSystem('Be brief.');
    conversation.addUser('What time is it and the weather?');
    conversation.addAssistant('Let me check.', [
      { id: 'a', name: 'time', argumentsJson: '{}' },
      { id: 'b', name: 'weather', argumentsJson: '{}' },
    ]);
    conversation.addUser('Hello?');
    conversation.addToolResult('a', '10:00');
    expect(conversation.messages()).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'What time is it and the weather?' },
      {
        role: 'assistant',
        content: 'Let me check.',
        toolCalls: [
          { id: 'a', name: 'time', argumentsJson: '{}' },
          { id: 'b', name: 'weather', argumentsJson: '{}' },
        ],
      },
      { role: 'tool', toolCallId: 'a', content: '10:00' },
      { role: 'tool', toolCallId: 'b', content: MISSING_TOOL_RESULT },
      { role: 'user', content: 'Hello?' },
    ]);
  });

  it('a reply nobody heard disappears and the two caller turns merge; a late truncate revives it', () => {
    const conversation = new Conversation(50);
    conversation.addUser('I want to book');
    const entry = conversation.addAssistant('');
    conversation.addUser('for tomorrow.');
    expect(conversation.messages()).toEqual([{ role: 'user', content: 'I want to book for tomorrow.' }]);
    conversation.truncate(entry, 'Sure,');
    expect(conversation.messages().map((m) => m.role)).toEqual(['user', 'assistant', 'user']);
  });

  it('is bounded and starts with a caller turn', () => {
    const conversation = new Conversation(4);
    for (let i = 0; i < 10; i++) {
      conversation.addUser(`u${i}`);
      conversation.addAssistant(`a${i}`);
    }
    const messages = conversation.messages();
    expect(messages.length).toBeLessThanOrEqual(4);
    expect(messages[0]).toEqual({ role: 'user', content: 'u8' });
  });
});

describe('TurnDetector', () => {
  afterEach(() => vi.useRealTimers());

  function detector(settings: Partial<ConstructorParameters<typeof TurnDetector>[0]> = {}) {
    const turns: Turn[] = [];
    let finalized = 0;
    const d = new TurnDetector(
      { asrEndpointing: true, asrFinalize: true, endpointMaxWaitMs: 1000, finalizeGraceMs: 500, ...settings },
      { finalize: () => finalized++, turn: (turn) => turns.push(turn) },
    );
    return { d, turns, finalized: () => finalized };
  }

  it("ends a turn on the ASR's end of utterance, with its words", () => {
    const { d, turns } = detector();
    d.speechStarted();
    d.asr({ type: 'partial', text: 'hello there' });
    expect(d.words).toBe(2);
    d.speechEnded(123);
    d.asr({ type: 'final', text: 'Hello there.' });
    d.asr({ type: 'end_of_utterance', text: 'Hello there.' });
    expect(turns).toEqual([{ text: 'Hello there.', endOfSpeechMs: 123, endedBy: 'asr' }]);
    expect(d.words).toBe(0);
  });

  it('falls back to the VAD: finalize after the max wait, then the words recognised so far', () => {
    vi.useFakeTimers();
    const { d, turns, finalized } = detector();
    d.asr({ type: 'partial', text: 'book a table' });
    d.speechEnded(5);
    vi.advanceTimersByTime(999);
    expect(finalized()).toBe(0);
    vi.advanceTimersByTime(1);
    expect(finalized()).toBe(1);
    vi.advanceTimersByTime(500);
    expect(turns).toEqual([{ text: 'book a table', endOfSpeechMs: 5, endedBy: 'vad' }]);
    // The ASR's late end of the same utterance is not a second turn.
    d.asr({ type: 'end_of_utterance', text: 'Book a table.' });
    expect(turns).toHaveLength(1);
    d.close();
  });

  it('the VAD hearing the end of speech the ASR already ended asks nothing more of the ASR', () => {
    vi.useFakeTimers();
    const { d, turns, finalized } = detector();
    d.speechStarted();
    d.asr({ type: 'final', text: 'Yes.' });
    d.asr({ type: 'end_of_utterance', text: 'Yes.' });
    d.speechEnded(900);
    vi.advanceTimersByTime(5000);
    expect(finalized()).toBe(0);
    expect(turns).toHaveLength(1);
    d.close();
  });

  it('a turn without words starts nothing; speech resuming cancels the wait', () => {
    vi.useFakeTimers();
    const { d, turns, finalized } = detector({ asrEndpointing: false });
    d.speechEnded(1);
    expect(finalized()).toBe(1);
    vi.advanceTimersByTime(5000);
    expect(turns).toEqual([]);
    d.asr({ type: 'partial', text: 'wait' });
    d.speechEnded(2);
    d.speechStarted();
    vi.advanceTimersByTime(5000);
    expect(turns).toEqual([]);
    d.close();
  });
});
