import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import {
  concatPcm,
  fixturePath,
  readWavAs8k,
  silence,
  simulateCall,
  startAvrAmiEmulator,
  startOpenAiRealtimeEmulator,
  type RealtimeConnectionFaults,
  type RealtimeEmulatorTiming,
  type RealtimeScript,
} from '@stsgate/testkit';
import { buildGateway, builtinRegistry, resolveServeSetup, type Gateway } from '../src/index.js';

// `STS_PROVIDER=openai OPENAI_REALTIME_URL=ws://127.0.0.1:<emulator>` exactly as `stsgate serve` composes it,
// driven by the AVR Core call simulator in real time, against the OpenAI Realtime GA emulator.
const API_KEY = 'sk-test-e2e-0123456789';
const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startStack(
  script: RealtimeScript,
  env: Record<string, string> = {},
  faults: readonly RealtimeConnectionFaults[] = [],
  timing: RealtimeEmulatorTiming = {},
) {
  const emulator = await startOpenAiRealtimeEmulator({ apiKey: API_KEY, script, faults, timing });
  cleanups.push(() => emulator.close());
  const setup = resolveServeSetup(
    {
      STS_PROVIDER: 'openai',
      OPENAI_API_KEY: API_KEY,
      OPENAI_REALTIME_URL: emulator.url,
      OPENAI_TRANSCRIPTION_MODEL: 'gpt-4o-mini-transcribe',
      OPENAI_INSTRUCTIONS: 'You answer calls for ACME. The caller is {{from}}.',
      LOG_LEVEL: 'silent',
      ...env,
    },
    builtinRegistry(),
    () => pino({ level: 'silent' }),
  );
  const gateway: Gateway = await buildGateway(setup.config, { sts: setup.sts, logger: setup.logger, tools: setup.tools });
  await gateway.app.listen({ host: '127.0.0.1', port: 0 });
  cleanups.push(() => gateway.app.close());
  const url = `ws://127.0.0.1:${(gateway.app.server.address() as AddressInfo).port}/?from=2000&to=5001`;
  return { emulator, gateway, url };
}

const clientEventsOf = (events: readonly unknown[], type: string) =>
  events.filter((event): event is Record<string, unknown> => (event as { type?: unknown }).type === type);

describe('gateway + OpenAI Realtime adapter, end to end', () => {
  it('greets, answers a caller turn and a DTMF digit, and relays transcripts', async () => {
    const { emulator, url } = await startStack(
      {
        greeting: { transcript: 'Welcome to ACME.', audioMs: 1000 },
        transcribe: () => 'I would like to book an appointment.',
        onUserTurn: () => ({ transcript: 'Sure, for which day?', audioMs: 1200 }),
        onUserText: (text) => (text.includes('5') ? { transcript: 'You pressed five.', audioMs: 800 } : undefined),
      },
      { OPENAI_TEMPERATURE: '0.7' },
    );
    const input = concatPcm(silence(1200), readWavAs8k(fixturePath('greeting')), silence(2500));
    const report = await simulateCall({ url, input, tailMs: 2500, dtmf: [{ atMs: 7600, digit: '5' }] });

    expect(report.errors).toEqual([]);
    expect(report.received.irregularFrames).toBe(0);
    expect(report.transcripts.map((t) => `${t.role}: ${t.text}`)).toEqual([
      'agent: Welcome to ACME.',
      'user: I would like to book an appointment.',
      'agent: Sure, for which day?',
      'agent: You pressed five.',
    ]);
    expect(report.responseLatenciesMs.length).toBeGreaterThanOrEqual(1);
    expect(report.heardAgentMs).toBeGreaterThan(2500);

    const connection = emulator.connections[0];
    if (connection === undefined) throw new Error('no provider connection');
    const [update] = clientEventsOf(connection.clientEvents, 'session.update');
    const session = update?.session as Record<string, unknown>;
    expect(session).not.toHaveProperty('temperature');
    expect(session.instructions).toBe('You answer calls for ACME. The caller is 2000.');
    expect(connection.session.audio.input.format).toEqual({ type: 'audio/pcmu' });
    // One greeting, one reply to the digit: never a second greeting.
    expect(clientEventsOf(connection.clientEvents, 'response.create')).toHaveLength(2);
    const digit = clientEventsOf(connection.clientEvents, 'conversation.item.create').map((e) => JSON.stringify(e.item));
    expect(digit.some((item) => item.includes('input_text') && item.includes('5'))).toBe(true);
  });

  it('on barge-in sends interruption and truncates the reply to what the caller heard', async () => {
    const { emulator, gateway, url } = await startStack(
      {
        onUserTurn: (turn) =>
          turn.index === 0 ? { transcript: 'Our opening hours are long to explain.', audioMs: 4000 } : { transcript: 'Sure.', audioMs: 600 },
      },
      { OPENAI_GREETING: 'false' },
    );
    const input = concatPcm(readWavAs8k(fixturePath('greeting')), silence(1500), readWavAs8k(fixturePath('question')));
    const report = await simulateCall({ url, input, tailMs: 2500 });

    expect(report.errors).toEqual([]);
    expect(report.received.interruptions).toBeGreaterThanOrEqual(1);
    expect(report.bargeIns[0]?.playbackStopped).toBe(true);
    const connection = emulator.connections[0];
    if (connection === undefined) throw new Error('no provider connection');
    expect(connection.truncations).toHaveLength(1);
    const [truncation] = connection.truncations;
    expect(Number.isInteger(truncation!.audioEndMs)).toBe(true);
    expect(truncation!.audioEndMs).toBeLessThan(truncation!.audioSentMs);
    // What the model keeps is what the caller heard of that reply before the interruption (one playout tick of slack).
    const heardOfReply = (report.interruptions[0]?.atMs ?? 0) - (report.firstAudioHeardAtMs ?? 0);
    expect(Math.abs(truncation!.audioEndMs - heardOfReply)).toBeLessThan(100);
    // The gateway's barge-in reaction (server audio_start_ms + prefix padding against the audio it delivered) is
    // the reaction the caller measured: speech onset to interruption.
    const metrics = await gateway.metrics.registry.metrics();
    expect(metrics).toMatch(/^stsgate_barge_in_reaction_seconds_count\{provider="openai"\} 1$/m);
    const reactionMs = Number(/^stsgate_barge_in_reaction_seconds_sum\{provider="openai"\} (\S+)$/m.exec(metrics)?.[1]) * 1000;
    expect(Math.abs(reactionMs - (report.bargeInReactionMs[0] ?? Number.NaN))).toBeLessThan(100);
  });

  it('runs a custom tool from TOOLS_DIR, then hangs up through AMI only after the goodbye was heard', async () => {
    const toolsDir = mkdtempSync(join(tmpdir(), 'stsgate-tools-'));
    cleanups.push(() => rmSync(toolsDir, { recursive: true, force: true }));
    writeFileSync(
      join(toolsDir, 'lookup_hours.js'),
      `module.exports = {
        name: 'lookup_hours',
        description: 'Opening hours for a day',
        input_schema: { type: 'object', properties: { day: { type: 'string' } }, required: ['day'] },
        handler: async (uuid, args) => 'Open 9 to 17 on ' + args.day,
      };\n`,
    );
    const ami = await startAvrAmiEmulator();
    cleanups.push(() => ami.close());
    const { emulator, url } = await startStack(
      {
        onUserTurn: () => ({ transcript: 'Let me check.', audioMs: 600, functionCall: { name: 'lookup_hours', arguments: '{"day":"saturday"}' } }),
        onToolOutput: (_callId, output) =>
          output.includes('Open 9 to 17 on saturday')
            ? { transcript: 'We are open nine to five. Goodbye!', audioMs: 1500, functionCall: { name: 'avr_hangup', arguments: '{}' } }
            : { transcript: '', audioMs: 0 },
      },
      { OPENAI_GREETING: 'false', TOOLS_DIR: toolsDir, AMI_URL: ami.url },
    );
    const uuid = 'e2e-tools-call';
    const report = await simulateCall({ url, uuid, input: readWavAs8k(fixturePath('question')), tailMs: 5000 });

    expect(report.errors).toEqual([]);
    const connection = emulator.connections[0];
    if (connection === undefined) throw new Error('no provider connection');
    const [update] = clientEventsOf(connection.clientEvents, 'session.update');
    const toolNames = ((update?.session as { tools?: { name: string }[] }).tools ?? []).map((t) => t.name).sort();
    expect(toolNames).toEqual(['avr_hangup', 'avr_transfer', 'lookup_hours']);
    const outputs = clientEventsOf(connection.clientEvents, 'conversation.item.create')
      .map((e) => e.item as { type?: string; output?: string })
      .filter((item) => item.type === 'function_call_output');
    expect(outputs[0]?.output).toBe('Open 9 to 17 on saturday');
    expect(outputs[1]?.output).toContain(`Call with UUID ${uuid} hangup`);

    const hangups = ami.requests.filter((r) => r.path === '/hangup');
    expect(hangups).toHaveLength(1);
    expect(hangups[0]?.body).toEqual({ uuid });
    // The goodbye is the last agent audio before the hangup: it had been fully heard when AMI was called.
    const lastHeardTick = lastNonSilentTick(report.heard);
    const goodbyeHeardAt = Date.parse(report.startedAt) + (lastHeardTick + 1) * 20;
    expect(hangups[0]!.receivedAt).toBeGreaterThanOrEqual(goodbyeHeardAt - 40);
  });
});

describe('gateway + OpenAI Realtime adapter: real-world fidelity, end to end', () => {
  it("OPENAI_TURN_DETECTION=none: the gateway's Silero VAD ends the caller's turn; the agent answers and can be interrupted", async () => {
    const { emulator, url } = await startStack(
      {
        greeting: { transcript: 'Welcome to ACME, this greeting is long enough to be talked over by the caller.', audioMs: 6000 },
        transcribe: ({ index }) => (index === 0 ? 'Hello there.' : 'What time do you open?'),
        onUserTurn: (turn) => ({ transcript: turn.index === 0 ? 'Hi, how can I help?' : 'We open at nine.', audioMs: 1200 }),
      },
      { OPENAI_TURN_DETECTION: 'none' },
      [],
      { audioChunkMs: 100, chunkIntervalMs: 100 }, // real time: the greeting is still being generated when the caller talks
    );
    // the caller talks over the greeting, then asks a question in the pause after the answer
    const input = concatPcm(silence(1500), readWavAs8k(fixturePath('greeting')), silence(3500), readWavAs8k(fixturePath('question')), silence(1500));
    const report = await simulateCall({ url, input, tailMs: 3000 });

    expect(report.errors).toEqual([]);
    const connection = emulator.connections[0];
    if (connection === undefined) throw new Error('no provider connection');
    expect(connection.session.audio.input.turn_detection).toBeNull();
    // barge-in on the greeting: interruption for AVR, response.cancel for the provider, a truncate of what was heard
    expect(report.received.interruptions).toBeGreaterThanOrEqual(1);
    expect(clientEventsOf(connection.clientEvents, 'response.cancel').length).toBeGreaterThanOrEqual(1);
    expect(connection.truncations.length).toBeGreaterThanOrEqual(1);
    // both turns were committed by the gateway and answered
    expect(clientEventsOf(connection.clientEvents, 'input_audio_buffer.commit').length).toBeGreaterThanOrEqual(2);
    expect(report.transcripts.filter((t) => t.role === 'agent').map((t) => t.text)).toEqual(
      expect.arrayContaining(['Hi, how can I help?', 'We open at nine.']),
    );
    expect(connection.serverEvents.filter((e) => e.type === 'error')).toEqual([]);
  });

  it('a barge-in during tool-argument streaming runs no tool', async () => {
    const ami = await startAvrAmiEmulator();
    cleanups.push(() => ami.close());
    const { emulator, url } = await startStack(
      { onUserTurn: () => ({ transcript: '', functionCall: { name: 'avr_hangup', arguments: '{"reason":"the caller said goodbye"}' } }) },
      { OPENAI_GREETING: 'false', AMI_URL: ami.url },
      [{ faults: [{ action: { type: 'cancel_response', reason: 'turn_detected' }, when: { on: 'function_call_arguments', response: 1, delta: 2 } }] }],
    );
    const report = await simulateCall({ url, input: concatPcm(readWavAs8k(fixturePath('question')), silence(500)), tailMs: 2000 });

    expect(report.errors).toEqual([]);
    const connection = emulator.connections[0];
    if (connection === undefined) throw new Error('no provider connection');
    expect(connection.responses[0]?.status).toBe('cancelled');
    const outputs = clientEventsOf(connection.clientEvents, 'conversation.item.create').filter((e) => (e.item as { type?: string }).type === 'function_call_output');
    expect(outputs).toEqual([]);
    expect(ami.requests).toEqual([]);
  });

  it('OPENAI_WELCOME_MESSAGE is the first thing the caller hears, asked for as a verbatim response', async () => {
    const { emulator, url } = await startStack(
      { greeting: { transcript: 'Thanks for calling ACME, caller 2000.', audioMs: 1500 } },
      { OPENAI_WELCOME_MESSAGE: 'Thanks for calling ACME, caller {{from}}.' },
    );
    const report = await simulateCall({ url, input: silence(500), tailMs: 2500 });

    expect(report.errors).toEqual([]);
    expect(report.transcripts[0]).toMatchObject({ role: 'agent', text: 'Thanks for calling ACME, caller 2000.' });
    const connection = emulator.connections[0];
    if (connection === undefined) throw new Error('no provider connection');
    const [create] = clientEventsOf(connection.clientEvents, 'response.create');
    const response = create?.response as { instructions?: string; input?: unknown[]; tool_choice?: string } | undefined;
    expect(response?.instructions).toContain('Thanks for calling ACME, caller 2000.');
    expect(response).toMatchObject({ input: [], tool_choice: 'none' });
  });
});

describe('provider faults, end to end', () => {
  it('a bad API key becomes a clear AVR error and a clean close, without leaking the key', async () => {
    const { url } = await startStack({}, { OPENAI_API_KEY: 'sk-wrong-key-000000000000' });
    const report = await simulateCall({ url, input: silence(400), tailMs: 1500 });
    expect(report.errors).toHaveLength(1);
    expect(report.errors[0]?.message).toMatch(/^provider connection failed: .*(api key|API key|invalid_api_key)/i);
    expect(report.errors[0]?.message).not.toContain('sk-wrong-key');
    expect(report.serverClosedFirst).toBe(true);
    expect(report.close.code).toBe(1011);
  });

  it('a rate-limited provider (HTTP 429 at every attempt) ends the call with a clear error after the retries', async () => {
    const { emulator, url } = await startStack({}, {}, [{ rejectUpgrade: { status: 429 }, connections: Infinity }]);
    // Each retry waits at least the server's retry-after (1 s): four of them take 4-5.2 s.
    const report = await simulateCall({ url, input: silence(400), tailMs: 8000 });
    expect(report.errors[0]?.message).toMatch(/rate limit/i);
    expect(report.close.code).toBe(1011);
    expect(emulator.upgrades.length).toBeGreaterThan(1); // it retried before giving up
  });

  it('a socket dropped mid-greeting is reconnected: configuration restored, no second greeting, the call goes on', async () => {
    const { emulator, url } = await startStack(
      {
        greeting: { transcript: 'Welcome to ACME, how can I help you today?', audioMs: 2000 },
        transcribe: () => 'Book me in.',
        onUserTurn: () => ({ transcript: 'Done, see you then.', audioMs: 1000 }),
      },
      {},
      [{ faults: [{ action: { type: 'terminate' }, when: { on: 'response_audio', response: 1, chunk: 5 } }] }],
    );
    const input = concatPcm(silence(2500), readWavAs8k(fixturePath('greeting')));
    const report = await simulateCall({ url, input, tailMs: 3000 });

    expect(report.errors).toEqual([]);
    expect(report.serverClosedFirst).toBe(false);
    expect(emulator.connections).toHaveLength(2);
    const [first, second] = emulator.connections;
    const updateOf = (c: typeof first) => clientEventsOf(c!.clientEvents, 'session.update')[0]?.session;
    expect(updateOf(second)).toEqual(updateOf(first));
    expect(clientEventsOf(second!.clientEvents, 'response.create')).toHaveLength(0);
    expect(report.transcripts.map((t) => t.text)).toContain('Done, see you then.');
  });
});

function lastNonSilentTick(heard: Int16Array): number {
  for (let tick = Math.floor(heard.length / 160) - 1; tick >= 0; tick--) {
    for (let i = tick * 160; i < (tick + 1) * 160; i++) if (heard[i] !== 0) return tick;
  }
  return -1;
}
