import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import {
  concatPcm,
  fixturePath,
  readWavAs8k,
  silence,
  simulateCall,
  startXaiRealtimeEmulator,
  type RealtimeEmulatorTiming,
  type RealtimeScript,
} from '@stsgate/testkit';
import { healthcheckPort, main } from '../src/cli-main.js';
import { buildGateway, builtinRegistry, resolveServeSetup, type Gateway } from '../src/index.js';

// `STS_PROVIDER=xai` with avr-sts-xai's variables, composed exactly as `stsgate serve` does, driven by the AVR Core call
// simulator in real time against the Realtime emulator in xAI mode (which refuses what xAI refuses, e.g. GA fields).
const API_KEY = 'xai-test-gateway-0123456789';
const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A gateway as `stsgate serve` composes it from `env`, listening on a free port; its STS URL. */
async function startGateway(env: Record<string, string>) {
  const setup = resolveServeSetup({ STS_PROVIDER: 'xai', LOG_LEVEL: 'silent', ...env }, builtinRegistry(), () => pino({ level: 'silent' }));
  const gateway: Gateway = await buildGateway(setup.config, { sts: setup.sts, logger: setup.logger, tools: setup.tools });
  await gateway.app.listen({ host: '127.0.0.1', port: 0 });
  cleanups.push(() => gateway.app.close());
  const url = `ws://127.0.0.1:${(gateway.app.server.address() as AddressInfo).port}/?from=2000&to=5001`;
  return { setup, url };
}

async function startStack(script: RealtimeScript, env: Record<string, string> = {}, timing: RealtimeEmulatorTiming = {}) {
  const emulator = await startXaiRealtimeEmulator({ apiKey: API_KEY, script, timing });
  cleanups.push(() => emulator.close());
  const instructions = 'You answer calls for ACME. The caller is {{from}}.';
  const { setup, url } = await startGateway({ XAI_API_KEY: API_KEY, XAI_REALTIME_URL: emulator.url, XAI_INSTRUCTIONS: instructions, ...env });
  return { emulator, setup, url };
}

const clientEventsOf = (events: readonly Record<string, unknown>[], type: string) => events.filter((event) => event['type'] === type);

describe('gateway + STS_PROVIDER=xai, end to end', () => {
  it('is a drop-in for avr-sts-xai: port 6041 when PORT is unset (serve and healthcheck), PORT otherwise', () => {
    const env = { STS_PROVIDER: 'xai', XAI_API_KEY: API_KEY, LOG_LEVEL: 'silent' };
    expect(resolveServeSetup(env, builtinRegistry(), () => pino({ level: 'silent' })).port).toBe(6041);
    expect(healthcheckPort({ STS_PROVIDER: 'xai' })).toBe(6041);
    expect(resolveServeSetup({ ...env, PORT: '7000' }, builtinRegistry(), () => pino({ level: 'silent' })).port).toBe(7000);
    expect(() => resolveServeSetup({ STS_PROVIDER: 'xai', LOG_LEVEL: 'silent' }, builtinRegistry(), () => pino({ level: 'silent' }))).toThrow(
      'XAI_API_KEY is required',
    );
  });

  it('speaks XAI_WELCOME_MESSAGE, answers a caller turn and a DTMF digit, relays both transcripts', async () => {
    const { emulator, setup, url } = await startStack(
      {
        transcribe: () => 'I would like to book an appointment.',
        onUserTurn: () => ({ transcript: 'Sure, for which day?', audioMs: 1200 }),
        onUserText: (text) => (text.includes('5') ? { transcript: 'You pressed five.', audioMs: 800 } : undefined),
      },
      { XAI_WELCOME_MESSAGE: 'Welcome to ACME, caller {{from}}.', XAI_VOICE: 'Ara' },
    );
    expect(setup.sts?.id).toBe('xai');
    const input = concatPcm(silence(1800), readWavAs8k(fixturePath('greeting')), silence(2500));
    const report = await simulateCall({ url, input, tailMs: 2500, dtmf: [{ atMs: 7800, digit: '5' }] });

    expect(report.errors).toEqual([]);
    expect(report.received.irregularFrames).toBe(0);
    expect(report.transcripts.map((t) => `${t.role}: ${t.text}`)).toEqual([
      'agent: Welcome to ACME, caller 2000.',
      'user: I would like to book an appointment.',
      'agent: Sure, for which day?',
      'agent: You pressed five.',
    ]);
    expect(report.heardAgentMs).toBeGreaterThan(2500);

    const connection = emulator.connections[0];
    if (connection === undefined) throw new Error('no provider connection');
    // Nothing was refused: no GA field.
    expect(connection.serverEvents.filter((event) => event.type === 'error')).toEqual([]);
    expect(connection.xaiSession).toMatchObject({
      voice: 'ara',
      instructions: 'You answer calls for ACME. The caller is 2000.',
      audio: { input: { format: { type: 'audio/pcmu' } }, output: { format: { type: 'audio/pcmu' } } },
    });
    // The welcome message is xAI's force_message; then one response.create, for the digit (the turn: server VAD).
    expect(connection.responses.map((response) => response.trigger)).toEqual(['force_message', 'user_audio', 'user_text']);
    expect(clientEventsOf(connection.clientEvents, 'response.create')).toHaveLength(1);
    // The avr_* tools are offered as function tools
    expect(connection.xaiSession?.tools.map((tool) => tool['name']).sort()).toEqual(['avr_hangup', 'avr_transfer']);
  });

  it('barge-in: AVR gets an interruption and the reply stops; xAI is told what the caller heard (conversation.item.truncate)', async () => {
    const { emulator, url } = await startStack(
      {
        onUserTurn: (turn) =>
          turn.index === 0 ? { transcript: 'Our opening hours are long to explain.', audioMs: 4000 } : { transcript: 'Sure.', audioMs: 600 },
      },
      { XAI_GREETING: 'false', XAI_BUILTIN_TOOLS: 'web_search' },
      { audioChunkMs: 100, chunkIntervalMs: 100 }, // real time: the reply is still being generated when the caller talks
    );
    const input = concatPcm(readWavAs8k(fixturePath('greeting')), silence(1500), readWavAs8k(fixturePath('question')), silence(1500));
    const report = await simulateCall({ url, input, tailMs: 2500 });

    expect(report.errors).toEqual([]);
    expect(report.received.interruptions).toBeGreaterThanOrEqual(1);
    expect(report.bargeIns[0]?.playbackStopped).toBe(true);
    const connection = emulator.connections[0];
    if (connection === undefined) throw new Error('no provider connection');
    // xAI's server VAD cancelled the reply it was still generating (the gateway sends no second cancel)
    expect(connection.responses[0]).toMatchObject({ status: 'cancelled', cancelReason: 'turn_detected' });
    expect(clientEventsOf(connection.clientEvents, 'response.cancel')).toEqual([]);
    // One truncate of the cut reply, at most the audio xAI had sent for it, accepted
    expect(connection.truncations).toHaveLength(1);
    expect(connection.truncations[0]).toMatchObject({ itemId: connection.responses[0]?.messageItemId });
    expect(connection.truncations[0]?.audioEndMs).toBeLessThanOrEqual(connection.truncations[0]?.audioSentMs ?? 0);
    expect(connection.serverEvents.filter((event) => event.type === 'conversation.item.truncated')).toHaveLength(1);
    expect(connection.serverEvents.filter((event) => event.type === 'error')).toEqual([]);
    expect(connection.xaiSession?.tools[0]).toEqual({ type: 'web_search' });
    expect(report.transcripts.filter((t) => t.role === 'agent').map((t) => t.text)).toContain('Sure.');
  });
});

describe('stsgate emulate xai', () => {
  it('serves the Realtime emulator in xAI mode and writes the variables a gateway with STS_PROVIDER=xai takes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'stsgate-emulate-xai-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'emulators.env');
    const signals = { SIGINT: new Set(process.rawListeners('SIGINT')), SIGTERM: new Set(process.rawListeners('SIGTERM')) };
    let out = '';
    const running = main(['emulate', 'xai', '--write-env', file], { env: {}, stdout: { write: (chunk: string) => (out += chunk) }, stderr: { write: () => true } });
    const started = Date.now();
    while (!existsSync(file) && Date.now() - started < 10_000) await new Promise((resolve) => setTimeout(resolve, 20));
    const env = Object.fromEntries(
      readFileSync(file, 'utf8')
        .trim()
        .split('\n')
        .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
    ) as Record<string, string>;
    expect(Object.keys(env)).toEqual(['XAI_API_KEY', 'XAI_REALTIME_URL']);
    expect(out).toContain('STS_PROVIDER=xai');

    const { url } = await startGateway(env);
    const report = await simulateCall({ url, input: silence(600), tailMs: 2500 });
    expect(report.errors).toEqual([]);
    expect(report.transcripts[0]).toMatchObject({ role: 'agent', text: 'I heard you.' });

    // Ctrl-C: the emulators stop and the command exits 0
    const added = (signal: 'SIGINT' | 'SIGTERM') => process.rawListeners(signal).filter((listener) => !signals[signal].has(listener));
    for (const listener of added('SIGTERM')) (listener as () => void)();
    for (const listener of added('SIGINT')) process.removeListener('SIGINT', listener as () => void);
    expect(await running).toBe(0);
  });
});
