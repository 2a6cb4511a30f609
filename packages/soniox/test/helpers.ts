import { pino } from 'pino';
import type { Logger } from 'pino';
import type { AsrEvent, AsrStream, CallContext } from '@stsgate/core';
import { chunkPcm, fixturePath, readWavAs8k, silence } from '@stsgate/testkit';
import type { FixtureBaseName } from '@stsgate/testkit';

export { memoryLogger, type LogLine } from '@stsgate/testkit';

export function callContext(options: { logger?: Logger; signal?: AbortSignal; callId?: string } = {}): CallContext {
  return {
    callId: options.callId ?? 'call-uuid-1',
    metadata: { from: '+15550100', to: '600' },
    logger: options.logger ?? pino({ enabled: false }),
    signal: options.signal ?? new AbortController().signal,
  };
}

/** Consumes a stream's events in the background; tests wait for the first event matching a predicate. */
export class AsrEventLog {
  readonly all: AsrEvent[] = [];
  ended = false;
  failure: unknown;
  private readonly waiters = new Set<() => void>();
  readonly done: Promise<void>;

  constructor(stream: AsrStream) {
    this.done = (async () => {
      try {
        for await (const event of stream.events) {
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

  /** Resolves once `probe` returns something truthy (re-checked on every event); rejects if the stream ends first. */
  until<T>(probe: () => T | undefined | null | false, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const check = (): boolean => {
        const value = probe();
        if (value !== undefined && value !== null && value !== false) {
          resolve(value);
          return true;
        }
        if (this.ended) {
          reject(new Error(`stream ended before ${what}; events: ${JSON.stringify(this.all.map((e) => e.type))}`));
          return true;
        }
        return false;
      };
      if (check()) return;
      const waiter = (): void => {
        if (check()) this.waiters.delete(waiter);
      };
      this.waiters.add(waiter);
    });
  }

  utterances(): string[] {
    return this.all.flatMap((event) => (event.type === 'end_of_utterance' ? [event.text] : []));
  }

  errors(): Extract<AsrEvent, { type: 'error' }>[] {
    return this.all.filter((event): event is Extract<AsrEvent, { type: 'error' }> => event.type === 'error');
  }

  untilUtterances(count: number): Promise<string[]> {
    return this.until(() => (this.utterances().length >= count ? this.utterances() : undefined), `${count} end_of_utterance`);
  }
}

export const FRAME = 160; // 20 ms at 8 kHz, what AVR sends

export function fixture(name: FixtureBaseName): Int16Array {
  return readWavAs8k(fixturePath(name));
}

/** Pushes `samples` in 20 ms frames. */
export function pushFrames(stream: AsrStream, samples: Int16Array): void {
  for (const frame of chunkPcm(samples, FRAME)) stream.pushAudio(frame);
}

/** A fixture with silence around it, long enough for the emulator's endpoint (500 ms) to fire. */
export function spoken(name: FixtureBaseName, trailingMs = 1000): Int16Array {
  const speech = fixture(name);
  const out = new Int16Array(speech.length + silence(200).length + silence(trailingMs).length);
  out.set(speech, silence(200).length);
  return out;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
