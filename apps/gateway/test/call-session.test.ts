import { afterEach, describe, expect, it } from 'vitest';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { WebSocket } from 'ws';
import { ProviderError, pcmFromBytes, type AvrOutbound, type StsAdapter, type ToolRunner } from '@stsgate/core';
import {
  buildGateway,
  CallSession,
  gatewayConfig,
  GatewayMetrics,
  OutboundPacer,
  type Gateway,
  type GatewayConfig,
} from '../src/index.js';
import type { CallInbound, CallTransport } from '../src/call-transport.js';
import { AvrRecorder } from './ws-client.js';
import { ScriptedSts } from './scripted-sts.js';

const logger = pino({ level: 'silent' });
const gateways: Gateway[] = [];

async function start(adapter: StsAdapter, overrides: Partial<GatewayConfig> = {}, initTimeoutMs?: number, tools?: ToolRunner) {
  const gateway = await buildGateway(gatewayConfig(overrides), {
    sts: { id: adapter.id, adapter },
    logger,
    ...(initTimeoutMs === undefined ? {} : { initTimeoutMs }),
    ...(tools === undefined ? {} : { tools }),
  });
  await gateway.app.ready();
  gateways.push(gateway);
  return gateway;
}

/**
 * The value of each 20 ms frame of constant tones, whatever chunks they reached the provider in (a busy gateway sends
 * two frames per message: CALLER_AUDIO_BATCH_UTILIZATION).
 */
function frameValues(chunks: readonly Int16Array[]): number[] {
  const values: number[] = [];
  for (const chunk of chunks) for (let i = 0; i < chunk.length; i += 160) values.push(chunk[i] ?? Number.NaN);
  return values;
}

async function connect(gateway: Gateway, path = '/') {
  return new AvrRecorder(await gateway.app.injectWS(path));
}

afterEach(async () => {
  await Promise.all(gateways.splice(0).map((g) => g.app.close()));
});

const tone = (samples: number, value = 1000) => new Int16Array(samples).fill(value);
const ramp = (samples: number) => Int16Array.from({ length: samples }, (_, i) => (i % 2000) - 1000);

describe('call setup', () => {
  it('upgrades on any path and passes the query string as call metadata (without the token)', async () => {
    const sts = new ScriptedSts();
    const gateway = await start(sts);
    const avr = await connect(gateway, '/some/path?from=2000&to=5001&uniqueid=1770758888.32&channel=PJSIP%2F2000-00000013&token=abc');
    const session = sts.nextSession();
    avr.send({ type: 'init', uuid: 'call-1', provider_config: { voice: 'x' } });
    const s = await session;
    expect(s.call.callId).toBe('call-1');
    expect(s.call.metadata).toEqual({ from: '2000', to: '5001', uniqueid: '1770758888.32', channel: 'PJSIP/2000-00000013' });
  });

  it('buffers audio that arrives before the provider is ready and delivers it in order', async () => {
    let ready!: () => void;
    const sts = new ScriptedSts({ ready: new Promise((resolve) => (ready = resolve)) });
    const gateway = await start(sts);
    const avr = await connect(gateway);
    avr.send({ type: 'init', uuid: 'early' });
    for (let i = 0; i < 5; i++) avr.sendAudio(tone(160, i + 1));
    avr.send({ type: 'dtmf_digit', digit: '7' });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const session = sts.nextSession();
    ready();
    const s = await session;
    await until(() => s.receivedSamples() === 5 * 160);
    expect(frameValues(s.audio)).toEqual([1, 2, 3, 4, 5]);
    expect(s.dtmf).toEqual(['7']);
    avr.sendAudio(tone(160, 6));
    await until(() => s.receivedSamples() === 6 * 160);
  });

  it('bounds the early-audio buffer, dropping the oldest audio', async () => {
    let ready!: () => void;
    const sts = new ScriptedSts({ ready: new Promise((resolve) => (ready = resolve)) });
    const gateway = await start(sts, { earlyAudioBufferMs: 100 });
    const avr = await connect(gateway);
    avr.send({ type: 'init', uuid: 'bounded' });
    for (let i = 0; i < 20; i++) avr.sendAudio(tone(160, i + 1));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const session = sts.nextSession();
    ready();
    const s = await session;
    await until(() => s.receivedSamples() === 5 * 160);
    expect(frameValues(s.audio)).toEqual([16, 17, 18, 19, 20]);
    expect(await gateway.app.inject('/metrics').then((r) => r.body)).toMatch(/stsgate_early_audio_dropped_frames_total 15/);
  });

  it('resamples caller audio to the rate the provider asks for', async () => {
    const sts = new ScriptedSts({ inputSampleRate: 24000 });
    const gateway = await start(sts);
    const avr = await connect(gateway);
    const session = sts.nextSession();
    avr.send({ type: 'init', uuid: 'rate' });
    const s = await session;
    for (let i = 0; i < 50; i++) avr.sendAudio(ramp(160));
    await until(() => s.receivedSamples() > 23000);
    expect(s.receivedSamples()).toBeLessThanOrEqual(24000);
  });
});

describe('bad input', () => {
  it('answers each malformed message with an error and the call goes on', async () => {
    const sts = new ScriptedSts();
    const gateway = await start(sts);
    const avr = await connect(gateway);
    avr.sendAudio(tone(160)); // audio before init
    avr.send({ type: 'dtmf_digit', digit: '1' }); // dtmf before init
    const session = sts.nextSession();
    avr.send({ type: 'init', uuid: 'bad-input' });
    const s = await session;
    const bad = [
      '{"type":"audio","audio":',
      '{"type":"teleport"}',
      '{"type":"audio"}',
      '{"type":"init"}',
      '{"type":"audio","audio":"%%%not base64%%%"}',
      JSON.stringify({ type: 'audio', audio: Buffer.alloc(321).toString('base64') }),
      '{"type":"dtmf_digit","digit":"X"}',
      '[]',
      JSON.stringify({ type: 'init', uuid: 'again' }),
    ];
    for (const message of bad) avr.send(message);
    avr.socket.send(Buffer.from([1, 2, 3]), { binary: true });
    avr.sendAudio(tone(160, 42));
    await until(() => s.audio.length === 1);
    await avr.until(() => avr.errors().length === 10);
    // An unknown message type (a newer AVR Core's) and a repeated init are ignored without an AVR error; malformed
    // known messages keep theirs.
    const errors = avr.errors();
    expect(errors[0]).toMatch(/audio received before init/);
    expect(errors[1]).toMatch(/dtmf_digit received before init/);
    expect(errors[2]).toMatch(/not valid JSON/);
    expect(errors[3]).toMatch(/invalid "audio" message/);
    expect(errors[4]).toMatch(/invalid "init" message/);
    expect(errors[5]).toMatch(/not valid base64/);
    expect(errors[5]).not.toContain('%%%');
    expect(errors[6]).toMatch(/odd byte count/);
    expect(errors[7]).toMatch(/invalid "dtmf_digit" message/);
    expect(errors[8]).toMatch(/JSON object/);
    expect(errors[9]).toMatch(/binary frames/);
    expect(errors.join(' ')).not.toMatch(/teleport|duplicate init/);
    expect(s.audio[0]?.[0]).toBe(42);
    expect(sts.sessions).toHaveLength(1);
    expect(avr.closeCode).toBeUndefined();
  });

  it('refuses frames larger than maxPayload without touching other calls', async () => {
    const sts = new ScriptedSts();
    const gateway = await start(sts, { wsMaxPayloadBytes: 4096 });
    const other = await connect(gateway);
    const otherSession = sts.nextSession();
    other.send({ type: 'init', uuid: 'other' });
    const o = await otherSession;
    const avr = await connect(gateway);
    avr.send({ type: 'init', uuid: 'big' });
    avr.send({ type: 'audio', audio: Buffer.alloc(8000).toString('base64') });
    await avr.until(() => avr.closeCode !== undefined);
    expect(avr.closeCode).toBe(1009);
    other.sendAudio(tone(160, 9));
    await until(() => o.audio.length === 1);
  });

  it('survives an adapter that throws on audio', async () => {
    const sts = new ScriptedSts();
    const gateway = await start(sts);
    const avr = await connect(gateway);
    const session = sts.nextSession();
    avr.send({ type: 'init', uuid: 'throws' });
    const s = await session;
    s.sendAudio = () => {
      throw new Error('adapter bug');
    };
    avr.sendAudio(tone(160));
    await avr.until(() => avr.errors().some((e) => e.includes('internal error')));
    avr.send({ type: 'dtmf_digit', digit: '3' });
    await until(() => s.dtmf.length === 1);
  });

  it('closes a connection that never sends init', async () => {
    const gateway = await start(new ScriptedSts(), {}, 100);
    const avr = await connect(gateway);
    await avr.until(() => avr.closeCode !== undefined);
    expect(avr.errors()).toEqual(['no init message received']);
    expect(avr.closeCode).toBe(1002);
  });
});

describe('agent audio', () => {
  it('leaves as exact 20 ms frames, the last one padded, carrying the provider audio', async () => {
    const sts = new ScriptedSts();
    const gateway = await start(sts);
    const avr = await connect(gateway);
    const session = sts.nextSession();
    avr.send({ type: 'init', uuid: 'frames' });
    const s = await session;
    const reply = ramp(1000);
    s.emit({ type: 'audio', responseId: 'r1', samples: reply.subarray(0, 333) });
    s.emit({ type: 'audio', responseId: 'r1', samples: reply.subarray(333) });
    s.emit({ type: 'response_done', responseId: 'r1' });
    await avr.until(() => avr.of('audio').length === 7);
    const frames = avr.of('audio').map((m) => Buffer.from(m.audio, 'base64'));
    expect(frames.every((f) => f.length === 320)).toBe(true);
    const joined = pcmFromBytes(Buffer.concat(frames));
    expect([...joined.subarray(0, 1000)]).toEqual([...reply]);
    expect(joined.subarray(1000).every((v) => v === 0)).toBe(true);
  });

  it('keeps AVR Core buffer short: only the lead is sent ahead of real time', async () => {
    const sts = new ScriptedSts();
    const gateway = await start(sts, { outboundLeadMs: 100 });
    const avr = await connect(gateway);
    const session = sts.nextSession();
    avr.send({ type: 'init', uuid: 'pace' });
    const s = await session;
    s.emit({ type: 'audio', responseId: 'r1', samples: ramp(8000 * 3) });
    await avr.until(() => avr.of('audio').length >= 5);
    // 3 s of audio were available at once; after the first burst only real time is released.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(avr.of('audio').length).toBeLessThan(40);
    expect(avr.of('audio').length).toBeGreaterThanOrEqual(5);
  });

  it('a reply streamed in real time starts only once 40 ms are queued (no gap after its first frame)', async () => {
    const sts = new ScriptedSts();
    const gateway = await start(sts, { outboundLeadMs: 120, outboundStartBufferMs: 40 });
    const avr = await connect(gateway);
    const session = sts.nextSession();
    avr.send({ type: 'init', uuid: 'start-buffer' });
    const s = await session;
    // One frame and a bit, like Flow's first 40 ms chunk after the resampler's delay; the rest 30 ms later.
    s.emit({ type: 'audio', responseId: 'r1', samples: ramp(257) });
    await new Promise((resolve) => setTimeout(resolve, 25));
    expect(avr.of('audio')).toHaveLength(0);
    s.emit({ type: 'audio', responseId: 'r1', samples: ramp(320) });
    await avr.until(() => avr.of('audio').length >= 3);
    // A short reply that is already complete is not held back.
    s.emit({ type: 'response_done', responseId: 'r1' });
    await avr.until(() => avr.of('audio').length === 4);
    await new Promise((resolve) => setTimeout(resolve, 200));
    s.emit({ type: 'audio', responseId: 'r2', samples: ramp(100) });
    s.emit({ type: 'response_done', responseId: 'r2' });
    await avr.until(() => avr.of('audio').length === 5);
  });

  it('the start buffer waits at most its own length for more audio', async () => {
    const sts = new ScriptedSts();
    const gateway = await start(sts, { outboundStartBufferMs: 60 });
    const avr = await connect(gateway);
    const session = sts.nextSession();
    avr.send({ type: 'init', uuid: 'start-deadline' });
    const s = await session;
    const sentAt = performance.now();
    s.emit({ type: 'audio', responseId: 'r1', samples: ramp(160) });
    await avr.until(() => avr.of('audio').length === 1);
    const waited = performance.now() - sentAt;
    expect(waited).toBeGreaterThanOrEqual(55);
  });

  it('downsamples provider audio to 8 kHz', async () => {
    const sts = new ScriptedSts({ outputSampleRate: 24000 });
    const gateway = await start(sts, { outboundLeadMs: 2000 });
    const avr = await connect(gateway);
    const session = sts.nextSession();
    avr.send({ type: 'init', uuid: 'down' });
    const s = await session;
    s.emit({ type: 'audio', responseId: 'r1', samples: ramp(24000) });
    s.emit({ type: 'response_done', responseId: 'r1' });
    await avr.until(() => avr.of('audio').length >= 50);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(avr.of('audio').length).toBeGreaterThanOrEqual(50);
    expect(avr.of('audio').length).toBeLessThanOrEqual(52);
  });

  it('forwards final transcripts only', async () => {
    const sts = new ScriptedSts();
    const gateway = await start(sts);
    const avr = await connect(gateway);
    const session = sts.nextSession();
    avr.send({ type: 'init', uuid: 'transcripts' });
    const s = await session;
    s.emit({ type: 'transcript', role: 'user', text: 'I need', final: false });
    s.emit({ type: 'transcript', role: 'user', text: 'I need a visit', final: true });
    s.emit({ type: 'transcript', role: 'agent', text: 'Sure, which day?', final: true });
    await avr.until(() => avr.of('transcript').length === 2);
    expect(avr.of('transcript')).toEqual([
      { type: 'transcript', role: 'user', text: 'I need a visit' },
      { type: 'transcript', role: 'agent', text: 'Sure, which day?' },
    ]);
  });
});

describe('barge-in', () => {
  it('sends interruption ahead of queued audio, stops playback and truncates to what was heard', async () => {
    const sts = new ScriptedSts();
    const gateway = await start(sts, { outboundLeadMs: 100 });
    const avr = await connect(gateway);
    const session = sts.nextSession();
    avr.send({ type: 'init', uuid: 'barge' });
    const s = await session;
    s.emit({ type: 'audio', responseId: 'r1', samples: ramp(8000 * 5) });
    await avr.until(() => avr.of('audio').length >= 10);
    s.emit({ type: 'speech_started' });
    await avr.until(() => avr.of('interruption').length === 1);
    const audioBefore = avr.of('audio').length;
    await new Promise((resolve) => setTimeout(resolve, 150));
    const last = avr.messages.at(-1);
    expect(last?.type).toBe('interruption');
    expect(avr.of('audio').length).toBe(audioBefore);
    expect(s.truncations).toHaveLength(1);
    const [truncation] = s.truncations;
    expect(truncation?.responseId).toBe('r1');
    expect(truncation?.heardMs).toBeGreaterThan(0);
    expect(truncation?.heardMs).toBeLessThanOrEqual(audioBefore * 20);
    // Audio of the interrupted reply still in flight from the provider is not played.
    s.emit({ type: 'audio', responseId: 'r1', samples: ramp(1600) });
    s.emit({ type: 'audio', responseId: 'r2', samples: ramp(160) });
    await avr.until(() => avr.of('audio').length === audioBefore + 1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(avr.of('audio').length).toBe(audioBefore + 1);
  });

  it('does not interrupt when nothing is playing', async () => {
    const sts = new ScriptedSts();
    const gateway = await start(sts);
    const avr = await connect(gateway);
    const session = sts.nextSession();
    avr.send({ type: 'init', uuid: 'quiet' });
    const s = await session;
    s.emit({ type: 'speech_started' });
    s.emit({ type: 'transcript', role: 'user', text: 'marker', final: true });
    await avr.until(() => avr.of('transcript').length === 1);
    expect(avr.of('interruption')).toHaveLength(0);
    expect(s.truncations).toHaveLength(0);
  });

  it('relays a provider-side interruption without truncating', async () => {
    const sts = new ScriptedSts();
    const gateway = await start(sts);
    const avr = await connect(gateway);
    const session = sts.nextSession();
    avr.send({ type: 'init', uuid: 'provider-int' });
    const s = await session;
    s.emit({ type: 'audio', responseId: 'r1', samples: ramp(8000) });
    await avr.until(() => avr.of('audio').length >= 2);
    s.emit({ type: 'interrupted', responseId: 'r1' });
    await avr.until(() => avr.of('interruption').length === 1);
    expect(s.truncations).toHaveLength(0);
  });
});

describe('metrics', () => {
  it('labels calls, errors, interruptions and reconnects by provider; times calls and responses', async () => {
    const sts = new ScriptedSts();
    const gateway = await start(sts);
    const avr = await connect(gateway);
    const session = sts.nextSession();
    avr.send({ type: 'init', uuid: 'metered' });
    const s = await session;
    s.call.observer?.reconnecting('scripted');
    s.emit({ type: 'speech_stopped' });
    await new Promise((resolve) => setTimeout(resolve, 60));
    s.emit({ type: 'audio', responseId: 'r1', samples: ramp(8000) });
    await avr.until(() => avr.of('audio').length >= 3);
    s.emit({ type: 'speech_started', onsetAgoMs: 320 });
    await avr.until(() => avr.of('interruption').length === 1);
    avr.send({ type: 'teleport' });
    await gateway.shutdown(0);
    const metrics = await gateway.metrics.registry.metrics();
    expect(metrics).toMatch(/^stsgate_provider_reconnects_total\{provider="scripted"\} 1$/m);
    expect(metrics).toMatch(/^stsgate_interruptions_total\{provider="scripted"\} 1$/m);
    expect(metrics).toMatch(/^stsgate_barge_in_reaction_seconds_count\{provider="scripted"\} 1$/m);
    expect(metrics).toMatch(/^stsgate_barge_in_reaction_seconds_sum\{provider="scripted"\} 0\.32$/m);
    expect(metrics).toMatch(/^stsgate_errors_total\{kind="protocol_unknown_type",provider="scripted"\} 1$/m);
    expect(metrics).toMatch(/^stsgate_calls_total\{provider="scripted",outcome="shutdown"\} 1$/m);
    expect(metrics).toMatch(/^stsgate_call_duration_seconds_count\{provider="scripted",outcome="shutdown"\} 1$/m);
    // speech_stopped to the reply's first frame: at least the 60 ms the provider took.
    expect(metrics).toMatch(/^stsgate_response_latency_seconds_count\{provider="scripted"\} 1$/m);
    expect(Number(/^stsgate_response_latency_seconds_sum\{provider="scripted"\} (\S+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(0.055);
  });

  it('names no gauge or histogram *_total (a suffix Prometheus keeps for counters)', async () => {
    const metrics = new GatewayMetrics(true);
    const all = await metrics.registry.getMetricsAsJSON();
    expect(all.filter((metric) => metric.name.endsWith('_total') && String(metric.type) !== 'counter').map((metric) => metric.name)).toEqual([]);
    expect(all.map((metric) => metric.name)).toContain('stsgate_nodejs_active_handles');
  });
});

describe('tools', () => {
  it('declares the tools, runs them after the reply has been heard, and returns the result', async () => {
    const order: string[] = [];
    let heardFrames = -1;
    const client: { avr?: AvrRecorder } = {};
    const tools: ToolRunner = {
      specs: [{ name: 'avr_hangup', description: 'End the call', parameters: { type: 'object', properties: {} } }],
      async run(name, argumentsJson, context) {
        order.push(`run:${name}:${argumentsJson}:${context.callId}`);
        await context.untilAgentAudioHeard();
        heardFrames = client.avr?.of('audio').length ?? -1;
        order.push('heard');
        return '{"message":"bye"}';
      },
    };
    const sts = new ScriptedSts();
    const gateway = await start(sts, { outboundLeadMs: 60 }, undefined, tools);
    const avr = await connect(gateway);
    client.avr = avr;
    const session = sts.nextSession();
    avr.send({ type: 'init', uuid: 'tools' });
    const s = await session;
    expect(s.call.tools.map((t) => t.name)).toEqual(['avr_hangup']);
    s.emit({ type: 'audio', responseId: 'goodbye', samples: ramp(8000 / 2) }); // 500 ms of goodbye
    s.emit({ type: 'tool_call', callId: 'call_1', name: 'avr_hangup', argumentsJson: '{}' });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(order).toEqual(['run:avr_hangup:{}:tools']); // still speaking: the reply is not done
    s.emit({ type: 'response_done', responseId: 'goodbye' });
    await until(() => s.toolResults.length === 1);
    expect(order).toEqual(['run:avr_hangup:{}:tools', 'heard']);
    expect(heardFrames).toBe(25); // every frame of the goodbye was sent (and played) before the tool acted
    expect(s.toolResults).toEqual([{ callId: 'call_1', output: '{"message":"bye"}' }]);
  });

  it('answers a tool call with an error text when no tools are configured', async () => {
    const sts = new ScriptedSts();
    const gateway = await start(sts);
    const avr = await connect(gateway);
    const session = sts.nextSession();
    avr.send({ type: 'init', uuid: 'no-tools' });
    const s = await session;
    s.emit({ type: 'tool_call', callId: 'c9', name: 'lookup', argumentsJson: '{}' });
    await until(() => s.toolResults.length === 1);
    expect(s.toolResults[0]?.output).toMatch(/not available/);
  });
});

describe('provider failures', () => {
  it('turns a connect failure into a clear error and a clean close', async () => {
    const sts = new ScriptedSts({ connectError: new ProviderError('scripted', 'auth', 'invalid API key') });
    const gateway = await start(sts);
    const avr = await connect(gateway);
    avr.send({ type: 'init', uuid: 'auth' });
    await avr.until(() => avr.closeCode !== undefined);
    expect(avr.errors()).toEqual(['provider connection failed: invalid API key']);
    expect(avr.closeCode).toBe(1011);
    expect((await gateway.app.inject('/metrics')).body).toMatch(/stsgate_errors_total\{kind="provider_auth",provider="scripted"\} 1/);
  });

  it('times out a provider that never connects', async () => {
    const sts = new ScriptedSts({ ready: new Promise(() => undefined) });
    const gateway = await start(sts, { providerConnectTimeoutMs: 100 });
    const avr = await connect(gateway);
    avr.send({ type: 'init', uuid: 'slow' });
    await avr.until(() => avr.closeCode !== undefined);
    expect(avr.errors()[0]).toMatch(/did not connect within 100 ms/);
  });

  it('reports non-fatal errors and keeps the call; fatal ones end it', async () => {
    const sts = new ScriptedSts();
    const gateway = await start(sts);
    const avr = await connect(gateway);
    const session = sts.nextSession();
    avr.send({ type: 'init', uuid: 'errs' });
    const s = await session;
    s.emit({ type: 'error', error: new ProviderError('scripted', 'rate_limit', 'slow down'), fatal: false });
    await avr.until(() => avr.errors().length === 1);
    expect(avr.closeCode).toBeUndefined();
    s.emit({ type: 'error', error: new ProviderError('scripted', 'server', 'gone'), fatal: true });
    await avr.until(() => avr.closeCode !== undefined);
    expect(avr.errors()).toEqual(['provider error: slow down', 'provider error: gone']);
    expect(avr.closeCode).toBe(1011);
    expect(s.closeCount).toBe(1);
  });

  it('ends the call with an error when the provider session ends by itself', async () => {
    const sts = new ScriptedSts();
    const gateway = await start(sts);
    const avr = await connect(gateway);
    const session = sts.nextSession();
    avr.send({ type: 'init', uuid: 'ended' });
    const s = await session;
    s.events.end();
    await avr.until(() => avr.closeCode !== undefined);
    expect(avr.errors()).toEqual(['the provider ended the session']);
  });
});

describe('isolation and teardown', () => {
  it('keeps concurrent calls apart', async () => {
    const sts = new ScriptedSts();
    const gateway = await start(sts);
    const a = await connect(gateway);
    const b = await connect(gateway);
    const sa = sts.nextSession();
    a.send({ type: 'init', uuid: 'A' });
    const sessionA = await sa;
    const sb = sts.nextSession();
    b.send({ type: 'init', uuid: 'B' });
    const sessionB = await sb;
    a.sendAudio(tone(160, 111));
    b.sendAudio(tone(160, 222));
    await until(() => sessionA.audio.length === 1 && sessionB.audio.length === 1);
    expect(sessionA.audio[0]?.[0]).toBe(111);
    expect(sessionB.audio[0]?.[0]).toBe(222);
    sessionA.emit({ type: 'audio', responseId: 'ra', samples: tone(160, 333) });
    sessionB.emit({ type: 'audio', responseId: 'rb', samples: tone(160, 444) });
    await a.until(() => a.of('audio').length === 1);
    await b.until(() => b.of('audio').length === 1);
    expect(pcmFromBytes(Buffer.from(a.of('audio')[0]!.audio, 'base64'))[0]).toBe(333);
    expect(pcmFromBytes(Buffer.from(b.of('audio')[0]!.audio, 'base64'))[0]).toBe(444);
  });

  it('closes the provider session when AVR Core hangs up', async () => {
    // Over real TCP: the close handshake needs a socket that really ends.
    const sts = new ScriptedSts();
    const gateway = await start(sts);
    await gateway.app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = gateway.app.server.address() as AddressInfo;
    const socket = new WebSocket(`ws://127.0.0.1:${port}/`);
    await new Promise((resolve) => socket.once('open', resolve));
    const avr = new AvrRecorder(socket);
    const session = sts.nextSession();
    avr.send({ type: 'init', uuid: 'hangup' });
    const s = await session;
    avr.socket.close();
    await until(() => s.closeCount === 1 && gateway.calls.size === 0);
    expect((await gateway.app.inject('/metrics')).body).toMatch(/stsgate_active_calls 0/);
    expect((await gateway.app.inject('/metrics')).body).toMatch(/stsgate_calls_total\{provider="scripted",outcome="completed"\} 1/);
  });

  it('rejects calls beyond MAX_CALLS and without the auth token', async () => {
    const gateway = await start(new ScriptedSts(), { maxCalls: 1, authToken: 'a-long-enough-secret' });
    await expect(gateway.app.injectWS('/')).rejects.toThrow(/401/);
    await connect(gateway, '/?token=a-long-enough-secret');
    await expect(gateway.app.injectWS('/?token=a-long-enough-secret')).rejects.toThrow(/503/);
  });
});

describe('HTTP endpoints', () => {
  it('serves health and metrics', async () => {
    const gateway = await start(new ScriptedSts());
    const health = await gateway.app.inject('/health');
    expect(health.statusCode).toBe(200);
    expect(health.json()).toEqual({ status: 'ok' });
    const metrics = await gateway.app.inject('/metrics');
    expect(metrics.body).toContain('stsgate_active_calls');
    expect(metrics.body).toContain('stsgate_provider_connect_seconds');
    const plain = await gateway.app.inject('/anything');
    expect(plain.statusCode).toBe(426);
  });
});

/** A transport with no socket: records what the call sends; the test plays AVR Core through `call`. */
class MemoryTransport implements CallTransport {
  readonly audio: Int16Array[] = [];
  readonly controls: AvrOutbound[] = [];
  backlogBytes = 0;
  open = true;
  closedWith: { code: number; reason: string | undefined } | undefined;
  disposed = false;
  call: CallInbound | undefined;

  attach(call: CallInbound): void {
    this.call = call;
  }
  sendAudio(samples: Int16Array): void {
    this.audio.push(samples);
  }
  sendControl(message: AvrOutbound): void {
    this.controls.push(message);
  }
  close(code: number, reason?: string): void {
    this.closedWith = { code, reason };
    this.open = false;
  }
  dispose(): void {
    this.disposed = true;
  }
}

const memoryCalls: { call: CallSession; pacer: OutboundPacer }[] = [];
afterEach(async () => {
  await Promise.all(memoryCalls.splice(0).map(({ call, pacer }) => call.close().then(() => pacer.close())));
});

/** A call over a MemoryTransport with a hand-driven clock; the pacer never ticks by itself, the test pumps. */
function memoryCall(sts: ScriptedSts) {
  const transport = new MemoryTransport();
  const metrics = new GatewayMetrics(false);
  const pacer = new OutboundPacer(3_600_000);
  const clock = { now: 0 };
  const call = new CallSession(transport, {
    adapter: sts,
    providerId: sts.id,
    logger,
    metrics,
    pacer,
    metadata: {},
    earlyAudioBufferMs: 1000,
    outboundLeadMs: 100,
    providerConnectTimeoutMs: 1000,
    now: () => clock.now,
  });
  memoryCalls.push({ call, pacer });
  return { call, transport, metrics, clock };
}

/** Let the provider's queued events reach the call (no timers involved). */
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('CallSession over an in-memory transport', () => {
  it('runs a call: init, caller audio and DTMF to the provider, agent audio kept to the lead, then the hang-up', async () => {
    const sts = new ScriptedSts();
    const { call, transport, metrics, clock } = memoryCall(sts);
    call.handleDtmf('1');
    expect(transport.controls).toEqual([{ type: 'error', message: 'dtmf_digit received before init; send init first' }]);
    const session = sts.nextSession();
    call.handleInit('memory-1');
    call.handleAudio(tone(160, 7)); // while the provider connects: buffered, then delivered
    const s = await session;
    await settle();
    expect(s.call.callId).toBe('memory-1');
    expect(call.state).toBe('active');
    call.handleDtmf('5');
    expect(s.audio.map((chunk) => chunk[0])).toEqual([7]);
    expect(s.dtmf).toEqual(['5']);

    s.emit({ type: 'audio', responseId: 'r1', samples: ramp(8000) });
    await settle();
    expect(transport.audio).toHaveLength(5); // 100 ms lead, no time has passed
    clock.now = 40;
    expect(call.pump()).toBe(true);
    expect(transport.audio).toHaveLength(7);
    transport.backlogBytes = 1_000_000; // the peer stopped reading
    clock.now = 200;
    expect(call.pump()).toBe(true);
    expect(transport.audio).toHaveLength(7);
    transport.backlogBytes = 0;
    call.pump();
    expect(transport.audio).toHaveLength(12);
    expect(transport.audio.every((frame) => frame.length === 160)).toBe(true);

    transport.call?.transportClosed();
    await call.closed;
    expect(call.state).toBe('closed');
    expect(s.closeCount).toBe(1);
    expect(transport.closedWith).toEqual({ code: 1000, reason: undefined });
    expect(transport.disposed).toBe(true);
    expect(await metrics.registry.metrics()).toMatch(/stsgate_active_calls 0/);
    call.handleAudio(tone(160)); // after the end: ignored
    expect(s.audio).toHaveLength(1);
  });

  it('barge-in: interruption first, the queue dropped, the provider told exactly what was heard', async () => {
    const sts = new ScriptedSts();
    const { call, transport, clock } = memoryCall(sts);
    const session = sts.nextSession();
    call.handleInit('memory-barge');
    const s = await session;
    await settle();
    s.emit({ type: 'audio', responseId: 'r1', samples: ramp(8000) });
    await settle();
    expect(transport.audio).toHaveLength(5);
    clock.now = 40;
    s.emit({ type: 'speech_started' });
    await settle();
    expect(transport.controls).toEqual([{ type: 'interruption' }]);
    expect(s.truncations).toEqual([{ responseId: 'r1', heardMs: 40 }]);
    expect(call.pump()).toBe(false);
    expect(transport.audio).toHaveLength(5);
    // The rest of the cut reply is dropped; the next reply plays at once.
    s.emit({ type: 'audio', responseId: 'r1', samples: ramp(1600) });
    s.emit({ type: 'audio', responseId: 'r2', samples: tone(160, 9) });
    await settle();
    expect(transport.audio).toHaveLength(6);
    expect(transport.audio[5]?.[0]).toBe(9);
  });

  it('a provider that fails to connect: an error, then the transport closed with 1011', async () => {
    const sts = new ScriptedSts({ connectError: new ProviderError('scripted', 'auth', 'invalid API key') });
    const { call, transport, metrics } = memoryCall(sts);
    call.handleInit('memory-fail');
    await call.closed;
    expect(transport.controls).toEqual([{ type: 'error', message: 'provider connection failed: invalid API key' }]);
    expect(transport.closedWith).toEqual({ code: 1011, reason: 'provider connection failed' });
    expect(await metrics.registry.metrics()).toMatch(/stsgate_calls_total\{provider="scripted",outcome="provider_error"\} 1/);
  });
});

async function until(predicate: () => boolean, timeoutMs = 5000): Promise<void> {
  const started = Date.now();
  while (!predicate()) {
    if (Date.now() - started > timeoutMs) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
