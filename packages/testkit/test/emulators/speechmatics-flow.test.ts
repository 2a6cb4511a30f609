import { FlowClient, SpeechmaticsFlowError } from '@speechmatics/flow-client';
import { encodeMulaw } from '@stsgate/core';
import { afterEach, describe, expect, test } from 'vitest';
import WebSocket from 'ws';
import {
  FLOW_CLOSE_CODES,
  FLOW_ERROR_TYPES,
  FLOW_NO_RESPONSE_REQUIRED,
  flowAgentBaseFrequency,
  startSpeechmaticsFlowEmulator,
  type FlowFault,
  type FlowTurn,
  type SpeechmaticsFlowEmulator,
  type SpeechmaticsFlowEmulatorOptions,
} from '../../src/emulators/speechmatics-flow.js';
import { tone } from '../../src/emulators/common.js';
import { FIXTURE_TEXT, fixturePath } from '../../src/fixtures.js';
import { concatPcm, goertzel, silence } from '../../src/signals.js';
import { readWavAs8k } from '../../src/wav.js';
import { connectRawClient, pcm16Bytes, pcm16Frames, type RawWsClient } from './ws-client.js';

let emulator: SpeechmaticsFlowEmulator | undefined;
const clients: WebSocket[] = [];
afterEach(async () => {
  for (const ws of clients.splice(0)) ws.terminate();
  await emulator?.close();
  emulator = undefined;
});

async function start(options: SpeechmaticsFlowEmulatorOptions = {}): Promise<SpeechmaticsFlowEmulator> {
  emulator = await startSpeechmaticsFlowEmulator(options);
  return emulator;
}

const START = {
  message: 'StartConversation',
  conversation_config: { template_id: 'tmpl:latest', template_variables: { persona: 'tester' } },
  audio_format: { type: 'raw', encoding: 'pcm_s16le', sample_rate: 8000 },
} as const;

type Msg = Record<string, unknown> & { message?: string };

interface AgentAudioFrame {
  readonly samples: Int16Array;
  readonly bytes: number;
  readonly at: number;
}

interface RawFlowClient extends Omit<RawWsClient<Msg>, 'messages'> {
  /** JSON messages, all or those of one `message` type. */
  messages(type?: string): Msg[];
  /** Binary frames (agent audio, PCM s16le), in order. */
  audioFrames(): AgentAudioFrame[];
  /** Sends PCM s16le in frames (default 20 ms at 8 kHz), as fast as possible. */
  sendPcm(samples: Int16Array, frameSamples?: number): void;
  next(type: string, predicate?: (message: Msg) => boolean): Promise<Msg>;
}

/** A raw ws client that records every frame and (by default) acks agent audio like the SDK does. */
async function connect(
  url: string,
  options: { readonly headers?: Record<string, string>; readonly ack?: boolean; readonly jwt?: string | null } = {},
): Promise<RawFlowClient> {
  const target = options.jwt === null ? url : `${url}?jwt=${options.jwt ?? 'test-jwt'}&sm-app=test`;
  let serverSeq = 0;
  const client = await connectRawClient<Msg>(target, {
    headers: options.headers ?? {},
    onBinary: (_data, ws) => {
      if (options.ack !== false && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ message: 'AudioReceived', seq_no: ++serverSeq, buffering: 0.02 }));
    },
  });
  clients.push(client.ws);
  const messages = (type?: string): Msg[] => client.messages.filter((message) => type === undefined || message.message === type);
  return {
    ...client,
    messages,
    audioFrames: () =>
      client.frames.flatMap((frame) =>
        frame.kind === 'binary' ? [{ samples: new Int16Array(frame.data.buffer, frame.data.byteOffset, frame.data.length >> 1), bytes: frame.data.length, at: frame.at }] : [],
      ),
    sendPcm: (samples, frameSamples = 160) => {
      for (const frame of pcm16Frames(samples, frameSamples)) client.ws.send(frame);
    },
    next: (type, predicate) => client.until(() => messages(type).find((message) => predicate?.(message) ?? true), type),
  };
}

/** Connects, sends StartConversation and waits for ConversationStarted. */
async function startedClient(emu: SpeechmaticsFlowEmulator, start: Record<string, unknown> = START): Promise<RawFlowClient> {
  const client = await connect(emu.url);
  client.send(start);
  await client.next('ConversationStarted');
  return client;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function concatSamples(parts: readonly Int16Array[]): Int16Array {
  return concatPcm(...parts);
}

describe('Speechmatics Flow emulator with the real @speechmatics/flow-client SDK', () => {
  test('8 kHz caller audio in, transcript, 16 kHz agent audio out, acks and AudioEnded', async () => {
    const emu = await start({ pacing: 4 });
    const client = new FlowClient(emu.baseUrl, { appId: 'test', websocketBinaryType: 'arraybuffer' });
    const order: string[] = [];
    const messages: Msg[] = [];
    let agentSamples = 0;
    let responseCompleted: () => void = () => undefined;
    const completed = new Promise<void>((resolve) => (responseCompleted = resolve));
    client.addEventListener('message', (event) => {
      messages.push(event.data as Msg);
      order.push(event.data.message);
      if (event.data.message === 'ResponseCompleted') responseCompleted();
    });
    client.addEventListener('agentAudio', (event) => {
      agentSamples += event.data.length;
      order.push('audio');
    });
    await client.startConversation('jwt-token', {
      config: { template_id: 'tmpl:latest', template_variables: {} },
      audioFormat: { type: 'raw', encoding: 'pcm_s16le', sample_rate: 8000 },
    });
    const conn = await emu.waitForConnection();
    expect(conn.query).toMatchObject({ jwt: 'jwt-token', 'sm-app': 'test' });
    expect(conn.path).toBe('/v1/flow');
    expect(conn.authVia).toBe('jwt');
    expect(typeof conn.startConversation?.conversation_config.template_variables?.timezone).toBe('string');
    expect(conn.audioFormat).toEqual({ type: 'raw', encoding: 'pcm_s16le', sample_rate: 8000 });

    const audio = concatPcm(readWavAs8k(fixturePath('greeting')), silence(1000));
    for (let i = 0; i < audio.length; i += 160) {
      const frame = audio.slice(i, i + 160);
      client.sendAudio(frame.buffer);
    }
    await completed;
    await emu.waitFor(() => conn.responses[0]?.outcome === 'completed' && conn.audioAcks.length === conn.agentFramesSent);

    const transcript = messages.find((m) => m.message === 'AddTranscript') as { metadata: { transcript: string } } | undefined;
    expect(transcript?.metadata.transcript.trim()).toBe(FIXTURE_TEXT['greeting.wav']);
    expect(messages.some((m) => m.message === 'AddPartialTranscript')).toBe(true);
    const started = messages.find((m) => m.message === 'ResponseStarted');
    expect(started?.content).toBe(`Reply 1 to: ${FIXTURE_TEXT['greeting.wav']}`);
    // Agent audio is 16 kHz whatever the input rate: 1500 ms = 24000 samples.
    expect(agentSamples).toBe(1500 * 16);
    const first = order.indexOf('ResponseStarted');
    const last = order.indexOf('ResponseCompleted');
    expect(order.slice(first + 1, last).every((entry) => entry === 'audio' || entry === 'AudioAdded')).toBe(true);
    expect(order.slice(first + 1, last)).toContain('audio');
    expect(conn.userTurns).toEqual([expect.objectContaining({ index: 0, text: FIXTURE_TEXT['greeting.wav'] })]);
    expect(conn.inputAudioMs).toBe(audio.length / 8);

    // The SDK acked every server frame in order, with its buffering field.
    expect(conn.agentFramesSent).toBe(Math.ceil(24000 / 640));
    expect(conn.audioAcks.map((ack) => ack.seq_no)).toEqual(Array.from({ length: conn.agentFramesSent }, (_, i) => i + 1));
    expect(conn.audioAcks.every((ack) => ack.buffering === 0.01)).toBe(true);
    expect(conn.ackIssues).toEqual([]);

    client.endConversation();
    await emu.waitFor(() => conn.closeInfo);
    expect(conn.audioEnded).toEqual({ last_seq_no: conn.inputFrames, audioAddedSent: conn.inputFrames });
    expect(conn.received.at(-1)).toEqual({ message: 'AudioEnded', last_seq_no: conn.inputFrames });
  });

  test('an Error at start rejects startConversation with a ServerError', async () => {
    const emu = await start({ faults: [{ at: 'start', action: { type: 'error', errorType: 'quota_exceeded' } }] });
    const client = new FlowClient(emu.baseUrl, { appId: 'test', websocketBinaryType: 'arraybuffer' });
    const error = await client
      .startConversation('jwt', { config: { template_id: 't', template_variables: {} } })
      .then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(SpeechmaticsFlowError);
    expect((error as SpeechmaticsFlowError).type).toBe('ServerError');
    expect((error as SpeechmaticsFlowError).cause).toMatchObject({ message: 'Error', type: 'quota_exceeded' });
    const conn = await emu.waitForConnection();
    await emu.waitFor(() => conn.closeInfo);
    expect(conn.closeInfo).toEqual({ code: 4005, reason: 'quota_exceeded', by: 'server' });
    // The SDK's default audio format.
    expect(conn.audioFormat).toEqual({ type: 'raw', encoding: 'pcm_s16le', sample_rate: 16000 });
  });

  test('a refused token fails the SDK upgrade (HTTP 401)', async () => {
    const emu = await start({ verifyToken: (jwt) => jwt === 'good' });
    const client = new FlowClient(emu.baseUrl, { appId: 'test', websocketBinaryType: 'arraybuffer' });
    const error = await client
      .startConversation('bad', { config: { template_id: 't', template_variables: {} } })
      .then(() => undefined, (e: unknown) => e);
    expect((error as SpeechmaticsFlowError).type).toBe('SocketError');
    expect(emu.upgrades).toEqual([expect.objectContaining({ status: 401, path: '/v1/flow' })]);
    expect(emu.connections).toHaveLength(0);
  });
});

describe('Speechmatics Flow emulator protocol (raw ws)', () => {
  test('handshake, Info, AudioAdded acks, 16 kHz output for 16 kHz, mulaw and f32 input', async () => {
    const emu = await start({ pacing: 20, reply: () => ({ text: 'ok', ms: 200 }) });
    const speech = (rate: number): Int16Array => concatPcm(tone(400, rate, 300), silence(800, rate));
    const formats = [
      { encoding: 'pcm_s16le', sample_rate: 16000, payload: (s: Int16Array) => pcm16Bytes(s), rate: 16000 },
      { encoding: 'mulaw', sample_rate: 8000, payload: (s: Int16Array) => Buffer.from(encodeMulaw(s)), rate: 8000 },
      {
        encoding: 'pcm_f32le',
        sample_rate: 8000,
        payload: (s: Int16Array) => {
          const out = Buffer.alloc(s.length * 4);
          s.forEach((v, i) => out.writeFloatLE(v / 32768, i * 4));
          return out;
        },
        rate: 8000,
      },
    ];
    for (const format of formats) {
      const client = await startedClient(emu, { ...START, audio_format: { type: 'raw', encoding: format.encoding, sample_rate: format.sample_rate } });
      const conn = emu.connections.at(-1);
      expect(client.messages().map((m) => m.message)).toEqual(['ConversationStarted', 'Info']);
      expect(client.messages('ConversationStarted')[0]).toMatchObject({ id: conn?.conversationId, language_pack_info: { word_delimiter: ' ' } });
      expect(client.messages('Info')[0]).toMatchObject({ type: 'status_update', event: { status: 'running' } });
      const samples = speech(format.rate);
      const frame = format.rate / 50;
      for (let i = 0; i < samples.length; i += frame) client.ws.send(format.payload(samples.subarray(i, i + frame)));
      await client.next('ResponseCompleted');
      const added = client.messages('AudioAdded').map((m) => m.seq_no);
      expect(added).toEqual(Array.from({ length: samples.length / frame }, (_, i) => i + 1));
      expect(client.messages('AddTranscript')[0]).toMatchObject({ format: '2.1', metadata: { transcript: 'utterance 1 ' } });
      // 200 ms at 16 kHz in 40 ms frames of 1280 bytes.
      expect(client.audioFrames().map((f) => f.bytes)).toEqual([1280, 1280, 1280, 1280, 1280]);
      expect(conn?.inputAudioMs).toBeCloseTo(1200, 0);
      client.ws.close();
    }
  });

  test('AddTranscript has the RT shape: words, punctuation, times on the audio clock', async () => {
    const emu = await start({ pacing: 20, recognize: () => 'Hello there. How are you?' });
    const client = await startedClient(emu);
    client.sendPcm(concatPcm(silence(500), tone(1000, 8000, 300), silence(800)));
    const final = await client.next('AddTranscript');
    expect(final.metadata).toEqual({ start_time: 0.5, end_time: 1.5, transcript: 'Hello there. How are you? ' });
    const results = final.results as { type: string; start_time: number; is_eos?: boolean; attaches_to?: string; alternatives: { content: string }[] }[];
    expect(results.map((r) => r.alternatives[0]?.content)).toEqual(['Hello', 'there', '.', 'How', 'are', 'you', '?']);
    expect(results[2]).toMatchObject({ type: 'punctuation', attaches_to: 'previous', is_eos: true });
    expect(results[0]).toMatchObject({ type: 'word', start_time: 0.5 });
    const partials = client.messages('AddPartialTranscript');
    expect(partials.length).toBeGreaterThanOrEqual(2);
    expect(client.frames.findIndex((e) => e.kind === 'json' && e.message.message === 'AddPartialTranscript')).toBeLessThan(
      client.frames.findIndex((e) => e.kind === 'json' && e.message.message === 'AddTranscript'),
    );
  });

  test('real-time pacing: frames due at k x chunkMs, ResponseCompleted at the end of the audio', async () => {
    const emu = await start({ chunkMs: 20, reply: (turn) => ({ text: `answer ${turn.userText}`, ms: 400 }) });
    const client = await startedClient(emu);
    client.send({ message: 'AddInput', input: 'go', immediate: true });
    const started = await client.next('ResponseStarted');
    const completed = await client.next('ResponseCompleted');
    const startedAt = client.frames.find((e) => e.kind === 'json' && e.message === started)?.at ?? 0;
    const completedAt = client.frames.find((e) => e.kind === 'json' && e.message === completed)?.at ?? 0;
    const frames = client.audioFrames();
    expect(frames).toHaveLength(20);
    expect(frames.every((f) => f.bytes === 640)).toBe(true);
    expect(completedAt - startedAt).toBeGreaterThanOrEqual(390);
    expect(completedAt - startedAt).toBeLessThan(600);
    const lastFrameAt = (frames.at(-1)?.at ?? 0) - startedAt;
    expect(lastFrameAt).toBeGreaterThanOrEqual(370);
    expect(completed).toMatchObject({ content: 'answer go' });
    expect((completed.end_time as number) - (completed.start_time as number)).toBeCloseTo(0.4, 3);
  });

  test('barge-in: caller speech during agent audio interrupts it, and becomes the next turn', async () => {
    const emu = await start({
      chunkMs: 20,
      reply: (turn) => (turn.index === 0 ? { text: 'one two three four five six seven eight nine ten', ms: 2000 } : { text: `Reply to ${turn.userText}`, ms: 200 }),
    });
    const client = await startedClient(emu);
    const conn = await emu.waitForConnection();
    client.send({ message: 'AddInput', input: 'talk', immediate: true });
    await client.next('ResponseStarted');
    await client.until(() => client.audioFrames().length >= 25, '500 ms of agent audio');
    client.sendPcm(concatPcm(tone(400, 8000, 300), silence(800)));
    const interrupted = await client.next('ResponseInterrupted');
    const framesAtInterrupt = client.audioFrames().length;
    const record = conn.responses[0];
    expect(record).toMatchObject({ outcome: 'interrupted', interruptedBy: 'barge-in', id: 1 });
    expect(record?.audioMsSent).toBeLessThan(1200);
    expect(record?.audioMsSent).toBeGreaterThanOrEqual(500);
    const spoken = String(interrupted.content);
    expect('one two three four five six seven eight nine ten'.startsWith(spoken)).toBe(true);
    expect(spoken.split(' ').length).toBeLessThan(10);
    expect(spoken).toBe(record?.spokenContent);
    expect((interrupted.end_time as number) - (interrupted.start_time as number)).toBeCloseTo((record?.audioMsSent ?? 0) / 1000, 3);
    // The caller's speech is the next user turn.
    const second = await client.next('ResponseStarted', (m) => m.content === 'Reply to utterance 1');
    expect(second).toBeDefined();
    // No agent audio of response 1 arrived after ResponseInterrupted.
    const interruptIndex = client.frames.findIndex((e) => e.kind === 'json' && e.message.message === 'ResponseInterrupted');
    const secondIndex = client.frames.findIndex((e) => e.kind === 'json' && e.message === second);
    expect(client.frames.slice(interruptIndex + 1, secondIndex).some((e) => e.kind === 'binary')).toBe(false);
    expect(framesAtInterrupt * 20).toBe(record?.audioMsSent);
    expect(conn.userTurns).toEqual([expect.objectContaining({ index: 1, text: 'utterance 1' })]);
  });

  test('a blip shorter than bargeInMs does not interrupt', async () => {
    const emu = await start({ pacing: 2, reply: (turn) => ({ text: `reply ${String(turn.index)}`, ms: turn.index === 0 ? 1000 : 100 }) });
    const client = await startedClient(emu);
    const conn = await emu.waitForConnection();
    client.send({ message: 'AddInput', input: 'go', immediate: true });
    await client.next('ResponseStarted');
    client.sendPcm(concatPcm(tone(120, 8000, 300), silence(800)));
    await client.next('ResponseCompleted', (m) => m.content === 'reply 0');
    expect(client.messages('ResponseInterrupted')).toHaveLength(0);
    // The blip was a (short) user turn: its reply queued behind the first.
    await client.next('ResponseCompleted', (m) => m.content === 'reply 1');
    expect(conn.responses.map((r) => r.outcome)).toEqual(['completed', 'completed']);
  });

  test('tools: ToolInvoke waits for ToolResult; NO_RESPONSE_REQUIRED keeps the agent silent; undeclared tools are never invoked', async () => {
    const turns: FlowTurn[] = [];
    const emu = await start({
      pacing: 20,
      toolCalls: [
        { turn: 0, name: 'lookup', arguments: { city: 'Rome', days: 2, metric: true } },
        { turn: 1, name: 'hangup', arguments: {}, id: 'call-x' },
        { turn: 2, name: 'undeclared', arguments: {} },
      ],
      reply: (turn) => {
        turns.push(turn);
        return { text: `Reply ${String(turn.index + 1)}: ${turn.toolResults.map((r) => r.content ?? r.status).join(', ')}`, ms: 200 };
      },
    });
    const client = await startedClient(emu, {
      ...START,
      tools: [
        {
          type: 'function',
          function: {
            name: 'lookup',
            description: 'weather',
            parameters: {
              type: 'object',
              properties: { city: { type: 'string', description: 'city' }, days: { type: 'integer' }, metric: { type: 'boolean' } },
              required: ['city'],
            },
          },
        },
        { type: 'function', function: { name: 'hangup' } },
      ],
    });
    const conn = await emu.waitForConnection();
    client.send({ message: 'AddInput', input: 'weather?', immediate: true });
    const invoke = await client.next('ToolInvoke');
    expect(invoke).toEqual({ message: 'ToolInvoke', id: 'tool_call_1', type: 'function', function: { name: 'lookup', arguments: { city: 'Rome', days: 2, metric: true } } });
    await sleep(100);
    expect(client.messages('ResponseStarted')).toHaveLength(0);
    client.send({ message: 'ToolResult', id: 'tool_call_1', status: 'ok', content: 'Sunny, 25 degrees' });
    const first = await client.next('ResponseStarted');
    expect(first.content).toBe('Reply 1: Sunny, 25 degrees');
    await client.next('ResponseCompleted');

    client.send({ message: 'AddInput', input: 'bye', immediate: true });
    await client.next('ToolInvoke', (m) => m.id === 'call-x');
    client.send({ message: 'ToolResult', id: 'call-x', status: 'ok', content: FLOW_NO_RESPONSE_REQUIRED });
    client.send({ message: 'ToolResult', id: 'call-x', status: 'ok', content: 'again' });
    client.send({ message: 'ToolResult', id: 'nope', status: 'failed' });
    await client.until(() => client.messages('Warning').length === 2, 'two warnings');
    await sleep(100);
    expect(client.messages('ResponseStarted')).toHaveLength(1);
    expect(client.messages('Warning').map((m) => [m.type, m.reason])).toEqual([
      ['protocol_error', 'ToolResult for an already answered tool call: call-x.'],
      ['protocol_error', 'ToolResult for an unknown tool call id: nope.'],
    ]);

    client.send({ message: 'AddInput', input: 'more', immediate: true });
    const third = await client.next('ResponseStarted', (m) => String(m.content).startsWith('Reply 3'));
    expect(third.content).toBe('Reply 3: ');
    expect(client.messages('ToolInvoke')).toHaveLength(2);
    expect(conn.toolInvocations.map((t) => [t.id, t.name, t.state])).toEqual([
      ['tool_call_1', 'lookup', 'answered'],
      ['call-x', 'hangup', 'answered'],
      ['tool_call_2', 'undeclared', 'undeclared'],
    ]);
    expect(conn.toolResults.map((r) => [r.id, r.known, r.name])).toEqual([
      ['tool_call_1', true, 'lookup'],
      ['call-x', true, 'hangup'],
      ['call-x', false, undefined],
      ['nope', false, undefined],
    ]);
    expect(turns.map((t) => t.index)).toEqual([0, 2]);
    expect(conn.startConversation?.tools?.[0]?.function.parameters?.required).toEqual(['city']);
  });

  test('the default reply includes the tool result content', async () => {
    const emu = await start({ pacing: 20, toolCalls: [{ turn: 0, name: 'lookup', arguments: { q: 'x' } }] });
    const client = await startedClient(emu, { ...START, tools: [{ type: 'function', function: { name: 'lookup' } }] });
    client.send({ message: 'AddInput', input: 'hi', immediate: true });
    await client.next('ToolInvoke');
    client.send({ message: 'ToolResult', id: 'tool_call_1', status: 'ok', content: 'found it' });
    const started = await client.next('ResponseStarted');
    expect(started.content).toBe('Reply 1 to: hi Tool lookup: found it');
  });

  test('StartConversation validation: tool schema, templates and the first message', async () => {
    const emu = await start({ templates: ['tmpl:latest'] });
    const cases: { start: unknown; type: string; reason: RegExp }[] = [
      {
        start: { ...START, tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { list: { type: 'array' } } } } }] },
        type: 'config_error',
        reason: /Unsupported type 'array'/,
      },
      { start: { ...START, tools: [{ type: 'function', function: { name: 'f', strict: true } }] }, type: 'config_error', reason: /Unknown field/ },
      { start: { ...START, tools: [{ type: 'code', function: { name: 'f' } }] }, type: 'config_error', reason: /tools\.0\.type/ },
      {
        start: { ...START, tools: [{ type: 'function', function: { name: 'f', parameters: { properties: {}, required: ['x'] } } }] },
        type: 'config_error',
        reason: /unknown property: x/,
      },
      { start: { ...START, tools: [{ type: 'function', function: { name: 'f' } }, { type: 'function', function: { name: 'f' } }] }, type: 'config_error', reason: /Duplicate/ },
      { start: { ...START, conversation_config: { template_id: 'other' } }, type: 'config_error', reason: /Unknown template_id/ },
      { start: { message: 'StartConversation', conversation_config: {} }, type: 'config_error', reason: /Missing required field: conversation_config.template_id/ },
      { start: { ...START, conversation_config: { template_id: 'tmpl:latest', template_variables: { n: 1 } } }, type: 'config_error', reason: /template_variables/ },
      { start: { ...START, audio_format: { type: 'raw', encoding: 'alaw', sample_rate: 8000 } }, type: 'config_error', reason: /encoding/ },
      // Unknown keys anywhere in StartConversation are refused, not ignored.
      { start: { ...START, language: 'en' }, type: 'config_error', reason: /Unknown field\(s\) at top level: language/ },
      { start: { ...START, conversation_config: { ...START.conversation_config, persona: 'x' } }, type: 'config_error', reason: /Unknown field\(s\) at conversation_config: persona/ },
      { start: { ...START, audio_format: { ...START.audio_format, channels: 1 } }, type: 'config_error', reason: /Unknown field\(s\) at audio_format: channels/ },
      { start: { message: 'AddInput', input: 'x' }, type: 'protocol_error', reason: /got AddInput/ },
      { start: [1, 2], type: 'protocol_error', reason: /Expected StartConversation/ },
    ];
    for (const { start: message, type, reason } of cases) {
      const client = await connect(emu.url);
      client.ws.send(JSON.stringify(message));
      const closed = await client.closed;
      const errors = client.messages('Error');
      expect(errors).toHaveLength(1);
      expect(errors[0]?.type).toBe(type);
      expect(String(errors[0]?.reason)).toMatch(reason);
      expect(closed).toEqual({ code: 1003, reason: type });
      expect(client.messages('ConversationStarted')).toHaveLength(0);
    }
    // Audio or garbage first.
    for (const first of [Buffer.from([1, 2, 3, 4]), 'not json']) {
      const client = await connect(emu.url);
      client.ws.send(first);
      expect(await client.closed).toEqual({ code: 1003, reason: 'protocol_error' });
      expect(client.messages('Error')[0]?.type).toBe('protocol_error');
    }
  });

  test('AddInput: immediate replies, non-immediate is folded into the next turn, interrupt_response interrupts', async () => {
    const turns: FlowTurn[] = [];
    const emu = await start({
      chunkMs: 20,
      reply: (turn) => {
        turns.push(turn);
        return { text: `Answer to ${turn.userText}`, ms: turn.index === 0 ? 1500 : 200 };
      },
    });
    const client = await startedClient(emu);
    const conn = await emu.waitForConnection();
    client.send({ message: 'AddInput', input: 'context only' });
    await emu.waitFor(() => conn.addInputs.length === 1);
    await sleep(50);
    expect(client.messages('ResponseStarted')).toHaveLength(0);

    client.send({ message: 'AddInput', input: 'first question', immediate: true });
    await client.next('ResponseStarted');
    await client.until(() => client.audioFrames().length >= 5, 'agent audio');
    client.send({ message: 'AddInput', input: 'urgent', interrupt_response: true, immediate: true });
    const interrupted = await client.next('ResponseInterrupted');
    expect(conn.responses[0]).toMatchObject({ outcome: 'interrupted', interruptedBy: 'add-input' });
    expect(String(interrupted.content).length).toBeLessThan('Answer to first question'.length);
    const second = await client.next('ResponseStarted', (m) => m.content === 'Answer to urgent');
    expect(second).toBeDefined();
    expect(turns.map((t) => [t.index, t.source, t.userText, t.inputs])).toEqual([
      [0, 'input', 'first question', ['context only']],
      [1, 'input', 'urgent', []],
    ]);
    expect(conn.addInputs.map((a) => [a.input, a.immediate, a.interrupt_response, a.turnIndex])).toEqual([
      ['context only', false, false, 0],
      ['first question', true, false, 0],
      ['urgent', true, true, 1],
    ]);
  });

  test('greeting: the agent speaks first', async () => {
    const emu = await start({ pacing: 10, greeting: { text: 'Hello, how can I help?', ms: 600 }, startInfo: false });
    const client = await connect(emu.url);
    client.send(START);
    const completed = await client.next('ResponseCompleted');
    expect(completed).toMatchObject({ content: 'Hello, how can I help?' });
    expect(client.messages().map((m) => m.message)).toEqual(['ConversationStarted', 'ResponseStarted', 'ResponseCompleted']);
    const samples = client.audioFrames().reduce((sum, f) => sum + f.samples.length, 0);
    expect(samples).toBe(600 * 16);
    const conn = await emu.waitForConnection();
    expect(conn.responses).toEqual([expect.objectContaining({ id: 1, trigger: 'greeting', outcome: 'completed', audioMsSent: 600, framesSent: 15 })]);
  });

  test('two concurrent connections are isolated and their agent audio is distinguishable', async () => {
    const emu = await start({ pacing: 4, reply: (turn) => ({ text: `conn ${String(turn.connection)} turn ${String(turn.index)}`, ms: 400 }) });
    const a = await startedClient(emu);
    const b = await startedClient(emu);
    // A is driven by text, B by speech, at the same time.
    a.send({ message: 'AddInput', input: 'x', immediate: true });
    b.sendPcm(concatPcm(tone(300, 8000, 300), silence(800)));
    await Promise.all([a.next('ResponseCompleted'), b.next('ResponseCompleted')]);
    expect(a.messages('ResponseStarted').map((m) => m.content)).toEqual(['conn 0 turn 0']);
    expect(b.messages('ResponseStarted').map((m) => m.content)).toEqual(['conn 1 turn 0']);
    expect(a.messages('AddTranscript')).toHaveLength(0);
    expect(a.messages('AudioAdded')).toHaveLength(0);
    expect(b.messages('AddTranscript')).toHaveLength(1);
    const audioA = concatSamples(a.audioFrames().map((f) => f.samples));
    const audioB = concatSamples(b.audioFrames().map((f) => f.samples));
    expect(audioA.length).toBe(400 * 16);
    expect(audioB.length).toBe(400 * 16);
    const fa = flowAgentBaseFrequency(0);
    const fb = flowAgentBaseFrequency(1);
    expect(fa).not.toBe(fb);
    expect(goertzel(audioA, fa, 16000)).toBeGreaterThan(20 * goertzel(audioA, fb, 16000));
    expect(goertzel(audioB, fb, 16000)).toBeGreaterThan(20 * goertzel(audioB, fa, 16000));
    const [connA, connB] = emu.connections;
    expect(connA?.conversationId).not.toBe(connB?.conversationId);
    expect(connA?.inputFrames).toBe(0);
    expect(connB?.userTurns).toHaveLength(1);
  });

  test('server endConversation: ConversationEnding, the current audio finishes, ConversationEnded, close 1000', async () => {
    const emu = await start({ pacing: 4, greeting: { text: 'Goodbye then', ms: 800 } });
    const client = await connect(emu.url);
    client.send(START);
    await client.next('ResponseStarted');
    const conn = await emu.waitForConnection();
    conn.endConversation();
    expect(await client.closed).toEqual({ code: 1000, reason: '' });
    const order = client.frames.map((e) => (e.kind === 'json' ? String(e.message.message) : e.kind));
    const ending = order.indexOf('ConversationEnding');
    expect(ending).toBeGreaterThan(order.indexOf('ResponseStarted'));
    expect(order.slice(ending + 1)).toContain('binary');
    expect(order.slice(-2)).toEqual(['ResponseCompleted', 'ConversationEnded']);
    expect(client.audioFrames().reduce((sum, f) => sum + f.samples.length, 0)).toBe(800 * 16);
    expect(conn.closeInfo).toEqual({ code: 1000, reason: '', by: 'server' });
    expect(conn.state).toBe('ended');
  });

  test('say() makes the agent speak; client AudioEnded mid-turn finalises it and ends the conversation', async () => {
    const emu = await start({ pacing: 20 });
    const client = await startedClient(emu);
    const conn = await emu.waitForConnection();
    conn.say('Are you still there?', 200);
    await client.next('ResponseCompleted', (m) => m.content === 'Are you still there?');
    expect(conn.responses[0]?.trigger).toBe('say');
    client.sendPcm(tone(400, 8000, 300));
    await client.next('AudioAdded', (m) => m.seq_no === 20);
    client.send({ message: 'AudioEnded', last_seq_no: 20 });
    expect(await client.closed).toEqual({ code: 1000, reason: '' });
    expect(client.messages().slice(-2).map((m) => m.message)).toEqual(['AddTranscript', 'ConversationEnded']);
    expect(conn.audioEnded).toEqual({ last_seq_no: 20, audioAddedSent: 20 });
    expect(conn.userTurns).toEqual([expect.objectContaining({ index: -1, text: 'utterance 1' })]);
    expect(client.messages('ResponseStarted')).toHaveLength(1);
  });

  test('AudioReceived gaps, repeats and acks for unsent frames are recorded', async () => {
    const emu = await start({ pacing: 20, greeting: { text: 'hi', ms: 120 } });
    const client = await connect(emu.url, { ack: false });
    client.send(START);
    await client.next('ResponseCompleted');
    const conn = await emu.waitForConnection();
    for (const seq of [1, 3, 2, 9]) client.send({ message: 'AudioReceived', seq_no: seq });
    client.send({ message: 'AudioReceived' });
    await client.next('Warning');
    expect(conn.audioAcks.map((a) => a.seq_no)).toEqual([1, 3, 2, 9]);
    expect(conn.ackIssues).toEqual([
      'seq_no 3 after 1 (gap)',
      'seq_no 2 after 3 (repeat or out of order)',
      'seq_no 9 acks a frame never sent (3 sent)',
      'seq_no 9 after 3 (gap)',
    ]);
    expect(client.messages('Warning')[0]?.reason).toMatch(/Invalid AudioReceived: Missing required field: seq_no/);
  });

  test('garbage never crashes the emulator', async () => {
    const emu = await start({ pacing: 20 });
    const client = await startedClient(emu);
    client.send({ message: 'Nonsense' });
    client.send({ message: 'AddInput', input: 42 });
    client.send(START);
    client.ws.send(Buffer.alloc(0));
    client.ws.send(Buffer.from([0xff]));
    await client.until(() => client.messages('Warning').length === 3, 'three warnings');
    expect(client.messages('Warning').map((m) => m.type)).toEqual(['protocol_error', 'protocol_error', 'protocol_error']);
    client.ws.send('{"message":');
    expect(await client.closed).toEqual({ code: 1003, reason: 'protocol_error' });
    expect(client.messages('Error')[0]).toMatchObject({ type: 'protocol_error', reason: 'Invalid JSON message.' });

    const second = await startedClient(emu);
    second.ws.send(JSON.stringify('just a string'));
    expect(await second.closed).toEqual({ code: 1003, reason: 'protocol_error' });

    // Plain HTTP and wrong paths.
    const base = emu.baseUrl.replace('ws://', 'http://');
    expect((await fetch(`${base}/v1/flow`)).status).toBe(426);
    expect((await fetch(`${base}/nope`)).status).toBe(404);
    await expect(connect(emu.baseUrl.concat('/v2'))).rejects.toThrow(/404/);

    // A callback that throws becomes an internal_error, not a crash.
    await emu.close();
    const throwing = await start({ reply: () => { throw new Error('boom'); } });
    const third = await startedClient(throwing);
    third.send({ message: 'AddInput', input: 'x', immediate: true });
    expect(await third.closed).toEqual({ code: 1011, reason: 'internal_error' });
    expect(String(third.messages('Error')[0]?.reason)).toMatch(/reply failed: boom/);
    const fourth = await startedClient(throwing);
    expect(fourth.messages('ConversationStarted')).toHaveLength(1);
  });

  test('auth: jwt, Bearer API key, 401 and 404', async () => {
    const emu = await start({ apiKey: ['sm-key-1', 'sm-key-2'], verifyToken: (jwt) => jwt === 'good' });
    await expect(connect(emu.url, { jwt: 'bad' })).rejects.toThrow(/401/);
    await expect(connect(emu.url, { jwt: null })).rejects.toThrow(/401/);
    await expect(connect(emu.url, { jwt: null, headers: { Authorization: 'Bearer wrong' } })).rejects.toThrow(/401/);
    const viaHeader = await connect(emu.url, { jwt: null, headers: { Authorization: 'Bearer sm-key-2' } });
    const viaJwt = await connect(emu.url, { jwt: 'good' });
    viaHeader.send(START);
    viaJwt.send(START);
    await Promise.all([viaHeader.next('ConversationStarted'), viaJwt.next('ConversationStarted')]);
    expect(emu.connections.map((c) => [c.authVia, c.jwt])).toEqual([
      ['header', undefined],
      ['jwt', 'good'],
    ]);
    expect(emu.upgrades.map((u) => u.status)).toEqual([401, 401, 401, 101, 101]);
  });

  test('idle timeout: Error idle_timeout and close 1008', async () => {
    const emu = await start({ idleTimeoutMs: 150 });
    const client = await startedClient(emu);
    expect(await client.closed).toEqual({ code: 1008, reason: 'idle_timeout' });
    expect(client.messages('Error')[0]).toMatchObject({ type: 'idle_timeout' });
  });
});

describe('Speechmatics Flow emulator faults', () => {
  test('every Error type closes with its code (RT table), and closeCode overrides', async () => {
    const emu = await start();
    for (const errorType of FLOW_ERROR_TYPES) emu.queueFault({ at: 'start', action: { type: 'error', errorType } });
    emu.queueFault({ action: { type: 'error', errorType: 'job_error', reason: 'custom', closeCode: 4999 } });
    for (const errorType of FLOW_ERROR_TYPES) {
      const client = await connect(emu.url);
      client.send(START);
      expect(await client.closed).toEqual({ code: FLOW_CLOSE_CODES[errorType], reason: errorType });
      expect(client.messages().map((m) => [m.message, m.type])).toEqual([['Error', errorType]]);
    }
    const client = await connect(emu.url);
    client.send(START);
    expect(await client.closed).toEqual({ code: 4999, reason: 'job_error' });
    expect(client.messages('Error')[0]?.reason).toBe('custom');
    expect(FLOW_CLOSE_CODES).toMatchObject({ protocol_error: 1003, idle_timeout: 1008, internal_error: 1011, not_authorised: 4001, quota_exceeded: 4005 });
  });

  test('upgrade faults: HTTP status and dropped socket; times applies to several connections', async () => {
    const emu = await start({
      faults: [
        { at: 'upgrade', action: { type: 'http', status: 503, body: { reason: 'busy' } }, times: 2 },
        { at: 'upgrade', action: { type: 'drop' } },
      ],
    });
    await expect(connect(emu.url)).rejects.toThrow(/503/);
    await expect(connect(emu.url)).rejects.toThrow(/503/);
    await expect(connect(emu.url)).rejects.toThrow();
    const ok = await startedClient(emu);
    expect(ok.messages('ConversationStarted')).toHaveLength(1);
    expect(emu.upgrades.map((u) => u.status)).toEqual([503, 503, 0, 101]);
  });

  test('warning, info, malformed and odd-binary at start come before ConversationStarted and the session goes on', async () => {
    const emu = await start({ startInfo: false, pacing: 20, greeting: { text: 'hi', ms: 80 } });
    const faults: FlowFault[] = [
      { action: { type: 'warning', warningType: 'high_llm_latency', reason: 'slow' } },
      { action: { type: 'warning', warningType: 'conversation_termination' } },
      { action: { type: 'info', infoType: 'concurrent_session_usage', value: 2 } },
      { action: { type: 'info', infoType: 'conversation_duration_limit' } },
      { action: { type: 'malformed' } },
      { action: { type: 'odd-binary' } },
    ];
    for (const fault of faults) emu.queueFault(fault);
    const expected = [
      { message: 'Warning', type: 'high_llm_latency', reason: 'slow' },
      { message: 'Warning', type: 'conversation_termination', conversation_termination: 60 },
      { message: 'Info', type: 'concurrent_session_usage', usage: 2, quota: 3 },
      { message: 'Info', type: 'conversation_duration_limit', conversation_duration_limit: 3600 },
    ];
    for (const message of expected) {
      const client = await startedClient(emu);
      expect(client.messages()[0]).toMatchObject(message);
      expect(client.messages()[1]?.message).toBe('ConversationStarted');
    }
    const malformed = await startedClient(emu);
    expect(malformed.frames[0]).toMatchObject({ kind: 'text' });
    const odd = await connect(emu.url);
    odd.send(START);
    await odd.next('ResponseCompleted');
    expect(odd.frames[0]).toMatchObject({ kind: 'binary', data: Buffer.from([1, 2, 3]) });
    const conn = emu.connections.at(-1);
    // The odd frame counts as server audio frame 1, so the greeting's frames are 2 and 3.
    await emu.waitFor(() => conn?.audioAcks.length === 3);
    expect(conn?.agentFramesSent).toBe(3);
    expect(conn?.ackIssues).toEqual([]);
    expect(conn?.faultsApplied).toEqual([{ type: 'odd-binary' }]);
  });

  test('drop after caller audio: no close frame', async () => {
    const emu = await start({ faults: [{ at: { afterAudioMs: 200 }, action: { type: 'drop' } }] });
    const client = await startedClient(emu);
    client.sendPcm(silence(1000));
    expect((await client.closed).code).toBe(1006);
    const conn = emu.connections[0];
    expect(conn?.closeInfo).toEqual({ code: 1006, reason: '', by: 'dropped' });
    expect(conn?.inputAudioMs).toBeGreaterThanOrEqual(200);
    expect(conn?.inputAudioMs).toBeLessThan(260);
  });

  test('pings are counted and answered, a stalled connection counts but does not answer them', async () => {
    const emu = await start({ faults: [{ at: { afterAudioMs: 100 }, action: { type: 'stall' } }] });
    const client = await startedClient(emu);
    const conn = await emu.waitForConnection();
    const pongs: number[] = [];
    client.ws.on('pong', () => pongs.push(Date.now()));
    client.ws.ping();
    await emu.waitFor(() => conn.pingsReceived === 1);
    for (let i = 0; i < 200 && pongs.length === 0; i++) await sleep(10);
    expect(pongs).toHaveLength(1);
    client.sendPcm(tone(400, 8000, 300));
    await emu.waitFor(() => conn.stalled);
    client.ws.ping();
    await emu.waitFor(() => conn.pingsReceived === 2);
    await sleep(100);
    expect(pongs).toHaveLength(1);
  });

  test('stall after caller audio: nothing more is sent but the socket stays open', async () => {
    const emu = await start({ faults: [{ at: { afterAudioMs: 100 }, action: { type: 'stall' } }], idleTimeoutMs: 100 });
    const client = await startedClient(emu);
    client.sendPcm(concatPcm(tone(400, 8000, 300), silence(800)));
    const conn = await emu.waitForConnection();
    await emu.waitFor(() => conn.inputFrames === 60);
    await sleep(250);
    expect(client.ws.readyState).toBe(WebSocket.OPEN);
    expect(conn.stalled).toBe(true);
    expect(client.messages('AudioAdded')).toHaveLength(5);
    expect(client.messages('AddTranscript')).toHaveLength(0);
    expect(conn.closeInfo).toBeUndefined();
  });

  test('faults during a response: drop aborts it, close sends a close frame, malformed mid-stream', async () => {
    const emu = await start({
      chunkMs: 20,
      pacing: 2,
      greeting: { text: 'a long greeting', ms: 1000 },
      faults: [
        { at: { duringResponse: 1, afterAgentMs: 200 }, action: { type: 'drop' } },
        { at: { duringResponse: 1, afterAgentMs: 100 }, action: { type: 'close', code: 4100, reason: 'bye' } },
        { at: { duringResponse: 1, afterAgentMs: 100 }, action: { type: 'malformed', text: 'garbage' } },
      ],
    });
    const dropped = await connect(emu.url);
    dropped.send(START);
    expect((await dropped.closed).code).toBe(1006);
    const first = emu.connections[0];
    expect(first?.responses[0]).toMatchObject({ outcome: 'aborted' });
    expect(first?.responses[0]?.audioMsSent).toBe(200);

    const closed = await connect(emu.url);
    closed.send(START);
    expect(await closed.closed).toEqual({ code: 4100, reason: 'bye' });
    expect(emu.connections[1]?.closeInfo).toEqual({ code: 4100, reason: 'bye', by: 'server' });

    const garbled = await connect(emu.url);
    garbled.send(START);
    await garbled.next('ResponseCompleted');
    const kinds = garbled.frames.map((e) => e.kind);
    expect(kinds.filter((k) => k === 'text')).toHaveLength(1);
    expect(garbled.frames.find((e) => e.kind === 'text')).toMatchObject({ text: 'garbage' });
    expect(kinds.indexOf('text')).toBeGreaterThan(kinds.indexOf('binary'));
  });

  test('applyFault on a live connection', async () => {
    const emu = await start();
    const client = await startedClient(emu);
    const conn = await emu.waitForConnection();
    conn.applyFault({ type: 'error', errorType: 'session_timeout' });
    expect(await client.closed).toEqual({ code: 1008, reason: 'session_timeout' });
    expect(client.messages('Error')[0]).toMatchObject({ type: 'session_timeout', reason: 'Session timeout.' });
  });
});
