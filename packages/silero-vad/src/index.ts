export { createSileroVad, defineSileroVad, sileroVadEnvSchema, SILERO_VAD_DEFAULTS, DEFAULT_SILENCE_FLOOR_DBFS } from './adapter.js';
export type { SileroVadAdapter, SileroVadOptions } from './adapter.js';
export { Segmenter } from './segmenter.js';
export type { SegmentEvent, SegmenterConfig } from './segmenter.js';
