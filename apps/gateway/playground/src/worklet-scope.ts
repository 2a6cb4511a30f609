import { SAMPLE_RATES, type SampleRate } from '../../../../packages/core/src/contracts/common.js';

/**
 * The globals of an AudioWorkletGlobalScope, which TypeScript's DOM library does not describe. Reached through
 * `globalThis` rather than declared as ambient globals, so the page's own code cannot use them by mistake.
 */
export interface WorkletProcessor {
  readonly port: MessagePort;
  process(inputs: Float32Array[][], outputs: Float32Array[][]): boolean;
}

interface AudioWorkletScope {
  /** The AudioContext's rate, in Hz. */
  readonly sampleRate: number;
  /** Context time (s) of the render quantum being processed. */
  readonly currentTime: number;
  readonly AudioWorkletProcessor: abstract new () => { readonly port: MessagePort };
  registerProcessor(name: string, processor: new () => WorkletProcessor): void;
}

export const worklet = globalThis as unknown as AudioWorkletScope;

/** Samples per render quantum (Web Audio's fixed block size). */
export const RENDER_QUANTUM = 128;

/** The context's rate as one the resampler converts (the page only opens contexts at such rates). */
export function contextSampleRate(): SampleRate {
  const rate = SAMPLE_RATES.find((supported) => supported === worklet.sampleRate);
  if (rate === undefined) throw new RangeError(`AudioContext rate ${worklet.sampleRate} Hz is not one of ${SAMPLE_RATES.join(', ')}`);
  return rate;
}
