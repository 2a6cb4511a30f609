import { pino } from 'pino';
import type { Logger } from 'pino';
import type { AsrEvent, AsrStream, CallContext } from '@stsgate/core';
import { EventLog, chunkPcm, fixturePath, readWavAs8k, silence } from '@stsgate/testkit';
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

/** The test kit's EventLog over an ASR stream's events, with utterance helpers. */
export class AsrEventLog extends EventLog<AsrEvent> {
  constructor(stream: AsrStream) {
    super(stream.events);
  }

  utterances(): string[] {
    return this.all.flatMap((event) => (event.type === 'end_of_utterance' ? [event.text] : []));
  }

  errors(): Extract<AsrEvent, { type: 'error' }>[] {
    return this.of('error');
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
