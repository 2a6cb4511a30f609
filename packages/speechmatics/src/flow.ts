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
import { DEFAULT_RECONNECT_POLICY, Pcm16Assembler, ProviderError, StreamingSession, bytesFromPcm, connectLiveSocket, toProviderError } from '@stsgate/core';
import type { LinkAttempt, LiveSocket, ReconnectPolicyOptions, SampleRate, StsAdapter, StsCallContext, StsCapabilities, StsEvent, StsSession } from '@stsgate/core';
import { TemporaryKeys } from './auth.js';
import { PROVIDER, providerErrorFromServerError, speechmaticsClassifiers } from './errors.js';
import { FlowEventMapper } from './flow-events.js';
import { DEFAULT_FLOW_URL, DEFAULT_TEMPLATE_ID, FLOW_OUTPUT_SAMPLE_RATE, buildStartConversation, flowConnectUrl, flowTools, parseFlowMessage } from './flow-wire.js';
import type { FlowClientMessage } from './flow-wire.js';

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
        maxGapBufferMs: options.maxGapBufferMs ?? 5000,
        reconnectPolicy,
        pingIntervalMs: options.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS,
        pongTimeoutMs: options.pongTimeoutMs ?? DEFAULT_PONG_TIMEOUT_MS,
      });
      try {
        await session.opened;
      } catch (error) {
        await session.close();
        throw toProviderError(PROVIDER, error);
      }
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
  readonly maxGapBufferMs: number;
  readonly reconnectPolicy: ReconnectPolicyOptions;
  readonly pingIntervalMs: number;
  readonly pongTimeoutMs: number;
}

/** The per-conversation counters the protocol needs (a new conversation starts them again). */
interface Conversation {
  readonly assembler: Pcm16Assembler;
  /** Agent audio frames received (`AudioReceived.seq_no`). */
  serverSeq: number;
  /** Latest `AudioAdded.seq_no` (`AudioEnded.last_seq_no`). */
  lastAudioAdded: number;
  readonly toolCalls: Set<string>;
}

/**
 * One call: Flow's protocol over core's `StreamingSession`, which owns the conversation's connection (ping keepalive,
 * replaced within the reconnect budget), the bounded caller audio held while reconnecting, and `close()`.
 */
class FlowSession implements StsSession {
  readonly events: AsyncIterable<StsEvent>;
  readonly outputSampleRate: SampleRate = FLOW_OUTPUT_SAMPLE_RATE;
  readonly inputSampleRate: SampleRate;
  /** Settles when the first conversation has started (or could not). */
  readonly opened: Promise<void>;
  private readonly logger: Logger;
  private readonly mapper = new FlowEventMapper();
  private readonly session: StreamingSession<StsEvent, LiveSocket>;
  private conversation: Conversation = newConversation();

  constructor(
    call: StsCallContext,
    private readonly settings: FlowSessionSettings,
  ) {
    this.inputSampleRate = settings.inputSampleRate;
    this.logger = call.logger.child({ provider: PROVIDER, kind: 'sts' });
    this.session = new StreamingSession<StsEvent, LiveSocket>({
      provider: PROVIDER,
      label: 'Speechmatics Flow',
      call,
      logger: this.logger,
      sampleRate: settings.inputSampleRate,
      reconnect: settings.reconnectPolicy,
      maxQueuedMs: settings.maxGapBufferMs,
      connect: (attempt) => this.connect(attempt),
      onLinkReady: (_link, { reconnected }) => {
        this.conversation = newConversation();
        if (reconnected) this.logger.warn('Flow conversation restarted after a drop: the agent does not remember the earlier turns');
      },
      sendAudio: (link, samples) => link.send(bytesFromPcm(samples)),
      onDrop: () => this.session.emit(this.mapper.reset()),
      beforeClose: (link) => link?.send(JSON.stringify({ message: 'AudioEnded', last_seq_no: this.conversation.lastAudioAdded } satisfies FlowClientMessage)),
    });
    this.events = this.session.events;
    this.opened = this.session.ready;
  }

  sendAudio(samples: Int16Array): void {
    this.session.pushAudio(samples);
  }

  sendDtmf(digit: string): void {
    if (this.session.closed) return;
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
    if (this.session.closed || this.session.link === undefined || !this.conversation.toolCalls.delete(callId)) {
      this.logger.warn({ callId }, 'tool result dropped: no Flow tool call with that id is pending (answered already, or from a conversation that was replaced)');
      return;
    }
    this.send({ message: 'ToolResult', id: callId, status: 'ok', content: output });
  }

  close(): Promise<void> {
    return this.session.close();
  }

  /** Temporary key, upgrade, `StartConversation`; resolves on `ConversationStarted`. */
  private async connect(attempt: LinkAttempt): Promise<LiveSocket> {
    const { keys, apiKey, connectTimeoutMs, pingIntervalMs, pongTimeoutMs } = this.settings;
    const key = await keys.get('flow', attempt.signal);
    try {
      return await connectLiveSocket({
        provider: PROVIDER,
        label: 'Speechmatics Flow',
        secrets: [apiKey, key],
        url: flowConnectUrl(this.settings.baseUrl, key),
        timeoutMs: connectTimeoutMs,
        signal: attempt.signal,
        classify: speechmaticsClassifiers(apiKey, 'Flow'),
        handshake: {
          start: this.settings.start,
          what: 'start the Flow conversation',
          classify: (text, isBinary) => {
            if (isBinary) return 'ignore';
            const message = parseFlowMessage(text);
            if (message.kind === 'conversation_started') return 'ready';
            return message.kind === 'error' ? providerErrorFromServerError(message.type, message.reason, apiKey) : 'ignore';
          },
        },
        logger: this.logger,
        // Flow's reference asks for a ping every 20-60 s and at least 60 s for the pong.
        ...(pingIntervalMs > 0 ? { keepalive: { kind: 'ping', intervalMs: pingIntervalMs, pongTimeoutMs } as const } : {}),
        onText: (text) => this.onMessage(text),
        onBinary: (frame) => this.onAgentAudio(frame),
        onDrop: attempt.onDrop,
        onEnd: () => {
          this.logger.info('Flow ended the conversation');
          void this.session.close();
        },
      });
    } catch (error) {
      // A refused key (revoked, expired early) is not offered to the next attempt.
      if (error instanceof ProviderError && error.category === 'auth') keys.invalidate('flow', key);
      throw error;
    }
  }

  private onAgentAudio(bytes: Buffer): void {
    const conversation = this.conversation;
    conversation.serverSeq++;
    this.send({ message: 'AudioReceived', seq_no: conversation.serverSeq });
    this.session.emit(this.mapper.audio(conversation.assembler.push(bytes)));
  }

  private onMessage(text: string): void {
    const message = parseFlowMessage(text);
    switch (message.kind) {
      case 'audio_added':
        this.conversation.lastAudioAdded = message.seqNo;
        return;
      case 'tool_invoke':
        this.conversation.toolCalls.add(message.id);
        break;
      case 'error':
        this.logger.debug({ type: message.type }, 'Flow error message');
        // The server closes right after; the drop decides between a new conversation and failing.
        this.session.link?.report(providerErrorFromServerError(message.type, message.reason, this.settings.apiKey));
        return;
      case 'warning':
        this.logger.warn({ type: message.type }, 'Flow warning');
        return;
      case 'info':
        this.logger.debug({ type: message.type }, 'Flow info');
        return;
      case 'conversation_ending':
        this.logger.info('Flow is ending the conversation');
        break;
      case 'conversation_ended':
        this.session.emit(this.mapper.reset());
        this.session.emit([{ type: 'ended', reason: 'the Flow agent ended the conversation' }]);
        // The server closes next: that ends the session, it is no drop.
        this.session.link?.expectClose();
        return;
      case 'invalid':
        this.session.reportUnexpected(message.reason);
        return;
      case 'conversation_started':
      case 'transcript':
      case 'response_started':
      case 'response_completed':
      case 'response_interrupted':
      case 'ignored':
        break;
    }
    this.session.emit(this.mapper.message(message));
  }

  /** Sends a JSON message on the live conversation; false when there is none. */
  private send(message: FlowClientMessage): boolean {
    return this.session.link?.send(JSON.stringify(message)) ?? false;
  }
}

function newConversation(): Conversation {
  return { assembler: new Pcm16Assembler(), serverSeq: 0, lastAudioAdded: 0, toolCalls: new Set() };
}
