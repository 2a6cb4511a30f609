import { pino } from 'pino';
import type { Logger } from 'pino';
import type { CallContext, StsCallContext, ToolSpec } from '@stsgate/core';
import { chunkPcm, concatPcm, fixturePath, readWavAs8k, silence } from '@stsgate/testkit';
import type { FixtureBaseName } from '@stsgate/testkit';

export { memoryLogger, type LogLine } from '@stsgate/testkit';

export function callContext(options: { logger?: Logger; signal?: AbortSignal; callId?: string; tools?: readonly ToolSpec[] } = {}): StsCallContext & CallContext {
  return {
    callId: options.callId ?? 'call-uuid-1',
    metadata: { from: '+15550100', to: '600' },
    logger: options.logger ?? pino({ enabled: false }),
    signal: options.signal ?? new AbortController().signal,
    tools: options.tools ?? [],
  };
}

export const FRAME = 160; // 20 ms at 8 kHz, what AVR sends

/** A fixture with 200 ms of silence before and `trailingMs` after. */
export function spoken(name: FixtureBaseName, trailingMs = 1200): Int16Array {
  return concatPcm(silence(200), readWavAs8k(fixturePath(name)), silence(trailingMs));
}

export function frames(samples: Int16Array): Int16Array[] {
  return chunkPcm(samples, FRAME);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
