/**
 * The OpenAI Realtime session logic without sockets or timers: server events in, `StsEvent`s and client
 * events out (through a sink), plus the bookkeeping they need: audio received per assistant item (for the
 * truncate clamp), whether a response is active (so `response.create` never collides with one), tool
 * calls already reported, and the conversation log used to restore a replacement connection.
 */
import { ProviderError } from '@stsgate/core';
import type { StsEvent } from '@stsgate/core';
import { PROVIDER, providerErrorFromServer } from '../errors.js';
import type { AudioCodec, PcmCarry } from './audio-codec.js';
import { ConversationLog } from './conversation-log.js';
import { itemCreate, responseCreate, truncateItem } from './wire.js';
import type { ClientEvent, ParsedServerMessage, ServerError, ServerEvent, WireItem } from './wire.js';

export type LogLevel = 'debug' | 'info' | 'warn';

export interface MapperSink {
  emit(event: StsEvent): void;
  send(event: ClientEvent): void;
  log(level: LogLevel, data: Record<string, unknown>, message: string): void;
}

export interface MapperOptions {
  readonly codec: AudioCodec;
  /** Redacted from server messages. */
  readonly apiKey?: string;
  /** How many assistant items keep their audio bookkeeping (truncate of older ones is skipped). */
  readonly maxTrackedItems?: number;
  readonly log?: ConversationLog;
}

/** Server error codes that need no report: the adapter's own requests that raced with the server. */
const HARMLESS_CODES: ReadonlySet<string> = new Set(['response_cancel_not_active']);

interface ItemAudio extends PcmCarry {
  receivedBytes: number;
  /** Truncated by the host: later deltas are dropped. */
  truncated: boolean;
  /** `response_done` was emitted. */
  done: boolean;
}

/** `audio_end_ms` for a truncate: an integer within [0, audio received]. */
export function clampAudioEndMs(heardMs: number, receivedMs: number): number {
  const heard = Number.isNaN(heardMs) ? 0 : heardMs;
  return Math.floor(Math.max(0, Math.min(heard, receivedMs)));
}

export class RealtimeEventMapper {
  readonly log: ConversationLog;
  private readonly codec: AudioCodec;
  private readonly maxTrackedItems: number;
  private sequence = 0;
  /** Assistant items of this connection that carried audio, oldest first. */
  private readonly items = new Map<string, ItemAudio>();
  private readonly functionNames = new Map<string, string>();
  private readonly reportedCalls = new Set<string>();
  private readonly unknownTypes = new Set<string>();
  private readonly malformedTypes = new Set<string>();
  private activeResponseId: string | undefined;
  /** event_id of a `response.create` the server has not answered with `response.created` yet. */
  private requestedResponse: string | undefined;
  /** A response is wanted as soon as the active one is done. */
  private responseQueued = false;
  private readonly pendingRequests = new Set<string>();
  /** Between `connectionLost()` and `restore()`: nothing can be sent; requests are recorded for the restore. */
  private offline = false;
  private readonly truncateRequests = new Set<string>();

  constructor(
    private readonly sink: MapperSink,
    private readonly options: MapperOptions,
  ) {
    this.codec = options.codec;
    this.maxTrackedItems = options.maxTrackedItems ?? 64;
    this.log = options.log ?? new ConversationLog();
  }

  /** True while a response is running or requested. */
  get responseInFlight(): boolean {
    return this.activeResponseId !== undefined || this.requestedResponse !== undefined;
  }

  get queuedResponse(): boolean {
    return this.responseQueued;
  }

  /** Audio received so far for an assistant item of this connection, in ms. */
  receivedMs(itemId: string): number {
    const item = this.items.get(itemId);
    return item === undefined ? 0 : item.receivedBytes / this.codec.bytesPerMs;
  }

  nextEventId(kind: string): string {
    this.sequence++;
    return `stsgate_${kind}_${this.sequence}`;
  }

  // ---- server events ---------------------------------------------------------------------------

  handle(message: ParsedServerMessage): void {
    switch (message.kind) {
      case 'event':
        this.onEvent(message.event);
        return;
      case 'ignored':
        return;
      case 'unknown':
        if (!this.unknownTypes.has(message.type) && this.unknownTypes.size < 256) {
          this.unknownTypes.add(message.type);
          this.sink.log('debug', { eventType: message.type }, 'ignoring an unknown OpenAI server event type');
        }
        return;
      case 'malformed': {
        const key = message.type ?? '(no type)';
        if (this.malformedTypes.has(key)) {
          this.sink.log('debug', { eventType: key, problem: message.problem }, 'malformed OpenAI server event skipped');
          return;
        }
        this.malformedTypes.add(key);
        this.sink.log('warn', { eventType: key, problem: message.problem }, 'malformed OpenAI server event skipped');
        this.sink.emit({
          type: 'error',
          fatal: false,
          error: new ProviderError(PROVIDER, 'protocol', `malformed OpenAI event ${key}: ${message.problem}`, { retryable: false }),
        });
        return;
      }
    }
  }

  private onEvent(event: ServerEvent): void {
    switch (event.type) {
      case 'session.created':
      case 'session.updated':
        // Configuration is the connection's business; a later session.updated never triggers a response.
        this.sink.log('debug', { eventType: event.type }, 'session event after setup');
        return;
      case 'error':
        this.onServerError(event.error);
        return;
      case 'input_audio_buffer.speech_started':
        this.sink.emit({ type: 'speech_started' });
        return;
      case 'input_audio_buffer.speech_stopped':
        this.sink.emit({ type: 'speech_stopped' });
        return;
      case 'input_audio_buffer.committed':
        this.log.reserveUser(event.item_id);
        return;
      case 'conversation.item.added':
        if (isUserAudio(event.item) && event.item.id !== undefined) this.log.reserveUser(event.item.id);
        return;
      case 'conversation.item.input_audio_transcription.completed': {
        const text = event.transcript.trim();
        this.log.userTranscript(event.item_id, text);
        if (text !== '') this.sink.emit({ type: 'transcript', role: 'user', text, final: true });
        return;
      }
      case 'conversation.item.input_audio_transcription.failed':
        this.sink.log(
          'warn',
          { itemId: event.item_id, code: event.error?.code ?? undefined },
          'OpenAI could not transcribe a caller turn',
        );
        return;
      case 'conversation.item.truncated':
        this.sink.log('debug', { itemId: event.item_id, audioEndMs: event.audio_end_ms }, 'item truncated');
        return;
      case 'response.created':
        this.activeResponseId = event.response.id;
        this.requestedResponse = undefined;
        return;
      case 'response.output_item.added':
        this.onOutputItem(event.item, false);
        return;
      case 'response.output_item.done':
        this.onOutputItem(event.item, true);
        return;
      case 'response.output_audio.delta':
        this.onAudioDelta(event.item_id, event.delta);
        return;
      case 'response.output_audio.done':
        this.finishItem(event.item_id);
        return;
      case 'response.output_audio_transcript.delta':
        this.log.assistantDelta(event.item_id, event.delta);
        return;
      case 'response.output_audio_transcript.done': {
        const text = event.transcript.trim();
        this.log.assistantTranscript(event.item_id, text);
        if (text !== '') this.sink.emit({ type: 'transcript', role: 'agent', text, final: true });
        return;
      }
      case 'response.function_call_arguments.done': {
        const name = event.name ?? this.functionNames.get(event.call_id);
        if (name === undefined) {
          this.sink.log('debug', { callId: event.call_id }, 'function call arguments without a name: waiting for the item');
          return;
        }
        this.reportToolCall(event.call_id, name, event.arguments);
        return;
      }
      case 'response.done':
        this.onResponseDone(event.response);
        return;
    }
  }

  private onOutputItem(item: WireItem, done: boolean): void {
    if (item.type === 'message' && item.id !== undefined) {
      this.log.reserveAssistant(item.id);
      return;
    }
    if (item.type !== 'function_call' || item.call_id === undefined || item.name === undefined) return;
    this.functionNames.set(item.call_id, item.name);
    if (done && item.status !== 'incomplete' && item.arguments !== undefined) this.reportToolCall(item.call_id, item.name, item.arguments);
  }

  private onAudioDelta(itemId: string, delta: string): void {
    const item = this.track(itemId);
    if (item.truncated || item.done) return; // the caller interrupted it: late audio must not play
    const bytes = Buffer.from(delta, 'base64');
    if (bytes.length === 0) return;
    item.receivedBytes += bytes.length;
    this.log.assistantAudio(itemId, item.receivedBytes / this.codec.bytesPerMs);
    const samples = this.codec.decode(bytes, item);
    if (samples.length > 0) this.sink.emit({ type: 'audio', responseId: itemId, samples });
  }

  private track(itemId: string): ItemAudio {
    let item = this.items.get(itemId);
    if (item !== undefined) return item;
    item = { receivedBytes: 0, truncated: false, done: false, carry: -1 };
    this.items.set(itemId, item);
    this.log.reserveAssistant(itemId);
    if (this.items.size > this.maxTrackedItems) {
      const oldest = this.items.keys().next().value as string;
      this.finishItem(oldest);
      this.items.delete(oldest);
    }
    return item;
  }

  /** All audio of an item has been emitted: `response_done`, once, for items that carried audio. */
  private finishItem(itemId: string): void {
    const item = this.items.get(itemId);
    if (item === undefined || item.done) return;
    item.done = true;
    this.sink.emit({ type: 'response_done', responseId: itemId });
  }

  private onResponseDone(response: Extract<ServerEvent, { type: 'response.done' }>['response']): void {
    for (const item of response.output ?? []) {
      if (item.id !== undefined) this.finishItem(item.id);
      if (item.type === 'function_call' && item.status !== 'incomplete' && item.call_id && item.name && item.arguments !== undefined) {
        this.reportToolCall(item.call_id, item.name, item.arguments);
      }
    }
    if (response.status === 'failed') {
      const error = response.status_details?.error ?? {};
      this.sink.emit({
        type: 'error',
        fatal: false,
        error: providerErrorFromServer(
          { type: error.type ?? 'server_error', code: error.code ?? null, message: error.message ?? 'the response failed' },
          this.options.apiKey,
          'OpenAI response failed',
        ),
      });
    } else if (response.status === 'incomplete') {
      this.sink.log('info', { reason: response.status_details?.reason ?? undefined }, 'OpenAI response ended incomplete');
    }
    if (this.activeResponseId === undefined || this.activeResponseId === response.id) this.activeResponseId = undefined;
    if (this.responseQueued && !this.responseInFlight) {
      this.responseQueued = false;
      this.requestResponse('queued');
    }
  }

  private reportToolCall(callId: string, name: string, argumentsJson: string): void {
    if (this.reportedCalls.has(callId)) return;
    this.reportedCalls.add(callId);
    this.log.functionCall(callId, name, argumentsJson);
    this.sink.emit({ type: 'tool_call', callId, name, argumentsJson });
  }

  private onServerError(error: ServerError): void {
    const code = error.code ?? undefined;
    const eventId = error.event_id ?? undefined;
    if (code !== undefined && HARMLESS_CODES.has(code)) {
      this.sink.log('debug', { code }, 'harmless OpenAI error ignored');
      return;
    }
    if (eventId !== undefined && this.pendingRequests.delete(eventId)) {
      if (this.requestedResponse === eventId) this.requestedResponse = undefined;
      if (code === 'conversation_already_has_active_response') {
        // A response the server started itself won the race: ask again once it is done.
        this.sink.log('debug', { eventId }, 'a response is already active: response.create queued');
        this.responseQueued = true;
        return;
      }
    }
    if (eventId !== undefined) this.truncateRequests.delete(eventId);
    const providerError: ProviderError = providerErrorFromServer(error, this.options.apiKey);
    this.sink.log('warn', { code, category: providerError.category, eventId }, 'OpenAI reported an error');
    this.sink.emit({ type: 'error', fatal: false, error: providerError });
  }

  // ---- host requests ----------------------------------------------------------------------------

  /** Sends `response.create` now, or once the active response is done. */
  requestResponse(reason: string): void {
    if (this.responseInFlight || this.offline) {
      if (!this.responseQueued) this.sink.log('debug', { reason }, 'response.create queued until the active response is done');
      this.responseQueued = true;
      return;
    }
    const eventId = this.nextEventId('response');
    this.requestedResponse = eventId;
    this.pendingRequests.add(eventId);
    if (this.pendingRequests.size > 64) this.pendingRequests.delete(this.pendingRequests.values().next().value as string);
    this.sink.send(responseCreate(eventId));
  }

  /** The caller heard `heardMs` of an assistant item: tell the server, clamped to the audio it sent. */
  truncate(itemId: string, heardMs: number): void {
    const item = this.items.get(itemId);
    if (item === undefined || item.receivedBytes === 0) {
      // An item of a connection that is gone: only the log (for the next restore) can use it.
      if (item === undefined) this.log.assistantHeard(itemId, clampAudioEndMs(heardMs, Number.POSITIVE_INFINITY));
      this.sink.log('debug', { itemId, heardMs }, 'truncate skipped: no audio of that item on this connection');
      return;
    }
    const audioEndMs = clampAudioEndMs(heardMs, item.receivedBytes / this.codec.bytesPerMs);
    item.truncated = true;
    this.log.assistantHeard(itemId, audioEndMs);
    const eventId = this.nextEventId('truncate');
    this.truncateRequests.add(eventId);
    if (this.truncateRequests.size > 64) this.truncateRequests.delete(this.truncateRequests.values().next().value as string);
    this.sink.send(truncateItem(eventId, itemId, audioEndMs));
    this.sink.log('debug', { itemId, heardMs, audioEndMs }, 'truncate sent');
  }

  /** A user text message (e.g. a DTMF note), answered by a response. */
  userText(text: string, reason: string): void {
    this.log.userText(text);
    if (!this.offline) this.sink.send(itemCreate(this.nextEventId('item'), { kind: 'user', text }));
    this.requestResponse(reason);
  }

  /** The host ran a tool: its output goes in as a `function_call_output` item, then a response. */
  toolResult(callId: string, output: string): void {
    this.log.functionCallOutput(callId, output);
    if (!this.offline) this.sink.send(itemCreate(this.nextEventId('item'), { kind: 'function_call_output', callId, output }));
    this.requestResponse('tool_result');
  }

  // ---- reconnect ---------------------------------------------------------------------------------

  /**
   * The connection is gone: close every item that was streaming (the host flushes what it has), and
   * forget per-connection state. The conversation log and a queued response survive; until `restore()`
   * host requests only go to the log.
   */
  connectionLost(): void {
    this.offline = true;
    for (const itemId of [...this.items.keys()]) this.finishItem(itemId);
    this.items.clear();
    this.functionNames.clear();
    this.pendingRequests.clear();
    this.truncateRequests.clear();
    if (this.requestedResponse !== undefined) this.responseQueued = true;
    this.activeResponseId = undefined;
    this.requestedResponse = undefined;
  }

  /**
   * A replacement connection is configured: re-create the conversation, then ask for a response if the
   * agent still owes one. Returns how many items were re-created.
   */
  restore(): number {
    this.offline = false;
    this.log.forgetItemIds();
    const items = this.log.toItems();
    for (const item of items) this.sink.send(itemCreate(this.nextEventId('restore'), item));
    const owed = this.responseQueued || this.log.owesResponse();
    this.responseQueued = false;
    if (owed) this.requestResponse('restore');
    return items.length;
  }
}

function isUserAudio(item: WireItem): boolean {
  return item.type === 'message' && item.role === 'user' && (item.content ?? []).some((part) => part.type === 'input_audio');
}
