import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { bestAlignment, concatPcm as concat, fixturePath, readWavAs8k, silence, simulateCall } from '@stsgate/testkit';
import { buildGateway, builtinRegistry, gatewayConfig, type Gateway } from '../src/index.js';

// The whole path with the real loopback provider and the real Silero VAD, over real TCP, in real time.
const logger = pino({ level: 'silent' });
let gateway: Gateway;
let url: string;

beforeAll(async () => {
  const definition = builtinRegistry().get('sts', 'loopback');
  if (definition === undefined) throw new Error('loopback provider missing from the registry');
  const adapter = definition.fromEnv({}, { logger });
  gateway = await buildGateway(gatewayConfig(), { sts: { id: 'loopback', adapter }, logger });
  await gateway.app.listen({ host: '127.0.0.1', port: 0 });
  url = `ws://127.0.0.1:${(gateway.app.server.address() as AddressInfo).port}/?from=2000&to=5001`;
});

afterAll(async () => {
  await gateway.app.close();
});

/** Correlation of `needle` inside `haystack`, searched around where both first get loud. */
function bestCorrelation(haystack: Int16Array, needle: Int16Array): number {
  const firstLoud = (x: Int16Array) => x.findIndex((v) => Math.abs(v) > 1000);
  const anchor = firstLoud(haystack) - firstLoud(needle);
  return bestAlignment(haystack, needle, anchor - 400, anchor + 400).correlation;
}

describe('gateway + loopback provider, end to end', () => {
  it('plays the caller utterance back after it ends', async () => {
    const greeting = readWavAs8k(fixturePath('greeting'));
    const report = await simulateCall({ url, input: greeting, tailMs: 5000 });
    expect(report.errors).toEqual([]);
    expect(report.protocolProblems).toEqual([]);
    expect(report.received.irregularFrames).toBe(0);
    expect(report.received.interruptions).toBe(0);
    expect(report.responseLatenciesMs).toHaveLength(1);
    expect(report.responseLatenciesMs[0]).toBeLessThan(2000);
    // What the caller heard after the utterance is the utterance itself.
    const replyStart = Math.round(((report.firstAudioHeardAtMs ?? 0) * 8000) / 1000);
    expect(replyStart).toBeGreaterThan(greeting.length * 0.8);
    expect(bestCorrelation(report.heard.subarray(replyStart), greeting)).toBeGreaterThan(0.95);
    expect(report.heardAgentMs).toBeGreaterThan(3000);
  });

  it('stops playback and sends interruption when the caller talks over it', async () => {
    const greeting = readWavAs8k(fixturePath('greeting'));
    const question = readWavAs8k(fixturePath('question'));
    // The reply to the greeting starts ~0.6 s after it ends and lasts ~3.5 s: the question lands inside it.
    const input = concat(greeting, silence(1500), question);
    const report = await simulateCall({ url, input, tailMs: 4500 });
    expect(report.errors).toEqual([]);
    expect(report.received.interruptions).toBe(1);
    expect(report.bargeIns).toHaveLength(1);
    const [bargeIn] = report.bargeIns;
    expect(bargeIn?.interruptionAtMs).not.toBeNull();
    expect(bargeIn?.playbackStopped).toBe(true);
    expect(bargeIn?.reactionMs).toBeLessThan(1000);
    // The gateway's own measure (the VAD's speech start against the audio it judged) agrees with the caller's.
    const metrics = await gateway.metrics.registry.metrics();
    expect(metrics).toMatch(/^stsgate_barge_in_reaction_seconds_count\{provider="loopback"\} 1$/m);
    const reactionMs = Number(/^stsgate_barge_in_reaction_seconds_sum\{provider="loopback"\} (\S+)$/m.exec(metrics)?.[1]) * 1000;
    expect(Math.abs(reactionMs - (bargeIn?.reactionMs ?? Number.NaN))).toBeLessThan(100);
    // The interrupted reply was cut short; the question was then played back in full.
    expect(report.interruptions[0]?.flushedMs ?? 0).toBeGreaterThan(0);
    expect(report.responseLatenciesMs).toHaveLength(2);
    const lastReplyStart = report.heard.length - Math.round((4500 * 8000) / 1000) + 1;
    expect(bestCorrelation(report.heard.subarray(lastReplyStart), question)).toBeGreaterThan(0.95);
  });
});
