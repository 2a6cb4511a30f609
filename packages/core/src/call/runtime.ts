import type { Logger } from 'pino';
import { PlayoutClock } from '../audio/playout-clock.js';
import { createResampler, type Resampler } from '../audio/resampler.js';
import { CallerAudioBatcher } from './caller-audio-batcher.js';
import type { ToolContext, ToolRunner } from '../contracts/llm.js';
import type { StsAdapter, StsEvent, StsSession, TurnMetrics } from '../contracts/sts.js';
import { ProviderError, toProviderError } from '../errors/provider-error.js';
import { AVR_FRAME_MS, AVR_SAMPLE_RATE, decodeAvrInbound, type AvrInbound, type AvrOutbound } from '../protocol/avr-sts.js';
import { PeerWarnings, RateBudget } from './budget.js';
import { systemClock, type CallClock, type CallTimer } from './clock.js';
import { OutboundPacer, OutboundQueue, type AudioPacer, type Pumpable } from './outbound.js';
import type { CallRecorder, RecordedToolStatus } from './recording.js';
import {
  DEFAULT_CALL_LIMITS,
  type AvrPeer,
  type CallCloseCode,
  type CallLimits,
  type CallMetric,
  type CallOutcome,
  type CallRuntimeObserver,
  type CallState,
  type PolicyViolation,
} from './types.js';

export interface CallRuntimeOptions {
  readonly adapter: StsAdapter;
  /** Where the call's messages to AVR Core go. */
  readonly peer: AvrPeer;
  /** The call's logger; once `init` arrives the runtime logs through a child with `callId`. */
  readonly logger: Logger;
  /** Names the provider in logs and metrics (default: `adapter.id`). */
  readonly providerId?: string | undefined;
  /** Handed to the adapter (the gateway passes the connect query string: `from`, `to`, custom keys). Default: none. */
  readonly metadata?: Readonly<Record<string, string>> | undefined;
  /** The agent's tools: declared to the adapter, run when the provider asks. */
  readonly tools?: ToolRunner | undefined;
  /**
   * A tool that has not answered after this long gets an error text sent to the provider in its place (its late
   * result is dropped). Default: no limit of the runtime's own (a ToolRunner bounds its tools itself).
   */
  readonly toolTimeoutMs?: number | undefined;
  /** Caller audio kept while the provider connects; older audio is dropped beyond this. Default 3000. */
  readonly earlyAudioBufferMs?: number | undefined;
  /** How far ahead of real time agent audio is sent: the depth of AVR Core's playback buffer. Default 120. */
  readonly outboundLeadMs?: number | undefined;
  /** A reply starting on an empty AVR buffer waits (at most this long) until this much audio is queued. Default 0: never. */
  readonly outboundStartBufferMs?: number | undefined;
  /** Default 10 000. */
  readonly providerConnectTimeoutMs?: number | undefined;
  /** A call with no `init` after this long ends. Default 10 000. */
  readonly initTimeoutMs?: number | undefined;
  /** What one call may do before it is cut off; defaults: {@link DEFAULT_CALL_LIMITS}. */
  readonly limits?: Partial<CallLimits> | undefined;
  /**
   * Caller frames (20 ms each) sent to the provider together, read for every frame, so a host can change it with its
   * load (the gateway sends 2 while its event loop is busy: fewer messages per call, up to 20 ms more before the
   * provider hears a frame). Default: 1, each frame as it arrives.
   */
  readonly callerAudioFramesPerSend?: (() => number) | undefined;
  /** Every clock reading and timer of the call. Default: {@link systemClock}. */
  readonly clock?: CallClock | undefined;
  /** Paces agent audio (share one across calls). Default: a pacer of the call's own, stopped when it ends. */
  readonly pacer?: AudioPacer | undefined;
  readonly observer?: CallRuntimeObserver | undefined;
  /** Told what the call sends and receives, for a recording (the gateway's, when enabled). Default: none. */
  readonly recorder?: CallRecorder | undefined;
}

/** Close reasons (a WebSocket close reason is at most 123 bytes). */
const POLICY_CLOSE_REASONS = {
  message_rate: 'too many messages per second',
  protocol_errors: 'too many malformed messages',
  not_reading: 'not reading',
} as const satisfies Record<PolicyViolation, string>;

const MAX_EARLY_DTMF = 32;
const DTMF_BURST_GAP_MS = 1000;
/** Distinct unknown message types logged at warn level per call; the rest at debug. */
const MAX_UNKNOWN_TYPES_LOGGED = 8;
/** With agent audio held back by the peer's backlog for this long, the peer is not reading: the call ends. */
const STALLED_PEER_MS = 15_000;
/** Inbound message budget: this many seconds of the sustained rate may arrive at once (a burst after a network stall). */
const MESSAGE_BURST_SECONDS = 5;
/** Protocol errors are forgiven at this rate. */
const PROTOCOL_ERRORS_REFILL_PER_SECOND = 1;
/** A call-control tool waits at most this long for the agent's last words to be heard. */
const MAX_AUDIO_DRAIN_WAIT_MS = 30_000;
/** AVR Core's own jitter buffer on top of what the playout clock models. */
const AUDIO_DRAIN_MARGIN_MS = 200;
const DEFAULTS = {
  earlyAudioBufferMs: 3000,
  outboundLeadMs: 120,
  outboundStartBufferMs: 0,
  providerConnectTimeoutMs: 10_000,
  initTimeoutMs: 10_000,
} as const;

/** What a tool call hands back to the provider, and how it ended. */
interface ToolResult {
  readonly output: string;
  readonly status: RecordedToolStatus;
}

interface DrainWait {
  timer: CallTimer | undefined;
  readonly resolve: () => void;
}

/**
 * One AVR call, with no socket: `awaiting_init -> connecting -> active -> closing -> closed`. The host feeds it what
 * AVR Core sends (`receive`, `receiveMessage`, `peerClosed`) and it answers through its {@link AvrPeer}: it opens the
 * provider session (bounded by a timeout, caller audio buffered meanwhile), resamples both ways, paces agent audio
 * in 20 ms frames against a model of AVR Core's playout, interrupts playback when the caller speaks over the agent,
 * runs tools, enforces the call's budgets and idle timeout, and tears everything down once (`close()` is idempotent
 * and leaves no timer or listener behind). The runtime starts its init timer when constructed.
 */
export class CallRuntime implements Pumpable {
  private stateValue: CallState = 'awaiting_init';
  private log: Logger;
  private callIdValue: string | undefined;
  private session: StsSession | undefined;
  private readonly abort = new AbortController();
  private readonly clock: CallClock;
  private readonly playout: PlayoutClock;
  private readonly outbound = new OutboundQueue();
  private readonly pacer: AudioPacer;
  private readonly peer: AvrPeer;
  private readonly providerId: string;
  private readonly settings: {
    readonly earlyAudioBufferMs: number;
    readonly outboundLeadMs: number;
    readonly outboundStartBufferMs: number;
    readonly providerConnectTimeoutMs: number;
  };
  private inputResampler: Resampler | undefined;
  private readonly callerAudio: CallerAudioBatcher;
  private outputResampler: Resampler | undefined;
  private earlyAudio: Int16Array[] = [];
  private earlyAudioSamples = 0;
  private earlyDtmf: string[] = [];
  /** The reply whose audio was pushed last (the one a barge-in interrupts). */
  private currentResponseId: string | undefined;
  /** Replies still producing audio (no `response_done` yet). */
  private readonly openResponses = new Set<string>();
  private readonly startedAt: number;
  /** When the provider last reported the end of the caller's speech, until the reply's first audio goes out. */
  private speechStoppedAt: number | undefined;
  private lastSentResponseId: string | undefined;
  /** Unknown message types already logged (bounded). */
  private readonly unknownTypesSeen = new Set<string>();
  /** A reply cut by barge-in: audio for it still in flight from the provider is dropped. */
  private interruptedResponseId: string | undefined;
  /** When the first frame of a burst began waiting for `outboundStartBufferMs` of audio. */
  private burstWaitSince: number | undefined;
  /** The provider ended the conversation on purpose: the call ends once its last words are heard. */
  private providerEnded = false;
  private readonly drainWaits = new Set<DrainWait>();
  private readonly toolTimers = new Set<CallTimer>();
  private initTimer: CallTimer | undefined;
  private idleTimer: CallTimer | undefined;
  private connectTimer: CallTimer | undefined;
  private lastInboundAt: number;
  /** Since when agent audio has been held back because the peer is not reading. */
  private stalledSince: number | undefined;
  private readonly limits: CallLimits;
  private readonly messageBudget: RateBudget;
  private readonly protocolErrorBudget: RateBudget;
  private readonly dtmfBudget: RateBudget;
  /** When the DTMF budget last dropped a digit, and how many it dropped in this call. */
  private lastDtmfDropAt: number | undefined;
  private droppedDtmf = 0;
  private readonly peerWarnings: PeerWarnings;
  private closedResolve!: () => void;
  /** Resolves once the call is fully closed (provider session included). */
  readonly closed: Promise<void> = new Promise((resolve) => (this.closedResolve = resolve));

  constructor(private readonly options: CallRuntimeOptions) {
    this.log = options.logger;
    this.peer = options.peer;
    this.providerId = options.providerId ?? options.adapter.id;
    const clock = (this.clock = options.clock ?? systemClock());
    const now = () => clock.now();
    this.settings = {
      earlyAudioBufferMs: options.earlyAudioBufferMs ?? DEFAULTS.earlyAudioBufferMs,
      outboundLeadMs: options.outboundLeadMs ?? DEFAULTS.outboundLeadMs,
      outboundStartBufferMs: options.outboundStartBufferMs ?? DEFAULTS.outboundStartBufferMs,
      providerConnectTimeoutMs: options.providerConnectTimeoutMs ?? DEFAULTS.providerConnectTimeoutMs,
    };
    // A pacer of the call's own stops its timer when the call cancels itself on close.
    this.pacer = options.pacer ?? new OutboundPacer(10, clock);
    this.playout = new PlayoutClock(now);
    this.callerAudio = new CallerAudioBatcher(this.sendCallerAudio, options.callerAudioFramesPerSend ?? (() => 1), clock);
    this.startedAt = now();
    this.limits = { ...DEFAULT_CALL_LIMITS, ...options.limits };
    this.messageBudget = new RateBudget(this.limits.maxMessagesPerSecond, this.limits.maxMessagesPerSecond * MESSAGE_BURST_SECONDS, now);
    this.protocolErrorBudget = new RateBudget(PROTOCOL_ERRORS_REFILL_PER_SECOND, this.limits.maxProtocolErrors, now);
    this.dtmfBudget = new RateBudget(this.limits.maxDtmfPerSecond, this.limits.maxDtmfPerSecond * 2, now);
    this.peerWarnings = new PeerWarnings(() => this.log, undefined, undefined, now);
    this.lastInboundAt = now();
    this.record({ type: 'call_opened' });
    this.initTimer = clock.setTimeout(() => {
      this.sendError('no init message received');
      void this.end('protocol_error', 'no init', 'init_timeout');
    }, options.initTimeoutMs ?? DEFAULTS.initTimeoutMs);
  }

  get state(): CallState {
    return this.stateValue;
  }

  /** The AVR call uuid, once `init` has arrived. */
  get callId(): string | undefined {
    return this.callIdValue;
  }

  // ---- inbound (AVR Core -> provider) -------------------------------------------------------

  /** One message of AVR's STS protocol as it came off the wire: JSON text, or the bytes of a binary frame (refused). */
  receive(frame: string | Uint8Array): void {
    this.guard(() => this.decodeMessage(frame));
  }

  /** One message already decoded (a transport that is not AVR's JSON, e.g. raw PCM over HTTP). */
  receiveMessage(message: AvrInbound): void {
    this.guard(() => this.dispatch(message));
  }

  /** Inbound is dropped once the call is closing; every message is counted against the call's budget first. */
  private guard(handle: () => void): void {
    if (this.stateValue === 'closing' || this.stateValue === 'closed') return;
    const now = this.clock.now();
    this.lastInboundAt = now;
    if (!this.messageBudget.take(now)) {
      this.violatePolicy('message_rate', `more than ${this.limits.maxMessagesPerSecond} messages per second: closing the call`);
      return;
    }
    try {
      handle();
    } catch (error) {
      this.internalError(error, 'failed to handle a message from AVR Core');
    }
  }

  /** An adapter bug must cost at most this message, never the process or another call. */
  private internalError(error: unknown, logMessage: string): void {
    this.record({ type: 'error', kind: 'internal' });
    this.log.error({ err: error }, logMessage);
    this.sendError('internal error while handling the message');
  }

  private decodeMessage(data: string | Uint8Array): void {
    if (typeof data !== 'string') {
      this.protocolProblem('binary_frame', 'binary frames are not supported: send JSON text messages');
      return;
    }
    const decoded = decodeAvrInbound(data);
    if (!decoded.ok) {
      if (decoded.error.code === 'unknown_type') this.ignoreUnknownType(decoded.error.messageType, decoded.error.message);
      else this.protocolProblem(decoded.error.code, decoded.error.message);
      return;
    }
    this.dispatch(decoded.message);
  }

  private dispatch(message: AvrInbound): void {
    switch (message.type) {
      case 'init':
        this.onInit(message.uuid);
        return;
      case 'audio':
        this.onAudio(message.samples);
        return;
      case 'dtmf_digit':
        this.onDtmf(message.digit);
        return;
    }
  }

  /**
   * A message type the runtime does not know (a newer AVR Core may add some): ignored, without an AVR `error` (which
   * would fire AVR's error webhooks); logged once per type per call.
   */
  private ignoreUnknownType(messageType: string | undefined, message: string): void {
    this.record({ type: 'error', kind: 'protocol_unknown_type' });
    const key = messageType ?? '';
    if (this.unknownTypesSeen.has(key) || this.unknownTypesSeen.size >= MAX_UNKNOWN_TYPES_LOGGED) {
      this.log.debug({ messageType }, `${message} ignored`);
      return;
    }
    this.unknownTypesSeen.add(key);
    this.log.warn({ messageType }, `${message} ignored (logged once per call)`);
  }

  private onInit(uuid: string): void {
    if (this.stateValue !== 'awaiting_init') {
      // As AVR's own STS containers do: a repeated init changes nothing and is not an error.
      this.log.debug('duplicate init ignored: the call is already initialised');
      return;
    }
    this.initTimer?.clear();
    this.initTimer = undefined;
    this.armIdleTimer(this.limits.idleTimeoutMs);
    this.callIdValue = uuid;
    this.log = this.options.logger.child({ callId: uuid });
    this.stateValue = 'connecting';
    this.log.info({ provider: this.providerId }, 'call started');
    this.options.recorder?.start({ callId: uuid, providerId: this.providerId, metadata: this.options.metadata ?? {} }, this.lastInboundAt);
    void this.connect(uuid);
  }

  private onAudio(samples: Int16Array): void {
    this.record({ type: 'caller_audio' });
    // `lastInboundAt`: when this message arrived (read once per message by guard()).
    if (this.stateValue === 'connecting' || this.stateValue === 'active') this.options.recorder?.callerAudio(samples, this.lastInboundAt);
    switch (this.stateValue) {
      case 'awaiting_init':
        this.protocolProblem('audio_before_init', 'audio received before init; send init first');
        return;
      case 'connecting':
        this.bufferEarlyAudio(samples);
        return;
      case 'active':
        this.forwardAudio(samples);
        return;
      case 'closing':
      case 'closed':
        return;
    }
  }

  private onDtmf(digit: string): void {
    switch (this.stateValue) {
      case 'awaiting_init':
        this.protocolProblem('dtmf_before_init', 'dtmf_digit received before init; send init first');
        return;
      case 'connecting':
        if (this.admitDtmf(digit) && this.earlyDtmf.length < MAX_EARLY_DTMF) this.earlyDtmf.push(digit);
        return;
      case 'active':
        if (!this.admitDtmf(digit)) return;
        // The digit follows the audio the caller sent before it.
        this.callerAudio.flush();
        this.session?.sendDtmf(digit);
        return;
      case 'closing':
      case 'closed':
        return;
    }
  }

  /** Faster than a keypad can send: excess digits are dropped, with one log line per burst. */
  private admitDtmf(digit: string): boolean {
    const now = this.clock.now();
    if (!this.dtmfBudget.take(now)) {
      // One line per burst: a burst ends when no digit has been dropped for a second.
      if (this.lastDtmfDropAt === undefined || now - this.lastDtmfDropAt > DTMF_BURST_GAP_MS) {
        this.peerWarnings.warn({ digit }, `more than ${this.limits.maxDtmfPerSecond} DTMF digits per second: dropping digits`);
      }
      this.lastDtmfDropAt = now;
      this.droppedDtmf++;
      this.record({ type: 'dtmf_dropped' });
      return false;
    }
    return true;
  }

  private bufferEarlyAudio(samples: Int16Array): void {
    const limit = (this.settings.earlyAudioBufferMs * AVR_SAMPLE_RATE) / 1000;
    this.earlyAudio.push(samples);
    this.earlyAudioSamples += samples.length;
    while (this.earlyAudioSamples > limit && this.earlyAudio.length > 0) {
      const dropped = this.earlyAudio.shift() as Int16Array;
      this.earlyAudioSamples -= dropped.length;
      this.record({ type: 'early_audio_dropped' });
    }
  }

  private forwardAudio(samples: Int16Array): void {
    if (this.session !== undefined) this.callerAudio.push(samples);
  }

  private readonly sendCallerAudio = (samples: Int16Array): void => {
    const session = this.session;
    if (session === undefined) return;
    // Also called by the batcher's timer, outside any message's guard.
    try {
      const resampled = this.inputResampler ? this.inputResampler.process(samples) : samples;
      if (resampled.length > 0) session.sendAudio(resampled);
    } catch (error) {
      this.internalError(error, 'failed to send caller audio to the provider');
    }
  };

  // ---- provider session ---------------------------------------------------------------------

  private async connect(uuid: string): Promise<void> {
    const { adapter } = this.options;
    const { providerId } = this;
    const timeoutMs = this.settings.providerConnectTimeoutMs;
    const started = this.clock.now();
    const timeout = new Promise<never>((_, reject) => {
      this.connectTimer = this.clock.setTimeout(
        () => reject(new ProviderError(providerId, 'timeout', `provider did not connect within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    let attempt: Promise<StsSession>;
    try {
      attempt = adapter.connect({
        callId: uuid,
        metadata: this.options.metadata ?? {},
        logger: this.log,
        signal: this.abort.signal,
        tools: this.options.tools?.specs ?? [],
        observer: { reconnecting: (provider) => this.record({ type: 'provider_reconnecting', provider }) },
      });
    } catch (error) {
      // An adapter that throws instead of rejecting fails the same way.
      attempt = Promise.reject(error);
    }
    let session: StsSession;
    try {
      session = await Promise.race([attempt, timeout]);
    } catch (error) {
      const providerError = toProviderError(providerId, error);
      this.record({ type: 'provider_connect', outcome: 'failure', durationMs: this.clock.now() - started });
      // A session that opens after we gave up must not leak.
      attempt.then((late) => late.close()).catch(() => undefined);
      if (this.stateValue === 'connecting') {
        this.record({ type: 'error', kind: `provider_${providerError.category}` });
        this.log.error({ err: providerError, category: providerError.category }, 'provider connection failed');
        this.sendError(`provider connection failed: ${providerError.message}`);
        await this.end('provider_failure', 'provider connection failed', 'provider_error');
      }
      return;
    } finally {
      this.connectTimer?.clear();
      this.connectTimer = undefined;
    }
    this.record({ type: 'provider_connect', outcome: 'success', durationMs: this.clock.now() - started });
    if (this.stateValue !== 'connecting') {
      await session.close();
      return;
    }
    this.session = session;
    if (session.inputSampleRate !== AVR_SAMPLE_RATE) this.inputResampler = createResampler(AVR_SAMPLE_RATE, session.inputSampleRate);
    if (session.outputSampleRate !== AVR_SAMPLE_RATE) this.outputResampler = createResampler(session.outputSampleRate, AVR_SAMPLE_RATE);
    this.stateValue = 'active';
    this.log.debug({ inputRate: session.inputSampleRate, outputRate: session.outputSampleRate }, 'provider session ready');
    for (const chunk of this.earlyAudio) this.forwardAudio(chunk);
    for (const digit of this.earlyDtmf) session.sendDtmf(digit);
    this.earlyAudio = [];
    this.earlyAudioSamples = 0;
    this.earlyDtmf = [];
    void this.consume(session);
  }

  private async consume(session: StsSession): Promise<void> {
    try {
      for await (const event of session.events) {
        if (this.stateValue !== 'active') break;
        this.onProviderEvent(session, event);
      }
    } catch (error) {
      if (this.stateValue === 'active') {
        const providerError = toProviderError(this.providerId, error);
        this.record({ type: 'error', kind: `provider_${providerError.category}` });
        this.log.error({ err: providerError }, 'provider session failed');
        this.sendError(`provider error: ${providerError.message}`);
        await this.end('provider_failure', 'provider error', 'provider_error');
      }
      return;
    }
    if (this.stateValue === 'active' && !this.providerEnded) {
      this.log.warn('provider ended the session');
      this.sendError('the provider ended the session');
      await this.end('provider_failure', 'provider ended the session', 'provider_closed');
    }
  }

  private onProviderEvent(session: StsSession, event: StsEvent): void {
    switch (event.type) {
      case 'audio': {
        if (event.responseId === this.interruptedResponseId) return;
        const samples = this.outputResampler ? this.outputResampler.process(event.samples) : event.samples;
        this.currentResponseId = event.responseId;
        this.openResponses.add(event.responseId);
        this.outbound.push(event.responseId, samples);
        this.pacer.schedule(this);
        return;
      }
      case 'response_done': {
        this.openResponses.delete(event.responseId);
        if (event.responseId === this.interruptedResponseId) return;
        const tail = this.outputResampler?.flush();
        if (tail !== undefined && tail.length > 0) this.outbound.push(event.responseId, tail);
        this.outbound.endResponse(event.responseId);
        this.pacer.schedule(this);
        return;
      }
      case 'speech_started':
        this.speechStoppedAt = undefined;
        if (this.bargeIn(session, true) && event.onsetAgoMs !== undefined) {
          this.record({ type: 'barge_in_reaction', durationMs: Math.max(0, event.onsetAgoMs) });
        }
        return;
      case 'interrupted':
        this.bargeIn(session, false);
        return;
      case 'speech_stopped':
        this.speechStoppedAt = this.clock.now();
        return;
      case 'transcript':
        if (!event.final) return;
        this.log.debug({ role: event.role, text: event.text }, 'transcript');
        this.sendControl({ type: 'transcript', role: event.role, text: event.text });
        return;
      case 'tool_call':
        void this.runTool(session, event.callId, event.name, event.argumentsJson);
        return;
      case 'turn_metrics':
        this.recordTurnMetrics(event.metrics);
        return;
      case 'ended':
        this.providerEnded = true;
        this.log.info({ reason: event.reason }, 'the provider ended the conversation');
        void this.untilAgentAudioHeard().then(() => this.end('normal', 'conversation ended', 'provider_ended'));
        return;
      case 'error': {
        const { error } = event;
        this.record({ type: 'error', kind: `provider_${error.category}` });
        this.log.error({ err: error, category: error.category, fatal: event.fatal }, 'provider error');
        this.sendError(`provider error: ${error.message}`);
        if (event.fatal) void this.end('provider_failure', 'provider error', 'provider_error');
        return;
      }
      default: {
        // An event type this runtime does not know (a newer adapter's): ignored. Compile-time: none is left out.
        const unknown: never = event;
        this.log.debug({ eventType: (unknown as { type?: unknown }).type }, 'unknown provider event ignored');
        return;
      }
    }
  }

  private recordTurnMetrics(metrics: TurnMetrics): void {
    this.record({ type: 'turn_metrics', metrics });
    if (metrics.endOfSpeechToFirstAudioMs !== undefined) this.record({ type: 'response_latency', durationMs: metrics.endOfSpeechToFirstAudioMs });
    this.log.debug({ turn: metrics }, 'turn timings');
  }

  /**
   * The caller spoke over the agent (or the provider cancelled its reply): if agent audio is
   * audible or queued, or a reply is still streaming in (a provider slower than real time leaves
   * gaps in which nothing is queued), drop it, tell AVR Core to flush its buffer, and tell the
   * provider how much of the reply the caller actually heard. False when there was nothing to interrupt.
   */
  private bargeIn(session: StsSession, truncate: boolean): boolean {
    const responseId = this.currentResponseId;
    const replyStreaming = responseId !== undefined && this.openResponses.has(responseId);
    if (!replyStreaming && !this.playout.isPlaying() && !this.outbound.hasAudio()) return false;
    const heardMs = responseId === undefined ? 0 : this.playout.heardMs(responseId);
    this.outbound.clear();
    this.outputResampler?.reset();
    this.playout.flush();
    this.pacer.cancel(this);
    if (responseId !== undefined) {
      this.interruptedResponseId = responseId;
      this.openResponses.delete(responseId);
    }
    this.sendControl({ type: 'interruption' });
    this.record({ type: 'interruption' });
    this.log.debug({ responseId, heardMs }, 'barge-in');
    if (truncate && responseId !== undefined && this.options.adapter.capabilities.truncation) session.truncate(responseId, heardMs);
    return true;
  }

  // ---- tools ---------------------------------------------------------------------------------

  private async runTool(session: StsSession, toolCallId: string, name: string, argumentsJson: string): Promise<void> {
    const tools = this.options.tools;
    const startedAtMs = this.clock.now();
    let result: ToolResult;
    if (tools === undefined) {
      this.log.warn({ tool: name }, 'the provider requested a tool, but no tools are configured');
      result = { output: `Error: tool "${name}" is not available`, status: 'unavailable' };
    } else {
      this.log.info({ tool: name }, 'running tool');
      result = await this.toolOutput(tools, name, argumentsJson);
    }
    if (this.stateValue !== 'active') return;
    this.options.recorder?.toolCall({ name, argumentsJson, ...result, startedAtMs, endedAtMs: this.clock.now() });
    if (this.session === session) session.submitToolResult(toolCallId, result.output);
  }

  /** The tool's answer; a runner that breaks the contract (throws) or outlasts `toolTimeoutMs` gets an error text. */
  private toolOutput(tools: ToolRunner, name: string, argumentsJson: string): Promise<ToolResult> {
    // Aborted when the call ends and when this runtime stops waiting for the tool.
    const cancel = new AbortController();
    const onCallEnd = (): void => cancel.abort();
    this.abort.signal.addEventListener('abort', onCallEnd, { once: true });
    const context: ToolContext = {
      callId: this.callIdValue ?? '',
      logger: this.log,
      signal: cancel.signal,
      untilAgentAudioHeard: () => this.untilAgentAudioHeard(),
    };
    let running: Promise<string>;
    try {
      running = tools.run(name, argumentsJson, context);
    } catch (error) {
      running = Promise.reject(error);
    }
    const run = running
      .then((output): ToolResult => ({ output, status: 'ok' }))
      .catch((error: unknown): ToolResult => {
        this.log.error({ err: error, tool: name }, 'the tool runner failed');
        return { output: `Error: tool "${name}" failed`, status: 'failed' };
      })
      .finally(() => this.abort.signal.removeEventListener('abort', onCallEnd));
    const timeoutMs = this.options.toolTimeoutMs;
    if (timeoutMs === undefined) return run;
    return new Promise((resolve) => {
      const timer = this.clock.setTimeout(() => {
        this.toolTimers.delete(timer);
        this.log.warn({ tool: name, timeoutMs }, 'tool timed out');
        cancel.abort();
        resolve({ output: `Error: tool "${name}" timed out after ${timeoutMs} ms`, status: 'timeout' });
      }, timeoutMs);
      this.toolTimers.add(timer);
      void run.then((result) => {
        timer.clear();
        this.toolTimers.delete(timer);
        resolve(result);
      });
    });
  }

  /** Resolves when no reply is still producing audio and everything sent has been played. */
  private untilAgentAudioHeard(): Promise<void> {
    const started = this.clock.now();
    return new Promise((resolve) => {
      const wait: DrainWait = { timer: undefined, resolve };
      const check = () => {
        const drained = this.openResponses.size === 0 && !this.outbound.hasAudio() && !this.playout.isPlaying();
        const ended = this.stateValue === 'closing' || this.stateValue === 'closed';
        if (ended || this.clock.now() - started > MAX_AUDIO_DRAIN_WAIT_MS) {
          this.drainWaits.delete(wait);
          resolve();
        } else if (drained) {
          wait.timer = this.clock.setTimeout(() => {
            this.drainWaits.delete(wait);
            resolve();
          }, AUDIO_DRAIN_MARGIN_MS);
        } else {
          wait.timer = this.clock.setTimeout(check, AVR_FRAME_MS);
        }
      };
      this.drainWaits.add(wait);
      check();
    });
  }

  // ---- outbound (provider -> AVR Core) ------------------------------------------------------

  /** Send the agent audio that fits in AVR Core's buffer now; true while audio is still waiting. Called by the pacer. */
  pump(): boolean {
    if (this.stateValue !== 'active' || !this.peer.open) return false;
    if (this.peer.backlog !== 'clear') {
      const now = this.clock.now();
      this.stalledSince ??= now;
      if (now - this.stalledSince < STALLED_PEER_MS) return true;
      this.violatePolicy('not_reading', `AVR Core has not read the call's audio for ${STALLED_PEER_MS / 1000} s: closing the call`);
      return false;
    }
    this.stalledSince = undefined;
    if (this.holdBurstStart()) return true;
    let sent = 0;
    while (this.playout.queuedMs() < this.settings.outboundLeadMs) {
      const frame = this.outbound.shift();
      if (frame === undefined) break;
      // A reply's audio that reaches AVR Core after its buffer ran dry: the caller heard a gap in the middle of it.
      if (frame.responseId === this.lastSentResponseId && !this.playout.isPlaying()) this.record({ type: 'late_agent_audio' });
      if (frame.responseId !== this.lastSentResponseId) {
        this.lastSentResponseId = frame.responseId;
        // The first audio of a reply after the provider reported the end of the caller's speech.
        if (this.speechStoppedAt !== undefined) {
          this.record({ type: 'response_latency', durationMs: this.clock.now() - this.speechStoppedAt });
          this.speechStoppedAt = undefined;
        }
      }
      this.peer.sendAudio(frame.samples);
      // It plays after what AVR Core has queued (now, on an idle buffer).
      this.options.recorder?.agentAudio(frame.samples, this.clock.now() + this.playout.queuedMs());
      this.playout.enqueue(frame.responseId, AVR_FRAME_MS);
      sent++;
    }
    if (sent > 0) this.record({ type: 'agent_frames', count: sent });
    return this.outbound.pendingFrames > 0;
  }

  /**
   * Agent audio that starts on an empty AVR Core buffer is held until `outboundStartBufferMs` of it is queued, the
   * reply is complete, or its first frame has waited that long. A provider streaming in real time (Speechmatics
   * Flow: 40 ms chunks, less one frame of resampler delay for the first) would otherwise leave the caller a gap
   * after the first frame of every reply.
   */
  private holdBurstStart(): boolean {
    const startBufferMs = this.settings.outboundStartBufferMs;
    if (startBufferMs <= 0 || this.playout.isPlaying() || this.outbound.pendingFrames === 0) {
      this.burstWaitSince = undefined;
      return false;
    }
    const now = this.clock.now();
    this.burstWaitSince ??= now;
    if (this.outbound.pendingMs >= startBufferMs || this.outbound.frontReplyComplete() || now - this.burstWaitSince >= startBufferMs) {
      this.burstWaitSince = undefined;
      return false;
    }
    return true;
  }

  /**
   * Control messages go straight to the peer: they never wait behind queued audio. They are bounded too: a peer
   * whose backlog overflows is not reading, and the call ends instead of buffering without limit.
   */
  private sendControl(message: AvrOutbound): void {
    if (!this.peer.open) return;
    if (this.peer.backlog === 'overflowing') {
      this.violatePolicy('not_reading', 'AVR Core is not reading what the gateway sends: closing the call');
      return;
    }
    this.options.recorder?.controlSent(message, this.clock.now());
    this.peer.sendControl(message);
  }

  private sendError(message: string): void {
    this.sendControl({ type: 'error', message });
  }

  /** A malformed message: one `error` back (unless the peer is not reading its replies), within the call's error budget. */
  private protocolProblem(kind: string, message: string): void {
    this.record({ type: 'error', kind: `protocol_${kind}` });
    if (!this.protocolErrorBudget.take()) {
      this.violatePolicy('protocol_errors', `more than ${this.limits.maxProtocolErrors} malformed messages: closing the call`);
      return;
    }
    this.peerWarnings.warn({ kind }, message);
    if (this.peer.backlog === 'clear') this.sendError(message);
  }

  /** The peer broke a per-call budget: one `error` (if it reads), a policy close, and the connection is dropped. */
  private violatePolicy(kind: PolicyViolation, message: string): void {
    if (this.stateValue === 'closing' || this.stateValue === 'closed') return;
    this.record({ type: 'policy_close', kind });
    this.log.warn({ kind }, message);
    if (kind !== 'not_reading' && this.peer.open) {
      this.options.recorder?.controlSent({ type: 'error', message }, this.clock.now());
      this.peer.sendControl({ type: 'error', message });
    }
    void this.end('policy_violation', POLICY_CLOSE_REASONS[kind], `policy_${kind}`, true);
  }

  /** Idle check without a timer per message: when the timer fires, it is re-armed for what is left of the window. */
  private armIdleTimer(delayMs: number): void {
    this.idleTimer = this.clock.setTimeout(() => {
      const idleMs = this.clock.now() - this.lastInboundAt;
      if (idleMs < this.limits.idleTimeoutMs) {
        this.armIdleTimer(this.limits.idleTimeoutMs - idleMs);
        return;
      }
      const message = `no message from AVR Core for ${Math.round(this.limits.idleTimeoutMs / 1000)} s: closing the call`;
      this.log.warn({ idleMs: Math.round(idleMs) }, message);
      this.sendError(message);
      void this.end('going_away', 'idle timeout', 'idle_timeout');
    }, delayMs);
  }

  private record(metric: CallMetric): void {
    this.options.observer?.record(metric);
  }

  // ---- teardown ------------------------------------------------------------------------------

  /** AVR Core hung up (closed the socket, ended the request, went away). `code`: its close code, if it gave one. */
  peerClosed(code?: number): void {
    this.log.info({ code }, 'AVR Core closed the call');
    void this.end('normal', undefined, 'completed');
  }

  /** A broken frame or a reset connection: the client's fault, so one short line (no stack), rate-limited. */
  peerError(error: Error): void {
    this.record({ type: 'error', kind: 'socket' });
    this.peerWarnings.warn({ code: (error as NodeJS.ErrnoException).code, reason: error.message }, 'call socket error');
  }

  /** End the call normally (the host's decision). Idempotent; resolves once the provider session is closed too. */
  close(): Promise<void> {
    return this.end('normal', undefined, 'completed');
  }

  /** The host is stopping: tell AVR Core why, then close. */
  async shutdown(): Promise<void> {
    this.sendError('the gateway is shutting down');
    await this.end('going_away', 'gateway shutting down', 'shutdown');
  }

  /** Close the peer if it is still open, then the provider session. Idempotent. */
  private async end(code: CallCloseCode, reason: string | undefined, outcome: CallOutcome, dropConnection = false): Promise<void> {
    if (this.stateValue === 'closing' || this.stateValue === 'closed') return this.closed;
    this.stateValue = 'closing';
    this.options.recorder?.end(outcome, this.clock.now());
    this.initTimer?.clear();
    this.idleTimer?.clear();
    this.connectTimer?.clear();
    this.initTimer = this.idleTimer = this.connectTimer = undefined;
    for (const timer of this.toolTimers) timer.clear();
    this.toolTimers.clear();
    this.abort.abort();
    this.pacer.cancel(this);
    this.outbound.clear();
    this.earlyAudio = [];
    this.callerAudio.clear();
    for (const wait of this.drainWaits) {
      wait.timer?.clear();
      wait.resolve();
    }
    this.drainWaits.clear();
    this.peer.close(code, reason, dropConnection);
    try {
      await this.session?.close();
    } catch (error) {
      this.log.warn({ err: error }, 'provider session did not close cleanly');
    }
    this.session = undefined;
    this.stateValue = 'closed';
    this.record({ type: 'call_closed', outcome, durationMs: this.clock.now() - this.startedAt });
    this.peer.dispose?.();
    this.peerWarnings.flush();
    this.log.info({ outcome, ...(this.droppedDtmf > 0 ? { droppedDtmf: this.droppedDtmf } : {}) }, 'call ended');
    this.closedResolve();
  }
}
