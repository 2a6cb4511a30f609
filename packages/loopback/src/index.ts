export { createLoopbackSts, defineLoopbackSts, loopbackEnvSchema, LOOPBACK_CAPABILITIES } from './adapter.js';
export type { LoopbackOptions } from './adapter.js';
export { LoopbackSession } from './session.js';
export { dtmfFrequencies, dtmfTone } from './dtmf.js';
export type { DtmfFrequencies, DtmfToneOptions } from './dtmf.js';
