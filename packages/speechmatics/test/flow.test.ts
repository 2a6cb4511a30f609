import { afterEach, describe, expect, test, vi } from 'vitest';
import type { StsEvent, StsSession, ToolSpec } from '@stsgate/core';
import { EventLog, FIXTURE_TEXT, concatPcm, flowAgentBaseFrequency, goertzel, silence, startSpeechmaticsAuthEmulator, startSpeechmaticsFlowEmulator } from '@stsgate/testkit';
import type { SpeechmaticsAuthEmulator, SpeechmaticsFlowEmulator, SpeechmaticsFlowEmulatorOptions } from '@stsgate/testkit';
import { TemporaryKeys, createSpeechmaticsFlow, defineSpeechmaticsFlow } from '../src/index.js';
import type { SpeechmaticsFlowOptions } from '../src/index.js';
import { callContext, frames, memoryLogger, sleep, spoken } from './helpers.js';

const KEY = 'sm-flow-test-key-321';
const FAST_RETRY = { maxAttempts: 3, firstDelayMs: 0, baseDelayMs: 10, maxDelayMs: 20, jitter: 0 };
const TRANSFER: ToolSpec = {
  name: 'avr_transfer',
  description: 'Transfer the call to an extension',
  parameters: { type: 'object', properties: { extension: { type: 'string', description: 'the extension' } }, required: ['extension'] },
};

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Stack {
  flow: SpeechmaticsFlowEmulator;
  auth: SpeechmaticsAuthEmulator;
  keys: TemporaryKeys;
}

async function stack(flowOptions: SpeechmaticsFlowEmulatorOptions = {}): Promise<Stack> {
  const auth = await startSpeechmaticsAuthEmulator({ apiKey: KEY, allowFlowKeys: true });
  cleanups.push(() => auth.close());
  const flow = await startSpeechmaticsFlowEmulator({ verifyToken: (jwt) => auth.verify(jwt, 'flow'), ...flowOptions });
  cleanups.push(() => flow.close());
  return { flow, auth, keys: new TemporaryKeys({ apiKey: KEY, managementUrl: auth.baseUrl }) };
}

async function open(s: Stack, options: Partial<SpeechmaticsFlowOptions> = {}, tools: readonly ToolSpec[] = [], logger = memoryLogger()) {
  const adapter = createSpeechmaticsFlow({ apiKey: KEY, url: s.flow.baseUrl, keys: s.keys, reconnect: FAST_RETRY, pingIntervalMs: 0, ...options });
  const session = await adapter.connect(callContext({ logger: logger.logger, tools }));
  cleanups.push(() => session.close());
  return { session, log: new EventLog<StsEvent>(session.events), lines: logger.lines };
}

function say(session: StsSession, samples: Int16Array): void {
  for (const frame of frames(samples)) session.sendAudio(frame);
}

/** Sends `samples` in 20 ms frames at real-time pace. */
async function sayRealtime(session: StsSession, samples: Int16Array): Promise<void> {
  const started = performance.now();
  let sentMs = 0;
  for (const frame of frames(samples)) {
    session.sendAudio(frame);
    sentMs += 20;
    const ahead = started + sentMs - performance.now();
    if (ahead > 0) await sleep(ahead);
  }
}

function audioOf(log: EventLog<StsEvent>, responseId?: string): Int16Array {
  return concatPcm(...log.of('audio').filter((event) => responseId === undefined || event.responseId === responseId).map((event) => event.samples));
}

const replyDone = (log: EventLog<StsEvent>, count = 1) => log.until(() => (log.of('response_done').length >= count ? log.of('response_done') : undefined), `${count} reply`);
/** The agent transcript comes right after a reply's response_done. */
const agentSaid = (log: EventLog<StsEvent>, count = 1) =>
  log.until(() => {
    const said = log.of('transcript').filter((event) => event.role === 'agent' && event.final);
    return said.length >= count ? said : undefined;
  }, `${count} agent transcript`);

describe('Speechmatics Flow against the emulator', () => {
  test('a turn: temporary key, StartConversation, user and agent transcripts, 16 kHz reply of the exact length, every frame acked', async () => {
    const s = await stack({ pacing: 8 });
    const { session, log } = await open(s, { templateId: 'agent-1:latest', templateVariables: { persona: 'Anna at ACME' } }, [TRANSFER]);
    expect(session.outputSampleRate).toBe(16000);
    expect(session.inputSampleRate).toBe(8000);
    say(session, spoken('greeting'));
    const [done] = await replyDone(log);
    await agentSaid(log);
    const connection = s.flow.connections[0];
    expect(s.auth.requests).toHaveLength(1);
    expect(s.auth.requests[0]?.type).toBe('flow');
    expect(connection?.authVia).toBe('jwt');
    expect(connection?.query['sm-app']).toBe('stsgate');
    expect(connection?.startConversation).toMatchObject({
      conversation_config: { template_id: 'agent-1:latest', template_variables: { persona: 'Anna at ACME' } },
      audio_format: { type: 'raw', encoding: 'pcm_s16le', sample_rate: 8000 },
      tools: [{ type: 'function', function: { name: 'avr_transfer', parameters: { properties: { extension: { type: 'string' } }, required: ['extension'] } } }],
    });
    expect(Object.keys(connection?.startConversation?.conversation_config.template_variables ?? {})).toContain('timezone');
    // The reply is 1500 ms at 16 kHz: exactly 24000 samples, all under one reply id.
    expect(audioOf(log, done?.responseId).length).toBe(1500 * 16);
    expect(audioOf(log).length).toBe(1500 * 16);
    const transcripts = log.of('transcript').filter((event) => event.final);
    expect(transcripts.map((event) => `${event.role}: ${event.text}`)).toEqual([
      `user: ${FIXTURE_TEXT['greeting.wav']}`,
      `agent: Reply 1 to: ${FIXTURE_TEXT['greeting.wav']}`,
    ]);
    // The user transcript comes before the reply's audio.
    expect(log.all.findIndex((event) => event.type === 'transcript')).toBeLessThan(log.all.findIndex((event) => event.type === 'audio'));
    await s.flow.waitFor(() => connection?.audioAcks.length === connection?.agentFramesSent);
    expect(connection?.ackIssues).toEqual([]);
    expect(log.of('error')).toEqual([]);
  });

  test('one temporary key serves consecutive calls; a refused key is replaced', async () => {
    const s = await stack();
    await open(s);
    await open(s);
    expect(s.auth.requests).toHaveLength(1);
    expect(s.flow.connections.map((connection) => connection.jwt)).toEqual([s.auth.issued[0]?.token, s.auth.issued[0]?.token]);
  });

  test('barge-in: Flow interrupts its reply, the host hears interrupted then response_done, and no stale audio follows', async () => {
    const s = await stack({ reply: (turn) => ({ text: `A long answer number ${String(turn.index + 1)} that goes on and on`, ms: 4000 }) });
    const { session, log } = await open(s);
    say(session, spoken('greeting', 800));
    const first = await log.until(() => log.of('audio')[0], 'the reply starts');
    await sleep(600);
    await sayRealtime(session, spoken('short', 900));
    await log.until(() => log.of('interrupted')[0], 'an interruption');
    const interruptedAt = log.all.findIndex((event) => event.type === 'interrupted');
    expect(log.all[interruptedAt]).toEqual({ type: 'interrupted', responseId: first.responseId });
    expect(log.all[interruptedAt + 1]).toEqual({ type: 'response_done', responseId: first.responseId });
    const agentText = log.all.slice(interruptedAt).find((event) => event.type === 'transcript' && event.role === 'agent');
    expect(agentText).toMatchObject({ role: 'agent', final: true });
    expect((agentText as { text: string }).text.length).toBeLessThan('A long answer number 1 that goes on and on'.length);
    // The caller's words become the next turn, answered under a new reply id.
    await replyDone(log, 2);
    expect(log.all.slice(interruptedAt + 2).filter((event) => event.type === 'audio' && event.responseId === first.responseId)).toEqual([]);
    expect(s.flow.connections[0]?.responses[0]?.outcome).toBe('interrupted');
  });

  test('tools: ToolInvoke becomes tool_call; the result goes back as ToolResult and shapes the reply', async () => {
    const s = await stack({ pacing: 8, toolCalls: [{ turn: 0, name: 'avr_transfer', arguments: { extension: '200' }, id: 'call_7' }] });
    const { session, log } = await open(s, {}, [TRANSFER]);
    say(session, spoken('question'));
    const call = await log.until(() => log.of('tool_call')[0], 'a tool call');
    expect(call).toEqual({ type: 'tool_call', callId: 'call_7', name: 'avr_transfer', argumentsJson: '{"extension":"200"}' });
    session.submitToolResult('call_7', 'Transferred to 200');
    session.submitToolResult('call_7', 'a second answer is dropped');
    session.submitToolResult('unknown', 'dropped too');
    await agentSaid(log);
    expect(s.flow.connections[0]?.toolResults.map(({ id, status, content }) => ({ id, status, content }))).toEqual([{ id: 'call_7', status: 'ok', content: 'Transferred to 200' }]);
    expect(log.of('transcript').at(-1)?.text).toContain('Tool avr_transfer: Transferred to 200');
  });

  test('DTMF: a digit becomes an immediate AddInput the agent answers; invalid digits are ignored', async () => {
    const s = await stack({ pacing: 8 });
    const { session, log } = await open(s, { dtmfMessage: 'Keypad: {{digit}}' });
    session.sendDtmf('x');
    session.sendDtmf('7');
    await replyDone(log);
    expect(s.flow.connections[0]?.addInputs.map(({ input, interrupt_response, immediate }) => ({ input, interrupt_response, immediate }))).toEqual([
      { input: 'Keypad: 7', interrupt_response: false, immediate: true },
    ]);
  });

  test('close sends AudioEnded with the last AudioAdded seq_no, then closes normally', async () => {
    const s = await stack();
    const { session, log } = await open(s);
    say(session, silence(400));
    await s.flow.waitFor(() => s.flow.connections[0]?.inputFrames === 20);
    await sleep(50);
    await session.close();
    await log.done;
    const connection = s.flow.connections[0];
    await s.flow.waitFor(() => connection?.closeInfo);
    expect(connection?.audioEnded).toEqual({ last_seq_no: 20, audioAddedSent: 20 });
    expect(connection?.closeInfo?.code).toBe(1000);
  });

  test('two calls at once: each hears only its own agent', async () => {
    const s = await stack({ pacing: 4 });
    const a = await open(s);
    const b = await open(s);
    say(a.session, spoken('greeting'));
    say(b.session, spoken('question'));
    await Promise.all([replyDone(a.log), replyDone(b.log)]);
    const [fa, fb] = [flowAgentBaseFrequency(0), flowAgentBaseFrequency(1)];
    const heardA = audioOf(a.log);
    const heardB = audioOf(b.log);
    expect(goertzel(heardA, fa, 16000)).toBeGreaterThan(20 * goertzel(heardA, fb, 16000));
    expect(goertzel(heardB, fb, 16000)).toBeGreaterThan(20 * goertzel(heardB, fa, 16000));
    expect(a.log.of('transcript').find((event) => event.role === 'user' && event.final)?.text).toBe(FIXTURE_TEXT['greeting.wav']);
    expect(b.log.of('transcript').find((event) => event.role === 'user' && event.final)?.text).toBe(FIXTURE_TEXT['question.wav']);
  });

  test('the agent ends the conversation: its last words, then an ended event, and the events end', async () => {
    const s = await stack({ pacing: 8 });
    const { log } = await open(s);
    const connection = await s.flow.waitForConnection(0);
    connection.say('Goodbye!', 400);
    await log.until(() => log.of('audio')[0], 'the goodbye');
    connection.endConversation();
    await log.done;
    const types = log.all.map((event) => event.type);
    expect(types.at(-1)).toBe('ended');
    expect(types).toContain('response_done');
    expect(audioOf(log).length).toBe(400 * 16);
    expect(log.of('error')).toEqual([]);
  });
});

describe('faults', () => {
  test('the key endpoint refuses the API key: connect rejects with auth, Flow is never contacted', async () => {
    const s = await stack();
    const adapter = createSpeechmaticsFlow({ apiKey: 'wrong-key-555', url: s.flow.baseUrl, managementUrl: s.auth.baseUrl, reconnect: FAST_RETRY });
    const error = await adapter.connect(callContext()).then(
      () => undefined,
      (failure: unknown) => failure,
    );
    expect(error).toMatchObject({ category: 'auth', retryable: false });
    expect((error as Error).message).not.toContain('wrong-key-555');
    expect(s.flow.upgrades).toEqual([]);
  });

  test('a rejected key (HTTP 401 at the upgrade) is fatal and not reused', async () => {
    const s = await stack({ faults: [{ at: 'upgrade', action: { type: 'http', status: 401 } }] });
    await expect(open(s)).rejects.toMatchObject({ category: 'auth' });
    await open(s);
    expect(s.auth.requests).toHaveLength(2);
  });

  test('Error at start: not_authorised and config_error are fatal; quota_exceeded is retried', async () => {
    const s = await stack({
      faults: [
        { at: 'start', action: { type: 'error', errorType: 'config_error', reason: 'unknown template' } },
        { at: 'start', action: { type: 'error', errorType: 'quota_exceeded' } },
      ],
    });
    await expect(open(s)).rejects.toMatchObject({ category: 'invalid_request', providerCode: 'config_error' });
    const { log } = await open(s);
    expect(s.flow.connections).toHaveLength(3);
    expect(log.of('error')).toEqual([]);
  });

  test('a drop mid-reply: the reply ends, a new conversation starts, caller audio from the gap reaches it', async () => {
    const s = await stack({ pacing: 2, faults: [{ at: { duringResponse: 1, afterAgentMs: 400 }, action: { type: 'drop' } }] });
    const logger = memoryLogger();
    const { session, log } = await open(s, {}, [], logger);
    say(session, spoken('greeting'));
    await log.until(() => log.of('response_done')[0], 'the cut reply to end');
    const second = await s.flow.waitForConnection(1);
    say(session, spoken('short'));
    await replyDone(log, 2);
    expect(second.userTurns[0]?.text).toBe(FIXTURE_TEXT['short.wav']);
    expect(log.of('error')).toEqual([]);
    expect(logger.lines.some((line) => line.msg.includes('does not remember'))).toBe(true);
  });

  test('a fatal Error mid-call (not_allowed): one fatal error event, the events end', async () => {
    const s = await stack({ faults: [{ at: { afterAudioMs: 200 }, action: { type: 'error', errorType: 'not_allowed' } }] });
    const { session, log } = await open(s);
    say(session, spoken('greeting'));
    await log.done;
    expect(log.of('error')).toHaveLength(1);
    expect(log.of('error')[0]).toMatchObject({ fatal: true, error: { category: 'permission' } });
    expect(s.flow.connections).toHaveLength(1);
  });

  test('malformed text and an odd-length audio frame: one non-fatal protocol error, the call goes on', async () => {
    const s = await stack({
      pacing: 8,
      faults: [{ at: { duringResponse: 1, afterAgentMs: 200 }, action: { type: 'malformed' } }],
    });
    const { session, log } = await open(s);
    s.flow.connections[0]?.applyFault({ type: 'odd-binary' });
    say(session, spoken('greeting'));
    await agentSaid(log);
    expect(log.of('error')).toHaveLength(1);
    expect(log.of('error')[0]).toMatchObject({ fatal: false, error: { category: 'protocol' } });
    // 3 odd bytes: one sample (a reply of its own, no ResponseStarted came first) plus a byte carried into the real
    // reply's first frame, which shifts that reply by one sample; nothing is lost or thrown.
    expect(audioOf(log).length).toBe(1500 * 16 + 1);
    expect(log.of('response_done')).toHaveLength(2);
  });

  test('a stalled server is caught by the ping timeout and replaced', async () => {
    const s = await stack({ faults: [{ at: { afterAudioMs: 100 }, action: { type: 'stall' } }] });
    const { session, log } = await open(s, { pingIntervalMs: 100, pongTimeoutMs: 200 });
    say(session, silence(200));
    await s.flow.waitForConnection(1, { timeoutMs: 5000 });
    expect(log.of('error')).toEqual([]);
  });

  test('keepalive defaults: a ping every 30 s (Flow asks for 20-60 s), no pong for 60 s replaces the conversation', async () => {
    // Only the clocks are simulated; sockets are real.
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'setTimeout', 'clearTimeout'] });
    try {
      const s = await stack({ idleTimeoutMs: 3_600_000 });
      const logger = memoryLogger();
      const adapter = createSpeechmaticsFlow({ apiKey: KEY, url: s.flow.baseUrl, keys: s.keys });
      const session = await adapter.connect(callContext({ logger: logger.logger }));
      cleanups.push(() => session.close());
      const first = await s.flow.waitForConnection(0);
      const settle = async (): Promise<void> => {
        for (let i = 0; i < 50; i++) await new Promise((resolve) => setImmediate(resolve));
      };
      await vi.advanceTimersByTimeAsync(20_000);
      await settle();
      expect(first.pingsReceived).toBe(0);
      await vi.advanceTimersByTimeAsync(10_000);
      await s.flow.waitFor(() => first.pingsReceived === 1);
      // From now on the server answers nothing: the ping at 60 s goes unanswered.
      first.applyFault({ type: 'stall' });
      await vi.advanceTimersByTimeAsync(30_000);
      await s.flow.waitFor(() => first.pingsReceived === 2);
      await vi.advanceTimersByTimeAsync(59_000);
      await settle();
      expect(s.flow.connections).toHaveLength(1);
      expect(logger.lines.some((line) => line.msg.includes('stopped answering pings'))).toBe(false);
      await vi.advanceTimersByTimeAsync(1000);
      await s.flow.waitForConnection(1);
      expect(logger.lines.find((line) => line.msg.includes('stopped answering pings'))?.['pongTimeoutMs']).toBe(60_000);
    } finally {
      vi.useRealTimers();
    }
  });

  test('close while connecting: connect rejects with closed and no socket is left open', async () => {
    const s = await stack({ faults: [{ at: 'start', action: { type: 'stall' } }] });
    const controller = new AbortController();
    const adapter = createSpeechmaticsFlow({ apiKey: KEY, url: s.flow.baseUrl, keys: s.keys });
    const pending = adapter.connect({ ...callContext(), signal: controller.signal });
    const connection = await s.flow.waitForConnection(0);
    controller.abort();
    await expect(pending).rejects.toMatchObject({ category: 'closed' });
    await s.flow.waitFor(() => connection.closeInfo);
  });

  test('retries run out: connect rejects with the last failure', async () => {
    const s = await stack({ faults: [{ at: 'upgrade', action: { type: 'http', status: 503 }, times: 10 }] });
    await expect(open(s)).rejects.toMatchObject({ category: 'server' });
    expect(s.flow.upgrades).toHaveLength(FAST_RETRY.maxAttempts + 1);
  });
});

describe('defineSpeechmaticsFlow (environment)', () => {
  test('template variables and agent instructions are templated per call; a failing instructions URL leaves the template its own persona', async () => {
    const s = await stack();
    const env = {
      SPEECHMATICS_API_KEY: KEY,
      SPEECHMATICS_FLOW_URL: s.flow.baseUrl,
      SPEECHMATICS_MANAGEMENT_URL: s.auth.baseUrl,
      SPEECHMATICS_TEMPLATE_ID: 'acme-agent:latest',
      SPEECHMATICS_TEMPLATE_VARIABLES: '{"company":"ACME line {{to}}"}',
    };
    const silent = { logger: memoryLogger().logger };
    const withText = defineSpeechmaticsFlow().fromEnv({ ...env, SPEECHMATICS_INSTRUCTIONS: 'You are Anna. The caller is {{from}}.' }, silent);
    const first = await withText.connect(callContext());
    cleanups.push(() => first.close());
    expect(s.flow.connections[0]?.startConversation?.conversation_config).toMatchObject({
      template_id: 'acme-agent:latest',
      template_variables: { company: 'ACME line 600', persona: 'You are Anna. The caller is +15550100.' },
    });
    // Nothing listens on port 9 of the loopback: the URL fails fast, and no default text replaces the template's persona.
    const withBadUrl = defineSpeechmaticsFlow().fromEnv({ ...env, SPEECHMATICS_URL_INSTRUCTIONS: 'http://127.0.0.1:9/prompt', SPEECHMATICS_INSTRUCTIONS_VARIABLE: 'prompt' }, silent);
    const second = await withBadUrl.connect(callContext());
    cleanups.push(() => second.close());
    const variables = s.flow.connections[1]?.startConversation?.conversation_config.template_variables ?? {};
    expect(variables).toMatchObject({ company: 'ACME line 600' });
    expect(variables).not.toHaveProperty('prompt');
    expect(variables).not.toHaveProperty('persona');
  });
});
