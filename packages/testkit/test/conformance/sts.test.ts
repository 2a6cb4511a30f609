import { describe, expect, test } from 'vitest';
import type { StsCapabilities } from '@stsgate/core';
import { describeStsConformance, runStsConformanceCheck, STS_CONFORMANCE_CHECKS, type StsCheckName, type StsConformanceSetup } from '../../src/conformance/sts.js';
import { referenceSts, type StsDefects } from './reference-sts.js';

// The OpenAI Realtime adapter runs this suite in packages/openai/test/sts-conformance.test.ts and the loopback in
// packages/loopback/test/sts-conformance.test.ts: the test kit cannot depend on them (they devDepend on it).

function setup(defects: StsDefects = {}, withTool = true, withDrop = true): StsConformanceSetup {
  return () => {
    const adapter = referenceSts(defects);
    return Promise.resolve({
      adapter,
      ...(withTool ? { tool: { name: 'lookup_order' } } : {}),
      ...(withDrop ? { dropConnection: () => Promise.resolve(adapter.dropConnections()) } : {}),
    });
  };
}

// The suite passes for a correct adapter...
describeStsConformance('reference in-process adapter', setup(), { quietMs: 300, toolTimeoutMs: 1500 });

// ...and fails for broken ones.
describe('STS conformance self-test: broken adapters fail', () => {
  const cases: [string, StsDefects, [StsCheckName, RegExp][]][] = [
    ['mixes caller audio of all sessions into one buffer', { sharedBuffer: true }, [['concurrentIsolation', /session B emitted \d+ audio events although only session A got caller speech/]]],
    ['emits audio after response_done', { audioAfterDone: true }, [['replyAudio', /audio for response resp_1 after its response_done/]]],
    ['drops audio sent before its socket is open', { dropEarlyAudio: true }, [['earlyAudio', /timed out after 1500 ms waiting for a reply to the caller turn sent right after connect\(\)/]]],
    ['a second close() throws and the events never end', { closeNotIdempotent: true }, [['closeIdempotent', /already closed/]]],
    ['connects although the call has ended', { ignoreAbortedSignal: true }, [['abortBeforeConnect', /connect\(\) resolved although call.signal was already aborted/]]],
    ['throws on an invalid DTMF digit', { throwOnBadDigit: true }, [['badInputSafe', /sendDtmf\('x'\) threw: invalid digit x/]]],
    ['reports an error event for an unknown tool call id', { errorOnUnknownToolResult: true }, [['badInputSafe', /unexpected error event: error\(invalid_request: unknown tool call/]]],
    ['leaks <end> into transcripts', { leakControlTokens: true }, [['transcripts', /control token leaked into a (user|agent) transcript/]]],
    ['never replies after a tool result', { ignoreToolResult: true }, [['toolRoundTrip', /waiting for a reply after submitToolResult/]]],
    ['tool arguments are not JSON', { badToolArguments: true }, [['toolRoundTrip', /tool_call argumentsJson is not JSON/]]],
    ['leaves a truncated reply open', { truncateLeavesReplyOpen: true }, [['bargeInTruncate', /waiting for response_done for the truncated reply resp_1/]]],
    [
      'ends the session when its provider connection drops',
      { endOnDrop: true },
      [['reconnect', /an error event arrived after the provider connection dropped: error\(connectivity: the provider connection dropped\)/]],
    ],
    [
      'speaks the last reply again after a reconnect',
      { replayAfterReconnect: true },
      [['reconnect', /after the provider connection dropped, before any new caller turn, the session emitted transcript\(agent, final: "Reply to turn 1\."\), audio\(resp_2, \d+\).*: a duplicate of the turn before the drop/]],
    ],
    [
      'speaks the last reply again with the first caller turn after a reconnect',
      { replayWithNextTurn: true },
      [['reconnect', /2 responses with audio after the provider connection dropped for one caller turn, 1 for the same turn before it: a duplicate of the turn before the drop/]],
    ],
    [
      'waits forever for a tool result that comes after 1 s',
      { lateToolResultLost: true },
      [['toolTimeout', /timed out after 1500 ms waiting for a reply after the tool timed out \(the host answered tool_call call_1 with its timeout error after 1500 ms\)/]],
    ],
    [
      'fails the call when a tool takes more than 1 s',
      { failOnSlowTool: true },
      [['toolTimeout', /an error event arrived while tool call call_1 was unanswered \(the host's tool timeout is 1500 ms\): error\(timeout: tool call call_1 got no result within 1000 ms\)/]],
    ],
    ['emits at an undeclared output rate', { undeclaredOutputRate: true }, [['replyAudio', /outputSampleRate 48000 is not among the declared \[24000\]/]]],
    [
      'emits empty audio events',
      { emptyAudioChunks: true },
      [
        ['replyAudio', /empty audio event/],
        ['earlyAudio', /empty audio event/],
        ['badInputSafe', /empty audio event/],
      ],
    ],
  ];
  for (const [title, defects, checks] of cases) {
    for (const [check, message] of checks) {
      test(`${title}: ${check} fails`, async () => {
        await expect(runStsConformanceCheck(check, setup(defects), { timeoutMs: 1500, quietMs: 300, toolTimeoutMs: 1500 })).rejects.toThrow(message);
      });
    }
  }

  test('the defects are specific: a defective adapter still passes the unrelated checks', async () => {
    await expect(runStsConformanceCheck('replyAudio', setup({ dropEarlyAudio: true }), { quietMs: 300 })).resolves.toEqual({ status: 'passed' });
    await expect(runStsConformanceCheck('replyAudio', setup({ sharedBuffer: true }), { quietMs: 300 })).resolves.toEqual({ status: 'passed' });
    await expect(runStsConformanceCheck('toolRoundTrip', setup({ endOnDrop: true, lateToolResultLost: true }), { quietMs: 300 })).resolves.toEqual({ status: 'passed' });
  });
});

describe('STS conformance self-test: skips', () => {
  test('toolRoundTrip and transcripts are skipped when the capability is absent or no tool is given', async () => {
    const withoutTool = await runStsConformanceCheck('toolRoundTrip', setup({}, false));
    expect(withoutTool).toMatchObject({ status: 'skipped', reason: expect.stringMatching(/harness\.tool/) as unknown });
    const capabilities: StsCapabilities = { ...referenceSts().capabilities, toolCalls: false, userTranscripts: false, agentTranscripts: false };
    const limited: StsConformanceSetup = () => Promise.resolve({ adapter: { ...referenceSts(), capabilities }, tool: { name: 'lookup_order' } });
    expect(await runStsConformanceCheck('toolRoundTrip', limited)).toMatchObject({ status: 'skipped' });
    expect(await runStsConformanceCheck('transcripts', limited)).toMatchObject({ status: 'skipped' });
    expect(await runStsConformanceCheck('toolTimeout', limited)).toMatchObject({ status: 'skipped', reason: 'capabilities.toolCalls is false' });
    expect(await runStsConformanceCheck('toolTimeout', setup({}, false))).toMatchObject({ status: 'skipped', reason: expect.stringMatching(/harness\.tool/) as unknown });
  });

  test('reconnect is skipped when the harness cannot drop the provider connection', async () => {
    const withoutHook = await runStsConformanceCheck('reconnect', setup({ endOnDrop: true }, true, false));
    expect(withoutHook).toMatchObject({ status: 'skipped', reason: expect.stringMatching(/dropConnection\(\)/) as unknown });
  });

  test('every check is listed', () => {
    expect(Object.keys(STS_CONFORMANCE_CHECKS)).toEqual([
      'replyAudio',
      'transcripts',
      'earlyAudio',
      'concurrentIsolation',
      'closeIdempotent',
      'abortBeforeConnect',
      'badInputSafe',
      'bargeInTruncate',
      'toolRoundTrip',
      'reconnect',
      'toolTimeout',
    ]);
  });
});
