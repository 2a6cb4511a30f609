export { CallRecording, RECORDING_FLUSH_INTERVAL_MS, type CallRecordingOptions } from './call-recording.js';
export { CallRecordings, newRecordingId, RECORDING_ID_PATTERN, type CallRecordingsOptions, type RecordingSettings, type RetentionReport } from './recordings.js';
export { SIDECAR_FORMAT, SIDECAR_LIMITS, SIDECAR_VERSION, type RecordingSidecar, type SidecarToolCall, type SidecarTranscript } from './sidecar.js';
export { StereoTimeline, type TimelineSettings } from './timeline.js';
export { WAV_HEADER_BYTES, writeWavHeader } from './wav.js';
