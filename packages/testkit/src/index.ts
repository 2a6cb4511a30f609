export { fixturePath, FIXTURE_NAMES, FIXTURE_TEXT, type FixtureName, type FixtureBaseName } from './fixtures.js';
export { readWav, readWavAs8k, writeWav, encodeWav, type WavAudio } from './wav.js';
export { detectSpeechSegments, type SpeechSegment, type SpeechDetectorOptions } from './speech-segments.js';
export {
  simulateCall,
  reportToJson,
  type SimulateCallOptions,
  type CallReport,
  type CallReportJson,
  type CallEndReason,
  type DtmfEvent,
  type TranscriptEntry,
  type ResponseLatency,
  type BargeIn,
} from './call-simulator.js';
export { silence, whiteNoise, concatPcm, chunkPcm, goertzel, bestAlignment, audibleSpan } from './signals.js';
export { runCallCommand, formatReport, parseDtmf, CALL_USAGE, type CliIo } from './cli-call.js';
