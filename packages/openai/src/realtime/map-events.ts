/**
 * The OpenAI Realtime session logic without sockets or timers: server events in, `StsEvent`s and client
 * events out (through a sink), plus the bookkeeping they need: audio received per assistant item (for the
 * truncate clamp), whether a response is active (so `response.create` never collides with one), tool
 * calls already reported and the results they still wait for, and the conversation log used to restore a
 * replacement connection.
 */
import { ProviderError } from '@stsgate/core';
import type { StsEvent } from '@stsgate/core';
import { providerErrorFromServer } from '../errors.js';
import type { AudioCodec, PcmCarry } from './audio-codec.js';
import { ConversationLog } from './conversation-log.js';
import { openAiProfile } from './profile.js';
import type { RealtimeProfile } from './profile.js';
import { forceMessage, inputCommit, itemCreate, responseCancel, responseCreate, truncateItem, verbatimResponse } from './wire.js';
import type { ClientEvent, ParsedServerMessage, ServerError, ServerEvent, WireItem } from './wire.js';

export type LogLevel = 'debug' | 'info' | 'warn';

export interface MapperSink {
  emit(event: StsEvent): void;
  send(event: ClientEvent): void;
  log(level: LogLevel, data: Record<string, unknown>, message: string): void;
  /** Caller audio delivered on this connection so far, in ms (the timeline of the server's `audio_start_ms`). */
  inputAudioMs?(): number | undefined;
}

/** What the mapper takes from the provider's profile (default OpenAI's). */
export type MapperProfile = Pick<RealtimeProfile, 'id' | 'label' | 'truncate' | 'verbatim' | 'assistantText' | 'errorKind'>;

export interface MapperOptions {
  readonly codec: AudioCodec;
  readonly profile?: MapperProfile;
  /** Redacted from server messages. */
  readonly apiKey?: string;
  /** How many assistant items keep their audio bookkeeping (truncate of older ones is skipped). */
  readonly maxTrackedItems?: number;
  readonly log?: ConversationLog;
  /** The server VAD's `prefix_padding_ms`: its `audio_start_ms` lies this far before the speech it detected. Default 0. */
  readonly speechPaddingMs?: number;
}

interface ItemAudio extends PcmCarry {
  receivedBytes: number;
  /** Truncated by the host: later deltas are dropped. */
  truncated: boolean;
  /** `response_done` was emitted. */
  done: boolean;
}

/** What a `response.create` asks for: by default the model's answer to the conversation. */
export interface ResponseRequest {
  /** Speak this text (the welcome message) instead: see `verbatimResponse`, or xAI's `force_message` (the profile's `verbatim`). */
  readonly verbatim?: string | undefined;
}

/** The function calls of one response, and which of them the host has answered. */
interface CallGroup {
  readonly calls: Set<string>;
  readonly answered: Set<string>;
  /** `response.done` arrived (or the connection that ran it is gone): no more calls join. */
  done: boolean;
}

/** Bound on responses whose calls still wait for results (a host that never answers). */
const MAX_CALL_GROUPS = 64;
/** Bound on user items whose final transcript is remembered (to report a repeated one once). */
const MAX_USER_FINALS = 64;

/** `audio_end_ms` for a truncate: an integer within [0, audio received]. */
export function clampAudioEndMs(heardMs: number, receivedMs: number): number {
  const heard = Number.isNaN(heardMs) ? 0 : heardMs;
  return Math.floor(Math.max(0, Math.min(heard, receivedMs)));
}

export class RealtimeEventMapper {
  readonly log: ConversationLog;
  private readonly codec: AudioCodec;
  private readonly profile: MapperProfile;
  private readonly maxTrackedItems: number;
  private sequence = 0;
  /** Assistant items of this connection that carried audio, oldest first. */
  private readonly items = new Map<string, ItemAudio>();
  private readonly reportedCalls = new Set<string>();
  /** Per response id: its calls; one `response.create` follows once every call of the response has a result. */
  private readonly callGroups = new Map<string, CallGroup>();
  private readonly groupOfCall = new Map<string, string>();
  private readonly unknownTypes = new Set<string>();
  private readonly malformedTypes = new Set<string>();
  private activeResponseId: string | undefined;
  /** A `response.create` the server has not answered with `response.created` yet. */
  private requested: { readonly eventId: string; readonly request: ResponseRequest } | undefined;
  /**
   * The request the last `response.created` was taken to answer. An error for that request arriving afterwards means
   * the response was the server's own (its VAD answered the caller first), not ours.
   */
  private claimed: { readonly eventId: string; readonly request: ResponseRequest; readonly responseId: string } | undefined;
  /** A response wanted as soon as the active one is done. */
  private queued: ResponseRequest | undefined;
  /** The caller talked while our request was in flight: cancel the response it creates. */
  private cancelOnCreate = false;
  /** The response a response.cancel was last sent for. */
  private cancelledResponseId: string | undefined;
  /** The gateway's VAD hears the caller: responses wait for the end of the turn (and then answer it too). */
  private callerSpeaking = false;
  /** The verbatim response running now, and what it was asked to say. */
  private verbatim: { readonly responseId: string; readonly text: string; spoken: string | undefined } | undefined;
  private readonly pendingRequests = new Set<string>();
  /** Between `connectionLost()` and `restore()`: nothing can be sent; requests are recorded for the restore. */
  private offline = false;
  private readonly truncateRequests = new Set<string>();
  /** The user item the server's VAD hears now: a transcript of it is partial (xAI reports partials as `completed`). */
  private speakingItemId: string | undefined;
  /** Between the server VAD's `speech_started` and the end of that turn. */
  private serverHearsCaller = false;
  /** The final transcript reported per user item: a `completed` repeating it is not reported again. */
  private readonly userFinals = new Map<string, string>();

  constructor(
    private readonly sink: MapperSink,
    private readonly options: MapperOptions,
  ) {
    this.codec = options.codec;
    this.profile = options.profile ?? openAiProfile;
    this.maxTrackedItems = options.maxTrackedItems ?? 64;
    this.log = options.log ?? new ConversationLog();
  }

  /** True while a response is running or requested. */
  get responseInFlight(): boolean {
    return this.activeResponseId !== undefined || this.requested !== undefined;
  }

  get queuedResponse(): boolean {
    return this.queued !== undefined;
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
          this.sink.log('debug', { eventType: message.type }, `ignoring an unknown ${this.profile.label} server event type`);
        }
        return;
      case 'malformed': {
        const key = message.type ?? '(no type)';
        if (this.malformedTypes.has(key)) {
          this.sink.log('debug', { eventType: key, problem: message.problem }, `malformed ${this.profile.label} server event skipped`);
          return;
        }
        this.malformedTypes.add(key);
        this.sink.log('warn', { eventType: key, problem: message.problem }, `malformed ${this.profile.label} server event skipped`);
        this.sink.emit({
          type: 'error',
          fatal: false,
          error: new ProviderError(this.profile.id, 'protocol', `malformed ${this.profile.label} event ${key}: ${message.problem}`, { retryable: false }),
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
        // The server's VAD (always sent with interrupt_response: true) cancels the active response itself.
        if (this.activeResponseId !== undefined) this.cancelledResponseId = this.activeResponseId;
        this.speakingItemId = event.item_id;
        this.serverHearsCaller = true;
        this.sink.emit({ type: 'speech_started', ...this.speechOnset(event.audio_start_ms) });
        return;
      case 'input_audio_buffer.speech_stopped':
        this.speakingItemId = undefined;
        this.serverHearsCaller = false;
        this.sink.emit({ type: 'speech_stopped' });
        return;
      case 'input_audio_buffer.committed':
        if (this.speakingItemId === event.item_id) this.speakingItemId = undefined;
        this.serverHearsCaller = false;
        this.log.reserveUser(event.item_id);
        return;
      case 'conversation.item.added':
        if (isUserAudio(event.item) && event.item.id !== undefined) this.log.reserveUser(event.item.id);
        return;
      case 'conversation.item.input_audio_transcription.completed':
        this.onUserTranscript(event.item_id, event.transcript.trim());
        return;
      case 'conversation.item.input_audio_transcription.updated': {
        // Cumulative, possibly correcting itself: partial, until the turn has its final transcript.
        const text = event.transcript.trim();
        if (text !== '' && !this.userFinals.has(event.item_id)) this.sink.emit({ type: 'transcript', role: 'user', text, final: false });
        return;
      }
      case 'conversation.item.input_audio_transcription.failed':
        this.sink.log(
          'warn',
          { itemId: event.item_id, code: event.error?.code ?? undefined },
          `${this.profile.label} could not transcribe a caller turn`,
        );
        return;
      case 'conversation.item.truncated':
        this.sink.log('debug', { itemId: event.item_id, audioEndMs: event.audio_end_ms }, 'item truncated');
        return;
      case 'response.created':
        this.onResponseCreated(event.response.id);
        return;
      case 'response.output_item.added':
        this.onOutputItem(event.item, undefined);
        return;
      case 'response.output_item.done':
        this.onOutputItem(event.item, event.response_id ?? this.activeResponseId ?? '');
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
        if (this.verbatim !== undefined && (event.response_id ?? this.activeResponseId) === this.verbatim.responseId) this.verbatim.spoken = text;
        if (text !== '') this.sink.emit({ type: 'transcript', role: 'agent', text, final: true });
        return;
      }
      case 'response.done':
        this.onResponseDone(event.response);
        return;
      default: {
        const unhandled: never = event;
        return unhandled;
      }
    }
  }

  /**
   * xAI sends `completed` for partial transcripts too ("emitted for both partial and final transcripts"): one of the
   * turn still being spoken is partial; a repeat of the final one is reported once.
   */
  /** How much caller audio the server's VAD took to notice the speech (from the server's onset and what we sent). */
  private speechOnset(audioStartMs: number | undefined): { onsetAgoMs?: number } {
    const sent = this.sink.inputAudioMs?.();
    if (audioStartMs === undefined || sent === undefined) return {};
    return { onsetAgoMs: Math.max(0, sent - audioStartMs - (this.options.speechPaddingMs ?? 0)) };
  }

  private onUserTranscript(itemId: string, text: string): void {
    if (itemId === this.speakingItemId) {
      if (text !== '') this.sink.emit({ type: 'transcript', role: 'user', text, final: false });
      return;
    }
    this.log.userTranscript(itemId, text);
    if (text === '' || this.userFinals.get(itemId) === text) return;
    this.userFinals.delete(itemId);
    this.userFinals.set(itemId, text);
    if (this.userFinals.size > MAX_USER_FINALS) this.userFinals.delete(this.userFinals.keys().next().value as string);
    this.sink.emit({ type: 'transcript', role: 'user', text, final: true });
  }

  private onResponseCreated(responseId: string): void {
    this.activeResponseId = responseId;
    const requested = this.requested;
    this.requested = undefined;
    this.claimed = requested === undefined ? undefined : { ...requested, responseId };
    if (requested?.request.verbatim !== undefined) this.verbatim = { responseId, text: requested.request.verbatim, spoken: undefined };
    if (this.cancelOnCreate) {
      this.cancelOnCreate = false;
      this.cancelResponse(responseId);
    } else if (requested !== undefined && this.serverHearsCaller) {
      // The server's VAD hears the caller. It interrupts only a response already running when the speech started, so
      // this one would talk over the caller; the server answers the turn when it ends, our items included.
      this.sink.log('debug', { responseId }, 'response created while the caller speaks: cancelled');
      this.cancelResponse(responseId);
    }
  }

  /** Asks the server to stop a response, once per response (a second cancel would only earn an error event). */
  private cancelResponse(responseId: string): void {
    if (this.offline || this.cancelledResponseId === responseId) return;
    this.cancelledResponseId = responseId;
    this.sink.send(responseCancel(this.nextEventId('cancel'), responseId));
  }

  /**
   * A function call counts once its item is `completed` (`doneInResponse` = its response id, for
   * `response.output_item.done`): the GA server also ends the items of an interrupted response, with cut-off
   * arguments and status `incomplete`.
   */
  private onOutputItem(item: WireItem, doneInResponse: string | undefined): void {
    if (item.type === 'message' && item.id !== undefined) {
      this.log.reserveAssistant(item.id);
      return;
    }
    if (doneInResponse === undefined || item.type !== 'function_call' || item.status !== 'completed') return;
    if (item.call_id === undefined || item.name === undefined || item.arguments === undefined) return;
    this.reportToolCall(item.call_id, item.name, item.arguments, doneInResponse);
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
      // Calls a server announced without a completed `output_item.done`: only from a completed response.
      const complete = response.status === 'completed' && (item.status === undefined || item.status === 'completed');
      if (complete && item.type === 'function_call' && item.call_id && item.name && item.arguments !== undefined) {
        this.reportToolCall(item.call_id, item.name, item.arguments, response.id);
      }
    }
    this.checkVerbatim(response.id, response.status);
    const details = typeof response.status_details === 'object' ? response.status_details : undefined;
    if (response.status === 'failed') {
      const error = details?.error ?? {};
      this.sink.emit({
        type: 'error',
        fatal: false,
        error: providerErrorFromServer(
          { type: error.type ?? 'server_error', code: error.code ?? null, message: error.message ?? 'the response failed' },
          this.options.apiKey,
          `${this.profile.label} response failed`,
          this.profile,
        ),
      });
    } else if (response.status === 'incomplete') {
      this.sink.log('info', { reason: details?.reason ?? undefined }, `${this.profile.label} response ended incomplete`);
    }
    if (this.activeResponseId === undefined || this.activeResponseId === response.id) this.activeResponseId = undefined;
    const group = this.callGroups.get(response.id);
    if (group !== undefined) group.done = true;
    // Results that came in while the response ran join whatever else waits: one response answers all.
    if (this.callsAnswered(response.id)) this.queue({});
    const queued = this.queued;
    if (queued !== undefined && !this.responseInFlight) {
      this.queued = undefined;
      this.requestResponse('queued', queued);
    }
  }

  /** Once the verbatim response is done: a completed one whose transcript is not the text is worth a warning. */
  private checkVerbatim(responseId: string, status: string | undefined): void {
    const verbatim = this.verbatim;
    if (verbatim?.responseId !== responseId) return;
    this.verbatim = undefined;
    if (status !== 'completed' || verbatim.spoken === undefined) return;
    if (comparable(verbatim.spoken) !== comparable(verbatim.text)) {
      this.sink.log('warn', { expected: verbatim.text, spoken: verbatim.spoken }, 'the welcome message was not spoken verbatim');
    }
  }

  private reportToolCall(callId: string, name: string, argumentsJson: string, responseId: string): void {
    if (this.reportedCalls.has(callId)) return;
    this.reportedCalls.add(callId);
    if (responseId !== '') {
      let group = this.callGroups.get(responseId);
      if (group === undefined) {
        group = { calls: new Set(), answered: new Set(), done: false };
        this.callGroups.set(responseId, group);
        if (this.callGroups.size > MAX_CALL_GROUPS) this.forgetGroup(this.callGroups.keys().next().value as string);
      }
      group.calls.add(callId);
      this.groupOfCall.set(callId, responseId);
    }
    this.log.functionCall(callId, name, argumentsJson);
    this.sink.emit({ type: 'tool_call', callId, name, argumentsJson });
  }

  /** True (once) when every call of a finished response has its result. */
  private callsAnswered(responseId: string): boolean {
    const group = this.callGroups.get(responseId);
    if (group === undefined || !group.done || group.answered.size < group.calls.size) return false;
    this.forgetGroup(responseId);
    return true;
  }

  /** The model answers all the results of a response in one response. */
  private answerCalls(responseId: string): void {
    if (this.callsAnswered(responseId)) this.requestResponse('tool_result');
  }

  private forgetGroup(responseId: string): void {
    for (const callId of this.callGroups.get(responseId)?.calls ?? []) this.groupOfCall.delete(callId);
    this.callGroups.delete(responseId);
  }

  private onServerError(error: ServerError): void {
    const code = error.code ?? undefined;
    const eventId = error.event_id ?? undefined;
    // The profile knows how its provider spells the races (OpenAI by code; xAI's codes are its error types).
    const kind = this.profile.errorKind(error);
    if (kind === 'cancel_not_active') {
      this.sink.log('debug', { code }, `harmless ${this.profile.label} error ignored`);
      return;
    }
    if (eventId !== undefined && this.pendingRequests.delete(eventId)) {
      const claimed = this.claimed?.eventId === eventId ? this.claimed : undefined;
      const request = this.requested?.eventId === eventId ? this.requested.request : (claimed?.request ?? {});
      if (this.requested?.eventId === eventId) this.requested = undefined;
      if (claimed !== undefined) {
        // The response.created taken as this request's answer was another response: the verbatim check is not about it.
        this.claimed = undefined;
        if (this.verbatim?.responseId === claimed.responseId) this.verbatim = undefined;
      }
      if (kind === 'response_active') {
        if (request.verbatim !== undefined) {
          // The server's VAD answered the caller first: caller speech wins over the welcome message, as with a
          // barge-in on it (the gateway's VAD cancels it the same way).
          this.sink.log('info', { eventId }, 'the caller spoke before the welcome message started: it is not spoken');
          return;
        }
        // A response the server started itself won the race: ask again once it is done.
        this.sink.log('debug', { eventId }, 'a response is already active: response.create queued');
        this.queue(request);
        return;
      }
    }
    if (eventId !== undefined) this.truncateRequests.delete(eventId);
    const providerError: ProviderError = providerErrorFromServer(error, this.options.apiKey, undefined, this.profile);
    this.sink.log('warn', { code, category: providerError.category, eventId }, `${this.profile.label} reported an error`);
    this.sink.emit({ type: 'error', fatal: false, error: providerError });
  }

  // ---- host requests ----------------------------------------------------------------------------

  /** Sends `response.create` now, or once the active response is done. */
  requestResponse(reason: string, request: ResponseRequest = {}): void {
    if (this.responseInFlight || this.offline || this.callerSpeaking) {
      if (this.queued === undefined) this.sink.log('debug', { reason }, 'response.create queued until the active response is done');
      this.queue(request);
      return;
    }
    const eventId = this.nextEventId('response');
    this.requested = { eventId, request };
    this.pendingRequests.add(eventId);
    if (this.pendingRequests.size > 64) this.pendingRequests.delete(this.pendingRequests.values().next().value as string);
    if (request.verbatim !== undefined && this.profile.verbatim === 'force_message') {
      // The server speaks the text itself and runs the whole response (created ... done): no response.create. Not
      // interruptible, as avr-sts-xai sends it: the welcome message plays whole (xAI drops caller audio meanwhile).
      this.sink.send(forceMessage(eventId, request.verbatim, false));
      return;
    }
    this.sink.send(responseCreate(eventId, request.verbatim === undefined ? undefined : verbatimResponse(request.verbatim)));
  }

  /** Requests queued together become one response; a verbatim one only if nothing else joined it. */
  private queue(request: ResponseRequest): void {
    this.queued = this.queued === undefined || this.queued.verbatim === request.verbatim ? request : {};
  }

  /**
   * The caller started talking (the gateway's VAD): cancel the response that is running or about to start, and
   * hold new ones until the turn ends.
   */
  callerStarted(): void {
    this.callerSpeaking = true;
    if (this.activeResponseId !== undefined) {
      this.cancelResponse(this.activeResponseId);
    } else if (this.requested !== undefined) {
      this.cancelOnCreate = true;
    }
  }

  /**
   * The caller's turn ended (the gateway's VAD): with `commit`, commit the audio sent since the last commit and
   * answer it; responses held meanwhile join that answer (or go out now, without a turn to commit).
   */
  callerStopped(commit: boolean): void {
    this.callerSpeaking = false;
    const queued = this.queued;
    this.queued = undefined;
    if (commit) {
      if (!this.offline) this.sink.send(inputCommit(this.nextEventId('commit')));
      this.requestResponse('caller_turn');
    } else if (queued !== undefined) {
      this.requestResponse('queued', queued);
    }
  }

  /**
   * The caller heard `heardMs` of an assistant item: tell the server, clamped to the audio it sent. A provider without
   * `conversation.item.truncate` (profile) cannot be told: its late audio is still dropped and a reply still being
   * generated is cancelled, but its model keeps the whole reply.
   */
  truncate(itemId: string, heardMs: number): void {
    const item = this.items.get(itemId);
    if (item === undefined || item.receivedBytes === 0) {
      // An item of a connection that is gone: only the log (for the next restore) can use it.
      if (item === undefined) this.log.assistantHeard(itemId, clampAudioEndMs(heardMs, Number.POSITIVE_INFINITY));
      this.sink.log('debug', { itemId, heardMs }, 'truncate skipped: no audio of that item on this connection');
      return;
    }
    const audioEndMs = clampAudioEndMs(heardMs, item.receivedBytes / this.codec.bytesPerMs);
    // Still being generated (a barge-in the server's VAD did not see): stop the response first, since the server
    // truncates only a finished audio message. In order, its cancel closes the item before the truncate arrives.
    if (!item.done && this.activeResponseId !== undefined) this.cancelResponse(this.activeResponseId);
    item.truncated = true;
    this.log.assistantHeard(itemId, audioEndMs);
    if (!this.profile.truncate) {
      this.sink.log('debug', { itemId, heardMs, audioEndMs }, `${this.profile.label} has no truncate: its model keeps the whole reply`);
      return;
    }
    const eventId = this.nextEventId('truncate');
    this.truncateRequests.add(eventId);
    if (this.truncateRequests.size > 64) this.truncateRequests.delete(this.truncateRequests.values().next().value as string);
    this.sink.send(truncateItem(eventId, itemId, audioEndMs));
    this.sink.log('debug', { itemId, heardMs, audioEndMs }, 'truncate sent');
  }

  /** A user text message (e.g. a DTMF note), answered by a response. */
  userText(text: string, reason: string): void {
    this.log.userText(text);
    if (!this.offline) this.sink.send(itemCreate(this.nextEventId('item'), { kind: 'user', text }, this.profile.assistantText));
    this.requestResponse(reason);
  }

  /**
   * The host ran a tool: its output goes in as a `function_call_output` item; a response follows once every call
   * of the same response has its result (parallel calls are answered together).
   */
  toolResult(callId: string, output: string): void {
    if (!this.reportedCalls.has(callId)) {
      // The server checks that the call is in the conversation: a result for another id is an error event.
      this.sink.log('warn', { callId }, `tool result for a call ${this.profile.label} never made: ignored`);
      return;
    }
    this.log.functionCallOutput(callId, output);
    if (!this.offline) this.sink.send(itemCreate(this.nextEventId('item'), { kind: 'function_call_output', callId, output }, this.profile.assistantText));
    const responseId = this.groupOfCall.get(callId);
    if (responseId === undefined) {
      this.requestResponse('tool_result');
      return;
    }
    this.callGroups.get(responseId)?.answered.add(callId);
    this.answerCalls(responseId);
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
    this.pendingRequests.clear();
    this.truncateRequests.clear();
    this.speakingItemId = undefined;
    this.serverHearsCaller = false;
    if (this.requested !== undefined) this.queue(this.requested.request);
    this.activeResponseId = undefined;
    this.requested = undefined;
    this.claimed = undefined;
    this.cancelOnCreate = false;
    this.verbatim = undefined;
    // The responses of this connection are over: their calls wait for results only.
    for (const [responseId, group] of [...this.callGroups]) {
      group.done = true;
      this.answerCalls(responseId);
    }
  }

  /**
   * A replacement connection is configured: re-create the conversation, then ask for a response if the
   * agent still owes one. Returns how many items were re-created.
   */
  restore(): number {
    this.offline = false;
    this.log.forgetItemIds();
    const items = this.log.toItems();
    for (const item of items) this.sink.send(itemCreate(this.nextEventId('restore'), item, this.profile.assistantText));
    const queued = this.queued;
    this.queued = undefined;
    // A tool result is answered once the other results of its response are in, not before.
    if (queued !== undefined) this.requestResponse('restore', queued);
    else if (this.log.owesResponse() && this.callGroups.size === 0) this.requestResponse('restore');
    return items.length;
  }
}

/** Text as spoken: case, punctuation and spacing do not count. */
function comparable(text: string): string {
  return text
    .toLowerCase()
    .replace(/[\p{P}\p{S}]+/gu, ' ')
    .replace(/\s+/g, ' ')
    .trim();
}

function isUserAudio(item: WireItem): boolean {
  return item.type === 'message' && item.role === 'user' && (item.content ?? []).some((part) => part.type === 'input_audio');
}
