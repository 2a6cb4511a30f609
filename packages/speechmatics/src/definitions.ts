/**
 * Registry definitions: the Speechmatics adapters configured from environment variables. `speechmatics` as STS
 * provider is the drop-in for avr-sts-speechmatics (SPEECHMATICS_API_KEY, SPEECHMATICS_REGION, port 6040, the same
 * default template).
 */
import { z } from 'zod';
import { defineAdapter, envEnum, envInt, envNumber, envOptionalEnum, envSecret, envText, envUrl, splitList } from '@stsgate/core';
import type { AdapterDefinition, StsCallContext } from '@stsgate/core';
import { checkInstructionFile, instructionSourceFromEnv, instructionsEnv, renderInstructions, resolveInstructions } from '@stsgate/agent';
import { TemporaryKeys, DEFAULT_MANAGEMENT_URL } from './auth.js';
import { DEFAULT_END_OF_UTTERANCE_SILENCE, createSpeechmaticsAsr } from './asr.js';
import { DEFAULT_FLOW_DTMF_MESSAGE, createSpeechmaticsFlow } from './flow.js';
import type { TemplateVariables } from './flow.js';
import { DEFAULT_FLOW_URL, DEFAULT_TEMPLATE_ID } from './flow-wire.js';
import { SPEECHMATICS_REGIONS, speechmaticsRtUrl } from './rt-wire.js';
import { DEFAULT_TTS_URL, DEFAULT_TTS_VOICE, createSpeechmaticsTts } from './tts.js';

/** A JSON object of string values (`{"persona": "...", "company": "ACME"}`); numbers and booleans become strings. */
const templateVariablesEnv = envText().transform((text, ctx): Record<string, string> => {
  if (text === undefined) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'must be a JSON object, e.g. {"persona":"a friendly receptionist"}' });
    return z.NEVER;
  }
  const result = z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).safeParse(parsed);
  if (!result.success) {
    ctx.addIssue({ code: 'custom', message: 'must be a JSON object whose values are strings, numbers or booleans' });
    return z.NEVER;
  }
  return Object.fromEntries(Object.entries(result.data).map(([key, value]) => [key, String(value)]));
});

const commonShape = {
  SPEECHMATICS_API_KEY: envSecret('SPEECHMATICS_API_KEY'),
  /**
   * avr-sts-speechmatics passes it to the temporary-key request, where it has no effect; here it picks the ASR
   * endpoint (Flow, TTS and the key endpoint have one endpoint each).
   */
  SPEECHMATICS_REGION: envEnum(SPEECHMATICS_REGIONS, 'eu'),
};

export const speechmaticsFlowEnvSchema = z.object({
  ...commonShape,
  SPEECHMATICS_FLOW_URL: envUrl(['ws:', 'wss:']).transform((url) => url ?? DEFAULT_FLOW_URL),
  SPEECHMATICS_MANAGEMENT_URL: envUrl(['http:', 'https:']).transform((url) => url ?? DEFAULT_MANAGEMENT_URL),
  SPEECHMATICS_TEMPLATE_ID: envText().transform((id) => id ?? DEFAULT_TEMPLATE_ID),
  SPEECHMATICS_TEMPLATE_VARIABLES: templateVariablesEnv,
  /** The template variable that receives the SPEECHMATICS_*INSTRUCTIONS text, when one is set. */
  SPEECHMATICS_INSTRUCTIONS_VARIABLE: envText().transform((name) => name ?? 'persona'),
  SPEECHMATICS_INPUT_SAMPLE_RATE: envOptionalEnum(['8000', '16000']),
  SPEECHMATICS_DTMF_MESSAGE: envText().refine((text) => text === undefined || text.includes('{{digit}}'), 'must contain {{digit}}'),
  SPEECHMATICS_TEMPORARY_KEY_TTL: envInt(60, 86_400),
  ...instructionsEnv('SPEECHMATICS').shape,
});
export type SpeechmaticsFlowEnv = z.output<typeof speechmaticsFlowEnvSchema>;

/**
 * The `speechmatics-flow` STS provider (Flow, deprecated: Speechmatics withdrew Flow in 2026; `speechmatics` is now
 * the cascade preset); avr-sts-speechmatics' port 6040. Template variables come from
 * SPEECHMATICS_TEMPLATE_VARIABLES, and the agent instructions (SPEECHMATICS_INSTRUCTIONS, _URL_, _FILE_) fill the
 * SPEECHMATICS_INSTRUCTIONS_VARIABLE variable; all are templated per call with `{{from}}`, `{{to}}`, `{{uuid}}`.
 */
export function defineSpeechmaticsFlow(): AdapterDefinition<'sts'> {
  return defineAdapter({
    kind: 'sts',
    id: 'speechmatics-flow',
    description: 'Speechmatics Flow (deprecated, withdrawn by Speechmatics): conversational agent over WebSocket',
    defaultPort: 6040,
    envSchema: speechmaticsFlowEnvSchema,
    create(env, context) {
      context.logger.warn(
        'STS_PROVIDER=speechmatics-flow is deprecated: Speechmatics has withdrawn Flow, it works only for accounts that still have it. ' +
          'STS_PROVIDER=speechmatics runs Speechmatics ASR + an LLM + Speechmatics TTS instead.',
      );
      const source = instructionSourceFromEnv(env, '', 'SPEECHMATICS');
      checkInstructionFile(source, 'sts provider "speechmatics-flow"');
      const hasInstructions = source.text !== undefined || source.url !== undefined || source.file !== undefined;
      const variableName = env.SPEECHMATICS_INSTRUCTIONS_VARIABLE;
      const configured = env.SPEECHMATICS_TEMPLATE_VARIABLES;
      const templateVariables = async (call: StsCallContext): Promise<TemplateVariables> => {
        const variables: Record<string, string> = {};
        for (const [key, value] of Object.entries(configured)) variables[key] = renderInstructions(value, call);
        // A URL that fails falls back to the file, else to nothing: the template keeps its own value then.
        const instructions = hasInstructions ? (await resolveInstructions(source, call)).trim() : '';
        if (instructions !== '') variables[variableName] = instructions;
        return variables;
      };
      return createSpeechmaticsFlow({
        apiKey: env.SPEECHMATICS_API_KEY,
        url: env.SPEECHMATICS_FLOW_URL,
        keys: new TemporaryKeys({
          apiKey: env.SPEECHMATICS_API_KEY,
          managementUrl: env.SPEECHMATICS_MANAGEMENT_URL,
          ...(env.SPEECHMATICS_TEMPORARY_KEY_TTL === undefined ? {} : { ttlSeconds: env.SPEECHMATICS_TEMPORARY_KEY_TTL }),
        }),
        templateId: env.SPEECHMATICS_TEMPLATE_ID,
        templateVariables,
        inputSampleRate: env.SPEECHMATICS_INPUT_SAMPLE_RATE === '16000' ? 16000 : 8000,
        dtmfMessage: env.SPEECHMATICS_DTMF_MESSAGE ?? DEFAULT_FLOW_DTMF_MESSAGE,
      });
    },
  });
}

/** `word` or `word:sounds like|other sounding`, comma-separated. */
export function parseAdditionalVocab(value: string | undefined): (string | { content: string; sounds_like: string[] })[] {
  return splitList(value).map((entry) => {
    const colon = entry.indexOf(':');
    if (colon < 0) return entry;
    const content = entry.slice(0, colon).trim();
    const soundsLike = entry
      .slice(colon + 1)
      .split('|')
      .map((part) => part.trim())
      .filter((part) => part !== '');
    return soundsLike.length === 0 ? content : { content, sounds_like: soundsLike };
  });
}

/**
 * An end_of_utterance_silence_trigger not below max_delay is accepted (Speechmatics only advises against it; the
 * service takes it): the adapter warns once at start-up.
 */
export const speechmaticsAsrEnvSchema = z.object({
  ...commonShape,
  SPEECHMATICS_RT_URL: envUrl(['ws:', 'wss:']),
  SPEECHMATICS_LANGUAGE: envText().transform((language) => language ?? 'en'),
  SPEECHMATICS_OPERATING_POINT: envOptionalEnum(['standard', 'enhanced', 'melia-1']),
  SPEECHMATICS_MAX_DELAY: envNumber(0.7, 4),
  SPEECHMATICS_MAX_DELAY_MODE: envOptionalEnum(['flexible', 'fixed']),
  SPEECHMATICS_DOMAIN: envText(),
  SPEECHMATICS_OUTPUT_LOCALE: envText(),
  SPEECHMATICS_ADDITIONAL_VOCAB: envText().transform(parseAdditionalVocab),
  SPEECHMATICS_DIARIZATION: envEnum(['none', 'speaker'], 'none'),
  SPEECHMATICS_END_OF_UTTERANCE_SILENCE: envNumber(0, 2),
});
export type SpeechmaticsAsrEnv = z.output<typeof speechmaticsAsrEnvSchema>;

/** The `speechmatics` ASR provider (real-time API; port 6010, the usual AVR ASR port). */
export function defineSpeechmaticsAsr(): AdapterDefinition<'asr'> {
  return defineAdapter({
    kind: 'asr',
    id: 'speechmatics',
    description: 'Speechmatics real-time speech-to-text (WebSocket v2, end of utterance, partials)',
    defaultPort: 6010,
    envSchema: speechmaticsAsrEnvSchema,
    create(env, context) {
      if (env.SPEECHMATICS_REGION === 'au' && env.SPEECHMATICS_RT_URL === undefined) {
        context.logger.warn(
          'SPEECHMATICS_REGION=au: Speechmatics documents no Australian real-time endpoint, so the ASR uses global (the nearest region); ' +
            'set SPEECHMATICS_RT_URL for a specific endpoint',
        );
      }
      return createSpeechmaticsAsr({
        apiKey: env.SPEECHMATICS_API_KEY,
        url: env.SPEECHMATICS_RT_URL ?? speechmaticsRtUrl(env.SPEECHMATICS_REGION),
        language: env.SPEECHMATICS_LANGUAGE,
        ...(env.SPEECHMATICS_OPERATING_POINT === undefined ? {} : { model: env.SPEECHMATICS_OPERATING_POINT }),
        ...(env.SPEECHMATICS_MAX_DELAY === undefined ? {} : { maxDelay: env.SPEECHMATICS_MAX_DELAY }),
        ...(env.SPEECHMATICS_MAX_DELAY_MODE === undefined ? {} : { maxDelayMode: env.SPEECHMATICS_MAX_DELAY_MODE }),
        ...(env.SPEECHMATICS_DOMAIN === undefined ? {} : { domain: env.SPEECHMATICS_DOMAIN }),
        ...(env.SPEECHMATICS_OUTPUT_LOCALE === undefined ? {} : { outputLocale: env.SPEECHMATICS_OUTPUT_LOCALE }),
        additionalVocab: env.SPEECHMATICS_ADDITIONAL_VOCAB,
        diarization: env.SPEECHMATICS_DIARIZATION,
        endOfUtteranceSilence: env.SPEECHMATICS_END_OF_UTTERANCE_SILENCE ?? DEFAULT_END_OF_UTTERANCE_SILENCE,
        // Configuration warnings at start-up, not at the first call.
        logger: context.logger,
      });
    },
  });
}

export const speechmaticsTtsEnvSchema = z.object({
  SPEECHMATICS_API_KEY: commonShape.SPEECHMATICS_API_KEY,
  SPEECHMATICS_TTS_URL: envUrl(['http:', 'https:']).transform((url) => url ?? DEFAULT_TTS_URL),
  SPEECHMATICS_TTS_VOICE: envText().transform((voice) => voice ?? DEFAULT_TTS_VOICE),
  SPEECHMATICS_TTS_TIMEOUT_MS: envInt(100, 600_000),
});
export type SpeechmaticsTtsEnv = z.output<typeof speechmaticsTtsEnvSchema>;

/** The `speechmatics` TTS provider (HTTP, streamed 16 kHz PCM resampled to 8 kHz by the host; port 6011). */
export function defineSpeechmaticsTts(): AdapterDefinition<'tts'> {
  return defineAdapter({
    kind: 'tts',
    id: 'speechmatics',
    description: 'Speechmatics text-to-speech (HTTP, streamed 16 kHz PCM)',
    defaultPort: 6011,
    envSchema: speechmaticsTtsEnvSchema,
    create(env) {
      return createSpeechmaticsTts({
        apiKey: env.SPEECHMATICS_API_KEY,
        url: env.SPEECHMATICS_TTS_URL,
        voice: env.SPEECHMATICS_TTS_VOICE,
        ...(env.SPEECHMATICS_TTS_TIMEOUT_MS === undefined ? {} : { timeoutMs: env.SPEECHMATICS_TTS_TIMEOUT_MS }),
      });
    },
  });
}
