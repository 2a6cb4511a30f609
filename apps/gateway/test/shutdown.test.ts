import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import { WebSocket } from 'ws';
import type { AddressInfo } from 'node:net';
import { buildGateway, gatewayConfig, serve, type Gateway } from '../src/index.js';
import { AvrRecorder } from './ws-client.js';
import { ScriptedSts } from './scripted-sts.js';

const logger = pino({ level: 'silent' });
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
});

async function listening(gateway: Gateway): Promise<string> {
  await gateway.app.listen({ host: '127.0.0.1', port: 0 });
  cleanups.push(() => gateway.app.close());
  return `127.0.0.1:${(gateway.app.server.address() as AddressInfo).port}`;
}

async function openCall(address: string, uuid: string): Promise<AvrRecorder> {
  const socket = new WebSocket(`ws://${address}/`);
  await new Promise((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  const recorder = new AvrRecorder(socket);
  recorder.send({ type: 'init', uuid });
  return recorder;
}

function upgradeStatus(address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`ws://${address}/`);
    socket.once('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0));
    socket.once('open', () => reject(new Error('upgrade unexpectedly accepted')));
    socket.once('error', () => undefined);
  });
}

describe('graceful shutdown', () => {
  it('stops accepting calls and waits for calls in progress to finish', async () => {
    const sts = new ScriptedSts();
    const gateway = await buildGateway(gatewayConfig(), { sts: { id: 'scripted', adapter: sts }, logger });
    const address = await listening(gateway);
    const session = sts.nextSession();
    const call = await openCall(address, 'in-progress');
    const s = await session;

    let finished = false;
    const done = gateway.shutdown(10_000).then(() => (finished = true));
    expect(await upgradeStatus(address)).toBe(503);
    expect((await fetch(`http://${address}/health`)).status).toBe(503);

    // The call in progress still works while the gateway drains.
    s.emit({ type: 'transcript', role: 'agent', text: 'still here', final: true });
    await call.until(() => call.of('transcript').length === 1);
    expect(finished).toBe(false);

    call.socket.close();
    await done;
    expect(s.closeCount).toBe(1);
    expect(call.errors()).toEqual([]);
  });

  it('closes calls still running at the deadline with an error and code 1001', async () => {
    const sts = new ScriptedSts();
    const gateway = await buildGateway(gatewayConfig(), { sts: { id: 'scripted', adapter: sts }, logger });
    const address = await listening(gateway);
    const session = sts.nextSession();
    const call = await openCall(address, 'too-long');
    const s = await session;
    await gateway.shutdown(100);
    await call.until(() => call.closeCode !== undefined);
    expect(call.errors()).toEqual(['the gateway is shutting down']);
    expect(call.closeCode).toBe(1001);
    expect(s.closeCount).toBe(1);
    expect(gateway.calls.size).toBe(0);
  });

  it('drains on SIGTERM when run by serve(), and a second signal cuts the grace period short', async () => {
    const sts = new ScriptedSts();
    const listenersBefore = process.listenerCount('SIGTERM');
    const gateway = await serve({
      config: gatewayConfig({ host: '127.0.0.1', shutdownGraceMs: 60_000 }),
      port: 0,
      sts: { id: 'scripted', adapter: sts },
      logger,
      asr: undefined,
      llm: undefined,
      tts: undefined,
      tools: undefined,
    });
    cleanups.push(() => gateway.app.close());
    const address = `127.0.0.1:${(gateway.app.server.address() as AddressInfo).port}`;
    const session = sts.nextSession();
    const call = await openCall(address, 'signalled');
    await session;
    process.emit('SIGTERM', 'SIGTERM');
    expect(await upgradeStatus(address)).toBe(503);
    expect(call.closeCode).toBeUndefined();
    process.emit('SIGTERM', 'SIGTERM');
    await call.until(() => call.closeCode !== undefined);
    expect(call.closeCode).toBe(1001);
    await until(() => process.listenerCount('SIGTERM') === listenersBefore);
  });
});

async function until(predicate: () => boolean, timeoutMs = 5000): Promise<void> {
  const started = Date.now();
  while (!predicate()) {
    if (Date.now() - started > timeoutMs) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
