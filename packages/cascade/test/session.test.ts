import { afterEach, describe, expect, it } from 'vitest';
import type { LlmDelta, StsEvent, StsSession } from '@stsgate/core';
import { EventLog } from '@stsgate/testkit';
import { createCascadeSts } from '../src/index.js';
import { FakeAsr, FakeLlm, FakeTts, FakeVad, callContext, settings, textDeltas, type LlmScript } from './fakes.js';
import type { CascadeBehaviour } from '../src/index.js';

const sessions: StsSession[] = [];
afterEach(async () => {
  for (const session of sessions.splice(0)) await session.close();
});

async function start(script: LlmScript, options: { behaviour?: Partial<CascadeBehaviour>; tts?: FakeTts } = {}) {
  const stages = { asr: new FakeAsr(), vad: new FakeVad(), llm: new FakeLlm(script), tts: options.tts ?? new FakeTts() };
  const session = await createCascadeSts(settings(stages, options.behaviour)).connect(callContext());
  sessions.push(session);
  const log = new EventLog<StsEvent>(session.events);
  const said = (role: 'user' | 'agent') => log.of('transcript').filter((t) => t.role === role).map((t) => t.text);
  return { ...stages, session, log, said };
}

const frame = () => new Int16Array(160);

describe('cascade session (in-memory stages)', () => {
  it('answers a turn: chunks synthesized in order, one response, both transcripts, one turn_metrics', async () => {
    const { asr, tts, log, said } = await start(() => textDeltas('Hello there. How can I help you today?'));
    asr.say('hi');
    await log.until(() => said('agent').length === 1, 'the agent transcript');
    expect(said('user')).toEqual(['hi']);
    expect(said('agent')).toEqual(['Hello there. How can I help you today?']);
    expect(tts.requests.map((r) => r.text)).toEqual(['Hello there.', 'How can I help you today?']);
    const audio = log.of('audio');
    expect(new Set(audio.map((a) => a.responseId)).size).toBe(1);
    expect(audio.reduce((n, a) => n + a.samples.length, 0)).toBe(Math.round((12 + 25) * 10 * 8));
    expect(log.of('response_done')).toEqual([{ type: 'response_done', responseId: audio[0]?.responseId }]);
    expect(log.of('turn_metrics')).toHaveLength(1);
    expect(log.of('error')).toEqual([]);
  });

  it('garbage from the LLM mid-reply costs that turn one error; what was spoken stays, the next turn works', async () => {
    const { asr, llm, log, said } = await start(async function* () {
      yield { type: 'text', text: 'Sure. Let me' };
      throw new Error('Unexpected token < in JSON at position 0');
    });
    asr.say('first');
    await log.until(() => log.of('error').length === 1, 'an error');
    expect(log.of('error')[0]).toMatchObject({ fatal: false });
    expect(log.of('error')[0]?.error.message).toMatch(/^LLM \(fake-llm\) failed this turn: Unexpected token/);
    await log.until(() => said('agent').length === 1, 'the spoken part');
    llm.script = () => textDeltas('Fine.');
    asr.say('second');
    await log.until(() => said('agent').length === 2, 'the second reply');
    expect(llm.requests[1]?.messages.slice(-2)).toEqual([
      { role: 'assistant', content: 'Sure. Let me' },
      { role: 'user', content: 'second' },
    ]);
    expect(log.of('error')).toHaveLength(1);
  });

  it('a TTS failure mid-reply: one error at once, the LLM request aborted, no more synthesis, the history keeps what was spoken', async () => {
    const tts = new FakeTts(30);
    tts.refuse.add(1);
    const { asr, llm, log, said } = await start(async function* (_request, signal) {
      yield { type: 'text', text: 'Hello there. Second sentence here. Third sentence is this one. ' };
      // A model still thinking: it ends only when its request is aborted.
      await new Promise((resolve) => signal.addEventListener('abort', resolve));
    }, { tts });
    asr.say('hi');
    await log.until(() => log.of('error').length === 1, 'the TTS error');
    expect(log.of('error')[0]).toMatchObject({ fatal: false });
    expect(log.of('error')[0]?.error.message).toMatch(/^TTS \(fake-tts\) failed this turn: voice not found/);
    await log.until(() => said('agent').length === 1, 'the spoken part');
    expect(llm.signals[0]?.aborted).toBe(true);
    // Nothing written after the failure was sent to the TTS.
    expect(tts.requests).toHaveLength(2);
    expect(tts.requests[0]?.text).toBe('Hello there.');
    expect(said('agent')).toEqual(['Hello there.']);
    llm.script = () => textDeltas('Fine.');
    tts.refuse.clear();
    asr.say('again');
    await log.until(() => said('agent').length === 2, 'the next reply');
    expect(llm.requests[1]?.messages.slice(-3)).toEqual([
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: 'Hello there.' },
      { role: 'user', content: 'again' },
    ]);
    expect(log.of('error')).toHaveLength(1);
  });

  it('a reply that never ends is cut at maxReplyChars and its LLM request aborted', async () => {
    const { asr, llm, log } = await start(
      async function* (_request, signal) {
        while (!signal.aborted) {
          await new Promise((resolve) => setTimeout(resolve, 2));
          yield { type: 'text', text: 'and more ' } as LlmDelta;
        }
      },
      { behaviour: { maxReplyChars: 80 } },
    );
    asr.say('talk forever');
    await log.until(() => log.of('response_done').length === 1, 'the cut reply');
    expect(llm.signals[0]?.aborted).toBe(true);
    const spokenMs = log.of('audio').reduce((n, a) => n + a.samples.length, 0) / 8;
    expect(spokenMs).toBeLessThanOrEqual(90 * 10);
  });

  it('no first token in time: the request is abandoned and retried once', async () => {
    let attempt = 0;
    const { asr, llm, log, said } = await start(
      (_request, signal) => {
        attempt++;
        if (attempt === 1) {
          // A server that accepted the request and never sends a token.
          return (async function* (): AsyncGenerator<LlmDelta> {
            await new Promise((resolve) => signal.addEventListener('abort', resolve));
            yield* [];
          })();
        }
        return textDeltas('Here I am.');
      },
      { behaviour: { llmFirstTokenTimeoutMs: 100 } },
    );
    asr.say('hello?');
    await log.until(() => said('agent').length === 1, 'the reply');
    expect(llm.requests).toHaveLength(2);
    expect(llm.signals[0]?.aborted).toBe(true);
    expect(log.of('error')).toEqual([]);
  });

  it('a TTS request that stalls before its first audio is abandoned and retried; the reply is whole', async () => {
    const tts = new FakeTts();
    tts.stalls = 1;
    const { asr, log, said } = await start(() => textDeltas('All good here.'), { tts, behaviour: { ttsFirstAudioTimeoutMs: 150 } });
    asr.say('status?');
    await log.until(() => said('agent').length === 1, 'the reply');
    expect(tts.requests.map((r) => r.text)).toEqual(['All good here.', 'All good here.']);
    // The stalled request was cancelled upstream when it was given up, not at the end of the reply.
    expect(tts.abortedAt[0]).toBeLessThan(tts.firstAudioAt ?? 0);
    expect(log.of('audio').reduce((n, a) => n + a.samples.length, 0)).toBe(14 * 10 * 8);
    expect(log.of('error')).toEqual([]);
  });

  it('barge-in: speech_started at once, LLM and TTS aborted, history keeps what the host says was heard', async () => {
    const tts = new FakeTts(10, 20); // real time
    const text = 'One two three four five six, seven eight nine ten eleven twelve.';
    const { asr, vad, llm, session, log, said } = await start(() => textDeltas(text, 30), { tts });
    asr.say('count');
    // The first clause is being heard while the LLM still writes the rest.
    await log.until(() => log.of('audio').length >= 2, 'some audio');
    const responseId = log.of('audio')[0]?.responseId ?? '';
    vad.next({ type: 'speech_start', atMs: 0 });
    session.sendAudio(frame());
    await log.until(() => log.of('speech_started').length === 1, 'speech_started');
    const bargeInAt = performance.now();
    // The speech began at the start of the VAD's stream: one frame of caller audio ago.
    expect(log.of('speech_started')).toEqual([{ type: 'speech_started', onsetAgoMs: 20 }]);
    expect(llm.signals[0]?.aborted).toBe(true);
    // The request speaking the first clause was cancelled upstream by the barge-in.
    expect(tts.abortedAt.length).toBeGreaterThan(0);
    expect(Math.max(...tts.abortedAt)).toBeLessThan(bargeInAt + 50);
    await log.until(() => log.of('response_done').length === 1, 'the response closed');
    // The stop comes first: to the host the reply is still streaming, so a gap in its audio cannot hide the barge-in.
    expect(log.all.map((e) => e.type).filter((type) => type === 'speech_started' || type === 'response_done')).toEqual(['speech_started', 'response_done']);
    const audioCount = log.of('audio').length;
    session.truncate(responseId, 250);
    await log.until(() => said('agent').length === 1, 'the heard transcript');
    const heard = said('agent')[0] ?? '';
    expect(heard.length).toBeGreaterThan(0);
    expect(text.startsWith(heard)).toBe(true);
    expect(heard.length).toBeLessThan('One two three four five six,'.length);
    llm.script = () => textDeltas('Okay.');
    asr.say('stop');
    await log.until(() => said('agent').length === 2, 'the next reply');
    expect(llm.requests[1]?.messages.slice(-2)).toEqual([
      { role: 'assistant', content: heard },
      { role: 'user', content: 'stop' },
    ]);
    // Nothing of the cut reply came after the barge-in.
    expect(log.all.slice(log.all.findIndex((e) => e.type === 'speech_started')).filter((e) => e.type === 'audio' && e.responseId === responseId)).toHaveLength(0);
    expect(audioCount).toBeGreaterThan(0);
  });

  it('caller words while the agent speaks, without speech the VAD confirms, are not a turn', async () => {
    const { asr, llm, log, said } = await start(() => textDeltas('A long answer that takes a while to say out loud.'), { tts: new FakeTts(10, 20) });
    asr.say('question');
    await log.until(() => log.of('audio').length >= 3, 'audio');
    asr.say('echo');
    await log.until(() => said('agent').length === 1, 'the whole reply');
    expect(said('user')).toEqual(['question']);
    expect(llm.requests).toHaveLength(1);
    expect(log.of('speech_started')).toEqual([]);
  });

  it('keypad digits: one message per entry, "#" ends it, a pause ends it too', async () => {
    const { session, log, said } = await start(() => textDeltas('Noted.'), { behaviour: { dtmfInterDigitMs: 100 } });
    for (const digit of ['4', '2', '#']) session.sendDtmf(digit);
    await log.until(() => said('user').length === 1, 'the first entry');
    session.sendDtmf('7');
    session.sendDtmf('x');
    await log.until(() => said('user').length === 2, 'the second entry');
    expect(said('user')).toEqual(['The caller pressed 42 on the keypad.', 'The caller pressed 7 on the keypad.']);
  });

  it('keys pressed while the agent speaks stop the reply (interrupted); the history keeps what was heard by then', async () => {
    const text = 'First we will check your account. Then we will look at the last three invoices together.';
    const { asr, llm, session, log, said } = await start(() => textDeltas(text), { tts: new FakeTts(30, 20), behaviour: { dtmfInterDigitMs: 50 } });
    asr.say('help');
    await log.until(() => log.of('audio').length >= 40, 'some of the reply heard');
    llm.script = () => textDeltas('Got it.');
    session.sendDtmf('3');
    await log.until(() => log.of('interrupted').length === 1 && log.of('response_done').length === 1, 'interrupted, the cut reply closed');
    expect(log.all.map((e) => e.type).filter((type) => type === 'interrupted' || type === 'response_done')).toEqual(['interrupted', 'response_done']);
    await log.until(() => said('agent').length === 2, 'the answer to the digits');
    const heard = said('agent')[0] ?? '';
    expect(text.startsWith(heard)).toBe(true);
    expect(heard.length).toBeLessThan(text.length);
    expect(llm.requests[1]?.messages.slice(-2)).toEqual([
      { role: 'assistant', content: heard },
      { role: 'user', content: 'The caller pressed 3 on the keypad.' },
    ]);
  });

  it('keys pressed after the reply was written, while it still plays: the history keeps what was heard by then', async () => {
    const text = 'Your balance is forty two euros. Your next invoice is due on the first of next month.';
    // 30 ms a character delivered at once: about 2.6 s of audio the caller is still hearing.
    const { asr, llm, session, log, said } = await start(() => textDeltas(text), { tts: new FakeTts(30), behaviour: { dtmfInterDigitMs: 50 } });
    asr.say('balance');
    await log.until(() => log.of('response_done').length === 1, 'the reply written');
    await new Promise((resolve) => setTimeout(resolve, 1200));
    llm.script = () => textDeltas('Okay.');
    session.sendDtmf('1');
    await log.until(() => said('agent').length === 2, 'the answer to the digit');
    const heard = said('agent')[0] ?? '';
    expect(heard.length).toBeGreaterThan(0);
    expect(text.startsWith(heard)).toBe(true);
    expect(heard.length).toBeLessThan(text.indexOf('due'));
    expect(llm.requests[1]?.messages.at(-2)).toEqual({ role: 'assistant', content: heard });
  });

  it('a failing VAD costs barge-in, not the call: one error, and turns still work', async () => {
    const { asr, vad, session, log, said } = await start(() => textDeltas('Still here.'));
    vad.failNext = true;
    session.sendAudio(frame());
    await log.until(() => log.of('error').length === 1, 'the VAD error');
    expect(log.of('error')[0]).toMatchObject({ fatal: false });
    expect(log.of('error')[0]?.error.message).toMatch(/^VAD \(fake-vad\) failed, the call goes on without barge-in/);
    session.sendAudio(frame());
    asr.say('hello');
    await log.until(() => said('agent').length === 1, 'a reply');
    expect(log.of('error')).toHaveLength(1);
  });

  it('a tool call: the host runs it, its result goes back to the model, which then speaks', async () => {
    const { asr, llm, session, log, said } = await start((request) =>
      request.messages.at(-1)?.role === 'tool'
        ? textDeltas('It is ten o clock.')
        : (async function* (): AsyncGenerator<LlmDelta> {
            yield { type: 'text', text: 'Let me look.' };
            yield { type: 'tool_call', id: 'call-1', name: 'clock', argumentsJson: '{}' };
            yield { type: 'done', finishReason: 'tool_calls' };
          })(),
    );
    asr.say('what time is it');
    const call = await log.until(() => log.of('tool_call')[0], 'the tool call');
    expect(call).toMatchObject({ callId: 'call-1', name: 'clock' });
    session.submitToolResult('call-1', '10:00');
    session.submitToolResult('call-1', 'again');
    await log.until(() => said('agent').length === 2, 'both rounds spoken');
    expect(said('agent')).toEqual(['Let me look.', 'It is ten o clock.']);
    expect(llm.requests[1]?.messages.slice(-2)).toEqual([
      { role: 'assistant', content: 'Let me look.', toolCalls: [{ id: 'call-1', name: 'clock', argumentsJson: '{}' }] },
      { role: 'tool', toolCallId: 'call-1', content: '10:00' },
    ]);
  });

  it('a barge-in while an earlier round of a tool-calling reply still plays: history and transcript keep only what was heard of it', async () => {
    const first = 'Let me check the opening hours for you, one moment please.';
    // 30 ms a character delivered at once: the first round plays for about 1.7 s, long after both rounds were written.
    const { asr, vad, llm, session, log, said } = await start(
      (request) =>
        request.messages.at(-1)?.role === 'tool'
          ? textDeltas('We are open from nine to five.')
          : (async function* (): AsyncGenerator<LlmDelta> {
              yield { type: 'text', text: first };
              yield { type: 'tool_call', id: 'call-hours', name: 'hours', argumentsJson: '{}' };
              yield { type: 'done', finishReason: 'tool_calls' };
            })(),
      { tts: new FakeTts(30) },
    );
    asr.say('when are you open');
    await log.until(() => log.of('tool_call')[0], 'the tool call');
    session.submitToolResult('call-hours', '9-17');
    await log.until(() => log.of('response_done').length === 2, 'both rounds written');
    const [firstId, secondId] = log.of('response_done').map((e) => e.responseId);
    vad.next({ type: 'speech_start', atMs: 0 });
    session.sendAudio(frame());
    await log.until(() => log.of('speech_started').length === 1, 'the barge-in');
    // The host truncates its latest response: the second round, not heard at all.
    session.truncate(secondId ?? '', 0);
    llm.script = () => textDeltas('Okay.');
    asr.say('thanks');
    await log.until(() => said('agent').includes('Okay.'), 'the next reply');
    const request = llm.requests[2]?.messages ?? [];
    const heard = request.find((m) => m.role === 'assistant' && m.toolCalls !== undefined)?.content ?? '';
    expect(first.startsWith(heard)).toBe(true);
    expect(heard.length).toBeLessThan(first.length);
    expect(said('agent')).not.toContain(first);
    expect(firstId).not.toBe(secondId);
  });

  it('a fatal ASR error ends the session with one fatal error; close is idempotent and closes every stage', async () => {
    const { asr, vad, session, log } = await start(() => textDeltas('unused'));
    const { ProviderError } = await import('@stsgate/core');
    asr.events.push({ type: 'error', error: new ProviderError('fake-asr', 'auth', 'key refused'), fatal: true });
    await log.done;
    expect(log.of('error')).toHaveLength(1);
    expect(log.of('error')[0]?.fatal).toBe(true);
    await Promise.all([session.close(), session.close()]);
    expect(asr.closed).toBe(true);
    expect(vad.closed).toBe(true);
    expect(() => {
      session.sendAudio(frame());
      session.sendDtmf('1');
      session.truncate('x', 1);
      session.submitToolResult('y', 'z');
    }).not.toThrow();
  });

  it('the VAD confirms speech after the barge-in minimum', async () => {
    const { vad } = await start(() => textDeltas('x'), { behaviour: { bargeInMinSpeechMs: 400 } });
    expect(vad.opened?.minSpeechMs).toBe(400);
  });
});
