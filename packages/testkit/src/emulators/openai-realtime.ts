/**
 * OpenAI Realtime **GA** emulator (docs/reference/provider-protocols.md §1.1–1.8) on 127.0.0.1:<random port>.
 *
 *   const emu = await startOpenAiRealtimeEmulator({ apiKey: 'sk-test', tls: true });
 *   // official SDK (TLS only):
 *   const rt = new OpenAIRealtimeWS({ model: 'gpt-realtime', options: { ca: emu.certificatePem } },
 *                                   new OpenAI({ apiKey: 'sk-test', baseURL: emu.baseUrl }));
 *   // or plain ws (tls: false):  new WebSocket(`${emu.url}?model=gpt-realtime`, { headers: { Authorization: 'Bearer sk-test' } })
 *   const conn = await emu.waitForConnection();
 *   await conn.waitForServerEvent('response.done');
 *   await emu.close();
 *
 * API (stable; append-only):
 *   startOpenAiRealtimeEmulator(options: OpenAiRealtimeEmulatorOptions): Promise<OpenAiRealtimeEmulator>
 *   startXaiRealtimeEmulator(options): the same in xAI mode (`dialect: 'xai'`, below)
 *   emulator.url            ws(s)://127.0.0.1:PORT/v1/realtime (add ?model=...)
 *   emulator.baseUrl        http(s)://127.0.0.1:PORT/v1 (OpenAI client baseURL)
 *   emulator.certificatePem self-signed cert (SAN IP:127.0.0.1) when tls: true; pass as ws `ca`
 *   emulator.connections    RealtimeEmulatorConnection[] (accepted upgrades, in order); emulator.upgrades: every attempt
 *   emulator.queueConnectionFaults(plan)  faults for the next connection attempt(s) (also `options.faults`)
 *   emulator.waitFor(probe), emulator.waitForConnection(index?), emulator.close()
 *   connection: dialect, headers, query, model, clientEvents (parsed, in order), serverEvents, session (effective),
 *     xaiSession (xAI mode: the session as xAI reports it), items,
 *     truncations, responses, inputAudioMs, inputChunks, closeInfo, closed, inject(fault), sendEvent(event),
 *     close(code, reason), waitForServerEvent(type, pred?), waitForClientEvent(type, pred?)
 *
 * Behaviour:
 * - Upgrade only at `/v1/realtime` (404 JSON otherwise). 101 even for bad credentials; then, like the live server, one
 *   `error` event and a close: bad key -> code `invalid_api_key`, close 3000 `invalid_request_error.invalid_api_key`;
 *   no key -> code null "Missing bearer or basic authentication in header", close 3000 `invalid_request_error`;
 *   `OpenAI-Beta` header -> `beta_api_shape_disabled`, close 4000; no `model` -> `missing_model`, close 4000; a model
 *   `acceptModel` rejects -> `invalid_model`, close 4000. Browser-style auth (subprotocols `realtime` +
 *   `openai-insecure-api-key.<key>`) is accepted too.
 * - `session.created` at once with GA defaults (pcm 24 kHz in/out, server_vad 0.5/300/500 as documented, voice alloy,
 *   ...; the live server showed 200 ms of silence, which a client should not rely on).
 * - `session.update`: validated like GA (realtime-protocol.ts); any error drops the whole update; success sends
 *   `session.updated` with the full merged session.
 * - `input_audio_buffer.append` is decoded in the session input format and fed to an energy VAD (threshold
 *   -50 + 40 x turn_detection.threshold dBFS, 30 ms to start, silence_duration_ms to stop): speech_started
 *   {audio_start_ms (includes prefix_padding_ms), item_id}, speech_stopped {audio_end_ms}, committed, user item
 *   added/done, transcription delta/completed when `audio.input.transcription` is set (after
 *   `timing.transcriptionDelayMs`, so it interleaves with the response), then a scripted response when
 *   `create_response`. speech_started during an active response cancels it (`interrupt_response`).
 * - Response order: response.created, rate_limits.updated (the SDK types: "emitted at the beginning of a Response"),
 *   output_item.added, conversation.item.added, content_part.added,
 *   { output_audio.delta (one `timing.audioChunkMs` chunk every `timing.chunkIntervalMs`), output_audio_transcript.delta }*,
 *   output_audio.done, output_audio_transcript.done, content_part.done, conversation.item.done, output_item.done,
 *   [per function_call item (`functionCall`, then `functionCalls`: parallel calls): output_item.added,
 *   conversation.item.added, function_call_arguments.delta*, function_call_arguments.done, conversation.item.done,
 *   output_item.done], response.done, rate_limits.updated (again, as in the live trace).
 *   Text modality uses output_text.delta/done. A cancelled response closes its open parts (items `incomplete`; the
 *   `.done` events are sent for them too, a function call's with its arguments as far as they got), then
 *   response.done {status cancelled, status_details {type cancelled, reason turn_detected|client_cancelled}}.
 * - Errors keep the session open: invalid_json, invalid_event (binary frame), invalid_value (unknown type),
 *   conversation_already_has_active_response, response_cancel_not_active, input_audio_buffer_commit_empty, truncate
 *   rules (only assistant audio items; integer 0 <= audio_end_ms <= audio sent for the item, else code null
 *   "Audio content of Xms is already shorter than Yms"), a `function_call_output` whose call_id no function_call of
 *   the conversation has (`invalid_tool_call_id` "Tool call ID 'x' not found in conversation.", as live), assistant
 *   audio in `conversation.item.create` ("cannot populate assistant audio messages": missing_required_parameter
 *   `item.content[i].text`, as live for an `output_audio` part).
 * - A truncate that cuts audio deletes the item's transcript (GA: "Truncating audio will delete the server-side text
 *   transcript"): it becomes ''.
 * - Answers pings while not stalled; pings the client every `timing.pingIntervalMs` (default 20 s).
 *
 * xAI mode (`dialect: 'xai'`, or `startXaiRealtimeEmulator`): xAI's Grok Voice Agent API on the same path
 * (`wss://api.x.ai/v1/realtime`), per docs.x.ai (the Speech to Speech guide and its "OpenAI Realtime API
 * Compatibility" table, and the API reference schema voice-realtime.ws.json); the GA engine above runs it, with these
 * differences:
 * - The key is checked at the upgrade: a missing or wrong `Authorization: Bearer` (or `xai-client-secret.<key>`
 *   subprotocol) gets HTTP 401, an unknown `?model=` HTTP 404, with xAI's REST error body `{code, error}` (the shapes
 *   are UNCONFIRMED for this endpoint). No `?model=` means `grok-voice-latest`; `OpenAI-Beta` is ignored.
 * - `session.created`, then `conversation.created`. The session is xAI's flat object (realtime-protocol.ts
 *   `XaiSessionConfig`: `voice` and `turn_detection` on the session, `audio.{input,output}.format`,
 *   `audio.input.transcription.{model,language_hint,keyterms}`, tools incl. web_search/x_search/file_search/mcp),
 *   validated strictly: a GA field (`type`, `output_modalities`, `tool_choice`, `create_response`, semantic_vad, a voice
 *   outside eve/ara/rex/sal/leo...) is an error (the live service was seen to ignore unknown fields: stricter on
 *   purpose). The transcription `model` is `grok-transcribe` only (the one documented; another is refused, UNCONFIRMED).
 * - Client events: only XAI_CLIENT_EVENT_TYPES. `conversation.item.retrieve` ("Not supported"), `session.close`... are
 *   refused with error type `invalid_event` (wording UNCONFIRMED). `input_audio_buffer.commit` only with
 *   `turn_detection: {type: null}` (as documented). `response.create` takes `modalities`, `instructions`, `metadata`
 *   only. Items use xAI's parts (`text` for assistant text, `input_text` / `input_audio` for the caller).
 * - `force_message` (the schema's shape: `type`, `role: 'assistant'`, one `output_text` part, optional
 *   `interruptible`; nothing else) makes the server speak its text as a whole response (response.created ...
 *   response.done, trigger `force_message`). With `interruptible: false` "caller audio is dropped until playback
 *   completes": appended audio is neither buffered nor heard by the VAD (no speech_started, no barge-in, nothing to
 *   commit) until that response is done (UNCONFIRMED: when xAI deems playback complete).
 * - `conversation.item.truncate` (the API reference's; an older guide said "Not supported"): the GA rules, but the
 *   item keeps its transcript up to the cut (cut in proportion at a word boundary, UNCONFIRMED) and
 *   `conversation.item.truncated` carries it as `transcript` (xAI extension).
 * - Server events: no `conversation.item.done`, no `rate_limits.updated`, no transcription deltas: one
 *   `conversation.item.input_audio_transcription.completed` per caller turn (always: no transcription config is
 *   needed), preceded with model `grok-transcribe` by cumulative `...transcription.updated` events (sent after the turn
 *   here; live they come while the caller speaks); assistant parts are `audio` / `text`; `response.status_details` of
 *   a created or completed response is the string "unimplemented" (as measured by third parties). server_vad always
 *   answers and interrupts; its threshold (0.1–0.9, default 0.85) drives the energy VAD scaled so 0.85 acts like GA's
 *   0.5.
 * - Errors: types from xAI's enum (`invalid_request_error`, `invalid_event`, `internal_error` for faults) and `code`
 *   equal to the type ("Error code string (same as type)"; the schema's own example shows `invalid_audio_format`
 *   instead, so UNCONFIRMED), `param` naming the field; the emulator's limits keep code `unsupported_by_emulator`, and
 *   an injected `error` fault is sent as written. Messages are GA's except where xAI's are known: "Cancellation
 *   failed: no active response found" (seen live, via pipecat). A `response.create` or `force_message` during a
 *   response gets GA's "Conversation already has an active response in progress: ..." (xAI's wording UNCONFIRMED).
 *
 * Not implemented (UNCONFIRMED or out of scope): transcription-only (`?intent=transcription`) and `?call_id=` sessions
 * (closed 4000 with code `unsupported_by_emulator`), idle_timeout_ms / input_audio_buffer.timeout_triggered,
 * MCP tools, images, response.input used as model context. Error codes for an unknown item id
 * (`invalid_value`, param item_id) and for truncating a non-audio item (code null, "Only model output audio
 * messages can be truncated") are best guesses.
 */
import { createServer as createHttpServer, type IncomingHttpHeaders, type IncomingMessage, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import {
  ChangeWaiters,
  closeServer,
  isRecord,
  listenOnLoopback,
  randomId,
  silentLogger,
  TimerSet,
  tone,
  defaultOpenAiErrorBody,
  redactKey,
  type JsonValue,
  type WaitOptions,
} from './common.js';
import { bytesPerMs, decodeAudio, encodeAudio, EnergyVad, formatRate, type VadSettings } from './realtime-audio.js';
import {
  applySessionUpdate,
  applyXaiSessionUpdate,
  defaultSession,
  defaultXaiSession,
  invalidValue,
  missingParameter,
  parseItem,
  parseItemIdEvent,
  parseResponseParams,
  parseTruncate,
  parseXaiItem,
  parseXaiResponseParams,
  readEventKeys,
  readString,
  REALTIME_CLIENT_EVENT_TYPES,
  RealtimeWireError,
  XAI_CLIENT_EVENT_TYPES,
  xaiEngineSession,
  type RealtimeAudioFormat,
  type RealtimeClientEventType,
  type RealtimeContentPart,
  type RealtimeDialect,
  type RealtimeItem,
  type RealtimeItemInput,
  type RealtimeResponseParams,
  type RealtimeSessionConfig,
  type XaiSessionConfig,
} from './realtime-protocol.js';

export type {
  RealtimeAudioFormat,
  RealtimeContentPart,
  RealtimeDialect,
  RealtimeItem,
  RealtimeSessionConfig,
  RealtimeTurnDetection,
  XaiSessionConfig,
} from './realtime-protocol.js';

// ---- public types ------------------------------------------------------------------------------------------------

export interface ScriptedFunctionCall {
  readonly name: string;
  /** JSON string, streamed as function_call_arguments deltas. */
  readonly arguments: string;
  /** Default: a random `call_...`. */
  readonly callId?: string;
}

/** One scripted model response. */
export interface ScriptedReply {
  /** What the model "says": output_audio_transcript deltas (or output_text for text modality). '' = no message item. */
  readonly transcript: string;
  /** 24 kHz mono PCM; converted to the response's output format. */
  readonly audio?: Int16Array;
  /** Length of the 440 Hz tone used when `audio` is absent (default: 60 ms per character, 300..4000 ms). */
  readonly audioMs?: number;
  /** Adds a function_call output item after the message (or alone when `transcript` is ''). */
  readonly functionCall?: ScriptedFunctionCall;
  /** More function_call items in the same response (parallel tool calls), after `functionCall`. */
  readonly functionCalls?: readonly ScriptedFunctionCall[];
  /** Delay before `response.created` (default 0). The response counts as active from the start. */
  readonly delayMs?: number;
}

export interface RealtimeUserTurn {
  /** 0-based count of committed user audio turns on this connection. */
  readonly index: number;
  readonly itemId: string;
  /** Length of the committed audio. */
  readonly audioMs: number;
  /** The transcript `script.transcribe` produced (sent as the input transcription when that is configured). */
  readonly transcriptHint?: string;
  readonly connection: RealtimeEmulatorConnection;
}

/** `force_message`: xAI's server-spoken item (xAI mode). */
export type RealtimeResponseTrigger = 'greeting' | 'user_audio' | 'user_text' | 'tool_output' | 'response_create' | 'force_message';

export interface RealtimeResponseRequest {
  readonly trigger: RealtimeResponseTrigger;
  /** 0-based index of this response on the connection. */
  readonly responseIndex: number;
  /** `response.create` `response.instructions`, if any. */
  readonly instructions?: string;
  /** The newest item added since the previous response (what triggered this one), if any. */
  readonly lastItem?: RealtimeItem;
  readonly connection: RealtimeEmulatorConnection;
}

/**
 * Decides what the model answers. For each response the hook for its trigger runs first (`greeting` for a
 * `response.create` with no new input before any other response; `onUserTurn` for committed audio; `onUserText`
 * for a user `input_text` message; `onToolOutput` for a `function_call_output`); if it is absent or returns
 * undefined, `onResponseCreate` runs; then `defaultReply`; then the built-in "I heard you." with a 1 s tone.
 */
export interface RealtimeScript {
  readonly greeting?: ScriptedReply;
  readonly onUserTurn?: (turn: RealtimeUserTurn) => ScriptedReply | undefined;
  readonly onUserText?: (text: string, connection: RealtimeEmulatorConnection) => ScriptedReply | undefined;
  readonly onToolOutput?: (callId: string, output: string, connection: RealtimeEmulatorConnection) => ScriptedReply | undefined;
  readonly onResponseCreate?: (request: RealtimeResponseRequest) => ScriptedReply | undefined;
  /** Transcript of a committed user turn (default `Caller turn <index + 1>.`). */
  readonly transcribe?: (turn: { readonly index: number; readonly itemId: string; readonly audioMs: number }) => string;
  readonly defaultReply?: ScriptedReply;
}

export type RealtimeFaultAction =
  /** An `error` event (not fatal by itself, like the real server). */
  | { readonly type: 'error'; readonly code: string | null; readonly message?: string; readonly errorType?: string; readonly param?: string | null }
  /** A WebSocket close frame. */
  | { readonly type: 'close'; readonly code: number; readonly reason?: string }
  /** Drop the TCP connection without a close frame. */
  | { readonly type: 'terminate' }
  /** Send nothing more (no events, no pongs, no pings); client events are still recorded. */
  | { readonly type: 'stall' }
  /** End the active response with response.done status `failed` (server_error), if one is active. */
  | { readonly type: 'fail_response'; readonly message?: string }
  /** Cancel the active response, if any, as a barge-in (`turn_detected`, default) or `response.cancel` does. */
  | { readonly type: 'cancel_response'; readonly reason?: 'turn_detected' | 'client_cancelled' };

export type RealtimeFaultTrigger =
  /** When armed (for queued plans: right after the upgrade, before session.created). */
  | { readonly on: 'now' }
  /** After `count` more server events were sent (count 1 on a new connection = right after session.created). */
  | { readonly on: 'server_events'; readonly count: number }
  /** After the `count`-th (default 1) client event of `type` from now was handled. */
  | { readonly on: 'client_event'; readonly type: string; readonly count?: number }
  /** Right after audio delta number `chunk` (1-based, default 1) of response number `response` (1-based). */
  | { readonly on: 'response_audio'; readonly response: number; readonly chunk?: number }
  /** Right after function_call_arguments.delta number `delta` (1-based over the response, default 1) of response `response`. */
  | { readonly on: 'function_call_arguments'; readonly response: number; readonly delta?: number };

export interface RealtimeFault {
  readonly action: RealtimeFaultAction;
  /** Default: now. */
  readonly when?: RealtimeFaultTrigger;
}

export interface RealtimeConnectionFaults {
  /** Answer the upgrade request with this HTTP status instead of 101 (default bodies for 401/429/500/503). */
  readonly rejectUpgrade?: { readonly status: number; readonly body?: JsonValue; readonly headers?: Readonly<Record<string, string>> };
  /** Faults armed on the accepted connection. */
  readonly faults?: readonly RealtimeFault[];
  /** Number of consecutive connection attempts this plan applies to (default 1; Infinity for all). */
  readonly connections?: number;
}

export interface RealtimeEmulatorTiming {
  /** Audio per output_audio.delta (default 100 ms). */
  readonly audioChunkMs?: number;
  /** Pause between response steps (audio chunks, argument deltas) (default 15 ms: faster than real time). */
  readonly chunkIntervalMs?: number;
  /** Delay of input transcription after the commit (default 30 ms). */
  readonly transcriptionDelayMs?: number;
  /** Delay of rate_limits.updated after response.done (default 5 ms). */
  readonly rateLimitsDelayMs?: number;
  /** Server PING interval (default 20000 ms). */
  readonly pingIntervalMs?: number;
}

export interface OpenAiRealtimeEmulatorOptions {
  readonly apiKey: string;
  /** `xai`: xAI's Grok Voice Agent API (see the header). Default `openai`. */
  readonly dialect?: RealtimeDialect;
  /** Serve wss:// with a fresh self-signed certificate (needed by the openai SDK). Default false (ws://). */
  readonly tls?: boolean;
  readonly script?: RealtimeScript;
  /** Plans for the first connection attempts, in order (see queueConnectionFaults). */
  readonly faults?: readonly RealtimeConnectionFaults[];
  readonly logger?: Logger;
  /** Which `?model=` values exist (default: gpt-realtime*, gpt-audio*, gpt-4o*-realtime-preview*; xAI: grok-voice-*). */
  readonly acceptModel?: (model: string) => boolean;
  /**
   * Input transcription models refused like an unknown one (`invalid_value` on `session.audio.input.transcription.model`,
   * the whole update dropped), e.g. `['whisper-1']` for after OpenAI shuts it down (2027-02-26). Default none.
   */
  readonly refusedTranscriptionModels?: readonly string[];
  readonly timing?: RealtimeEmulatorTiming;
  readonly vad?: VadSettings;
}

export type RealtimeServerEvent = { readonly type: string; readonly event_id: string } & { readonly [key: string]: unknown };

export interface RealtimeTruncationRecord {
  readonly itemId: string;
  readonly contentIndex: number;
  readonly audioEndMs: number;
  /** Audio the emulator had sent for the item when the truncate arrived. */
  readonly audioSentMs: number;
}

export interface RealtimeResponseRecord {
  readonly id: string;
  readonly index: number;
  readonly trigger: RealtimeResponseTrigger;
  readonly status: 'in_progress' | 'completed' | 'cancelled' | 'failed';
  readonly cancelReason?: 'turn_detected' | 'client_cancelled';
  readonly reply: ScriptedReply;
  readonly instructions?: string;
  readonly outputFormat: RealtimeAudioFormat;
  readonly modality: 'audio' | 'text';
  readonly messageItemId?: string;
  /** The first function call of the response. */
  readonly functionCallItemId?: string;
  readonly callId?: string;
  /** Every function call of the response, in order. */
  readonly callIds: readonly string[];
  /** Audio sent so far (ms) and number of output_audio.delta events. */
  readonly audioMs: number;
  readonly audioChunks: number;
}

export interface RealtimeInputChunk {
  readonly format: RealtimeAudioFormat;
  readonly samples: Int16Array;
  /** Audio clock (ms since the first append) at the chunk start. */
  readonly atMs: number;
}

export interface RealtimeUpgradeRecord {
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  /** 101, or the status the upgrade was rejected with. */
  readonly status: number;
}

export interface RealtimeEmulatorConnection {
  readonly index: number;
  readonly dialect: RealtimeDialect;
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  readonly headers: IncomingHttpHeaders;
  readonly model: string | null;
  /** Passed the handshake checks (key, beta header, model) and got session.created. */
  readonly accepted: boolean;
  /** Every JSON object received, parsed, in order (valid or not). */
  readonly clientEvents: readonly Record<string, unknown>[];
  /** Frames that were binary or not a JSON object. */
  readonly invalidFrames: number;
  readonly serverEvents: readonly RealtimeServerEvent[];
  /** The effective session (GA shape; in xAI mode what the engine runs, see `xaiSession` for xAI's own). */
  readonly session: RealtimeSessionConfig;
  /** xAI mode: the session as xAI reports it (session.created / session.updated); undefined otherwise. */
  readonly xaiSession: XaiSessionConfig | undefined;
  /** The conversation, in order. */
  readonly items: readonly RealtimeItem[];
  readonly truncations: readonly RealtimeTruncationRecord[];
  readonly responses: readonly RealtimeResponseRecord[];
  readonly activeResponse: RealtimeResponseRecord | undefined;
  /** Total input audio received (ms). */
  readonly inputAudioMs: number;
  readonly inputChunks: readonly RealtimeInputChunk[];
  /** Audio sent for an assistant item (after truncation: the truncated length). */
  assistantAudioMs(itemId: string): number;
  readonly stalled: boolean;
  readonly closeInfo: { readonly code: number; readonly reason: string } | null;
  readonly closed: Promise<{ readonly code: number; readonly reason: string }>;
  inject(fault: RealtimeFault): void;
  /** Sends an arbitrary server event (an event_id is added when missing). */
  sendEvent(event: { readonly type: string } & { readonly [key: string]: unknown }): void;
  close(code?: number, reason?: string): void;
  waitForServerEvent(type: string, predicate?: (event: RealtimeServerEvent) => boolean, options?: WaitOptions): Promise<RealtimeServerEvent>;
  waitForClientEvent(
    type: string,
    predicate?: (event: Record<string, unknown>) => boolean,
    options?: WaitOptions,
  ): Promise<Record<string, unknown>>;
}

export interface OpenAiRealtimeEmulator {
  readonly url: string;
  readonly baseUrl: string;
  readonly port: number;
  readonly certificatePem: string | undefined;
  readonly connections: readonly RealtimeEmulatorConnection[];
  readonly upgrades: readonly RealtimeUpgradeRecord[];
  queueConnectionFaults(plan: RealtimeConnectionFaults): void;
  waitFor<T>(probe: () => T | undefined | null | false, options?: WaitOptions): Promise<T>;
  waitForConnection(index?: number, options?: WaitOptions): Promise<RealtimeEmulatorConnection>;
  close(): Promise<void>;
}

// ---- constants -----------------------------------------------------------------------------------------------------

export const DEFAULT_REALTIME_REPLY: ScriptedReply = { transcript: 'I heard you.', audioMs: 1000 };

/** The token limit `rate_limits.updated` reports. */
const RATE_LIMIT_TOKENS = 40000;

const BETA_SHAPE_MESSAGE = 'The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API.';

function defaultAcceptModel(model: string): boolean {
  return /^(gpt-realtime|gpt-audio|gpt-4o(-mini)?-realtime-preview)/.test(model);
}

/** xAI's voice models: grok-voice-latest, grok-voice-think-fast-1.0 / -2.0, grok-voice-fast-1.0 (deprecated). */
function defaultAcceptXaiModel(model: string): boolean {
  return /^grok-voice-/.test(model);
}

const XAI_DEFAULT_MODEL = 'grok-voice-latest';
const XAI_SUBPROTOCOL = 'xai-client-secret.';

const HTTP_STATUS_TEXT: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  426: 'Upgrade Required',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
};

function writeRawHttp(socket: Duplex, status: number, body: JsonValue, headers: Readonly<Record<string, string>> = {}): void {
  const text = JSON.stringify(body);
  const lines = [
    `HTTP/1.1 ${String(status)} ${HTTP_STATUS_TEXT[status] ?? 'Error'}`,
    'Content-Type: application/json',
    `Content-Length: ${String(Buffer.byteLength(text))}`,
    'Connection: close',
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
  ];
  socket.end(`${lines.join('\r\n')}\r\n\r\n${text}`);
}

function isClientEventType(type: string): type is RealtimeClientEventType {
  return (REALTIME_CLIENT_EVENT_TYPES as readonly string[]).includes(type);
}

/** xAI mode: the key (Bearer, or the browser subprotocol) and the model are checked at the upgrade. */
function xaiUpgradeRefusal(headers: IncomingHttpHeaders, url: URL, settings: Settings): { status: number; body: JsonValue } | undefined {
  const bearer = typeof headers.authorization === 'string' ? /^Bearer\s+(.+)$/i.exec(headers.authorization.trim())?.[1] : undefined;
  const protocols = typeof headers['sec-websocket-protocol'] === 'string' ? headers['sec-websocket-protocol'].split(',').map((p) => p.trim()) : [];
  const key = bearer ?? protocols.find((p) => p.startsWith(XAI_SUBPROTOCOL))?.slice(XAI_SUBPROTOCOL.length);
  if (key === undefined) return { status: 401, body: { code: 'Unauthenticated', error: 'No API key provided. Please provide an API key in the Authorization header.' } };
  if (key !== settings.apiKey) {
    return { status: 401, body: { code: 'Unauthenticated', error: `Incorrect API key provided: ${redactKey(key)}. You can obtain an API key from https://console.x.ai.` } };
  }
  const model = url.searchParams.get('model') ?? XAI_DEFAULT_MODEL;
  if (!settings.acceptModel(model)) {
    return { status: 404, body: { code: 'Some requested entity was not found', error: `The model ${model} does not exist or your team does not have access to it.` } };
  }
  return undefined;
}

/** The emulator's code for what it cannot run although the provider accepts it (kept as is in xAI mode). */
const UNSUPPORTED_BY_EMULATOR = 'unsupported_by_emulator';

/** The words of `text` spoken in the first `heardMs` of `totalMs` of audio: cut in proportion, back to a word boundary. */
function transcriptUpTo(text: string, heardMs: number, totalMs: number): string {
  if (heardMs <= 0 || totalMs <= 0) return '';
  if (heardMs >= totalMs) return text;
  const cut = Math.floor((text.length * heardMs) / totalMs);
  if (/\s/.test(text[cut] ?? '')) return text.slice(0, cut).trimEnd();
  const space = text.lastIndexOf(' ', cut);
  return space <= 0 ? '' : text.slice(0, space).trimEnd();
}

function splitWords(text: string): string[] {
  const words = text.match(/\S+\s*/g) ?? [];
  const lead = text.match(/^\s+/)?.[0] ?? '';
  if (words.length > 0 && lead !== '') words[0] = lead + (words[0] as string);
  return words;
}

function splitArguments(args: string): string[] {
  if (args.length === 0) return [];
  const pieces = Math.min(3, args.length);
  const size = Math.ceil(args.length / pieces);
  const out: string[] = [];
  for (let i = 0; i < args.length; i += size) out.push(args.slice(i, i + size));
  return out;
}

function replyAudio(reply: ScriptedReply): Int16Array {
  if (reply.audio !== undefined) return reply.audio;
  const ms = reply.audioMs ?? Math.min(4000, Math.max(300, reply.transcript.length * 60));
  return tone(ms, 24000);
}

// ---- connection ----------------------------------------------------------------------------------------------------

interface Settings {
  readonly dialect: RealtimeDialect;
  readonly apiKey: string;
  readonly script: RealtimeScript;
  readonly logger: Logger;
  readonly acceptModel: (model: string) => boolean;
  readonly refusedTranscriptionModels: readonly string[];
  readonly audioChunkMs: number;
  readonly chunkIntervalMs: number;
  readonly transcriptionDelayMs: number;
  readonly rateLimitsDelayMs: number;
  readonly pingIntervalMs: number;
  readonly vad: VadSettings;
}

interface ArmedFault {
  readonly fault: RealtimeFault;
  remaining: number;
}

interface ItemState {
  item: RealtimeItem;
  /** Assistant audio sent for the item (ms). */
  audioMs: number;
  /** Part of the default conversation (false for out-of-band response items). */
  inConversation: boolean;
  /** Its audio was truncated: the transcript is gone. */
  truncated?: boolean;
}

type MutableResponseRecord = { -readonly [K in keyof RealtimeResponseRecord]: RealtimeResponseRecord[K] };

class Connection implements RealtimeEmulatorConnection {
  readonly clientEvents: Record<string, unknown>[] = [];
  readonly serverEvents: RealtimeServerEvent[] = [];
  readonly truncations: RealtimeTruncationRecord[] = [];
  readonly inputChunks: RealtimeInputChunk[] = [];
  readonly closed: Promise<{ readonly code: number; readonly reason: string }>;
  readonly model: string | null;
  invalidFrames = 0;
  accepted = false;
  stalled = false;
  closeInfo: { readonly code: number; readonly reason: string } | null = null;
  session: RealtimeSessionConfig;
  xaiSession: XaiSessionConfig | undefined;
  readonly dialect: RealtimeDialect;

  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  readonly headers: IncomingHttpHeaders;
  readonly #ws: WebSocket;
  readonly #settings: Settings;
  readonly #waiters: ChangeWaiters;
  readonly #timers = new TimerSet();
  readonly #faults: ArmedFault[] = [];
  readonly #items: ItemState[] = [];
  readonly #responses: MutableResponseRecord[] = [];
  readonly #conversationId = randomId('conv');
  readonly #vad: EnergyVad;
  #active: ResponseRun | undefined;
  /** Items added since the last response started (decides the next response's trigger). */
  #pendingInputs: ItemState[] = [];
  #inputMs = 0;
  #bufferStartMs = 0;
  #carryByte: number | undefined;
  #speechItemId: string | undefined;
  #speechStartMs = 0;
  #userTurns = 0;
  #conversationResponses = 0;
  #terminated = false;
  readonly #userTurnByItem = new Map<string, RealtimeUserTurn>();

  constructor(
    readonly index: number,
    ws: WebSocket,
    request: IncomingMessage,
    url: URL,
    settings: Settings,
    waiters: ChangeWaiters,
  ) {
    this.#ws = ws;
    this.#settings = settings;
    this.#waiters = waiters;
    this.#vad = new EnergyVad(settings.vad);
    this.path = url.pathname;
    this.query = Object.fromEntries(url.searchParams.entries());
    this.headers = request.headers;
    this.dialect = settings.dialect;
    const model = url.searchParams.get('model');
    this.model = model ?? (this.dialect === 'xai' ? XAI_DEFAULT_MODEL : null);
    this.session = defaultSession(randomId('sess'), this.model ?? '', Math.floor(Date.now() / 1000) + 3600);
    if (this.dialect === 'xai') {
      this.xaiSession = defaultXaiSession(this.session.id, this.model ?? XAI_DEFAULT_MODEL);
      this.session = xaiEngineSession(this.xaiSession, this.session);
    }
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString('utf8') };
        this.#shutdown();
        resolve(this.closeInfo);
        this.#notify();
      });
    });
    ws.on('error', (error) => this.#settings.logger.debug({ err: error.message }, 'realtime emulator socket error'));
    ws.on('ping', (data) => {
      if (!this.stalled && !this.#terminated) ws.pong(data);
    });
    ws.on('message', (data, isBinary) => this.#onMessage(data, isBinary));
  }

  #notify(): void {
    this.#waiters.notify();
  }

  get items(): readonly RealtimeItem[] {
    return this.#items.filter((state) => state.inConversation).map((state) => state.item);
  }

  get responses(): readonly RealtimeResponseRecord[] {
    return this.#responses;
  }

  get activeResponse(): RealtimeResponseRecord | undefined {
    return this.#active?.record;
  }

  get inputAudioMs(): number {
    return this.#inputMs;
  }

  assistantAudioMs(itemId: string): number {
    return this.#items.find((state) => state.item.id === itemId)?.audioMs ?? 0;
  }

  // ---- lifecycle ----

  start(plan: RealtimeConnectionFaults | undefined): void {
    for (const fault of plan?.faults ?? []) this.#arm(fault);
    if (this.#terminated) return;
    // xAI mode: key and model were checked at the upgrade.
    const rejection = this.dialect === 'xai' ? undefined : this.#handshakeProblem();
    if (rejection !== undefined) {
      this.#sendError(rejection.code, rejection.message, null, null);
      this.close(rejection.closeCode, rejection.reason);
      return;
    }
    this.accepted = true;
    if (this.xaiSession !== undefined) {
      this.#send({ type: 'session.created', session: this.xaiSession });
      this.#send({ type: 'conversation.created', conversation: { id: this.#conversationId, object: 'realtime.conversation' } });
    } else {
      this.#send({ type: 'session.created', session: this.session });
    }
    this.#timers.every(this.#settings.pingIntervalMs, () => {
      if (!this.stalled && !this.#terminated) this.#ws.ping();
    });
  }

  #handshakeProblem(): { code: string | null; message: string; closeCode: number; reason: string } | undefined {
    const key = this.#presentedKey();
    if (key === undefined) {
      return {
        code: null,
        message: 'Missing bearer or basic authentication in header',
        closeCode: 3000,
        reason: 'invalid_request_error',
      };
    }
    if (key !== this.#settings.apiKey) {
      return {
        code: 'invalid_api_key',
        message: `Incorrect API key provided: ${redactKey(key)}. You can find your API key at https://platform.openai.com/account/api-keys.`,
        closeCode: 3000,
        reason: 'invalid_request_error.invalid_api_key',
      };
    }
    if (this.headers['openai-beta'] !== undefined) {
      return { code: 'beta_api_shape_disabled', message: BETA_SHAPE_MESSAGE, closeCode: 4000, reason: 'invalid_request_error.beta_api_shape_disabled' };
    }
    if (this.model === null) {
      if (this.query.intent !== undefined || this.query.call_id !== undefined) {
        return {
          code: 'unsupported_by_emulator',
          message: 'The stsgate emulator only implements model sessions (?model=...).',
          closeCode: 4000,
          reason: 'invalid_request_error.unsupported_by_emulator',
        };
      }
      return { code: 'missing_model', message: "Missing required parameter: 'model'.", closeCode: 4000, reason: 'invalid_request_error.missing_model' };
    }
    if (!this.#settings.acceptModel(this.model)) {
      return {
        code: 'invalid_model',
        message: `The model '${this.model}' does not exist or you do not have access to it.`,
        closeCode: 4000,
        reason: 'invalid_request_error.invalid_model',
      };
    }
    return undefined;
  }

  #presentedKey(): string | undefined {
    const header = this.headers.authorization;
    if (typeof header === 'string') {
      const match = /^Bearer\s+(.+)$/i.exec(header.trim());
      if (match !== null) return match[1];
      return undefined;
    }
    const protocols = this.headers['sec-websocket-protocol'];
    if (typeof protocols === 'string') {
      for (const protocol of protocols.split(',').map((entry) => entry.trim())) {
        if (protocol.startsWith('openai-insecure-api-key.')) return protocol.slice('openai-insecure-api-key.'.length);
      }
    }
    return undefined;
  }

  close(code = 1000, reason = ''): void {
    if (this.#terminated) return;
    this.#terminated = true;
    this.#shutdown();
    this.#ws.close(code, reason);
  }

  terminate(): void {
    this.#terminated = true;
    this.#shutdown();
    this.#ws.terminate();
  }

  #shutdown(): void {
    this.#timers.clear();
    this.#active?.stop();
    this.#active = undefined;
  }

  // ---- faults ----

  inject(fault: RealtimeFault): void {
    this.#arm(fault);
    this.#notify();
  }

  #arm(fault: RealtimeFault): void {
    const when = fault.when ?? { on: 'now' };
    switch (when.on) {
      case 'now':
        this.#fire(fault.action);
        return;
      case 'server_events':
        this.#faults.push({ fault, remaining: when.count });
        return;
      case 'client_event':
        this.#faults.push({ fault, remaining: when.count ?? 1 });
        return;
      case 'response_audio':
      case 'function_call_arguments':
        this.#faults.push({ fault, remaining: 1 });
        return;
      default: {
        const exhaustive: never = when;
        throw new Error(`unknown fault trigger ${JSON.stringify(exhaustive)}`);
      }
    }
  }

  #fire(action: RealtimeFaultAction): void {
    if (this.#terminated) return;
    this.#settings.logger.debug({ fault: action.type, connection: this.index }, 'realtime emulator fault');
    switch (action.type) {
      case 'error':
        // As the test wrote it (no xAI code rewrite): a fault may replay an error seen live.
        this.#send({
          type: 'error',
          error: {
            type: action.errorType ?? (this.dialect === 'xai' ? 'internal_error' : 'server_error'),
            code: action.code,
            message: action.message ?? `Injected error ${String(action.code)}`,
            param: action.param ?? null,
            event_id: null,
          },
        });
        return;
      case 'close':
        this.close(action.code, action.reason ?? '');
        return;
      case 'terminate':
        this.terminate();
        return;
      case 'stall':
        this.stalled = true;
        this.#timers.clear();
        this.#active?.stop();
        return;
      case 'fail_response':
        this.#active?.fail(action.message ?? 'The server had an error while processing your request. Sorry about that!');
        return;
      case 'cancel_response':
        this.#active?.cancel(action.reason ?? 'turn_detected');
        return;
      default: {
        const exhaustive: never = action;
        throw new Error(`unknown fault ${JSON.stringify(exhaustive)}`);
      }
    }
  }

  #countFaults(matches: (trigger: RealtimeFaultTrigger) => boolean): void {
    for (const armed of [...this.#faults]) {
      const when = armed.fault.when;
      if (when === undefined || !matches(when)) continue;
      armed.remaining -= 1;
      if (armed.remaining > 0) continue;
      this.#faults.splice(this.#faults.indexOf(armed), 1);
      this.#fire(armed.fault.action);
      if (this.#terminated || this.stalled) return;
    }
  }

  // ---- sending ----

  sendEvent(event: { readonly type: string } & { readonly [key: string]: unknown }): void {
    this.#send(event);
  }

  /** Sends one event; returns whether it was written (false once closed, terminated or stalled). */
  #send(event: { readonly type: string } & { readonly [key: string]: unknown }): boolean {
    if (this.#terminated || this.stalled || this.#ws.readyState !== this.#ws.OPEN) return false;
    const full: RealtimeServerEvent = { event_id: randomId('event'), ...event };
    this.serverEvents.push(full);
    this.#ws.send(JSON.stringify(full));
    this.#settings.logger.debug({ type: full.type, connection: this.index }, 'realtime emulator sent');
    this.#countFaults((when) => when.on === 'server_events');
    this.#notify();
    return true;
  }

  #sendError(code: string | null, message: string, param: string | null, clientEventId: string | null, type = 'invalid_request_error'): void {
    // xAI: "Error code string (same as type)"; the emulator's own limits keep their code, to tell them apart.
    const wireCode = this.dialect === 'xai' && code !== UNSUPPORTED_BY_EMULATOR ? type : code;
    this.#send({ type: 'error', error: { type, code: wireCode, message, param, event_id: clientEventId } });
  }

  /** An item as the server reports it: in xAI mode an assistant's parts are `audio` / `text`. */
  renderItem(item: RealtimeItem): JsonValue {
    if (this.dialect !== 'xai' || item.type !== 'message') return item as unknown as JsonValue;
    const content = item.content.map((part) =>
      part.type === 'output_audio' ? { ...part, type: 'audio' } : part.type === 'output_text' ? { ...part, type: 'text' } : part,
    );
    return { ...item, content } as unknown as JsonValue;
  }

  /** Called by ResponseRun after each audio delta (fault trigger `response_audio`). */
  audioChunkSent(responseIndex: number, chunk: number): void {
    this.#countFaults((when) => when.on === 'response_audio' && when.response === responseIndex + 1 && (when.chunk ?? 1) === chunk);
  }

  /** Called by ResponseRun after each function_call_arguments.delta (fault trigger `function_call_arguments`). */
  argumentsDeltaSent(responseIndex: number, delta: number): void {
    this.#countFaults((when) => when.on === 'function_call_arguments' && when.response === responseIndex + 1 && (when.delta ?? 1) === delta);
  }

  get terminatedOrStalled(): boolean {
    return this.#terminated || this.stalled;
  }

  get timers(): TimerSet {
    return this.#timers;
  }

  get settings(): Settings {
    return this.#settings;
  }

  emit(event: { readonly type: string } & { readonly [key: string]: unknown }): boolean {
    return this.#send(event);
  }

  // ---- receiving ----

  #onMessage(data: RawData, isBinary: boolean): void {
    if (this.#terminated) return;
    const invalidType = this.dialect === 'xai' ? 'invalid_event' : 'invalid_request_error';
    if (isBinary) {
      this.invalidFrames += 1;
      if (!this.stalled) {
        this.#sendError('invalid_event', 'Expected a text WebSocket message; binary frames are not supported.', null, null, invalidType);
      }
      this.#notify();
      return;
    }
    const text = (Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data)).toString('utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      this.invalidFrames += 1;
      if (!this.stalled) {
        const detail = error instanceof Error ? error.message : String(error);
        this.#sendError('invalid_json', `We could not parse the JSON body of your request. (${detail})`, null, null, invalidType);
      }
      this.#notify();
      return;
    }
    if (!isRecord(parsed)) {
      this.invalidFrames += 1;
      if (!this.stalled) this.#sendError('invalid_type', 'Invalid type for event: expected an object.', null, null, invalidType);
      this.#notify();
      return;
    }
    this.clientEvents.push(parsed);
    if (this.stalled || !this.accepted) {
      this.#notify();
      return;
    }
    const eventId = typeof parsed.event_id === 'string' ? parsed.event_id : null;
    try {
      if (parsed.event_id !== undefined) readString(parsed.event_id, 'event_id');
      if (parsed.type === undefined) throw missingParameter('type');
      const type = readString(parsed.type, 'type');
      if (this.dialect === 'xai' && !(XAI_CLIENT_EVENT_TYPES as readonly string[]).includes(type)) {
        // docs.x.ai, "Unsupported Client Events": conversation.item.truncate, conversation.item.retrieve...
        throw new RealtimeWireError('unsupported_event', `Unsupported event type: '${type}'.`, 'type', 'invalid_event');
      }
      if (!isClientEventType(type)) throw invalidValue('type', type, REALTIME_CLIENT_EVENT_TYPES);
      this.#settings.logger.debug({ type, connection: this.index }, 'realtime emulator received');
      this.#dispatch(type, parsed);
    } catch (error) {
      if (!(error instanceof RealtimeWireError)) throw error;
      this.#sendError(error.code, error.message, error.param, eventId, error.errorType);
    }
    const type = parsed.type;
    this.#countFaults((when) => when.on === 'client_event' && when.type === type);
    this.#notify();
  }

  #dispatch(type: RealtimeClientEventType, event: Record<string, unknown>): void {
    switch (type) {
      case 'session.update': {
        readEventKeys(event, ['session']);
        let next: RealtimeSessionConfig;
        if (this.xaiSession !== undefined) {
          const xai = applyXaiSessionUpdate(this.xaiSession, event.session);
          next = xaiEngineSession(xai, this.session);
          this.xaiSession = xai;
        } else {
          next = applySessionUpdate(this.session, event.session, {
            assistantAudioPresent: this.#items.some((state) => state.audioMs > 0),
          });
          const transcriptionModel = next.audio.input.transcription?.model;
          if (transcriptionModel !== undefined && this.#settings.refusedTranscriptionModels.includes(transcriptionModel)) {
            const param = 'session.audio.input.transcription.model';
            throw new RealtimeWireError('invalid_value', `Invalid '${param}': the model '${transcriptionModel}' is not available.`, param);
          }
        }
        if (JSON.stringify(next.audio.input.format) !== JSON.stringify(this.session.audio.input.format)) {
          this.#vad.reset();
          this.#carryByte = undefined;
        }
        this.session = next;
        this.#send({ type: 'session.updated', session: this.xaiSession ?? this.session });
        return;
      }
      case 'session.close':
        readEventKeys(event, []);
        this.close(1000, 'session closed');
        return;
      case 'input_audio_buffer.append':
        this.#append(event);
        return;
      case 'session.input_audio_buffer.append':
        throw new RealtimeWireError(
          'invalid_value',
          "Invalid value: 'session.input_audio_buffer.append'. This event is only supported in translation sessions.",
          'type',
        );
      case 'input_audio_buffer.commit': {
        readEventKeys(event, []);
        if (this.xaiSession !== undefined && this.xaiSession.turn_detection.type !== null) {
          // docs.x.ai: "Only available when turn_detection type is null".
          throw new RealtimeWireError(
            'invalid_value',
            "input_audio_buffer.commit is only available when turn_detection type is null (this session uses 'server_vad').",
            null,
          );
        }
        const bufferMs = this.#inputMs - this.#bufferStartMs;
        if (bufferMs < 100) {
          throw new RealtimeWireError(
            'input_audio_buffer_commit_empty',
            `Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but buffer only has ${bufferMs.toFixed(2)}ms of audio.`,
          );
        }
        const itemId = this.#speechItemId ?? randomId('item');
        this.#speechItemId = undefined;
        this.#vad.reset();
        this.#commit(itemId, bufferMs, this.#inputMs);
        return;
      }
      case 'input_audio_buffer.clear':
        readEventKeys(event, []);
        this.#bufferStartMs = this.#inputMs;
        this.#speechItemId = undefined;
        this.#vad.reset();
        this.#send({ type: 'input_audio_buffer.cleared' });
        return;
      case 'conversation.item.create':
        this.#createItem(event);
        return;
      case 'conversation.item.truncate':
        this.#truncate(event);
        return;
      case 'conversation.item.delete': {
        const itemId = parseItemIdEvent(event);
        const state = this.#findItem(itemId);
        this.#items.splice(this.#items.indexOf(state), 1);
        this.#pendingInputs = this.#pendingInputs.filter((entry) => entry !== state);
        this.#send({ type: 'conversation.item.deleted', item_id: itemId });
        return;
      }
      case 'conversation.item.retrieve': {
        const state = this.#findItem(parseItemIdEvent(event));
        this.#send({ type: 'conversation.item.retrieved', item: state.item });
        return;
      }
      case 'response.create': {
        readEventKeys(event, ['response']);
        const params = this.dialect === 'xai' ? parseXaiResponseParams(event.response) : parseResponseParams(event.response);
        this.#refuseIfActive();
        this.#startResponse(params);
        return;
      }
      case 'response.cancel': {
        const raw = readEventKeys(event, ['response_id']);
        const responseId = raw.response_id === undefined ? undefined : readString(raw.response_id, 'response_id');
        if (this.#active === undefined || (responseId !== undefined && responseId !== this.#active.record.id)) {
          throw new RealtimeWireError('response_cancel_not_active', 'Cancellation failed: no active response found');
        }
        this.#active.cancel('client_cancelled');
        return;
      }
      default: {
        const exhaustive: never = type;
        throw invalidValue('type', exhaustive, REALTIME_CLIENT_EVENT_TYPES);
      }
    }
  }

  #refuseIfActive(): void {
    if (this.#active === undefined) return;
    throw new RealtimeWireError(
      'conversation_already_has_active_response',
      `Conversation already has an active response in progress: ${this.#active.record.id}. Wait until the response is finished before creating a new one.`,
    );
  }

  #findItem(itemId: string): ItemState {
    const state = this.#items.find((entry) => entry.item.id === itemId && entry.inConversation);
    if (state === undefined) {
      throw new RealtimeWireError('invalid_value', `Invalid 'item_id': no item with id '${itemId}' exists in the conversation.`, 'item_id');
    }
    return state;
  }

  // ---- input audio ----

  #append(event: Record<string, unknown>): void {
    const raw = readEventKeys(event, ['audio']);
    if (raw.audio === undefined) throw missingParameter('audio');
    const audio = readString(raw.audio, 'audio');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(audio) || audio.length % 4 === 1) {
      throw new RealtimeWireError('invalid_value', "Invalid 'audio': expected base64-encoded audio bytes.", 'audio');
    }
    const format = this.session.audio.input.format;
    let bytes: Uint8Array = Buffer.from(audio, 'base64');
    if (format.type === 'audio/pcm') {
      if (this.#carryByte !== undefined) bytes = Buffer.concat([Buffer.of(this.#carryByte), bytes]);
      this.#carryByte = bytes.length % 2 === 1 ? bytes[bytes.length - 1] : undefined;
      if (this.#carryByte !== undefined) bytes = bytes.subarray(0, bytes.length - 1);
    }
    const samples = decodeAudio(bytes, format);
    const rate = formatRate(format);
    const startMs = this.#inputMs;
    this.#inputMs += (samples.length * 1000) / rate;
    this.inputChunks.push({ format, samples, atMs: startMs });
    if (this.#active?.interruptible === false) {
      // xAI's force_message with `interruptible: false`: "caller audio is dropped until playback completes" (here:
      // until its response is done; UNCONFIRMED). Neither buffered nor heard by the VAD.
      this.#bufferStartMs = this.#inputMs;
      this.#speechItemId = undefined;
      this.#vad.reset();
      return;
    }
    const detection = this.session.audio.input.turn_detection;
    if (detection === null) return;
    for (const vadEvent of this.#vad.process(samples, rate, this.#inputMs, detection)) {
      if (this.terminatedOrStalled) return;
      if (vadEvent.kind === 'start') this.#speechStarted(vadEvent.atMs);
      else this.#speechStopped(vadEvent.atMs);
    }
  }

  #speechStarted(atMs: number): void {
    const detection = this.session.audio.input.turn_detection;
    const padding = detection?.type === 'server_vad' ? detection.prefix_padding_ms : 300;
    const itemId = randomId('item');
    this.#speechItemId = itemId;
    this.#speechStartMs = Math.max(Math.round(this.#bufferStartMs), atMs - padding);
    this.#send({ type: 'input_audio_buffer.speech_started', audio_start_ms: this.#speechStartMs, item_id: itemId });
    if (this.#active !== undefined && detection?.interrupt_response === true && this.#active.inConversation) {
      this.#active.cancel('turn_detected');
    }
  }

  #speechStopped(atMs: number): void {
    const itemId = this.#speechItemId ?? randomId('item');
    this.#speechItemId = undefined;
    if (!this.#send({ type: 'input_audio_buffer.speech_stopped', audio_end_ms: atMs, item_id: itemId })) return;
    const turn = this.#commit(itemId, atMs - this.#speechStartMs, atMs);
    if (turn === undefined) return;
    const detection = this.session.audio.input.turn_detection;
    if (detection?.create_response === true && this.#active === undefined) this.#startResponse({ conversation: 'auto', metadata: null });
  }

  /** Commits the buffer up to `endMs` as a user audio item; returns the turn. */
  #commit(itemId: string, audioMs: number, endMs: number): RealtimeUserTurn | undefined {
    const previous = this.#lastConversationItemId();
    this.#bufferStartMs = endMs;
    if (!this.#send({ type: 'input_audio_buffer.committed', item_id: itemId, previous_item_id: previous })) return undefined;
    const index = this.#userTurns++;
    const transcript =
      this.#settings.script.transcribe?.({ index, itemId, audioMs: Math.round(audioMs) }) ?? `Caller turn ${String(index + 1)}.`;
    const item: RealtimeItem = {
      id: itemId,
      object: 'realtime.item',
      type: 'message',
      status: 'completed',
      role: 'user',
      content: [{ type: 'input_audio', transcript: null }],
    };
    const state: ItemState = { item, audioMs: 0, inConversation: true };
    this.#items.push(state);
    this.#pendingInputs.push(state);
    const turn: RealtimeUserTurn = { index, itemId, audioMs: Math.round(audioMs), transcriptHint: transcript, connection: this };
    this.#userTurnByItem.set(itemId, turn);
    this.#sendItemAdded(previous, item);
    if (this.session.audio.input.transcription !== null) this.#scheduleTranscription(state, transcript, audioMs);
    return turn;
  }

  /** conversation.item.added, and GA's conversation.item.done (xAI: "Not emitted"). */
  #sendItemAdded(previous: string | null, item: RealtimeItem): void {
    this.#send({ type: 'conversation.item.added', previous_item_id: previous, item: this.renderItem(item) });
    if (this.dialect !== 'xai') this.#send({ type: 'conversation.item.done', previous_item_id: previous, item });
  }

  #scheduleTranscription(state: ItemState, transcript: string, audioMs: number): void {
    const model = this.session.audio.input.transcription?.model ?? 'whisper-1';
    const itemId = state.item.id;
    if (this.dialect === 'xai') {
      // No transcription deltas; with model grok-transcribe the cumulative `.updated` ones ("Only emitted when
      // audio.input.transcription.model is set to grok-transcribe"), here after the turn (UNCONFIRMED: live, during it).
      const cumulative = this.xaiSession?.audio.input.transcription?.model === 'grok-transcribe';
      this.#timers.after(this.#settings.transcriptionDelayMs, () => {
        if (cumulative) {
          let sofar = '';
          for (const word of splitWords(transcript)) {
            sofar += word;
            const update = { type: 'conversation.item.input_audio_transcription.updated', item_id: itemId, transcript: sofar.trimEnd() };
            if (!this.#send(update)) return;
          }
        }
        if (state.item.type === 'message') state.item = { ...state.item, content: [{ type: 'input_audio', transcript }] };
        this.#send({ type: 'conversation.item.input_audio_transcription.completed', item_id: itemId, transcript });
      });
      return;
    }
    this.#timers.after(this.#settings.transcriptionDelayMs, () => {
      for (const delta of splitWords(transcript)) {
        if (!this.#send({ type: 'conversation.item.input_audio_transcription.delta', item_id: itemId, content_index: 0, delta })) return;
      }
      if (state.item.type === 'message') state.item = { ...state.item, content: [{ type: 'input_audio', transcript }] };
      const words = splitWords(transcript).length;
      const usage =
        model === 'whisper-1'
          ? { type: 'duration', seconds: Math.round(audioMs / 100) / 10 }
          : {
              type: 'tokens',
              input_tokens: Math.ceil(audioMs / 100),
              output_tokens: words,
              total_tokens: Math.ceil(audioMs / 100) + words,
              input_token_details: { text_tokens: 0, audio_tokens: Math.ceil(audioMs / 100) },
            };
      this.#send({
        type: 'conversation.item.input_audio_transcription.completed',
        item_id: itemId,
        content_index: 0,
        transcript,
        usage,
        logprobs: null,
      });
    });
  }

  #lastConversationItemId(): string | null {
    for (let i = this.#items.length - 1; i >= 0; i--) {
      const state = this.#items[i] as ItemState;
      if (state.inConversation) return state.item.id;
    }
    return null;
  }

  // ---- items ----

  #createItem(event: Record<string, unknown>): void {
    const raw = readEventKeys(event, ['item', 'previous_item_id']);
    const parsed = this.dialect === 'xai' ? parseXaiItem(raw.item, 'item') : parseItem(raw.item, 'item');
    if (parsed.type === 'force_message') {
      // The server speaks the text as a whole response; no response.create follows.
      this.#refuseIfActive();
      this.#startResponse({ conversation: 'auto', metadata: null }, { reply: { transcript: parsed.text }, interruptible: parsed.interruptible });
      return;
    }
    const input: RealtimeItemInput = parsed;
    let previous: string | null = this.#lastConversationItemId();
    let insertAt = this.#items.length;
    if (raw.previous_item_id !== undefined) {
      const requested = readString(raw.previous_item_id, 'previous_item_id');
      if (requested === 'root') {
        previous = null;
        insertAt = 0;
      } else {
        const found = this.#items.findIndex((state) => state.item.id === requested && state.inConversation);
        if (found < 0) {
          throw new RealtimeWireError(
            'invalid_value',
            `Invalid 'previous_item_id': no item with id '${requested}' exists in the conversation.`,
            'previous_item_id',
          );
        }
        previous = requested;
        insertAt = found + 1;
      }
    }
    if (input.id !== undefined && this.#items.some((state) => state.item.id === input.id)) {
      throw new RealtimeWireError('invalid_value', `Invalid 'item.id': an item with id '${input.id}' already exists.`, 'item.id');
    }
    if (input.type === 'function_call_output' && !this.#hasCall(input.call_id)) {
      // The SDK types: "the server will check that a function_call item with the same ID exists in the conversation history".
      throw new RealtimeWireError('invalid_tool_call_id', `Tool call ID '${input.call_id}' not found in conversation.`);
    }
    const id = input.id ?? randomId('item');
    let item: RealtimeItem;
    switch (input.type) {
      case 'message':
        item = { id, object: 'realtime.item', type: 'message', status: 'completed', role: input.role, content: input.content };
        break;
      case 'function_call':
        item = {
          id,
          object: 'realtime.item',
          type: 'function_call',
          status: 'completed',
          name: input.name,
          call_id: input.call_id ?? randomId('call'),
          arguments: input.arguments,
        };
        break;
      case 'function_call_output':
        item = { id, object: 'realtime.item', type: 'function_call_output', status: 'completed', call_id: input.call_id, output: input.output };
        break;
      default: {
        const exhaustive: never = input;
        throw new Error(`unknown item ${JSON.stringify(exhaustive)}`);
      }
    }
    const state: ItemState = { item, audioMs: 0, inConversation: true };
    this.#items.splice(insertAt, 0, state);
    this.#pendingInputs.push(state);
    this.#sendItemAdded(previous, item);
  }

  #hasCall(callId: string): boolean {
    return this.#items.some((state) => state.inConversation && state.item.type === 'function_call' && state.item.call_id === callId);
  }

  #truncate(event: Record<string, unknown>): void {
    const params = parseTruncate(event);
    const state = this.#findItem(params.itemId);
    const item = state.item;
    if (item.type !== 'message' || item.role !== 'assistant' || !item.content.some((part) => part.type === 'output_audio') || state.audioMs <= 0) {
      throw new RealtimeWireError(null, 'Only model output audio messages can be truncated');
    }
    const part = item.content[params.contentIndex];
    if (part === undefined) {
      throw new RealtimeWireError(
        'invalid_value',
        `Invalid 'content_index': item '${item.id}' has no content part ${String(params.contentIndex)}.`,
        'content_index',
      );
    }
    const available = Math.round(state.audioMs);
    if (params.audioEndMs > available) {
      throw new RealtimeWireError(null, `Audio content of ${String(available)}ms is already shorter than ${String(params.audioEndMs)}ms`);
    }
    this.truncations.push({ itemId: item.id, contentIndex: params.contentIndex, audioEndMs: params.audioEndMs, audioSentMs: available });
    const xai = this.dialect === 'xai';
    if (part.type === 'output_audio' && params.audioEndMs < available) {
      // GA deletes the server-side transcript, so no text the caller did not hear stays in the context. xAI keeps the
      // transcript "up to the truncation point" (here: cut in proportion, at a word boundary; UNCONFIRMED how xAI cuts).
      const content = item.content.map((entry, index) =>
        index === params.contentIndex && entry.type === 'output_audio'
          ? { ...entry, transcript: xai ? transcriptUpTo(entry.transcript, params.audioEndMs, available) : '' }
          : entry,
      );
      state.item = { ...item, content };
      state.truncated = true;
    }
    state.audioMs = params.audioEndMs;
    const truncated = state.item.type === 'message' ? state.item.content[params.contentIndex] : undefined;
    this.#send({
      type: 'conversation.item.truncated',
      item_id: item.id,
      content_index: params.contentIndex,
      audio_end_ms: params.audioEndMs,
      // xAI extension: "The truncated transcript text (up to the truncation point)".
      ...(xai ? { transcript: truncated?.type === 'output_audio' ? truncated.transcript : '' } : {}),
    });
  }

  // ---- responses ----

  /** `forced`: xAI's force_message (its text is the reply; the conversation input stays pending). */
  #startResponse(params: RealtimeResponseParams, forced?: { readonly reply: ScriptedReply; readonly interruptible: boolean }): void {
    // An out-of-band response (conversation 'none') neither sees nor consumes the new conversation input.
    const outOfBand = params.conversation === 'none';
    const last = outOfBand || forced !== undefined ? undefined : this.#pendingInputs[this.#pendingInputs.length - 1];
    if (!outOfBand && forced === undefined) this.#pendingInputs = [];
    const { trigger, reply } =
      forced === undefined ? this.#chooseReply(last, params, this.#responses.length) : { trigger: 'force_message' as const, reply: forced.reply };
    if (!outOfBand) this.#conversationResponses += 1;
    const responseIndex = this.#responses.length;
    // xAI answers aloud whatever modalities it is asked for.
    const modality = this.dialect === 'xai' ? 'audio' : ((params.outputModalities ?? this.session.output_modalities)[0] ?? 'audio');
    const record: MutableResponseRecord = {
      id: randomId('resp'),
      index: responseIndex,
      trigger,
      status: 'in_progress',
      reply,
      outputFormat: params.outputFormat ?? this.session.audio.output.format,
      modality,
      audioMs: 0,
      audioChunks: 0,
      callIds: [],
      ...(params.instructions === undefined ? {} : { instructions: params.instructions }),
    };
    this.#responses.push(record);
    const run = new ResponseRun(this, record, params, outOfBand ? null : this.#conversationId, forced?.interruptible ?? true);
    this.#active = run;
    run.start(reply.delayMs ?? 0);
  }

  #chooseReply(
    last: ItemState | undefined,
    params: RealtimeResponseParams,
    responseIndex: number,
  ): { trigger: RealtimeResponseTrigger; reply: ScriptedReply } {
    const script = this.#settings.script;
    const first = params.conversation !== 'none' && this.#conversationResponses === 0;
    let trigger: RealtimeResponseTrigger = first ? 'greeting' : 'response_create';
    let reply: ScriptedReply | undefined;
    const item = last?.item;
    if (item?.type === 'function_call_output') {
      trigger = 'tool_output';
      reply = script.onToolOutput?.(item.call_id, item.output, this);
    } else if (item?.type === 'message' && item.role === 'user') {
      const audio = item.content.find((part) => part.type === 'input_audio');
      const turn = this.#userTurnByItem.get(item.id);
      if (audio !== undefined && turn !== undefined) {
        trigger = 'user_audio';
        reply = script.onUserTurn?.(turn);
      } else {
        trigger = 'user_text';
        const text = item.content.map((part) => (part.type === 'input_text' ? part.text : '')).join('');
        reply = script.onUserText?.(text, this);
      }
    } else if (trigger === 'greeting') {
      reply = script.greeting;
    }
    reply ??= script.onResponseCreate?.({
      trigger,
      responseIndex,
      connection: this,
      ...(params.instructions === undefined ? {} : { instructions: params.instructions }),
      ...(item === undefined ? {} : { lastItem: item }),
    });
    return { trigger, reply: reply ?? script.defaultReply ?? DEFAULT_REALTIME_REPLY };
  }

  /** ResponseRun callbacks. */
  addResponseItem(item: RealtimeItem, inConversation: boolean): { previous: string | null; state: ItemState } {
    const previous = this.#lastConversationItemId();
    const state: ItemState = { item, audioMs: 0, inConversation };
    this.#items.push(state);
    return { previous, state };
  }

  responseFinished(run: ResponseRun): void {
    if (this.#active === run) this.#active = undefined;
  }

  waitForServerEvent(type: string, predicate?: (event: RealtimeServerEvent) => boolean, options?: WaitOptions): Promise<RealtimeServerEvent> {
    return this.#waiters.waitFor(
      () => this.serverEvents.find((event) => event.type === type && (predicate?.(event) ?? true)),
      options,
      `server event ${type}`,
    );
  }

  waitForClientEvent(
    type: string,
    predicate?: (event: Record<string, unknown>) => boolean,
    options?: WaitOptions,
  ): Promise<Record<string, unknown>> {
    return this.#waiters.waitFor(
      () => this.clientEvents.find((event) => event.type === type && (predicate?.(event) ?? true)),
      options,
      `client event ${type}`,
    );
  }
}

// ---- one response ----------------------------------------------------------------------------------------------------

type Step = () => void;

class ResponseRun {
  readonly #steps: { readonly wait: boolean; readonly run: Step }[] = [];
  #timer: NodeJS.Timeout | undefined;
  #finished = false;
  #created = false;
  readonly #output: ItemState[] = [];
  /** Open parts that a cancellation must close. */
  #message: { state: ItemState; outputIndex: number; transcriptSent: string; partOpen: boolean } | undefined;
  #functionCall: { state: ItemState; outputIndex: number; argumentsSent: string } | undefined;
  #transcriptDeltas = 0;
  #argumentDeltas = 0;

  constructor(
    private readonly connection: Connection,
    readonly record: MutableResponseRecord,
    private readonly params: RealtimeResponseParams,
    private readonly conversationId: string | null,
    /** False for xAI's `force_message` with `interruptible: false`: speech does not cut it. */
    readonly interruptible: boolean,
  ) {}

  get #xai(): boolean {
    return this.connection.dialect === 'xai';
  }

  get inConversation(): boolean {
    return this.conversationId !== null;
  }

  start(delayMs: number): void {
    this.#plan();
    if (delayMs > 0) this.#timer = this.connection.timers.after(delayMs, () => this.#advance());
    else this.#advance();
  }

  stop(): void {
    this.connection.timers.cancel(this.#timer);
    this.#timer = undefined;
    this.#finished = true;
  }

  // ---- planning ----

  #plan(): void {
    const reply = this.record.reply;
    const text = this.record.modality === 'text';
    this.#steps.push({ wait: false, run: () => this.#sendCreated() });
    const calls = [...(reply.functionCall === undefined ? [] : [reply.functionCall]), ...(reply.functionCalls ?? [])];
    const hasMessage = reply.transcript !== '' || (!text && calls.length === 0);
    if (hasMessage) {
      this.#steps.push({ wait: false, run: () => this.#openMessage() });
      const words = splitWords(reply.transcript);
      if (text) {
        for (const word of words) this.#steps.push({ wait: true, run: () => this.#textDelta(word) });
      } else {
        const bytes = encodeAudio(replyAudio(reply), this.record.outputFormat);
        const chunkBytes = Math.max(1, Math.round(bytesPerMs(this.record.outputFormat) * this.connection.settings.audioChunkMs));
        const chunks: Buffer[] = [];
        for (let offset = 0; offset < bytes.length; offset += chunkBytes) chunks.push(bytes.subarray(offset, offset + chunkBytes));
        // Transcript words spread evenly over the audio chunks, each after its chunk's audio.
        const wordsOf = chunks.map((): string[] => []);
        words.forEach((word, index) => wordsOf[Math.floor((index * chunks.length) / words.length)]?.push(word));
        chunks.forEach((chunk, index) => {
          const chunkWords = wordsOf[index] ?? [];
          this.#steps.push({
            wait: index > 0,
            run: () => {
              this.#audioDelta(chunk);
              for (const word of chunkWords) this.#transcriptDelta(word);
            },
          });
        });
        if (chunks.length === 0 && words.length > 0) {
          this.#steps.push({ wait: false, run: () => words.forEach((word) => this.#transcriptDelta(word)) });
        }
      }
      this.#steps.push({ wait: true, run: () => this.#closeMessage('completed') });
    }
    calls.forEach((call, index) => {
      const callId = call.callId ?? randomId('call');
      this.#steps.push({ wait: hasMessage || index > 0, run: () => this.#openFunctionCall(call.name, callId) });
      for (const piece of splitArguments(call.arguments)) this.#steps.push({ wait: true, run: () => this.#argumentsDelta(piece) });
      this.#steps.push({ wait: true, run: () => this.#closeFunctionCall('completed') });
    });
    this.#steps.push({ wait: false, run: () => this.#done('completed', null) });
  }

  #advance(): void {
    this.#timer = undefined;
    while (!this.#finished && !this.connection.terminatedOrStalled) {
      const step = this.#steps.shift();
      if (step === undefined) return;
      step.run();
      const next = this.#steps[0];
      if (next?.wait === true && !this.#finished) {
        this.#timer = this.connection.timers.after(this.connection.settings.chunkIntervalMs, () => this.#advance());
        return;
      }
    }
  }

  // ---- events ----

  #responseObject(status: string, statusDetails: JsonValue, usage: JsonValue): Record<string, unknown> {
    const format = this.record.outputFormat;
    if (this.#xai) {
      return {
        object: 'realtime.response',
        id: this.record.id,
        status,
        // Measured on xAI by third parties: a bare string where GA has an object or null.
        status_details: statusDetails ?? 'unimplemented',
        output: this.#output.map((state) => this.connection.renderItem(state.item)),
        conversation_id: this.conversationId,
        // Token counts only.
        usage: isRecord(usage) ? { input_tokens: usage.input_tokens, output_tokens: usage.output_tokens, total_tokens: usage.total_tokens } : null,
        metadata: this.params.metadata,
      };
    }
    return {
      object: 'realtime.response',
      id: this.record.id,
      status,
      status_details: statusDetails,
      output: this.#output.map((state) => state.item),
      conversation_id: this.conversationId,
      output_modalities: [this.record.modality],
      max_output_tokens: this.params.maxOutputTokens ?? this.connection.session.max_output_tokens,
      audio: { output: { format, voice: this.params.voice ?? this.connection.session.audio.output.voice } },
      usage,
      metadata: this.params.metadata,
    };
  }

  #sendCreated(): void {
    this.#created = true;
    this.connection.emit({ type: 'response.created', response: this.#responseObject('in_progress', null, null) });
    // The reservation for the output tokens, "emitted at the beginning of a Response" (SDK types).
    const maxTokens = this.params.maxOutputTokens ?? this.connection.session.max_output_tokens;
    this.#rateLimits(RATE_LIMIT_TOKENS - (maxTokens === 'inf' ? 4096 : maxTokens));
  }

  /** GA only (xAI: "rate_limits.updated: Not emitted"). */
  #rateLimits(remaining: number): void {
    if (this.#xai) return;
    this.connection.emit({
      type: 'rate_limits.updated',
      rate_limits: [{ name: 'tokens', limit: RATE_LIMIT_TOKENS, remaining, reset_seconds: 0.3 }],
    });
  }

  #addItem(item: RealtimeItem): ItemState {
    const { previous, state } = this.connection.addResponseItem(item, this.inConversation);
    this.#output.push(state);
    const outputIndex = this.#output.length - 1;
    const wire = this.connection.renderItem(item);
    this.connection.emit({ type: 'response.output_item.added', response_id: this.record.id, output_index: outputIndex, item: wire });
    if (this.inConversation) this.connection.emit({ type: 'conversation.item.added', previous_item_id: previous, item: wire });
    return state;
  }

  #ids(outputIndex: number, itemId: string): Record<string, unknown> {
    return { response_id: this.record.id, item_id: itemId, output_index: outputIndex, content_index: 0 };
  }

  #openMessage(): void {
    const item: RealtimeItem = { id: randomId('item'), object: 'realtime.item', type: 'message', status: 'in_progress', role: 'assistant', content: [] };
    const state = this.#addItem(item);
    this.record.messageItemId = item.id;
    this.#message = { state, outputIndex: this.#output.length - 1, transcriptSent: '', partOpen: true };
    const part = this.record.modality === 'text' ? { type: 'text', text: '' } : { type: 'audio', transcript: '' };
    this.connection.emit({ type: 'response.content_part.added', ...this.#ids(this.#message.outputIndex, item.id), part });
  }

  #audioDelta(chunk: Buffer): void {
    const message = this.#message;
    if (message === undefined) return;
    const ms = chunk.length / bytesPerMs(this.record.outputFormat);
    const sent = this.connection.emit({
      type: 'response.output_audio.delta',
      ...this.#ids(message.outputIndex, message.state.item.id),
      delta: chunk.toString('base64'),
    });
    if (!sent) return;
    message.state.audioMs += ms;
    this.record.audioMs += ms;
    this.record.audioChunks += 1;
    this.connection.audioChunkSent(this.record.index, this.record.audioChunks);
  }

  #transcriptDelta(word: string): void {
    const message = this.#message;
    if (message === undefined || this.#finished) return;
    message.transcriptSent += word;
    this.#transcriptDeltas += 1;
    this.connection.emit({ type: 'response.output_audio_transcript.delta', ...this.#ids(message.outputIndex, message.state.item.id), delta: word });
  }

  #textDelta(word: string): void {
    const message = this.#message;
    if (message === undefined) return;
    message.transcriptSent += word;
    this.connection.emit({ type: 'response.output_text.delta', ...this.#ids(message.outputIndex, message.state.item.id), delta: word });
  }

  #closeMessage(status: 'completed' | 'incomplete'): void {
    const message = this.#message;
    if (message === undefined) return;
    this.#message = undefined;
    const ids = this.#ids(message.outputIndex, message.state.item.id);
    const text = message.transcriptSent;
    let content: RealtimeContentPart;
    if (this.record.modality === 'text') {
      this.connection.emit({ type: 'response.output_text.done', ...ids, text });
      this.connection.emit({ type: 'response.content_part.done', ...ids, part: { type: 'text', text } });
      content = { type: 'output_text', text };
    } else {
      this.connection.emit({ type: 'response.output_audio.done', ...ids });
      this.connection.emit({ type: 'response.output_audio_transcript.done', ...ids, transcript: text });
      this.connection.emit({ type: 'response.content_part.done', ...ids, part: { type: 'audio', transcript: text } });
      content = { type: 'output_audio', transcript: text };
    }
    const previous = message.state.item;
    // A truncate while the message streamed deleted its transcript: it stays deleted.
    const kept: RealtimeContentPart = message.state.truncated === true && content.type === 'output_audio' ? { ...content, transcript: '' } : content;
    const item: RealtimeItem = previous.type === 'message' ? { ...previous, status, content: [kept] } : previous;
    message.state.item = item;
    this.#itemDone(message.state, message.outputIndex, item);
  }

  /** conversation.item.done (GA only: xAI does not emit it), then response.output_item.done. */
  #itemDone(state: ItemState, outputIndex: number, item: RealtimeItem): void {
    if (this.inConversation && !this.#xai) this.connection.emit({ type: 'conversation.item.done', previous_item_id: this.#previousOf(state), item });
    this.connection.emit({ type: 'response.output_item.done', response_id: this.record.id, output_index: outputIndex, item: this.connection.renderItem(item) });
  }

  #previousOf(state: ItemState): string | null {
    const items = this.connection.items;
    const index = items.findIndex((item) => item.id === state.item.id);
    return index > 0 ? (items[index - 1] as RealtimeItem).id : null;
  }

  #openFunctionCall(name: string, callId: string): void {
    const item: RealtimeItem = {
      id: randomId('item'),
      object: 'realtime.item',
      type: 'function_call',
      status: 'in_progress',
      name,
      call_id: callId,
      arguments: '',
    };
    const state = this.#addItem(item);
    this.record.functionCallItemId ??= item.id;
    this.record.callId ??= callId;
    this.record.callIds = [...this.record.callIds, callId];
    this.#functionCall = { state, outputIndex: this.#output.length - 1, argumentsSent: '' };
  }

  #argumentsDelta(piece: string): void {
    const call = this.#functionCall;
    if (call === undefined || call.state.item.type !== 'function_call') return;
    call.argumentsSent += piece;
    const sent = this.connection.emit({
      type: 'response.function_call_arguments.delta',
      response_id: this.record.id,
      item_id: call.state.item.id,
      output_index: call.outputIndex,
      call_id: call.state.item.call_id,
      delta: piece,
    });
    if (!sent) return;
    this.#argumentDeltas += 1;
    this.connection.argumentsDeltaSent(this.record.index, this.#argumentDeltas);
  }

  #closeFunctionCall(status: 'completed' | 'incomplete'): void {
    const call = this.#functionCall;
    if (call === undefined || call.state.item.type !== 'function_call') return;
    this.#functionCall = undefined;
    const item: RealtimeItem = { ...call.state.item, status, arguments: call.argumentsSent };
    call.state.item = item;
    // Also for an interrupted response: "Also emitted when a Response is interrupted, incomplete, or cancelled."
    this.connection.emit({
      type: 'response.function_call_arguments.done',
      response_id: this.record.id,
      item_id: item.id,
      output_index: call.outputIndex,
      call_id: item.call_id,
      name: item.name,
      arguments: item.arguments,
    });
    this.#itemDone(call.state, call.outputIndex, item);
  }

  #usage(): { readonly total_tokens: number } & Record<string, JsonValue> {
    const audioTokens = Math.ceil(this.record.audioMs / 50);
    const textTokens = Math.max(this.#transcriptDeltas, splitWords(this.#message?.transcriptSent ?? '').length);
    const input = 120;
    return {
      total_tokens: input + audioTokens + textTokens,
      input_tokens: input,
      output_tokens: audioTokens + textTokens,
      input_token_details: {
        text_tokens: input,
        audio_tokens: 0,
        image_tokens: 0,
        cached_tokens: 0,
        cached_tokens_details: { text_tokens: 0, audio_tokens: 0, image_tokens: 0 },
      },
      output_token_details: { text_tokens: textTokens, audio_tokens: audioTokens },
    };
  }

  #done(status: 'completed' | 'cancelled' | 'failed', statusDetails: JsonValue): void {
    this.#finished = true;
    this.connection.timers.cancel(this.#timer);
    this.#timer = undefined;
    this.record.status = status;
    this.connection.responseFinished(this);
    const usage = this.#usage();
    this.connection.emit({ type: 'response.done', response: this.#responseObject(status, statusDetails, usage) });
    // Adjusted to what was used, after response.done as in the live trace.
    this.connection.timers.after(this.connection.settings.rateLimitsDelayMs, () => this.#rateLimits(RATE_LIMIT_TOKENS - usage.total_tokens));
  }

  #closeOpenParts(): void {
    if (!this.#created) this.#sendCreated();
    this.#closeMessage('incomplete');
    this.#closeFunctionCall('incomplete');
  }

  cancel(reason: 'turn_detected' | 'client_cancelled'): void {
    if (this.#finished) return;
    this.connection.timers.cancel(this.#timer);
    this.#timer = undefined;
    this.#steps.length = 0;
    this.record.cancelReason = reason;
    this.#closeOpenParts();
    this.#done('cancelled', { type: 'cancelled', reason });
  }

  fail(message: string): void {
    if (this.#finished) return;
    this.connection.timers.cancel(this.#timer);
    this.#timer = undefined;
    this.#steps.length = 0;
    this.#closeOpenParts();
    this.#done('failed', { type: 'failed', error: { type: 'server_error', code: 'server_error', message } });
  }
}

// ---- server ----------------------------------------------------------------------------------------------------------

async function selfSignedCertificate(): Promise<{ key: string; cert: string }> {
  const selfsigned = await import('selfsigned');
  const now = new Date();
  const result = await selfsigned.generate([{ name: 'commonName', value: '127.0.0.1' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: new Date(now.getTime() - 60_000),
    notAfterDate: new Date(now.getTime() + 7 * 24 * 3600_000),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }, { type: 2, value: 'localhost' }] },
    ],
  });
  return { key: result.private, cert: result.cert };
}

export async function startOpenAiRealtimeEmulator(options: OpenAiRealtimeEmulatorOptions): Promise<OpenAiRealtimeEmulator> {
  const timing = options.timing ?? {};
  const dialect = options.dialect ?? 'openai';
  const settings: Settings = {
    dialect,
    apiKey: options.apiKey,
    script: options.script ?? {},
    logger: options.logger ?? silentLogger(),
    acceptModel: options.acceptModel ?? (dialect === 'xai' ? defaultAcceptXaiModel : defaultAcceptModel),
    refusedTranscriptionModels: options.refusedTranscriptionModels ?? [],
    audioChunkMs: timing.audioChunkMs ?? 100,
    chunkIntervalMs: timing.chunkIntervalMs ?? 15,
    transcriptionDelayMs: timing.transcriptionDelayMs ?? 30,
    rateLimitsDelayMs: timing.rateLimitsDelayMs ?? 5,
    pingIntervalMs: timing.pingIntervalMs ?? 20_000,
    vad: options.vad ?? {},
  };
  const tls = options.tls === true;
  const certificate = tls ? await selfSignedCertificate() : undefined;
  const server: Server = certificate === undefined ? createHttpServer() : createHttpsServer({ key: certificate.key, cert: certificate.cert });
  const wss = new WebSocketServer({
    noServer: true,
    autoPong: false,
    perMessageDeflate: false,
    handleProtocols: (protocols) =>
      protocols.has('realtime') ? 'realtime' : dialect === 'xai' ? ([...protocols].find((p) => p.startsWith(XAI_SUBPROTOCOL)) ?? false) : false,
  });
  const waiters = new ChangeWaiters();
  const notify = (): void => waiters.notify();
  const connections: Connection[] = [];
  const upgrades: RealtimeUpgradeRecord[] = [];
  const queue: { plan: RealtimeConnectionFaults; remaining: number }[] = (options.faults ?? []).map((plan) => ({
    plan,
    remaining: plan.connections ?? 1,
  }));
  const takePlan = (): RealtimeConnectionFaults | undefined => {
    const head = queue[0];
    if (head === undefined) return undefined;
    head.remaining -= 1;
    if (head.remaining <= 0) queue.shift();
    return head.plan;
  };

  server.on('request', (request, response) => {
    const body = JSON.stringify({
      error: { message: `Invalid URL (${request.method ?? 'GET'} ${request.url ?? '/'})`, type: 'invalid_request_error', param: null, code: null },
    });
    const upgradePath = new URL(request.url ?? '/', 'http://127.0.0.1').pathname === '/v1/realtime';
    response.writeHead(upgradePath ? 426 : 404, { 'content-type': 'application/json' }).end(body);
  });

  server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    if (url.pathname !== '/v1/realtime') {
      upgrades.push({ path: url.pathname, headers: request.headers, status: 404 });
      writeRawHttp(socket, 404, {
        error: { message: `Invalid URL (GET ${url.pathname})`, type: 'invalid_request_error', param: null, code: null },
      });
      notify();
      return;
    }
    if (dialect === 'xai') {
      const refusal = xaiUpgradeRefusal(request.headers, url, settings);
      if (refusal !== undefined) {
        upgrades.push({ path: url.pathname, headers: request.headers, status: refusal.status });
        writeRawHttp(socket, refusal.status, refusal.body);
        notify();
        return;
      }
    }
    const plan = takePlan();
    if (plan?.rejectUpgrade !== undefined) {
      const { status, body, headers } = plan.rejectUpgrade;
      upgrades.push({ path: url.pathname, headers: request.headers, status });
      const custom = headers ?? {};
      const hasRetryAfter = Object.keys(custom).some((name) => name.toLowerCase() === 'retry-after');
      writeRawHttp(socket, status, body ?? defaultOpenAiErrorBody(status), {
        ...(status === 429 && !hasRetryAfter ? { 'retry-after': '1' } : {}),
        ...custom,
      });
      notify();
      return;
    }
    wss.handleUpgrade(request, socket, head, (ws) => {
      upgrades.push({ path: url.pathname, headers: request.headers, status: 101 });
      const connection = new Connection(connections.length, ws, request, url, settings, waiters);
      connections.push(connection);
      connection.start(plan);
      notify();
    });
  });

  const port = await listenOnLoopback(server);
  const scheme = tls ? 's' : '';
  let closing: Promise<void> | undefined;

  return {
    url: `ws${scheme}://127.0.0.1:${String(port)}/v1/realtime`,
    baseUrl: `http${scheme}://127.0.0.1:${String(port)}/v1`,
    port,
    certificatePem: certificate?.cert,
    connections,
    upgrades,
    queueConnectionFaults(plan: RealtimeConnectionFaults): void {
      queue.push({ plan, remaining: plan.connections ?? 1 });
    },
    waitFor<T>(probe: () => T | undefined | null | false, waitOptions?: WaitOptions): Promise<T> {
      return waiters.waitFor(probe, waitOptions);
    },
    waitForConnection(index = 0, waitOptions?: WaitOptions): Promise<RealtimeEmulatorConnection> {
      return waiters.waitFor(() => connections[index], waitOptions, `connection ${String(index)}`);
    },
    close(): Promise<void> {
      closing ??= (async () => {
        for (const connection of connections) connection.terminate();
        waiters.close();
        wss.close();
        await closeServer(server);
      })();
      return closing;
    },
  };
}

/** The emulator in xAI mode (Grok Voice Agent API): `startOpenAiRealtimeEmulator({ ...options, dialect: 'xai' })`. */
export function startXaiRealtimeEmulator(options: Omit<OpenAiRealtimeEmulatorOptions, 'dialect'>): Promise<OpenAiRealtimeEmulator> {
  return startOpenAiRealtimeEmulator({ ...options, dialect: 'xai' });
}
