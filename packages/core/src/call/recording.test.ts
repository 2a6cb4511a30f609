import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import pino from 'pino';
import { AsyncQueue } from '../util/async-queue.js';
import { ProviderError } from '../errors/provider-error.js';
import type { AvrOutbound } from '../protocol/avr-sts.js';
import type { ToolRunner } from '../contracts/llm.js';
import type { StsAdapter, StsCallContext, StsEvent, StsSession } from '../contracts/sts.js';
import type { CallRecorder, RecordedCallStart, RecordedToolCall } from './recording.js';
import { CallRuntime, type CallRuntimeOptions } from './runtime.js';
import type { AvrPeer, CallOutcome } from './types.js';

// What CallRuntime tells a CallRecorder, and when (on the call clock): the hook the gateway's recording hangs on.
const realSetImmediate = globalThis.setImmediate;
const settle = () => new Promise<void>((resolve) => realSetImmediate(resolve));

class ScriptedSession implements StsSession {
  readonly inputSampleRate = 8000;
  readonly outputSampleRate = 8000;
  readonly events = new AsyncQueue<StsEvent>();
  readonly toolResults: { callId: string; output: string }[] = [];
  sendAudio(): void {}
  sendDtmf(): void {}
  truncate(): void {}
  submitToolResult(callId: string, output: string): void {
    this.toolResults.push({ callId, output });
  }
  async close(): Promise<void> {
    this.events.end();
  }
}

class ScriptedSts implements StsAdapter {
  readonly id = 'scripted';
  readonly capabilities = {
    inputSampleRates: [8000],
    outputSampleRates: [8000],
    encodings: ['pcm_s16le'],
    serverTurnDetection: true,
    userTranscripts: true,
    agentTranscripts: true,
    truncation: true,
    toolCalls: true,
    dtmf: false,
  } as const;
  session: ScriptedSession | undefined;
  async connect(_call: StsCallContext): Promise<StsSession> {
    this.session = new ScriptedSession();
    return this.session;
  }
}

class SilentPeer implements AvrPeer {
  open = true;
  readonly backlog = 'clear' as const;
  readonly controls: AvrOutbound[] = [];
  frames = 0;
  sendAudio(): void {
    this.frames++;
  }
  sendControl(message: AvrOutbound): void {
    this.controls.push(message);
  }
  close(): void {
    this.open = false;
  }
}

type Report =
  | { readonly kind: 'start'; readonly call: RecordedCallStart; readonly atMs: number }
  | { readonly kind: 'caller'; readonly first: number; readonly atMs: number }
  | { readonly kind: 'agent'; readonly first: number; readonly atMs: number }
  | { readonly kind: 'control'; readonly message: AvrOutbound; readonly atMs: number }
  | { readonly kind: 'tool'; readonly call: RecordedToolCall }
  | { readonly kind: 'end'; readonly outcome: CallOutcome; readonly atMs: number };

class ListRecorder implements CallRecorder {
  readonly reports: Report[] = [];
  start(call: RecordedCallStart, atMs: number): void {
    this.reports.push({ kind: 'start', call, atMs });
  }
  callerAudio(samples: Int16Array, atMs: number): void {
    this.reports.push({ kind: 'caller', first: samples[0] ?? 0, atMs });
  }
  agentAudio(frame: Int16Array, playsAtMs: number): void {
    this.reports.push({ kind: 'agent', first: frame[0] ?? 0, atMs: playsAtMs });
  }
  controlSent(message: AvrOutbound, atMs: number): void {
    this.reports.push({ kind: 'control', message, atMs });
  }
  toolCall(call: RecordedToolCall): void {
    this.reports.push({ kind: 'tool', call });
  }
  end(outcome: CallOutcome, atMs: number): void {
    this.reports.push({ kind: 'end', outcome, atMs });
  }
  of<K extends Report['kind']>(kind: K): Extract<Report, { kind: K }>[] {
    return this.reports.filter((report): report is Extract<Report, { kind: K }> => report.kind === kind);
  }
}

const runtimes: CallRuntime[] = [];
beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((runtime) => runtime.close()));
  vi.useRealTimers();
});

function setup(options: Partial<Omit<CallRuntimeOptions, 'adapter' | 'peer' | 'logger' | 'recorder'>> = {}) {
  const sts = new ScriptedSts();
  const peer = new SilentPeer();
  const recorder = new ListRecorder();
  const runtime = new CallRuntime({ adapter: sts, peer, logger: pino({ level: 'silent' }), recorder, ...options });
  runtimes.push(runtime);
  return { runtime, sts, peer, recorder };
}

const frame = (value: number) => new Int16Array(160).fill(value);
const now = () => performance.now();

describe('CallRuntime -> CallRecorder', () => {
  it('reports the call start, caller audio at its arrival and agent frames at the time they will play', async () => {
    const { runtime, sts, recorder } = setup({ metadata: { from: '2000' }, outboundLeadMs: 60 });
    const initAt = now();
    runtime.receiveMessage({ type: 'init', uuid: 'rec-1', providerConfig: undefined });
    runtime.receiveMessage({ type: 'audio', samples: frame(1) }); // while connecting
    await settle();
    vi.advanceTimersByTime(20);
    runtime.receiveMessage({ type: 'audio', samples: frame(2) });
    expect(recorder.of('start')).toEqual([{ kind: 'start', call: { callId: 'rec-1', providerId: 'scripted', metadata: { from: '2000' } }, atMs: initAt }]);
    expect(recorder.of('caller').map((r) => [r.first, r.atMs - initAt])).toEqual([
      [1, 0],
      [2, 20],
    ]);

    // Five frames of a reply: three go out now (60 ms lead) playing back to back, the others as the buffer drains.
    const sentAt = now();
    const session = sts.session!;
    session.events.push({ type: 'audio', responseId: 'r1', samples: Int16Array.from({ length: 800 }, (_, i) => 1 + Math.floor(i / 160)) });
    session.events.push({ type: 'response_done', responseId: 'r1' });
    await settle();
    expect(recorder.of('agent').map((r) => [r.first, r.atMs - sentAt])).toEqual([
      [1, 0],
      [2, 20],
      [3, 40],
    ]);
    vi.advanceTimersByTime(40);
    expect(recorder.of('agent').map((r) => [r.first, r.atMs - sentAt])).toEqual([
      [1, 0],
      [2, 20],
      [3, 40],
      [4, 60],
      [5, 80],
    ]);
  });

  it('reports interruptions, final transcripts and errors as sent to AVR Core, then the end with its outcome', async () => {
    const { runtime, sts, recorder, peer } = setup({ outboundLeadMs: 100 });
    runtime.receiveMessage({ type: 'init', uuid: 'rec-2', providerConfig: undefined });
    await settle();
    const session = sts.session!;
    session.events.push({ type: 'audio', responseId: 'r1', samples: new Int16Array(1600).fill(100) });
    session.events.push({ type: 'transcript', role: 'agent', text: 'partial', final: false });
    session.events.push({ type: 'transcript', role: 'agent', text: 'Hello there.', final: true });
    await settle();
    vi.advanceTimersByTime(30);
    const bargeInAt = now();
    session.events.push({ type: 'speech_started' });
    session.events.push({ type: 'transcript', role: 'user', text: 'Stop.', final: true });
    session.events.push({ type: 'error', error: new ProviderError('scripted', 'rate_limit', 'quota'), fatal: false });
    await settle();
    const controls = recorder.of('control').map((r) => ({ ...r.message, atMs: r.atMs }));
    expect(controls.map(({ atMs: _atMs, ...message }) => message)).toEqual(peer.controls);
    expect(controls.find((c) => c.type === 'interruption')?.atMs).toBe(bargeInAt);
    expect(controls.filter((c) => c.type === 'transcript').map((c) => (c.type === 'transcript' ? `${c.role}: ${c.text}` : ''))).toEqual([
      'agent: Hello there.',
      'user: Stop.',
    ]);
    vi.advanceTimersByTime(15);
    const endAt = now();
    await runtime.close();
    expect(recorder.reports.at(-1)).toEqual({ kind: 'end', outcome: 'completed', atMs: endAt });
    // Nothing after the end: late provider events and caller audio are not reported.
    const count = recorder.reports.length;
    runtime.receiveMessage({ type: 'audio', samples: frame(9) });
    expect(recorder.reports).toHaveLength(count);
  });

  it('reports each tool call with its outcome: ok, failed, timed out, unavailable', async () => {
    const tools: ToolRunner = {
      specs: [{ name: 'lookup', description: 'x', parameters: { type: 'object' } }],
      run: async (name) => {
        if (name === 'broken') throw new Error('boom');
        if (name === 'slow') return new Promise<string>(() => undefined);
        return 'found';
      },
    };
    const { runtime, sts, recorder } = setup({ tools, toolTimeoutMs: 500 });
    runtime.receiveMessage({ type: 'init', uuid: 'rec-3', providerConfig: undefined });
    await settle();
    const session = sts.session!;
    const startedAt = now();
    session.events.push({ type: 'tool_call', callId: 'c1', name: 'lookup', argumentsJson: '{"day":"mon"}' });
    session.events.push({ type: 'tool_call', callId: 'c2', name: 'broken', argumentsJson: '{}' });
    session.events.push({ type: 'tool_call', callId: 'c3', name: 'slow', argumentsJson: '{}' });
    await settle();
    vi.advanceTimersByTime(500);
    await settle();
    const calls = recorder.of('tool').map((r) => r.call);
    expect(calls.map((c) => [c.name, c.status, c.output])).toEqual([
      ['lookup', 'ok', 'found'],
      ['broken', 'failed', 'Error: tool "broken" failed'],
      ['slow', 'timeout', 'Error: tool "slow" timed out after 500 ms'],
    ]);
    expect(calls[0]).toMatchObject({ argumentsJson: '{"day":"mon"}', startedAtMs: startedAt, endedAtMs: startedAt });
    expect(calls[2]?.endedAtMs).toBe(startedAt + 500);
    expect(session.toolResults.map((r) => r.output)).toEqual(calls.map((c) => c.output));

    const { runtime: bare, sts: bareSts, recorder: bareRecorder } = setup();
    bare.receiveMessage({ type: 'init', uuid: 'rec-4', providerConfig: undefined });
    await settle();
    bareSts.session!.events.push({ type: 'tool_call', callId: 'c4', name: 'lookup', argumentsJson: '{}' });
    await settle();
    expect(bareRecorder.of('tool').map((r) => r.call.status)).toEqual(['unavailable']);
  });

  it('a call that never sends init is never started: its error and end have nothing to record', async () => {
    const { runtime, recorder } = setup({ initTimeoutMs: 100 });
    runtime.receiveMessage({ type: 'audio', samples: frame(1) });
    vi.advanceTimersByTime(100);
    await runtime.closed;
    expect(recorder.of('start')).toEqual([]);
    expect(recorder.of('caller')).toEqual([]);
    expect(recorder.of('end').map((r) => r.outcome)).toEqual(['init_timeout']);
  });
});
