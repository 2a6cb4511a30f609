import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import pino from 'pino';
import { AsyncQueue } from '../util/async-queue.js';
import { ProviderError } from '../errors/provider-error.js';
import { bytesFromPcm, type AvrOutbound } from '../protocol/avr-sts.js';
import type { SampleRate } from '../contracts/common.js';
import type { ToolContext, ToolRunner } from '../contracts/llm.js';
import type { StsAdapter, StsCallContext, StsCapabilities, StsEvent, StsSession } from '../contracts/sts.js';
import { CallRuntime, type CallRuntimeOptions } from './runtime.js';
import type { AvrPeer, CallCloseCode, CallMetric, PeerBacklog } from './types.js';

// Captured before any test installs fake timers: one real macrotask lets every pending promise settle, with no
// time passing on the fake clock.
const realSetImmediate = globalThis.setImmediate;
const settle = () => new Promise<void>((resolve) => realSetImmediate(resolve));

/** A provider session the test drives by hand. */
class FakeSession implements StsSession {
  readonly events = new AsyncQueue<StsEvent>();
  readonly audio: Int16Array[] = [];
  readonly dtmf: string[] = [];
  readonly truncations: { responseId: string; heardMs: number }[] = [];
  readonly toolResults: { callId: string; output: string }[] = [];
  closeCount = 0;

  constructor(
    readonly call: StsCallContext,
    readonly inputSampleRate: SampleRate,
    readonly outputSampleRate: SampleRate,
  ) {}

  sendAudio(samples: Int16Array): void {
    this.audio.push(samples);
  }
  sendDtmf(digit: string): void {
    this.dtmf.push(digit);
  }
  truncate(responseId: string, heardMs: number): void {
    this.truncations.push({ responseId, heardMs });
  }
  submitToolResult(callId: string, output: string): void {
    this.toolResults.push({ callId, output });
  }
  emit(event: StsEvent): void {
    this.events.push(event);
  }
  async close(): Promise<void> {
    this.closeCount++;
    this.events.end();
  }
}

interface FakeStsOptions {
  inputSampleRate?: SampleRate;
  outputSampleRate?: SampleRate;
  /** connect() waits for it. */
  gate?: Promise<void>;
  connectError?: unknown;
}

class FakeSts implements StsAdapter {
  readonly id = 'fake';
  readonly capabilities: StsCapabilities;
  readonly sessions: FakeSession[] = [];
  readonly calls: StsCallContext[] = [];

  constructor(private readonly options: FakeStsOptions = {}) {
    this.capabilities = {
      inputSampleRates: [options.inputSampleRate ?? 8000],
      outputSampleRates: [options.outputSampleRate ?? 8000],
      encodings: ['pcm_s16le'],
      serverTurnDetection: true,
      userTranscripts: true,
      agentTranscripts: true,
      truncation: true,
      toolCalls: true,
      dtmf: true,
    };
  }

  async connect(call: StsCallContext): Promise<StsSession> {
    this.calls.push(call);
    await this.options.gate;
    if (this.options.connectError !== undefined) throw this.options.connectError;
    const session = new FakeSession(call, this.options.inputSampleRate ?? 8000, this.options.outputSampleRate ?? 8000);
    this.sessions.push(session);
    return session;
  }

  get session(): FakeSession {
    const session = this.sessions.at(-1);
    if (session === undefined) throw new Error('no provider session yet');
    return session;
  }
}

type Sent = { readonly kind: 'audio'; readonly frame: Int16Array } | { readonly kind: 'control'; readonly message: AvrOutbound };

/** AVR Core with no socket: records everything in the order it was sent. */
class FakePeer implements AvrPeer {
  open = true;
  backlog: PeerBacklog = 'clear';
  readonly sent: Sent[] = [];
  readonly closes: { code: CallCloseCode; reason: string | undefined; dropConnection: boolean }[] = [];
  disposed = 0;

  sendAudio(frame: Int16Array): void {
    this.sent.push({ kind: 'audio', frame });
  }
  sendControl(message: AvrOutbound): void {
    this.sent.push({ kind: 'control', message });
  }
  close(code: CallCloseCode, reason: string | undefined, dropConnection: boolean): void {
    this.closes.push({ code, reason, dropConnection });
    this.open = false;
  }
  dispose(): void {
    this.disposed++;
  }
  audio(): Int16Array[] {
    return this.sent.flatMap((item) => (item.kind === 'audio' ? [item.frame] : []));
  }
  controls(): AvrOutbound[] {
    return this.sent.flatMap((item) => (item.kind === 'control' ? [item.message] : []));
  }
  errors(): string[] {
    return this.controls().flatMap((message) => (message.type === 'error' ? [message.message] : []));
  }
}

interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

const runtimes: CallRuntime[] = [];

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((runtime) => runtime.close()));
  vi.useRealTimers();
});

type SetupOptions = Partial<Omit<CallRuntimeOptions, 'adapter' | 'peer' | 'logger'>> & { sts?: FakeSts };

function setup(options: SetupOptions = {}) {
  const { sts = new FakeSts(), ...rest } = options;
  const peer = new FakePeer();
  const metrics: CallMetric[] = [];
  const logs: LogLine[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line) as LogLine) });
  const runtime = new CallRuntime({ adapter: sts, peer, logger, observer: { record: (metric) => metrics.push(metric) }, ...rest });
  runtimes.push(runtime);
  const count = (type: CallMetric['type']) => metrics.filter((metric) => metric.type === type).length;
  return { runtime, sts, peer, metrics, logs, count };
}

/** A call past init with its provider session open. */
async function activeCall(options: SetupOptions = {}) {
  const call = setup(options);
  call.runtime.receive(JSON.stringify({ type: 'init', uuid: 'call-1' }));
  await settle();
  expect(call.runtime.state).toBe('active');
  return { ...call, session: call.sts.session };
}

const wireAudio = (samples: Int16Array) => JSON.stringify({ type: 'audio', audio: bytesFromPcm(samples).toString('base64') });
const tone = (samples: number, value: number) => new Int16Array(samples).fill(value);
const ramp = (samples: number) => Int16Array.from({ length: samples }, (_, i) => (i % 2000) - 1000);

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((done) => (resolve = done));
  return { promise, resolve };
}

describe('call setup', () => {
  it('buffers caller audio and digits while the provider connects, then delivers them in order before live audio', async () => {
    const gate = deferred();
    const { runtime, sts } = setup({ sts: new FakeSts({ gate: gate.promise }), metadata: { from: '2000' } });
    runtime.receive(JSON.stringify({ type: 'init', uuid: 'early' }));
    for (let i = 1; i <= 5; i++) runtime.receive(wireAudio(tone(160, i)));
    runtime.receive(JSON.stringify({ type: 'dtmf_digit', digit: '7' }));
    await settle();
    expect(runtime.state).toBe('connecting');
    expect(sts.sessions).toHaveLength(0);
    gate.resolve();
    await settle();
    const session = sts.session;
    expect(session.call.callId).toBe('early');
    expect(session.call.metadata).toEqual({ from: '2000' });
    expect(session.audio.map((chunk) => chunk[0])).toEqual([1, 2, 3, 4, 5]);
    expect(session.dtmf).toEqual(['7']);
    runtime.receive(wireAudio(tone(160, 6)));
    expect(session.audio.map((chunk) => chunk[0])).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('bounds the early buffer, dropping the oldest audio', async () => {
    const gate = deferred();
    const { runtime, sts, count } = setup({ sts: new FakeSts({ gate: gate.promise }), earlyAudioBufferMs: 100 });
    runtime.receiveMessage({ type: 'init', uuid: 'bounded', providerConfig: undefined });
    for (let i = 1; i <= 20; i++) runtime.receiveMessage({ type: 'audio', samples: tone(160, i) });
    gate.resolve();
    await settle();
    expect(sts.session.audio.map((chunk) => chunk[0])).toEqual([16, 17, 18, 19, 20]);
    expect(count('early_audio_dropped')).toBe(15);
    expect(count('caller_audio')).toBe(20);
  });

  it('resamples caller audio to the provider rate and agent audio back to 8 kHz', async () => {
    const { runtime, session, peer } = await activeCall({ sts: new FakeSts({ inputSampleRate: 16000, outputSampleRate: 24000 }), outboundLeadMs: 2000 });
    for (let i = 0; i < 50; i++) runtime.receive(wireAudio(ramp(160)));
    const received = session.audio.reduce((sum, chunk) => sum + chunk.length, 0);
    expect(received).toBeGreaterThan(15_500);
    expect(received).toBeLessThanOrEqual(16_000);
    session.emit({ type: 'audio', responseId: 'r1', samples: ramp(24_000) });
    session.emit({ type: 'response_done', responseId: 'r1' });
    await settle();
    expect(peer.audio().length).toBeGreaterThanOrEqual(50);
    expect(peer.audio().length).toBeLessThanOrEqual(51);
    expect(peer.audio().every((frame) => frame.length === 160)).toBe(true);
  });

  it('closes a call that never sends init', async () => {
    const { runtime, peer, metrics } = setup({ initTimeoutMs: 100 });
    vi.advanceTimersByTime(99);
    expect(peer.closes).toHaveLength(0);
    vi.advanceTimersByTime(1);
    await runtime.closed;
    expect(peer.errors()).toEqual(['no init message received']);
    expect(peer.closes).toEqual([{ code: 'protocol_error', reason: 'no init', dropConnection: false }]);
    expect(metrics.at(-1)).toEqual({ type: 'call_closed', outcome: 'init_timeout', durationMs: 100 });
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('caller audio batching', () => {
  it('sends the frames the host asks for per provider message, and a digit after the audio before it', async () => {
    let framesPerSend = 2;
    const { runtime, session } = await activeCall({ callerAudioFramesPerSend: () => framesPerSend });
    for (let i = 1; i <= 5; i++) runtime.receive(wireAudio(tone(160, i)));
    expect(session.audio.map((chunk) => [chunk.length, chunk[0], chunk.at(-1)])).toEqual([
      [320, 1, 2],
      [320, 3, 4],
    ]);
    runtime.receive(JSON.stringify({ type: 'dtmf_digit', digit: '5' }));
    // Frame 5 was held for the next one: the digit sends it first.
    expect(session.audio.map((chunk) => [chunk.length, chunk[0]])).toEqual([
      [320, 1],
      [320, 3],
      [160, 5],
    ]);
    expect(session.dtmf).toEqual(['5']);
    framesPerSend = 1;
    runtime.receive(wireAudio(tone(160, 6)));
    expect(session.audio.map((chunk) => chunk.length)).toEqual([320, 320, 160, 160]);
  });

  it('batches before the resampler: a 24 kHz provider gets one message per two frames', async () => {
    const { runtime, session } = await activeCall({ sts: new FakeSts({ inputSampleRate: 24000 }), callerAudioFramesPerSend: () => 2 });
    for (let i = 0; i < 10; i++) runtime.receive(wireAudio(ramp(160)));
    expect(session.audio).toHaveLength(5);
    // The resampler's delay holds back the start; after it, 40 ms of 24 kHz audio per message.
    expect(session.audio.slice(1).map((chunk) => chunk.length)).toEqual([960, 960, 960, 960]);
  });

  it('an adapter that throws on audio sent by the batch timer costs that audio only, not the process or the call', async () => {
    const { runtime, session, peer } = await activeCall({ callerAudioFramesPerSend: () => 2 });
    session.sendAudio = () => {
      throw new Error('adapter bug');
    };
    runtime.receive(wireAudio(tone(160, 1)));
    // The held frame goes out on the timer, outside the message's handling: the error must not escape it.
    expect(() => vi.advanceTimersByTime(40)).not.toThrow();
    expect(peer.errors()).toEqual(['internal error while handling the message']);
    runtime.receive(JSON.stringify({ type: 'dtmf_digit', digit: '4' }));
    expect(session.dtmf).toEqual(['4']);
    expect(runtime.state).toBe('active');
  });

  it('a frame held when the call ends is dropped with its timer', async () => {
    const { runtime, session } = await activeCall({ callerAudioFramesPerSend: () => 2 });
    runtime.receive(wireAudio(tone(160, 1)));
    await runtime.close();
    vi.advanceTimersByTime(100);
    expect(session.audio).toHaveLength(0);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('provider connection', () => {
  it('times out a provider that does not connect: one error, a close, no timer left', async () => {
    const gate = deferred();
    const { runtime, sts, peer, metrics } = setup({ sts: new FakeSts({ gate: gate.promise }), providerConnectTimeoutMs: 100 });
    runtime.receive(JSON.stringify({ type: 'init', uuid: 'slow' }));
    vi.advanceTimersByTime(99);
    await settle();
    expect(peer.sent).toHaveLength(0);
    vi.advanceTimersByTime(1);
    await runtime.closed;
    expect(peer.errors()).toEqual(['provider connection failed: provider did not connect within 100 ms']);
    expect(peer.closes).toEqual([{ code: 'provider_failure', reason: 'provider connection failed', dropConnection: false }]);
    expect(metrics).toContainEqual({ type: 'provider_connect', outcome: 'failure', durationMs: 100 });
    expect(metrics).toContainEqual({ type: 'error', kind: 'provider_timeout' });
    expect(metrics.at(-1)).toMatchObject({ type: 'call_closed', outcome: 'provider_error' });
    expect(sts.calls[0]?.signal.aborted).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
    // A session that opens after the call gave up is closed at once.
    gate.resolve();
    await settle();
    expect(sts.session.closeCount).toBe(1);
    expect(peer.sent).toHaveLength(1);
  });

  it('turns a connect failure into one error and a provider-failure close', async () => {
    const sts = new FakeSts({ connectError: new ProviderError('fake', 'auth', 'invalid API key') });
    const { runtime, peer } = setup({ sts });
    runtime.receive(JSON.stringify({ type: 'init', uuid: 'auth' }));
    await runtime.closed;
    expect(peer.errors()).toEqual(['provider connection failed: invalid API key']);
    expect(peer.closes).toEqual([{ code: 'provider_failure', reason: 'provider connection failed', dropConnection: false }]);
  });

  it('a provider failure mid-call sends exactly one error and ends the call', async () => {
    const { runtime, session, peer, metrics, logs } = await activeCall();
    session.events.fail(new ProviderError('fake', 'server', 'boom'));
    await runtime.closed;
    expect(peer.errors()).toEqual(['provider error: boom']);
    expect(peer.closes).toEqual([{ code: 'provider_failure', reason: 'provider error', dropConnection: false }]);
    expect(session.closeCount).toBe(1);
    expect(metrics.at(-1)).toMatchObject({ type: 'call_closed', outcome: 'provider_error' });
    expect(logs.filter((line) => line.msg === 'provider session failed')).toHaveLength(1);
  });

  it('keeps the call on a non-fatal provider error; a fatal one ends it with one more error', async () => {
    const { runtime, session, peer } = await activeCall();
    session.emit({ type: 'error', error: new ProviderError('fake', 'rate_limit', 'slow down'), fatal: false });
    await settle();
    expect(runtime.state).toBe('active');
    session.emit({ type: 'error', error: new ProviderError('fake', 'server', 'gone'), fatal: true });
    await runtime.closed;
    await settle();
    // The session's events end with the close: no "ended the session" error follows.
    expect(peer.errors()).toEqual(['provider error: slow down', 'provider error: gone']);
    expect(session.closeCount).toBe(1);
  });

  it('a provider that ends the session by itself gets one error', async () => {
    const { runtime, session, peer, metrics } = await activeCall();
    session.events.end();
    await runtime.closed;
    expect(peer.errors()).toEqual(['the provider ended the session']);
    expect(metrics.at(-1)).toMatchObject({ type: 'call_closed', outcome: 'provider_closed' });
  });

  it('a provider that ends the conversation gets its last words played, then a normal close', async () => {
    const { runtime, session, peer, metrics } = await activeCall({ outboundLeadMs: 100 });
    session.emit({ type: 'audio', responseId: 'bye', samples: ramp(1600) }); // 200 ms
    session.emit({ type: 'response_done', responseId: 'bye' });
    session.emit({ type: 'ended', reason: 'agent hung up' });
    await settle();
    vi.advanceTimersByTime(300);
    expect(peer.closes).toHaveLength(0);
    expect(peer.audio()).toHaveLength(10);
    vi.advanceTimersByTime(200);
    await runtime.closed;
    expect(peer.closes).toEqual([{ code: 'normal', reason: 'conversation ended', dropConnection: false }]);
    expect(peer.errors()).toEqual([]);
    expect(metrics.at(-1)).toMatchObject({ type: 'call_closed', outcome: 'provider_ended' });
  });
});

describe('playback and barge-in', () => {
  it('paces agent audio to the lead in exact 20 ms frames, the last one padded', async () => {
    const { session, peer, metrics } = await activeCall({ outboundLeadMs: 100 });
    session.emit({ type: 'speech_stopped' });
    await settle();
    vi.advanceTimersByTime(60);
    session.emit({ type: 'audio', responseId: 'r1', samples: ramp(1000) });
    session.emit({ type: 'response_done', responseId: 'r1' });
    await settle();
    expect(peer.audio()).toHaveLength(5);
    vi.advanceTimersByTime(40);
    expect(peer.audio()).toHaveLength(7);
    expect(peer.audio().every((frame) => frame.length === 160)).toBe(true);
    expect(peer.audio()[6]?.subarray(40).every((sample) => sample === 0)).toBe(true);
    expect(metrics).toContainEqual({ type: 'response_latency', durationMs: 60 });
  });

  it('counts a gap in a reply (its audio arriving after the peer played everything sent) once, not a new reply', async () => {
    const { session, peer, count } = await activeCall({ outboundLeadMs: 100 });
    session.emit({ type: 'audio', responseId: 'r1', samples: ramp(800) }); // 100 ms: the whole lead at once
    await settle();
    vi.advanceTimersByTime(60);
    session.emit({ type: 'audio', responseId: 'r1', samples: ramp(320) }); // in time: 40 ms still queued
    await settle();
    vi.advanceTimersByTime(30);
    expect(count('late_agent_audio')).toBe(0);
    vi.advanceTimersByTime(200); // the provider stalls: everything sent has played
    session.emit({ type: 'audio', responseId: 'r1', samples: ramp(480) });
    await settle();
    vi.advanceTimersByTime(100);
    expect(count('late_agent_audio')).toBe(1);
    session.emit({ type: 'response_done', responseId: 'r1' });
    vi.advanceTimersByTime(500);
    session.emit({ type: 'audio', responseId: 'r2', samples: ramp(800) }); // a new reply on an empty buffer is no gap
    await settle();
    vi.advanceTimersByTime(200);
    expect(count('late_agent_audio')).toBe(1);
    expect(peer.audio().length).toBeGreaterThan(10);
  });

  it('on barge-in sends interruption before any queued audio, drops the queue and truncates to what was heard', async () => {
    const { session, peer, count, metrics } = await activeCall({ outboundLeadMs: 100 });
    session.emit({ type: 'audio', responseId: 'r1', samples: ramp(8000) });
    await settle();
    expect(peer.audio()).toHaveLength(5);
    vi.advanceTimersByTime(40);
    expect(peer.audio()).toHaveLength(7);
    session.emit({ type: 'speech_started', onsetAgoMs: 240 });
    await settle();
    expect(peer.sent.at(-1)).toEqual({ kind: 'control', message: { type: 'interruption' } });
    expect(session.truncations).toEqual([{ responseId: 'r1', heardMs: 40 }]);
    expect(count('interruption')).toBe(1);
    expect(metrics.filter((metric) => metric.type === 'barge_in_reaction')).toEqual([{ type: 'barge_in_reaction', durationMs: 240 }]);
    vi.advanceTimersByTime(1000);
    expect(peer.audio()).toHaveLength(7);
    // The rest of the cut reply is dropped; the next reply plays at once, after the interruption.
    session.emit({ type: 'audio', responseId: 'r1', samples: ramp(1600) });
    session.emit({ type: 'audio', responseId: 'r2', samples: tone(160, 9) });
    await settle();
    const afterInterruption = peer.sent.slice(peer.sent.findIndex((item) => item.kind === 'control'));
    expect(afterInterruption.map((item) => (item.kind === 'audio' ? item.frame[0] : item.message.type))).toEqual(['interruption', 9]);
  });

  it('a barge-in in a gap of a reply still streaming in (the provider slower than real time) interrupts and truncates it', async () => {
    const { session, peer, count } = await activeCall({ outboundLeadMs: 100 });
    session.emit({ type: 'audio', responseId: 'r1', samples: ramp(800) }); // 100 ms, then the provider lags
    await settle();
    vi.advanceTimersByTime(300); // everything sent has played: nothing audible, nothing queued
    session.emit({ type: 'speech_started', onsetAgoMs: 200 });
    await settle();
    expect(peer.controls()).toEqual([{ type: 'interruption' }]);
    expect(session.truncations).toEqual([{ responseId: 'r1', heardMs: 100 }]);
    expect(count('interruption')).toBe(1);
    session.emit({ type: 'audio', responseId: 'r1', samples: ramp(800) }); // the rest of the cut reply
    await settle();
    vi.advanceTimersByTime(200);
    expect(peer.audio()).toHaveLength(5);
    // A reply that is done and played is over: the caller's next turn interrupts nothing.
    session.emit({ type: 'response_done', responseId: 'r1' });
    session.emit({ type: 'audio', responseId: 'r2', samples: ramp(800) });
    session.emit({ type: 'response_done', responseId: 'r2' });
    await settle();
    vi.advanceTimersByTime(300);
    session.emit({ type: 'speech_started', onsetAgoMs: 200 });
    await settle();
    expect(peer.controls()).toEqual([{ type: 'interruption' }]);
    expect(session.truncations).toHaveLength(1);
  });

  it('relays a provider-side interruption without truncating; nothing playing means no interruption', async () => {
    const { session, peer, count } = await activeCall();
    session.emit({ type: 'speech_started', onsetAgoMs: 300 });
    await settle();
    expect(peer.sent).toHaveLength(0);
    expect(count('barge_in_reaction')).toBe(0);
    session.emit({ type: 'audio', responseId: 'r1', samples: ramp(8000) });
    session.emit({ type: 'interrupted', responseId: 'r1' });
    await settle();
    expect(peer.controls()).toEqual([{ type: 'interruption' }]);
    expect(session.truncations).toEqual([]);
  });

  it('holds agent audio while the peer is congested and ends a call whose peer stops reading for 15 s', async () => {
    const { runtime, session, peer, count } = await activeCall({ outboundLeadMs: 100 });
    peer.backlog = 'congested';
    session.emit({ type: 'audio', responseId: 'r1', samples: ramp(8000) });
    await settle();
    vi.advanceTimersByTime(14_990);
    expect(peer.audio()).toHaveLength(0);
    vi.advanceTimersByTime(10);
    await runtime.closed;
    expect(peer.closes).toEqual([{ code: 'policy_violation', reason: 'not reading', dropConnection: true }]);
    expect(peer.errors()).toEqual([]);
    expect(count('policy_close')).toBe(1);
  });
});

describe('transcripts', () => {
  it('forwards final transcripts of both roles, logged at debug only', async () => {
    const { session, peer, logs } = await activeCall();
    session.emit({ type: 'transcript', role: 'user', text: 'I need', final: false });
    session.emit({ type: 'transcript', role: 'user', text: 'I need a visit', final: true });
    session.emit({ type: 'transcript', role: 'agent', text: 'Sure, which day?', final: true });
    await settle();
    expect(peer.controls()).toEqual([
      { type: 'transcript', role: 'user', text: 'I need a visit' },
      { type: 'transcript', role: 'agent', text: 'Sure, which day?' },
    ]);
    const mentioning = logs.filter((line) => JSON.stringify(line).includes('visit'));
    expect(mentioning.map((line) => [line.level, line.msg])).toEqual([[20, 'transcript']]);
  });
});

describe('tools', () => {
  it('runs a tool through the ToolRunner once the agent audio was heard, and submits its result', async () => {
    const seen: { name: string; argumentsJson: string; callId: string; framesHeard: number }[] = [];
    const client: { peer?: FakePeer } = {};
    const tools: ToolRunner = {
      specs: [{ name: 'avr_hangup', description: 'End the call', parameters: { type: 'object' } }],
      async run(name, argumentsJson, context) {
        await context.untilAgentAudioHeard();
        seen.push({ name, argumentsJson, callId: context.callId, framesHeard: client.peer?.audio().length ?? -1 });
        return '{"message":"bye"}';
      },
    };
    const { session, peer, sts } = await activeCall({ tools, outboundLeadMs: 60 });
    client.peer = peer;
    expect(sts.calls[0]?.tools.map((tool) => tool.name)).toEqual(['avr_hangup']);
    session.emit({ type: 'audio', responseId: 'goodbye', samples: ramp(4000) }); // 500 ms
    session.emit({ type: 'tool_call', callId: 'call_1', name: 'avr_hangup', argumentsJson: '{}' });
    await settle();
    await vi.advanceTimersByTimeAsync(600);
    expect(seen).toEqual([]); // the reply is still open
    session.emit({ type: 'response_done', responseId: 'goodbye' });
    await settle();
    await vi.advanceTimersByTimeAsync(200);
    expect(seen).toEqual([]); // played, but AVR Core's jitter margin has not passed
    await vi.advanceTimersByTimeAsync(20);
    await settle();
    expect(seen).toEqual([{ name: 'avr_hangup', argumentsJson: '{}', callId: 'call-1', framesHeard: 25 }]);
    expect(session.toolResults).toEqual([{ callId: 'call_1', output: '{"message":"bye"}' }]);
  });

  it('answers with an error text when the tool outlasts its timeout, and drops the late result', async () => {
    let finish!: (output: string) => void;
    let toolContext: ToolContext | undefined;
    const tools: ToolRunner = {
      specs: [{ name: 'lookup', description: 'Look up', parameters: { type: 'object' } }],
      run: (_name, _argumentsJson, context) => {
        toolContext = context;
        return new Promise((resolve) => (finish = resolve));
      },
    };
    const { runtime, session } = await activeCall({ tools, toolTimeoutMs: 1000 });
    session.emit({ type: 'tool_call', callId: 'c1', name: 'lookup', argumentsJson: '{"q":1}' });
    await settle();
    vi.advanceTimersByTime(999);
    await settle();
    expect(session.toolResults).toEqual([]);
    expect(toolContext?.signal.aborted).toBe(false);
    vi.advanceTimersByTime(1);
    await settle();
    expect(session.toolResults).toEqual([{ callId: 'c1', output: 'Error: tool "lookup" timed out after 1000 ms' }]);
    // The tool is told to stop once the runtime no longer waits for it.
    expect(toolContext?.signal.aborted).toBe(true);
    finish('too late');
    await settle();
    expect(session.toolResults).toHaveLength(1);
    await runtime.close();
  });

  it('answers with an error text when no tools are configured or the runner breaks its contract', async () => {
    const broken: ToolRunner = {
      specs: [],
      run: () => {
        throw new Error('bug');
      },
    };
    const first = await activeCall();
    first.session.emit({ type: 'tool_call', callId: 'c1', name: 'lookup', argumentsJson: '{}' });
    const second = await activeCall({ tools: broken });
    second.session.emit({ type: 'tool_call', callId: 'c2', name: 'lookup', argumentsJson: '{}' });
    await settle();
    expect(first.session.toolResults).toEqual([{ callId: 'c1', output: 'Error: tool "lookup" is not available' }]);
    expect(second.session.toolResults).toEqual([{ callId: 'c2', output: 'Error: tool "lookup" failed' }]);
  });
});

describe('inbound budgets', () => {
  it('ends an idle call after the idle timeout; any message restarts the window', async () => {
    const { runtime, peer, metrics } = await activeCall({ limits: { idleTimeoutMs: 1000 } });
    vi.advanceTimersByTime(600);
    runtime.receive(wireAudio(tone(160, 1)));
    vi.advanceTimersByTime(999);
    expect(peer.closes).toHaveLength(0);
    vi.advanceTimersByTime(1);
    await runtime.closed;
    expect(peer.errors()).toEqual(['no message from AVR Core for 1 s: closing the call']);
    expect(peer.closes).toEqual([{ code: 'going_away', reason: 'idle timeout', dropConnection: false }]);
    expect(metrics.at(-1)).toMatchObject({ type: 'call_closed', outcome: 'idle_timeout' });
    expect(vi.getTimerCount()).toBe(0);
  });

  it('answers malformed messages with an error, ignores unknown types, and closes past the error budget', async () => {
    const { runtime, peer, count } = await activeCall({ limits: { maxProtocolErrors: 2 } });
    runtime.receive('{"type":"teleport"}');
    runtime.receive(new Uint8Array([1, 2, 3]));
    runtime.receive('{"type":"audio"}');
    expect(peer.errors()).toEqual(['binary frames are not supported: send JSON text messages', expect.stringMatching(/invalid "audio" message/)]);
    expect(runtime.state).toBe('active');
    runtime.receive('[]');
    await runtime.closed;
    expect(peer.errors().at(-1)).toBe('more than 2 malformed messages: closing the call');
    expect(peer.closes).toEqual([{ code: 'policy_violation', reason: 'too many malformed messages', dropConnection: true }]);
    expect(count('error')).toBe(4);
  });

  it('closes a call that floods messages', async () => {
    const { runtime, peer } = await activeCall({ limits: { maxMessagesPerSecond: 60 } });
    for (let i = 0; i < 301; i++) runtime.receive(wireAudio(tone(160, 1)));
    await runtime.closed;
    expect(peer.errors()).toEqual(['more than 60 messages per second: closing the call']);
    expect(peer.closes).toEqual([{ code: 'policy_violation', reason: 'too many messages per second', dropConnection: true }]);
  });
});

describe('teardown', () => {
  it('close() is idempotent and leaves no timer, pacer or drain wait behind', async () => {
    const tools: ToolRunner = {
      specs: [],
      run: async (name, _argumentsJson, context) => {
        if (name === 'hang') return new Promise<string>(() => undefined);
        await context.untilAgentAudioHeard();
        return 'done';
      },
    };
    const { runtime, session, peer, count } = await activeCall({ tools, toolTimeoutMs: 5000, limits: { idleTimeoutMs: 60_000 } });
    session.emit({ type: 'audio', responseId: 'r1', samples: ramp(8000) });
    session.emit({ type: 'tool_call', callId: 'c1', name: 'wait', argumentsJson: '{}' });
    session.emit({ type: 'tool_call', callId: 'c2', name: 'hang', argumentsJson: '{}' });
    await settle();
    expect(vi.getTimerCount()).toBe(5); // idle, pacer, drain check, two tool timeouts
    const first = runtime.close();
    const second = runtime.close();
    await Promise.all([first, second]);
    await runtime.close();
    expect(runtime.state).toBe('closed');
    expect(vi.getTimerCount()).toBe(0);
    expect(peer.closes).toEqual([{ code: 'normal', reason: undefined, dropConnection: false }]);
    expect(peer.disposed).toBe(1);
    expect(session.closeCount).toBe(1);
    expect(count('call_opened')).toBe(1);
    expect(count('call_closed')).toBe(1);
    await settle();
    expect(session.toolResults).toEqual([]); // the call ended before the tool answered
    runtime.receive(wireAudio(tone(160, 1)));
    expect(session.audio).toHaveLength(0);
  });

  it('closing while the provider connects leaves no timer, and the session that opens late is closed', async () => {
    const gate = deferred();
    const { runtime, sts } = setup({ sts: new FakeSts({ gate: gate.promise }) });
    runtime.receive(JSON.stringify({ type: 'init', uuid: 'hangup' }));
    runtime.peerClosed(1000);
    await runtime.closed;
    expect(vi.getTimerCount()).toBe(0);
    expect(sts.calls[0]?.signal.aborted).toBe(true);
    gate.resolve();
    await settle();
    expect(sts.session.closeCount).toBe(1);
  });

  it('shutdown tells AVR Core why before closing', async () => {
    const { runtime, peer, metrics } = await activeCall();
    await runtime.shutdown();
    expect(peer.errors()).toEqual(['the gateway is shutting down']);
    expect(peer.closes).toEqual([{ code: 'going_away', reason: 'gateway shutting down', dropConnection: false }]);
    expect(metrics.at(-1)).toMatchObject({ type: 'call_closed', outcome: 'shutdown' });
  });
});
