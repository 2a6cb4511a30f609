export { createCascadeSts, cascadeCapabilities } from './adapter.js';
export {
  defineCascadeSts,
  cascadeEnvSchema,
  behaviourFromEnv,
  CASCADE_PRESET,
  SPEECHMATICS_PRESET,
  SONIOX_PRESET,
  DEFAULT_CASCADE_INSTRUCTIONS,
} from './definitions.js';
export type { CascadePreset, CascadeEnv } from './definitions.js';
export { DEFAULT_CASCADE_BEHAVIOUR, DEFAULT_CASCADE_DTMF_MESSAGE } from './settings.js';
export type { CascadeBehaviour, CascadeSettings, Greeting } from './settings.js';
export { CascadeSession } from './session.js';
export { TextChunker, speakable } from './chunker.js';
export type { ChunkerOptions } from './chunker.js';
export { Conversation, MISSING_TOOL_RESULT } from './conversation.js';
export { SpokenTimeline, wholeWordsPrefix } from './timeline.js';
export { TurnDetector, countWords } from './turns.js';
export type { Turn, TurnSettings, TurnListener } from './turns.js';
