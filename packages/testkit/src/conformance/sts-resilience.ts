/**
 * STS conformance checks of what a call must survive: its provider connection dropping (`reconnect`) and a tool that
 * never answers (`toolTimeout`). Registered with the other checks in sts.ts, whose header describes them all.
 *
 * The tool contract (core's StsSession, ToolRunner): an STS session does not run tools. It emits `tool_call`; the host
 * runs the tool with its ToolRunner and answers with `submitToolResult`. The runner bounds each tool by its timeout and
 * then answers with an error text (the agent's ToolSet: `Error: tool "<name>" timed out after <N> ms`), so what a
 * session owes is to hold the call open that long and go on with that text. `toolTimeout` plays that host.
 */
import type { StsAdapter, StsEvent, StsSession } from '@stsgate/core';
import {
  PASSED,
  SETTLE_MS,
  attempt,
  callerTurn,
  quietOf,
  replyAfter,
  sendPaced,
  skipped,
  sleep,
  summarise,
  timeoutOf,
  toolSpec,
  withSession,
  withTimeout,
  type Reply,
  type StsCheck,
  type StsConformanceOptions,
  type StsConformanceTool,
  type StsRecorder,
} from './sts-support.js';

/** Default of `options.toolTimeoutMs`. */
const DEFAULT_TOOL_TIMEOUT_MS = 3000;

type Role = 'user' | 'agent';

function declaredRoles(adapter: StsAdapter): Role[] {
  return [...(adapter.capabilities.userTranscripts ? ['user' as const] : []), ...(adapter.capabilities.agentTranscripts ? ['agent' as const] : [])];
}

function isFinal(event: StsEvent, role: Role): boolean {
  return event.type === 'transcript' && event.role === role && event.final && event.text.trim() !== '';
}

/** The reply to a turn sent at `from`, once a final transcript of each declared role has arrived after `from` too. */
function replyWithTranscripts(events: readonly StsEvent[], from: number, roles: readonly Role[]): Reply | undefined {
  const since = events.slice(from);
  if (!roles.every((role) => since.some((event) => isFinal(event, role)))) return undefined;
  return replyAfter(events, from);
}

/**
 * Waits as long as the reply takes to play, then until the session is quiet: the caller speaks again once they have
 * heard it (an adapter may take speech over a reply it believes still audible for a barge-in, not for a new turn).
 */
async function untilHeard(recorder: StsRecorder, session: StsSession, reply: Reply, options: StsConformanceOptions, what: string): Promise<void> {
  await sleep((reply.samples * 1000) / session.outputSampleRate);
  await recorder.untilQuiet(quietOf(options), timeoutOf(options), what);
}

function turnPart(roles: readonly Role[]): string {
  return roles.length === 0 ? '' : ` and a final ${roles.join(' and ')} transcript`;
}

/** What a turn produced: responses with audio, final transcripts per role. */
function tally(events: readonly StsEvent[]): { replies: number; user: number; agent: number } {
  const replies = new Set<string>();
  let user = 0;
  let agent = 0;
  for (const event of events) {
    if (event.type === 'audio') replies.add(event.responseId);
    if (isFinal(event, 'user')) user++;
    if (isFinal(event, 'agent')) agent++;
  }
  return { replies: replies.size, user, agent };
}

/** Events that answer or transcribe a caller turn. */
function answersATurn(event: StsEvent): boolean {
  return event.type === 'audio' || event.type === 'response_done' || event.type === 'tool_call' || (event.type === 'transcript' && event.final);
}

export const reconnect: StsCheck = async (harness, options) => {
  const dropConnection = harness.dropConnection?.bind(harness);
  if (dropConnection === undefined) return skipped('the harness has no dropConnection() hook to drop the provider connection mid-call');
  const timeoutMs = timeoutOf(options);
  const quietMs = quietOf(options);
  const roles = declaredRoles(harness.adapter);
  await withSession(harness, 0, async (session, recorder) => {
    await sleep(SETTLE_MS);
    const first = recorder.events.length;
    await sendPaced(session, callerTurn(harness), options);
    const reply = await recorder.waitFor((events) => replyWithTranscripts(events, first, roles), timeoutMs, `a reply${turnPart(roles)} to the caller turn before the drop`);
    await untilHeard(recorder, session, reply, options, 'the session to be quiet before the drop');
    const dropAt = recorder.events.length;
    const before = recorder.events.slice(first, dropAt);

    await withTimeout(dropConnection(), timeoutMs, 'dropConnection()');
    // The session goes on (reconnecting meanwhile), and nothing answers or transcribes the turn before the drop again.
    await recorder.staysUp('after the provider connection dropped', quietMs, quietMs, timeoutMs);
    const replayed = recorder.events.slice(dropAt).filter(answersATurn);
    if (replayed.length > 0) {
      const shown = `${replayed.slice(0, 4).map(summarise).join(', ')}${replayed.length > 4 ? `, ... (${String(replayed.length)} events)` : ''}`;
      throw new Error(`after the provider connection dropped, before any new caller turn, the session emitted ${shown}: a duplicate of the turn before the drop; got ${recorder.describe()}`);
    }

    const next = recorder.events.length;
    await sendPaced(session, callerTurn(harness), options);
    await recorder.waitFor((events) => replyWithTranscripts(events, next, roles), timeoutMs, `a reply${turnPart(roles)} to a caller turn after the provider connection dropped`);
    await recorder.untilQuiet(quietMs, timeoutMs, 'the session to be quiet after the reply that followed the drop');
    // The same caller turn before and after: more replies or final transcripts after the drop are a replayed turn
    // (audio for a response of the turn before the drop would have failed as audio after its response_done).
    const [was, now] = [tally(before), tally(recorder.events.slice(dropAt))];
    for (const key of ['replies', 'user', 'agent'] as const) {
      if (now[key] > was[key]) {
        const what = key === 'replies' ? 'responses with audio' : `final ${key} transcripts`;
        throw new Error(
          `${String(now[key])} ${what} after the provider connection dropped for one caller turn, ${String(was[key])} for the same turn before it: a duplicate of the turn before the drop; got ${recorder.describe()}`,
        );
      }
    }
  });
  return PASSED;
};

/** As the host: answers every tool_call from event `from` on at once with the tool's output. */
function answerToolCalls(session: StsSession, recorder: StsRecorder, from: number, tool: StsConformanceTool): () => void {
  return recorder.follow(from, (event) => {
    if (event.type === 'tool_call') attempt('submitToolResult', () => session.submitToolResult(event.callId, tool.output ?? '{"ok":true}'));
  });
}

export const toolTimeout: StsCheck = async (harness, options) => {
  if (!harness.adapter.capabilities.toolCalls) return skipped('capabilities.toolCalls is false');
  const tool = harness.tool;
  if (tool === undefined) return skipped('the harness names no tool (harness.tool) for the provider to call');
  const timeoutMs = timeoutOf(options);
  const toolTimeoutMs = options.toolTimeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS;
  await withSession(
    harness,
    0,
    async (session, recorder) => {
      await sleep(SETTLE_MS);
      const from = recorder.events.length;
      await sendPaced(session, callerTurn(harness), options);
      const call = await recorder.waitForToolCall(from, tool.name, timeoutMs);
      // The tool never answers; the session holds the call open until the host's runner gives up on it.
      await recorder.staysUp(`while tool call ${call.callId} was unanswered (the host's tool timeout is ${String(toolTimeoutMs)} ms)`, toolTimeoutMs, 0, toolTimeoutMs + timeoutMs);
      const afterTimeout = recorder.events.length;
      attempt('submitToolResult(the timeout error)', () => session.submitToolResult(call.callId, `Error: tool "${tool.name}" timed out after ${String(toolTimeoutMs)} ms`));
      const reply = await recorder.waitForReply(
        afterTimeout,
        timeoutMs,
        `a reply after the tool timed out (the host answered tool_call ${call.callId} with its timeout error after ${String(toolTimeoutMs)} ms)`,
      );
      await untilHeard(recorder, session, reply, options, 'the session to be quiet after the reply to the tool timeout');
      // The call goes on: the next caller turn gets a reply (a tool it calls now is answered at once).
      const next = recorder.events.length;
      const stop = answerToolCalls(session, recorder, next, tool);
      try {
        await sendPaced(session, callerTurn(harness), options);
        await recorder.waitForReply(next, timeoutMs, 'a reply to the caller turn after the tool timeout');
      } finally {
        stop();
      }
    },
    [toolSpec(tool)],
  );
  return PASSED;
};
