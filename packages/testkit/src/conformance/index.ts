/**
 * Conformance suites for ASR, TTS and STS adapters (vitest `describe` factories). A separate entry point,
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
export {
  describeStsConformance,
  runStsConformanceCheck,
  STS_CONFORMANCE_CHECKS,
  type StsConformanceHarness,
  type StsConformanceSetup,
  type StsConformanceOptions,
  type StsConformanceTool,
  type StsCheckName,
  type StsCheck,
  type StsCheckResult,
} from './sts.js';
