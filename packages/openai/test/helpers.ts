import { pino } from 'pino';
import type { Logger } from 'pino';
import type { StsCallContext, StsEvent, StsSession, ToolSpec } from '@stsgate/core';
import { EventLog as BaseEventLog } from '@stsgate/testkit';
import type { LogLine } from '@stsgate/testkit';

export { memoryLogger, type LogLine } from '@stsgate/testkit';

export function callContext(options: { logger?: Logger; tools?: readonly ToolSpec[]; signal?: AbortSignal; callId?: string } = {}): StsCallContext {
  return {
    callId: options.callId ?? 'call-uuid-1',
    metadata: { from: '+15550100', to: '600' },
    logger: options.logger ?? pino({ enabled: false }),
    signal: options.signal ?? new AbortController().signal,
    tools: options.tools ?? [],
  };
}

/** The test kit's EventLog over a session's events, waiting for the first event (from index `from`) matching a predicate. */
export class EventLog extends BaseEventLog<StsEvent> {
  constructor(session: StsSession) {
    super(session.events);
  }

  /** Resolves with the first event (at index >= `from`) matching `predicate`; the timeout is only a safety net. */
  waitFor<T extends StsEvent>(predicate: (event: StsEvent) => event is T, from?: number, timeoutMs?: number): Promise<T>;
  waitFor(predicate: (event: StsEvent) => boolean, from?: number, timeoutMs?: number): Promise<StsEvent>;
  waitFor(predicate: (event: StsEvent) => boolean, from = 0, timeoutMs = 8000): Promise<StsEvent> {
    return this.until(() => this.all.slice(from).find(predicate), 'a matching event', timeoutMs);
  }

  waitForEnd(timeoutMs = 8000): Promise<void> {
    return this.until(() => this.ended, 'the end of the events', timeoutMs).then(() => undefined);
  }
}

export const isType =
  <K extends StsEvent['type']>(type: K) =>
  (event: StsEvent): event is Extract<StsEvent, { type: K }> =>
    event.type === type;

/** Sends caller audio the way the host does: 20 ms frames, without waiting. */
export function speak(session: StsSession, samples: Int16Array): void {
  const frame = (session.inputSampleRate * 20) / 1000;
  for (let offset = 0; offset < samples.length; offset += frame) session.sendAudio(samples.subarray(offset, offset + frame));
}

/** Polls the captured log lines until one matches (the timeout is only a safety net). */
export function waitForLog(lines: readonly LogLine[], predicate: (line: LogLine) => boolean, from = 0, timeoutMs = 8000): Promise<LogLine> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const poll = setInterval(() => {
      const found = lines.slice(from).find(predicate);
      if (found !== undefined) {
        clearInterval(poll);
        resolve(found);
      } else if (Date.now() - started > timeoutMs) {
        clearInterval(poll);
        reject(new Error(`no matching log line within ${timeoutMs} ms`));
      }
    }, 5);
  });
}
