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
export {
  startOpenAiRealtimeEmulator,
  DEFAULT_REALTIME_REPLY,
  type OpenAiRealtimeEmulator,
  type OpenAiRealtimeEmulatorOptions,
  type RealtimeEmulatorConnection,
  type RealtimeEmulatorTiming,
  type RealtimeScript,
  type ScriptedReply,
  type ScriptedFunctionCall,
  type RealtimeUserTurn,
  type RealtimeResponseTrigger,
  type RealtimeResponseRequest,
  type RealtimeFault,
  type RealtimeFaultAction,
  type RealtimeFaultTrigger,
  type RealtimeConnectionFaults,
  type RealtimeServerEvent,
  type RealtimeResponseRecord,
  type RealtimeTruncationRecord,
  type RealtimeInputChunk,
  type RealtimeUpgradeRecord,
  type RealtimeSessionConfig,
  type RealtimeAudioFormat,
  type RealtimeTurnDetection,
  type RealtimeItem,
  type RealtimeContentPart,
} from './emulators/openai-realtime.js';
export {
  startOpenAiRestEmulator,
  type OpenAiRestEmulator,
  type OpenAiRestEmulatorOptions,
  type ChatCompletionRequest,
  type ChatScriptReply,
  type ScriptedToolCall,
  type SpeechRequest,
  type RestRoute,
  type RestFault,
  type RestFaultAction,
  type RestRequestRecord,
} from './emulators/openai-rest.js';
export {
  startAvrAmiEmulator,
  type AvrAmiEmulator,
  type AvrAmiEmulatorOptions,
  type AvrAmiFault,
  type AvrAmiRequestRecord,
} from './emulators/avr-ami.js';
export type { WaitOptions, JsonValue as EmulatorJsonValue } from './emulators/common.js';
