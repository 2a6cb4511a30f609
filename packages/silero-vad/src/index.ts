export { createSileroVad, defineSileroVad, sileroVadEnvSchema, SILERO_VAD_DEFAULTS } from './adapter.js';
export type { SileroVadAdapter, SileroVadOptions } from './adapter.js';
export { Segmenter } from './segmenter.js';
export type { SegmentEvent, SegmenterConfig } from './segmenter.js';
