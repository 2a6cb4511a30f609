/**
 * xAI's Grok Voice Agent API as a profile of the Realtime adapter, and the `xai` STS provider: a drop-in for AVR's
 * avr-sts-xai 1.1.0 (its XAI_* variables and defaults, port 6041). Where xAI differs from OpenAI GA (docs.x.ai, Speech
 * to Speech guide, "OpenAI Realtime API Compatibility", and the API reference voice-realtime.ws.json): a flat session,
 * `force_message` speaks the welcome message verbatim, assistant text is a `text` part, voices eve/ara/rex/sal/leo, error
 * codes that are the error types. `conversation.item.truncate` exists (the reference documents it and its
 * `conversation.item.truncated`; only an older guide said "Not supported").
 */
import { z } from 'zod';
import { instructionSourceFromEnv, instructionsEnv } from '@stsgate/agent';
import { defineAdapter, envBoolean, envEnum, envInt, envNumber, envSecret, envText, envUrl, splitList } from '@stsgate/core';
import type { AdapterDefinition, StsAdapter } from '@stsgate/core';
import { DEFAULT_INSTRUCTIONS, languageHint, realtimeFromEnv, vadTuningFromEnv } from './definitions.js';
import { DEFAULT_DTMF_MESSAGE, createRealtimeAdapter } from './realtime/adapter.js';
import type { OpenAiRealtimeOptions } from './realtime/adapter.js';
import { openAiErrorKind } from './realtime/profile.js';
import type { RealtimeProfile, ServerErrorKind } from './realtime/profile.js';
import { flatSession } from './realtime/wire.js';
import type { ServerError } from './realtime/wire.js';

export const XAI_VOICES = ['eve', 'ara', 'rex', 'sal', 'leo'] as const;

/** The `audio.input.transcription.model` xAI documents ("grok-transcribe": partial transcripts as `...transcription.updated`). */
export const XAI_TRANSCRIPTION_MODELS = ['grok-transcribe'] as const;

/**
 * `language_hint` codes xAI recognises: its "Supported Languages" table, plus `ar`, which the guide and the API
 * reference give as an example. Others are "silently ignored" (bare `es` and `pt` too: "not accepted").
 */
export const XAI_LANGUAGE_HINTS = [
  'en', 'ar', 'ar-EG', 'ar-SA', 'ar-AE', 'bn', 'zh', 'fr', 'de', 'hi', 'id',
  'it', 'ja', 'ko', 'pt-BR', 'pt-PT', 'ru', 'es-MX', 'es-ES', 'tr', 'vi',
] as const;

/**
 * xAI's error `code` is its error type ("same as type"), so the races are told by their messages, as pipecat matches
 * them: "Cancellation failed: no active response found" (seen live), "... already has an active response ..." (OpenAI's
 * wording; xAI's is not published). OpenAI's codes count too.
 */
export function xaiErrorKind(error: ServerError): ServerErrorKind {
  const byCode = openAiErrorKind(error);
  if (byCode !== 'other') return byCode;
  const message = (error.message ?? '').toLowerCase();
  if (message.includes('no active response')) return 'cancel_not_active';
  if (message.includes('already has an active response')) return 'response_active';
  return 'other';
}

/** Why xAI would ignore a language hint, or undefined when it recognises it (BCP-47 tags are case-insensitive). */
export function xaiLanguageHintProblem(hint: string): string | undefined {
  const lower = hint.toLowerCase();
  if (XAI_LANGUAGE_HINTS.some((code) => code.toLowerCase() === lower)) return undefined;
  if (lower === 'es' || lower === 'pt') return 'xAI needs a regional variant for Spanish and Portuguese (es-MX, es-ES, pt-BR, pt-PT)';
  return `xAI recognises only ${XAI_LANGUAGE_HINTS.join(', ')}`;
}

export const xaiProfile: RealtimeProfile = {
  id: 'xai',
  label: 'xAI',
  defaultUrl: 'wss://api.x.ai/v1/realtime',
  defaultModel: 'grok-voice-latest',
  defaultVoice: 'eve',
  audioFormats: ['pcmu', 'pcm24'],
  authHeaders: (apiKey) => ({ Authorization: `Bearer ${apiKey}` }),
  session: (settings) => flatSession(settings, { label: 'xAI', languageKey: 'language_hint', transcriptionModels: XAI_TRANSCRIPTION_MODELS }),
  unsupported: ['semanticVad', 'noiseReduction', 'maxOutputTokens', 'reasoningEffort'],
  truncate: true,
  verbatim: 'force_message',
  assistantText: 'text',
  errorKind: xaiErrorKind,
};

export const createXaiRealtime = (options: OpenAiRealtimeOptions): StsAdapter => createRealtimeAdapter(xaiProfile, options);

/** avr-sts-xai's variables (XAI_VOICE case-insensitive), plus XAI_REALTIME_URL, _AUDIO_FORMAT, _GREETING, _DTMF_MESSAGE. */
export const xaiRealtimeEnvSchema = z
  .object({
    XAI_API_KEY: envSecret('XAI_API_KEY'),
    XAI_REALTIME_URL: envUrl(['ws:', 'wss:', 'http:', 'https:']),
    XAI_MODEL: envText(),
    XAI_VOICE: envEnum(XAI_VOICES, 'eve'),
    XAI_AUDIO_FORMAT: envEnum(['pcmu', 'pcm24'], 'pcmu'),
    XAI_LANGUAGE: envText(),
    /** `grok-transcribe` is sent; anything else (avr-sts-xai's default whisper-1...) xAI does not document: not sent. */
    XAI_TRANSCRIPTION_MODEL: envText(),
    XAI_TURN_DETECTION: envEnum(['server_vad', 'none'], 'server_vad'),
    XAI_TURN_DETECTION_THRESHOLD: envNumber(0.1, 0.9),
    XAI_TURN_DETECTION_SILENCE_MS: envInt(0, 10_000),
    XAI_TURN_DETECTION_PREFIX_PADDING_MS: envInt(0, 10_000),
    XAI_BUILTIN_TOOLS: envText().transform((list) => splitList(list?.toLowerCase())).pipe(z.array(z.enum(['web_search', 'x_search', 'file_search']))),
    XAI_COLLECTION_IDS: envText().transform(splitList),
    XAI_CONNECT_TIMEOUT_MS: envInt(1000, 120_000, 15_000),
    XAI_GREETING: envBoolean(true),
    XAI_WELCOME_MESSAGE: envText(),
    XAI_DTMF_MESSAGE: envText().refine((text) => text === undefined || text.includes('{{digit}}'), 'must contain {{digit}}'),
    ...instructionsEnv('XAI').shape,
  })
  .refine((env) => !env.XAI_BUILTIN_TOOLS.includes('file_search') || env.XAI_COLLECTION_IDS.length > 0, {
    path: ['XAI_COLLECTION_IDS'],
    message: 'is required by XAI_BUILTIN_TOOLS=file_search',
  });

/** The `xai` STS provider for a registry. XAI_TURN_DETECTION=none: the gateway's VAD (vad:silero) takes the turns. */
export function defineXaiRealtime(overrides: Partial<OpenAiRealtimeOptions> = {}): AdapterDefinition<'sts'> {
  return defineAdapter({
    kind: 'sts',
    id: 'xai',
    description: 'xAI Grok Voice Agent (OpenAI Realtime-compatible): G.711 mu-law or 24 kHz PCM',
    defaultPort: 6041,
    envSchema: xaiRealtimeEnvSchema,
    create(env, context) {
      const transcriptionModel = env.XAI_TRANSCRIPTION_MODEL;
      if (transcriptionModel !== undefined && !(XAI_TRANSCRIPTION_MODELS as readonly string[]).includes(transcriptionModel)) {
        // Not refused: AVR env files set whisper-1 (avr-sts-xai's default), which xAI does not document.
        context.logger.warn(
          { provider: 'xai', model: transcriptionModel },
          `XAI_TRANSCRIPTION_MODEL is not sent: xAI documents only ${XAI_TRANSCRIPTION_MODELS.join(', ')}`,
        );
      }
      const language = languageHint(env.XAI_LANGUAGE);
      const hintProblem = language === undefined ? undefined : xaiLanguageHintProblem(language);
      // Sent all the same, as avr-sts-xai does: xAI ignores it and detects the language itself.
      if (hintProblem !== undefined) context.logger.warn({ provider: 'xai', language }, `XAI_LANGUAGE is ignored by xAI: ${hintProblem}`);
      const ids = env.XAI_COLLECTION_IDS;
      const providerTools = env.XAI_BUILTIN_TOOLS.map((type) => (type === 'file_search' ? { type, vector_store_ids: ids, max_num_results: 10 } : { type }));
      const tuning = vadTuningFromEnv(env.XAI_TURN_DETECTION_THRESHOLD, env.XAI_TURN_DETECTION_SILENCE_MS, env.XAI_TURN_DETECTION_PREFIX_PADDING_MS);
      const options = {
        apiKey: env.XAI_API_KEY,
        ...(env.XAI_REALTIME_URL === undefined ? {} : { url: env.XAI_REALTIME_URL }),
        ...(env.XAI_MODEL === undefined ? {} : { model: env.XAI_MODEL }),
        voice: env.XAI_VOICE,
        audioFormat: env.XAI_AUDIO_FORMAT,
        instructions: instructionSourceFromEnv(env, DEFAULT_INSTRUCTIONS, 'XAI'),
        transcription: { model: transcriptionModel ?? 'whisper-1', ...(language === undefined ? {} : { language }) },
        turnDetection: { type: env.XAI_TURN_DETECTION, ...tuning },
        ...(providerTools.length === 0 ? {} : { providerTools }),
        handshakeTimeoutMs: env.XAI_CONNECT_TIMEOUT_MS,
        greeting: env.XAI_GREETING,
        ...(env.XAI_WELCOME_MESSAGE === undefined ? {} : { welcomeMessage: env.XAI_WELCOME_MESSAGE }),
        dtmfMessage: env.XAI_DTMF_MESSAGE ?? DEFAULT_DTMF_MESSAGE,
      };
      return realtimeFromEnv(xaiProfile, options, context, 'XAI_TURN_DETECTION', overrides);
    },
  });
}
