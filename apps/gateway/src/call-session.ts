import type { Logger } from 'pino';
import {
  AVR_FRAME_MS,
  AVR_SAMPLE_RATE,
  PlayoutClock,
  ProviderError,
  createResampler,
  decodeAvrInbound,
  toProviderError,
  type AvrOutbound,
  type Resampler,
  type StsAdapter,
  type StsEvent,
  type StsSession,
  type ToolRunner,
  type TurnMetrics,
} from '@stsgate/core';
import { PeerWarnings, RateBudget } from './budget.js';
import type { CallInbound, CallTransport } from './call-transport.js';
import type { GatewayMetrics } from './metrics.js';
import { OutboundQueue, type OutboundPacer, type Pumpable } from './outbound.js';

export type CallState = 'awaiting_init' | 'connecting' | 'active' | 'closing' | 'closed';

export interface CallSessionOptions {
  readonly adapter: StsAdapter;
  readonly providerId: string;
  readonly logger: Logger;
  readonly metrics: GatewayMetrics;
  readonly pacer: OutboundPacer;
  /** The connect query string (AVR Core appends `from`, `to`, `uniqueid`, `channel`, custom keys). */
  readonly metadata: Readonly<Record<string, string>>;
  readonly earlyAudioBufferMs: number;
  readonly outboundLeadMs: number;
  /** See `OUTBOUND_START_BUFFER_MS` (default 0 here: send at once). */
  readonly outboundStartBufferMs?: number;
  readonly providerConnectTimeoutMs: number;
  readonly tools?: ToolRunner;
  readonly initTimeoutMs?: number;
  /** What one connection may do before it is cut off; defaults: {@link DEFAULT_CALL_LIMITS}. */
  readonly limits?: Partial<CallLimits>;
  readonly now?: () => number;
}

/** Per-connection budgets: one hostile or broken client costs a bounded amount and never hurts another call. */
export interface CallLimits {
  /** No inbound message for this long ends the call (AVR Core streams audio every 20 ms while a call lasts). */
  readonly idleTimeoutMs: number;
  /** Sustained inbound messages per second (AVR Core sends 50); bursts of 5 s worth pass. Beyond: error + close 1008. */
  readonly maxMessagesPerSecond: number;
  /** Malformed messages tolerated in a burst (refilled one per second). Beyond: error + close 1008. */
  readonly maxProtocolErrors: number;
  /** Sustained DTMF digits per second (bursts of twice that pass); excess digits are dropped. */
  readonly maxDtmfPerSecond: number;
}

export const DEFAULT_CALL_LIMITS: CallLimits = { idleTimeoutMs: 120_000, maxMessagesPerSecond: 200, maxProtocolErrors: 10, maxDtmfPerSecond: 10 };

/** WebSocket close codes used towards AVR Core (other transports map them to their own terms). */
export const CLOSE = { normal: 1000, goingAway: 1001, protocolError: 1002, policyViolation: 1008, providerFailure: 1011 } as const;

/** Close reasons (a WebSocket close reason is at most 123 bytes). */
const POLICY_CLOSE_REASONS = {
  message_rate: 'too many messages per second',
  protocol_errors: 'too many malformed messages',
  not_reading: 'not reading',
} as const;

const MAX_EARLY_DTMF = 32;
const DTMF_BURST_GAP_MS = 1000;
/** Distinct unknown message types logged at warn level per call; the rest at debug. */
const MAX_UNKNOWN_TYPES_LOGGED = 8;
/** Stop writing audio (and error replies) while this much is unsent on the transport: the peer is not reading. */
const MAX_TRANSPORT_BACKLOG_BYTES = 64 * 1024;
/** Past this much unsent, or with audio held back by the backlog for STALLED_PEER_MS, the peer is not reading: the call ends. */
const MAX_CONTROL_BACKLOG_BYTES = 1024 * 1024;
const STALLED_PEER_MS = 15_000;
/** Inbound message budget: this many seconds of the sustained rate may arrive at once (a burst after a network stall). */
const MESSAGE_BURST_SECONDS = 5;
/** Protocol errors are forgiven at this rate. */
const PROTOCOL_ERRORS_REFILL_PER_SECOND = 1;
const DEFAULT_INIT_TIMEOUT_MS = 10_000;
/** A call-control tool waits at most this long for the agent's last words to be heard. */
const MAX_AUDIO_DRAIN_WAIT_MS = 30_000;
/** AVR Core's own jitter buffer on top of what the playout clock models. */
const AUDIO_DRAIN_MARGIN_MS = 200;

/**
 * One AVR Core call: `awaiting_init -> connecting -> active -> closing -> closed`, over any
 * {@link CallTransport}. The transport is attached in the constructor, before anything awaits, so no
 * early frame is lost.
 */
export class CallSession implements Pumpable, CallInbound {
  private stateValue: CallState = 'awaiting_init';
  private log: Logger;
  private callId: string | undefined;
  private session: StsSession | undefined;
  private readonly abort = new AbortController();
  private readonly clock: PlayoutClock;
  private readonly outbound = new OutboundQueue();
  private inputResampler: Resampler | undefined;
  private outputResampler: Resampler | undefined;
  private earlyAudio: Int16Array[] = [];
  private earlyAudioSamples = 0;
  private earlyDtmf: string[] = [];
  /** The reply whose audio was pushed last (the one a barge-in interrupts). */
  private currentResponseId: string | undefined;
  /** Replies still producing audio (no `response_done` yet). */
  private readonly openResponses = new Set<string>();
  private readonly startedAt = performance.now();
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
  private readonly drainWaits = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();
  private initTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private lastInboundAt: number;
  /** Since when agent audio has been held back because the peer is not reading. */
  private stalledSince: number | undefined;
  private readonly limits: CallLimits;
  private readonly now: () => number;
  private readonly messageBudget: RateBudget;
  private readonly protocolErrorBudget: RateBudget;
  private readonly dtmfBudget: RateBudget;
  /** When the DTMF budget last dropped a digit, and how many it dropped in this call. */
  private lastDtmfDropAt: number | undefined;
  private droppedDtmf = 0;
  private readonly peerWarnings = new PeerWarnings(() => this.log);
  private closedResolve!: () => void;
  /** Resolves once the call is fully closed (provider session included). */
  readonly closed: Promise<void> = new Promise((resolve) => (this.closedResolve = resolve));

  constructor(
    private readonly transport: CallTransport,
    private readonly options: CallSessionOptions,
  ) {
    this.log = options.logger;
    this.clock = new PlayoutClock(options.now);
    const now = (this.now = options.now ?? performance.now.bind(performance));
    this.limits = { ...DEFAULT_CALL_LIMITS, ...options.limits };
    this.messageBudget = new RateBudget(this.limits.maxMessagesPerSecond, this.limits.maxMessagesPerSecond * MESSAGE_BURST_SECONDS, now);
    this.protocolErrorBudget = new RateBudget(PROTOCOL_ERRORS_REFILL_PER_SECOND, this.limits.maxProtocolErrors, now);
    this.dtmfBudget = new RateBudget(this.limits.maxDtmfPerSecond, this.limits.maxDtmfPerSecond * 2, now);
    this.lastInboundAt = now();
    options.metrics.activeCalls.inc();
    this.initTimer = setTimeout(() => {
      this.sendError('no init message received');
      void this.close(CLOSE.protocolError, 'no init', 'init_timeout');
    }, options.initTimeoutMs ?? DEFAULT_INIT_TIMEOUT_MS);
    // Last: a transport may deliver init right away (the HTTP one does).
    transport.attach(this);
  }

  get state(): CallState {
    return this.stateValue;
  }

  get uuid(): string | undefined {
    return this.callId;
  }

  // ---- inbound (AVR Core -> provider) -------------------------------------------------------

  handleAvrMessage(data: string | Uint8Array): void {
    this.guard(() => this.decodeMessage(data));
  }

  handleInit(uuid: string): void {
    this.guard(() => this.onInit(uuid));
  }

  handleAudio(samples: Int16Array): void {
    this.guard(() => this.onAudio(samples));
  }

  handleDtmf(digit: string): void {
    this.guard(() => this.onDtmf(digit));
  }

  /** Inbound is dropped once the call is closing; every message is counted against the call's budget first. */
  private guard(handle: () => void): void {
    if (this.stateValue === 'closing' || this.stateValue === 'closed') return;
    const now = this.now();
    this.lastInboundAt = now;
    if (!this.messageBudget.take(now)) {
      this.violatePolicy('message_rate', `more than ${this.limits.maxMessagesPerSecond} messages per second: closing the call`);
      return;
    }
    try {
      handle();
    } catch (error) {
      // An adapter bug must cost at most this message, never the process or another call.
      this.options.metrics.errors.inc({ kind: 'internal', provider: this.options.providerId });
      this.log.error({ err: error }, 'failed to handle a message from AVR Core');
      this.sendError('internal error while handling the message');
    }
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
    const message = decoded.message;
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
   * A message type this gateway does not know (a newer AVR Core may add some): ignored, without an AVR `error` (which
   * would fire AVR's error webhooks); logged once per type per call.
   */
  private ignoreUnknownType(messageType: string | undefined, message: string): void {
    this.options.metrics.errors.inc({ kind: 'protocol_unknown_type', provider: this.options.providerId });
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
    clearTimeout(this.initTimer);
    this.initTimer = undefined;
    this.armIdleTimer(this.limits.idleTimeoutMs);
    this.callId = uuid;
    this.log = this.options.logger.child({ callId: uuid });
    this.stateValue = 'connecting';
    this.log.info({ provider: this.options.providerId }, 'call started');
    void this.connect(uuid);
  }

  private onAudio(samples: Int16Array): void {
    this.options.metrics.framesIn.inc();
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
        if (this.admitDtmf(digit)) this.session?.sendDtmf(digit);
        return;
      case 'closing':
      case 'closed':
        return;
    }
  }

  /** Faster than a keypad can send: excess digits are dropped, with one log line per burst. */
  private admitDtmf(digit: string): boolean {
    const now = this.now();
    if (!this.dtmfBudget.take(now)) {
      // One line per burst: a burst ends when no digit has been dropped for a second.
      if (this.lastDtmfDropAt === undefined || now - this.lastDtmfDropAt > DTMF_BURST_GAP_MS) {
        this.peerWarnings.warn({ digit }, `more than ${this.limits.maxDtmfPerSecond} DTMF digits per second: dropping digits`);
      }
      this.lastDtmfDropAt = now;
      this.droppedDtmf++;
      this.options.metrics.dtmfDropped.inc();
      return false;
    }
    return true;
  }

  private bufferEarlyAudio(samples: Int16Array): void {
    const limit = (this.options.earlyAudioBufferMs * AVR_SAMPLE_RATE) / 1000;
    this.earlyAudio.push(samples);
    this.earlyAudioSamples += samples.length;
    while (this.earlyAudioSamples > limit && this.earlyAudio.length > 0) {
      const dropped = this.earlyAudio.shift() as Int16Array;
      this.earlyAudioSamples -= dropped.length;
      this.options.metrics.earlyAudioDropped.inc();
    }
  }

  private forwardAudio(samples: Int16Array): void {
    const session = this.session;
    if (session === undefined) return;
    const resampled = this.inputResampler ? this.inputResampler.process(samples) : samples;
    if (resampled.length > 0) session.sendAudio(resampled);
  }

  // ---- provider session ---------------------------------------------------------------------

  private async connect(uuid: string): Promise<void> {
    const { adapter, providerId, metrics, providerConnectTimeoutMs } = this.options;
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new ProviderError(providerId, 'timeout', `provider did not connect within ${providerConnectTimeoutMs} ms`)),
        providerConnectTimeoutMs,
      );
    });
    const attempt = adapter.connect({
      callId: uuid,
      metadata: this.options.metadata,
      logger: this.log,
      signal: this.abort.signal,
      tools: this.options.tools?.specs ?? [],
      observer: { reconnecting: (provider) => this.options.metrics.reconnects.inc({ provider }) },
    });
    let session: StsSession;
    try {
      session = await Promise.race([attempt, timeout]);
    } catch (error) {
      const providerError = toProviderError(providerId, error);
      metrics.providerConnectSeconds.observe({ provider: providerId, outcome: 'failure' }, (performance.now() - started) / 1000);
      // A session that opens after we gave up must not leak.
      attempt.then((late) => late.close()).catch(() => undefined);
      if (this.stateValue === 'connecting') {
        metrics.errors.inc({ kind: `provider_${providerError.category}`, provider: providerId });
        this.log.error({ err: providerError, category: providerError.category }, 'provider connection failed');
        this.sendError(`provider connection failed: ${providerError.message}`);
        await this.close(CLOSE.providerFailure, 'provider connection failed', 'provider_error');
      }
      return;
    } finally {
      clearTimeout(timer);
    }
    metrics.providerConnectSeconds.observe({ provider: providerId, outcome: 'success' }, (performance.now() - started) / 1000);
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
        const providerError = toProviderError(this.options.providerId, error);
        this.options.metrics.errors.inc({ kind: `provider_${providerError.category}`, provider: this.options.providerId });
        this.log.error({ err: providerError }, 'provider session failed');
        this.sendError(`provider error: ${providerError.message}`);
        await this.close(CLOSE.providerFailure, 'provider error', 'provider_error');
      }
      return;
    }
    if (this.stateValue === 'active' && !this.providerEnded) {
      this.log.warn('provider ended the session');
      this.sendError('the provider ended the session');
      await this.close(CLOSE.providerFailure, 'provider ended the session', 'provider_closed');
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
        this.options.pacer.schedule(this);
        return;
      }
      case 'response_done': {
        this.openResponses.delete(event.responseId);
        if (event.responseId === this.interruptedResponseId) return;
        const tail = this.outputResampler?.flush();
        if (tail !== undefined && tail.length > 0) this.outbound.push(event.responseId, tail);
        this.outbound.endResponse(event.responseId);
        this.options.pacer.schedule(this);
        return;
      }
      case 'speech_started':
        this.speechStoppedAt = undefined;
        this.bargeIn(session, true);
        return;
      case 'interrupted':
        this.bargeIn(session, false);
        return;
      case 'speech_stopped':
        this.speechStoppedAt = performance.now();
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
        void this.untilAgentAudioHeard().then(() => this.close(CLOSE.normal, 'conversation ended', 'provider_ended'));
        return;
      case 'error': {
        const { error } = event;
        this.options.metrics.errors.inc({ kind: `provider_${error.category}`, provider: this.options.providerId });
        this.log.error({ err: error, category: error.category, fatal: event.fatal }, 'provider error');
        this.sendError(`provider error: ${error.message}`);
        if (event.fatal) void this.close(CLOSE.providerFailure, 'provider error', 'provider_error');
        return;
      }
    }
  }

  private recordTurnMetrics(metrics: TurnMetrics): void {
    const { metrics: gauges, providerId } = this.options;
    const { asrFinal, llmFirstToken, ttsFirstAudio, endOfSpeechToFirstAudioMs } = metrics;
    if (asrFinal !== undefined) gauges.turnAsrFinalSeconds.observe({ provider: asrFinal.provider }, asrFinal.ms / 1000);
    if (llmFirstToken !== undefined) gauges.turnLlmFirstTokenSeconds.observe({ provider: llmFirstToken.provider }, llmFirstToken.ms / 1000);
    if (ttsFirstAudio !== undefined) gauges.turnTtsFirstAudioSeconds.observe({ provider: ttsFirstAudio.provider }, ttsFirstAudio.ms / 1000);
    if (endOfSpeechToFirstAudioMs !== undefined) gauges.responseLatencySeconds.observe({ provider: providerId }, endOfSpeechToFirstAudioMs / 1000);
    this.log.debug({ turn: metrics }, 'turn timings');
  }

  /**
   * The caller spoke over the agent (or the provider cancelled its reply): if agent audio is
   * audible or queued, drop it, tell AVR Core to flush its buffer, and tell the provider how much
   * of the reply the caller actually heard.
   */
  private bargeIn(session: StsSession, truncate: boolean): void {
    if (!this.clock.isPlaying() && !this.outbound.hasAudio()) return;
    const responseId = this.currentResponseId;
    const heardMs = responseId === undefined ? 0 : this.clock.heardMs(responseId);
    this.outbound.clear();
    this.outputResampler?.reset();
    this.clock.flush();
    this.options.pacer.cancel(this);
    if (responseId !== undefined) {
      this.interruptedResponseId = responseId;
      this.openResponses.delete(responseId);
    }
    this.sendControl({ type: 'interruption' });
    this.options.metrics.interruptions.inc({ provider: this.options.providerId });
    this.log.debug({ responseId, heardMs }, 'barge-in');
    if (truncate && responseId !== undefined && this.options.adapter.capabilities.truncation) session.truncate(responseId, heardMs);
  }

  // ---- tools ---------------------------------------------------------------------------------

  private async runTool(session: StsSession, toolCallId: string, name: string, argumentsJson: string): Promise<void> {
    const tools = this.options.tools;
    let output: string;
    if (tools === undefined) {
      this.log.warn({ tool: name }, 'the provider requested a tool, but no tools are configured');
      output = `Error: tool "${name}" is not available`;
    } else {
      this.log.info({ tool: name }, 'running tool');
      output = await tools.run(name, argumentsJson, {
        callId: this.callId ?? '',
        logger: this.log,
        signal: this.abort.signal,
        untilAgentAudioHeard: () => this.untilAgentAudioHeard(),
      });
    }
    if (this.stateValue === 'active' && this.session === session) session.submitToolResult(toolCallId, output);
  }

  /** Resolves when no reply is still producing audio and everything sent has been played. */
  private untilAgentAudioHeard(): Promise<void> {
    const started = performance.now();
    return new Promise((resolve) => {
      const wait = { timer: undefined as unknown as NodeJS.Timeout, resolve };
      const check = () => {
        const drained = this.openResponses.size === 0 && !this.outbound.hasAudio() && !this.clock.isPlaying();
        const ended = this.stateValue === 'closing' || this.stateValue === 'closed';
        if (ended || performance.now() - started > MAX_AUDIO_DRAIN_WAIT_MS) {
          this.drainWaits.delete(wait);
          resolve();
        } else if (drained) {
          wait.timer = setTimeout(() => {
            this.drainWaits.delete(wait);
            resolve();
          }, AUDIO_DRAIN_MARGIN_MS);
        } else {
          wait.timer = setTimeout(check, AVR_FRAME_MS);
        }
      };
      this.drainWaits.add(wait);
      check();
    });
  }

  // ---- outbound (provider -> AVR Core) ------------------------------------------------------

  pump(): boolean {
    if (this.stateValue !== 'active' || !this.transport.open) return false;
    if (this.transport.backlogBytes > MAX_TRANSPORT_BACKLOG_BYTES) {
      const now = this.now();
      this.stalledSince ??= now;
      if (now - this.stalledSince < STALLED_PEER_MS) return true;
      this.violatePolicy('not_reading', `AVR Core has not read the call's audio for ${STALLED_PEER_MS / 1000} s: closing the call`);
      return false;
    }
    this.stalledSince = undefined;
    if (this.holdBurstStart()) return true;
    let sent = 0;
    while (this.clock.queuedMs() < this.options.outboundLeadMs) {
      const frame = this.outbound.shift();
      if (frame === undefined) break;
      if (frame.responseId !== this.lastSentResponseId) {
        this.lastSentResponseId = frame.responseId;
        // The first audio of a reply after the provider reported the end of the caller's speech.
        if (this.speechStoppedAt !== undefined) {
          this.options.metrics.responseLatencySeconds.observe({ provider: this.options.providerId }, (performance.now() - this.speechStoppedAt) / 1000);
          this.speechStoppedAt = undefined;
        }
      }
      this.transport.sendAudio(frame.samples);
      this.clock.enqueue(frame.responseId, AVR_FRAME_MS);
      sent++;
    }
    if (sent > 0) this.options.metrics.framesOut.inc(sent);
    return this.outbound.pendingFrames > 0;
  }

  /**
   * Agent audio that starts on an empty AVR Core buffer is held until `outboundStartBufferMs` of it is queued, the
   * reply is complete, or its first frame has waited that long. A provider streaming in real time (Speechmatics
   * Flow: 40 ms chunks, less one frame of resampler delay for the first) would otherwise leave the caller a gap
   * after the first frame of every reply.
   */
  private holdBurstStart(): boolean {
    const startBufferMs = this.options.outboundStartBufferMs ?? 0;
    if (startBufferMs <= 0 || this.clock.isPlaying() || this.outbound.pendingFrames === 0) {
      this.burstWaitSince = undefined;
      return false;
    }
    const now = performance.now();
    this.burstWaitSince ??= now;
    if (this.outbound.pendingMs >= startBufferMs || this.outbound.frontReplyComplete() || now - this.burstWaitSince >= startBufferMs) {
      this.burstWaitSince = undefined;
      return false;
    }
    return true;
  }

  /**
   * Control messages go straight to the transport: they never wait behind queued audio. They are bounded too: past
   * MAX_CONTROL_BACKLOG_BYTES unsent the peer is not reading, and the call ends instead of buffering without limit.
   */
  private sendControl(message: AvrOutbound): void {
    if (!this.transport.open) return;
    if (this.transport.backlogBytes > MAX_CONTROL_BACKLOG_BYTES) {
      this.violatePolicy('not_reading', 'AVR Core is not reading what the gateway sends: closing the call');
      return;
    }
    this.transport.sendControl(message);
  }

  private sendError(message: string): void {
    this.sendControl({ type: 'error', message });
  }

  /** A malformed message: one `error` back (unless the peer is not reading its replies), within the call's error budget. */
  private protocolProblem(kind: string, message: string): void {
    this.options.metrics.errors.inc({ kind: `protocol_${kind}`, provider: this.options.providerId });
    if (!this.protocolErrorBudget.take()) {
      this.violatePolicy('protocol_errors', `more than ${this.limits.maxProtocolErrors} malformed messages: closing the call`);
      return;
    }
    this.peerWarnings.warn({ kind }, message);
    if (this.transport.backlogBytes <= MAX_TRANSPORT_BACKLOG_BYTES) this.sendError(message);
  }

  /** The peer broke a per-connection budget: one `error` (if it reads), close 1008, and the connection is dropped. */
  private violatePolicy(kind: keyof typeof POLICY_CLOSE_REASONS, message: string): void {
    if (this.stateValue === 'closing' || this.stateValue === 'closed') return;
    this.options.metrics.policyCloses.inc({ kind, provider: this.options.providerId });
    this.log.warn({ kind }, message);
    if (kind !== 'not_reading' && this.transport.open) this.transport.sendControl({ type: 'error', message });
    void this.close(CLOSE.policyViolation, POLICY_CLOSE_REASONS[kind], `policy_${kind}`, { dropConnection: true });
  }

  /** Idle check without a timer per message: when the timer fires, it is re-armed for what is left of the window. */
  private armIdleTimer(delayMs: number): void {
    this.idleTimer = setTimeout(() => {
      const idleMs = this.now() - this.lastInboundAt;
      if (idleMs < this.limits.idleTimeoutMs) {
        this.armIdleTimer(this.limits.idleTimeoutMs - idleMs);
        return;
      }
      const message = `no message from AVR Core for ${Math.round(this.limits.idleTimeoutMs / 1000)} s: closing the call`;
      this.log.warn({ idleMs: Math.round(idleMs) }, message);
      this.sendError(message);
      void this.close(CLOSE.goingAway, 'idle timeout', 'idle_timeout');
    }, delayMs);
  }

  // ---- teardown ------------------------------------------------------------------------------

  transportClosed(code?: number): void {
    this.log.info({ code }, 'AVR Core closed the call');
    void this.close(undefined, undefined, 'completed');
  }

  /** A broken frame or a reset connection: the client's fault, so one short line (no stack), rate-limited. */
  transportError(error: Error): void {
    this.options.metrics.errors.inc({ kind: 'socket', provider: this.options.providerId });
    this.peerWarnings.warn({ code: (error as NodeJS.ErrnoException).code, reason: error.message }, 'call socket error');
  }

  /**
   * End the call: close the transport if it is still open, then the provider session. Idempotent.
   * `dropConnection`: the peer misbehaved, so the transport stops reading it and drops the connection soon.
   */
  async close(code?: number, reason?: string, outcome = 'completed', options: { dropConnection?: boolean } = {}): Promise<void> {
    if (this.stateValue === 'closing' || this.stateValue === 'closed') return this.closed;
    this.stateValue = 'closing';
    clearTimeout(this.initTimer);
    clearTimeout(this.idleTimer);
    this.abort.abort();
    this.options.pacer.cancel(this);
    this.outbound.clear();
    this.earlyAudio = [];
    for (const wait of this.drainWaits) {
      clearTimeout(wait.timer);
      wait.resolve();
    }
    this.drainWaits.clear();
    this.transport.close(code ?? CLOSE.normal, reason, options.dropConnection === true);
    try {
      await this.session?.close();
    } catch (error) {
      this.log.warn({ err: error }, 'provider session did not close cleanly');
    }
    this.session = undefined;
    this.stateValue = 'closed';
    this.options.metrics.activeCalls.dec();
    this.options.metrics.callsTotal.inc({ provider: this.options.providerId, outcome });
    this.options.metrics.callDurationSeconds.observe({ provider: this.options.providerId, outcome }, (performance.now() - this.startedAt) / 1000);
    this.transport.dispose();
    this.peerWarnings.flush();
    this.log.info({ outcome, ...(this.droppedDtmf > 0 ? { droppedDtmf: this.droppedDtmf } : {}) }, 'call ended');
    this.closedResolve();
  }

  /** Graceful shutdown deadline reached: tell AVR Core why, then close. */
  async shutdown(): Promise<void> {
    this.sendError('the gateway is shutting down');
    await this.close(CLOSE.goingAway, 'gateway shutting down', 'shutdown');
  }
}
