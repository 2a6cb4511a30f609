/**
 * STS (speech-to-speech) adapter conformance suite: the behaviour every `StsAdapter` owes the host, checked against
 * whatever server the setup wires (a local emulator in CI).
 *
 *   describeStsConformance('openai', async () => {
 *     const emulator = await startOpenAiRealtimeEmulator({ apiKey: 'k', script: { onUserTurn: ... } });
 *     return {
 *       adapter: createOpenAiRealtime({ apiKey: 'k', url: emulator.url, greeting: false }),
 *       tool: { name: 'lookup_order' },   // the provider calls it on the first caller turn when it is offered
 *       dropConnection: async () => {      // for `reconnect`: kill the provider socket(s), as a network failure does
 *         for (const connection of emulator.connections) connection.inject({ action: { type: 'terminate' } });
 *       },
 *       cleanup: () => emulator.close(),
 *     };
 *   });
 *
 * The checks are here and in sts-resilience.ts (`reconnect`, `toolTimeout`); sts-support.ts holds what they share.
 *
 * API (stable; append-only):
 *   describeStsConformance(name, setup, options?)   registers one vitest `describe` with a test per check (a check
 *                                                   that does not apply is reported as skipped, with the reason)
 *   runStsConformanceCheck(check, setup, options?)  runs one check (setup, check, cleanup); resolves with
 *                                                   `{status: 'passed'}` or `{status: 'skipped', reason}`, rejects when
 *                                                   it fails
 *   STS_CONFORMANCE_CHECKS                           the checks by name (each `(harness, options) => Promise<StsCheckResult>`)
 *
 * The caller turn is `harness.callerTurn()` (8 kHz; default: the question.wav fixture + 1.5 s of silence), converted
 * to `session.inputSampleRate` with core's resampler and sent in 20 ms frames, paced by the event loop (or in real time
 * with `options.realTime`). The adapter must not speak first (turn a greeting off): any reply audio after a turn is
 * taken as the answer to it.
 *
 * Checks:
 * - `replyAudio`: input/outputSampleRate are among the declared capabilities; 250 ms after connect() the caller turn
 *   gets a reply: `audio` events of one responseId, then `response_done` for it; at least `minReplyMs` (default 200 ms)
 *   at outputSampleRate, not digital silence, and no audio for that id after its response_done (watched for
 *   `quietMs`, default 500 ms).
 * - `transcripts` (skipped when the adapter declares neither userTranscripts nor agentTranscripts): a final,
 *   non-empty transcript of each declared role arrives; no control tokens (`<end>`, `<fin>`, `</s>`...) in any
 *   transcript.
 * - `earlyAudio`: the whole caller turn sent synchronously right after connect() resolves (before a provider socket
 *   may be open) is not lost: it gets a reply.
 * - `concurrentIsolation`: two sessions at once; the turn goes to A while B gets as much silence, and only A replies
 *   (B has no audio within `quietMs` after A's reply); then the other way round.
 * - `closeIdempotent`: close() twice concurrently while a reply is playing and once more all resolve, the events
 *   iterator ends, and sendAudio/sendDtmf/truncate/submitToolResult after close do not throw.
 * - `abortBeforeConnect`: connect() with an already-aborted call.signal rejects with a ProviderError of category
 *   `closed`.
 * - `badInputSafe`: sendAudio(empty), sendDtmf('x') and sendDtmf('5') (with capabilities.dtmf), truncate() of an
 *   unknown response id (with capabilities.truncation), submitToolResult() of an unknown call id: none throws, and once
 *   the session is quiet it still replies to a caller turn.
 * - `bargeInTruncate` (skipped without capabilities.truncation): while a reply plays, the host calls truncate(id,
 *   heardMs) with the audio received so far, as the gateway does on barge-in: the reply ends (`response_done` for it,
 *   if it had not already), no audio for it follows, and the session still replies to the next caller turn.
 * - `toolRoundTrip` (skipped without capabilities.toolCalls or without `harness.tool`): with the tool offered in
 *   call.tools, the caller turn gives a `tool_call` for it with a non-empty callId and JSON-object argumentsJson; after
 *   submitToolResult the session replies (audio then response_done).
 * - `reconnect` (skipped without `harness.dropConnection`): after a first caller turn got its reply (and a final
 *   transcript of each declared role), the reply has had time to play and the session is quiet, the suite drops the
 *   provider connection with the hook.
 *   The session must not end nor emit an `error`; until a new caller turn it emits nothing that answers or transcribes
 *   a turn (audio, response_done, tool_call, final transcript); the new turn, sent at once (while the adapter may still
 *   be reconnecting), gets a reply (and the declared final transcripts) within `timeoutMs`; and no event after the
 *   drop names a response of the turn before it, nor are there more replies or final transcripts per role after the
 *   drop than the same caller turn gave before it (a replayed turn).
 * - `toolTimeout` (skipped without capabilities.toolCalls or without `harness.tool`): the suite plays a host whose tool
 *   never answers: it leaves the tool_call unanswered for `options.toolTimeoutMs` (default 3000 ms), during which the
 *   session must neither end nor emit an `error`, then submits the error text the agent's ToolSet gives on a timeout
 *   (`Error: tool "<name>" timed out after <N> ms`); the session replies (audio then response_done), and once that
 *   reply has had time to play and the session is quiet, the next caller turn gets a reply (a tool_call then is answered at once). STS sessions do not run tools (the host
 *   does, with its ToolRunner and timeout), so this is the part of a tool timeout an adapter owns.
 * Every check also fails on any `error` event, on an event iteration that throws, on an `audio` event whose samples
 * are not a non-empty Int16Array, and on audio for a responseId after its response_done.
 */
import { ProviderError, type StsEvent, type StsSession } from '@stsgate/core';
import { describe, test } from 'vitest';
import { reconnect, toolTimeout } from './sts-resilience.js';
import {
  CONTROL,
  PASSED,
  SETTLE_MS,
  StsRecorder,
  attempt,
  callFor,
  callerTurn,
  quietOf,
  replyAfter,
  sendAll,
  sendPaced,
  skipped,
  sleep,
  timeoutOf,
  toolSpec,
  withSession,
  withTimeout,
  type StsCheck,
  type StsCheckName,
  type StsCheckResult,
  type StsConformanceOptions,
  type StsConformanceSetup,
} from './sts-support.js';

export type {
  StsCheck,
  StsCheckName,
  StsCheckResult,
  StsConformanceHarness,
  StsConformanceOptions,
  StsConformanceSetup,
  StsConformanceTool,
} from './sts-support.js';

// ---- checks ---------------------------------------------------------------------------------------------------------

const replyAudio: StsCheck = async (harness, options) => {
  const capabilities = harness.adapter.capabilities;
  await withSession(harness, 0, async (session, recorder) => {
    if (!capabilities.inputSampleRates.includes(session.inputSampleRate)) {
      throw new Error(`inputSampleRate ${String(session.inputSampleRate)} is not among the declared ${JSON.stringify(capabilities.inputSampleRates)}`);
    }
    if (!capabilities.outputSampleRates.includes(session.outputSampleRate)) {
      throw new Error(`outputSampleRate ${String(session.outputSampleRate)} is not among the declared ${JSON.stringify(capabilities.outputSampleRates)}`);
    }
    await sleep(SETTLE_MS);
    const from = recorder.events.length;
    await sendPaced(session, callerTurn(harness), options);
    const reply = await recorder.waitForReply(from, timeoutOf(options), 'a reply to the caller turn (audio, then response_done)');
    // Anything late for the same response would show up now.
    await sleep(quietOf(options));
    recorder.assertClean();
    const ms = (reply.samples * 1000) / session.outputSampleRate;
    const minMs = options.minReplyMs ?? 200;
    if (ms < minMs) throw new Error(`the reply has ${ms.toFixed(0)} ms of audio at ${String(session.outputSampleRate)} Hz, expected at least ${String(minMs)} ms`);
    if (reply.peak === 0) throw new Error('the reply is digital silence');
  });
  return PASSED;
};

const transcripts: StsCheck = async (harness, options) => {
  const capabilities = harness.adapter.capabilities;
  const roles = [...(capabilities.userTranscripts ? ['user' as const] : []), ...(capabilities.agentTranscripts ? ['agent' as const] : [])];
  if (roles.length === 0) return skipped('the adapter declares neither userTranscripts nor agentTranscripts');
  await withSession(harness, 0, async (session, recorder) => {
    await sleep(SETTLE_MS);
    const from = recorder.events.length;
    await sendPaced(session, callerTurn(harness), options);
    const hasFinal = (events: readonly StsEvent[], role: 'user' | 'agent'): boolean =>
      events.some((event) => event.type === 'transcript' && event.role === role && event.final && event.text.trim() !== '');
    await recorder.waitFor(
      (events) => (roles.every((role) => hasFinal(events, role)) && replyAfter(events, from) !== undefined ? true : undefined),
      timeoutOf(options),
      `a final non-empty transcript of each declared role (${roles.join(', ')}) and the reply`,
    );
    for (const event of recorder.events) {
      if (event.type === 'transcript' && CONTROL.test(event.text)) throw new Error(`control token leaked into a ${event.role} transcript: ${JSON.stringify(event.text)}`);
    }
  });
  return PASSED;
};

const earlyAudio: StsCheck = async (harness, options) => {
  await withSession(harness, 0, async (session, recorder) => {
    // Synchronously, before the adapter had any chance to see a provider socket open.
    sendAll(session, callerTurn(harness));
    await recorder.waitForReply(0, timeoutOf(options), 'a reply to the caller turn sent right after connect()');
  });
  return PASSED;
};

const concurrentIsolation: StsCheck = async (harness, options) => {
  const timeoutMs = timeoutOf(options);
  const turn = callerTurn(harness);
  const quiet = new Int16Array(turn.length);
  await withSession(harness, 0, async (a, recordA) => {
    await withSession(harness, 1, async (b, recordB) => {
      await sleep(SETTLE_MS);
      const phase = async (speaker: StsSession, speakerLog: StsRecorder, listener: StsSession, listenerLog: StsRecorder, names: [string, string]): Promise<void> => {
        const fromSpeaker = speakerLog.events.length;
        const fromListener = listenerLog.events.length;
        await Promise.all([sendPaced(speaker, turn, options), sendPaced(listener, quiet, options)]);
        await speakerLog.waitForReply(fromSpeaker, timeoutMs, `session ${names[0]}'s reply to its caller turn`);
        await sleep(quietOf(options));
        listenerLog.assertClean();
        const leaked = listenerLog.audioSince(fromListener);
        if (leaked > 0) {
          throw new Error(`session ${names[1]} emitted ${String(leaked)} audio events although only session ${names[0]} got caller speech; ${names[1]}: ${listenerLog.describe()}`);
        }
      };
      await phase(a, recordA, b, recordB, ['A', 'B']);
      await phase(b, recordB, a, recordA, ['B', 'A']);
    });
  });
  return PASSED;
};

const closeIdempotent: StsCheck = async (harness, options) => {
  const timeoutMs = timeoutOf(options);
  const capabilities = harness.adapter.capabilities;
  const session = await harness.adapter.connect(callFor(harness, 0));
  const recorder = new StsRecorder(session);
  let responseId = 'sts-conformance-response';
  try {
    await sleep(SETTLE_MS);
    await sendPaced(session, callerTurn(harness), options);
    // Close while the reply is playing: the usual hang-up.
    responseId = await recorder.waitFor(
      (events) => events.flatMap((event) => (event.type === 'audio' ? [event.responseId] : []))[0],
      timeoutMs,
      'the first reply audio',
    );
  } catch (error) {
    await session.close();
    throw error;
  }
  await withTimeout(Promise.all([session.close(), session.close()]), timeoutMs, 'two concurrent close() calls');
  await withTimeout(session.close(), timeoutMs, 'a third close()');
  await recorder.untilEnded(timeoutMs, 'the events to end after close()');
  recorder.assertClean();
  // Calls after close must not throw either.
  attempt('sendAudio after close', () => session.sendAudio(new Int16Array((session.inputSampleRate / 1000) * 20)));
  if (capabilities.dtmf) attempt('sendDtmf after close', () => session.sendDtmf('1'));
  if (capabilities.truncation) attempt('truncate after close', () => session.truncate(responseId, 100));
  attempt('submitToolResult after close', () => session.submitToolResult('sts-conformance-call', '{}'));
  return PASSED;
};

const abortBeforeConnect: StsCheck = async (harness, options) => {
  const controller = new AbortController();
  controller.abort();
  let session: StsSession | undefined;
  let caught: unknown;
  try {
    session = await withTimeout(harness.adapter.connect(callFor(harness, 0, { signal: controller.signal })), timeoutOf(options), 'connect() with an aborted signal');
  } catch (error) {
    caught = error;
  }
  if (session !== undefined) {
    await session.close();
    throw new Error('connect() resolved although call.signal was already aborted');
  }
  if (!(caught instanceof ProviderError)) throw new Error(`connect() with an aborted signal: expected a ProviderError, got ${String(caught)}`);
  if (caught.category !== 'closed') throw new Error(`connect() with an aborted signal: expected category closed, got ${caught.category} (${caught.message})`);
  return PASSED;
};

const badInputSafe: StsCheck = async (harness, options) => {
  const capabilities = harness.adapter.capabilities;
  await withSession(harness, 0, async (session, recorder) => {
    await sleep(SETTLE_MS);
    attempt('sendAudio(empty Int16Array)', () => session.sendAudio(new Int16Array(0)));
    if (capabilities.dtmf) {
      attempt("sendDtmf('x')", () => session.sendDtmf('x'));
      attempt("sendDtmf('5')", () => session.sendDtmf('5'));
    }
    if (capabilities.truncation) attempt('truncate(unknown response id)', () => session.truncate('sts-conformance-unknown-response', 500));
    attempt('submitToolResult(unknown call id)', () => session.submitToolResult('sts-conformance-unknown-call', '{"ok":true}'));
    // A reply to the digit (or to the stray tool result) may be playing: let it finish first.
    await recorder.untilQuiet(quietOf(options), timeoutOf(options), 'the session to be quiet after the bad input');
    const from = recorder.events.length;
    await sendPaced(session, callerTurn(harness), options);
    await recorder.waitForReply(from, timeoutOf(options), 'a reply to a caller turn after the bad input');
  });
  return PASSED;
};

const bargeInTruncate: StsCheck = async (harness, options) => {
  if (!harness.adapter.capabilities.truncation) return skipped('capabilities.truncation is false');
  const timeoutMs = timeoutOf(options);
  await withSession(harness, 0, async (session, recorder) => {
    await sleep(SETTLE_MS);
    const from = recorder.events.length;
    await sendPaced(session, callerTurn(harness), options);
    const first = await recorder.waitFor(
      (events) => events.slice(from).find((event): event is Extract<StsEvent, { type: 'audio' }> => event.type === 'audio'),
      timeoutMs,
      'the first audio of a reply to the caller turn',
    );
    const heardSamples = recorder.events.reduce((sum, event) => sum + (event.type === 'audio' && event.responseId === first.responseId ? event.samples.length : 0), 0);
    const heardMs = Math.round((heardSamples * 1000) / session.outputSampleRate);
    attempt('truncate(the reply playing)', () => session.truncate(first.responseId, heardMs));
    await recorder.waitFor(
      (events) => (events.some((event) => event.type === 'response_done' && event.responseId === first.responseId) ? true : undefined),
      timeoutMs,
      `response_done for the truncated reply ${first.responseId}`,
    );
    // Audio for the truncated reply after its response_done would show up now (assertClean).
    await recorder.untilQuiet(quietOf(options), timeoutMs, 'the session to be quiet after the truncation');
    const next = recorder.events.length;
    await sendPaced(session, callerTurn(harness), options);
    await recorder.waitForReply(next, timeoutMs, 'a reply to the caller turn after the truncation');
  });
  return PASSED;
};

const toolRoundTrip: StsCheck = async (harness, options) => {
  if (!harness.adapter.capabilities.toolCalls) return skipped('capabilities.toolCalls is false');
  const tool = harness.tool;
  if (tool === undefined) return skipped('the harness names no tool (harness.tool) for the provider to call');
  const spec = toolSpec(tool);
  const timeoutMs = timeoutOf(options);
  await withSession(
    harness,
    0,
    async (session, recorder) => {
      await sleep(SETTLE_MS);
      const from = recorder.events.length;
      await sendPaced(session, callerTurn(harness), options);
      const call = await recorder.waitForToolCall(from, tool.name, timeoutMs);
      if (typeof call.callId !== 'string' || call.callId === '') throw new Error('the tool_call has no callId');
      let parsed: unknown;
      try {
        parsed = JSON.parse(call.argumentsJson);
      } catch (error) {
        throw new Error(`tool_call argumentsJson is not JSON: ${JSON.stringify(call.argumentsJson)}`, { cause: error });
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
        throw new Error(`tool_call argumentsJson must be a JSON object, got ${JSON.stringify(call.argumentsJson)}`);
      }
      const afterSubmit = recorder.events.length;
      attempt('submitToolResult', () => session.submitToolResult(call.callId, tool.output ?? '{"ok":true}'));
      await recorder.waitForReply(afterSubmit, timeoutMs, 'a reply after submitToolResult (audio, then response_done)');
    },
    [spec],
  );
  return PASSED;
};

export const STS_CONFORMANCE_CHECKS: Readonly<Record<StsCheckName, StsCheck>> = {
  replyAudio,
  transcripts,
  earlyAudio,
  concurrentIsolation,
  closeIdempotent,
  abortBeforeConnect,
  badInputSafe,
  bargeInTruncate,
  toolRoundTrip,
  reconnect,
  toolTimeout,
};

const TITLES: Readonly<Record<StsCheckName, string>> = {
  replyAudio: 'a caller turn gets reply audio, then response_done, at a declared sample rate',
  transcripts: 'final transcripts of each declared role, without control tokens',
  earlyAudio: 'audio sent right after connect() is not lost',
  concurrentIsolation: 'two concurrent sessions are isolated (only the one spoken to replies)',
  closeIdempotent: 'close() is idempotent, ends the events, and later calls do not throw',
  abortBeforeConnect: 'connect() with an aborted signal rejects with ProviderError closed',
  badInputSafe: 'bad input (empty audio, bad digit, unknown ids) is harmless',
  bargeInTruncate: 'truncate() of the reply playing ends it, and the next caller turn gets a reply',
  toolRoundTrip: 'tool_call -> submitToolResult -> the session replies',
  reconnect: 'a provider connection dropped mid-call is restored: no error, no end, no replayed turn, the next turn gets a reply',
  toolTimeout: 'a tool answered only by the host timeout: the session holds the call, goes on with the timeout error, then replies to the next turn',
};

export async function runStsConformanceCheck(check: StsCheckName, setup: StsConformanceSetup, options: StsConformanceOptions = {}): Promise<StsCheckResult> {
  const harness = await setup();
  try {
    return await STS_CONFORMANCE_CHECKS[check](harness, options);
  } finally {
    await harness.cleanup?.();
  }
}

export function describeStsConformance(name: string, setup: StsConformanceSetup, options: StsConformanceOptions = {}): void {
  describe(`STS conformance: ${name}`, () => {
    for (const check of Object.keys(STS_CONFORMANCE_CHECKS) as StsCheckName[]) {
      if (options.skip?.includes(check) === true) continue;
      test(TITLES[check], async (context) => {
        const result = await runStsConformanceCheck(check, setup, options);
        if (result.status === 'skipped') context.skip(result.reason);
      });
    }
  });
}
