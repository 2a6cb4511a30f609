import { afterEach, describe, expect, it } from 'vitest';
import type { AddressInfo } from 'node:net';
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import pino from 'pino';
import { ProviderError, bytesFromPcm, pcmFromBytes, type StsAdapter } from '@stsgate/core';
import { bestAlignment, concatPcm, fixturePath, readWavAs8k, silence } from '@stsgate/testkit';
import { buildGateway, builtinRegistry, gatewayConfig, OutboundPacer, type CallSession, type GatewayConfig } from '../src/index.js';
import { LEGACY_STS_ROUTE, registerLegacyStsRoute, type LegacyStsDeps } from '../src/legacy-sts-route.js';
import { ScriptedSts } from './scripted-sts.js';

const logger = pino({ level: 'silent' });
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
});

/** 8 kHz s16le: bytes per millisecond. */
const BYTES_PER_MS = 16;

/**
 * A gateway with only the legacy route (registered here, as app.ts will): no `sts` in the gateway's own
 * deps, so its WebSocket route stays out of the way.
 */
async function start(adapter: StsAdapter, overrides: Partial<GatewayConfig> = {}, admit?: LegacyStsDeps['admit']) {
  const config = gatewayConfig(overrides);
  const gateway = await buildGateway(config, { logger });
  const pacer = new OutboundPacer();
  const calls = new Set<CallSession>();
  registerLegacyStsRoute(gateway.app, { id: adapter.id, adapter }, {
    logger,
    metrics: gateway.metrics,
    pacer,
    config,
    admit: admit ?? (async () => undefined),
    onCall: (call) => {
      calls.add(call);
      void call.closed.then(() => calls.delete(call));
    },
  });
  await gateway.app.listen({ host: '127.0.0.1', port: 0 });
  cleanups.push(async () => {
    await Promise.all([...calls].map((call) => call.shutdown()));
    pacer.close();
    await gateway.app.close();
  });
  const { port } = gateway.app.server.address() as AddressInfo;
  const metrics = async () => (await gateway.app.inject('/metrics')).body;
  return { url: `http://127.0.0.1:${port}${LEGACY_STS_ROUTE}`, calls, metrics };
}

/** AVR Core's side of one legacy call: a chunked request body that stays open, and the response as it arrives. */
class LegacyClient {
  readonly chunks: { atMs: number; bytes: Buffer }[] = [];
  readonly response: Promise<IncomingMessage>;
  readonly ended: Promise<void>;
  private readonly request: ClientRequest;

  constructor(url: string, headers: Record<string, string> = {}) {
    this.request = httpRequest(url, { method: 'POST', headers: { 'transfer-encoding': 'chunked', ...headers } });
    this.request.on('error', () => undefined); // an aborted or refused upload is part of some tests
    this.request.flushHeaders();
    this.response = new Promise((resolve) => this.request.once('response', resolve));
    this.ended = this.response.then(
      (response) =>
        new Promise<void>((resolve) => {
          response.on('data', (bytes: Buffer) => this.chunks.push({ atMs: performance.now(), bytes }));
          response.once('end', resolve);
          response.once('close', resolve);
        }),
    );
  }

  write(bytes: Uint8Array): void {
    this.request.write(bytes);
  }

  end(): void {
    this.request.end();
  }

  abort(): void {
    this.request.destroy();
  }

  received(): Buffer {
    return Buffer.concat(this.chunks.map((chunk) => chunk.bytes));
  }

  async json(): Promise<unknown> {
    await this.ended;
    return JSON.parse(this.received().toString('utf8'));
  }

  /** Send `audio` as it would be spoken: paced at real time, in odd-sized chunks (so samples straddle chunks). */
  async stream(audio: Int16Array): Promise<void> {
    const bytes = bytesFromPcm(audio);
    const sizes = [333, 97, 1001, 161, 7];
    const started = performance.now();
    let offset = 0;
    for (let i = 0; offset < bytes.length; i++) {
      const size = Math.min(sizes[i % sizes.length] as number, bytes.length - offset);
      const dueMs = (offset + size) / BYTES_PER_MS - (performance.now() - started);
      if (dueMs > 0) await sleep(dueMs);
      this.write(bytes.subarray(offset, offset + size));
      offset += size;
    }
  }

  /** Every chunk of agent audio arrived no earlier than real time allows, give or take `leadMs` (+ one frame). */
  maxRunAheadMs(): number {
    const first = this.chunks[0];
    if (first === undefined) return 0;
    let bytes = 0;
    let worst = -Infinity;
    for (const chunk of this.chunks) {
      bytes += chunk.bytes.length;
      worst = Math.max(worst, bytes / BYTES_PER_MS - (chunk.atMs - first.atMs));
    }
    return worst;
  }
}

const ramp = (samples: number) => Int16Array.from({ length: samples }, (_, i) => (i % 2000) - 1000);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(predicate: () => boolean, timeoutMs = 5000): Promise<void> {
  const started = Date.now();
  while (!predicate()) {
    if (Date.now() - started > timeoutMs) throw new Error('condition not met in time');
    await sleep(5);
  }
}

describe('POST /speech-to-speech-stream with the loopback provider, in real time', () => {
  it('plays the caller utterance back as raw PCM, paced to the outbound lead', async () => {
    const definition = builtinRegistry().get('sts', 'loopback');
    if (definition === undefined) throw new Error('loopback provider missing from the registry');
    const leadMs = 120;
    const { url } = await start(definition.fromEnv({}, { logger }), { outboundLeadMs: leadMs });
    const greeting = readWavAs8k(fixturePath('greeting'));
    // AVR Core keeps sending (silent) audio while the agent speaks.
    const input = concatPcm(greeting, silence(5000));
    const client = new LegacyClient(url, { 'x-uuid': 'legacy-loopback' });
    const started = performance.now();
    await client.stream(input);
    client.end();
    const response = await client.response;
    await client.ended;

    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toBe('text/event-stream');
    const reply = pcmFromBytes(client.received());
    expect(reply.length % 160).toBe(0);
    expect(reply.length).toBeGreaterThan(8 * 2000); // over 2 s of agent speech
    // The reply starts once the utterance is over, and it is the utterance.
    const firstAudioMs = (client.chunks[0]?.atMs ?? 0) - started;
    expect(firstAudioMs).toBeGreaterThan((greeting.length / 8) * 0.8);
    const firstLoud = (x: Int16Array) => x.findIndex((v) => Math.abs(v) > 1000);
    const anchor = firstLoud(input) - firstLoud(reply);
    expect(bestAlignment(input, reply, anchor - 400, anchor + 400).correlation).toBeGreaterThan(0.95);
    // Streamed as it is played, never more than the lead (+ one frame) ahead; the margin absorbs event-loop
    // delays in this process (client and server share it), while an unpaced reply would be seconds ahead.
    expect(client.maxRunAheadMs()).toBeLessThanOrEqual(leadMs + 20 + 60);
  });
});

describe('POST /speech-to-speech-stream', () => {
  it('uses X-UUID as the call id, the query string as metadata, and frames odd-sized chunks exactly', async () => {
    const sts = new ScriptedSts();
    const { url } = await start(sts);
    const session = sts.nextSession();
    const client = new LegacyClient(`${url}?from=2000&token=secret`, { 'x-uuid': 'call-42', 'content-type': 'application/octet-stream' });
    const s = await session;
    expect(s.call.callId).toBe('call-42');
    expect(s.call.metadata).toEqual({ from: '2000' });
    const sent = ramp(1000);
    const bytes = bytesFromPcm(sent);
    for (const [from, to] of [[0, 1], [1, 334], [334, 431], [431, 1432], [1432, 2000]] as const) {
      client.write(bytes.subarray(from, to));
      await sleep(5);
    }
    await until(() => s.receivedSamples() === 960);
    // Whole 20 ms frames (two per message while the gateway is busy: CALLER_AUDIO_BATCH_UTILIZATION).
    expect(s.audio.every((chunk) => chunk.length > 0 && chunk.length % 160 === 0)).toBe(true);
    const received = concatPcm(...s.audio);
    expect([...received]).toEqual([...sent.subarray(0, 960)]);
    client.end();
    await client.ended;
  });

  it('makes up a call id when X-UUID is missing or malformed', async () => {
    const sts = new ScriptedSts();
    const { url } = await start(sts);
    const session = sts.nextSession();
    const client = new LegacyClient(url, { 'x-uuid': 'not a uuid; rm -rf' });
    const s = await session;
    expect(s.call.callId).toMatch(/^[0-9a-f-]{36}$/);
    client.end();
    await client.ended;
  });

  it('paces agent audio to the lead, and a barge-in stops it at once', async () => {
    const sts = new ScriptedSts();
    const leadMs = 100;
    const { url } = await start(sts, { outboundLeadMs: leadMs });
    const session = sts.nextSession();
    const client = new LegacyClient(url);
    const s = await session;
    s.emit({ type: 'audio', responseId: 'r1', samples: ramp(8000 * 3) }); // 3 s at once
    const response = await client.response;
    expect(response.statusCode).toBe(200);
    await sleep(300);
    expect(client.received().length).toBeGreaterThan(0);
    // One top-up, one chunk: AVR Core up to 1.4 plays a chunk per queue entry and pauses 10 ms after each. (A read
    // can join chunks that arrived together.)
    expect(client.chunks[0]?.bytes.length).toBeGreaterThanOrEqual((leadMs / 20) * 320);
    expect(client.maxRunAheadMs()).toBeLessThanOrEqual(leadMs + 20 + 60);
    s.emit({ type: 'speech_started' });
    await until(() => s.truncations.length === 1);
    const atBargeIn = client.received().length;
    await sleep(200);
    expect(client.received().length - atBargeIn).toBeLessThanOrEqual((leadMs + 20) * BYTES_PER_MS);
    expect(client.received().length).toBeLessThan(1000 * BYTES_PER_MS); // far from the 3 s of the cut reply
    client.end();
    await client.ended;
    expect(client.received().length % 320).toBe(0);
  });

  it('answers 502 with a JSON message when the provider fails to connect', async () => {
    const sts = new ScriptedSts({ connectError: new ProviderError('scripted', 'auth', 'invalid API key') });
    const { url, calls, metrics } = await start(sts);
    const client = new LegacyClient(url, { 'x-uuid': 'refused' });
    client.write(bytesFromPcm(ramp(160)));
    const response = await client.response;
    expect(response.statusCode).toBe(502);
    expect(response.headers['content-type']).toBe('application/json');
    expect(await client.json()).toEqual({ message: 'provider connection failed: invalid API key' });
    await until(() => calls.size === 0);
    expect(await metrics()).toMatch(/stsgate_calls_total\{provider="scripted",outcome="provider_error"\} 1/);
  });

  it('ends the call, provider session included, when the request body ends', async () => {
    const sts = new ScriptedSts();
    const { url, calls, metrics } = await start(sts);
    const session = sts.nextSession();
    const client = new LegacyClient(url);
    const s = await session;
    expect(calls.size).toBe(1);
    expect(await metrics()).toMatch(/stsgate_active_calls 1/);
    client.write(bytesFromPcm(ramp(320)));
    await until(() => s.receivedSamples() === 320);
    client.end();
    const response = await client.response;
    await client.ended;
    expect(response.statusCode).toBe(200);
    expect(s.closeCount).toBe(1);
    await until(() => calls.size === 0);
    expect(await metrics()).toMatch(/stsgate_active_calls 0/);
    expect(await metrics()).toMatch(/stsgate_calls_total\{provider="scripted",outcome="completed"\} 1/);
  });

  it('closes the provider session when the client goes away', async () => {
    const sts = new ScriptedSts();
    const { url, calls } = await start(sts);
    const session = sts.nextSession();
    const client = new LegacyClient(url);
    const s = await session;
    s.emit({ type: 'audio', responseId: 'r1', samples: ramp(8000 * 2) });
    await client.response;
    client.abort();
    await until(() => s.closeCount === 1 && calls.size === 0);
  });

  it('a shutdown before any agent audio answers 503 and closes the provider session', async () => {
    const sts = new ScriptedSts();
    const { url, calls } = await start(sts);
    const session = sts.nextSession();
    const client = new LegacyClient(url);
    const s = await session;
    await Promise.all([...calls].map((call) => call.shutdown()));
    const response = await client.response;
    expect(response.statusCode).toBe(503);
    expect(await client.json()).toEqual({ message: 'the gateway is shutting down' });
    expect(s.closeCount).toBe(1);
  });

  it('is refused by the admission check without opening a provider session', async () => {
    const sts = new ScriptedSts();
    const { url } = await start(sts, {}, async (_request, reply) => reply.code(503).send({ message: 'call limit reached (1)' }));
    const client = new LegacyClient(url);
    const response = await client.response;
    expect(response.statusCode).toBe(503);
    expect(await client.json()).toEqual({ message: 'call limit reached (1)' });
    expect(sts.sessions).toHaveLength(0);
    client.abort();
  });
});
