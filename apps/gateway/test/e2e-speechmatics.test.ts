import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import {
  FIXTURE_TEXT,
  audibleSpan,
  concatPcm,
  fixturePath,
  flowAgentBaseFrequency,
  goertzel,
  readWavAs8k,
  silence,
  simulateCall,
  startSpeechmaticsAuthEmulator,
  startSpeechmaticsFlowEmulator,
  type SpeechmaticsFlowEmulatorOptions,
} from '@stsgate/testkit';
import { buildGateway, builtinRegistry, resolveServeSetup } from '../src/index.js';

// `STS_PROVIDER=speechmatics-flow` composed exactly as `stsgate serve` does, against the Flow and key-endpoint emulators,
// driven by the AVR Core call simulator in real time.
const API_KEY = 'sm-e2e-key-0123456789';
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startStack(flowOptions: SpeechmaticsFlowEmulatorOptions = {}, env: Record<string, string> = {}) {
  const auth = await startSpeechmaticsAuthEmulator({ apiKey: API_KEY, allowFlowKeys: true });
  cleanups.push(() => auth.close());
  const flow = await startSpeechmaticsFlowEmulator({ verifyToken: (jwt) => auth.verify(jwt, 'flow'), ...flowOptions });
  cleanups.push(() => flow.close());
  const setup = resolveServeSetup(
    {
      STS_PROVIDER: 'speechmatics-flow',
      SPEECHMATICS_API_KEY: API_KEY,
      SPEECHMATICS_FLOW_URL: flow.baseUrl,
      SPEECHMATICS_MANAGEMENT_URL: auth.baseUrl,
      SPEECHMATICS_TEMPLATE_VARIABLES: '{"caller":"{{from}}"}',
      LOG_LEVEL: 'silent',
      ...env,
    },
    builtinRegistry(),
    () => pino({ level: 'silent' }),
  );
  expect(setup.port).toBe(6040);
  const gateway = await buildGateway(setup.config, { sts: setup.sts, logger: setup.logger, tools: setup.tools });
  await gateway.app.listen({ host: '127.0.0.1', port: 0 });
  cleanups.push(() => gateway.app.close());
  const port = (gateway.app.server.address() as AddressInfo).port;
  return { flow, auth, url: (from: string) => `ws://127.0.0.1:${port}/?from=${from}` };
}

const fixture = (name: 'greeting' | 'short' | 'question') => readWavAs8k(fixturePath(name));

describe('gateway + Speechmatics Flow, end to end', () => {
  it('two concurrent calls: each hears only its own agent, and a 2 s reply plays for 2 s at 8 kHz', async () => {
    const { flow, url } = await startStack({ reply: (turn) => ({ text: `Reply to ${turn.userText}`, ms: 2000 }), bargeInMs: Infinity });
    const [a, b] = await Promise.all([
      simulateCall({ url: url('2001'), input: concatPcm(silence(300), fixture('greeting'), silence(800)), tailMs: 3000 }),
      simulateCall({ url: url('2002'), input: concatPcm(silence(300), fixture('question'), silence(800)), tailMs: 3000 }),
    ]);
    for (const report of [a, b]) {
      expect(report.errors).toEqual([]);
      expect(report.protocolProblems).toEqual([]);
      expect(report.received.irregularFrames).toBe(0);
      // 16 kHz agent audio, resampled: exactly the reply's length reaches AVR Core and is heard.
      expect(report.received.audioMs).toBe(2000);
      expect(report.heardAgentMs).toBe(2000);
      const span = audibleSpan(report.heard);
      expect(Math.abs((span.end - span.start) / 8 - 2000)).toBeLessThanOrEqual(20);
    }
    // Which Flow connection served which call: the template variable carries the caller number.
    const connectionOf = (from: string) => flow.connections.findIndex((connection) => connection.startConversation?.conversation_config.template_variables?.['caller'] === from);
    const [ca, cb] = [connectionOf('2001'), connectionOf('2002')];
    expect([ca, cb].sort()).toEqual([0, 1]);
    const [fa, fb] = [flowAgentBaseFrequency(ca), flowAgentBaseFrequency(cb)];
    expect(goertzel(a.heard, fa)).toBeGreaterThan(20 * goertzel(a.heard, fb));
    expect(goertzel(b.heard, fb)).toBeGreaterThan(20 * goertzel(b.heard, fa));
    expect(a.transcripts.map((t) => `${t.role}: ${t.text}`)).toEqual([`user: ${FIXTURE_TEXT['greeting.wav']}`, `agent: Reply to ${FIXTURE_TEXT['greeting.wav']}`]);
    expect(b.transcripts.map((t) => `${t.role}: ${t.text}`)).toEqual([`user: ${FIXTURE_TEXT['question.wav']}`, `agent: Reply to ${FIXTURE_TEXT['question.wav']}`]);
  });

  it('barge-in: Flow interrupts its reply, AVR Core gets an interruption and playback stops, then the next reply plays', async () => {
    const { flow, url } = await startStack({ reply: (turn) => (turn.index === 0 ? { text: 'Our opening hours take a while to explain.', ms: 5000 } : { text: 'Sure.', ms: 800 }) });
    const input = concatPcm(silence(300), fixture('greeting'), silence(2000), fixture('short'), silence(600));
    const report = await simulateCall({ url: url('2003'), input, tailMs: 2000 });
    expect(report.errors).toEqual([]);
    expect(report.received.interruptions).toBe(1);
    expect(report.bargeIns[0]?.playbackStopped).toBe(true);
    const connection = flow.connections[0];
    expect(connection?.responses.map((response) => response.outcome)).toEqual(['interrupted', 'completed']);
    // The caller heard part of the long reply and all of the short one.
    expect(report.heardAgentMs).toBeLessThan(5000);
    expect(report.transcripts.filter((t) => t.role === 'user').map((t) => t.text)).toEqual([FIXTURE_TEXT['greeting.wav'], FIXTURE_TEXT['short.wav']]);
    expect(report.transcripts.filter((t) => t.role === 'agent').at(-1)?.text).toBe('Sure.');
  });

  it('the agent ends the conversation: its goodbye plays to the end, then the call closes normally', async () => {
    const { flow, url } = await startStack({ greeting: { text: 'Thanks for calling, goodbye.', ms: 1200 } });
    const pending = simulateCall({ url: url('2004'), input: silence(4000), tailMs: 1000 });
    const connection = await flow.waitForConnection(0);
    await flow.waitFor(() => connection.responses[0]);
    connection.endConversation();
    const report = await pending;
    expect(report.errors).toEqual([]);
    expect(report.heardAgentMs).toBe(1200);
    expect(report.serverClosedFirst).toBe(true);
    expect(report.close.code).toBe(1000);
  });

  it('a refused API key: the call gets a clear AVR error without the key, and closes', async () => {
    const { url } = await startStack({}, { SPEECHMATICS_API_KEY: 'wrong-key-999' });
    const report = await simulateCall({ url: url('2005'), input: silence(2000), tailMs: 500 });
    expect(report.errors).toHaveLength(1);
    expect(report.errors[0]?.message).toMatch(/Speechmatics refused the API key/);
    expect(report.errors[0]?.message).not.toContain('wrong-key-999');
    expect(report.close.code).toBe(1011);
  });
});
