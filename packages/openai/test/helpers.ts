import { pino } from 'pino';
import type { Logger } from 'pino';
import type { StsCallContext, StsEvent, StsSession, ToolSpec } from '@stsgate/core';
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

/** Consumes a session's events in the background; tests wait for the first event matching a predicate. */
export class EventLog {
  readonly all: StsEvent[] = [];
  ended = false;
  failure: unknown;
  private readonly waiters = new Set<() => void>();
  readonly done: Promise<void>;

  constructor(session: StsSession) {
    this.done = (async () => {
      try {
        for await (const event of session.events) {
          this.all.push(event);
          this.notify();
        }
      } catch (error) {
        this.failure = error;
      } finally {
        this.ended = true;
        this.notify();
      }
    })();
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  /** Resolves with the first event (at index >= `from`) matching `predicate`; the timeout is only a safety net. */
  waitFor<T extends StsEvent>(predicate: (event: StsEvent) => event is T, from?: number, timeoutMs?: number): Promise<T>;
  waitFor(predicate: (event: StsEvent) => boolean, from?: number, timeoutMs?: number): Promise<StsEvent>;
  waitFor(predicate: (event: StsEvent) => boolean, from = 0, timeoutMs = 8000): Promise<StsEvent> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const found = this.all.slice(from).find(predicate);
        if (found !== undefined) {
          finish();
          resolve(found);
          return true;
        }
        if (this.ended) {
          finish();
          reject(new Error(`events ended without a match (${this.all.map((e) => e.type).join(',')})`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`no matching event within ${timeoutMs} ms (${this.all.map((e) => e.type).join(',')})`));
      }, timeoutMs);
      const finish = (): void => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
      };
      const waiter = (): void => void check();
      this.waiters.add(waiter);
      check();
    });
  }

  waitForEnd(timeoutMs = 8000): Promise<void> {
    return this.waitFor(() => false, 0, timeoutMs).then(
      () => undefined,
      (error: unknown) => {
        if (this.ended) return;
        throw error;
      },
    );
  }

  of<K extends StsEvent['type']>(type: K): Extract<StsEvent, { type: K }>[] {
    return this.all.filter((event): event is Extract<StsEvent, { type: K }> => event.type === type);
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
