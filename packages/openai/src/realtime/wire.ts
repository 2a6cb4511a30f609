/**
 * OpenAI Realtime (GA) wire types: zod schemas for the server events the adapter consumes, and typed
 * builders for the client events it sends. Types only are taken from the `openai` package, so every
 * builder is checked against the SDK's GA definitions at compile time. What an OpenAI-compatible provider
 * spells differently (its session object, its assistant text part, xAI's `force_message`) is typed here too, and
 * chosen by its profile (profile.ts).
 */
import { z } from 'zod';
import type {
  ConversationItemCreateEvent,
  ConversationItemTruncateEvent,
  InputAudioBufferAppendEvent,
  InputAudioBufferCommitEvent,
  RealtimeAudioFormats,
  RealtimeResponseCreateParams,
  RealtimeServerEvent,
  RealtimeSessionCreateRequest,
  ResponseCancelEvent,
  ResponseCreateEvent,
} from 'openai/resources/realtime/realtime';

// ---- server -> client ---------------------------------------------------------------------------

const nullableString = z.string().nullish();

export const serverErrorSchema = z.object({
  type: nullableString,
  code: nullableString,
  message: nullableString,
  param: nullableString,
  /** The client `event_id` that caused the error, if any. */
  event_id: nullableString,
});
export type ServerError = z.output<typeof serverErrorSchema>;

const contentPartSchema = z.object({
  type: z.string().optional(),
  text: nullableString,
  transcript: nullableString,
});

/** A conversation item as the server reports it (only the fields the adapter reads). */
export const itemSchema = z.object({
  id: z.string().optional(),
  type: z.string(),
  role: z.string().optional(),
  status: z.string().optional(),
  call_id: z.string().optional(),
  name: z.string().optional(),
  arguments: z.string().optional(),
  content: z.array(contentPartSchema).optional(),
});
export type WireItem = z.output<typeof itemSchema>;

const serverSchemas = {
  'session.created': z.object({ session: z.record(z.string(), z.unknown()) }),
  'session.updated': z.object({ session: z.record(z.string(), z.unknown()) }),
  error: z.object({ error: serverErrorSchema }),
  'input_audio_buffer.speech_started': z.object({ item_id: z.string().optional(), audio_start_ms: z.number().optional() }),
  'input_audio_buffer.speech_stopped': z.object({ item_id: z.string().optional(), audio_end_ms: z.number().optional() }),
  'input_audio_buffer.committed': z.object({ item_id: z.string(), previous_item_id: nullableString }),
  'conversation.item.added': z.object({ item: itemSchema, previous_item_id: nullableString }),
  'conversation.item.input_audio_transcription.completed': z.object({ item_id: z.string(), transcript: z.string() }),
  /** xAI (with transcription model `grok-transcribe`): the cumulative transcript of a caller turn so far. */
  'conversation.item.input_audio_transcription.updated': z.object({ item_id: z.string(), transcript: z.string() }),
  'conversation.item.input_audio_transcription.failed': z.object({ item_id: z.string(), error: serverErrorSchema.optional() }),
  'conversation.item.truncated': z.object({ item_id: z.string(), audio_end_ms: z.number() }),
  'response.created': z.object({ response: z.object({ id: z.string() }) }),
  'response.output_item.added': z.object({ response_id: z.string().optional(), item: itemSchema }),
  'response.output_item.done': z.object({ response_id: z.string().optional(), item: itemSchema }),
  'response.output_audio.delta': z.object({ response_id: z.string().optional(), item_id: z.string(), delta: z.string() }),
  'response.output_audio.done': z.object({ response_id: z.string().optional(), item_id: z.string() }),
  'response.output_audio_transcript.delta': z.object({ item_id: z.string(), delta: z.string() }),
  'response.output_audio_transcript.done': z.object({ response_id: z.string().optional(), item_id: z.string(), transcript: z.string() }),
  'response.done': z.object({
    response: z.object({
      id: z.string(),
      status: z.string().optional(),
      // xAI may send a bare string here ("unimplemented"): it carries no reason.
      status_details: z
        .union([z.object({ type: nullableString, reason: nullableString, error: serverErrorSchema.partial().nullish() }), z.string()])
        .nullish(),
      output: z.array(itemSchema).optional(),
    }),
  }),
} as const;

type ServerSchemas = typeof serverSchemas;
export type ServerEventType = keyof ServerSchemas;
/** A server event the adapter acts on, with beta names normalised to their GA equivalents. */
export type ServerEvent = { [K in ServerEventType]: { type: K } & z.output<ServerSchemas[K]> }[ServerEventType];

/** Beta (and Azure / compatible servers') names accepted as aliases of the GA events. */
const ALIASES = {
  'response.audio.delta': 'response.output_audio.delta',
  'response.audio.done': 'response.output_audio.done',
  'response.audio_transcript.delta': 'response.output_audio_transcript.delta',
  'response.audio_transcript.done': 'response.output_audio_transcript.done',
  'conversation.item.created': 'conversation.item.added',
} as const satisfies Readonly<Record<string, ServerEventType>>;

/**
 * Every other GA server event (the SDK's `RealtimeServerEvent` union), which the adapter has no use for: skipped
 * without a log line. Exhaustive: a type the SDK adds fails to compile until it is handled or listed here.
 */
const IGNORED_GA = {
  'conversation.created': true,
  'conversation.item.done': true,
  'conversation.item.deleted': true,
  'conversation.item.retrieved': true,
  'conversation.item.input_audio_transcription.delta': true,
  'conversation.item.input_audio_transcription.segment': true,
  'input_audio_buffer.cleared': true,
  'input_audio_buffer.timeout_triggered': true,
  'input_audio_buffer.dtmf_event_received': true,
  'response.content_part.added': true,
  'response.content_part.done': true,
  'response.output_text.delta': true,
  'response.output_text.done': true,
  'response.function_call_arguments.delta': true,
  // Also sent for an interrupted, incomplete or cancelled response (cut-off JSON): calls come from completed items.
  'response.function_call_arguments.done': true,
  'rate_limits.updated': true,
  'output_audio_buffer.started': true,
  'output_audio_buffer.stopped': true,
  'output_audio_buffer.cleared': true,
  'mcp_list_tools.in_progress': true,
  'mcp_list_tools.completed': true,
  'mcp_list_tools.failed': true,
  'response.mcp_call_arguments.delta': true,
  'response.mcp_call_arguments.done': true,
  'response.mcp_call.in_progress': true,
  'response.mcp_call.completed': true,
  'response.mcp_call.failed': true,
} as const satisfies Record<Exclude<RealtimeServerEvent['type'], ServerEventType | keyof typeof ALIASES>, true>;

/** Beta names of events the adapter has no use for (compatible servers still send them). */
const IGNORED_COMPATIBLE = ['response.text.delta', 'response.text.done'] as const;

const IGNORED: ReadonlySet<string> = new Set([...Object.keys(IGNORED_GA), ...IGNORED_COMPATIBLE]);

export type ParsedServerMessage =
  | { kind: 'event'; event: ServerEvent }
  /** A known event type the adapter does not need. */
  | { kind: 'ignored'; type: string }
  /** A type this adapter does not know (newer protocol): skipped. */
  | { kind: 'unknown'; type: string }
  /** Not JSON, not an object with a string `type`, or a known type with the wrong shape. Never holds payload. */
  | { kind: 'malformed'; type: string | undefined; problem: string };

function hasOwn<K extends string>(record: object, key: K): boolean {
  return Object.prototype.hasOwnProperty.call(record, key);
}

/** Parses one text frame from the server. Never throws. */
/**
 * The hot message (many per second per call), checked by hand against its schema's three fields; anything that does
 * not pass goes through the schema for the precise problem.
 */
function audioDelta(raw: Record<string, unknown>): ServerEvent | undefined {
  const { item_id: itemId, delta, response_id: responseId } = raw;
  if (typeof itemId !== 'string' || typeof delta !== 'string' || (responseId !== undefined && typeof responseId !== 'string')) return undefined;
  return { type: 'response.output_audio.delta', item_id: itemId, delta, ...(responseId === undefined ? {} : { response_id: responseId }) };
}

export function parseServerMessage(text: string): ParsedServerMessage {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { kind: 'malformed', type: undefined, problem: 'frame is not valid JSON' };
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { kind: 'malformed', type: undefined, problem: 'frame is not a JSON object' };
  }
  const wireType = (raw as { type?: unknown }).type;
  if (typeof wireType !== 'string' || wireType.length === 0 || wireType.length > 128) {
    return { kind: 'malformed', type: undefined, problem: 'frame has no string "type"' };
  }
  const type = hasOwn(ALIASES, wireType) ? ALIASES[wireType as keyof typeof ALIASES] : wireType;
  if (!hasOwn(serverSchemas, type)) {
    return IGNORED.has(type) ? { kind: 'ignored', type } : { kind: 'unknown', type };
  }
  if (type === 'response.output_audio.delta') {
    const delta = audioDelta(raw as Record<string, unknown>);
    if (delta !== undefined) return { kind: 'event', event: delta };
  }
  const schema = serverSchemas[type as ServerEventType];
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    // Issue paths and expectations only: zod messages never quote the offending value.
    const problem = parsed.error.issues
      .slice(0, 3)
      .map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`)
      .join('; ');
    return { kind: 'malformed', type, problem };
  }
  // The schema was chosen by `type`, so the pair is consistent; TS cannot correlate the lookup.
  return { kind: 'event', event: { ...parsed.data, type } as ServerEvent };
}

// ---- client -> server ---------------------------------------------------------------------------

/** The audio formats this adapter speaks: G.711 mu-law at 8 kHz, or PCM16 at 24 kHz (the only PCM rate GA accepts). */
export type WireAudioFormat = 'pcmu' | 'pcm24';

export function wireAudioFormat(format: WireAudioFormat): RealtimeAudioFormats {
  return format === 'pcmu' ? { type: 'audio/pcmu' } : { type: 'audio/pcm', rate: 24000 };
}

/** What ends a caller turn by silence: a speech threshold (0..1) and how much audio before and after speech counts. */
export interface VadTuning {
  threshold?: number;
  prefixPaddingMs?: number;
  silenceDurationMs?: number;
}

/** OpenAI's documented server_vad defaults (the live server's `session.created` shows 200 ms of silence). */
export const DEFAULT_VAD_TUNING: Readonly<Required<VadTuning>> = { threshold: 0.5, prefixPaddingMs: 300, silenceDurationMs: 500 };

export type TurnDetectionSetting =
  | ({ type: 'server_vad' } & VadTuning)
  | { type: 'semantic_vad'; eagerness?: 'low' | 'medium' | 'high' | 'auto' }
  /** The server never ends a turn (`turn_detection: null`): the gateway's VAD does, with this tuning. */
  | ({ type: 'none' } & VadTuning);

/** A tuning with the documented defaults filled in. */
export function vadTuning(setting: VadTuning): Required<VadTuning> {
  return {
    threshold: setting.threshold ?? DEFAULT_VAD_TUNING.threshold,
    prefixPaddingMs: setting.prefixPaddingMs ?? DEFAULT_VAD_TUNING.prefixPaddingMs,
    silenceDurationMs: setting.silenceDurationMs ?? DEFAULT_VAD_TUNING.silenceDurationMs,
  };
}

/** A JSON value, for provider tools passed through as configured. */
export type JsonValue = string | number | boolean | null | readonly JsonValue[] | { readonly [key: string]: JsonValue };

export interface FunctionToolSpec {
  readonly name: string;
  readonly description: string;
  readonly parameters: Readonly<Record<string, unknown>>;
}

/** Everything a `session.update` carries, in adapter terms. */
export interface SessionSettings {
  readonly audioFormat: WireAudioFormat;
  readonly voice: string;
  /** Left out when blank: an empty string would replace the server's default instructions with none. */
  readonly instructions?: string | undefined;
  /** Input transcription; undefined = none. */
  readonly transcription?: { readonly model: string; readonly language?: string };
  readonly turnDetection: TurnDetectionSetting;
  readonly noiseReduction?: 'near_field' | 'far_field';
  readonly maxOutputTokens?: number | 'inf';
  readonly reasoningEffort?: 'minimal' | 'low' | 'medium' | 'high' | 'xhigh';
  readonly tools: readonly FunctionToolSpec[];
  /** Tools the provider runs itself (xAI's `web_search`...), sent before the function tools as they are. */
  readonly providerTools?: readonly { readonly type: string; readonly [key: string]: JsonValue }[];
}

/** The `session` of a `session.update` in another provider's shape (its profile builds it). */
export interface ProviderSession {
  readonly audio?: { readonly input?: { readonly format?: { readonly type?: string } }; readonly output?: { readonly format?: { readonly type?: string } } };
  readonly [key: string]: unknown;
}

/** The `session` of a `session.update`: OpenAI GA's, or another provider's. */
export type WireSession = RealtimeSessionCreateRequest | ProviderSession;

export interface RealtimeSessionUpdate {
  readonly type: 'session.update';
  readonly event_id: string;
  readonly session: WireSession;
}

type TurnDetectionWire = NonNullable<NonNullable<NonNullable<RealtimeSessionCreateRequest['audio']>['input']>['turn_detection']>;

function turnDetectionWire(setting: TurnDetectionSetting): TurnDetectionWire | null {
  switch (setting.type) {
    case 'none':
      return null;
    case 'server_vad': {
      // Always sent: the server's own default silence (200 ms live) is not the documented one.
      const tuning = vadTuning(setting);
      return {
        type: 'server_vad',
        threshold: tuning.threshold,
        prefix_padding_ms: tuning.prefixPaddingMs,
        silence_duration_ms: tuning.silenceDurationMs,
        create_response: true,
        interrupt_response: true,
      };
    }
    case 'semantic_vad':
      return {
        type: 'semantic_vad',
        ...(setting.eagerness === undefined ? {} : { eagerness: setting.eagerness }),
        create_response: true,
        interrupt_response: true,
      };
  }
}

/** The GA session object: `type: 'realtime'`, object-form audio formats, never `temperature` (GA rejects it). */
export function buildSession(settings: SessionSettings): RealtimeSessionCreateRequest {
  const format = wireAudioFormat(settings.audioFormat);
  const instructions = settings.instructions?.trim() === '' ? undefined : settings.instructions;
  return {
    type: 'realtime',
    output_modalities: ['audio'],
    ...(instructions === undefined ? {} : { instructions }),
    audio: {
      input: {
        format,
        ...(settings.transcription === undefined
          ? {}
          : {
              transcription: {
                model: settings.transcription.model,
                ...(settings.transcription.language === undefined ? {} : { language: settings.transcription.language }),
              },
            }),
        turn_detection: turnDetectionWire(settings.turnDetection),
        ...(settings.noiseReduction === undefined ? {} : { noise_reduction: { type: settings.noiseReduction } }),
      },
      output: { format, voice: settings.voice },
    },
    ...(settings.tools.length === 0
      ? {}
      : {
          tools: functionTools(settings.tools),
          tool_choice: 'auto' as const,
        }),
    ...(settings.maxOutputTokens === undefined ? {} : { max_output_tokens: settings.maxOutputTokens }),
    ...(settings.reasoningEffort === undefined ? {} : { reasoning: { effort: settings.reasoningEffort } }),
  };
}

/** Where an OpenAI-compatible server with a flat session wants what GA nests differently. */
export interface FlatSessionShape {
  /** The provider's name, in the error for a turn detection it does not have. */
  readonly label: string;
  /** Key of the language hint in `audio.input.transcription` (xAI: `language_hint`). */
  readonly languageKey: string;
  /**
   * The `audio.input.transcription.model` values the provider documents (xAI: `grok-transcribe`): another model (the
   * adapter's default `whisper-1` included) is left out, the provider's own transcription applies. Default: none.
   */
  readonly transcriptionModels?: readonly string[];
}

function flatTurnDetection(setting: TurnDetectionSetting, label: string): Record<string, string | number | null> {
  switch (setting.type) {
    case 'server_vad':
      return {
        type: 'server_vad',
        ...(setting.threshold === undefined ? {} : { threshold: setting.threshold }),
        ...(setting.silenceDurationMs === undefined ? {} : { silence_duration_ms: setting.silenceDurationMs }),
        ...(setting.prefixPaddingMs === undefined ? {} : { prefix_padding_ms: setting.prefixPaddingMs }),
      };
    case 'none':
      return { type: null };
    case 'semantic_vad':
      throw new Error(`${label} has no semantic_vad`);
  }
}

/**
 * The flat session of OpenAI-compatible servers such as xAI: `voice` and `turn_detection` on the session, formats
 * under `audio`, no GA-only field (`type`, `output_modalities`, `tool_choice`, noise reduction...). server_vad carries
 * only the tuning that is set (the server's defaults otherwise); turns the client commits are `{type: null}`. Provider
 * tools go first, then the function tools.
 */
export function flatSession(settings: SessionSettings, shape: FlatSessionShape): ProviderSession {
  const format = wireAudioFormat(settings.audioFormat);
  const language = settings.transcription?.language;
  const model = settings.transcription?.model;
  const transcription = {
    ...(model !== undefined && (shape.transcriptionModels ?? []).includes(model) ? { model } : {}),
    ...(language === undefined ? {} : { [shape.languageKey]: language }),
  };
  const tools = [...(settings.providerTools ?? []), ...functionTools(settings.tools)];
  return {
    ...(settings.instructions === undefined || settings.instructions.trim() === '' ? {} : { instructions: settings.instructions }),
    voice: settings.voice,
    turn_detection: flatTurnDetection(settings.turnDetection, shape.label),
    audio: {
      input: { format, ...(Object.keys(transcription).length === 0 ? {} : { transcription }) },
      output: { format },
    },
    ...(tools.length === 0 ? {} : { tools }),
  };
}

export function sessionUpdate(eventId: string, session: WireSession): RealtimeSessionUpdate {
  return { type: 'session.update', event_id: eventId, session };
}

/** The function tools of a session, GA's flat shape (xAI documents the same). */
export function functionTools(tools: readonly FunctionToolSpec[]): { type: 'function'; name: string; description: string; parameters: Readonly<Record<string, unknown>> }[] {
  return tools.map((tool) => ({ type: 'function' as const, name: tool.name, description: tool.description, parameters: tool.parameters }));
}

/**
 * The JSON text of an `input_audio_buffer.append` (sent 50 times a second per call): a template, since base64 needs
 * no escaping; the same text as `JSON.stringify` of the typed event.
 */
export function audioAppendText(base64Audio: string): string {
  const event: InputAudioBufferAppendEvent = { type: 'input_audio_buffer.append', audio: base64Audio };
  return `{"type":"${event.type}","audio":"${event.audio}"}`;
}

export function responseCreate(eventId: string, response?: RealtimeResponseCreateParams): ResponseCreateEvent {
  return { type: 'response.create', event_id: eventId, ...(response === undefined ? {} : { response }) };
}

export function responseCancel(eventId: string, responseId: string): ResponseCancelEvent {
  return { type: 'response.cancel', event_id: eventId, response_id: responseId };
}

export function inputCommit(eventId: string): InputAudioBufferCommitEvent {
  return { type: 'input_audio_buffer.commit', event_id: eventId };
}

/**
 * A response that speaks `text` (GA has no text-to-speech response, so the model reads it): its own empty context
 * (`input: []`), instructions to read the text word for word, and no tools. Its output joins the conversation.
 */
export function verbatimResponse(text: string): RealtimeResponseCreateParams {
  return {
    input: [],
    instructions:
      'Say the following message to the caller exactly as written, word for word and in the language it is written in. ' +
      `Do not add, leave out, translate or change anything, and say nothing else.\n\nMessage:\n${text}`,
    tool_choice: 'none',
  };
}

export function truncateItem(eventId: string, itemId: string, audioEndMs: number): ConversationItemTruncateEvent {
  return { type: 'conversation.item.truncate', event_id: eventId, item_id: itemId, content_index: 0, audio_end_ms: audioEndMs };
}

/** The items a conversation can be rebuilt from (GA shapes). */
export type RestorableItem =
  | { kind: 'user'; text: string }
  | { kind: 'assistant'; text: string }
  | { kind: 'function_call'; callId: string; name: string; argumentsJson: string }
  | { kind: 'function_call_output'; callId: string; output: string };

/** How a provider spells assistant text in `conversation.item.create`: GA's `output_text`, xAI's `text`. */
export type AssistantTextPart = 'output_text' | 'text';

/** `conversation.item.create` shapes outside the SDK's GA types: xAI's assistant `text` part and `force_message` item. */
export interface CompatibleItemCreateEvent {
  readonly type: 'conversation.item.create';
  readonly event_id: string;
  readonly item:
    | { readonly type: 'message'; readonly role: 'assistant'; readonly content: readonly [{ readonly type: 'text'; readonly text: string }] }
    /**
     * xAI: the server speaks `text` itself (text-to-speech, not the model) as a whole response; `interruptible: false`:
     * "caller audio is dropped until playback completes" (xAI's default is true).
     */
    | {
        readonly type: 'force_message';
        readonly role: 'assistant';
        readonly interruptible: boolean;
        readonly content: readonly [{ readonly type: 'output_text'; readonly text: string }];
      };
}

/** xAI's verbatim speech: a `force_message` item, answered by a full response lifecycle (no `response.create`). */
export function forceMessage(eventId: string, text: string, interruptible: boolean): CompatibleItemCreateEvent {
  return {
    type: 'conversation.item.create',
    event_id: eventId,
    item: { type: 'force_message', role: 'assistant', interruptible, content: [{ type: 'output_text', text }] },
  };
}

export function itemCreate(eventId: string, item: RestorableItem, assistantText: AssistantTextPart = 'output_text'): ConversationItemCreateEvent | CompatibleItemCreateEvent {
  switch (item.kind) {
    case 'user':
      return {
        type: 'conversation.item.create',
        event_id: eventId,
        item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: item.text }] },
      };
    case 'assistant':
      return assistantText === 'text'
        ? { type: 'conversation.item.create', event_id: eventId, item: { type: 'message', role: 'assistant', content: [{ type: 'text', text: item.text }] } }
        : {
            type: 'conversation.item.create',
            event_id: eventId,
            item: { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: item.text }] },
          };
    case 'function_call':
      return {
        type: 'conversation.item.create',
        event_id: eventId,
        item: { type: 'function_call', call_id: item.callId, name: item.name, arguments: item.argumentsJson },
      };
    case 'function_call_output':
      return {
        type: 'conversation.item.create',
        event_id: eventId,
        item: { type: 'function_call_output', call_id: item.callId, output: item.output },
      };
  }
}

/** Every client event this adapter sends. */
export type ClientEvent =
  | RealtimeSessionUpdate
  | CompatibleItemCreateEvent
  | InputAudioBufferAppendEvent
  | InputAudioBufferCommitEvent
  | ResponseCreateEvent
  | ResponseCancelEvent
  | ConversationItemTruncateEvent
  | ConversationItemCreateEvent;
