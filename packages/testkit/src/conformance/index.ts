/**
 * Conformance suites for ASR and TTS adapters (vitest `describe` factories). A separate entry point,
 * `@stsgate/testkit/conformance`, because it imports vitest: the gateway's CLI imports the main entry.
 */
export {
  describeAsrConformance,
  runAsrConformanceCheck,
  ASR_CONFORMANCE_CHECKS,
  wordErrorRate,
  type AsrConformanceHarness,
  type AsrConformanceSetup,
  type AsrConformanceOptions,
  type AsrCheckName,
  type AsrCheck,
} from './asr.js';
export {
  describeTtsConformance,
  runTtsConformanceCheck,
  TTS_CONFORMANCE_CHECKS,
  type TtsConformanceHarness,
  type TtsConformanceSetup,
  type TtsConformanceOptions,
  type TtsUpstreamState,
  type TtsCheckName,
  type TtsCheck,
} from './tts.js';
