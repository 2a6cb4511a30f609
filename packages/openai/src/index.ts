// OpenAI Realtime (GA) speech-to-speech, and OpenAI-compatible providers as profiles
export {
  createOpenAiRealtime,
  createRealtimeAdapter,
  realtimeCapabilities,
  realtimeUrl,
  DEFAULT_REALTIME_URL,
  DEFAULT_REALTIME_MODEL,
  DEFAULT_VOICE,
  DEFAULT_AUDIO_FORMAT,
  DEFAULT_DTMF_MESSAGE,
  DEFAULT_INPUT_BATCH_MS,
} from './realtime/adapter.js';
export type { OpenAiRealtimeOptions } from './realtime/adapter.js';
export { openAiErrorKind, openAiProfile } from './realtime/profile.js';
export type { RealtimeProfile, ServerErrorKind, UnsupportedOption } from './realtime/profile.js';
export { XAI_VOICES, createXaiRealtime, defineXaiRealtime, xaiProfile, xaiRealtimeEnvSchema } from './xai.js';
export type { TlsOptions } from './realtime/connection.js';
export type { TurnDetectionSetting, VadTuning, WireAudioFormat, SessionSettings, WireSession, FlatSessionShape } from './realtime/wire.js';
export { DEFAULT_VAD_TUNING, buildSession, flatSession, parseServerMessage, verbatimResponse } from './realtime/wire.js';
export { RealtimeEventMapper, clampAudioEndMs } from './realtime/map-events.js';
export type { MapperSink, MapperOptions, ResponseRequest } from './realtime/map-events.js';
export { ConversationLog, heardText } from './realtime/conversation-log.js';
export { audioCodec } from './realtime/audio-codec.js';
export type { AudioCodec } from './realtime/audio-codec.js';

// Chat Completions LLM and speech TTS (cascade)
export { createOpenAiLlm, ChatStreamAccumulator, toChatMessages, toChatTools, DEFAULT_LLM_MODEL } from './llm.js';
export type { OpenAiLlmOptions } from './llm.js';
export { createOpenAiTts, DEFAULT_TTS_MODEL, DEFAULT_TTS_VOICE, TTS_SAMPLE_RATE } from './tts.js';
export type { OpenAiTtsOptions } from './tts.js';

// Registry definitions (AVR environment variables)
export {
  defineOpenAiRealtime,
  defineOpenAiLlm,
  defineOpenAiTts,
  openAiRealtimeEnvSchema,
  openAiLlmEnvSchema,
  openAiTtsEnvSchema,
  llmModelFromEnv,
  realtimeFromEnv,
  DEFAULT_INSTRUCTIONS,
} from './definitions.js';
export type { OpenAiRealtimeEnv, RealtimeEnvOptions } from './definitions.js';

// Errors: Realtime close codes, upgrades and server errors (over core's classifiers), key redaction
export { providerErrorFromClose, providerErrorFromUpgrade, providerErrorFromServer, realtimeClassifiers, sanitizeMessage } from './errors.js';
export type { ProviderName } from './errors.js';
