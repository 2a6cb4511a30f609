export { CallRuntime, type CallRuntimeOptions } from './runtime.js';
export {
  DEFAULT_CALL_LIMITS,
  type AvrPeer,
  type CallCloseCode,
  type CallLimits,
  type CallMetric,
  type CallOutcome,
  type CallRuntimeObserver,
  type CallState,
  type PeerBacklog,
  type PolicyViolation,
} from './types.js';
export type { CallRecorder, RecordedCallStart, RecordedToolCall, RecordedToolStatus } from './recording.js';
export { systemClock, type CallClock, type CallTimer } from './clock.js';
export { OutboundPacer, OutboundQueue, type AudioPacer, type OutboundFrame, type Pumpable } from './outbound.js';
export { PeerWarnings, RateBudget } from './budget.js';
