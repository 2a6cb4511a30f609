import { z } from 'zod';
import { ConfigError, ProviderError, defineAdapter, envInt, envNumber, toProviderError, zodProblems } from '@stsgate/core';
import type {
  AdapterContext,
  AdapterDefinition,
  CallContext,
  Env,
  StsAdapter,
  StsCapabilities,
  StsSession,
  VadAdapter,
  VadOptions,
} from '@stsgate/core';
import { LOOPBACK_RATE, LoopbackSession } from './session.js';

const PROVIDER = 'loopback';

export const LOOPBACK_CAPABILITIES: StsCapabilities = {
  inputSampleRates: [8000],
  outputSampleRates: [8000],
  encodings: ['pcm_s16le'],
  serverTurnDetection: true,
  userTranscripts: false,
  agentTranscripts: false,
  truncation: true,
  toolCalls: false,
  dtmf: true,
};

export interface LoopbackOptions {
  /** Finds the caller's utterances; opened at 8 kHz once per call. */
  readonly vad: VadAdapter;
  readonly vadOptions?: Partial<VadOptions>;
  /** Longer utterances are cut and played as they stand (default 15 000). */
  readonly maxUtteranceMs?: number;
  /** Gain applied to the echoed speech (default 0 dB); DTMF tones are not affected. */
  readonly playbackGainDb?: number;
  /** Duration of each emitted `audio` event (default 100 ms). */
  readonly chunkMs?: number;
}

/** The loopback diagnostic: every caller utterance is played back once the caller stops talking. */
export function createLoopbackSts(options: LoopbackOptions): StsAdapter {
  const { vad, vadOptions, maxUtteranceMs = 15_000, playbackGainDb = 0, chunkMs = 100 } = options;
  const problems: string[] = [];
  if (!(Number.isFinite(maxUtteranceMs) && maxUtteranceMs >= 1000)) problems.push(`maxUtteranceMs must be >= 1000, got ${maxUtteranceMs}`);
  if (!(Number.isFinite(playbackGainDb) && Math.abs(playbackGainDb) <= 40)) problems.push(`playbackGainDb must be in [-40, 40], got ${playbackGainDb}`);
  if (!(Number.isFinite(chunkMs) && chunkMs >= 10 && chunkMs <= 1000)) problems.push(`chunkMs must be in [10, 1000], got ${chunkMs}`);
  if (problems.length > 0) throw new ProviderError(PROVIDER, 'invalid_request', `invalid loopback options: ${problems.join('; ')}`);

  const settings = {
    maxUtteranceMs,
    gain: 10 ** (playbackGainDb / 20),
    chunkSamples: Math.round((chunkMs * LOOPBACK_RATE) / 1000),
    padSamples: Math.round(((vadOptions?.speechPadMs ?? 200) * LOOPBACK_RATE) / 1000),
  };

  return {
    id: PROVIDER,
    capabilities: LOOPBACK_CAPABILITIES,
    async connect(call: CallContext): Promise<StsSession> {
      const ended = (): ProviderError => new ProviderError(PROVIDER, 'closed', 'the call ended before the session opened', { retryable: false });
      if (call.signal.aborted) throw ended();
      let stream;
      try {
        stream = await vad.open(LOOPBACK_RATE, vadOptions);
      } catch (error) {
        throw toProviderError(PROVIDER, error);
      }
      if (call.signal.aborted) {
        await stream.close();
        throw ended();
      }
      call.logger.debug({ provider: PROVIDER, vad: vad.id, maxUtteranceMs, playbackGainDb }, 'loopback session opened');
      return new LoopbackSession(stream, call, settings);
    },
  };
}

export const loopbackEnvSchema = z.object({
  LOOPBACK_MAX_UTTERANCE_MS: envInt(1000, 120_000, 15_000),
  LOOPBACK_GAIN_DB: envNumber(-40, 40, 0),
});

function isVadDefinition(vad: VadAdapter | AdapterDefinition<'vad'>): vad is AdapterDefinition<'vad'> {
  return 'fromEnv' in vad;
}

/**
 * The `loopback` STS provider for a registry. Give it a VAD adapter instance (shared by every call) or a VAD
 * definition (built from the same environment, e.g. `defineSileroVad()` reads `VAD_*`).
 * Environment: `LOOPBACK_MAX_UTTERANCE_MS` (default 15000), `LOOPBACK_GAIN_DB` (default 0).
 */
export function defineLoopbackSts(
  vad: VadAdapter | AdapterDefinition<'vad'>,
  options: { readonly vadOptions?: Partial<VadOptions> } = {},
): AdapterDefinition<'sts'> {
  const description = 'Loopback diagnostic: plays each caller utterance (and DTMF digit) back; no API key';
  const inner = (vadAdapter: VadAdapter): AdapterDefinition<'sts'> =>
    defineAdapter({
      kind: 'sts',
      id: PROVIDER,
      description,
      defaultPort: 6030,
      envSchema: loopbackEnvSchema,
      create: (config) =>
        createLoopbackSts({
          vad: vadAdapter,
          ...(options.vadOptions === undefined ? {} : { vadOptions: options.vadOptions }),
          maxUtteranceMs: config.LOOPBACK_MAX_UTTERANCE_MS,
          playbackGainDb: config.LOOPBACK_GAIN_DB,
        }),
    });

  return {
    kind: 'sts',
    id: PROVIDER,
    description,
    defaultPort: 6030,
    fromEnv(env: Env, context: AdapterContext): StsAdapter {
      // Report the loopback's and the VAD's configuration problems together.
      const parsed = loopbackEnvSchema.safeParse(env);
      const problems = parsed.success ? [] : zodProblems(parsed.error);
      let vadAdapter: VadAdapter | undefined;
      if (isVadDefinition(vad)) {
        try {
          vadAdapter = vad.fromEnv(env, context);
        } catch (error) {
          if (!(error instanceof ConfigError)) throw error;
          problems.push(...error.problems.map((p) => `VAD (${vad.id}): ${p}`));
        }
      } else {
        vadAdapter = vad;
      }
      if (problems.length > 0 || vadAdapter === undefined) throw new ConfigError(`sts provider "${PROVIDER}"`, problems);
      return inner(vadAdapter).fromEnv(env, context);
    },
  };
}
