/**
 * Registry definitions of the cascade: `STS_PROVIDER=cascade` (any ASR + LLM + TTS chosen by ASR_PROVIDER,
 * LLM_PROVIDER, TTS_PROVIDER) and presets that fill in the stages of one provider (`speechmatics`, `soniox`).
 * Stages are built through the registry's resolver, so a stage the gateway also serves over AVR's HTTP contracts is
 * one shared instance, and every configuration problem (the cascade's and its stages') is reported at once.
 */
import { z } from 'zod';
import { ConfigError, blankToUndefined, envBoolean, envInt, envText, zodProblems } from '@stsgate/core';
import type { AdapterDefinition, AdapterKind, AdapterKinds, BuildContext, Env } from '@stsgate/core';
import { checkInstructionFile, instructionSourceFromEnv, instructionsEnv, resolveInstructions } from '@stsgate/agent';
import { createCascadeSts } from './adapter.js';
import { DEFAULT_CASCADE_BEHAVIOUR } from './settings.js';
import type { CascadeBehaviour, Greeting } from './settings.js';

/** Used when no <PREFIX>_*INSTRUCTIONS variable is set. */
export const DEFAULT_CASCADE_INSTRUCTIONS =
  'You are a helpful voice assistant answering a phone call. Keep your answers short and conversational, use plain ' +
  'sentences without lists or formatting (they are spoken aloud), and speak in the language of the caller.';

export interface CascadePreset {
  /** The STS_PROVIDER value. */
  readonly id: string;
  readonly description: string;
  /** The AVR port of the container it replaces. */
  readonly defaultPort: number;
  /** Prefix of the agent variables: `<PREFIX>_INSTRUCTIONS`, `_GREETING`, `_WELCOME_MESSAGE`, `_DTMF_MESSAGE`. */
  readonly envPrefix: string;
  /** Stages used when ASR_PROVIDER / TTS_PROVIDER are unset. */
  readonly asr?: string;
  readonly tts?: string;
  /** Why an LLM must be configured, for the start-up error (what to set). */
  readonly llmHint?: string;
}

export const CASCADE_PRESET: CascadePreset = {
  id: 'cascade',
  description: 'Cascade: any ASR + LLM + TTS (ASR_PROVIDER, LLM_PROVIDER, TTS_PROVIDER) as one speech-to-speech agent',
  defaultPort: 6030,
  envPrefix: 'CASCADE',
};

export const SPEECHMATICS_PRESET: CascadePreset = {
  id: 'speechmatics',
  description: 'Speechmatics agent: Speechmatics real-time ASR + an LLM (LLM_PROVIDER) + Speechmatics TTS',
  defaultPort: 6040,
  envPrefix: 'SPEECHMATICS',
  asr: 'speechmatics',
  tts: 'speechmatics',
  llmHint:
    'Speechmatics has withdrawn Flow, so STS_PROVIDER=speechmatics is Speechmatics ASR + an LLM + Speechmatics TTS: set LLM_PROVIDER=openai ' +
    'with OPENAI_API_KEY (or OPENAI_BASE_URL for any OpenAI-compatible server), or use STS_PROVIDER=speechmatics-flow if your account still has Flow',
};

export const SONIOX_PRESET: CascadePreset = {
  id: 'soniox',
  description: 'Soniox agent: Soniox real-time ASR + an LLM (LLM_PROVIDER) + Soniox TTS',
  defaultPort: 6030,
  envPrefix: 'SONIOX',
  asr: 'soniox',
  tts: 'soniox',
  llmHint:
    'Soniox has no speech-to-speech model, so STS_PROVIDER=soniox is Soniox ASR + an LLM + Soniox TTS: set LLM_PROVIDER=openai with OPENAI_API_KEY ' +
    '(or OPENAI_BASE_URL for any OpenAI-compatible server)',
};

/** Which adapters make the stages (validated by the registry, which knows the ids). */
const stagesEnvSchema = z.object({
  ASR_PROVIDER: envText(),
  LLM_PROVIDER: envText(),
  TTS_PROVIDER: envText(),
  VAD_PROVIDER: envText(),
});

/** The cascade's own tuning variables (shared by every preset). */
export const cascadeEnvSchema = z.object({
  CASCADE_ENDPOINT_MAX_WAIT_MS: envInt(0, 10_000),
  CASCADE_FINALIZE_GRACE_MS: envInt(0, 10_000),
  CASCADE_BARGE_IN_MIN_SPEECH_MS: envInt(0, 5000),
  CASCADE_BARGE_IN_MIN_WORDS: envInt(0, 20),
  CASCADE_MAX_REPLY_CHARS: envInt(50, 100_000),
  CASCADE_MAX_REPLY_MS: envInt(1000, 600_000),
  CASCADE_MAX_HISTORY_MESSAGES: envInt(2, 1000),
  CASCADE_LLM_TIMEOUT_MS: envInt(500, 120_000),
  CASCADE_TTS_TIMEOUT_MS: envInt(500, 120_000),
  CASCADE_DTMF_INTER_DIGIT_MS: envInt(0, 10_000),
  CASCADE_TTS_VOICE: envText(),
  CASCADE_TTS_LANGUAGE: envText(),
});
export type CascadeEnv = z.output<typeof cascadeEnvSchema>;

/** The agent variables of one preset, e.g. `SPEECHMATICS_GREETING`. */
function agentEnvSchema(prefix: string) {
  return z.object({
    ...instructionsEnv(prefix).shape,
    [`${prefix}_GREETING`]: envBoolean(true),
    [`${prefix}_WELCOME_MESSAGE`]: envText(),
    [`${prefix}_DTMF_MESSAGE`]: envText().refine((text) => text === undefined || text.includes('{{digit}}'), 'must contain {{digit}}'),
  });
}

/** LLM_PROVIDER, else `openai` when OpenAI's REST variables are there (the documented Speechmatics agent). */
function llmProviderId(env: Env, llmProvider: string | undefined): string | undefined {
  if (llmProvider !== undefined) return llmProvider;
  const set = (name: string) => blankToUndefined(env[name]) !== undefined;
  return set('OPENAI_API_KEY') || set('OPENAI_BASE_URL') || set('OPENAI_BASEURL') ? 'openai' : undefined;
}

export function behaviourFromEnv(cascade: CascadeEnv, greeting: Greeting, dtmfMessage: string | undefined): CascadeBehaviour {
  const d = DEFAULT_CASCADE_BEHAVIOUR;
  return {
    ...d,
    greeting,
    dtmfMessage: dtmfMessage ?? d.dtmfMessage,
    dtmfInterDigitMs: cascade.CASCADE_DTMF_INTER_DIGIT_MS ?? d.dtmfInterDigitMs,
    endpointMaxWaitMs: cascade.CASCADE_ENDPOINT_MAX_WAIT_MS ?? d.endpointMaxWaitMs,
    finalizeGraceMs: cascade.CASCADE_FINALIZE_GRACE_MS ?? d.finalizeGraceMs,
    bargeInMinSpeechMs: cascade.CASCADE_BARGE_IN_MIN_SPEECH_MS ?? d.bargeInMinSpeechMs,
    bargeInMinWords: cascade.CASCADE_BARGE_IN_MIN_WORDS ?? d.bargeInMinWords,
    maxReplyChars: cascade.CASCADE_MAX_REPLY_CHARS ?? d.maxReplyChars,
    maxReplyMs: cascade.CASCADE_MAX_REPLY_MS ?? d.maxReplyMs,
    maxHistoryMessages: cascade.CASCADE_MAX_HISTORY_MESSAGES ?? d.maxHistoryMessages,
    llmFirstTokenTimeoutMs: cascade.CASCADE_LLM_TIMEOUT_MS ?? d.llmFirstTokenTimeoutMs,
    ttsFirstAudioTimeoutMs: cascade.CASCADE_TTS_TIMEOUT_MS ?? d.ttsFirstAudioTimeoutMs,
    voice: cascade.CASCADE_TTS_VOICE,
    language: cascade.CASCADE_TTS_LANGUAGE,
  };
}

/**
 * The cascade STS provider for a registry (`preset` picks the id, port, variable prefix and default stages). Needs
 * the registry's resolver (`BuildContext.resolve`) to build its stages.
 */
export function defineCascadeSts(preset: CascadePreset = CASCADE_PRESET): AdapterDefinition<'sts'> {
  const agentSchema = agentEnvSchema(preset.envPrefix);
  return {
    kind: 'sts',
    id: preset.id,
    description: preset.description,
    defaultPort: preset.defaultPort,
    fromEnv(env: Env, context: BuildContext) {
      const problems: string[] = [];
      const own = (problem: string) => problems.push(`${preset.id}: ${problem}`);
      const cascade = cascadeEnvSchema.safeParse(env);
      const agent = agentSchema.safeParse(env);
      if (!cascade.success) zodProblems(cascade.error).forEach(own);
      if (!agent.success) zodProblems(agent.error).forEach(own);
      const resolve = context.resolve;
      if (resolve === undefined) throw new ConfigError(`sts provider "${preset.id}"`, [`${preset.id}: needs an adapter registry to build its stages`], { scoped: true });

      const stage = <K extends AdapterKind>(kind: K, variable: string, id: string | undefined, missing: string): AdapterKinds[K] | undefined => {
        if (id === undefined) {
          own(missing);
          return undefined;
        }
        try {
          return resolve(kind, id);
        } catch (error) {
          if (!(error instanceof ConfigError)) throw error;
          problems.push(...error.problems.map((problem) => (error.scoped ? problem : `${variable}=${id}: ${problem}`)));
          return undefined;
        }
      };
      const chosen = stagesEnvSchema.parse(env);
      const needs = (variable: string) => `${variable} is required: the ${variable.split('_')[0]} stage of STS_PROVIDER=${preset.id}`;
      const asr = stage('asr', 'ASR_PROVIDER', chosen.ASR_PROVIDER ?? preset.asr, needs('ASR_PROVIDER'));
      const llmHint = preset.llmHint === undefined ? needs('LLM_PROVIDER') : `LLM_PROVIDER is required. ${preset.llmHint}`;
      const llm = stage('llm', 'LLM_PROVIDER', llmProviderId(env, chosen.LLM_PROVIDER), llmHint);
      const tts = stage('tts', 'TTS_PROVIDER', chosen.TTS_PROVIDER ?? preset.tts, needs('TTS_PROVIDER'));
      const vad = stage('vad', 'VAD_PROVIDER', chosen.VAD_PROVIDER ?? 'silero', needs('VAD_PROVIDER'));
      if (problems.length > 0 || asr === undefined || llm === undefined || tts === undefined || vad === undefined || !cascade.success || !agent.success) {
        throw new ConfigError(`sts provider "${preset.id}"`, problems, { scoped: true });
      }

      const values = agent.data as Readonly<Record<string, unknown>>;
      const text = (name: string): string | undefined => {
        const value = values[`${preset.envPrefix}_${name}`];
        return typeof value === 'string' ? value : undefined;
      };
      const source = instructionSourceFromEnv(agent.data, DEFAULT_CASCADE_INSTRUCTIONS, preset.envPrefix);
      checkInstructionFile(source, `sts provider "${preset.id}"`);
      const welcome = text('WELCOME_MESSAGE');
      const greeting: Greeting = welcome !== undefined ? { type: 'text', text: welcome } : values[`${preset.envPrefix}_GREETING`] === false ? { type: 'none' } : { type: 'llm' };
      context.logger.info({ asr: asr.id, llm: llm.id, tts: tts.id, vad: vad.id, greeting: greeting.type }, `cascade agent: ${asr.id} listens, ${llm.id} answers, ${tts.id} speaks`);
      return createCascadeSts(
        {
          ...behaviourFromEnv(cascade.data, greeting, text('DTMF_MESSAGE')),
          asr,
          llm,
          tts,
          vad,
          instructions: (call) => resolveInstructions(source, call),
        },
        preset.id,
      );
    },
  };
}
