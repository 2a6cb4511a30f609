/**
 * In-memory stages for unit-testing the cascade session without sockets: each records what the session asked of
 * it, and the test drives what it answers.
 */
import { pino } from 'pino';
import { AsyncQueue, ProviderError } from '@stsgate/core';
import type {
  AsrAdapter,
  AsrEvent,
  AsrStream,
  CallContext,
  LlmAdapter,
  LlmDelta,
  LlmRequest,
  SampleRate,
  StsCallContext,
  TtsAdapter,
  TtsRequest,
  VadAdapter,
  VadEvent,
  VadOptions,
  VadStream,
} from '@stsgate/core';
import { DEFAULT_CASCADE_BEHAVIOUR, type CascadeBehaviour, type CascadeSettings } from '../src/index.js';

export class FakeAsr implements AsrAdapter {
  readonly id = 'fake-asr';
  readonly capabilities = { inputSampleRates: [8000] as SampleRate[], encodings: ['pcm_s16le' as const], interimResults: true, endpointing: true, finalize: true, diarization: false };
  events = new AsyncQueue<AsrEvent>();
  pushed = 0;
  finalized = 0;
  closed = false;

  open(): Promise<AsrStream> {
    const stream: AsrStream = {
      inputSampleRate: 8000,
      pushAudio: (samples) => {
        this.pushed += samples.length;
      },
      finalize: () => {
        this.finalized++;
      },
      endInput: () => this.events.end(),
      events: this.events,
      close: async () => {
        this.closed = true;
        this.events.end();
      },
    };
    return Promise.resolve(stream);
  }

  /** The caller said `text` (a final, then the end of the utterance). */
  say(text: string): void {
    this.events.push({ type: 'speech_started' });
    this.events.push({ type: 'final', text });
    this.events.push({ type: 'end_of_utterance', text });
  }
}

/** Each `process()` call answers with the next scripted batch (none by default). */
export class FakeVad implements VadAdapter {
  readonly id = 'fake-vad';
  readonly capabilities = { inputSampleRates: [8000] as SampleRate[] };
  private readonly script: VadEvent[][] = [];
  opened: Partial<VadOptions> | undefined;
  closed = false;
  /** The next `process()` call rejects (a broken model). */
  failNext = false;

  open(_rate: SampleRate, options?: Partial<VadOptions>): Promise<VadStream> {
    this.opened = options;
    return Promise.resolve({
      sampleRate: 8000,
      process: () => {
        if (this.failNext) {
          this.failNext = false;
          return Promise.reject(new Error('onnxruntime: invalid tensor'));
        }
        return Promise.resolve(this.script.shift() ?? []);
      },
      reset: () => undefined,
      close: async () => {
        this.closed = true;
      },
    });
  }

  /** The next audio batch reports these events. */
  next(...events: VadEvent[]): void {
    this.script.push(events);
  }
}

export type LlmScript = (request: LlmRequest, signal: AbortSignal) => AsyncIterable<LlmDelta>;

export class FakeLlm implements LlmAdapter {
  readonly id = 'fake-llm';
  readonly capabilities = { streaming: true, toolCalls: true };
  readonly requests: LlmRequest[] = [];
  readonly signals: AbortSignal[] = [];
  constructor(public script: LlmScript) {}

  chat(request: LlmRequest, call: CallContext): AsyncIterable<LlmDelta> {
    this.requests.push(request);
    this.signals.push(call.signal);
    return this.script(request, call.signal);
  }
}

/** Text as deltas of a few characters, then `done`. */
export async function* textDeltas(text: string, pauseMs = 0): AsyncGenerator<LlmDelta> {
  for (let i = 0; i < text.length; i += 4) {
    if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
    yield { type: 'text', text: text.slice(i, i + 4) };
  }
  yield { type: 'done', finishReason: 'stop' };
}

/** 8 kHz audio: `msPerChar` of a constant level per character, in 20 ms pieces. */
export class FakeTts implements TtsAdapter {
  readonly id = 'fake-tts';
  readonly capabilities = { outputSampleRates: [8000] as SampleRate[], encodings: ['pcm_s16le' as const], streamingInput: false };
  readonly requests: { text: string; signal: AbortSignal }[] = [];
  /** Requests that send nothing until they are aborted (a stalled TTS), counted down. */
  stalls = 0;
  /** Requests (by index, from 0) refused before any audio, not retryable (a voice the provider does not have). */
  readonly refuse = new Set<number>();
  /** `performance.now()` when each request was aborted, and when the first audio went out. */
  readonly abortedAt: number[] = [];
  firstAudioAt: number | undefined;
  constructor(
    private readonly msPerChar = 10,
    private readonly pieceDelayMs = 0,
  ) {}

  synthesize(request: TtsRequest, call: CallContext) {
    const refused = this.refuse.has(this.requests.length);
    this.requests.push({ text: request.text, signal: call.signal });
    const samples = Math.round((request.text.length * this.msPerChar * 8000) / 1000);
    const delay = this.pieceDelayMs;
    const stall = this.stalls > 0;
    if (stall) this.stalls--;
    call.signal.addEventListener('abort', () => this.abortedAt.push(performance.now()), { once: true });
    const firstAudio = (): void => {
      this.firstAudioAt ??= performance.now();
    };
    async function* audio(): AsyncGenerator<Int16Array> {
      if (refused) throw new ProviderError('fake-tts', 'invalid_request', 'voice not found', { retryable: false });
      if (stall) await new Promise((resolve) => call.signal.addEventListener('abort', resolve));
      for (let sent = 0; sent < samples; sent += 160) {
        if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
        if (call.signal.aborted) return;
        firstAudio();
        yield new Int16Array(Math.min(160, samples - sent)).fill(1000);
      }
    }
    return { outputSampleRate: 8000 as SampleRate, audio: audio() };
  }
}

export const silentLogger = pino({ level: 'silent' });

export function callContext(signal: AbortSignal = new AbortController().signal): StsCallContext {
  return { callId: 'call-1', metadata: { from: '2001' }, logger: silentLogger, signal, tools: [] };
}

export function settings(stages: { asr: FakeAsr; vad: FakeVad; llm: FakeLlm; tts: FakeTts }, behaviour: Partial<CascadeBehaviour> = {}): CascadeSettings {
  return {
    ...DEFAULT_CASCADE_BEHAVIOUR,
    greeting: { type: 'none' },
    ...behaviour,
    ...stages,
    instructions: () => Promise.resolve('Be brief.'),
  };
}
