import {
  AsyncQueue,
  type StsCallContext,
  type SampleRate,
  type StsAdapter,
  type StsCapabilities,
  type StsEvent,
  type StsSession,
} from '@stsgate/core';

/**
 * A provider the test drives by hand: it records what the gateway sends and emits the events the
 * test pushes. Used to exercise the gateway's call state machine without any provider protocol.
 */
export class ScriptedSession implements StsSession {
  readonly events = new AsyncQueue<StsEvent>();
  readonly audio: Int16Array[] = [];
  readonly dtmf: string[] = [];
  readonly truncations: { responseId: string; heardMs: number }[] = [];
  readonly toolResults: { callId: string; output: string }[] = [];
  closeCount = 0;

  constructor(
    readonly call: StsCallContext,
    readonly inputSampleRate: SampleRate,
    readonly outputSampleRate: SampleRate,
  ) {}

  sendAudio(samples: Int16Array): void {
    this.audio.push(samples);
  }
  sendDtmf(digit: string): void {
    this.dtmf.push(digit);
  }
  truncate(responseId: string, heardMs: number): void {
    this.truncations.push({ responseId, heardMs });
  }
  submitToolResult(callId: string, output: string): void {
    this.toolResults.push({ callId, output });
  }
  emit(event: StsEvent): void {
    this.events.push(event);
  }
  receivedSamples(): number {
    return this.audio.reduce((sum, chunk) => sum + chunk.length, 0);
  }
  async close(): Promise<void> {
    this.closeCount++;
    this.events.end();
  }
}

export interface ScriptedStsOptions {
  inputSampleRate?: SampleRate;
  outputSampleRate?: SampleRate;
  truncation?: boolean;
  /** Make connect() wait for this promise (to test audio that arrives before the provider is ready). */
  ready?: Promise<void>;
  connectError?: unknown;
}

export class ScriptedSts implements StsAdapter {
  readonly id = 'scripted';
  readonly capabilities: StsCapabilities;
  readonly sessions: ScriptedSession[] = [];
  private readonly waiters: ((session: ScriptedSession) => void)[] = [];

  constructor(private readonly options: ScriptedStsOptions = {}) {
    this.capabilities = {
      inputSampleRates: [options.inputSampleRate ?? 8000],
      outputSampleRates: [options.outputSampleRate ?? 8000],
      encodings: ['pcm_s16le'],
      serverTurnDetection: true,
      userTranscripts: true,
      agentTranscripts: true,
      truncation: options.truncation ?? true,
      toolCalls: false,
      dtmf: true,
    };
  }

  async connect(call: StsCallContext): Promise<StsSession> {
    await this.options.ready;
    if (this.options.connectError !== undefined) throw this.options.connectError;
    const session = new ScriptedSession(call, this.options.inputSampleRate ?? 8000, this.options.outputSampleRate ?? 8000);
    this.sessions.push(session);
    for (const waiter of this.waiters.splice(0)) waiter(session);
    return session;
  }

  /** The next session to be connected (or the latest, if one exists already and none is awaited). */
  nextSession(): Promise<ScriptedSession> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}
