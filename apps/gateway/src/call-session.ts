import type { Logger } from 'pino';
import { CallRuntime, systemClock, type CallLimits, type CallState, type StsAdapter, type ToolRunner } from '@stsgate/core';
import { TransportPeer, type CallInbound, type CallTransport } from './call-transport.js';
import type { GatewayMetrics } from './metrics.js';
import type { OutboundPacer, Pumpable } from './outbound.js';
import type { CallRecordings } from './recording/index.js';

export { CLOSE } from './call-transport.js';
export { DEFAULT_CALL_LIMITS, type CallLimits, type CallState } from '@stsgate/core';

export interface CallSessionOptions {
  readonly adapter: StsAdapter;
  readonly providerId: string;
  readonly logger: Logger;
  readonly metrics: GatewayMetrics;
  readonly pacer: OutboundPacer;
  /** Caller frames (20 ms) per provider message, read for every frame (the gateway's load guard); default 1. */
  readonly callerAudioFramesPerSend?: () => number;
  /** The connect query string (AVR Core appends `from`, `to`, `uniqueid`, `channel`, custom keys). */
  readonly metadata: Readonly<Record<string, string>>;
  readonly earlyAudioBufferMs: number;
  readonly outboundLeadMs: number;
  /** See `OUTBOUND_START_BUFFER_MS` (default 0 here: send at once). */
  readonly outboundStartBufferMs?: number;
  readonly providerConnectTimeoutMs: number;
  readonly tools?: ToolRunner;
  readonly initTimeoutMs?: number;
  /** What one connection may do before it is cut off; defaults: `DEFAULT_CALL_LIMITS`. */
  readonly limits?: Partial<CallLimits>;
  readonly now?: () => number;
  /** Call recording (`RECORDINGS_DIR`): the call gets a recorder of its own from it. Unset: nothing is recorded. */
  readonly recordings?: CallRecordings | undefined;
}

/**
 * One AVR Core call over a {@link CallTransport}: core's {@link CallRuntime} does the call, this shim hands it what
 * the transport delivers and lets it answer through the transport (backlog in bytes, WebSocket close codes, the
 * gateway's metrics). The transport is attached in the constructor, before anything awaits, so no early frame is lost.
 */
export class CallSession implements Pumpable, CallInbound {
  private readonly runtime: CallRuntime;
  /** Resolves once the call is fully closed (provider session included). */
  readonly closed: Promise<void>;

  constructor(transport: CallTransport, options: CallSessionOptions) {
    const clock = systemClock(options.now);
    const recorder = options.recordings?.createRecorder(clock, options.logger);
    this.runtime = new CallRuntime({
      adapter: options.adapter,
      peer: new TransportPeer(transport),
      logger: options.logger,
      providerId: options.providerId,
      metadata: options.metadata,
      tools: options.tools,
      earlyAudioBufferMs: options.earlyAudioBufferMs,
      outboundLeadMs: options.outboundLeadMs,
      outboundStartBufferMs: options.outboundStartBufferMs,
      providerConnectTimeoutMs: options.providerConnectTimeoutMs,
      initTimeoutMs: options.initTimeoutMs,
      limits: options.limits,
      clock,
      pacer: options.pacer,
      callerAudioFramesPerSend: options.callerAudioFramesPerSend,
      observer: options.metrics.callObserver(options.providerId),
      recorder,
    });
    this.closed = this.runtime.closed;
    // The runtime ends the recording with the call; closing it here too releases it even if the call never started.
    if (recorder !== undefined) void this.closed.then(() => recorder.close());
    // Last: a transport may deliver init right away (the HTTP one does).
    transport.attach(this);
  }

  get state(): CallState {
    return this.runtime.state;
  }

  get uuid(): string | undefined {
    return this.runtime.callId;
  }

  handleAvrMessage(data: string | Uint8Array): void {
    this.runtime.receive(data);
  }

  handleInit(uuid: string): void {
    this.runtime.receiveMessage({ type: 'init', uuid, providerConfig: undefined });
  }

  handleAudio(samples: Int16Array): void {
    this.runtime.receiveMessage({ type: 'audio', samples });
  }

  handleDtmf(digit: string): void {
    this.runtime.receiveMessage({ type: 'dtmf_digit', digit });
  }

  transportClosed(code?: number): void {
    this.runtime.peerClosed(code);
  }

  transportError(error: Error): void {
    this.runtime.peerError(error);
  }

  pump(): boolean {
    return this.runtime.pump();
  }

  /** End the call (1000): the transport, then the provider session. Idempotent. */
  close(): Promise<void> {
    return this.runtime.close();
  }

  /** Graceful shutdown deadline reached: tell AVR Core why, then close (1001). */
  shutdown(): Promise<void> {
    return this.runtime.shutdown();
  }
}
