/** Registry definitions: the OpenAI adapters configured from AVR's environment variables. */
import { z } from 'zod';
import type { AdapterDefinition, BuildContext, StsAdapter, VadAdapter } from '@stsgate/core';
import { checkInstructionFile, instructionSourceFromEnv, instructionsEnv, resolveInstructions } from '@stsgate/agent';
import type { InstructionSource } from '@stsgate/agent';
import { DEFAULT_DTMF_MESSAGE, DEFAULT_REALTIME_MODEL, DEFAULT_REALTIME_URL, DEFAULT_VOICE, createRealtimeAdapter } from './realtime/adapter.js';
import type { OpenAiRealtimeOptions } from './realtime/adapter.js';
import { openAiProfile } from './realtime/profile.js';
import type { RealtimeProfile } from './realtime/profile.js';
import type { TurnDetectionSetting, VadTuning } from './realtime/wire.js';
import { DEFAULT_LLM_MODEL, createOpenAiLlm } from './llm.js';
import { DEFAULT_TTS_MODEL, DEFAULT_TTS_VOICE, createOpenAiTts } from './tts.js';
import { ConfigError, blankToUndefined, defineAdapter, envBoolean, envEnum, envInt, envNumber, envOptionalEnum, envText, envUrl } from '@stsgate/core';
import { envTokens, isRealtimeModel } from './env.js';

/** Used when no OPENAI_*INSTRUCTIONS variable is set. */
export const DEFAULT_INSTRUCTIONS =
  'You are a helpful voice assistant answering a phone call. Keep your answers short and conversational, and speak in the language of the caller.';

const apiKey = z.preprocess(blankToUndefined, z.string({ error: 'OPENAI_API_KEY is required' }).trim());

const realtimeShape = {
  OPENAI_API_KEY: apiKey,
  OPENAI_REALTIME_URL: envUrl(['ws:', 'wss:', 'http:', 'https:']).transform((url) => url ?? DEFAULT_REALTIME_URL),
  OPENAI_MODEL: envText().transform((model) => model ?? DEFAULT_REALTIME_MODEL),
  OPENAI_VOICE: envText().transform((voice) => voice ?? DEFAULT_VOICE),
  OPENAI_AUDIO_FORMAT: envEnum(['pcmu', 'pcm24'], 'pcmu'),
  OPENAI_TRANSCRIPTION_MODEL: envText(),
  OPENAI_LANGUAGE: envText(),
  OPENAI_TURN_DETECTION: envEnum(['server_vad', 'semantic_vad', 'none'], 'server_vad'),
  OPENAI_TURN_DETECTION_EAGERNESS: envOptionalEnum(['low', 'medium', 'high', 'auto']),
  OPENAI_TURN_DETECTION_THRESHOLD: envNumber(0, 1),
  OPENAI_TURN_DETECTION_SILENCE_MS: envInt(0, 10_000),
  OPENAI_TURN_DETECTION_PREFIX_PADDING_MS: envInt(0, 10_000),
  OPENAI_NOISE_REDUCTION: envOptionalEnum(['near_field', 'far_field', 'none']),
  /** GA: 1..4096 or inf. */
  OPENAI_MAX_TOKENS: envTokens(4096),
  /** Accepted (any value) so AVR env files keep working, never sent: GA rejects session.temperature. */
  OPENAI_TEMPERATURE: envText(),
  OPENAI_REASONING_EFFORT: envOptionalEnum(['minimal', 'low', 'medium', 'high', 'xhigh']),
  OPENAI_GREETING: envBoolean(true),
  /** Spoken first instead of the model's own greeting (templated with the call's metadata). */
  OPENAI_WELCOME_MESSAGE: envText(),
  OPENAI_DTMF_MESSAGE: envText().refine((text) => text === undefined || text.includes('{{digit}}'), 'must contain {{digit}}'),
  /** ms of caller audio per append; unset or 0: each frame as it arrives (stsgate's own setting, not AVR's). */
  OPENAI_INPUT_BATCH_MS: envInt(0, 500),
};

/** Environment of the `openai` STS provider (AVR's names), with the OPENAI_* instruction variables. */
export const openAiRealtimeEnvSchema = z.object({ ...realtimeShape, ...instructionsEnv('OPENAI').shape });
export type OpenAiRealtimeEnv = z.output<typeof openAiRealtimeEnvSchema>;

/** `auto`, `NULL` and empty mean "no language hint" (avr-app's convention). */
export function languageHint(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const lower = value.toLowerCase();
  return lower === 'auto' || lower === 'null' || lower === 'none' ? undefined : value;
}

/** The VAD tuning the variables set (unset ones are left out: the provider's or the gateway VAD's defaults apply). */
export function vadTuningFromEnv(threshold: number | undefined, silenceMs: number | undefined, prefixPaddingMs: number | undefined): VadTuning {
  return {
    ...(threshold === undefined ? {} : { threshold }),
    ...(silenceMs === undefined ? {} : { silenceDurationMs: silenceMs }),
    ...(prefixPaddingMs === undefined ? {} : { prefixPaddingMs }),
  };
}

function turnDetection(env: OpenAiRealtimeEnv): TurnDetectionSetting {
  // Unset values take the documented defaults (wire.ts DEFAULT_VAD_TUNING), for the server's VAD or the gateway's.
  const tuning = vadTuningFromEnv(env.OPENAI_TURN_DETECTION_THRESHOLD, env.OPENAI_TURN_DETECTION_SILENCE_MS, env.OPENAI_TURN_DETECTION_PREFIX_PADDING_MS);
  switch (env.OPENAI_TURN_DETECTION) {
    case 'none':
      return { type: 'none', ...tuning };
    case 'semantic_vad':
      return { type: 'semantic_vad', ...(env.OPENAI_TURN_DETECTION_EAGERNESS === undefined ? {} : { eagerness: env.OPENAI_TURN_DETECTION_EAGERNESS }) };
    case 'server_vad':
      return { type: 'server_vad', ...tuning };
  }
}

/** The VAD id that takes the turns with OPENAI_TURN_DETECTION=none (the gateway registry's). */
const TURN_VAD = 'silero';

/** Adapter options as a provider's variables give them: the instructions as their source, resolved per call. */
export interface RealtimeEnvOptions extends Omit<OpenAiRealtimeOptions, 'instructions' | 'turnDetection'> {
  readonly instructions: InstructionSource;
  readonly turnDetection: TurnDetectionSetting;
}

/**
 * The Realtime adapter of `profile` from what its variables say: the instructions resolved per call from their source
 * (a missing instructions file is a configuration error), and with turn detection `none` the registry's VAD
 * (`vad:silero`, VAD_* variables) takes the caller's turns. `turnVariable` names the variable in that error;
 * `overrides` win over everything.
 */
export function realtimeFromEnv(
  profile: RealtimeProfile,
  options: RealtimeEnvOptions,
  context: BuildContext,
  turnVariable: string,
  overrides: Partial<OpenAiRealtimeOptions> = {},
): StsAdapter {
  const scope = `sts provider "${profile.id}"`;
  checkInstructionFile(options.instructions, scope);
  let vad: VadAdapter | undefined = overrides.vad ?? options.vad;
  if (options.turnDetection.type === 'none' && vad === undefined) {
    if (context.resolve === undefined) {
      throw new ConfigError(scope, [
        `${turnVariable}=none needs the gateway's VAD (vad:${TURN_VAD}) to end the caller's turns, and only an adapter registry can build it`,
      ]);
    }
    vad = context.resolve('vad', TURN_VAD);
  }
  const source = options.instructions;
  return createRealtimeAdapter(profile, {
    ...options,
    instructions: (call) => resolveInstructions(source, call),
    ...(vad === undefined ? {} : { vad }),
    ...overrides,
  });
}

/**
 * The `openai` STS provider (OpenAI Realtime, GA protocol) for a registry; AVR's avr-sts-openai port 6030.
 * OPENAI_TEMPERATURE is accepted for compatibility but never sent (GA rejects it); a warning says so.
 * OPENAI_TURN_DETECTION=none builds the registry's `vad:silero` (VAD_* variables) to take the caller's turns.
 */
export function defineOpenAiRealtime(overrides: Partial<OpenAiRealtimeOptions> = {}): AdapterDefinition<'sts'> {
  return defineAdapter({
    kind: 'sts',
    id: 'openai',
    description: 'OpenAI Realtime (GA): speech-to-speech over WebSocket, G.711 mu-law or 24 kHz PCM',
    defaultPort: 6030,
    envSchema: openAiRealtimeEnvSchema,
    create(env, context) {
      if (env.OPENAI_TEMPERATURE !== undefined) {
        context.logger.warn(
          { provider: 'openai', temperature: env.OPENAI_TEMPERATURE },
          'OPENAI_TEMPERATURE is ignored: the Realtime GA API rejects session.temperature',
        );
      }
      let reasoningEffort = env.OPENAI_REASONING_EFFORT;
      if (reasoningEffort !== undefined && !env.OPENAI_MODEL.startsWith('gpt-realtime-2')) {
        context.logger.warn({ provider: 'openai', model: env.OPENAI_MODEL }, 'OPENAI_REASONING_EFFORT is ignored: only gpt-realtime-2 models reason');
        reasoningEffort = undefined;
      }
      const transcriptionModel = env.OPENAI_TRANSCRIPTION_MODEL ?? 'whisper-1';
      const language = languageHint(env.OPENAI_LANGUAGE);
      const transcription =
        ['none', 'off', 'false'].includes(transcriptionModel.toLowerCase())
          ? null
          : { model: transcriptionModel, ...(language === undefined ? {} : { language }) };
      const options: RealtimeEnvOptions = {
        apiKey: env.OPENAI_API_KEY,
        url: env.OPENAI_REALTIME_URL,
        model: env.OPENAI_MODEL,
        voice: env.OPENAI_VOICE,
        audioFormat: env.OPENAI_AUDIO_FORMAT,
        instructions: instructionSourceFromEnv(env, DEFAULT_INSTRUCTIONS, 'OPENAI'),
        transcription,
        turnDetection: turnDetection(env),
        ...(env.OPENAI_NOISE_REDUCTION === undefined || env.OPENAI_NOISE_REDUCTION === 'none' ? {} : { noiseReduction: env.OPENAI_NOISE_REDUCTION }),
        ...(env.OPENAI_MAX_TOKENS === undefined ? {} : { maxOutputTokens: env.OPENAI_MAX_TOKENS }),
        ...(reasoningEffort === undefined ? {} : { reasoningEffort }),
        greeting: env.OPENAI_GREETING,
        ...(env.OPENAI_WELCOME_MESSAGE === undefined ? {} : { welcomeMessage: env.OPENAI_WELCOME_MESSAGE }),
        dtmfMessage: env.OPENAI_DTMF_MESSAGE ?? DEFAULT_DTMF_MESSAGE,
        ...(env.OPENAI_INPUT_BATCH_MS === undefined ? {} : { inputBatchMs: env.OPENAI_INPUT_BATCH_MS }),
      };
      return realtimeFromEnv(openAiProfile, options, context, 'OPENAI_TURN_DETECTION', overrides);
    },
  });
}

// ---- REST adapters (cascade) ------------------------------------------------------------------------

const baseUrl = envUrl(['http:', 'https:']);

/** Key and base URL shared by the LLM and TTS adapters. A custom base URL (Ollama, vLLM...) makes the key optional. */
const restShape = {
  OPENAI_API_KEY: z.preprocess(blankToUndefined, z.string().trim().optional()),
  OPENAI_BASE_URL: baseUrl,
  /** avr-llm-openai's spelling. */
  OPENAI_BASEURL: baseUrl,
};

function restProblems(env: { OPENAI_API_KEY?: string | undefined; OPENAI_BASE_URL?: string | undefined; OPENAI_BASEURL?: string | undefined }, ctx: z.RefinementCtx): void {
  if (env.OPENAI_API_KEY === undefined && env.OPENAI_BASE_URL === undefined && env.OPENAI_BASEURL === undefined) {
    ctx.addIssue({ code: 'custom', path: ['OPENAI_API_KEY'], message: 'OPENAI_API_KEY is required (unless OPENAI_BASE_URL points at a server that needs none)' });
  }
}

export const openAiLlmEnvSchema = z
  .object({
    ...restShape,
    OPENAI_LLM_MODEL: envText(),
    OPENAI_MODEL: envText(),
    OPENAI_TEMPERATURE: envNumber(0, 2),
    OPENAI_MAX_TOKENS: envTokens(1_000_000),
  })
  .superRefine(restProblems);

export const openAiTtsEnvSchema = z
  .object({
    ...restShape,
    OPENAI_TTS_MODEL: envText(),
    OPENAI_TTS_VOICE: envText(),
    OPENAI_TTS_INSTRUCTIONS: envText(),
    OPENAI_TTS_SPEED: envNumber(0.25, 4),
  })
  .superRefine(restProblems);

/** The LLM model: OPENAI_LLM_MODEL, else OPENAI_MODEL unless that names a realtime model, else the default. */
export function llmModelFromEnv(env: { OPENAI_LLM_MODEL?: string | undefined; OPENAI_MODEL?: string | undefined }): string {
  if (env.OPENAI_LLM_MODEL !== undefined) return env.OPENAI_LLM_MODEL;
  if (env.OPENAI_MODEL !== undefined && !isRealtimeModel(env.OPENAI_MODEL)) return env.OPENAI_MODEL;
  return DEFAULT_LLM_MODEL;
}

/** The `openai` LLM provider (Chat Completions, streaming; any OpenAI-compatible server via OPENAI_BASE_URL). */
export function defineOpenAiLlm(): AdapterDefinition<'llm'> {
  return defineAdapter({
    kind: 'llm',
    id: 'openai',
    description: 'OpenAI Chat Completions (streaming, tools); OPENAI_BASE_URL for compatible servers',
    defaultPort: 6002,
    envSchema: openAiLlmEnvSchema,
    create(env, context) {
      const baseURL = env.OPENAI_BASE_URL ?? env.OPENAI_BASEURL;
      return createOpenAiLlm({
        apiKey: env.OPENAI_API_KEY ?? 'none',
        ...(baseURL === undefined ? {} : { baseURL }),
        model: llmModelFromEnv(env),
        ...(env.OPENAI_TEMPERATURE === undefined ? {} : { temperature: env.OPENAI_TEMPERATURE }),
        ...(env.OPENAI_MAX_TOKENS === undefined || env.OPENAI_MAX_TOKENS === 'inf' ? {} : { maxTokens: env.OPENAI_MAX_TOKENS }),
        logger: context.logger,
      });
    },
  });
}

/** The `openai` TTS provider (`/v1/audio/speech`, raw 24 kHz PCM, streamed); AVR's avr-tts-openai port 6011. */
export function defineOpenAiTts(): AdapterDefinition<'tts'> {
  return defineAdapter({
    kind: 'tts',
    id: 'openai',
    description: 'OpenAI speech (/v1/audio/speech), streamed 24 kHz PCM',
    defaultPort: 6011,
    envSchema: openAiTtsEnvSchema,
    create(env, context) {
      const baseURL = env.OPENAI_BASE_URL ?? env.OPENAI_BASEURL;
      return createOpenAiTts({
        apiKey: env.OPENAI_API_KEY ?? 'none',
        ...(baseURL === undefined ? {} : { baseURL }),
        model: env.OPENAI_TTS_MODEL ?? DEFAULT_TTS_MODEL,
        voice: env.OPENAI_TTS_VOICE ?? DEFAULT_TTS_VOICE,
        ...(env.OPENAI_TTS_INSTRUCTIONS === undefined ? {} : { instructions: env.OPENAI_TTS_INSTRUCTIONS }),
        ...(env.OPENAI_TTS_SPEED === undefined ? {} : { speed: env.OPENAI_TTS_SPEED }),
        logger: context.logger,
      });
    },
  });
}
