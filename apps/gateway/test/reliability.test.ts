import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type AddressInfo } from 'node:net';
import pino from 'pino';
import { WebSocket, type WebSocket as ServerSocket } from 'ws';
import type { StsAdapter, StsSession } from '@stsgate/core';
import {
  echoCall,
  fixturePath,
  floodRawFrames,
  floodWebSocket,
  hangingRequest,
  memoryLogger,
  readWavAs8k,
  startSonioxSttEmulator,
  startSonioxTtsEmulator,
  tricklePosts,
  type LogLine,
} from '@stsgate/testkit';
import { buildGateway, builtinRegistry, gatewayConfig, resolveServeSetup, type Gateway, type GatewayConfig } from '../src/index.js';
import { main } from '../src/cli-main.js';
import { AvrRecorder } from './ws-client.js';

// Each attack runs from one connection at a small scale while a normal call goes on: the normal call must still hear its
// whole echo, and what the attacker can make the gateway hold (queued digits, buffered replies, log lines) stays bounded.
// The 5 s floods with RSS and /health latency are in the bench (`pnpm bench -- --only=reliability`).

const TOKEN = 'reliability-token-0123456789';
const speech = readWavAs8k(fixturePath('short'));
/** Lifts the message-rate budget, so that a flood reaches the budget under test. */
const unlimitedRate = (limits: Partial<GatewayConfig['callLimits']> = {}): Partial<GatewayConfig> => ({
  callLimits: { ...gatewayConfig().callLimits, maxMessagesPerSecond: 100_000, ...limits },
});
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
});

/** The loopback adapter, with a count of the digits that reached it. */
function countingLoopback(): { adapter: StsAdapter; digits: () => number } {
  const definition = builtinRegistry().get('sts', 'loopback');
  if (definition === undefined) throw new Error('loopback provider missing from the registry');
  const inner = definition.fromEnv({}, { logger: pino({ level: 'silent' }) });
  let digits = 0;
  const adapter: StsAdapter = {
    id: inner.id,
    capabilities: inner.capabilities,
    async connect(context) {
      const session = await inner.connect(context);
      const counted: StsSession = Object.create(session) as StsSession;
      counted.sendDtmf = (digit: string) => {
        digits++;
        session.sendDtmf(digit);
      };
      return counted;
    },
  };
  return { adapter, digits: () => digits };
}

async function startLoopbackGateway(overrides: Partial<GatewayConfig> = {}, logger = pino({ level: 'silent' })) {
  const loopback = countingLoopback();
  const gateway = await buildGateway(gatewayConfig(overrides), { sts: { id: 'loopback', adapter: loopback.adapter }, logger });
  await gateway.app.listen({ host: '127.0.0.1', port: 0 });
  cleanups.push(() => gateway.app.close());
  const port = (gateway.app.server.address() as AddressInfo).port;
  return { gateway, url: `ws://127.0.0.1:${port}/`, base: `http://127.0.0.1:${port}`, digits: loopback.digits };
}

/** Runs `attack` while a normal call speaks; the normal call must hear its whole echo, without errors. */
async function withNormalCall<T>(url: string, attack: () => Promise<T>): Promise<T> {
  const [normal, result] = await Promise.all([echoCall(url, { uuid: 'normal-call', speech }), attack()]);
  expect(normal.errors).toEqual([]);
  expect(normal.complete, `echo ${normal.agentAudioMs} ms of ${normal.expectedMs} ms`).toBe(true);
  return result;
}

async function metric(gateway: Gateway, name: string, labels: Record<string, string> = {}): Promise<number> {
  const found = (await gateway.metrics.registry.getSingleMetric(name)?.get())?.values ?? [];
  return found.filter((v) => Object.entries(labels).every(([k, value]) => v.labels[k] === value)).reduce((sum, v) => sum + v.value, 0);
}

const warnOrWorse = (lines: LogLine[]) => lines.filter((l) => l.level >= 40);

describe('one hostile client cannot hurt another call', () => {
  it('a DTMF flood: digits past 10/s are dropped before the provider, with one log line; the other call is unaffected', async () => {
    const { logger, lines } = memoryLogger('info');
    const { gateway, url, digits } = await startLoopbackGateway(unlimitedRate(), logger);
    const flood = await withNormalCall(url, () =>
      floodWebSocket(url, { uuid: 'dtmf-flood', message: JSON.stringify({ type: 'dtmf_digit', digit: '5' }), durationMs: 1500 }),
    );
    expect(flood.sent).toBeGreaterThan(2000);
    // A burst of 20, then 10 per second: ~35 in 1.5 s, whatever the flood.
    expect(digits()).toBeLessThanOrEqual(40);
    expect(await metric(gateway, 'stsgate_dtmf_dropped_total')).toBe(flood.sent - digits());
    expect(lines.filter((l) => String(l.msg).includes('DTMF digits per second'))).toHaveLength(1);
  });

  it('a flood of 1-byte invalid messages: at most 10 errors back, then close 1008; a few warn lines, no stack', async () => {
    const { logger, lines } = memoryLogger('info');
    const { gateway, url } = await startLoopbackGateway({}, logger);
    const flood = await withNormalCall(url, () => floodWebSocket(url, { uuid: 'junk-flood', message: 'x', durationMs: 1500 }));
    expect(flood.closedBy).toBe('server');
    expect(flood.closeCode).toBe(1008);
    expect(flood.errorMessages.length).toBeLessThanOrEqual(11);
    expect(flood.errorMessages.at(-1)).toBe('more than 10 malformed messages: closing the call');
    expect(await metric(gateway, 'stsgate_policy_closes_total', { kind: 'protocol_errors' })).toBe(1);
    const fromFlood = warnOrWorse(lines).filter((l) => l.callId === 'junk-flood');
    expect(fromFlood.length).toBeLessThanOrEqual(7);
    expect(warnOrWorse(lines).filter((l) => l.level >= 50)).toEqual([]);
  });

  it('a flood of valid audio messages far above real time: close 1008 for the message rate', async () => {
    const { gateway, url } = await startLoopbackGateway();
    const frame = JSON.stringify({ type: 'audio', audio: Buffer.alloc(320).toString('base64') });
    const flood = await withNormalCall(url, () => floodWebSocket(url, { uuid: 'audio-flood', message: frame, durationMs: 1500 }));
    expect(flood.closedBy).toBe('server');
    expect(flood.closeCode).toBe(1008);
    expect(flood.errorMessages).toEqual(['more than 200 messages per second: closing the call']);
    expect(await metric(gateway, 'stsgate_policy_closes_total', { kind: 'message_rate' })).toBe(1);
  });

  it.each(['unmasked', 'reserved-bits', 'bad-opcode', 'invalid-utf8'] as const)(
    'raw frame abuse (%s): the connection is dropped, one warn line without a stack, nothing at error level',
    async (kind) => {
      const { logger, lines } = memoryLogger('info');
      const { url } = await startLoopbackGateway({}, logger);
      const flood = await withNormalCall(url, () => floodRawFrames(url, { kind, durationMs: 500, uuid: `raw-${kind}` }));
      expect(flood.socketClosed).toBe(true);
      const problems = warnOrWorse(lines);
      expect(problems.filter((l) => l.level >= 50)).toEqual([]);
      expect(problems.filter((l) => l.msg === 'call socket error')).toHaveLength(1);
      expect(JSON.stringify(problems)).not.toContain('stack');
    },
  );

  it('a client that does not read: error replies stop at the backlog cap instead of piling up in the gateway', async () => {
    const { gateway, url } = await startLoopbackGateway(unlimitedRate({ maxProtocolErrors: 1_000_000 }));
    const serverBacklog = () => {
      const { clients } = (gateway.app as unknown as { websocketServer: { clients: Set<ServerSocket> } }).websocketServer;
      return Math.max(0, ...[...clients].map((client) => client.bufferedAmount));
    };
    // Flood 1-byte messages without reading the replies until the kernel's socket buffers (a few MB on loopback, more
    // or less quickly filled depending on the machine's load) are full and the gateway's own buffer reaches its cap,
    // then one more second: the gateway's buffer must stay at the cap (before: it grew by megabytes with the flood).
    const deaf = new WebSocket(url, { perMessageDeflate: false });
    await new Promise((resolve) => deaf.once('open', resolve));
    deaf.send(JSON.stringify({ type: 'init', uuid: 'deaf' }));
    deaf.pause();
    let worstBacklog = 0;
    let capReachedAt: number | undefined;
    const started = performance.now();
    await withNormalCall(url, async () => {
      while (performance.now() - started < 30_000 && (capReachedAt === undefined || performance.now() - capReachedAt < 1000)) {
        if (deaf.bufferedAmount < 1024 * 1024) for (let i = 0; i < 200; i++) deaf.send('x');
        await new Promise((resolve) => setTimeout(resolve, 1));
        worstBacklog = Math.max(worstBacklog, serverBacklog());
        if (capReachedAt === undefined && worstBacklog > 60 * 1024) capReachedAt = performance.now();
      }
    });
    deaf.terminate();
    expect(capReachedAt, 'the gateway buffer never reached the cap within 30 s').toBeDefined();
    // The 64 KB cap plus the one reply that crossed it.
    expect(worstBacklog).toBeLessThan(80 * 1024);
  });

  it('a call that goes silent after init is closed at CALL_IDLE_TIMEOUT_MS with a clear reason, freeing its slot', async () => {
    const { gateway, url } = await startLoopbackGateway({ callLimits: { ...gatewayConfig().callLimits, idleTimeoutMs: 1000 } });
    const socket = new WebSocket(url);
    await new Promise((resolve) => socket.once('open', resolve));
    const silent = new AvrRecorder(socket);
    silent.send({ type: 'init', uuid: 'silent' });
    await silent.until(() => silent.closeCode !== undefined);
    expect(silent.closeCode).toBe(1001);
    expect(silent.errors()).toEqual(['no message from AVR Core for 1 s: closing the call']);
    expect(gateway.calls.size).toBe(0);
    expect(await metric(gateway, 'stsgate_calls_total', { outcome: 'idle_timeout' })).toBe(1);
  });

  it('accepts the Bearer scheme in any case (RFC 7235)', async () => {
    const { url } = await startLoopbackGateway({ authToken: TOKEN });
    const schemes = ['Bearer', 'bearer', 'BEARER'];
    const calls = await Promise.all(schemes.map((scheme) => echoCall(url, { uuid: `auth-${scheme}`, speech, headers: { authorization: `${scheme} ${TOKEN}` } })));
    for (const call of calls) {
      expect(call.errors).toEqual([]);
      expect(call.complete).toBe(true);
    }
    const refused = await floodWebSocket(url, { uuid: 'x', message: 'x', maxMessages: 1, durationMs: 1000, headers: { authorization: `Basic ${TOKEN}` } });
    expect(refused.transportError).toMatch(/401/);
  });
});

describe('HTTP routes: auth first, bounded bodies, and shutdown ends them', () => {
  async function startHttpGateway(overrides: Partial<GatewayConfig>) {
    const key = 'soniox-test-key';
    const stt = await startSonioxSttEmulator({ apiKey: key });
    const tts = await startSonioxTtsEmulator({ apiKey: key });
    cleanups.push(() => stt.close(), () => tts.close());
    const setup = resolveServeSetup(
      { SONIOX_API_KEY: key, SONIOX_WEBSOCKET_URL: stt.url, SONIOX_TTS_URL: tts.url, ASR_PROVIDER: 'soniox', TTS_PROVIDER: 'soniox', STS_PROVIDER: 'loopback' },
      builtinRegistry(),
      () => pino({ level: 'silent' }),
    );
    const gateway = await buildGateway({ ...setup.config, ...overrides }, { logger: setup.logger, sts: setup.sts, asr: setup.asr, tts: setup.tts });
    await gateway.app.listen({ host: '127.0.0.1', port: 0 });
    cleanups.push(() => gateway.app.close());
    return { gateway, base: `http://127.0.0.1:${(gateway.app.server.address() as AddressInfo).port}` };
  }

  it('an unauthenticated TTS request is refused with 401 before its body is read, and its connection closed', async () => {
    const { base } = await startHttpGateway({ authToken: TOKEN });
    const report = await tricklePosts(base, { path: '/text-to-speech-stream', count: 200, holdMs: 3000, bytesEveryMs: 200 });
    expect(report.statuses).toEqual({ 401: 200 });
    expect(report.stillOpenAtHold).toBe(0);
  });

  it('an authorised TTS body that trickles is answered 408 at HTTP_BODY_TIMEOUT_MS; an idle ASR stream is ended', async () => {
    const { base } = await startHttpGateway({ authToken: TOKEN, httpBodyTimeoutMs: 300, httpStreamIdleTimeoutMs: 1000 });
    const headers = { authorization: `Bearer ${TOKEN}` };
    const report = await tricklePosts(base, { path: '/text-to-speech-stream', count: 20, holdMs: 3000, bytesEveryMs: 50, headers });
    expect(report.statuses).toEqual({ 408: 20 });
    const asr = hangingRequest(base, { path: '/speech-to-text-stream', headers, contentType: 'application/octet-stream' });
    expect((await asr.closed).status).toBe(408);
  });

  it('shutdown ends at the grace deadline although request bodies never complete', async () => {
    const { gateway, base } = await startHttpGateway({ authToken: TOKEN });
    const headers = { authorization: `Bearer ${TOKEN}` };
    const tts = hangingRequest(base, { path: '/text-to-speech-stream', headers });
    const asr = hangingRequest(base, { path: '/speech-to-text-stream', headers, contentType: 'application/octet-stream' });
    await new Promise((resolve) => setTimeout(resolve, 200));
    // Before: the open bodies kept the server from closing, and this never resolved.
    await gateway.shutdown(300);
    await Promise.all([tts.closed, asr.closed]);
  });

  it('stsgate serve returns once SIGTERM\'s shutdown is over, with calls in progress and a body that never completes', async () => {
    const port = await new Promise<number>((resolve) => {
      const probe = createServer();
      probe.listen(0, '127.0.0.1', () => {
        const { port: free } = probe.address() as AddressInfo;
        probe.close(() => resolve(free));
      });
    });
    const env = { PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'silent', SHUTDOWN_GRACE_MS: '300', TTS_PROVIDER: 'soniox', SONIOX_API_KEY: 'k', STS_PROVIDER: 'loopback' };
    const none = { write: () => undefined };
    const serving = main(['serve'], { env, stdout: none, stderr: none });
    const base = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 100 && !(await fetch(`${base}/health`).then((r) => r.ok, () => false)); i++) await new Promise((r) => setTimeout(r, 50));
    const hanging = hangingRequest(base, { path: '/text-to-speech-stream' });
    const calls = Array.from({ length: 5 }, (_, i) => echoCall(`ws://127.0.0.1:${port}/`, { uuid: `in-progress-${i}`, speech, trailingSilenceMs: 5000 }));
    await new Promise((resolve) => setTimeout(resolve, 300));
    process.emit('SIGTERM', 'SIGTERM');
    expect(await serving).toBe(0);
    for (const call of await Promise.all(calls)) expect(call.closeCode).toBe(1001);
    await hanging.closed;
  });
});
