import { describe, expect, it } from 'vitest';
import { ProviderError } from '@stsgate/core';
import {
  ChatStreamAccumulator,
  buildSession,
  heardText,
  parseServerMessage,
  providerErrorFromClose,
  providerErrorFromUpgrade,
  realtimeClassifiers,
  realtimeUrl,
  sanitizeMessage,
} from '../src/index.js';
import type { SessionSettings } from '../src/index.js';
import type { SampleRate, VadEvent, VadStream } from '@stsgate/core';
import { Handshake } from '../src/realtime/handshake.js';
import { VadTurnTaker } from '../src/realtime/vad-turns.js';
import type { VadTurnsSink } from '../src/realtime/vad-turns.js';
import { audioAppendText, sessionUpdate } from '../src/realtime/wire.js';
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';

describe('wire', () => {
  const settings: SessionSettings = {
    audioFormat: 'pcm24',
    voice: 'cedar',
    instructions: 'Be brief.',
    turnDetection: { type: 'none' },
    tools: [],
  };

  it('builds the GA session: object formats, null turn detection, no tools or temperature when unset', () => {
    expect(buildSession(settings)).toEqual({
      type: 'realtime',
      output_modalities: ['audio'],
      instructions: 'Be brief.',
      audio: {
        input: { format: { type: 'audio/pcm', rate: 24000 }, turn_detection: null },
        output: { format: { type: 'audio/pcm', rate: 24000 }, voice: 'cedar' },
      },
    });
    const server = buildSession({ ...settings, audioFormat: 'pcmu', turnDetection: { type: 'server_vad', threshold: 0.6, silenceDurationMs: 500, prefixPaddingMs: 200 } });
    expect(server.audio?.input?.turn_detection).toEqual({
      type: 'server_vad',
      threshold: 0.6,
      prefix_padding_ms: 200,
      silence_duration_ms: 500,
      create_response: true,
      interrupt_response: true,
    });
  });

  it('always sends the server_vad parameters it relies on, with the documented defaults (0.5, 300 ms, 500 ms)', () => {
    expect(buildSession({ ...settings, turnDetection: { type: 'server_vad' } }).audio?.input?.turn_detection).toEqual({
      type: 'server_vad',
      threshold: 0.5,
      prefix_padding_ms: 300,
      silence_duration_ms: 500,
      create_response: true,
      interrupt_response: true,
    });
    expect(buildSession({ ...settings, turnDetection: { type: 'server_vad', silenceDurationMs: 800 } }).audio?.input?.turn_detection).toMatchObject({
      threshold: 0.5,
      prefix_padding_ms: 300,
      silence_duration_ms: 800,
    });
  });

  it('never sends empty instructions (an empty string would clear the server default)', () => {
    for (const instructions of ['', '   ', undefined]) {
      expect(buildSession({ ...settings, instructions })).not.toHaveProperty('instructions');
    }
  });

  it('parses events, normalises beta names, and never throws', () => {
    expect(parseServerMessage('{"type":"response.audio.delta","item_id":"i","delta":"AAA="}')).toEqual({
      kind: 'event',
      event: { type: 'response.output_audio.delta', item_id: 'i', delta: 'AAA=' },
    });
    expect(parseServerMessage('{"type":"conversation.item.created","item":{"id":"x","type":"message"}}')).toMatchObject({
      kind: 'event',
      event: { type: 'conversation.item.added' },
    });
    expect(parseServerMessage('{"type":"rate_limits.updated"}')).toEqual({ kind: 'ignored', type: 'rate_limits.updated' });
    expect(parseServerMessage('{"type":"something.new"}')).toEqual({ kind: 'unknown', type: 'something.new' });
    expect(parseServerMessage('[1]')).toMatchObject({ kind: 'malformed' });
    expect(parseServerMessage('{"type":7}')).toMatchObject({ kind: 'malformed' });
    const bad = parseServerMessage('{"type":"conversation.item.input_audio_transcription.completed","item_id":"u","transcript":42}');
    expect(bad).toMatchObject({ kind: 'malformed', type: 'conversation.item.input_audio_transcription.completed' });
    expect(JSON.stringify(bad)).not.toContain('42'); // the problem never quotes the payload
  });

  it('an append is the JSON of the typed event, written by a template', () => {
    const audio = Buffer.from(Uint8Array.from({ length: 321 }, (_, i) => i & 0xff)).toString('base64');
    expect(audioAppendText(audio)).toBe(JSON.stringify({ type: 'input_audio_buffer.append', audio }));
  });

  it('audio deltas (checked by hand, not by the schema) keep exactly the schema fields and refuse what it refuses', () => {
    const full = { type: 'response.output_audio.delta', event_id: 'e', response_id: 'r', item_id: 'i', output_index: 0, content_index: 0, delta: 'AAA=' };
    expect(parseServerMessage(JSON.stringify(full))).toEqual({
      kind: 'event',
      event: { type: 'response.output_audio.delta', response_id: 'r', item_id: 'i', delta: 'AAA=' },
    });
    for (const broken of [{ item_id: 7 }, { delta: null }, { response_id: 3 }, { item_id: undefined }]) {
      const result = parseServerMessage(JSON.stringify({ ...full, ...broken }));
      expect(result).toMatchObject({ kind: 'malformed', type: 'response.output_audio.delta' });
    }
  });
});

describe('handshake', () => {
  const update = sessionUpdate('upd_1', buildSession({ audioFormat: 'pcmu', voice: 'alloy', instructions: '', turnDetection: { type: 'server_vad' }, tools: [] }));
  const msg = (event: Record<string, unknown>) => parseServerMessage(JSON.stringify(event));

  it('created -> send update -> updated = configured; warns when the server kept other formats', () => {
    const handshake = new Handshake(update);
    expect(handshake.handle(msg({ type: 'conversation.created', conversation: {} }))).toEqual({ kind: 'pass' });
    expect(handshake.handle(msg({ type: 'session.created', session: {} }))).toEqual({ kind: 'send_update', event: update });
    const step = handshake.handle(
      msg({ type: 'session.updated', session: { audio: { input: { format: { type: 'audio/pcm' } }, output: { format: { type: 'audio/pcmu' } } } } }),
    );
    expect(step).toEqual({ kind: 'configured', warnings: ['input audio format is audio/pcm, not audio/pcmu'] });
    expect(handshake.handle(msg({ type: 'session.updated', session: {} }))).toEqual({ kind: 'pass' });
  });

  it('an error naming the update fails the handshake for good; other errors wait for the close', () => {
    const handshake = new Handshake(update, 'sk-secret-000');
    expect(handshake.handle(msg({ type: 'error', error: { code: 'invalid_api_key', message: 'bad key' } }))).toEqual({ kind: 'wait' });
    handshake.handle(msg({ type: 'session.created', session: {} }));
    const step = handshake.handle(
      msg({ type: 'error', error: { type: 'invalid_request_error', code: 'unknown_parameter', message: "Unknown parameter: 'session.temperature'.", param: 'session.temperature', event_id: 'upd_1' } }),
    );
    expect(step.kind).toBe('failed');
    if (step.kind !== 'failed') return;
    expect(step.error).toMatchObject({ category: 'invalid_request', retryable: false, providerCode: 'unknown_parameter' });
    expect(step.error.message).toBe("OpenAI rejected the session configuration: Unknown parameter: 'session.temperature'. (unknown_parameter, param session.temperature)");
  });
});

describe('errors', () => {
  it('maps OpenAI close codes', () => {
    expect(providerErrorFromClose(3000, 'invalid_request_error.invalid_api_key', { code: 'invalid_api_key', message: 'Incorrect API key provided: sk-ab***yz' })).toMatchObject({
      category: 'auth',
      retryable: false,
      providerCode: 'invalid_api_key',
    });
    expect(providerErrorFromClose(4000, 'invalid_request_error.invalid_model', undefined)).toMatchObject({ category: 'invalid_request', retryable: false });
    expect(providerErrorFromClose(1006, '', undefined)).toMatchObject({ category: 'connectivity', retryable: true });
    expect(providerErrorFromClose(1011, 'boom', undefined)).toMatchObject({ category: 'server', retryable: true });
    expect(providerErrorFromClose(1000, 'session expired', undefined)).toMatchObject({ category: 'closed', retryable: true });
  });

  it('maps rejected upgrades by status, with Retry-After', () => {
    expect(providerErrorFromUpgrade(401, '{"error":{"message":"bad"}}', undefined)).toMatchObject({ category: 'auth', retryable: false, statusCode: 401 });
    expect(providerErrorFromUpgrade(403, '', undefined)).toMatchObject({ category: 'permission', retryable: false });
    expect(providerErrorFromUpgrade(429, '', '2')).toMatchObject({ category: 'rate_limit', retryable: true, retryAfterMs: 2000 });
    expect(providerErrorFromUpgrade(502, 'Bad gateway', undefined)).toMatchObject({ category: 'server', retryable: true });
  });

  it('redacts key shapes in a rejected upgrade and names the provider; the close classifier reads the last error', () => {
    const xai = { id: 'xai', label: 'xAI' };
    const upgrade = providerErrorFromUpgrade(401, '{"code":"bad","error":"Incorrect API key provided: xai-abcd***wxyz"}', undefined, 'xai-secret-1', xai);
    expect(upgrade).toMatchObject({ provider: 'xai', category: 'auth', statusCode: 401 });
    expect(upgrade.message).toBe('xAI rejected the connection: authentication failed (HTTP 401): Incorrect API key provided: xai-[redacted]');
    const seen: { lastError?: { code: string; message: string } } = {};
    const classify = realtimeClassifiers(xai, 'xai-secret-1', () => seen.lastError);
    expect(classify.close({ code: 1011, reason: 'boom' })).toMatchObject({ provider: 'xai', category: 'server', providerCode: 'boom' });
    seen.lastError = { code: 'invalid_api_key', message: 'key xai-secret-1 revoked' };
    const closed = classify.close({ code: 3000, reason: '' });
    expect(closed).toMatchObject({ category: 'auth', retryable: false, providerCode: 'invalid_api_key' });
    expect(closed.message).toBe('xAI closed the connection: authentication failed: key [redacted] revoked (invalid_api_key)');
    expect(classify.connection(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))).toMatchObject({ provider: 'xai', category: 'connectivity' });
  });

  it('redacts keys from server messages', () => {
    expect(sanitizeMessage('Incorrect API key provided: sk-proj-abc***wxyz.')).toBe('Incorrect API key provided: sk-[redacted].');
    expect(sanitizeMessage('key my-own-secret leaked', 'my-own-secret')).toBe('key [redacted] leaked');
  });
});

describe('helpers', () => {
  it('realtimeUrl adds the model and accepts ws, wss and http(s)', () => {
    expect(realtimeUrl('wss://api.openai.com/v1/realtime', 'gpt-realtime-2')).toBe('wss://api.openai.com/v1/realtime?model=gpt-realtime-2');
    expect(realtimeUrl('http://127.0.0.1:9000/v1/realtime?x=1', 'm')).toBe('ws://127.0.0.1:9000/v1/realtime?x=1&model=m');
    expect(() => realtimeUrl('ftp://x', 'm')).toThrow(ProviderError);
  });

  it('heardText keeps whole words in proportion to what was heard', () => {
    expect(heardText('one two three four', undefined, 1000)).toBe('one two three four');
    expect(heardText('one two three four', 500, 1000)).toBe('one two');
    expect(heardText('one two three four', 0, 1000)).toBe('');
    expect(heardText('one two three four', 2000, 1000)).toBe('one two three four');
  });

  it('ChatStreamAccumulator joins tool-call fragments by index and reports them before done', () => {
    const chunk = (delta: Record<string, unknown>, finish: string | null = null): ChatCompletionChunk =>
      ({ id: 'c', object: 'chat.completion.chunk', created: 0, model: 'm', choices: [{ index: 0, delta, finish_reason: finish }] }) as ChatCompletionChunk;
    const acc = new ChatStreamAccumulator();
    const out = [
      ...acc.push(chunk({ role: 'assistant', content: 'Let me check. ' })),
      ...acc.push(chunk({ tool_calls: [{ index: 1, id: 'call_b', type: 'function', function: { name: 'b', arguments: '' } }] })),
      ...acc.push(chunk({ tool_calls: [{ index: 0, id: 'call_a', type: 'function', function: { name: 'a', arguments: '{"x"' } }] })),
      ...acc.push(chunk({ tool_calls: [{ index: 0, function: { arguments: ':1}' } }] })),
      ...acc.push(chunk({}, 'tool_calls')),
      ...acc.end(),
    ];
    expect(out).toEqual([
      { type: 'text', text: 'Let me check. ' },
      { type: 'tool_call', id: 'call_a', name: 'a', argumentsJson: '{"x":1}' },
      { type: 'tool_call', id: 'call_b', name: 'b', argumentsJson: '{}' },
      { type: 'done', finishReason: 'tool_calls' },
    ]);
  });
});

describe('VadTurnTaker', () => {
  /** A VAD stream that reports scripted events for each batch. */
  function scriptedStream(script: VadEvent[][], rate: SampleRate = 8000): VadStream & { fed: number } {
    const stream = {
      sampleRate: rate,
      fed: 0,
      process: (samples: Int16Array) => {
        stream.fed += samples.length;
        return Promise.resolve(script.shift() ?? []);
      },
      reset: () => undefined,
      close: () => Promise.resolve(),
    };
    return stream;
  }

  function recorder() {
    const log: string[] = [];
    const forwarded: Int16Array[] = [];
    const sink: VadTurnsSink = {
      forward: (samples) => forwarded.push(samples),
      speechStarted: () => log.push('start'),
      speechEnded: () => log.push('end'),
      failed: (error) => log.push(`failed: ${error.message}`),
    };
    return { log, forwarded, sink, sent: () => forwarded.reduce((n, s) => n + s.length, 0) };
  }

  const frame = (value: number) => new Int16Array(800).fill(value); // 100 ms at 8 kHz
  const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

  it('sends nothing while nobody speaks, then the speech from prefix padding before its start, then commits at its end', async () => {
    // batches 1-3: silence; batch 4 confirms speech that began at 250 ms; batch 6 ends it
    const stream = scriptedStream([[], [], [], [{ type: 'speech_start', atMs: 250 }], [], [{ type: 'speech_end', atMs: 600, audio: new Int16Array(0) }], []]);
    const { log, forwarded, sink, sent } = recorder();
    const turns = new VadTurnTaker(stream, 8000, 100, 'scripted', sink);
    for (let i = 0; i < 7; i++) {
      turns.push(frame(i + 1));
      await settle();
    }
    expect(log).toEqual(['start', 'end']);
    // from 150 ms (250 - 100 of padding) to the end of speech as judged: batch 2 (its second half) to batch 6
    expect(forwarded[0]?.[0]).toBe(2);
    expect(sent()).toBe(400 + 800 * 4);
    expect(forwarded.at(-1)?.[0]).toBe(6); // batch 7 came after the end: held, not sent
    await turns.close();
  });

  it('takes misfires for silence and resamples for a VAD at another rate', async () => {
    const stream = scriptedStream([[{ type: 'misfire', atMs: 10 }]], 16000);
    const { log, sink, sent } = recorder();
    const turns = new VadTurnTaker(stream, 24000, 300, 'scripted', sink);
    turns.push(new Int16Array(2400));
    await settle();
    expect(log).toEqual([]);
    expect(sent()).toBe(0);
    expect(stream.fed).toBeGreaterThan(1400); // 100 ms at 16 kHz, less the filter's delay
    await turns.close();
  });

  it('reports a failing VAD once and stops', async () => {
    const stream: VadStream = { sampleRate: 8000, process: () => Promise.reject(new Error('bad tensor')), reset: () => undefined, close: () => Promise.resolve() };
    const { log, sink } = recorder();
    const turns = new VadTurnTaker(stream, 8000, 300, 'scripted', sink);
    turns.push(frame(1));
    turns.push(frame(2));
    await settle();
    expect(log).toEqual(['failed: bad tensor']);
    await turns.close();
  });
});
