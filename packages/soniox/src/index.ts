// Real-time speech-to-text (WebSocket, header auth)
export { createSonioxAsr, sonioxAsrCapabilities, DEFAULT_KEEPALIVE_INTERVAL_MS } from './asr.js';
export type { SonioxAsrOptions } from './asr.js';
export { TokenAccumulator } from './tokens.js';
export type { TokenAccumulatorOptions } from './tokens.js';

// Text-to-speech (REST, streamed PCM)
export { createSonioxTts, sonioxTtsCapabilities, DEFAULT_TTS_TIMEOUT_MS, TTS_SAMPLE_RATE } from './tts.js';
export type { SonioxTtsOptions, SonioxTtsAdapter } from './tts.js';

// Wire shapes
export {
  buildSttConfig,
  buildTtsRequest,
  parseSttMessage,
  sttResponseSchema,
  sttTokenSchema,
  DEFAULT_STT_URL,
  DEFAULT_STT_MODEL,
  DEFAULT_LANGUAGE_HINTS,
  DEFAULT_TTS_URL,
  DEFAULT_TTS_MODEL,
  DEFAULT_TTS_LANGUAGE,
  DEFAULT_TTS_VOICE,
  END_TOKEN,
  FIN_TOKEN,
  SONIOX_TTS_MAX_TEXT_CHARS,
  splitTtsText,
} from './wire.js';
export type { SttSettings, SttConfigMessage, SttControlMessage, SttResponse, SttToken, ParsedSttMessage, TtsSettings, TtsRequestBody } from './wire.js';

// Registry definitions (AVR environment variables)
export { defineSonioxAsr, defineSonioxTts, sonioxAsrEnvSchema, sonioxTtsEnvSchema } from './definitions.js';
export type { SonioxAsrEnv, SonioxTtsEnv } from './definitions.js';

// Errors
export { PROVIDER, providerErrorFromSoniox, providerErrorFromStatus, providerErrorFromClose, categoryForSonioxCode, sanitizeMessage } from './errors.js';
