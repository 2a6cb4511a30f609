/**
 * Speechmatics Flow (conversational agent) emulator (docs/reference/provider-protocols.md §0 surprises 5 and 7,
 * §3.1–3.5, and the AsyncAPI `spec/flow-api.yaml` of speechmatics/docs): plain ws on 127.0.0.1:<random port>.
 *
 *   const flow = await startSpeechmaticsFlowEmulator({ pacing: 4 });
 *   // official SDK (arraybuffer mode keeps wire order, §0 surprise 7):
 *   const client = new FlowClient(flow.baseUrl, { appId: 'test', websocketBinaryType: 'arraybuffer' });
 *   await client.startConversation('jwt', { config: { template_id: 'tmpl', template_variables: {} },
 *     audioFormat: { type: 'raw', encoding: 'pcm_s16le', sample_rate: 8000 } });
 *   // or raw ws:  new WebSocket(`${flow.url}?jwt=anything`)  (or header `Authorization: Bearer <apiKey>`)
 *   const conn = await flow.waitForConnection();
 *   await flow.waitFor(() => conn.responses.find((r) => r.outcome === 'completed'));
 *   await flow.close();
 *
 * API (stable; append-only):
 *   startSpeechmaticsFlowEmulator(options?: SpeechmaticsFlowEmulatorOptions): Promise<SpeechmaticsFlowEmulator>
 *   emulator.baseUrl  ws://127.0.0.1:PORT (what `new FlowClient(baseUrl, ...)` takes; it appends /v1/flow?jwt=..&sm-app=..)
 *   emulator.url      ws://127.0.0.1:PORT/v1/flow (raw clients add ?jwt=...)
 *   emulator.port, connections (accepted upgrades, in order), upgrades (every attempt), queueFault(fault),
 *   waitFor(probe, opts?), waitForConnection(index?, opts?), close()
 *   connection: index, path, query, headers, authVia, jwt, state, conversationId, startConversation (validated),
 *     audioFormat (effective), inputFrames, inputBytes, inputAudioMs, audioAcks, ackIssues, agentFramesSent,
 *     agentAudioMs, toolInvocations, toolResults, addInputs, userTurns, responses, audioEnded, sent (every JSON message
 *     sent), received (every client JSON message), faultsApplied, closeInfo, stalled, pingsReceived,
 *     close(code, reason), endConversation(), say(text, ms), applyFault(action)
 *   defaultFlowReply(turn), defaultFlowAgentAudio(text, ms, info), flowAgentBaseFrequency(connection),
 *   FLOW_ERROR_TYPES, FLOW_WARNING_TYPES, FLOW_INFO_TYPES, FLOW_CLOSE_CODES, FLOW_NO_RESPONSE_REQUIRED,
 *   FLOW_OUTPUT_SAMPLE_RATE
 *
 * Behaviour:
 * - Upgrade only at `/v1/flow` (HTTP 404 otherwise; a plain HTTP request gets 426 there). Auth on the upgrade:
 *   `Authorization: Bearer <key>` with one of `options.apiKey` (authVia `header`), else the `jwt` query parameter
 *   checked by `verifyToken` (default: any non-empty value; authVia `jwt`). Neither -> HTTP 401 JSON
 *   `{"message":"Error","type":"not_authorised","reason":...}` (body UNCONFIRMED). A refused attempt consumes no fault.
 * - The first client message must be the text `StartConversation`. A binary frame, invalid JSON, a non-object or any
 *   other `message` first -> `Error` `protocol_error` and close 1003. The message is validated with zod per the
 *   AsyncAPI spec (`conversation_config.template_id` required, `template_variables` string->string, `audio_format`
 *   `{type:'raw', encoding: pcm_s16le (default) | pcm_f32le | mulaw, sample_rate (default 16000)}`, `tools[]`
 *   `{type:'function', function:{name, description?, parameters?:{type?:'object', properties?, required?}}}`,
 *   properties `{type, description?, enum?, example?}`, optional `debug`; no unknown keys at the top level, in
 *   `conversation_config`, `audio_format` or the tools); any violation, an unknown template (`options.templates`), a
 *   tool parameter type other than integer|number|string|boolean, a `required` name missing from `properties` or a
 *   duplicate tool name -> `Error` `config_error` and close 1003 (the split protocol_error/config_error is the
 *   emulator's reading).
 * - Then `ConversationStarted {id, asr_session_id, language_pack_info}` and, unless `startInfo: false`, an
 *   `Info` `status_update` (`event {prev_status:'starting', status:'running'}`; values UNCONFIRMED). The session clock
 *   (Response* times, `startedAt`) starts when ConversationStarted is sent. With `greeting`, the agent speaks first.
 * - Caller audio: each binary frame is acked with `AudioAdded {seq_no}` (1, 2, ...) and decoded per `audio_format`
 *   at its rate (an odd trailing byte waits for the next frame). Energy VAD on 10 ms frames (voiced when the frame RMS
 *   is at or above `thresholdDbfs`, default -40 dBFS). A user turn opens at the first voiced frame and ends after
 *   `endOfTurnSilenceMs` (default 700) of unvoiced audio; turns with less than `minSpeechMs` (default 60) of voiced
 *   audio are ignored. While a turn is open, `AddPartialTranscript` every `partialIntervalMs` (default 300) of audio
 *   (one word revealed per 250 ms of speech; skipped when nothing changed, e.g. in the trailing silence); at its end
 *   `AddTranscript` (RT shape, format "2.1", `metadata{start_time,end_time,transcript}`, word and punctuation
 *   `results`; times on the caller-audio clock in seconds), text from `recognize` (default `fixtureRecognizer()`),
 *   then the agent's reply to that turn. Turns that end while the conversation is ending get a transcript but no
 *   reply (`userTurns[].index` -1).
 * - Reply turns are numbered from 0 per connection (speech turns and immediate AddInputs share the counter). Before
 *   replying to turn `n`, every `toolCalls` entry with `turn: n` whose name was declared in StartConversation `tools`
 *   is sent as `ToolInvoke {id, type:'function', function:{name, arguments}}` (id default `tool_call_<k>`, k counting
 *   from 1 per connection; undeclared names are never invoked, state `undeclared`). The reply waits for all their
 *   `ToolResult`s (no timeout; the conversation goes on meanwhile, like real Flow). If every result's content is
 *   `<NO_RESPONSE_REQUIRED/>` the agent says nothing for that turn; otherwise `reply(turn)` (default
 *   `Reply <n+1> to: <userText>` plus ` Tool <name>: <content>` per usable result). `reply` may return undefined.
 * - Agent response: after `responseDelayMs` (default 0; real Flow takes LLM + TTS time), `ResponseStarted {content,
 *   start_time}`, then binary PCM s16le **16 kHz** mono frames of `chunkMs` (default 40 ms; always even byte lengths)
 *   whatever the input format, then `ResponseCompleted {content, start_time, end_time}`. Frame k is due at
 *   t0 + k x chunkMs / factor and ResponseCompleted at t0 + duration / factor (drift-free: computed from t0), where
 *   factor is 1 for `pacing: 'realtime'` (default: Flow streams TTS about in real time; its exact burst behaviour is
 *   UNCONFIRMED) or the given number. `end_time` is `start_time` + seconds of audio sent (the spoken timeline, so it
 *   equals the wall clock only in real time). Responses never overlap: later ones queue (FIFO).
 * - The client acks each server audio frame with `AudioReceived {seq_no, buffering?}`; all acks are recorded, and
 *   `ackIssues` notes gaps, repeats/out-of-order seq_no and acks for frames never sent.
 * - Barge-in: once `bargeInMs` (default 200; Infinity disables) of voiced caller audio arrived (in one user turn)
 *   while a response is being sent, its audio stops and `ResponseInterrupted {content: the words spoken so far
 *   (proportional to the audio sent, rounded down), start_time, end_time}` is sent; queued responses are dropped. The
 *   caller's speech then ends as the next user turn. The agent's last words after endConversation() are not
 *   interruptible.
 * - `AddInput {input, interrupt_response?, immediate?}` is recorded. With `interrupt_response` an ongoing response is
 *   interrupted first. With `immediate: true` it is a reply turn of its own (`userText` = input). Without it, per the
 *   spec ("added to current prompt and sent to LLM as a part of the next request"), it is folded into the next reply
 *   turn (`turn.inputs`) and produces no reply by itself.
 * - `ToolResult {id, status: ok|rejected|failed, content?}` is recorded; an unknown or already answered id gets
 *   `Warning` `protocol_error` (emulator choice).
 * - `AudioEnded {last_seq_no}` -> the open user turn is finalised (AddTranscript, no reply), an ongoing response is
 *   cut silently (outcome `aborted`), `ConversationEnded`, close 1000. `connection.endConversation()` (the agent ends
 *   the call) -> `ConversationEnding`, the current response (if any) plays to its end, queued ones are dropped, then
 *   `ConversationEnded` and close 1000. `connection.say(text, ms)` makes the agent speak now (or right after the
 *   current response).
 * - After the start: invalid JSON, a non-object or a missing `message` -> `Error` `protocol_error` + close 1003 (like
 *   the RT API's invalid_message); an unknown `message`, a known message with invalid fields, or a second
 *   StartConversation -> `Warning` `protocol_error`, and the session goes on. A throwing callback (`reply`,
 *   `recognize`, `agentAudio`) -> `Error` `internal_error` + close 1011. Nothing a client sends can crash the emulator.
 * - No client message for `idleTimeoutMs` (default 60000) -> `Error` `idle_timeout`, close 1008. Pings are answered
 *   unless the connection is stalled, and counted (`pingsReceived`).
 * - Error close codes (Flow's are UNCONFIRMED; the RT table is assumed, see FLOW_CLOSE_CODES), close reason = the
 *   error type.
 *
 * Faults (`FlowFault`, FIFO, each for one connection attempt that passed auth; `times` for several; more than one per
 * connection via `connection.applyFault`): at `upgrade` (`http` status response; any other action drops the socket),
 * at `start` (after a valid StartConversation, before — or, for ending actions,
 * instead of — ConversationStarted; the default), after `{afterAudioMs}` of caller audio, or
 * `{duringResponse: id, afterAgentMs}` once that much agent audio of response `id` (1-based, greeting included) was
 * sent. Actions: `error` (Error then close, default code from FLOW_CLOSE_CODES), `drop` (socket destroyed, no close
 * frame), `stall` (sends nothing more, timers stopped, socket kept open; client messages still recorded), `close`
 * (an invalid code such as 1006 destroys the socket instead), `malformed` (a non-JSON text frame), `odd-binary` (a
 * 3-byte binary frame, counted as a server audio frame; flow-client 0.2.2 throws on it, §3.4, so use it with the
 * adapter under test or a raw client), `warning`, `info`.
 *
 * Not implemented: the LLM (replies are scripted), debug messages (`Debug`, `prompt`), Info
 * `conversation_duration_limit`/`concurrent_session_usage` and Warning `conversation_termination` except as faults,
 * session/usage limits, speaker diarization, the discovery endpoint (`/v1/discovery/templates`).
 */
import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { RawData, WebSocket } from 'ws';
import { z } from 'zod';
import { knownRawSampleCodec, StreamDecoder } from './audio-codecs.js';
import { bearerToken, isRecord, silentLogger, TimerSet, type JsonValue, type WaitOptions } from './common.js';
import { pcmBytes } from './realtime-audio.js';
import { fixtureRecognizer, type SonioxRecognizer, type SonioxUtterance } from './soniox-stt.js';
import { SpeechSegmenter, splitWords, spreadWords, type OpenUtterance } from './speech-turns.js';
import { ArmedFaults, createWsEmulatorHost, failUpgrade, toBuffer, writeRawHttp } from './ws-server.js';

// ---- constants ------------------------------------------------------------------------------------------------------

export const FLOW_ERROR_TYPES = [
  'asr_error',
  'protocol_error',
  'config_error',
  'idle_timeout',
  'session_timeout',
  'not_allowed',
  'not_authorised',
  'quota_exceeded',
  'timelimit_exceeded',
  'job_error',
  'internal_error',
  'unknown_error',
] as const;
export type FlowErrorType = (typeof FLOW_ERROR_TYPES)[number];

export const FLOW_WARNING_TYPES = [
  'conversation_termination',
  'high_asr_latency',
  'llm_error',
  'high_llm_latency',
  'llm_request_content_filter',
  'tts_error',
  'high_tts_latency',
  'protocol_error',
  'idle_timeout',
  'session_timeout',
] as const;
export type FlowWarningType = (typeof FLOW_WARNING_TYPES)[number];

export const FLOW_INFO_TYPES = ['status_update', 'conversation_duration_limit', 'concurrent_session_usage'] as const;
export type FlowInfoType = (typeof FLOW_INFO_TYPES)[number];

/** Close code after each Error type. Flow's are UNCONFIRMED; these follow the Speechmatics RT table (§2.4). */
export const FLOW_CLOSE_CODES: Readonly<Record<FlowErrorType, number>> = {
  asr_error: 1011,
  protocol_error: 1003,
  config_error: 1003,
  idle_timeout: 1008,
  session_timeout: 1008,
  not_allowed: 4003,
  not_authorised: 4001,
  quota_exceeded: 4005,
  timelimit_exceeded: 4006,
  job_error: 4013,
  internal_error: 1011,
  unknown_error: 1011,
};

/** ToolResult content that stops the agent from speaking about the result. */
export const FLOW_NO_RESPONSE_REQUIRED = '<NO_RESPONSE_REQUIRED/>';

/** Agent audio is always PCM s16le mono at this rate, whatever the input format. */
export const FLOW_OUTPUT_SAMPLE_RATE = 16000;

const OUT_SAMPLES_PER_MS = FLOW_OUTPUT_SAMPLE_RATE / 1000;

// ---- client message schemas -------------------------------------------------------------------------------------------

const TOOL_PARAMETER_TYPES: ReadonlySet<string> = new Set(['integer', 'number', 'string', 'boolean']);

const toolParameterSchema = z
  .object({
    type: z.string(),
    description: z.string().optional(),
    enum: z.array(z.union([z.string(), z.number()])).optional(),
    example: z.string().optional(),
  })
  .strict();

const toolSchema = z
  .object({
    type: z.literal('function'),
    function: z
      .object({
        name: z.string().min(1),
        description: z.string().optional(),
        parameters: z
          .object({
            type: z.literal('object').optional(),
            properties: z.record(z.string(), toolParameterSchema).optional(),
            required: z.array(z.string()).optional(),
          })
          .strict()
          .optional(),
      })
      .strict(),
  })
  .strict();

const audioFormatSchema = z
  .object({
    type: z.literal('raw'),
    encoding: z.enum(['pcm_s16le', 'pcm_f32le', 'mulaw']).default('pcm_s16le'),
    sample_rate: z.number().int().min(1000).max(192000).default(16000),
  })
  .strict();

const startConversationSchema = z
  .object({
    message: z.literal('StartConversation'),
    conversation_config: z
      .object({
        template_id: z.string().min(1),
        template_variables: z.record(z.string(), z.string()).optional(),
      })
      .strict(),
    audio_format: audioFormatSchema.optional(),
    tools: z.array(toolSchema).optional(),
    debug: z.looseObject({ llm: z.boolean().optional() }).optional(),
  })
  .strict();

/** StartConversation as accepted (validated; defaults of `audio_format` filled in when it was sent). */
export type FlowStartConversation = z.output<typeof startConversationSchema>;
export type FlowAudioFormat = z.output<typeof audioFormatSchema>;
export type FlowToolDefinition = z.output<typeof toolSchema>;

const DEFAULT_AUDIO_FORMAT: FlowAudioFormat = { type: 'raw', encoding: 'pcm_s16le', sample_rate: 16000 };

const audioReceivedSchema = z.object({ message: z.literal('AudioReceived'), seq_no: z.number().int(), buffering: z.number().optional() });
const audioEndedSchema = z.object({ message: z.literal('AudioEnded'), last_seq_no: z.number().int() });
const addInputSchema = z.object({
  message: z.literal('AddInput'),
  input: z.string(),
  interrupt_response: z.boolean().optional(),
  immediate: z.boolean().optional(),
});
const toolResultSchema = z.object({
  message: z.literal('ToolResult'),
  id: z.string(),
  status: z.enum(['ok', 'rejected', 'failed']),
  content: z.string().optional(),
});

// ---- server messages --------------------------------------------------------------------------------------------------

export interface FlowLanguagePackInfo {
  readonly adapted: boolean;
  readonly itn: boolean;
  readonly language_description: string;
  readonly word_delimiter: string;
  readonly writing_direction: 'left-to-right' | 'right-to-left';
}

export interface FlowRecognitionAlternative {
  readonly content: string;
  readonly confidence: number;
  readonly language: string;
}

export interface FlowRecognitionResult {
  readonly type: 'word' | 'punctuation';
  readonly start_time: number;
  readonly end_time: number;
  readonly attaches_to?: 'previous';
  readonly is_eos?: boolean;
  readonly alternatives: readonly FlowRecognitionAlternative[];
}

export interface FlowTranscriptMessage {
  readonly message: 'AddTranscript' | 'AddPartialTranscript';
  readonly format: '2.1';
  readonly metadata: { readonly start_time: number; readonly end_time: number; readonly transcript: string };
  readonly results: readonly FlowRecognitionResult[];
}

export interface FlowToolInvokeMessage {
  readonly message: 'ToolInvoke';
  readonly id: string;
  readonly type: 'function';
  readonly function: { readonly name: string; readonly arguments: Readonly<Record<string, string | number | boolean>> };
}

export interface FlowInfoMessage {
  readonly message: 'Info';
  readonly type: FlowInfoType;
  readonly reason: string;
  readonly event?: { readonly prev_status: string; readonly status: string };
  readonly conversation_duration_limit?: number;
  readonly usage?: number;
  readonly quota?: number;
  readonly last_updated?: string;
}

export interface FlowWarningMessage {
  readonly message: 'Warning';
  readonly type: FlowWarningType;
  readonly reason: string;
  readonly conversation_termination?: number;
}

export interface FlowErrorMessage {
  readonly message: 'Error';
  readonly type: FlowErrorType;
  readonly reason: string;
}

export type FlowServerMessage =
  | {
      readonly message: 'ConversationStarted';
      readonly id: string;
      readonly asr_session_id: string;
      readonly language_pack_info: FlowLanguagePackInfo;
    }
  | { readonly message: 'AudioAdded'; readonly seq_no: number }
  | FlowTranscriptMessage
  | { readonly message: 'ResponseStarted'; readonly content: string; readonly start_time: number }
  | {
      readonly message: 'ResponseCompleted' | 'ResponseInterrupted';
      readonly content: string;
      readonly start_time: number;
      readonly end_time: number;
    }
  | FlowToolInvokeMessage
  | FlowInfoMessage
  | FlowWarningMessage
  | FlowErrorMessage
  | { readonly message: 'ConversationEnding' }
  | { readonly message: 'ConversationEnded' };

// ---- public types -------------------------------------------------------------------------------------------------

/** What the recogniser sees of one user utterance (the Soniox emulator's shape, so `fixtureRecognizer()` fits). */
export type FlowUtterance = SonioxUtterance;
export type FlowRecognizer = SonioxRecognizer;

export interface FlowReply {
  readonly text: string;
  /** Length of the agent audio in ms. */
  readonly ms: number;
}

export interface FlowToolResultRecord {
  readonly id: string;
  readonly status: 'ok' | 'rejected' | 'failed';
  readonly content?: string;
  /** Session ms when it arrived. */
  readonly atMs: number;
  /** False when the id was unknown or already answered (a Warning was sent). */
  readonly known: boolean;
  /** Name of the invoked tool (known ids only). */
  readonly name?: string;
  readonly turnIndex?: number;
}

export interface FlowToolInvocationRecord {
  readonly id: string;
  readonly name: string;
  readonly arguments: Readonly<Record<string, string | number | boolean>>;
  readonly turnIndex: number;
  /** Session ms of the ToolInvoke (undefined when not sent). */
  readonly sentAtMs: number | undefined;
  /** `undeclared`: the tool was not in StartConversation `tools`, so it was never invoked. */
  readonly state: 'pending' | 'answered' | 'undeclared';
  readonly result: FlowToolResultRecord | undefined;
}

/** A reply turn as `reply` sees it. */
export interface FlowTurn {
  /** 0-based per connection; speech turns and immediate AddInputs share the counter. */
  readonly index: number;
  readonly connection: number;
  readonly source: 'speech' | 'input';
  /** The final transcript, or the AddInput text. */
  readonly userText: string;
  /** Non-immediate AddInput texts folded into this turn. */
  readonly inputs: readonly string[];
  /** Results of this turn's tool calls (empty without tool calls). */
  readonly toolResults: readonly FlowToolResultRecord[];
}

export interface FlowScriptedToolCall {
  /** Reply-turn index (0-based) before whose reply the tool is invoked. */
  readonly turn: number;
  readonly name: string;
  readonly arguments: Readonly<Record<string, string | number | boolean>>;
  /** Default `tool_call_<k>`. */
  readonly id?: string;
}

export interface FlowAgentAudioInfo {
  /** Connection index (0-based). */
  readonly connection: number;
  /** Response id (1-based per connection). */
  readonly response: number;
}

export interface FlowAddInputRecord {
  readonly input: string;
  readonly interrupt_response: boolean;
  readonly immediate: boolean;
  readonly atMs: number;
  /** The reply turn it started (immediate) or was folded into (set when that turn starts). */
  readonly turnIndex: number | undefined;
}

export interface FlowUserTurnRecord {
  /** Reply-turn index; -1 when the conversation was already ending (AudioEnded, endConversation), so no reply. */
  readonly index: number;
  readonly text: string;
  /** Caller-audio clock: first and last voiced ms of the utterance. */
  readonly startMs: number;
  readonly endMs: number;
}

export interface FlowResponseRecord {
  /** 1-based per connection, in start order (the greeting is 1 when configured). */
  readonly id: number;
  readonly content: string;
  readonly trigger: 'greeting' | 'turn' | 'say';
  readonly turnIndex: number | undefined;
  /** Length of the generated agent audio. */
  readonly plannedMs: number;
  readonly audioMsSent: number;
  readonly framesSent: number;
  /** Session ms of ResponseStarted. */
  readonly startedAt: number;
  /** Session ms of ResponseCompleted/ResponseInterrupted (or when it was aborted). */
  readonly endedAt: number | undefined;
  /** `aborted`: cut by the end of the connection (AudioEnded, close, fault) without a Response* message. */
  readonly outcome: 'active' | 'completed' | 'interrupted' | 'aborted';
  /** The content of ResponseInterrupted. */
  readonly spokenContent: string | undefined;
  readonly interruptedBy: 'barge-in' | 'add-input' | undefined;
}

export interface FlowAudioAck {
  readonly seq_no: number;
  readonly buffering?: number;
  readonly atMs: number;
}

export interface FlowCloseInfo {
  readonly code: number;
  readonly reason: string;
  readonly by: 'client' | 'server' | 'dropped';
}

export type FlowConnectionState = 'awaiting-start' | 'active' | 'ending' | 'ended';

export type FlowFaultAction =
  /** Only at `upgrade`: answer the upgrade with this HTTP status (elsewhere it acts as `drop`). */
  | { readonly type: 'http'; readonly status: number; readonly body?: JsonValue }
  | { readonly type: 'error'; readonly errorType: FlowErrorType; readonly reason?: string; readonly closeCode?: number }
  | { readonly type: 'drop' }
  | { readonly type: 'stall' }
  | { readonly type: 'close'; readonly code: number; readonly reason?: string }
  | { readonly type: 'malformed'; readonly text?: string }
  | { readonly type: 'odd-binary' }
  /** `value` fills `conversation_termination` for that type. */
  | { readonly type: 'warning'; readonly warningType: FlowWarningType; readonly reason?: string; readonly value?: number }
  /** `value` fills `conversation_duration_limit` or `usage` for those types. */
  | { readonly type: 'info'; readonly infoType: FlowInfoType; readonly reason?: string; readonly value?: number };

export type FlowFaultTrigger =
  | 'upgrade'
  | 'start'
  | { readonly afterAudioMs: number }
  | { readonly duringResponse: number; readonly afterAgentMs?: number };

export interface FlowFault {
  /** Default `start`. */
  readonly at?: FlowFaultTrigger;
  readonly action: FlowFaultAction;
  /** Number of consecutive connections it applies to (default 1). */
  readonly times?: number;
}

export interface FlowUpgradeRecord {
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  readonly headers: IncomingHttpHeaders;
  /** 101, the HTTP status the upgrade was answered with, or 0 for a dropped socket. */
  readonly status: number;
}

export interface SpeechmaticsFlowConnection {
  readonly index: number;
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  readonly headers: IncomingHttpHeaders;
  readonly authVia: 'jwt' | 'header';
  /** The `jwt` query parameter (undefined when absent). */
  readonly jwt: string | undefined;
  readonly state: FlowConnectionState;
  /** ConversationStarted `id`. */
  readonly conversationId: string | undefined;
  readonly startConversation: FlowStartConversation | undefined;
  readonly audioFormat: FlowAudioFormat | undefined;
  readonly inputFrames: number;
  readonly inputBytes: number;
  /** Decoded caller audio, in ms. */
  readonly inputAudioMs: number;
  /** Every AudioReceived, in arrival order. */
  readonly audioAcks: readonly FlowAudioAck[];
  /** Gaps, repeats/out-of-order and acks beyond the frames sent. */
  readonly ackIssues: readonly string[];
  /** Server binary frames sent (agent audio and `odd-binary` faults). */
  readonly agentFramesSent: number;
  readonly agentAudioMs: number;
  readonly toolInvocations: readonly FlowToolInvocationRecord[];
  readonly toolResults: readonly FlowToolResultRecord[];
  readonly addInputs: readonly FlowAddInputRecord[];
  readonly userTurns: readonly FlowUserTurnRecord[];
  readonly responses: readonly FlowResponseRecord[];
  /** The client's AudioEnded, with the number of AudioAdded sent at that time. */
  readonly audioEnded: { readonly last_seq_no: number; readonly audioAddedSent: number } | undefined;
  readonly sent: readonly FlowServerMessage[];
  readonly received: readonly JsonValue[];
  readonly faultsApplied: readonly FlowFaultAction[];
  readonly closeInfo: FlowCloseInfo | undefined;
  readonly stalled: boolean;
  /** WebSocket pings received (answered with a pong unless stalled). */
  readonly pingsReceived: number;
  close(code?: number, reason?: string): void;
  /** The agent ends the conversation: ConversationEnding, current audio finishes, ConversationEnded, close 1000. */
  endConversation(): void;
  /** The agent speaks now (or right after the current response). */
  say(text: string, ms: number): void;
  applyFault(action: FlowFaultAction): void;
}

export interface SpeechmaticsFlowEmulatorOptions {
  /** Keys accepted as `Authorization: Bearer <key>` on the upgrade. */
  readonly apiKey?: string | readonly string[];
  /** Decides the `jwt` query parameter (default: any non-empty value). */
  readonly verifyToken?: (jwt: string) => boolean;
  /** Accepted template ids (default: any non-empty). */
  readonly templates?: readonly string[];
  /** The agent speaks first, right after ConversationStarted (default false). */
  readonly greeting?: FlowReply | false;
  /** Reply to a turn (default `defaultFlowReply`); undefined = say nothing. */
  readonly reply?: (turn: FlowTurn) => FlowReply | undefined;
  /** 16 kHz agent audio for a response (default `defaultFlowAgentAudio`). */
  readonly agentAudio?: (text: string, ms: number, info: FlowAgentAudioInfo) => Int16Array;
  /** Agent audio frame size in ms (default 40). */
  readonly chunkMs?: number;
  /** Agent audio in real time (default) or N times faster. */
  readonly pacing?: 'realtime' | number;
  /** Time from a turn's end (or tool results) to ResponseStarted (default 0). */
  readonly responseDelayMs?: number;
  /** Text of a user utterance (default `fixtureRecognizer({ thresholdDbfs })`). */
  readonly recognize?: FlowRecognizer;
  /** VAD threshold on 10 ms frames (default -40 dBFS). */
  readonly thresholdDbfs?: number;
  /** Voiced audio a user turn needs (default 60 ms). */
  readonly minSpeechMs?: number;
  /** Unvoiced audio that ends a user turn (default 700 ms). */
  readonly endOfTurnSilenceMs?: number;
  /** Voiced caller audio during agent audio that interrupts it (default 200 ms; Infinity disables barge-in). */
  readonly bargeInMs?: number;
  /** Caller audio between two AddPartialTranscript (default 300 ms). */
  readonly partialIntervalMs?: number;
  readonly toolCalls?: readonly FlowScriptedToolCall[];
  /** Send an Info status_update after ConversationStarted (default true). */
  readonly startInfo?: boolean;
  /** Error idle_timeout after this long without a client message (default 60000). */
  readonly idleTimeoutMs?: number;
  readonly faults?: readonly FlowFault[];
  readonly logger?: Logger;
}

export interface SpeechmaticsFlowEmulator {
  /** `ws://127.0.0.1:PORT` for `new FlowClient(baseUrl, ...)`. */
  readonly baseUrl: string;
  /** `ws://127.0.0.1:PORT/v1/flow`. */
  readonly url: string;
  readonly port: number;
  readonly connections: readonly SpeechmaticsFlowConnection[];
  readonly upgrades: readonly FlowUpgradeRecord[];
  queueFault(fault: FlowFault): void;
  waitFor<T>(probe: () => T | undefined | null | false, options?: WaitOptions): Promise<T>;
  /** Resolves with connection `index` (default: the next one not yet returned by this method). */
  waitForConnection(index?: number, options?: WaitOptions): Promise<SpeechmaticsFlowConnection>;
  close(): Promise<void>;
}

// ---- defaults ---------------------------------------------------------------------------------------------------------

/** `Reply <index+1> to: <userText>` plus ` Tool <name>: <content>` per tool result (content or status). */
export function defaultFlowReply(turn: FlowTurn): FlowReply {
  let text = `Reply ${String(turn.index + 1)} to: ${turn.userText}`;
  for (const result of turn.toolResults) {
    if (result.content === FLOW_NO_RESPONSE_REQUIRED) continue;
    text += ` Tool ${result.name ?? result.id}: ${result.content ?? result.status}`;
  }
  return { text, ms: 1500 };
}

/** Base frequency of the default agent voice of a connection: 200 + 50 x (index mod 8) Hz. */
export function flowAgentBaseFrequency(connection: number): number {
  return 200 + 50 * (connection % 8);
}

/**
 * A deterministic voiced-like signal of exactly `ms` at 16 kHz: the connection's base frequency plus its third
 * harmonic, a 4 Hz syllable envelope (never below about -23 dBFS RMS) and 5 ms fades.
 */
export function defaultFlowAgentAudio(_text: string, ms: number, info: FlowAgentAudioInfo): Int16Array {
  const n = Math.max(0, Math.round(ms * OUT_SAMPLES_PER_MS));
  const f0 = flowAgentBaseFrequency(info.connection);
  const fade = Math.min(80, Math.floor(n / 2));
  const out = new Int16Array(n);
  for (let i = 0; i < n; i++) {
    const t = i / FLOW_OUTPUT_SAMPLE_RATE;
    const syllable = 0.55 + 0.45 * Math.sin(Math.PI * 4 * t) ** 2;
    const gain = fade === 0 ? 1 : Math.min(1, i / fade, (n - 1 - i) / fade);
    const wave = 0.6 * Math.sin(2 * Math.PI * f0 * t) + 0.4 * Math.sin(2 * Math.PI * 3 * f0 * t);
    out[i] = Math.round(9000 * syllable * gain * wave);
  }
  return out;
}

// ---- helpers ----------------------------------------------------------------------------------------------------------

const seconds = (ms: number): number => Math.round(ms) / 1000;

/** RT-shaped transcript: words spread over [startMs, endMs], trailing punctuation as its own result. */
function transcriptMessage(kind: FlowTranscriptMessage['message'], text: string, startMs: number, endMs: number): FlowTranscriptMessage {
  const words = splitWords(text);
  const results: FlowRecognitionResult[] = [];
  const final = kind === 'AddTranscript';
  for (const { index, core, punctuation, startMs: wordStart, endMs: wordEnd } of spreadWords(words, startMs, endMs)) {
    if (core.length > 0) {
      results.push({
        type: 'word',
        start_time: seconds(wordStart),
        end_time: seconds(wordEnd),
        alternatives: [{ content: core, confidence: final ? 0.9 + ((index * 7) % 10) / 100 : 0.5, language: 'en' }],
      });
    }
    if (punctuation.length > 0) {
      results.push({
        type: 'punctuation',
        start_time: seconds(wordEnd),
        end_time: seconds(wordEnd),
        attaches_to: 'previous',
        is_eos: /[.!?]/.test(punctuation),
        alternatives: [{ content: punctuation, confidence: 1, language: 'en' }],
      });
    }
  }
  return {
    message: kind,
    format: '2.1',
    metadata: { start_time: seconds(startMs), end_time: seconds(endMs), transcript: words.length > 0 ? `${words.join(' ')} ` : '' },
    results,
  };
}

/** The first `fraction` of the words of `content` (rounded down). */
function spokenPart(content: string, fraction: number): string {
  const words = splitWords(content);
  const count = Math.max(0, Math.min(words.length, Math.floor(words.length * fraction + 1e-9)));
  return words.slice(0, count).join(' ');
}

function describeIssue(issue: z.core.$ZodIssue, root: unknown): string {
  const path = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') return `Unknown field(s) at ${path === '' ? 'top level' : path}: ${issue.keys.join(', ')}`;
  let value: unknown = root;
  for (const key of issue.path) value = isRecord(value) || Array.isArray(value) ? (value as Record<PropertyKey, unknown>)[key] : undefined;
  if (issue.code === 'invalid_type' && value === undefined) return `Missing required field: ${path}`;
  return `Invalid value for field ${path}: ${issue.message}`;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function defaultErrorReason(type: FlowErrorType): string {
  switch (type) {
    case 'not_authorised':
      return 'Not authorised.';
    case 'quota_exceeded':
      return 'Quota exceeded.';
    case 'idle_timeout':
      return 'Idle timeout.';
    case 'session_timeout':
      return 'Session timeout.';
    case 'timelimit_exceeded':
      return 'Time limit exceeded.';
    default:
      return `Emulated ${type}.`;
  }
}

// ---- connection -------------------------------------------------------------------------------------------------------

interface Settings {
  readonly apiKeys: ReadonlySet<string>;
  readonly verifyToken: (jwt: string) => boolean;
  readonly templates: ReadonlySet<string> | undefined;
  readonly greeting: FlowReply | false;
  readonly reply: (turn: FlowTurn) => FlowReply | undefined;
  readonly agentAudio: (text: string, ms: number, info: FlowAgentAudioInfo) => Int16Array;
  readonly chunkSamples: number;
  readonly pacingFactor: number;
  readonly responseDelayMs: number;
  readonly recognize: FlowRecognizer;
  readonly thresholdDbfs: number;
  readonly minSpeechMs: number;
  readonly endOfTurnSilenceMs: number;
  readonly bargeInMs: number;
  readonly partialIntervalMs: number;
  readonly toolCalls: readonly FlowScriptedToolCall[];
  readonly startInfo: boolean;
  readonly idleTimeoutMs: number;
  readonly logger: Logger;
}

interface QueuedResponse {
  readonly content: string;
  readonly ms: number;
  readonly trigger: FlowResponseRecord['trigger'];
  readonly turnIndex: number | undefined;
}

interface ActiveResponse {
  readonly record: MutableResponse;
  readonly samples: Int16Array;
  readonly t0: number;
  frameIndex: number;
  timer: NodeJS.Timeout | undefined;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
type MutableResponse = Mutable<FlowResponseRecord>;
type MutableInvocation = Mutable<FlowToolInvocationRecord>;
type MutableAddInput = Mutable<FlowAddInputRecord>;

interface PendingTool {
  readonly turn: Omit<FlowTurn, 'toolResults'>;
  readonly invocations: MutableInvocation[];
}

type ArmedTrigger = Exclude<FlowFaultTrigger, 'upgrade'>;

class Connection implements SpeechmaticsFlowConnection {
  readonly jwt: string | undefined;
  state: FlowConnectionState = 'awaiting-start';
  conversationId: string | undefined;
  startConversation: FlowStartConversation | undefined;
  audioFormat: FlowAudioFormat | undefined;
  inputFrames = 0;
  inputBytes = 0;
  readonly audioAcks: FlowAudioAck[] = [];
  readonly ackIssues: string[] = [];
  agentFramesSent = 0;
  agentAudioMs = 0;
  readonly toolInvocations: MutableInvocation[] = [];
  readonly toolResults: FlowToolResultRecord[] = [];
  readonly addInputs: MutableAddInput[] = [];
  readonly userTurns: FlowUserTurnRecord[] = [];
  readonly responses: MutableResponse[] = [];
  audioEnded: { readonly last_seq_no: number; readonly audioAddedSent: number } | undefined;
  readonly sent: FlowServerMessage[] = [];
  readonly received: JsonValue[] = [];
  readonly faultsApplied: FlowFaultAction[] = [];
  closeInfo: FlowCloseInfo | undefined;
  stalled = false;
  pingsReceived = 0;

  readonly #ws: WebSocket;
  readonly #settings: Settings;
  readonly #notify: () => void;
  readonly #timers = new TimerSet();
  #idleTimer: NodeJS.Timeout | undefined;
  readonly #faults: ArmedFaults<ArmedTrigger, FlowFaultAction>;
  #sessionStart = performance.now();
  #declaredTools: ReadonlySet<string> = new Set();
  // caller audio
  #decoder = new StreamDecoder(knownRawSampleCodec(DEFAULT_AUDIO_FORMAT.encoding), 1);
  readonly #speech: SpeechSegmenter;
  #hangoverSamples = 0;
  #bargeVoicedMs = 0;
  #lastPartial = '';
  // turns and responses
  #turnCount = 0;
  #toolCounter = 0;
  #pendingInputs: MutableAddInput[] = [];
  readonly #pendingTools: PendingTool[] = [];
  #queue: QueuedResponse[] = [];
  #active: ActiveResponse | undefined;
  #lastAck = 0;

  constructor(
    readonly index: number,
    readonly path: string,
    readonly query: Readonly<Record<string, string>>,
    readonly headers: IncomingHttpHeaders,
    readonly authVia: 'jwt' | 'header',
    ws: WebSocket,
    settings: Settings,
    faults: readonly FlowFault[],
    notify: () => void,
  ) {
    this.jwt = query.jwt;
    this.#ws = ws;
    this.#settings = settings;
    this.#notify = notify;
    this.#speech = new SpeechSegmenter(16000, settings.thresholdDbfs, settings.minSpeechMs);
    this.#faults = new ArmedFaults(faults, 'start');
    ws.on('message', (data: RawData, isBinary: boolean) => this.#onMessage(toBuffer(data), isBinary));
    // A stalled server answers no pings either (the ws library would otherwise pong for it).
    ws.on('ping', (data: Buffer) => {
      this.pingsReceived++;
      if (!this.stalled && ws.readyState === ws.OPEN) ws.pong(data);
      this.#notify();
    });
    ws.on('close', (code: number, reason: Buffer) => {
      this.closeInfo ??= { code, reason: reason.toString('utf8'), by: 'client' };
      this.#shutdown();
      this.#notify();
    });
    ws.on('error', (error: Error) => settings.logger.debug({ err: error.message, connection: index }, 'flow emulator: socket error'));
    this.#setRate(16000);
    this.#armIdle();
  }

  get inputAudioMs(): number {
    return ((this.#speech.samples + this.#speech.pending) * 1000) / this.#speech.rate;
  }

  // ---- public control ----

  close(code = 1000, reason = ''): void {
    if (this.closeInfo !== undefined) return;
    this.closeInfo = { code, reason, by: 'server' };
    this.#shutdown();
    try {
      this.#ws.close(code, reason);
    } catch (error) {
      // An invalid close code (1005, 1006, > 4999) or a reason over 123 bytes: the socket is destroyed instead.
      this.#settings.logger.warn({ err: errorText(error), connection: this.index }, 'flow emulator: invalid close, socket destroyed');
      this.#ws.terminate();
    }
    this.#notify();
  }

  endConversation(): void {
    if (this.state !== 'active' || this.closeInfo !== undefined) return;
    this.state = 'ending';
    this.#queue = [];
    this.#send({ message: 'ConversationEnding' });
    if (this.#active === undefined) this.#finishEnding();
    this.#notify();
  }

  say(text: string, ms: number): void {
    if (this.state !== 'active' || this.closeInfo !== undefined) return;
    this.#queue.unshift({ content: text, ms, trigger: 'say', turnIndex: undefined });
    this.#pump();
  }

  applyFault(action: FlowFaultAction): void {
    if (this.closeInfo !== undefined) return;
    this.faultsApplied.push(action);
    this.#settings.logger.debug({ fault: action.type, connection: this.index }, 'flow emulator: fault');
    switch (action.type) {
      case 'error':
        this.#fatal(action.errorType, action.reason ?? defaultErrorReason(action.errorType), action.closeCode);
        return;
      case 'drop':
      case 'http':
        // `http` only means something at the upgrade; on an open socket it is a drop.
        this.closeInfo = { code: 1006, reason: '', by: 'dropped' };
        this.#shutdown();
        this.#ws.terminate();
        this.#notify();
        return;
      case 'stall':
        this.stalled = true;
        this.#timers.clear();
        if (this.#active !== undefined) this.#active.timer = undefined;
        this.#notify();
        return;
      case 'close':
        this.close(action.code, action.reason ?? '');
        return;
      case 'malformed':
        this.#sendRaw(action.text ?? '{"message":"AddTranscript","metadata":{"start_ti');
        return;
      case 'odd-binary':
        this.#sendBinary(Buffer.from([1, 2, 3]));
        return;
      case 'warning':
        this.#send({
          message: 'Warning',
          type: action.warningType,
          reason: action.reason ?? `Emulated ${action.warningType} warning.`,
          ...(action.warningType === 'conversation_termination' ? { conversation_termination: action.value ?? 60 } : {}),
        });
        return;
      case 'info':
        this.#send(this.#info(action.infoType, action.reason, action.value));
        return;
      default: {
        const exhaustive: never = action;
        throw new Error(`unknown fault ${JSON.stringify(exhaustive)}`);
      }
    }
  }

  /** Emulator shutdown: the socket goes away without a close frame. */
  dispose(): void {
    this.closeInfo ??= { code: 1006, reason: 'emulator closed', by: 'dropped' };
    this.#shutdown();
    this.#ws.terminate();
  }

  // ---- plumbing ----

  #sessionMs(): number {
    return Math.round(performance.now() - this.#sessionStart);
  }

  #open(): boolean {
    return this.closeInfo === undefined && !this.stalled && this.#ws.readyState === this.#ws.OPEN;
  }

  #send(message: FlowServerMessage): boolean {
    if (!this.#open()) return false;
    this.sent.push(message);
    this.#ws.send(JSON.stringify(message));
    this.#notify();
    return true;
  }

  #sendRaw(text: string): void {
    if (!this.#open()) return;
    this.#ws.send(text);
  }

  #sendBinary(bytes: Buffer): boolean {
    if (!this.#open()) return false;
    this.agentFramesSent++;
    this.#ws.send(bytes, { binary: true });
    return true;
  }

  #info(type: FlowInfoType, reason: string | undefined, value: number | undefined): FlowInfoMessage {
    switch (type) {
      case 'status_update':
        return { message: 'Info', type, reason: reason ?? 'Conversation status changed.', event: { prev_status: 'starting', status: 'running' } };
      case 'conversation_duration_limit':
        return { message: 'Info', type, reason: reason ?? 'Conversation duration limit.', conversation_duration_limit: value ?? 3600 };
      case 'concurrent_session_usage':
        return { message: 'Info', type, reason: reason ?? 'Concurrent session usage.', usage: value ?? 1, quota: 3, last_updated: new Date().toISOString() };
      default: {
        const exhaustive: never = type;
        throw new Error(`unknown info type ${String(exhaustive)}`);
      }
    }
  }

  #fatal(type: FlowErrorType, reason: string, closeCode?: number): void {
    this.#send({ message: 'Error', type, reason });
    this.close(closeCode ?? FLOW_CLOSE_CODES[type], type);
  }

  #warn(reason: string): void {
    this.#send({ message: 'Warning', type: 'protocol_error', reason });
  }

  /** Stops everything (timers, the active response) once the connection is over. */
  #shutdown(): void {
    this.#timers.clear();
    this.#idleTimer = undefined;
    const active = this.#active;
    if (active !== undefined) {
      this.#active = undefined;
      active.record.outcome = 'aborted';
      active.record.endedAt = this.#sessionMs();
    }
    this.#queue = [];
    this.state = 'ended';
  }

  /** An owned timer whose callback can never throw out of the emulator. */
  #after(ms: number, run: () => void): NodeJS.Timeout {
    return this.#timers.after(ms, () => {
      try {
        run();
      } catch (error) {
        this.#settings.logger.error({ err: errorText(error), connection: this.index }, 'flow emulator: timer failed');
        this.#fatal('internal_error', 'Emulator failure.');
      }
    });
  }

  #armIdle(): void {
    this.#timers.cancel(this.#idleTimer);
    this.#idleTimer = this.#after(this.#settings.idleTimeoutMs, () => {
      this.#idleTimer = undefined;
      if (!this.stalled && this.closeInfo === undefined) this.#fatal('idle_timeout', `No message received for ${String(this.#settings.idleTimeoutMs)} ms.`);
    });
  }

  /** Runs the faults armed for a trigger; true when one ended or froze the connection. */
  #trigger(matches: (at: ArmedTrigger) => boolean): boolean {
    const due = this.#faults.take(matches);
    if (due.length === 0) return false;
    for (const action of due) this.applyFault(action);
    return this.stalled || this.closeInfo !== undefined;
  }

  /** Runs user callbacks; a throw becomes an internal_error. */
  #guard<T>(what: string, run: () => T): T | undefined {
    try {
      return run();
    } catch (error) {
      this.#settings.logger.warn({ err: errorText(error), connection: this.index }, `flow emulator: ${what} threw`);
      this.#fatal('internal_error', `Emulator ${what} failed: ${errorText(error)}`.slice(0, 200));
      return undefined;
    }
  }

  // ---- client messages ----

  #onMessage(data: Buffer, isBinary: boolean): void {
    if (this.closeInfo !== undefined) return;
    try {
      this.#handle(data, isBinary);
    } catch (error) {
      this.#settings.logger.error({ err: errorText(error), connection: this.index }, 'flow emulator: handler failed');
      this.#fatal('internal_error', 'Emulator failure.');
    }
    this.#notify();
  }

  #handle(data: Buffer, isBinary: boolean): void {
    if (this.stalled) {
      // Record what arrives; answer nothing.
      if (isBinary) {
        this.inputFrames++;
        this.inputBytes += data.length;
      } else {
        const parsed = this.#parse(data);
        if (parsed !== undefined) this.received.push(parsed);
      }
      return;
    }
    this.#armIdle();
    if (this.state === 'awaiting-start') {
      this.#onStart(data, isBinary);
      return;
    }
    if (isBinary) {
      this.#onAudio(data);
      return;
    }
    this.#onText(data);
  }

  #parse(data: Buffer): JsonValue | undefined {
    try {
      return JSON.parse(data.toString('utf8')) as JsonValue;
    } catch {
      return undefined;
    }
  }

  #onStart(data: Buffer, isBinary: boolean): void {
    if (isBinary) {
      this.#fatal('protocol_error', 'Expected StartConversation as the first message, got binary data.');
      return;
    }
    const parsed = this.#parse(data);
    if (parsed === undefined) {
      this.#fatal('protocol_error', 'Invalid JSON: expected StartConversation as the first message.');
      return;
    }
    this.received.push(parsed);
    if (!isRecord(parsed) || parsed.message !== 'StartConversation') {
      const got = isRecord(parsed) && typeof parsed.message === 'string' ? parsed.message : 'a message without a message type';
      this.#fatal('protocol_error', `Expected StartConversation as the first message, got ${got}.`);
      return;
    }
    const result = startConversationSchema.safeParse(parsed);
    if (!result.success) {
      const issue = result.error.issues[0];
      this.#fatal('config_error', issue === undefined ? 'Invalid StartConversation.' : describeIssue(issue, parsed));
      return;
    }
    const start = result.data;
    const problem = this.#checkStart(start);
    if (problem !== undefined) {
      this.#fatal('config_error', problem);
      return;
    }
    this.startConversation = start;
    this.audioFormat = start.audio_format ?? DEFAULT_AUDIO_FORMAT;
    this.#decoder = new StreamDecoder(knownRawSampleCodec(this.audioFormat.encoding), 1);
    this.#declaredTools = new Set((start.tools ?? []).map((tool) => tool.function.name));
    this.#setRate(this.audioFormat.sample_rate);
    if (this.#trigger((at) => at === 'start')) return;
    this.state = 'active';
    this.#sessionStart = performance.now();
    this.conversationId = randomUUID();
    this.#send({
      message: 'ConversationStarted',
      id: this.conversationId,
      asr_session_id: randomUUID(),
      language_pack_info: { adapted: false, itn: true, language_description: 'English', word_delimiter: ' ', writing_direction: 'left-to-right' },
    });
    if (this.#settings.startInfo) this.#send(this.#info('status_update', 'Conversation is running.', undefined));
    const greeting = this.#settings.greeting;
    if (greeting !== false) {
      this.#queue.push({ content: greeting.text, ms: greeting.ms, trigger: 'greeting', turnIndex: undefined });
      this.#pump();
    }
  }

  #checkStart(start: FlowStartConversation): string | undefined {
    const template = start.conversation_config.template_id;
    if (this.#settings.templates !== undefined && !this.#settings.templates.has(template)) return `Unknown template_id: ${template}.`;
    const names = new Set<string>();
    for (const [t, tool] of (start.tools ?? []).entries()) {
      const fn = tool.function;
      if (names.has(fn.name)) return `Duplicate tool name: ${fn.name}.`;
      names.add(fn.name);
      const properties = fn.parameters?.properties ?? {};
      for (const [name, property] of Object.entries(properties)) {
        if (!TOOL_PARAMETER_TYPES.has(property.type)) {
          return `Unsupported type '${property.type}' for tools.${String(t)}.function.parameters.properties.${name}: expected integer, number, string or boolean.`;
        }
      }
      for (const name of fn.parameters?.required ?? []) {
        if (!(name in properties)) return `tools.${String(t)}.function.parameters.required names an unknown property: ${name}.`;
      }
    }
    return undefined;
  }

  #onText(data: Buffer): void {
    const parsed = this.#parse(data);
    if (parsed === undefined) {
      this.#fatal('protocol_error', 'Invalid JSON message.');
      return;
    }
    this.received.push(parsed);
    if (!isRecord(parsed) || typeof parsed.message !== 'string') {
      this.#fatal('protocol_error', 'Message must be a JSON object with a "message" field.');
      return;
    }
    switch (parsed.message) {
      case 'AudioReceived': {
        const result = audioReceivedSchema.safeParse(parsed);
        if (!result.success) this.#warn(`Invalid AudioReceived: ${describeIssue(result.error.issues[0] as z.core.$ZodIssue, parsed)}`);
        else this.#onAck(result.data.seq_no, result.data.buffering);
        return;
      }
      case 'AudioEnded': {
        const result = audioEndedSchema.safeParse(parsed);
        if (!result.success) this.#warn(`Invalid AudioEnded: ${describeIssue(result.error.issues[0] as z.core.$ZodIssue, parsed)}`);
        else this.#onAudioEnded(result.data.last_seq_no);
        return;
      }
      case 'AddInput': {
        const result = addInputSchema.safeParse(parsed);
        if (!result.success) this.#warn(`Invalid AddInput: ${describeIssue(result.error.issues[0] as z.core.$ZodIssue, parsed)}`);
        else this.#onAddInput(result.data.input, result.data.interrupt_response === true, result.data.immediate === true);
        return;
      }
      case 'ToolResult': {
        const result = toolResultSchema.safeParse(parsed);
        if (!result.success) this.#warn(`Invalid ToolResult: ${describeIssue(result.error.issues[0] as z.core.$ZodIssue, parsed)}`);
        else this.#onToolResult(result.data.id, result.data.status, result.data.content);
        return;
      }
      case 'StartConversation':
        this.#warn('The conversation has already started.');
        return;
      default:
        this.#warn(`Unknown message type: ${parsed.message.slice(0, 100)}.`);
    }
  }

  #onAck(seqNo: number, buffering: number | undefined): void {
    this.audioAcks.push({ seq_no: seqNo, ...(buffering !== undefined ? { buffering } : {}), atMs: this.#sessionMs() });
    if (seqNo > this.agentFramesSent) this.ackIssues.push(`seq_no ${String(seqNo)} acks a frame never sent (${String(this.agentFramesSent)} sent)`);
    if (seqNo <= this.#lastAck) this.ackIssues.push(`seq_no ${String(seqNo)} after ${String(this.#lastAck)} (repeat or out of order)`);
    else if (seqNo > this.#lastAck + 1) this.ackIssues.push(`seq_no ${String(seqNo)} after ${String(this.#lastAck)} (gap)`);
    this.#lastAck = Math.max(this.#lastAck, seqNo);
  }

  #onAudioEnded(lastSeqNo: number): void {
    if (this.audioEnded !== undefined) return;
    this.audioEnded = { last_seq_no: lastSeqNo, audioAddedSent: this.inputFrames };
    this.#flushFrame();
    const wasActive = this.state === 'active';
    this.state = 'ending';
    if (this.#speech.open !== undefined) this.#endUtterance();
    if (this.closeInfo !== undefined) return;
    if (this.#active !== undefined) {
      const active = this.#active;
      this.#timers.cancel(active.timer);
      this.#active = undefined;
      active.record.outcome = 'aborted';
      active.record.endedAt = this.#sessionMs();
    }
    this.#settings.logger.debug({ connection: this.index, wasActive }, 'flow emulator: audio ended');
    this.#send({ message: 'ConversationEnded' });
    this.close(1000, '');
  }

  #onAddInput(input: string, interrupt: boolean, immediate: boolean): void {
    const record: MutableAddInput = { input, interrupt_response: interrupt, immediate, atMs: this.#sessionMs(), turnIndex: undefined };
    this.addInputs.push(record);
    if (this.state !== 'active') return;
    if (interrupt && this.#active !== undefined) this.#interrupt('add-input');
    if (immediate) {
      const index = this.#turnCount++;
      record.turnIndex = index;
      this.#startTurn(index, 'input', input);
    } else {
      this.#pendingInputs.push(record);
    }
  }

  #onToolResult(id: string, status: FlowToolResultRecord['status'], content: string | undefined): void {
    const wait = this.#pendingTools.find((pending) => pending.invocations.some((invocation) => invocation.id === id && invocation.state === 'pending'));
    const invocation = wait?.invocations.find((candidate) => candidate.id === id);
    const record: FlowToolResultRecord = {
      id,
      status,
      ...(content !== undefined ? { content } : {}),
      atMs: this.#sessionMs(),
      known: invocation !== undefined,
      ...(invocation !== undefined ? { name: invocation.name, turnIndex: invocation.turnIndex } : {}),
    };
    this.toolResults.push(record);
    if (wait === undefined || invocation === undefined) {
      const answered = this.toolInvocations.some((candidate) => candidate.id === id && candidate.state === 'answered');
      this.#warn(answered ? `ToolResult for an already answered tool call: ${id}.` : `ToolResult for an unknown tool call id: ${id}.`);
      return;
    }
    invocation.state = 'answered';
    invocation.result = record;
    if (wait.invocations.every((candidate) => candidate.state === 'answered')) {
      this.#pendingTools.splice(this.#pendingTools.indexOf(wait), 1);
      this.#replyTo({ ...wait.turn, toolResults: wait.invocations.map((candidate) => candidate.result as FlowToolResultRecord) });
    }
  }

  // ---- caller audio ----

  #setRate(rate: number): void {
    this.#speech.setRate(rate);
    this.#hangoverSamples = this.#speech.samplesIn(this.#settings.endOfTurnSilenceMs);
  }

  #onAudio(data: Buffer): void {
    this.inputFrames++;
    this.inputBytes += data.length;
    this.#send({ message: 'AudioAdded', seq_no: this.inputFrames });
    if (this.state !== 'active' && this.state !== 'ending') return;
    for (const frame of this.#speech.frames(this.#decoder.decode(data))) {
      this.#processFrame(frame);
      if (this.closeInfo !== undefined || this.stalled) return;
    }
    const audioMs = this.inputAudioMs;
    this.#trigger((at) => typeof at === 'object' && 'afterAudioMs' in at && audioMs >= at.afterAudioMs);
  }

  #flushFrame(): void {
    const rest = this.#speech.flush();
    if (rest !== undefined) this.#processFrame(rest);
  }

  #processFrame(frame: Int16Array): void {
    const speech = this.#speech;
    const voiced = speech.addFrame(frame);
    const open = speech.open;
    if (voiced) {
      if (this.#active !== undefined && this.state === 'active') {
        this.#bargeVoicedMs += speech.ms(frame.length);
        if (this.#bargeVoicedMs >= this.#settings.bargeInMs) this.#interrupt('barge-in');
      }
    } else if (open !== undefined && speech.silenceAfter(open) >= this.#hangoverSamples) {
      this.#endUtterance();
      return;
    }
    if (open !== undefined && open.sincePartial * 1000 >= this.#settings.partialIntervalMs * speech.rate) {
      open.sincePartial = 0;
      this.#sendPartial(open);
    }
  }

  #sendPartial(open: OpenUtterance): void {
    if (!this.#speech.longEnough(open)) return;
    const view = this.#speech.view(open, false);
    const text = this.#guard('recognize', () => this.#settings.recognize(view));
    if (text === undefined) return;
    const words = splitWords(text);
    const revealed = words.slice(0, Math.max(1, Math.min(words.length, Math.floor(view.audioMs / 250)))).join(' ');
    // Nothing new during the trailing silence: no repeated partial.
    const key = `${String(open.index)}|${String(view.audioMs)}|${revealed}`;
    if (key === this.#lastPartial) return;
    this.#lastPartial = key;
    this.#send(transcriptMessage('AddPartialTranscript', revealed, view.startMs, view.startMs + view.audioMs));
  }

  #endUtterance(): void {
    const open = this.#speech.end();
    this.#bargeVoicedMs = 0;
    if (open === undefined) return;
    const view = this.#speech.view(open, true);
    const text = this.#guard('recognize', () => this.#settings.recognize(view).trim());
    if (text === undefined || text.length === 0) return;
    const speaking = this.state === 'active';
    const index = speaking ? this.#turnCount++ : -1;
    this.userTurns.push({ index, text, startMs: view.startMs, endMs: view.startMs + view.audioMs });
    this.#send(transcriptMessage('AddTranscript', text, view.startMs, view.startMs + view.audioMs));
    if (speaking && this.closeInfo === undefined) this.#startTurn(index, 'speech', text);
  }

  // ---- turns, tools, responses ----

  #startTurn(index: number, source: FlowTurn['source'], userText: string): void {
    const folded = this.#pendingInputs;
    this.#pendingInputs = [];
    for (const input of folded) input.turnIndex = index;
    const turn: Omit<FlowTurn, 'toolResults'> = { index, connection: this.index, source, userText, inputs: folded.map((input) => input.input) };
    const invocations: MutableInvocation[] = [];
    for (const call of this.#settings.toolCalls) {
      if (call.turn !== index) continue;
      const id = call.id ?? `tool_call_${String(++this.#toolCounter)}`;
      const declared = this.#declaredTools.has(call.name);
      const invocation: MutableInvocation = {
        id,
        name: call.name,
        arguments: call.arguments,
        turnIndex: index,
        sentAtMs: declared ? this.#sessionMs() : undefined,
        state: declared ? 'pending' : 'undeclared',
        result: undefined,
      };
      this.toolInvocations.push(invocation);
      if (!declared) continue;
      invocations.push(invocation);
      this.#send({ message: 'ToolInvoke', id, type: 'function', function: { name: call.name, arguments: call.arguments } });
    }
    if (invocations.length > 0) this.#pendingTools.push({ turn, invocations });
    else this.#replyTo({ ...turn, toolResults: [] });
  }

  #replyTo(turn: FlowTurn): void {
    if (this.state !== 'active' || this.closeInfo !== undefined) return;
    if (turn.toolResults.length > 0 && turn.toolResults.every((result) => result.content === FLOW_NO_RESPONSE_REQUIRED)) return;
    const reply = this.#guard('reply', () => this.#settings.reply(turn));
    if (reply === undefined || this.closeInfo !== undefined) return;
    const item: QueuedResponse = { content: reply.text, ms: reply.ms, trigger: 'turn', turnIndex: turn.index };
    const enqueue = (): void => {
      if (this.state !== 'active' || this.closeInfo !== undefined) return;
      this.#queue.push(item);
      this.#pump();
    };
    if (this.#settings.responseDelayMs > 0) this.#after(this.#settings.responseDelayMs, enqueue);
    else enqueue();
  }

  #pump(): void {
    if (this.#active !== undefined || this.state !== 'active' || this.stalled || this.closeInfo !== undefined) return;
    const next = this.#queue.shift();
    if (next !== undefined) this.#startResponse(next);
  }

  #startResponse(item: QueuedResponse): void {
    const id = this.responses.length + 1;
    const samples = this.#guard('agentAudio', () => this.#settings.agentAudio(item.content, item.ms, { connection: this.index, response: id }));
    if (samples === undefined) return;
    const record: MutableResponse = {
      id,
      content: item.content,
      trigger: item.trigger,
      turnIndex: item.turnIndex,
      plannedMs: samples.length / OUT_SAMPLES_PER_MS,
      audioMsSent: 0,
      framesSent: 0,
      startedAt: this.#sessionMs(),
      endedAt: undefined,
      outcome: 'active',
      spokenContent: undefined,
      interruptedBy: undefined,
    };
    this.responses.push(record);
    const active: ActiveResponse = { record, samples, t0: performance.now(), frameIndex: 0, timer: undefined };
    this.#active = active;
    this.#bargeVoicedMs = 0;
    this.#send({ message: 'ResponseStarted', content: item.content, start_time: seconds(record.startedAt) });
    if (this.#responseFaults(active)) return;
    this.#scheduleFrame(active);
  }

  /** Faults armed for this response's progress; true when the connection is over or frozen. */
  #responseFaults(active: ActiveResponse): boolean {
    const { id, audioMsSent } = active.record;
    return this.#trigger((at) => typeof at === 'object' && 'duringResponse' in at && at.duringResponse === id && audioMsSent >= (at.afterAgentMs ?? 0));
  }

  #scheduleFrame(active: ActiveResponse): void {
    if (this.#active !== active || this.stalled || this.closeInfo !== undefined) return;
    const chunk = this.#settings.chunkSamples;
    const factor = this.#settings.pacingFactor;
    const frames = Math.ceil(active.samples.length / chunk);
    const dueMs =
      active.frameIndex < frames
        ? active.t0 + (active.frameIndex * chunk) / OUT_SAMPLES_PER_MS / factor
        : active.t0 + active.samples.length / OUT_SAMPLES_PER_MS / factor;
    const run = active.frameIndex < frames ? (): void => this.#sendFrame(active) : (): void => this.#complete(active);
    active.timer = this.#after(Math.max(0, dueMs - performance.now()), run);
  }

  #sendFrame(active: ActiveResponse): void {
    active.timer = undefined;
    if (this.#active !== active) return;
    const chunk = this.#settings.chunkSamples;
    const slice = active.samples.subarray(active.frameIndex * chunk, (active.frameIndex + 1) * chunk);
    active.frameIndex++;
    if (this.#sendBinary(pcmBytes(slice))) {
      const ms = slice.length / OUT_SAMPLES_PER_MS;
      active.record.framesSent++;
      active.record.audioMsSent += ms;
      this.agentAudioMs += ms;
      this.#notify();
    }
    if (this.#responseFaults(active)) return;
    this.#scheduleFrame(active);
  }

  #complete(active: ActiveResponse): void {
    active.timer = undefined;
    if (this.#active !== active) return;
    this.#active = undefined;
    const record = active.record;
    record.outcome = 'completed';
    record.endedAt = this.#sessionMs();
    const start = seconds(record.startedAt);
    this.#send({ message: 'ResponseCompleted', content: record.content, start_time: start, end_time: seconds(record.startedAt + record.audioMsSent) });
    if (this.state === 'ending') this.#finishEnding();
    else this.#pump();
  }

  #interrupt(by: 'barge-in' | 'add-input'): void {
    const active = this.#active;
    if (active === undefined) return;
    this.#timers.cancel(active.timer);
    active.timer = undefined;
    this.#active = undefined;
    const record = active.record;
    const fraction = record.plannedMs > 0 ? record.audioMsSent / record.plannedMs : 1;
    record.outcome = 'interrupted';
    record.interruptedBy = by;
    record.spokenContent = spokenPart(record.content, fraction);
    record.endedAt = this.#sessionMs();
    this.#bargeVoicedMs = 0;
    this.#send({
      message: 'ResponseInterrupted',
      content: record.spokenContent,
      start_time: seconds(record.startedAt),
      end_time: seconds(record.startedAt + record.audioMsSent),
    });
    if (by === 'barge-in') this.#queue = [];
    if (this.state === 'ending') this.#finishEnding();
    else this.#pump();
  }

  #finishEnding(): void {
    this.#send({ message: 'ConversationEnded' });
    this.close(1000, '');
  }
}

// ---- server -----------------------------------------------------------------------------------------------------------

export async function startSpeechmaticsFlowEmulator(options: SpeechmaticsFlowEmulatorOptions = {}): Promise<SpeechmaticsFlowEmulator> {
  const pacing = options.pacing ?? 'realtime';
  const pacingFactor = pacing === 'realtime' ? 1 : pacing;
  if (!(pacingFactor > 0)) throw new RangeError(`pacing must be 'realtime' or a number > 0, got ${String(pacing)}`);
  const chunkMs = options.chunkMs ?? 40;
  if (!(chunkMs > 0)) throw new RangeError(`chunkMs must be > 0, got ${String(chunkMs)}`);
  const thresholdDbfs = options.thresholdDbfs ?? -40;
  const settings: Settings = {
    apiKeys: new Set(options.apiKey === undefined ? [] : typeof options.apiKey === 'string' ? [options.apiKey] : options.apiKey),
    verifyToken: options.verifyToken ?? ((jwt) => jwt.length > 0),
    templates: options.templates === undefined ? undefined : new Set(options.templates),
    greeting: options.greeting ?? false,
    reply: options.reply ?? defaultFlowReply,
    agentAudio: options.agentAudio ?? defaultFlowAgentAudio,
    chunkSamples: Math.max(1, Math.round(chunkMs * OUT_SAMPLES_PER_MS)),
    pacingFactor,
    responseDelayMs: options.responseDelayMs ?? 0,
    recognize: options.recognize ?? fixtureRecognizer({ thresholdDbfs }),
    thresholdDbfs,
    minSpeechMs: options.minSpeechMs ?? 60,
    endOfTurnSilenceMs: options.endOfTurnSilenceMs ?? 700,
    bargeInMs: options.bargeInMs ?? 200,
    partialIntervalMs: options.partialIntervalMs ?? 300,
    toolCalls: options.toolCalls ?? [],
    startInfo: options.startInfo ?? true,
    idleTimeoutMs: options.idleTimeoutMs ?? 60_000,
    logger: options.logger ?? silentLogger(),
  };
  const host = createWsEmulatorHost<Connection, FlowFault>({ perMessageDeflate: false, autoPong: false }, options.faults);
  const upgrades: FlowUpgradeRecord[] = [];

  host.server.on('clientError', (_error, socket: Duplex) => socket.destroy());
  host.server.on('request', (request, response) => {
    const path = new URL(request.url ?? '/', 'http://127.0.0.1').pathname;
    const status = path === '/v1/flow' ? 426 : 404;
    response
      .writeHead(status, { 'content-type': 'application/json' })
      .end(JSON.stringify({ message: 'Error', type: 'protocol_error', reason: status === 426 ? 'WebSocket upgrade required.' : 'Not found.' }));
  });

  host.server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    // A refused client may go away before reading the answer.
    socket.on('error', () => undefined);
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    const path = url.pathname;
    const query: Record<string, string> = Object.fromEntries(url.searchParams);
    const record = (status: number): void => {
      upgrades.push({ path, query, headers: request.headers, status });
      host.notify();
    };
    if (path !== '/v1/flow') {
      writeRawHttp(socket, 404, { message: 'Error', type: 'protocol_error', reason: 'Not found.' });
      record(404);
      return;
    }
    const key = bearerToken(request.headers);
    let authVia: 'jwt' | 'header' | undefined;
    if (key !== undefined && settings.apiKeys.has(key)) authVia = 'header';
    else if (query.jwt !== undefined && settings.verifyToken(query.jwt)) authVia = 'jwt';
    if (authVia === undefined) {
      writeRawHttp(socket, 401, { message: 'Error', type: 'not_authorised', reason: query.jwt === undefined ? 'Missing jwt.' : 'Invalid or expired token.' });
      record(401);
      return;
    }
    const fault = host.faults.take();
    if (fault !== undefined && fault.at === 'upgrade') {
      const http = fault.action.type === 'http' ? fault.action : undefined;
      record(failUpgrade(socket, http, (status) => ({ message: 'Error', type: 'unknown_error', reason: `HTTP ${String(status)}` })));
      return;
    }
    const via = authVia;
    host.accept(request, socket, head, (ws, index) => {
      upgrades.push({ path, query, headers: request.headers, status: 101 });
      return new Connection(index, path, query, request.headers, via, ws, settings, fault === undefined ? [] : [fault], host.notify);
    });
  });

  const port = await host.listen();
  return { baseUrl: `ws://127.0.0.1:${String(port)}`, url: `ws://127.0.0.1:${String(port)}/v1/flow`, port, upgrades, ...host.api };
}
