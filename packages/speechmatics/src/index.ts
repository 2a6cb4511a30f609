// Flow speech-to-speech (the STS provider `speechmatics`)
export { createSpeechmaticsFlow, speechmaticsFlowCapabilities, DEFAULT_FLOW_DTMF_MESSAGE } from './flow.js';
export type { SpeechmaticsFlowOptions, TemplateVariables } from './flow.js';
export { FlowEventMapper } from './flow-events.js';
export {
  buildStartConversation,
  flowConnectUrl,
  flowTools,
  parseFlowMessage,
  DEFAULT_FLOW_URL,
  DEFAULT_TEMPLATE_ID,
  FLOW_OUTPUT_SAMPLE_RATE,
} from './flow-wire.js';
export type { FlowClientMessage, FlowServerMessage, FlowTool, FlowToolParameter, StartConversation } from './flow-wire.js';

// Real-time speech-to-text
export { createSpeechmaticsAsr, speechmaticsAsrCapabilities, DEFAULT_END_OF_UTTERANCE_SILENCE } from './asr.js';
export type { SpeechmaticsAsrOptions } from './asr.js';
export { RtTranscriptMapper } from './rt-events.js';
export { buildStartRecognition, parseRtMessage, speechmaticsRtUrl, DEFAULT_RT_URL, RT_REGION_URLS, SPEECHMATICS_REGIONS } from './rt-wire.js';
export type { RtRegion, RtServerMessage, RtSettings, SpeechmaticsRegion } from './rt-wire.js';
export { transcriptSchema, segmentOf, joinSegments } from './common-wire.js';
export type { TranscriptMessage, TranscriptSegment } from './common-wire.js';

// Text-to-speech
export { createSpeechmaticsTts, speechmaticsTtsCapabilities, ttsGenerateUrl, DEFAULT_TTS_URL, DEFAULT_TTS_VOICE, SPEECHMATICS_TTS_VOICES, TTS_SAMPLE_RATE } from './tts.js';
export type { SpeechmaticsTtsOptions } from './tts.js';

// Temporary keys
export { TemporaryKeys, DEFAULT_MANAGEMENT_URL, DEFAULT_TEMPORARY_KEY_TTL_S } from './auth.js';
export type { TemporaryKeyOptions, TemporaryKeyType } from './auth.js';

// Registry definitions (environment variables)
export {
  defineSpeechmaticsFlow,
  defineSpeechmaticsAsr,
  defineSpeechmaticsTts,
  parseAdditionalVocab,
  speechmaticsFlowEnvSchema,
  speechmaticsAsrEnvSchema,
  speechmaticsTtsEnvSchema,
} from './definitions.js';
export type { SpeechmaticsFlowEnv, SpeechmaticsAsrEnv, SpeechmaticsTtsEnv } from './definitions.js';

// Errors
export {
  PROVIDER,
  categoryForErrorType,
  providerErrorFromServerError,
  providerErrorFromClose,
  providerErrorFromStatus,
  sanitizeMessage,
} from './errors.js';
