import { pino } from 'pino';
import type { Logger } from 'pino';
import type { SampleRate, StsCallContext, StsEvent, StsSession, ToolSpec, VadAdapter, VadEvent, VadOptions, VadStream } from '@stsgate/core';
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

/** Sends caller audio as AVR Core's frames arrive: 20 ms frames, each in an event-loop turn of its own. */
export async function speakFrameByFrame(session: StsSession, samples: Int16Array): Promise<void> {
  const frame = (session.inputSampleRate * 20) / 1000;
  for (let offset = 0; offset < samples.length; offset += frame) {
    session.sendAudio(samples.subarray(offset, offset + frame));
    await new Promise((resolve) => setImmediate(resolve));
  }
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

/**
 * A frame-energy VAD with the core contract (a stand-in for Silero): 20 ms frames above -40 dBFS are speech; speech
 * is confirmed after `minSpeechMs` and ends after `minSilenceMs` of quiet. Records how it was opened.
 */
export class EnergyTestVad implements VadAdapter {
  readonly id = 'energy-test';
  readonly capabilities = { inputSampleRates: [8000, 16000] as SampleRate[] };
  readonly opened: { rate: SampleRate; options: Partial<VadOptions> | undefined }[] = [];
  streams = 0;
  closed = 0;
  /** Every `process()` from now on rejects (a broken model). */
  fail = false;

  open(rate: SampleRate, options?: Partial<VadOptions>): Promise<VadStream> {
    this.opened.push({ rate, options });
    this.streams++;
    const minSpeechMs = 100;
    const minSilenceMs = options?.minSilenceMs ?? 500;
    const frame = (rate * 20) / 1000;
    let pending = new Int16Array(0);
    let clockMs = 0;
    let speaking = false;
    let voicedMs = 0;
    let startMs = 0;
    let silenceMs = 0;
    return Promise.resolve({
      sampleRate: rate,
      process: (samples: Int16Array) => {
        if (this.fail) return Promise.reject(new Error('onnxruntime: invalid tensor'));
        const all = new Int16Array(pending.length + samples.length);
        all.set(pending);
        all.set(samples, pending.length);
        const events: VadEvent[] = [];
        let offset = 0;
        for (; offset + frame <= all.length; offset += frame) {
          let energy = 0;
          for (let i = offset; i < offset + frame; i++) energy += (all[i] as number) ** 2;
          const voiced = 20 * Math.log10(Math.sqrt(energy / frame) / 32768 + 1e-9) > -40;
          if (!speaking) {
            if (voiced) {
              if (voicedMs === 0) startMs = clockMs;
              voicedMs += 20;
              if (voicedMs >= minSpeechMs) {
                speaking = true;
                silenceMs = 0;
                events.push({ type: 'speech_start', atMs: startMs });
              }
            } else voicedMs = 0;
          } else if (voiced) silenceMs = 0;
          else {
            silenceMs += 20;
            if (silenceMs >= minSilenceMs) {
              speaking = false;
              voicedMs = 0;
              events.push({ type: 'speech_end', atMs: clockMs + 20, audio: new Int16Array(0) });
            }
          }
          clockMs += 20;
        }
        pending = all.slice(offset);
        return Promise.resolve(events);
      },
      reset: () => undefined,
      close: () => {
        this.closed++;
        return Promise.resolve();
      },
    });
  }
}
