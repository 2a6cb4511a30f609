/**
 * `createSpeechmaticsFlow`: Speechmatics Flow (conversational agent) as a core StsAdapter, the drop-in for
 * avr-sts-speechmatics. Each call gets its own connection, PCM assembler and reply state (nothing is shared
 * between calls but the temporary-key cache). Agent audio is 16 kHz; the host resamples it to AVR's 8 kHz.
 *
 * Flow keeps the conversation on the server, so a dropped connection cannot be resumed: within the reconnect
 * budget a new conversation starts (the agent does not remember the earlier turns, and a warning says so), and
 * caller audio from the gap is sent to it.
 */
import type { Logger } from 'pino';
import { WebSocket } from 'ws';
import type { RawData } from 'ws';
import { AsyncQueue, DEFAULT_RECONNECT_POLICY, closeWebSocket, Pcm16Assembler, ProviderError, ReconnectBudget, bytesFromPcm, msToSamples, runWithReconnect, toProviderError } from '@stsgate/core';
import type { ReconnectPolicyOptions, SampleRate, StsAdapter, StsCallContext, StsCapabilities, StsEvent, StsSession } from '@stsgate/core';
import { TemporaryKeys } from './auth.js';
import { PROVIDER, providerErrorFromClose, providerErrorFromServerError } from './errors.js';
import { FlowEventMapper } from './flow-events.js';
import { DEFAULT_FLOW_URL, DEFAULT_TEMPLATE_ID, FLOW_OUTPUT_SAMPLE_RATE, buildStartConversation, flowConnectUrl, flowTools, parseFlowMessage } from './flow-wire.js';
import type { FlowClientMessage } from './flow-wire.js';
import { frameBytes, handshake, openSocket } from './socket.js';
import type { StartedSocket } from './socket.js';

export const DEFAULT_FLOW_DTMF_MESSAGE = 'The caller pressed {{digit}} on the keypad.';
/** Flow's reference asks clients to ping every 20-60 s and to allow at least 60 s for the pong. */
const DEFAULT_PING_INTERVAL_MS = 30_000;
const DEFAULT_PONG_TIMEOUT_MS = 60_000;

export type TemplateVariables = Readonly<Record<string, string>>;

export interface SpeechmaticsFlowOptions {
  readonly apiKey: string;
  /** Default `wss://flow.api.speechmatics.com/v1/flow`; `ws://host:port` gets `/v1/flow` like the JS client. */
  readonly url?: string;
  /** Where temporary keys come from (default `https://mp.speechmatics.com/v1`). */
  readonly managementUrl?: string;
  /** Share one key cache between adapters (default: one per adapter). */
  readonly keys?: TemporaryKeys;
  /** Agent or template id from the Speechmatics portal. Default: avr-sts-speechmatics' template. */
  readonly templateId?: string;
  /** Per-call template variables (e.g. the persona from the agent instructions). `timezone` is added if absent. */
  readonly templateVariables?: TemplateVariables | ((call: StsCallContext) => Promise<TemplateVariables> | TemplateVariables);
  /** Rate of the caller audio sent to Flow: 8000 (AVR's, default, no resampling) or 16000 (Flow's recommendation). */
  readonly inputSampleRate?: 8000 | 16000;
  /** The text a keypad digit becomes (`AddInput`); `{{digit}}` is replaced. */
  readonly dtmfMessage?: string;
  /** Upgrade to `ConversationStarted`, per attempt (default 10000). */
  readonly connectTimeoutMs?: number;
  /** Caller audio kept while reconnecting (default 5000 ms). */
  readonly maxGapBufferMs?: number;
  readonly reconnect?: Partial<ReconnectPolicyOptions>;
  /** WebSocket ping period (default 30000; 0 disables); no pong within `pongTimeoutMs` (60000) = dropped. */
  readonly pingIntervalMs?: number;
  readonly pongTimeoutMs?: number;
}

export function speechmaticsFlowCapabilities(inputSampleRate: 8000 | 16000 = 8000): StsCapabilities {
  return {
    inputSampleRates: [inputSampleRate],
    outputSampleRates: [FLOW_OUTPUT_SAMPLE_RATE],
    encodings: ['pcm_s16le'],
    serverTurnDetection: true,
    userTranscripts: true,
    agentTranscripts: true,
    // Flow stops its own reply on barge-in; there is no message to tell it what was heard.
    truncation: false,
    toolCalls: true,
    dtmf: true,
  };
}

const DTMF_DIGIT = /^[0-9*#A-Da-d]$/;

export function createSpeechmaticsFlow(options: SpeechmaticsFlowOptions): StsAdapter {
  const problems: string[] = [];
  if (options.apiKey.trim() === '') problems.push('apiKey is empty');
  const dtmfMessage = options.dtmfMessage ?? DEFAULT_FLOW_DTMF_MESSAGE;
  if (!dtmfMessage.includes('{{digit}}')) problems.push('dtmfMessage must contain {{digit}}');
  const inputSampleRate = options.inputSampleRate ?? 8000;
  if (inputSampleRate !== 8000 && inputSampleRate !== 16000) problems.push(`inputSampleRate must be 8000 or 16000, got ${String(inputSampleRate)}`);
  const baseUrl = options.url ?? DEFAULT_FLOW_URL;
  try {
    const protocol = new URL(baseUrl).protocol;
    if (!['ws:', 'wss:', 'http:', 'https:'].includes(protocol)) problems.push(`Flow URL must be ws(s)://, got ${protocol}`);
  } catch {
    problems.push(`invalid Flow URL: ${baseUrl}`);
  }
  if (problems.length > 0) throw new ProviderError(PROVIDER, 'invalid_request', `invalid Speechmatics Flow options: ${problems.join('; ')}`, { retryable: false });
  const keys = options.keys ?? new TemporaryKeys({ apiKey: options.apiKey, ...(options.managementUrl === undefined ? {} : { managementUrl: options.managementUrl }) });
  const reconnectPolicy: ReconnectPolicyOptions = { ...DEFAULT_RECONNECT_POLICY, ...options.reconnect };

  async function variablesFor(call: StsCallContext): Promise<TemplateVariables> {
    const source = options.templateVariables;
    let variables: TemplateVariables = {};
    try {
      variables = typeof source === 'function' ? await source(call) : (source ?? {});
    } catch (error) {
      const cause = toProviderError(PROVIDER, error);
      throw new ProviderError(PROVIDER, cause.category === 'unknown' ? 'invalid_request' : cause.category, `could not build the Flow template variables: ${cause.message}`, {
        cause: error,
        retryable: false,
      });
    }
    // Like the official client: the agent knows the local time zone unless told otherwise.
    return 'timezone' in variables ? variables : { timezone: Intl.DateTimeFormat().resolvedOptions().timeZone, ...variables };
  }

  return {
    id: PROVIDER,
    capabilities: speechmaticsFlowCapabilities(inputSampleRate),
    async connect(call: StsCallContext): Promise<StsSession> {
      if (call.signal.aborted) throw new ProviderError(PROVIDER, 'closed', 'the call ended before the Flow conversation started', { retryable: false });
      const { tools, skipped } = flowTools((call.tools as StsCallContext['tools'] | undefined) ?? []);
      for (const tool of skipped) call.logger.warn({ provider: PROVIDER, tool: tool.name, reason: tool.reason }, 'tool not offered to Speechmatics Flow');
      const start = JSON.stringify(
        buildStartConversation({ templateId: options.templateId ?? DEFAULT_TEMPLATE_ID, templateVariables: await variablesFor(call), sampleRate: inputSampleRate, tools }),
      );
      const session = new FlowSession(call, {
        baseUrl,
        apiKey: options.apiKey,
        keys,
        start,
        inputSampleRate,
        dtmfMessage,
        connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
        maxGapSamples: msToSamples(options.maxGapBufferMs ?? 5000, inputSampleRate),
        reconnectPolicy,
        pingIntervalMs: options.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS,
        pongTimeoutMs: options.pongTimeoutMs ?? DEFAULT_PONG_TIMEOUT_MS,
      });
      await session.opened;
      return session;
    },
  };
}

interface FlowSessionSettings {
  readonly baseUrl: string;
  readonly apiKey: string;
  readonly keys: TemporaryKeys;
  /** The `StartConversation` message, serialised once per call (also for reconnects). */
  readonly start: string;
  readonly inputSampleRate: 8000 | 16000;
  readonly dtmfMessage: string;
  readonly connectTimeoutMs: number;
  readonly maxGapSamples: number;
  readonly reconnectPolicy: ReconnectPolicyOptions;
  readonly pingIntervalMs: number;
  readonly pongTimeoutMs: number;
}

/** One live conversation: its socket and the per-connection counters the protocol needs. */
interface Conversation {
  readonly socket: WebSocket;
  readonly assembler: Pcm16Assembler;
  /** Agent audio frames received (`AudioReceived.seq_no`). */
  serverSeq: number;
  /** Latest `AudioAdded.seq_no` (`AudioEnded.last_seq_no`). */
  lastAudioAdded: number;
  readonly toolCalls: Set<string>;
}

class FlowSession implements StsSession {
  readonly events = new AsyncQueue<StsEvent>();
  readonly outputSampleRate: SampleRate = FLOW_OUTPUT_SAMPLE_RATE;
  readonly inputSampleRate: SampleRate;
  /** Settles when the first conversation has started (or could not). */
  readonly opened: Promise<void>;
  private readonly logger: Logger;
  private readonly budget: ReconnectBudget;
  private readonly lifetime = new AbortController();
  private readonly mapper = new FlowEventMapper();
  private conversation: Conversation | undefined;
  private gap: Int16Array[] = [];
  private gapSamples = 0;
  private gapOverflowWarned = false;
  private pingTimer: NodeJS.Timeout | undefined;
  private pongTimer: NodeJS.Timeout | undefined;
  private invalidReported = false;
  private done = false;
  private closing: Promise<void> | undefined;
  private readonly onCallAbort = (): void => void this.close();

  constructor(
    private readonly call: StsCallContext,
    private readonly settings: FlowSessionSettings,
  ) {
    this.inputSampleRate = settings.inputSampleRate;
    this.logger = call.logger.child({ provider: PROVIDER, kind: 'sts' });
    this.budget = new ReconnectBudget(settings.reconnectPolicy);
    call.signal.addEventListener('abort', this.onCallAbort, { once: true });
    this.opened = this.run(undefined).then(
      () => undefined,
      async (error: unknown) => {
        await this.close();
        throw toProviderError(PROVIDER, error);
      },
    );
  }

  sendAudio(samples: Int16Array): void {
    if (this.done || samples.length === 0) return;
    const conversation = this.conversation;
    if (conversation !== undefined) {
      conversation.socket.send(bytesFromPcm(samples));
      return;
    }
    this.gap.push(samples.slice());
    this.gapSamples += samples.length;
    while (this.gapSamples > this.settings.maxGapSamples && this.gap.length > 0) {
      this.gapSamples -= (this.gap.shift() as Int16Array).length;
      if (!this.gapOverflowWarned) {
        this.gapOverflowWarned = true;
        this.logger.warn('Flow not connected: oldest caller audio dropped');
      }
    }
  }

  sendDtmf(digit: string): void {
    if (this.done) return;
    if (!DTMF_DIGIT.test(digit)) {
      this.logger.debug({ digit: digit.slice(0, 4) }, 'ignored an invalid DTMF digit');
      return;
    }
    // `immediate`: the agent answers the digit now rather than at the end of the caller's turn (UNCONFIRMED semantics).
    const sent = this.send({ message: 'AddInput', input: this.settings.dtmfMessage.replaceAll('{{digit}}', digit.toUpperCase()), interrupt_response: false, immediate: true });
    if (!sent) this.logger.warn('DTMF digit dropped: Flow is reconnecting');
  }

  truncate(): void {
    // Flow stops and trims its own replies on barge-in; nothing to tell it.
  }

  submitToolResult(callId: string, output: string): void {
    const conversation = this.conversation;
    if (this.done || conversation === undefined || !conversation.toolCalls.delete(callId)) {
      this.logger.warn({ callId }, 'tool result dropped: no Flow tool call with that id is pending (answered already, or from a conversation that was replaced)');
      return;
    }
    this.send({ message: 'ToolResult', id: callId, status: 'ok', content: output });
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.done = true;
      this.lifetime.abort();
      this.call.signal.removeEventListener('abort', this.onCallAbort);
      this.stopKeepalive();
      this.gap = [];
      this.events.end();
      const conversation = this.conversation;
      this.conversation = undefined;
      if (conversation === undefined) return;
      if (conversation.socket.readyState === WebSocket.OPEN) {
        conversation.socket.send(JSON.stringify({ message: 'AudioEnded', last_seq_no: conversation.lastAudioAdded } satisfies FlowClientMessage));
      }
      await closeWebSocket(conversation.socket);
    })();
    return this.closing;
  }

  // ---- conversations -------------------------------------------------------------------------------

  /** Starts a conversation within the reconnect budget and attaches it. Rejects with the last failure. */
  private async run(initialError: ProviderError | undefined): Promise<void> {
    // A session that was up and dropped is being re-established (the host counts reconnects).
    if (initialError !== undefined) this.call.observer?.reconnecting(PROVIDER);
    const started = await runWithReconnect(() => this.startConversation(), {
      provider: PROVIDER,
      budget: this.budget,
      signal: this.lifetime.signal,
      ...(initialError === undefined ? {} : { initialError }),
      onRetry: (error, delayMs, attempt) => {
        this.logger.warn({ category: error.category, err: error.message, attempt, delayMs }, 'Speechmatics Flow connection failed; retrying');
      },
    });
    this.attach(started, initialError !== undefined);
  }

  /** Temporary key, upgrade, `StartConversation`; resolves on `ConversationStarted`. */
  private async startConversation(): Promise<StartedSocket> {
    const { keys, apiKey, connectTimeoutMs } = this.settings;
    const key = await keys.get('flow', this.lifetime.signal);
    try {
      const socket = await openSocket({
        url: flowConnectUrl(this.settings.baseUrl, key),
        timeoutMs: connectTimeoutMs,
        signal: this.lifetime.signal,
        secret: apiKey,
        what: 'Flow',
      });
      return await handshake(socket, {
        start: this.settings.start,
        timeoutMs: connectTimeoutMs,
        signal: this.lifetime.signal,
        secret: apiKey,
        what: 'start the Flow conversation',
        classify: (text) => {
          const message = parseFlowMessage(text);
          if (message.kind === 'conversation_started') return true;
          return message.kind === 'error' ? providerErrorFromServerError(message.type, message.reason, apiKey) : undefined;
        },
      });
    } catch (error) {
      // A refused key (revoked, expired early) is not offered to the next attempt.
      if (error instanceof ProviderError && error.category === 'auth') keys.invalidate('flow', key);
      throw error;
    }
  }

  private attach(started: StartedSocket, restarted: boolean): void {
    const { socket } = started;
    if (this.done) {
      void closeWebSocket(socket);
      return;
    }
    const conversation: Conversation = { socket, assembler: new Pcm16Assembler(), serverSeq: 0, lastAudioAdded: 0, toolCalls: new Set() };
    let lastError: ProviderError | undefined;
    let ended = false;
    this.conversation = conversation;
    if (restarted) this.logger.warn('Flow conversation restarted after a drop: the agent does not remember the earlier turns');
    else this.logger.debug('Flow conversation started');
    const gap = this.gap;
    this.gap = [];
    this.gapSamples = 0;
    for (const samples of gap) socket.send(bytesFromPcm(samples));
    socket.on('pong', () => {
      if (this.pongTimer !== undefined) clearTimeout(this.pongTimer);
      this.pongTimer = undefined;
    });
    this.startKeepalive(conversation);
    started.takeOver(
      (data: RawData, isBinary: boolean) => {
        if (this.conversation !== conversation || this.done) return;
        if (isBinary) {
          this.onAgentAudio(conversation, frameBytes(data));
          return;
        }
        const outcome = this.onMessage(conversation, frameBytes(data).toString('utf8'));
        if (outcome === 'ended') ended = true;
        else if (outcome instanceof ProviderError) lastError = outcome;
      },
      (code: number, reason: Buffer) => {
        if (this.conversation !== conversation || this.done) return;
        this.conversation = undefined;
        this.stopKeepalive();
        if (ended) {
          this.logger.info('Flow ended the conversation');
          void this.close();
          return;
        }
        this.onDrop(lastError ?? providerErrorFromClose(code, reason.toString('utf8'), this.settings.apiKey));
      },
    );
  }

  private onDrop(error: ProviderError): void {
    this.logger.warn({ category: error.category, err: error.message }, 'Flow connection lost');
    for (const event of this.mapper.reset()) this.events.push(event);
    this.run(error).catch((failure: unknown) => {
      if (this.done) return;
      this.events.push({ type: 'error', error: toProviderError(PROVIDER, failure), fatal: true });
      void this.close();
    });
  }

  private onAgentAudio(conversation: Conversation, bytes: Buffer): void {
    conversation.serverSeq++;
    this.send({ message: 'AudioReceived', seq_no: conversation.serverSeq });
    const samples = conversation.assembler.push(bytes);
    for (const event of this.mapper.audio(samples)) this.events.push(event);
  }

  private onMessage(conversation: Conversation, text: string): 'ended' | ProviderError | undefined {
    const message = parseFlowMessage(text);
    switch (message.kind) {
      case 'audio_added':
        conversation.lastAudioAdded = message.seqNo;
        return undefined;
      case 'tool_invoke':
        conversation.toolCalls.add(message.id);
        break;
      case 'error':
        this.logger.debug({ type: message.type }, 'Flow error message');
        // The server closes right after; the close decides between a new conversation and failing.
        return providerErrorFromServerError(message.type, message.reason, this.settings.apiKey);
      case 'warning':
        this.logger.warn({ type: message.type }, 'Flow warning');
        return undefined;
      case 'info':
        this.logger.debug({ type: message.type }, 'Flow info');
        return undefined;
      case 'conversation_ending':
        this.logger.info('Flow is ending the conversation');
        break;
      case 'conversation_ended':
        for (const event of this.mapper.reset()) this.events.push(event);
        this.events.push({ type: 'ended', reason: 'the Flow agent ended the conversation' });
        return 'ended';
      case 'invalid':
        if (!this.invalidReported) {
          this.invalidReported = true;
          this.events.push({ type: 'error', error: new ProviderError(PROVIDER, 'protocol', `unexpected Flow message (${message.reason})`), fatal: false });
        }
        this.logger.debug({ reason: message.reason }, 'unexpected Flow message');
        return undefined;
      case 'conversation_started':
      case 'transcript':
      case 'response_started':
      case 'response_completed':
      case 'response_interrupted':
      case 'ignored':
        break;
    }
    for (const event of this.mapper.message(message)) this.events.push(event);
    return undefined;
  }

  /** Sends a JSON message on the live conversation; false when there is none. */
  private send(message: FlowClientMessage): boolean {
    const socket = this.conversation?.socket;
    if (socket === undefined || socket.readyState !== WebSocket.OPEN) return false;
    socket.send(JSON.stringify(message));
    return true;
  }

  private startKeepalive(conversation: Conversation): void {
    const { pingIntervalMs, pongTimeoutMs } = this.settings;
    if (pingIntervalMs <= 0) return;
    this.pingTimer = setInterval(() => {
      if (this.conversation !== conversation || this.pongTimer !== undefined) return;
      conversation.socket.ping();
      this.pongTimer = setTimeout(() => {
        this.pongTimer = undefined;
        this.logger.warn({ pongTimeoutMs }, 'Flow stopped answering pings');
        conversation.socket.terminate();
      }, pongTimeoutMs);
    }, pingIntervalMs);
  }

  private stopKeepalive(): void {
    if (this.pingTimer !== undefined) clearInterval(this.pingTimer);
    if (this.pongTimer !== undefined) clearTimeout(this.pongTimer);
    this.pingTimer = undefined;
    this.pongTimer = undefined;
  }
}
