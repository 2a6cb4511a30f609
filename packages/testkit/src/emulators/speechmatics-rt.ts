/**
 * Speechmatics real-time ASR emulator, WebSocket API v2 (docs/reference/provider-protocols.md §2.1–2.7): plain ws on
 * 127.0.0.1:<random port>.
 *
 *   const rt = await startSpeechmaticsRtEmulator({ apiKey: 'sm-test-key' });
 *   // official SDK (it appends ?jwt=<token>&sm-app=<appId>; keep connectionTimeout small, its timers are never cleared):
 *   const client = new RealtimeClient({ url: rt.url, appId: 'stsgate', connectionTimeout: 1000 });
 *   await client.start(jwt, { audio_format: { type: 'raw', encoding: 'pcm_s16le', sample_rate: 8000 },
 *     transcription_config: { language: 'en', enable_partials: true, conversation_config: { end_of_utterance_silence_trigger: 0.5 } } });
 *   // or raw ws with header auth:  new WebSocket(rt.url, { headers: { Authorization: 'Bearer sm-test-key' } })
 *   const conn = await rt.waitForConnection();
 *   await rt.close();
 *
 * API (stable; append-only):
 *   startSpeechmaticsRtEmulator(options?: SpeechmaticsRtEmulatorOptions): Promise<SpeechmaticsRtEmulator>
 *   emulator.url  ws://127.0.0.1:PORT/v2 (usable verbatim as RealtimeClient's `url`)
 *   emulator.port, connections: SpeechmaticsRtConnection[] (accepted upgrades, in order), upgrades: every attempt with its
 *   status, queueFault(fault) (for the next accepted connection; also `options.faults`), waitFor(probe),
 *   waitForConnection(index?), close()
 *   connection: index, path, headers, query (all query parameters: jwt, sm-app, ...), appId, authVia, startRecognition
 *     (validated), transcriptionConfig (current, after SetRecognitionConfig), audioFrames, audioBytes, audioMs, lastSeqNo
 *     (last AudioAdded seq_no sent), endOfStream (the client's last_seq_no), received (client JSON messages), sent (server
 *     JSON messages), utterances, configWarnings, closeInfo, stalled, finalTranscript() (every AddTranscript
 *     metadata.transcript joined), applyFault(action), close(code, reason), pingsReceived, suspended
 *   SPEECHMATICS_RT_LANGUAGES (language codes accepted by default), SPEECHMATICS_RT_MODELS, speechmaticsRtCloseCode(type)
 *
 * Handshake
 * - Upgrade only at `/v2` or `/v2/` (HTTP 404 otherwise; a method other than GET -> 405).
 * - Auth: `?jwt=<token>` when present (checked by `options.verifyToken`, default: any non-empty token), else
 *   `Authorization: Bearer <key>` (one of `options.apiKey`; without `apiKey` any non-empty key). Missing or invalid ->
 *   HTTP 401 on the upgrade (JSON body `{"code":401,"error":"Unauthorized"}`, UNCONFIRMED). Failed upgrades do not
 *   consume queued faults.
 *
 * Session (audio clock: everything is driven by the audio received, never by wall time, except the idle and quiet
 * timeouts, the vocabulary start delay, the close grace after EndOfTranscript and `latency`; all JSON goes out as text
 * frames)
 * - The first message must be a text `StartRecognition`, validated with zod (strict: unknown fields are errors).
 *   `audio_format` (required): `{type:'raw', encoding: pcm_s16le|pcm_f32le|mulaw, sample_rate: integer 1000..192000}`
 *   or `{type:'file'}` (the emulator decodes only a WAV stream holding PCM/float/G.711; anything else -> Error
 *   `invalid_audio_type` at the first audio, which is also what an adapter that forgets `audio_format` gets: the JS SDK
 *   defaults to `{type:'file'}`). `transcription_config`: `language` (SPEECHMATICS_RT_LANGUAGES or `options.languages`,
 *   else `invalid_language`), `model` / `operating_point` (standard|enhanced|melia-1, else `invalid_model`), `max_delay`
 *   0.7–4, `max_delay_mode` flexible|fixed, `enable_partials`, `enable_entities`, `diarization`
 *   none|speaker|channel|channel_and_speaker, `speaker_diarization_config`, `additional_vocab` (strings or
 *   {content, sounds_like[]}), `conversation_config.end_of_utterance_silence_trigger` 0–2, `domain`, `output_locale`,
 *   `punctuation_overrides`, `audio_filtering_config`, `transcript_filtering_config`, `channel_diarization_labels`;
 *   top level `translation_config`, `audio_events_config` (accepted, no output). Errors: problems under
 *   `audio_format` -> `invalid_audio_type`, model -> `invalid_model`, language -> `invalid_language`, anything else ->
 *   `invalid_config`; each is `{"message":"Error","type":...,"reason":...}` followed by a close (see codes below).
 *   An `end_of_utterance_silence_trigger` (> 0) not below `max_delay` (default 4) is accepted: the docs only advise
 *   against it and the spec has no error or warning for it; it is noted in `connection.configWarnings` (also after a
 *   SetRecognitionConfig that changes either) and logged.
 * - Reply: `RecognitionStarted {orchestrator_version, id (uuid), language_pack_info}`, then (raw formats, unless
 *   `options.recognitionQualityInfo === false`) `Info {type:'recognition_quality', quality: telephony below 12 kHz else
 *   broadcast}`. With a non-empty `additional_vocab`, RecognitionStarted comes `vocabStartDelayMs` (default 0) of wall
 *   time later: the SDK documents "a delay of up to 15 seconds (depending on the size of the list)". Anything the client
 *   sends meanwhile -> Error `protocol_error` + close (a client must wait for RecognitionStarted before sending audio).
 * - Each binary frame is one AddAudio, acked with `AudioAdded {seq_no}` counting from 1 (the ack goes out before any
 *   transcript the audio produces). Binary audio before StartRecognition -> Error `protocol_error` + close.
 * - Segmentation: 10 ms frames, voiced at or above `vad.thresholdDbfs` (default -40 dBFS); utterances with less than
 *   `vad.minSpeechMs` (default 60) voiced audio are dropped as noise.
 * - Partials (only with `enable_partials`): `AddPartialTranscript` every `partialIntervalMs` (default 300) of audio of an
 *   open utterance, revealing one word of the recogniser's guess per 250 ms of speech (none while the guess is empty;
 *   the default recogniser, `fixtureRecognizer()`, makes no guess for unidentified speech shorter than 300 ms and
 *   says `utterance N` for unidentified audio after that).
 * - Finals: an utterance is final when its trailing silence reaches
 *   `min(max_delay (default 4 s), vad.finalSilenceMs (default 700 ms), end_of_utterance_silence_trigger if > 0)`, so the
 *   finals always precede that silence's EndOfUtterance. Then `AddTranscript` (format "2.1", `metadata{start_time,
 *   end_time, transcript}` with the formatted text plus a trailing space, `results[]`: words spread evenly over the
 *   voiced span, punctuation as zero-length items with `attaches_to:"previous"` and `is_eos` true for `.?!`,
 *   `alternatives[{content, confidence, language}]` with `speaker:"S1"` when diarization is speaker or
 *   channel_and_speaker), followed (with partials) by an empty `AddPartialTranscript`. Times are seconds of audio,
 *   rounded to 0.01. There are no progressive finals inside continuous speech.
 * - `EndOfUtterance {metadata:{start_time,end_time}}` (both the end of the speech) once the silence after an
 *   utterance reaches `end_of_utterance_silence_trigger` (> 0): only after speech, once per silence; speech that
 *   resumes first (at least `minSpeechMs`) cancels it.
 * - `ForceEndOfUtterance` (optional `channel`, `timestamp`, recorded and ignored): the open utterance (if any, else an
 *   empty one) goes out as `AddTranscript` with `"forced": true`, then `EndOfUtterance` with `"forced": true`; the
 *   silence's own EndOfUtterance is then not sent.
 * - `SetRecognitionConfig {transcription_config}`: the mid-session fields of the SDK (`language` (must stay the same),
 *   `max_delay`, `max_delay_mode`, `enable_partials`, `audio_filtering_config`, `conversation_config`) are validated and
 *   applied; any other field -> Error `invalid_config`. No reply.
 * - `GetSpeakers {final?}` -> `SpeakersResult {speakers: []}` (no speaker identification).
 * - `EndOfStream {last_seq_no}` -> the open utterance's finals, `EndOfTranscript`, then close 1000 after `endGraceMs`
 *   (default 500) unless the client closed first (the SDK closes on EndOfTranscript). Audio after it -> `Warning
 *   {type:'add_audio_after_eos'}` (not acked); other messages after it are recorded and ignored. `last_seq_no` above
 *   the last `AudioAdded.seq_no` sent (audio the server never received) -> Error `protocol_error` + close 1003: the
 *   spec does not say what the service does (UNCONFIRMED; a server waiting for that audio would never finish), so the
 *   emulator refuses it. A lower one is accepted: the official SDK sends the last seq_no it saw acknowledged, which
 *   can lag behind what it sent; all audio received is still transcribed.
 * - Invalid JSON, a non-object, an unknown or malformed message -> Error `invalid_message`; `StartRecognition` twice
 *   or a message before StartRecognition -> `protocol_error`; `AddChannelAudio`/`EndOfChannel` -> `not_allowed`
 *   (multichannel is not implemented). The spec says every Error ends the session, so each one is followed by a close.
 * - Idle: no audio for `idleTimeoutMs` (default 3 600 000, the service's one hour) -> Error `idle_timeout` + close 1008;
 *   `Warning {type:'idle_timeout'}` at 45/60, 50/60 and 55/60 of it (the service warns at 15, 10, 5 minutes before).
 * - Quiet: no audio and no WebSocket ping or pong from the client for `quietTimeoutMs` (default 180 000: limits.mdx
 *   ends sessions with "No audio or ping/pongs sent for 3 minutes") -> Error `idle_timeout` + close 1008 (the type
 *   of that error is UNCONFIRMED; limits.mdx only says an in-band error and 1008). No warning first. Pings are
 *   answered with a pong unless the connection is stalled, and counted (`pingsReceived`).
 * - Close codes after an Error (§2.4 table; the close reason is the error type): protocol_error 1003, not_authorised
 *   4001, not_allowed 4003, invalid_model 4004, quota_exceeded 4005, timelimit_exceeded 4006, job_error 4013,
 *   idle_timeout/session_timeout 1008, unknown_error 1011. Types the table does not list (invalid_message,
 *   invalid_config, invalid_audio_type, invalid_language, invalid_output_format) use 1003: emulator choice, UNCONFIRMED.
 * - A failure inside the emulator is answered with Error `unknown_error` + close 1011; garbage never crashes it.
 *
 * Latency (`options.latency`, default none): `finalDelayMs` sends each `AddTranscript` (forced ones included) and
 * each `EndOfUtterance` this many ms of wall time after the emulator decided it on the audio clock (`utterances` is
 * recorded at the decision). The transcript messages (AddPartialTranscript, AddTranscript, EndOfUtterance,
 * EndOfTranscript) keep their order: a partial or EndOfTranscript decided meanwhile waits behind them, and the close
 * grace starts once EndOfTranscript is out. AudioAdded, Info, Warning, SpeakersResult and Error are not held (audio
 * is acked while a transcript is pending); an Error, a fault or a close drops what is still held.
 *
 * Faults (`SpeechmaticsRtFault`, FIFO, each for one accepted connection; `times` for several): at `upgrade` (`http`
 * status response, or `drop`), at `start` (default: after StartRecognition was validated, before RecognitionStarted,
 * so an `error` makes the SDK's start() reject with `Error(<type>)`), after `{afterAudioMs}` of audio, at `force`
 * (ForceEndOfUtterance) or at `end` (EndOfStream, before any answer). Actions: `error {errorType, reason?, closeCode?}`
 * (Error then close with the table's code), `drop` (socket destroyed, no close frame), `stall` (stops answering and
 * stops its timers; the socket stays open), `close {code, reason?}`, `malformed` (a non-JSON text frame; the real SDK
 * throws on it, so do not use it with the SDK), `warning {warningType, reason?}`, `info {infoType?, reason?, fields?}`,
 * `duration_limit {durationLimit?, reason?}` (the spec's `Warning duration_limit_exceeded`, which "triggers the same
 * mechanism as receiving an EndOfStream": the Warning with `duration_limit` (seconds, default 3600), the open
 * utterance's finals, `EndOfTranscript`, then the session is suspended: audio is still acked with `AudioAdded` but
 * ignored, other messages are recorded and ignored, and the socket stays open until the client closes it or a timeout
 * ends it; `connection.suspended` is true). Non-terminal actions (warning, info, malformed) let the session go on.
 *
 * Not implemented: multichannel (AddChannelAudio, channel diarization labels), translation and audio events output,
 * entities, real diarization (always "S1"), speaker identification, audio filtering / volume threshold, word
 * replacements, output_locale, progressive finals during long speech, compressed files (mp3, ogg, ...), the
 * `concurrent_session_usage` Info unless sent by a fault, session_timeout. Error wording is the emulator's own.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { RawData, WebSocket } from 'ws';
import { z } from 'zod';
import { knownRawSampleCodec, StreamDecoder, wavSampleCodec } from './audio-codecs.js';
import { bearerToken, isRecord, silentLogger, TimerSet, type JsonObject, type JsonValue, type WaitOptions } from './common.js';
import { fixtureRecognizer, OrderedSends, type SonioxUtterance } from './soniox-stt.js';
import { SpeechSegmenter, splitWords, spreadWords, type OpenUtterance } from './speech-turns.js';
import { ArmedFaults, createWsEmulatorHost, failUpgrade, toBuffer, writeRawHttp } from './ws-server.js';

// ---- public types ----------------------------------------------------------------------------------------------------

/** Models accepted in `transcription_config.model` / `operating_point`. */
export const SPEECHMATICS_RT_MODELS = ['standard', 'enhanced', 'melia-1'] as const;

/** Language codes accepted by default (Speechmatics' real-time list as documented; UNCONFIRMED in detail). */
export const SPEECHMATICS_RT_LANGUAGES: readonly string[] = [
  'auto', 'ar', 'ba', 'eu', 'be', 'bn', 'bg', 'yue', 'ca', 'hr', 'cs', 'da', 'nl', 'en', 'eo', 'et', 'fi', 'fr', 'gl',
  'de', 'el', 'he', 'hi', 'hu', 'id', 'ia', 'ga', 'it', 'ja', 'ko', 'lv', 'lt', 'ms', 'mt', 'cmn', 'mr', 'mn', 'no',
  'fa', 'pl', 'pt', 'ro', 'ru', 'sk', 'sl', 'es', 'sw', 'sv', 'tl', 'ta', 'th', 'tr', 'uk', 'ur', 'ug', 'vi', 'cy',
  'cmn_en', 'en_ms', 'en_ta', 'cmn_en_ms_ta',
];

export type SpeechmaticsRtErrorType =
  | 'invalid_message'
  | 'invalid_model'
  | 'invalid_language'
  | 'invalid_config'
  | 'invalid_audio_type'
  | 'invalid_output_format'
  | 'not_authorised'
  | 'not_allowed'
  | 'job_error'
  | 'protocol_error'
  | 'quota_exceeded'
  | 'timelimit_exceeded'
  | 'idle_timeout'
  | 'session_timeout'
  | 'unknown_error';

export type SpeechmaticsRtWarningType =
  | 'duration_limit_exceeded'
  | 'unsupported_translation_pair'
  | 'idle_timeout'
  | 'session_timeout'
  | 'empty_translation_target_list'
  | 'add_audio_after_eos'
  | 'speaker_id';

/** WebSocket close code that follows an Error of `type` (§2.4 table; 1003 for the types the table does not list). */
export function speechmaticsRtCloseCode(type: SpeechmaticsRtErrorType): number {
  switch (type) {
    case 'not_authorised':
      return 4001;
    case 'not_allowed':
      return 4003;
    case 'invalid_model':
      return 4004;
    case 'quota_exceeded':
      return 4005;
    case 'timelimit_exceeded':
      return 4006;
    case 'job_error':
      return 4013;
    case 'idle_timeout':
    case 'session_timeout':
      return 1008;
    case 'unknown_error':
      return 1011;
    default:
      return 1003;
  }
}

const vocabSchema = z.union([
  z.string().min(1),
  z.object({ content: z.string().min(1), sounds_like: z.array(z.string().min(1)).min(1).optional() }).strict(),
]);
const modelSchema = z.enum(SPEECHMATICS_RT_MODELS);
const maxDelaySchema = z.number().min(0.7).max(4);
const maxDelayModeSchema = z.enum(['flexible', 'fixed']);
const audioFilteringSchema = z.object({ volume_threshold: z.number().min(0).max(100).optional() }).strict();
const conversationSchema = z.object({ end_of_utterance_silence_trigger: z.number().min(0).max(2).optional() }).strict();

const transcriptionConfigSchema = z
  .object({
    language: z.string().min(1),
    domain: z.string().optional(),
    output_locale: z.string().min(1).optional(),
    additional_vocab: z.array(vocabSchema).optional(),
    diarization: z.enum(['none', 'speaker', 'channel', 'channel_and_speaker']).optional(),
    max_delay: maxDelaySchema.optional(),
    max_delay_mode: maxDelayModeSchema.optional(),
    speaker_diarization_config: z
      .object({
        max_speakers: z.number().int().min(2).max(100).optional(),
        prefer_current_speaker: z.boolean().optional(),
        speaker_sensitivity: z.number().min(0).max(1).optional(),
        get_speakers: z.boolean().optional(),
        speakers: z.array(z.object({ label: z.string().min(1), speaker_identifiers: z.array(z.string()).min(1) }).strict()).optional(),
      })
      .strict()
      .optional(),
    audio_filtering_config: audioFilteringSchema.optional(),
    transcript_filtering_config: z
      .object({
        remove_disfluencies: z.boolean().optional(),
        replacements: z.array(z.object({ from: z.string(), to: z.string() }).strict()).optional(),
      })
      .strict()
      .optional(),
    enable_partials: z.boolean().optional(),
    enable_entities: z.boolean().optional(),
    operating_point: modelSchema.optional(),
    model: modelSchema.optional(),
    punctuation_overrides: z
      .object({
        permitted_marks: z.array(z.string().regex(/^(.|all)$/u)).optional(),
        sensitivity: z.number().min(0).max(1).optional(),
      })
      .strict()
      .optional(),
    conversation_config: conversationSchema.optional(),
    channel_diarization_labels: z.array(z.string()).optional(),
  })
  .strict();

const audioFormatSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('raw'), encoding: z.enum(['pcm_s16le', 'pcm_f32le', 'mulaw']), sample_rate: z.number().int().min(1000).max(192000) }).strict(),
  z.object({ type: z.literal('file') }).strict(),
]);

const startRecognitionSchema = z
  .object({
    message: z.literal('StartRecognition'),
    audio_format: audioFormatSchema,
    transcription_config: transcriptionConfigSchema,
    translation_config: z.object({ target_languages: z.array(z.string()), enable_partials: z.boolean().optional() }).strict().optional(),
    audio_events_config: z.object({ types: z.array(z.string()).optional() }).strict().optional(),
  })
  .strict();

const midSessionConfigSchema = z
  .object({
    language: z.string().min(1).optional(),
    max_delay: maxDelaySchema.optional(),
    max_delay_mode: maxDelayModeSchema.optional(),
    enable_partials: z.boolean().optional(),
    audio_filtering_config: audioFilteringSchema.optional(),
    conversation_config: conversationSchema.optional(),
  })
  .strict();

const setRecognitionConfigSchema = z.object({ message: z.literal('SetRecognitionConfig'), transcription_config: midSessionConfigSchema }).strict();
const endOfStreamSchema = z.object({ message: z.literal('EndOfStream'), last_seq_no: z.number().int().min(0) }).strict();
const forceEndSchema = z.object({ message: z.literal('ForceEndOfUtterance'), channel: z.string().optional(), timestamp: z.number().min(0).optional() }).strict();
const getSpeakersSchema = z.object({ message: z.literal('GetSpeakers'), final: z.boolean().optional() }).strict();

/** `StartRecognition` as accepted (validated). */
export type SpeechmaticsRtStartRecognition = z.infer<typeof startRecognitionSchema>;
export type SpeechmaticsRtTranscriptionConfig = z.infer<typeof transcriptionConfigSchema>;
export type SpeechmaticsRtAudioFormat = z.infer<typeof audioFormatSchema>;

export interface SpeechmaticsRtAlternative {
  readonly content: string;
  readonly confidence: number;
  readonly language: string;
  readonly speaker?: string;
}

export interface SpeechmaticsRtResult {
  readonly type: 'word' | 'punctuation';
  readonly start_time: number;
  readonly end_time: number;
  readonly attaches_to?: 'previous';
  readonly is_eos?: boolean;
  readonly alternatives: readonly SpeechmaticsRtAlternative[];
}

export interface SpeechmaticsRtTranscriptMessage {
  readonly message: 'AddTranscript' | 'AddPartialTranscript';
  readonly format: '2.1';
  readonly metadata: { readonly start_time: number; readonly end_time: number; readonly transcript: string };
  readonly results: readonly SpeechmaticsRtResult[];
  readonly forced?: true;
}

export type SpeechmaticsRtServerMessage =
  | {
      readonly message: 'RecognitionStarted';
      readonly orchestrator_version: string;
      readonly id: string;
      readonly language_pack_info: JsonObject;
    }
  | { readonly message: 'AudioAdded'; readonly seq_no: number }
  | SpeechmaticsRtTranscriptMessage
  | { readonly message: 'EndOfUtterance'; readonly metadata: { readonly start_time: number; readonly end_time: number }; readonly forced?: true }
  | { readonly message: 'EndOfTranscript' }
  | { readonly message: 'SpeakersResult'; readonly speakers: readonly JsonValue[] }
  | ({ readonly message: 'Info'; readonly type: string; readonly reason: string } & JsonObject)
  | {
      readonly message: 'Warning';
      readonly type: SpeechmaticsRtWarningType;
      readonly reason: string;
      readonly seq_no?: number;
      /** Only with `duration_limit_exceeded`: the limit exceeded, in seconds. */
      readonly duration_limit?: number;
    }
  | { readonly message: 'Error'; readonly type: SpeechmaticsRtErrorType; readonly reason: string };

/** What the recogniser sees of one utterance (the same shape as the Soniox emulator's, so recognisers are shared). */
export type SpeechmaticsRtUtterance = SonioxUtterance;
export type SpeechmaticsRtRecognizer = (utterance: SpeechmaticsRtUtterance) => string;

export interface SpeechmaticsRtUtteranceRecord {
  readonly index: number;
  readonly startMs: number;
  readonly endMs: number;
  readonly text: string;
  /** Trailing silence, ForceEndOfUtterance, EndOfStream, or the `duration_limit` fault. */
  readonly endedBy: 'silence' | 'forced' | 'end' | 'limit';
}

export type SpeechmaticsRtFaultAction =
  | { readonly type: 'error'; readonly errorType: SpeechmaticsRtErrorType; readonly reason?: string; readonly closeCode?: number }
  | { readonly type: 'drop' }
  | { readonly type: 'stall' }
  | { readonly type: 'close'; readonly code: number; readonly reason?: string }
  | { readonly type: 'malformed'; readonly text?: string }
  | { readonly type: 'warning'; readonly warningType: SpeechmaticsRtWarningType; readonly reason?: string }
  | { readonly type: 'info'; readonly infoType?: string; readonly reason?: string; readonly fields?: JsonObject }
  /** Warning duration_limit_exceeded, then what EndOfStream does (finals, EndOfTranscript), then the session is suspended. */
  | { readonly type: 'duration_limit'; readonly durationLimit?: number; readonly reason?: string }
  /** Only at `upgrade`: answer the upgrade with this HTTP status. */
  | { readonly type: 'http'; readonly status: number; readonly body?: JsonValue };

export type SpeechmaticsRtFaultTrigger = 'upgrade' | 'start' | 'force' | 'end' | { readonly afterAudioMs: number };

export interface SpeechmaticsRtFault {
  /** Default `start`. */
  readonly at?: SpeechmaticsRtFaultTrigger;
  readonly action: SpeechmaticsRtFaultAction;
  /** Number of consecutive connections it applies to (default 1). */
  readonly times?: number;
}

export interface SpeechmaticsRtUpgradeRecord {
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  readonly headers: IncomingHttpHeaders;
  /** 101, the HTTP status the upgrade was answered with, or 0 when dropped. */
  readonly status: number;
}

export interface SpeechmaticsRtCloseInfo {
  readonly code: number;
  readonly reason: string;
  /** Who ended the connection: a close frame from the client or the server, or a dropped socket. */
  readonly by: 'client' | 'server' | 'dropped';
}

export interface SpeechmaticsRtConnection {
  readonly index: number;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  /** Every query parameter of the upgrade (`jwt`, `sm-app`, `sm-enable-legacy-rt`, ...). */
  readonly query: Readonly<Record<string, string>>;
  /** The `sm-app` query parameter. */
  readonly appId: string | undefined;
  readonly authVia: 'header' | 'jwt';
  /** The accepted StartRecognition. */
  readonly startRecognition: SpeechmaticsRtStartRecognition | undefined;
  /** The transcription config in force (StartRecognition's, updated by SetRecognitionConfig). */
  readonly transcriptionConfig: SpeechmaticsRtTranscriptionConfig | undefined;
  readonly audioFrames: number;
  readonly audioBytes: number;
  /** Decoded audio received, in ms. */
  readonly audioMs: number;
  /** The last `AudioAdded.seq_no` sent (0 before any). */
  readonly lastSeqNo: number;
  /** `last_seq_no` of the client's EndOfStream. */
  readonly endOfStream: number | undefined;
  /** Every client text message that parsed as JSON. */
  readonly received: readonly JsonValue[];
  /** Every JSON message sent. */
  readonly sent: readonly SpeechmaticsRtServerMessage[];
  readonly utterances: readonly SpeechmaticsRtUtteranceRecord[];
  /** Accepted settings Speechmatics advises against (an end_of_utterance_silence_trigger not below max_delay). */
  readonly configWarnings: readonly string[];
  readonly closeInfo: SpeechmaticsRtCloseInfo | undefined;
  readonly stalled: boolean;
  /** WebSocket pings received from the client (answered with a pong unless stalled). */
  readonly pingsReceived: number;
  /** The server ended the transcription on its own (`duration_limit` fault) and ignores the audio that follows. */
  readonly suspended: boolean;
  /** Every AddTranscript `metadata.transcript`, joined. */
  finalTranscript(): string;
  applyFault(action: SpeechmaticsRtFaultAction): void;
  close(code?: number, reason?: string): void;
}

/** Provider latency added on top of the audio clock (see the header comment). */
export interface SpeechmaticsRtLatency {
  /** Wall time between deciding an AddTranscript or EndOfUtterance and sending it (default 0). */
  readonly finalDelayMs?: number;
}

export interface SpeechmaticsRtEmulatorOptions {
  /** API key(s) accepted as `Authorization: Bearer <key>` (default: any non-empty key). */
  readonly apiKey?: string | readonly string[];
  /** Check of a `?jwt=` token (default: any non-empty token). */
  readonly verifyToken?: (jwt: string) => boolean;
  /** Text of each utterance (default: `fixtureRecognizer()` from the Soniox emulator). */
  readonly recognize?: SpeechmaticsRtRecognizer;
  /** Accepted language codes (default SPEECHMATICS_RT_LANGUAGES). */
  readonly languages?: readonly string[];
  readonly vad?: {
    /** Voiced frame threshold (default -40 dBFS). */
    readonly thresholdDbfs?: number;
    /** Utterances with less voiced audio are dropped (default 60). */
    readonly minSpeechMs?: number;
    /** Upper bound of the trailing silence that finalises an utterance (default 700). */
    readonly finalSilenceMs?: number;
  };
  /** Audio ms between two partials of an open utterance (default 300). */
  readonly partialIntervalMs?: number;
  /** No audio for this long -> Error idle_timeout + close 1008 (default 3 600 000). */
  readonly idleTimeoutMs?: number;
  /** No audio and no ping or pong from the client for this long -> Error idle_timeout + close 1008 (default 180 000). */
  readonly quietTimeoutMs?: number;
  /** Wall time before RecognitionStarted when `additional_vocab` is not empty (default 0; the service: up to 15 s). */
  readonly vocabStartDelayMs?: number;
  /** Close 1000 this long after EndOfTranscript unless the client closed (default 500). */
  readonly endGraceMs?: number;
  /** Send `Info recognition_quality` after RecognitionStarted (default true). */
  readonly recognitionQualityInfo?: boolean;
  readonly latency?: SpeechmaticsRtLatency;
  readonly faults?: readonly SpeechmaticsRtFault[];
  readonly logger?: Logger;
}

export interface SpeechmaticsRtEmulator {
  /** `ws://127.0.0.1:PORT/v2`. */
  readonly url: string;
  readonly port: number;
  readonly connections: readonly SpeechmaticsRtConnection[];
  readonly upgrades: readonly SpeechmaticsRtUpgradeRecord[];
  queueFault(fault: SpeechmaticsRtFault): void;
  waitFor<T>(probe: () => T | undefined | null | false, options?: WaitOptions): Promise<T>;
  /** Resolves with connection `index` (default: the next one not yet returned by this method). */
  waitForConnection(index?: number, options?: WaitOptions): Promise<SpeechmaticsRtConnection>;
  close(): Promise<void>;
}

// ---- audio decoding -------------------------------------------------------------------------------------------------

/** Parses a RIFF/WAVE header; `undefined` while more bytes are needed. */
function parseWavHeader(data: Buffer): { decoder: StreamDecoder; rate: number; dataOffset: number } | 'invalid' | undefined {
  if (!'RIFF'.startsWith(data.toString('latin1', 0, Math.min(4, data.length)))) return 'invalid';
  if (data.length < 12) return undefined;
  if (data.toString('ascii', 8, 12) !== 'WAVE') return 'invalid';
  let offset = 12;
  let fmt: { tag: number; channels: number; rate: number; bits: number } | undefined;
  while (offset + 8 <= data.length) {
    const id = data.toString('ascii', offset, offset + 4);
    const size = data.readUInt32LE(offset + 4);
    if (id === 'data') {
      if (fmt === undefined || fmt.rate < 1000 || fmt.rate > 192000 || fmt.channels < 1 || fmt.channels > 16) return 'invalid';
      const codec = wavSampleCodec(fmt.tag, fmt.bits);
      if (codec === undefined) return 'invalid';
      return { decoder: new StreamDecoder(codec, fmt.channels), rate: fmt.rate, dataOffset: offset + 8 };
    }
    if (offset + 8 + size > data.length) return data.length > 65536 ? 'invalid' : undefined;
    if (id === 'fmt ' && size >= 16) {
      let tag = data.readUInt16LE(offset + 8);
      if (tag === 0xfffe && size >= 26) tag = data.readUInt16LE(offset + 8 + 24);
      fmt = { tag, channels: data.readUInt16LE(offset + 10), rate: data.readUInt32LE(offset + 12), bits: data.readUInt16LE(offset + 22) };
    }
    offset += 8 + size + (size % 2);
  }
  return data.length > 65536 ? 'invalid' : undefined;
}

// ---- transcripts ----------------------------------------------------------------------------------------------------

const LANGUAGE_INFO: Readonly<Record<string, { description: string; delimiter?: string; rtl?: true }>> = {
  en: { description: 'English' },
  es: { description: 'Spanish' },
  fr: { description: 'French' },
  de: { description: 'German' },
  it: { description: 'Italian' },
  pt: { description: 'Portuguese' },
  nl: { description: 'Dutch' },
  ja: { description: 'Japanese', delimiter: '' },
  cmn: { description: 'Mandarin', delimiter: '' },
  yue: { description: 'Cantonese', delimiter: '' },
  th: { description: 'Thai', delimiter: '' },
  ar: { description: 'Arabic', rtl: true },
  he: { description: 'Hebrew', rtl: true },
  fa: { description: 'Persian', rtl: true },
  ur: { description: 'Urdu', rtl: true },
  auto: { description: 'Automatic' },
};

function languagePackInfo(language: string): JsonObject {
  const info = LANGUAGE_INFO[language];
  const out: JsonObject = {
    adapted: false,
    itn: true,
    word_delimiter: info?.delimiter ?? ' ',
    writing_direction: info?.rtl === true ? 'right-to-left' : 'left-to-right',
  };
  if (info !== undefined) out.language_description = info.description;
  return out;
}

const seconds = (ms: number): number => Math.round(ms / 10) / 100;

/** Word and punctuation items for `list` spread evenly over [startMs, endMs]. */
function buildResults(list: readonly string[], startMs: number, endMs: number, language: string, speaker: string | undefined, final: boolean): SpeechmaticsRtResult[] {
  const out: SpeechmaticsRtResult[] = [];
  const extra = speaker === undefined ? {} : { speaker };
  for (const { index, core, punctuation, startMs: wordStart, endMs: wordEnd } of spreadWords(list, startMs, endMs)) {
    if (core.length > 0) {
      const seed = (index * 7 + core.length * 3) % 10;
      out.push({
        type: 'word',
        start_time: seconds(wordStart),
        end_time: seconds(wordEnd),
        alternatives: [{ content: core, confidence: Math.round((final ? 0.9 + seed / 100 : 0.6 + seed / 50) * 100) / 100, language, ...extra }],
      });
    }
    for (const mark of punctuation) {
      out.push({
        type: 'punctuation',
        start_time: seconds(wordEnd),
        end_time: seconds(wordEnd),
        attaches_to: 'previous',
        is_eos: mark === '.' || mark === '?' || mark === '!',
        alternatives: [{ content: mark, confidence: 1, language, ...extra }],
      });
    }
  }
  return out;
}

// ---- connection -----------------------------------------------------------------------------------------------------

interface Settings {
  readonly apiKeys: ReadonlySet<string> | undefined;
  readonly verifyToken: (jwt: string) => boolean;
  readonly recognize: SpeechmaticsRtRecognizer;
  readonly languages: ReadonlySet<string>;
  readonly thresholdDbfs: number;
  readonly minSpeechMs: number;
  readonly finalSilenceMs: number;
  readonly partialIntervalMs: number;
  readonly idleTimeoutMs: number;
  readonly quietTimeoutMs: number;
  readonly vocabStartDelayMs: number;
  readonly endGraceMs: number;
  readonly recognitionQualityInfo: boolean;
  readonly finalDelayMs: number;
  readonly logger: Logger;
}

type ConnectionTrigger = Exclude<SpeechmaticsRtFaultTrigger, 'upgrade'>;

const DEFAULT_ERROR_REASON: Readonly<Record<SpeechmaticsRtErrorType, string>> = {
  invalid_message: 'The message received was not understood.',
  invalid_model: 'Unable to use the requested model.',
  invalid_language: 'The requested language is not supported.',
  invalid_config: 'The configuration is not valid.',
  invalid_audio_type: 'The audio type is not supported.',
  invalid_output_format: 'The output format is not supported.',
  not_authorised: 'Permission denied.',
  not_allowed: 'The requested action is not allowed.',
  job_error: 'Unable to process the session.',
  protocol_error: 'The message was not expected at this point of the protocol.',
  quota_exceeded: 'Concurrent session quota exceeded.',
  timelimit_exceeded: 'Usage quota for the contract has been reached.',
  idle_timeout: 'Idle duration limit was reached.',
  session_timeout: 'Max session duration was reached.',
  unknown_error: 'Internal error.',
};

const IDLE_WARNING_FRACTIONS = [45 / 60, 50 / 60, 55 / 60] as const;
/** `max_delay` when the client sets none (§2.3). */
const DEFAULT_MAX_DELAY_S = 4;

function minutes(ms: number): string {
  return String(Math.round((ms / 60000) * 100) / 100);
}

function describeIssue(issue: z.core.$ZodIssue, root: unknown): string {
  const path = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') return `Unknown field(s) ${issue.keys.map((key) => (path.length > 0 ? `${path}.${key}` : key)).join(', ')}`;
  let value: unknown = root;
  for (const key of issue.path) value = isRecord(value) || Array.isArray(value) ? (value as Record<PropertyKey, unknown>)[key] : undefined;
  if (value === undefined) return `Missing required field ${path}`;
  return `Invalid value for ${path}: ${issue.message}`;
}

class Connection implements SpeechmaticsRtConnection {
  startRecognition: SpeechmaticsRtStartRecognition | undefined;
  transcriptionConfig: SpeechmaticsRtTranscriptionConfig | undefined;
  audioFrames = 0;
  audioBytes = 0;
  lastSeqNo = 0;
  endOfStream: number | undefined;
  readonly received: JsonValue[] = [];
  readonly sent: SpeechmaticsRtServerMessage[] = [];
  readonly utterances: SpeechmaticsRtUtteranceRecord[] = [];
  readonly configWarnings: string[] = [];
  closeInfo: SpeechmaticsRtCloseInfo | undefined;
  stalled = false;
  pingsReceived = 0;

  readonly #ws: WebSocket;
  readonly #settings: Settings;
  readonly #notify: () => void;
  readonly #timers = new TimerSet();
  /** The transcript messages, in order, finals held for `latency.finalDelayMs`. */
  readonly #transcripts = new OrderedSends(this.#timers);
  #idleTimer: NodeJS.Timeout | undefined;
  #quietTimer: NodeJS.Timeout | undefined;
  readonly #faults: ArmedFaults<ConnectionTrigger, SpeechmaticsRtFaultAction>;
  /** `starting`: StartRecognition accepted, RecognitionStarted not sent yet; `suspended`: see the duration_limit fault. */
  #phase: 'awaiting-start' | 'starting' | 'started' | 'ended' | 'suspended' | 'done' = 'awaiting-start';
  #decoder: StreamDecoder | undefined;
  #wavHeader: Buffer | undefined;
  readonly #speech: SpeechSegmenter;
  /** End (samples) of the speech whose EndOfUtterance is still due. */
  #eouFrom: number | undefined;

  constructor(
    readonly index: number,
    readonly path: string,
    readonly headers: IncomingHttpHeaders,
    readonly query: Readonly<Record<string, string>>,
    readonly authVia: 'header' | 'jwt',
    ws: WebSocket,
    settings: Settings,
    faults: readonly SpeechmaticsRtFault[],
    notify: () => void,
  ) {
    this.#ws = ws;
    this.#settings = settings;
    this.#notify = notify;
    this.#speech = new SpeechSegmenter(0, settings.thresholdDbfs, settings.minSpeechMs);
    this.#faults = new ArmedFaults(faults, 'start');
    ws.on('message', (data: RawData, isBinary: boolean) => {
      try {
        this.#onMessage(toBuffer(data), isBinary);
      } catch (error) {
        settings.logger.error({ err: error }, 'speechmatics rt emulator: message handling failed');
        this.#fail('unknown_error', 'Internal error in the emulator.');
      }
      this.#notify();
    });
    // A stalled server answers no pings either (the ws library would otherwise pong for it).
    ws.on('ping', (data: Buffer) => {
      this.pingsReceived++;
      if (!this.#halted() && ws.readyState === ws.OPEN) ws.pong(data);
      this.#armQuiet();
      this.#notify();
    });
    ws.on('pong', () => this.#armQuiet());
    ws.on('close', (code: number, reason: Buffer) => {
      this.closeInfo ??= { code, reason: reason.toString('utf8'), by: 'client' };
      this.#timers.clear();
      this.#phase = 'done';
      this.#notify();
    });
    ws.on('error', (error: Error) => settings.logger.debug({ err: error }, 'speechmatics rt emulator: socket error'));
    this.#armIdle();
    this.#armQuiet();
  }

  get suspended(): boolean {
    return this.#phase === 'suspended';
  }

  get appId(): string | undefined {
    return this.query['sm-app'];
  }

  get audioMs(): number {
    const speech = this.#speech;
    if (speech.rate === 0) return 0;
    return ((speech.samples + speech.pending) * 1000) / speech.rate;
  }

  finalTranscript(): string {
    let text = '';
    for (const message of this.sent) if (message.message === 'AddTranscript') text += message.metadata.transcript;
    return text;
  }

  applyFault(action: SpeechmaticsRtFaultAction): void {
    if (this.closeInfo !== undefined) return;
    switch (action.type) {
      case 'error':
        this.#fail(action.errorType, action.reason ?? DEFAULT_ERROR_REASON[action.errorType], action.closeCode);
        return;
      case 'drop':
        this.closeInfo = { code: 1006, reason: '', by: 'dropped' };
        this.#phase = 'done';
        this.#timers.clear();
        this.#ws.terminate();
        this.#notify();
        return;
      case 'stall':
        this.stalled = true;
        this.#timers.clear();
        this.#notify();
        return;
      case 'close':
        this.close(action.code, action.reason ?? '');
        return;
      case 'malformed':
        if (this.stalled) return;
        this.#ws.send(action.text ?? '{"message":"AddTranscript","format":"2.1","metadata":{"start_ti');
        return;
      case 'warning':
        this.#send({ message: 'Warning', type: action.warningType, reason: action.reason ?? `Emulated ${action.warningType} warning.` });
        return;
      case 'info':
        this.#send({
          ...(action.fields ?? {}),
          message: 'Info',
          type: action.infoType ?? 'concurrent_session_usage',
          reason: action.reason ?? 'Emulated info message.',
        });
        return;
      case 'duration_limit':
        this.#durationLimit(action.durationLimit ?? 3600, action.reason);
        return;
      case 'http':
        // Only meaningful at the upgrade; on an open socket it is a drop.
        this.applyFault({ type: 'drop' });
        return;
      default: {
        const exhaustive: never = action;
        throw new Error(`unknown fault ${JSON.stringify(exhaustive)}`);
      }
    }
  }

  close(code = 1000, reason = ''): void {
    if (this.closeInfo !== undefined) return;
    this.closeInfo = { code, reason, by: 'server' };
    this.#phase = 'done';
    this.#timers.clear();
    try {
      this.#ws.close(code, reason);
    } catch (error) {
      this.#settings.logger.debug({ err: error }, 'speechmatics rt emulator: invalid close code, terminating');
      this.#ws.terminate();
    }
    this.#notify();
  }

  dispose(): void {
    this.#timers.clear();
    this.closeInfo ??= { code: 1006, reason: 'emulator closed', by: 'dropped' };
    this.#phase = 'done';
    this.#ws.terminate();
  }

  // ---- plumbing ----

  #armIdle(): void {
    this.#timers.cancel(this.#idleTimer);
    const total = this.#settings.idleTimeoutMs;
    const stage = (step: number, previousAt: number): void => {
      const at = step < IDLE_WARNING_FRACTIONS.length ? Math.round(total * (IDLE_WARNING_FRACTIONS[step] as number)) : total;
      this.#idleTimer = this.#timers.after(Math.max(0, at - previousAt), () => {
        if (this.stalled || this.#phase === 'done') return;
        if (step < IDLE_WARNING_FRACTIONS.length) {
          this.#send({
            message: 'Warning',
            type: 'idle_timeout',
            reason: `Session will timeout in ${minutes(total - at)}m due to inactivity, no audio sent within the last ${minutes(at)}m`,
          });
          stage(step + 1, at);
        } else {
          this.#fail('idle_timeout', `Session ended due to inactivity, no audio sent within the last ${minutes(total)}m`);
        }
      });
    };
    stage(0, 0);
  }

  /** limits.mdx: a session ends after "No audio or ping/pongs sent for 3 minutes". */
  #armQuiet(): void {
    if (this.#phase === 'done' || this.stalled) return;
    this.#timers.cancel(this.#quietTimer);
    const limit = this.#settings.quietTimeoutMs;
    this.#quietTimer = this.#timers.after(limit, () => {
      if (this.stalled || this.#phase === 'done') return;
      this.#fail('idle_timeout', `Session ended due to inactivity, no audio or ping/pong within the last ${minutes(limit)}m`);
    });
  }

  #send(message: SpeechmaticsRtServerMessage): void {
    if (this.stalled || this.closeInfo !== undefined) return;
    this.sent.push(message);
    this.#ws.send(JSON.stringify(message));
  }

  /** A transcript message, after those queued before it; `final` ones also wait `finalDelayMs`. */
  #sendTranscript(message: SpeechmaticsRtServerMessage, final = false): void {
    this.#transcripts.push(final ? this.#settings.finalDelayMs : 0, () => this.#send(message));
  }

  #fail(type: SpeechmaticsRtErrorType, reason: string, closeCode?: number): void {
    if (this.stalled || this.closeInfo !== undefined) return;
    this.#send({ message: 'Error', type, reason });
    this.close(closeCode ?? speechmaticsRtCloseCode(type), type);
  }

  /** Runs the faults armed for `trigger`; returns true when one ended or froze the connection. */
  #trigger(matches: (at: ConnectionTrigger) => boolean): boolean {
    for (const action of this.#faults.take(matches)) this.applyFault(action);
    return this.#halted();
  }

  #halted(): boolean {
    return this.stalled || this.closeInfo !== undefined;
  }

  // ---- messages ----

  #onMessage(data: Buffer, isBinary: boolean): void {
    if (this.#halted() || this.#phase === 'done') return;
    if (isBinary) {
      this.#onAudio(data);
      return;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(data.toString('utf8'));
    } catch {
      this.#fail('invalid_message', 'Message is not valid JSON.');
      return;
    }
    this.received.push(parsed as JsonValue);
    if (!isRecord(parsed) || typeof parsed.message !== 'string') {
      this.#fail('invalid_message', 'Message must be a JSON object with a "message" field.');
      return;
    }
    if (this.#phase === 'ended' || this.#phase === 'suspended') return;
    const name = parsed.message;
    if (this.#phase === 'starting') {
      this.#fail('protocol_error', `${name} received before RecognitionStarted.`);
      return;
    }
    if (this.#phase === 'awaiting-start') {
      if (name !== 'StartRecognition') {
        this.#fail('protocol_error', `Expected StartRecognition, got ${name}.`);
        return;
      }
      this.#onStart(parsed);
      return;
    }
    switch (name) {
      case 'StartRecognition':
        this.#fail('protocol_error', 'Recognition has already started.');
        return;
      case 'EndOfStream': {
        const result = endOfStreamSchema.safeParse(parsed);
        if (!result.success) {
          this.#fail('invalid_message', `Invalid EndOfStream: ${describeIssue(result.error.issues[0] as z.core.$ZodIssue, parsed)}`);
          return;
        }
        this.#onEndOfStream(result.data.last_seq_no);
        return;
      }
      case 'ForceEndOfUtterance': {
        const result = forceEndSchema.safeParse(parsed);
        if (!result.success) {
          this.#fail('invalid_message', `Invalid ForceEndOfUtterance: ${describeIssue(result.error.issues[0] as z.core.$ZodIssue, parsed)}`);
          return;
        }
        if (this.#trigger((at) => at === 'force')) return;
        this.#forceEnd();
        return;
      }
      case 'SetRecognitionConfig':
        this.#onSetConfig(parsed);
        return;
      case 'GetSpeakers':
        if (!getSpeakersSchema.safeParse(parsed).success) {
          this.#fail('invalid_message', 'Invalid GetSpeakers message.');
          return;
        }
        this.#send({ message: 'SpeakersResult', speakers: [] });
        return;
      case 'AddChannelAudio':
      case 'EndOfChannel':
        this.#fail('not_allowed', `${name} is only available for multichannel sessions (not supported by the emulator).`);
        return;
      default:
        this.#fail('invalid_message', `Unknown message type: ${name}.`);
    }
  }

  #onStart(parsed: Record<string, unknown>): void {
    const result = startRecognitionSchema.safeParse(parsed);
    if (!result.success) {
      const issue = result.error.issues[0] as z.core.$ZodIssue;
      const [top, field] = issue.path;
      const type: SpeechmaticsRtErrorType =
        top === 'audio_format'
          ? 'invalid_audio_type'
          : top === 'transcription_config' && (field === 'model' || field === 'operating_point')
            ? 'invalid_model'
            : 'invalid_config';
      this.#fail(type, describeIssue(issue, parsed));
      return;
    }
    const start = result.data;
    if (!this.#settings.languages.has(start.transcription_config.language)) {
      this.#fail('invalid_language', `Language not supported: ${start.transcription_config.language}`);
      return;
    }
    this.startRecognition = start;
    this.transcriptionConfig = start.transcription_config;
    this.#noteLatencyConfig(start.transcription_config);
    if (start.audio_format.type === 'raw') {
      this.#decoder = new StreamDecoder(knownRawSampleCodec(start.audio_format.encoding), 1);
      this.#speech.setRate(start.audio_format.sample_rate);
    }
    this.#phase = 'starting';
    if (this.#trigger((at) => at === 'start')) return;
    // The SDK: with additional_vocab "you should expect a delay of up to 15 seconds" before RecognitionStarted.
    const delay = (start.transcription_config.additional_vocab?.length ?? 0) > 0 ? this.#settings.vocabStartDelayMs : 0;
    if (delay > 0) this.#timers.after(delay, () => this.#recognitionStarted(start));
    else this.#recognitionStarted(start);
  }

  #recognitionStarted(start: SpeechmaticsRtStartRecognition): void {
    if (this.#halted() || this.#phase !== 'starting') return;
    this.#phase = 'started';
    this.#send({
      message: 'RecognitionStarted',
      orchestrator_version: '2025.11.07+emulator',
      id: randomUUID(),
      language_pack_info: languagePackInfo(start.transcription_config.language),
    });
    if (this.#settings.recognitionQualityInfo && start.audio_format.type === 'raw') {
      const quality = start.audio_format.sample_rate < 12000 ? 'telephony' : 'broadcast';
      this.#send({ message: 'Info', type: 'recognition_quality', quality, reason: `Running recognition using a ${quality} model quality.` });
    }
    this.#notify();
  }

  #onSetConfig(parsed: Record<string, unknown>): void {
    const result = setRecognitionConfigSchema.safeParse(parsed);
    const current = this.transcriptionConfig;
    if (!result.success || current === undefined) {
      const issue = result.success ? undefined : result.error.issues[0];
      this.#fail('invalid_config', issue === undefined ? 'Invalid SetRecognitionConfig.' : describeIssue(issue, parsed));
      return;
    }
    const update = result.data.transcription_config;
    if (update.language !== undefined && update.language !== current.language) {
      this.#fail('invalid_config', 'transcription_config.language cannot be changed during a session.');
      return;
    }
    this.transcriptionConfig = { ...current, ...update, language: current.language };
    if (update.max_delay !== undefined || update.conversation_config !== undefined) this.#noteLatencyConfig(this.transcriptionConfig);
  }

  /**
   * Speechmatics advises an end_of_utterance_silence_trigger below max_delay (§2.3), but neither the spec nor the docs
   * make it an error: the config is accepted and the advice noted in `configWarnings`.
   */
  #noteLatencyConfig(config: SpeechmaticsRtTranscriptionConfig): void {
    const trigger = config.conversation_config?.end_of_utterance_silence_trigger ?? 0;
    const maxDelay = config.max_delay ?? DEFAULT_MAX_DELAY_S;
    if (trigger <= 0 || trigger < maxDelay) return;
    const note = `end_of_utterance_silence_trigger (${String(trigger)} s) is not below max_delay (${String(maxDelay)} s), against Speechmatics' advice`;
    this.configWarnings.push(note);
    this.#settings.logger.warn({ connection: this.index }, `speechmatics rt emulator: ${note}`);
  }

  #onEndOfStream(lastSeqNo: number): void {
    this.endOfStream = lastSeqNo;
    if (lastSeqNo > this.lastSeqNo) {
      // UNCONFIRMED reaction (the spec is silent): it names audio this server never received.
      this.#fail('protocol_error', `EndOfStream last_seq_no ${String(lastSeqNo)} is beyond the last audio received (seq_no ${String(this.lastSeqNo)}).`);
      return;
    }
    this.#phase = 'ended';
    if (this.#trigger((at) => at === 'end')) return;
    if (!this.#finishTranscript('end')) return;
    this.#transcripts.push(0, () => {
      if (!this.#halted()) this.#timers.after(this.#settings.endGraceMs, () => this.close(1000, ''));
    });
  }

  /** The open utterance's finals, then EndOfTranscript (EndOfStream and the duration limit); false when halted. */
  #finishTranscript(endedBy: 'end' | 'limit'): boolean {
    this.#flushFrame();
    if (this.#halted()) return false;
    this.#endUtterance(endedBy);
    if (this.#halted()) return false;
    this.#eouFrom = undefined;
    this.#sendTranscript({ message: 'EndOfTranscript' });
    return true;
  }

  /**
   * Warning duration_limit_exceeded "triggers the same mechanism as receiving an EndOfStream message, so the Server
   * will eventually send an EndOfTranscript message and suspend": audio is still acked but ignored after it.
   */
  #durationLimit(limitS: number, reason: string | undefined): void {
    this.#send({
      message: 'Warning',
      type: 'duration_limit_exceeded',
      reason: reason ?? `The maximum allowed duration of ${String(limitS)}s was exceeded.`,
      duration_limit: limitS,
    });
    if (this.#phase !== 'started') return;
    this.#phase = 'suspended';
    this.#finishTranscript('limit');
  }

  // ---- audio ----

  #onAudio(data: Buffer): void {
    if (this.#phase === 'awaiting-start') {
      this.#fail('protocol_error', 'Audio received before StartRecognition.');
      return;
    }
    if (this.#phase === 'starting') {
      this.#fail('protocol_error', 'Audio received before RecognitionStarted.');
      return;
    }
    this.#armQuiet();
    if (this.#phase === 'ended') {
      this.#send({ message: 'Warning', type: 'add_audio_after_eos', reason: 'Audio received after EndOfStream will be ignored.' });
      return;
    }
    this.audioFrames++;
    this.audioBytes += data.length;
    this.#armIdle();
    this.lastSeqNo++;
    this.#send({ message: 'AudioAdded', seq_no: this.lastSeqNo });
    // Suspended (duration limit): "confirmed with AudioAdded, but ignored by the transcription engine".
    if (this.#phase === 'suspended') return;
    let bytes = data;
    if (this.#decoder === undefined) {
      this.#wavHeader = this.#wavHeader === undefined ? data : Buffer.concat([this.#wavHeader, data]);
      const header = parseWavHeader(this.#wavHeader);
      if (header === undefined) return;
      if (header === 'invalid') {
        this.#fail('invalid_audio_type', 'Unable to decode the audio file (the emulator decodes only WAV files with PCM, float or G.711 data; raw audio needs audio_format type "raw").');
        return;
      }
      this.#decoder = header.decoder;
      this.#speech.setRate(header.rate);
      bytes = this.#wavHeader.subarray(header.dataOffset);
      this.#wavHeader = undefined;
    }
    for (const frame of this.#speech.frames(this.#decoder.decode(bytes))) {
      this.#processFrame(frame);
      if (this.#halted()) return;
    }
    const audioMs = this.audioMs;
    this.#trigger((at) => typeof at === 'object' && audioMs >= at.afterAudioMs);
  }

  #eouTriggerMs(): number {
    return (this.transcriptionConfig?.conversation_config?.end_of_utterance_silence_trigger ?? 0) * 1000;
  }

  #finalSilenceMs(): number {
    const maxDelayMs = (this.transcriptionConfig?.max_delay ?? 4) * 1000;
    const eou = this.#eouTriggerMs();
    return Math.min(maxDelayMs, this.#settings.finalSilenceMs, eou > 0 ? eou : Infinity);
  }

  #processFrame(frame: Int16Array): void {
    const speech = this.#speech;
    const voiced = speech.addFrame(frame);
    let open = speech.open;
    if (voiced) {
      // Speech resumed before the EndOfUtterance was due: that silence is over.
      if (this.#eouFrom !== undefined && open !== undefined && speech.longEnough(open)) this.#eouFrom = undefined;
    } else if (open !== undefined && speech.silenceAfter(open) >= speech.samplesIn(this.#finalSilenceMs())) {
      this.#endUtterance('silence');
      open = undefined;
      if (this.#halted()) return;
    }
    if (open !== undefined && this.transcriptionConfig?.enable_partials === true && open.sincePartial >= speech.samplesIn(this.#settings.partialIntervalMs)) {
      open.sincePartial = 0;
      if (speech.longEnough(open)) this.#sendPartial(open);
    }
    const eouMs = this.#eouTriggerMs();
    if (!voiced && this.#eouFrom !== undefined && eouMs > 0 && speech.samples - this.#eouFrom >= speech.samplesIn(eouMs)) {
      const at = seconds(speech.ms(this.#eouFrom));
      this.#eouFrom = undefined;
      this.#sendTranscript({ message: 'EndOfUtterance', metadata: { start_time: at, end_time: at } }, true);
    }
  }

  #language(): string {
    return this.transcriptionConfig?.language ?? 'en';
  }

  #speaker(): string | undefined {
    const diarization = this.transcriptionConfig?.diarization;
    return diarization === 'speaker' || diarization === 'channel_and_speaker' ? 'S1' : undefined;
  }

  #sendPartial(open: OpenUtterance): void {
    const view = this.#speech.view(open, false);
    const guess = splitWords(this.#settings.recognize(view));
    if (guess.length === 0) return;
    const revealed = guess.slice(0, Math.max(1, Math.min(guess.length, Math.floor(view.audioMs / 250))));
    const endMs = view.startMs + view.audioMs;
    this.#sendTranscript({
      message: 'AddPartialTranscript',
      format: '2.1',
      metadata: { start_time: seconds(view.startMs), end_time: seconds(endMs), transcript: revealed.length > 0 ? `${revealed.join(' ')} ` : '' },
      results: buildResults(revealed, view.startMs, endMs, this.#language(), this.#speaker(), false),
    });
  }

  #sendEmptyPartial(atMs: number): void {
    if (this.transcriptionConfig?.enable_partials !== true) return;
    this.#sendTranscript({ message: 'AddPartialTranscript', format: '2.1', metadata: { start_time: seconds(atMs), end_time: seconds(atMs), transcript: '' }, results: [] });
  }

  /** Sends the open utterance's finals (if it holds enough speech); returns the end of its speech in ms. */
  #endUtterance(endedBy: SpeechmaticsRtUtteranceRecord['endedBy']): number | undefined {
    const open = this.#speech.end();
    if (open === undefined) return undefined;
    const view = this.#speech.view(open, true);
    const list = splitWords(this.#settings.recognize(view));
    const text = list.join(' ');
    const endMs = view.startMs + view.audioMs;
    this.utterances.push({ index: open.index, startMs: view.startMs, endMs, text, endedBy });
    this.#sendTranscript(
      {
        message: 'AddTranscript',
        format: '2.1',
        metadata: { start_time: seconds(view.startMs), end_time: seconds(endMs), transcript: text.length > 0 ? `${text} ` : '' },
        results: buildResults(list, view.startMs, endMs, this.#language(), this.#speaker(), true),
        ...(endedBy === 'forced' ? { forced: true as const } : {}),
      },
      true,
    );
    this.#sendEmptyPartial(endMs);
    this.#eouFrom = open.lastVoicedEnd;
    return endMs;
  }

  #forceEnd(): void {
    this.#flushFrame();
    if (this.#halted()) return;
    const pendingEouMs = this.#eouFrom === undefined ? undefined : this.#speech.ms(this.#eouFrom);
    let endMs = this.#endUtterance('forced');
    if (this.#halted()) return;
    if (endMs === undefined) {
      // Nothing pending: an empty forced transcript, so a client waiting for it is answered.
      endMs = pendingEouMs ?? this.audioMs;
      const at = seconds(endMs);
      this.#sendTranscript({ message: 'AddTranscript', format: '2.1', metadata: { start_time: at, end_time: at, transcript: '' }, results: [], forced: true }, true);
    }
    this.#eouFrom = undefined;
    const at = seconds(endMs);
    this.#sendTranscript({ message: 'EndOfUtterance', metadata: { start_time: at, end_time: at }, forced: true }, true);
  }

  /** Processes the incomplete analysis frame (ForceEndOfUtterance, EndOfStream). */
  #flushFrame(): void {
    const rest = this.#speech.flush();
    if (rest !== undefined) this.#processFrame(rest);
  }
}

// ---- server ---------------------------------------------------------------------------------------------------------

const isV2 = (path: string): boolean => path === '/v2' || path === '/v2/';

export async function startSpeechmaticsRtEmulator(options: SpeechmaticsRtEmulatorOptions = {}): Promise<SpeechmaticsRtEmulator> {
  const thresholdDbfs = options.vad?.thresholdDbfs ?? -40;
  const settings: Settings = {
    apiKeys: options.apiKey === undefined ? undefined : new Set(typeof options.apiKey === 'string' ? [options.apiKey] : options.apiKey),
    verifyToken: options.verifyToken ?? ((jwt) => jwt.length > 0),
    recognize:
      options.recognize ??
      fixtureRecognizer({
        thresholdDbfs,
        // Unidentified audio: no partial guess below 300 ms (no partial is sent), else `utterance N`.
        fallback: (utterance) => (!utterance.complete && utterance.audioMs < 300 ? '' : `utterance ${String(utterance.index + 1)}`),
      }),
    languages: new Set(options.languages ?? SPEECHMATICS_RT_LANGUAGES),
    thresholdDbfs,
    minSpeechMs: options.vad?.minSpeechMs ?? 60,
    finalSilenceMs: options.vad?.finalSilenceMs ?? 700,
    partialIntervalMs: Math.max(10, options.partialIntervalMs ?? 300),
    idleTimeoutMs: options.idleTimeoutMs ?? 3_600_000,
    quietTimeoutMs: options.quietTimeoutMs ?? 180_000,
    vocabStartDelayMs: Math.max(0, options.vocabStartDelayMs ?? 0),
    endGraceMs: options.endGraceMs ?? 500,
    recognitionQualityInfo: options.recognitionQualityInfo ?? true,
    finalDelayMs: Math.max(0, options.latency?.finalDelayMs ?? 0),
    logger: options.logger ?? silentLogger(),
  };
  const host = createWsEmulatorHost<Connection, SpeechmaticsRtFault>({ perMessageDeflate: false, autoPong: false }, options.faults);
  const upgrades: SpeechmaticsRtUpgradeRecord[] = [];

  host.server.on('request', (request, response) => {
    const path = new URL(request.url ?? '/', 'http://127.0.0.1').pathname;
    const status = !isV2(path) ? 404 : request.method === 'GET' ? 426 : 405;
    response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ code: status, error: status === 404 ? 'Not Found' : 'WebSocket upgrade required' }));
  });

  host.server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', (error: Error) => settings.logger.debug({ err: error }, 'speechmatics rt emulator: upgrade socket error'));
    let url: URL;
    try {
      url = new URL(request.url ?? '/', 'http://127.0.0.1');
    } catch {
      url = new URL('http://127.0.0.1/');
    }
    const path = url.pathname;
    const query: Record<string, string> = {};
    for (const [key, value] of url.searchParams) query[key] ??= value;
    const record = (status: number): void => {
      upgrades.push({ path, query, headers: request.headers, status });
      host.notify();
    };
    const reject = (status: number, statusText: string, body: JsonValue): void => {
      writeRawHttp(socket, status, body, statusText);
      record(status);
    };
    if (!isV2(path)) {
      reject(404, 'Not Found', { code: 404, error: 'Not Found' });
      return;
    }
    if (request.method !== 'GET') {
      reject(405, 'Method Not Allowed', { code: 405, error: 'Method Not Allowed' });
      return;
    }
    let authVia: 'header' | 'jwt';
    const jwt = url.searchParams.get('jwt');
    if (jwt !== null) {
      let valid = false;
      try {
        valid = jwt.length > 0 && settings.verifyToken(jwt);
      } catch (error) {
        settings.logger.debug({ err: error }, 'speechmatics rt emulator: verifyToken threw');
      }
      if (!valid) {
        reject(401, 'Unauthorized', { code: 401, error: 'Unauthorized' });
        return;
      }
      authVia = 'jwt';
    } else {
      const key = bearerToken(request.headers);
      if (key === undefined || key.length === 0 || (settings.apiKeys !== undefined && !settings.apiKeys.has(key))) {
        reject(401, 'Unauthorized', { code: 401, error: 'Unauthorized' });
        return;
      }
      authVia = 'header';
    }
    const fault = host.faults.take();
    if (fault !== undefined && fault.at === 'upgrade') {
      const http = fault.action.type === 'http' ? fault.action : undefined;
      record(failUpgrade(socket, http, (status) => ({ code: status, error: 'Emulated failure' })));
      return;
    }
    host.accept(request, socket, head, (ws, index) => {
      upgrades.push({ path, query, headers: request.headers, status: 101 });
      return new Connection(index, path, request.headers, query, authVia, ws, settings, fault === undefined ? [] : [fault], host.notify);
    });
  });

  const port = await host.listen();
  return { url: `ws://127.0.0.1:${String(port)}/v2`, port, upgrades, ...host.api };
}
