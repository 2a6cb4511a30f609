/**
 * The end-to-end scenarios every cascade preset must pass, driven by the AVR Core call simulator in real time.
 * Each preset's test file runs them against its own stages' emulators.
 */
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'vitest';
import { bytesFromPcm } from '@stsgate/core';
import {
  FIXTURE_TEXT,
  concatPcm,
  fixturePath,
  readWavAs8k,
  silence,
  simulateCall,
  whiteNoise,
  type CallReport,
  type ChatCompletionRequest,
  type ChatScriptReply,
} from '@stsgate/testkit';
import { lastUserText, startCascadeStack, type CascadeStack, type Preset } from './cascade-stack.js';

const fixture = (name: 'greeting' | 'short' | 'question') => readWavAs8k(fixturePath(name));

/** The agent-variable prefix of each preset (`<PREFIX>_WELCOME_MESSAGE`...). */
const PREFIX: Record<Preset, string> = { soniox: 'SONIOX', speechmatics: 'SPEECHMATICS', mixed: 'CASCADE' };
/** Which provider each stage of a preset is, as labelled in /metrics. */
const STAGES: Record<Preset, { asr: string; tts: string }> = {
  soniox: { asr: 'soniox', tts: 'soniox' },
  speechmatics: { asr: 'speechmatics', tts: 'speechmatics' },
  mixed: { asr: 'soniox', tts: 'speechmatics' },
};

export const REPLIES = {
  booking: 'Of course. I can book an appointment for you tomorrow morning, and I will need your name and a phone number for that.',
  hours:
    'We open at nine on Saturday. On Saturdays we close at noon, so please come early. On Sundays we are closed all day, ' +
    'except in December, when we open from ten until four.',
  confirm: 'Great, you are booked for tomorrow at nine. We will send you a text message with all the details.',
  digits: 'Thank you, I got your code.',
} as const;

/** Answers the latest thing said (a turn left unanswered merges with the next one). */
function conversationReply(request: ChatCompletionRequest): ChatScriptReply {
  const user = lastUserText(request);
  if (user.includes('pressed')) return { text: REPLIES.digits };
  if (user.includes(FIXTURE_TEXT['short.wav'])) return { text: REPLIES.confirm };
  if (user.includes(FIXTURE_TEXT['question.wav'])) return { text: REPLIES.hours };
  if (user.includes(FIXTURE_TEXT['greeting.wav'])) return { text: REPLIES.booking };
  return { text: 'Sorry?' };
}

function checkClean(report: CallReport): void {
  expect(report.protocolProblems).toEqual([]);
  expect(report.received.irregularFrames).toBe(0);
  expect(report.transportError).toBeNull();
}

const wallTime = (report: CallReport, callMs: number) => Date.parse(report.startedAt) + callMs;

/**
 * Welcome message; three spoken turns, the second one cut by the caller (barge-in) and the third one spoken over
 * by a 200 ms noise burst (no barge-in); then keypad digits.
 */
export async function conversation(preset: Preset): Promise<void> {
  const stack = await startCascadeStack(preset, {
    chat: conversationReply,
    llm: { firstTokenMs: 100, tokensPerSecond: 15 },
    // Synthesis a little faster than playback: a sentence's request is still streaming while it is heard.
    ttsRealTimeFactor: 0.9,
    env: { [`${PREFIX[preset]}_WELCOME_MESSAGE`]: 'Hello {{from}}, thanks for calling.' },
  });
  try {
    const input = concatPcm(
      silence(3000),
      fixture('greeting'),
      silence(8500),
      fixture('question'),
      silence(2500),
      fixture('short'),
      silence(2500),
      whiteNoise(200, 8000),
      silence(7000),
    );
    const report = await simulateCall({
      url: stack.url('from=2001&to=5001'),
      input,
      tailMs: 4000,
      dtmf: [
        { atMs: 29_500, digit: '1' },
        { atMs: 29_700, digit: '2' },
        { atMs: 29_900, digit: '#' },
      ],
    });
    checkClean(report);
    expect(report.errors).toEqual([]);
    const said = (role: 'user' | 'agent') => report.transcripts.filter((t) => t.role === role).map((t) => t.text);
    expect(said('user')).toEqual([FIXTURE_TEXT['greeting.wav'], FIXTURE_TEXT['question.wav'], FIXTURE_TEXT['short.wav'], 'The caller pressed 12 on the keypad.']);
    const agent = said('agent');
    expect(agent).toHaveLength(5);
    expect(agent[0]).toBe('Hello 2001, thanks for calling.');
    expect(agent[1]).toBe(REPLIES.booking);
    expect(agent[3]).toBe(REPLIES.confirm);
    expect(agent[4]).toBe(REPLIES.digits);

    // Streaming: the first reply is heard while the LLM is still writing it.
    const chats = stack.rest.requests.filter((r) => r.route === 'chat');
    expect(chats).toHaveLength(4);
    const booking = chats[0];
    const firstReplyAudio = wallTime(report, (report.responseLatencies[0]?.speechEndMs ?? 0) + (report.responseLatencies[0]?.receivedMs ?? 0));
    expect(booking?.completedAt).toBeDefined();
    expect(firstReplyAudio).toBeLessThan((booking?.completedAt ?? 0) - 300);

    // Barge-in on the second reply: one interruption, playback stopped, LLM and TTS aborted.
    expect(report.interruptions).toHaveLength(1);
    const bargeIn = report.bargeIns.find((b) => b.interruptionAtMs !== null);
    expect(bargeIn?.playbackStopped).toBe(true);
    expect(bargeIn?.reactionMs).toBeLessThan(800);
    expect(chats[1]?.completed).toBe(false);
    expectTtsAborted(stack, preset);
    // The conversation keeps what the caller heard of it: whole words from its start, not the rest.
    const heardHours = agent[2] ?? '';
    expect(heardHours.length).toBeGreaterThan(0);
    expect(REPLIES.hours.startsWith(heardHours)).toBe(true);
    expect(heardHours.length).toBeLessThan(REPLIES.hours.indexOf('Sundays'));
    const third = chats[2]?.body as { messages: { role: string; content: string }[] };
    expect(third.messages.slice(-3)).toEqual([
      { role: 'user', content: FIXTURE_TEXT['question.wav'] },
      { role: 'assistant', content: heardHours },
      { role: 'user', content: FIXTURE_TEXT['short.wav'] },
    ]);

    // The noise burst over the third reply interrupted nothing: it was heard whole.
    const noise = report.bargeIns.find((b) => b.interruptionAtMs === null && b.speechStartMs > (bargeIn?.speechStartMs ?? 0));
    expect(noise?.playbackStopped).toBe(false);

    // Keypad digits became one user message ("#" ends the entry).
    const last = chats[3]?.body as { messages: { role: string; content: string }[] };
    expect(last.messages.at(-1)).toEqual({ role: 'user', content: 'The caller pressed 12 on the keypad.' });

    // Per-turn timings on /metrics, labelled by the provider of each stage.
    const metrics = await (await stack.gateway.app.inject({ method: 'GET', url: '/metrics' })).body;
    const count = (name: string, provider: string) => Number(new RegExp(`^${name}_count\\{provider="${provider}"\\} (\\d+)`, 'm').exec(metrics)?.[1] ?? 0);
    expect(count('stsgate_turn_asr_final_seconds', STAGES[preset].asr)).toBeGreaterThanOrEqual(3);
    expect(count('stsgate_turn_llm_first_token_seconds', 'openai')).toBeGreaterThanOrEqual(3);
    expect(count('stsgate_turn_tts_first_audio_seconds', STAGES[preset].tts)).toBeGreaterThanOrEqual(4);
    expect(count('stsgate_response_latency_seconds', preset === 'mixed' ? 'cascade' : preset)).toBeGreaterThanOrEqual(3);
  } finally {
    await stack.close();
  }
}

function expectTtsAborted(stack: CascadeStack, preset: Preset): void {
  if (preset === 'soniox') {
    const stream = stack.sonioxTts?.streams.find((s) => s.texts.join(' ').includes('We open at nine'));
    expect(stream?.cancelled).toBe(true);
    return;
  }
  const requests = stack.speechmaticsTts?.requests ?? [];
  const hours = requests.filter((r) => JSON.stringify(r.body).includes('Saturday'));
  expect(hours.some((r) => r.aborted)).toBe(true);
}

const TOOL_MODULE = {
  file: 'lookup_hours.js',
  source: `module.exports = {
  name: 'lookup_hours',
  description: 'Opening hours for a day',
  input_schema: { type: 'object', properties: { day: { type: 'string' } }, required: ['day'] },
  handler: async (uuid, args) => 'Open 9 to 17 on ' + args.day,
};\n`,
};

const GOODBYE = 'We are open from nine to five on Saturday. Goodbye!';

function toolReply(request: ChatCompletionRequest): ChatScriptReply {
  const last = request.messages.at(-1);
  if (last?.['role'] === 'tool') {
    const content = String(last['content']);
    if (content.includes('Open 9 to 17 on saturday')) return { text: GOODBYE, toolCalls: [{ name: 'avr_hangup', arguments: '{}' }] };
    return { text: '' };
  }
  return { text: 'Let me check.', toolCalls: [{ name: 'lookup_hours', arguments: '{"day":"saturday"}' }] };
}

/** A custom AVR tool, its result spoken by the model; then `avr_hangup`, called once the goodbye was heard. */
export async function toolCall(preset: Preset): Promise<void> {
  const stack = await startCascadeStack(preset, { chat: toolReply, toolModule: TOOL_MODULE, env: { [`${PREFIX[preset]}_GREETING`]: 'false' } });
  try {
    const uuid = `cascade-tools-${preset}`;
    const report = await simulateCall({ url: stack.url(), uuid, input: concatPcm(silence(500), fixture('question')), tailMs: 7000 });
    checkClean(report);
    expect(report.errors).toEqual([]);
    const chats = stack.rest.requests.filter((r) => r.route === 'chat').map((r) => r.body as { messages: Record<string, unknown>[]; tools?: { function: { name: string } }[] });
    expect((chats[0]?.tools ?? []).map((t) => t.function.name).sort()).toEqual(['avr_hangup', 'avr_transfer', 'lookup_hours']);
    expect(chats[1]?.messages.at(-1)).toMatchObject({ role: 'tool', content: 'Open 9 to 17 on saturday' });
    expect(chats[2]?.messages.at(-1)).toMatchObject({ role: 'tool' });
    expect(String(chats[2]?.messages.at(-1)?.['content'])).toContain(`Call with UUID ${uuid} hangup`);
    expect(report.transcripts.filter((t) => t.role === 'agent').map((t) => t.text)).toEqual(['Let me check.', GOODBYE]);
    const hangups = stack.ami.requests.filter((r) => r.path === '/hangup');
    expect(hangups).toHaveLength(1);
    expect(hangups[0]?.body).toEqual({ uuid });
    // The goodbye was the last agent audio, and it had been heard to the end when avr-ami was asked to hang up.
    let lastTick = -1;
    for (let tick = 0; tick * 160 < report.heard.length; tick++) {
      if (report.heard.subarray(tick * 160, (tick + 1) * 160).some((sample) => sample !== 0)) lastTick = tick;
    }
    expect(hangups[0]?.receivedAt).toBeGreaterThanOrEqual(wallTime(report, (lastTick + 1) * 20) - 40);
  } finally {
    await stack.close();
  }
}

/**
 * A failure in each stage: the TTS fails the first turn, the LLM the second (HTTP 500 through every retry), the ASR
 * connection drops before the third. Each failed turn costs one AVR `error`; the call goes on and the third turn is
 * answered.
 */
export async function stageFailures(preset: Preset): Promise<void> {
  const stack = await startCascadeStack(preset, { chat: conversationReply, env: { [`${PREFIX[preset]}_GREETING`]: 'false' } });
  try {
    if (preset === 'soniox') stack.sonioxTts?.queueWsFault({ at: 'stream', action: { type: 'error', code: 500, message: 'synthesis failed' }, times: 3 });
    else stack.speechmaticsTts?.queueFault({ action: { type: 'status', status: 500 }, times: 3 });
    const input = concatPcm(silence(500), fixture('greeting'), silence(3000), fixture('question'), silence(3000), fixture('short'), silence(500));
    // The ASR socket drops between the second and the third turn.
    const dropAtMs = 500 + 3535 + 3000 + 2167 + 1500;
    if (preset === 'speechmatics') stack.speechmaticsRt?.queueFault({ at: { afterAudioMs: dropAtMs }, action: { type: 'drop' } });
    else stack.sonioxStt?.queueFault({ at: { afterAudioMs: dropAtMs }, action: { type: 'drop' } });
    const call = simulateCall({ url: stack.url(), input, tailMs: 8000 });
    // The second turn's LLM request, and its retries, fail.
    await stack.rest.waitForRequest('chat', undefined, { timeoutMs: 15_000 });
    stack.rest.queueFault({ route: 'chat', action: { type: 'status', status: 500 }, times: 3 });
    const report = await call;
    checkClean(report);
    expect(report.errors).toHaveLength(2);
    expect(report.errors[0]?.message).toMatch(/^provider error: TTS \((speechmatics|soniox)\) failed this turn/);
    expect(report.errors[1]?.message).toMatch(/^provider error: LLM \(openai\) failed this turn: .*500/);
    expect(JSON.stringify(report.errors)).not.toContain('cascade-e2e-key');
    expect(report.serverClosedFirst).toBe(false);
    expect(report.transcripts.filter((t) => t.role === 'user').map((t) => t.text)).toEqual([
      FIXTURE_TEXT['greeting.wav'],
      FIXTURE_TEXT['question.wav'],
      FIXTURE_TEXT['short.wav'],
    ]);
    // Only the third turn was spoken; the ASR reconnected for it.
    expect(report.transcripts.filter((t) => t.role === 'agent').map((t) => t.text)).toEqual([REPLIES.confirm]);
    const asrConnections = preset === 'speechmatics' ? stack.speechmaticsRt?.connections : stack.sonioxStt?.connections;
    expect(asrConnections?.length).toBe(2);
  } finally {
    await stack.close();
  }
}

/**
 * AVR's legacy STS contract over the cascade: `POST /speech-to-speech-stream` with the caller's raw PCM streamed in
 * real time gets the agent's raw PCM back, paced.
 */
export async function legacyHttp(preset: Preset): Promise<void> {
  const stack = await startCascadeStack(preset, { chat: conversationReply, env: { [`${PREFIX[preset]}_GREETING`]: 'false' } });
  try {
    const { port } = stack.gateway.app.server.address() as AddressInfo;
    const received: Buffer[] = [];
    const request = httpRequest(`http://127.0.0.1:${port}/speech-to-speech-stream`, {
      method: 'POST',
      headers: { 'transfer-encoding': 'chunked', 'x-uuid': 'legacy-cascade-call' },
    });
    const response = new Promise<{ status: number; type: string | undefined }>((resolve, reject) => {
      request.once('response', (res) => {
        res.on('data', (bytes: Buffer) => received.push(bytes));
        res.once('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'] }));
      });
      request.once('error', reject);
    });
    const bytes = bytesFromPcm(concatPcm(silence(300), fixture('greeting'), silence(7000)));
    const started = performance.now();
    for (let offset = 0; offset < bytes.length; offset += 320) {
      const due = offset / 16 - (performance.now() - started);
      if (due > 0) await new Promise((resolve) => setTimeout(resolve, due));
      request.write(bytes.subarray(offset, offset + 320));
    }
    request.end();
    const { status, type } = await response;
    expect(status).toBe(200);
    expect(type).toBe('text/event-stream');
    const chats = stack.rest.requests.filter((r) => r.route === 'chat');
    expect(chats).toHaveLength(1);
    expect(JSON.stringify(chats[0]?.body)).toContain(FIXTURE_TEXT['greeting.wav']);
    // The whole reply came back as 8 kHz PCM (the TTS emulators speak about 2 s of it).
    const audioMs = Buffer.concat(received).length / 16;
    expect(audioMs).toBeGreaterThan(2000);
  } finally {
    await stack.close();
  }
}
