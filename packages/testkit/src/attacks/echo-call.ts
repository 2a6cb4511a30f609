// echoCall: a well-behaved AVR Core call against the loopback provider, to see whether an attack hurts other calls.
import { performance } from 'node:perf_hooks';
import WebSocket, { type RawData } from 'ws';
import { AVR_FRAME_MS, AVR_FRAME_SAMPLES, AVR_SAMPLE_RATE, encodeAvrAudio } from '@stsgate/core';
import { detectSpeechSegments } from '../speech-segments.js';
import { errorCode, isRecord, requirePositive, round1, sinceMs, toBuffer } from './common.js';
import { AvrWsClient, type ClosedBy } from './ws-client.js';

export interface EchoCallOptions {
  readonly uuid: string;
  /** The caller's speech, 8 kHz mono s16; streamed in real time as 20 ms frames (the last one zero-padded). */
  readonly speech: Int16Array;
  /** Silence streamed after the speech at least this long (default 1500 ms); more while the echo is still playing. */
  readonly trailingSilenceMs?: number;
  readonly headers?: Readonly<Record<string, string>>;
  /** The call is hung up at this point at the latest (default: speech + trailing silence + 5000 ms). */
  readonly timeoutMs?: number;
  /** WebSocket handshake timeout (default 5000 ms). */
  readonly connectTimeoutMs?: number;
}

export interface EchoReport {
  /** Agent audio received (all `audio` messages). */
  readonly agentAudioMs: number;
  /** The caller's speech as the test kit's energy detector finds it: first speech start to last speech end. */
  readonly expectedMs: number;
  /** agentAudioMs >= 0.9 x expectedMs (the loopback plays back the VAD's utterance plus its pads, ~+400 ms). */
  readonly complete: boolean;
  /** AVR `error` texts received, and a connection failure or protocol problem seen by this client. */
  readonly errors: string[];
  readonly interruptions: number;
  /** Code of the close that ended the call (the server's, or the answer to our close); undefined if none came. */
  readonly closeCode: number | undefined;
  readonly closedBy: 'server' | 'client' | undefined;
  /** Longest gap between consecutive agent audio messages once the echo started. */
  readonly maxGapMs: number;
  /** From the call to the report. */
  readonly elapsedMs: number;
}

/** The echo is over once the agent has been quiet this long, with at least this share of the speech received... */
const ECHO_DONE_QUIET_MS = 400;
const COMPLETE_SHARE = 0.9;
/** ...or this long whatever was received (a stall longer than this ends the call as incomplete). */
const ECHO_GIVE_UP_QUIET_MS = 2500;

/**
 * A well-behaved AVR Core call against the gateway's loopback provider (which plays each caller utterance back):
 * `init`, the speech in real-time 20 ms frames, then silence until the echo is over (or `timeoutMs`), then a normal
 * close. Never rejects: a failed connection is in `errors`.
 */
export function echoCall(url: string, options: EchoCallOptions): Promise<EchoReport> {
  if (!(options.speech instanceof Int16Array)) throw new TypeError('speech must be an Int16Array of 8 kHz samples');
  requirePositive('trailingSilenceMs', options.trailingSilenceMs, true);
  requirePositive('timeoutMs', options.timeoutMs);
  requirePositive('connectTimeoutMs', options.connectTimeoutMs);
  return new EchoCall(url, options).run();
}

/** Speech span (first start to last end) found by the test kit's energy detector, in ms. */
function speechSpanMs(speech: Int16Array): number {
  const segments = detectSpeechSegments(speech, { sampleRate: AVR_SAMPLE_RATE });
  const first = segments[0];
  const last = segments.at(-1);
  return first === undefined || last === undefined ? 0 : last.endMs - first.startMs;
}

class EchoCall extends AvrWsClient<EchoReport> {
  private readonly speechFrames: string[];
  private readonly silenceFrame = encodeAvrAudio(new Int16Array(AVR_FRAME_SAMPLES));
  private readonly trailingSilenceMs: number;
  private readonly timeoutMs: number;
  private readonly expectedMs: number;
  private callStart = 0;
  private nextFrame = 0;
  private agentSamples = 0;
  private firstAudioAt: number | undefined;
  private lastAudioAt: number | undefined;
  private maxGapMs = 0;
  private interruptions = 0;
  private readonly errors: string[] = [];
  private frameTimer: NodeJS.Timeout | undefined;

  constructor(
    url: string,
    private readonly options: EchoCallOptions,
  ) {
    super(url, options);
    this.speechFrames = [];
    for (let at = 0; at < options.speech.length; at += AVR_FRAME_SAMPLES) {
      const frame = new Int16Array(AVR_FRAME_SAMPLES);
      frame.set(options.speech.subarray(at, at + AVR_FRAME_SAMPLES));
      this.speechFrames.push(encodeAvrAudio(frame));
    }
    this.trailingSilenceMs = options.trailingSilenceMs ?? 1500;
    this.timeoutMs = options.timeoutMs ?? this.speechFrames.length * AVR_FRAME_MS + this.trailingSilenceMs + 5000;
    this.expectedMs = speechSpanMs(options.speech);
  }

  private get agentAudioMs(): number {
    return (this.agentSamples * 1000) / AVR_SAMPLE_RATE;
  }

  protected onOpen(): void {
    this.ws.send(JSON.stringify({ type: 'init', uuid: this.options.uuid }));
    this.callStart = performance.now();
    this.tick();
  }

  /** Send every frame due by now (drift-free 20 ms schedule), then decide whether the call is over. */
  private readonly tick = (): void => {
    this.frameTimer = undefined;
    if (this.closing || this.ws.readyState !== WebSocket.OPEN) return;
    const now = performance.now();
    const elapsed = now - this.callStart;
    while (this.nextFrame * AVR_FRAME_MS <= elapsed) {
      this.ws.send(this.speechFrames[this.nextFrame] ?? this.silenceFrame);
      this.nextFrame++;
    }
    if (this.isOver(now, elapsed)) {
      this.hangUp('call ended');
      return;
    }
    this.frameTimer = setTimeout(this.tick, Math.max(0, this.nextFrame * AVR_FRAME_MS - (performance.now() - this.callStart)));
  };

  private isOver(now: number, elapsed: number): boolean {
    if (elapsed >= this.timeoutMs) return true;
    const silenceSentMs = (this.nextFrame - this.speechFrames.length) * AVR_FRAME_MS;
    if (silenceSentMs < this.trailingSilenceMs || this.lastAudioAt === undefined) return false;
    const quietMs = now - this.lastAudioAt;
    const enough = this.agentAudioMs >= COMPLETE_SHARE * this.expectedMs;
    return quietMs >= (enough ? ECHO_DONE_QUIET_MS : ECHO_GIVE_UP_QUIET_MS);
  }

  protected onMessage(data: RawData, isBinary: boolean): void {
    if (isBinary) {
      this.errors.push('binary message from the server');
      return;
    }
    let message: unknown;
    try {
      message = JSON.parse(toBuffer(data).toString('utf8'));
    } catch {
      this.errors.push('message from the server is not JSON');
      return;
    }
    if (!isRecord(message)) return;
    if (message.type === 'audio' && typeof message.audio === 'string') this.onAudio(message.audio);
    else if (message.type === 'error') this.errors.push(typeof message.message === 'string' ? message.message : '');
    else if (message.type === 'interruption') this.interruptions++;
  }

  private onAudio(base64: string): void {
    const now = performance.now();
    // base64 length -> decoded bytes, without decoding.
    const padding = base64.endsWith('==') ? 2 : base64.endsWith('=') ? 1 : 0;
    const bytes = (base64.length / 4) * 3 - padding;
    this.agentSamples += Math.floor(bytes / 2);
    if (this.lastAudioAt !== undefined) this.maxGapMs = Math.max(this.maxGapMs, now - this.lastAudioAt);
    this.firstAudioAt ??= now;
    this.lastAudioAt = now;
  }

  protected onError(error: Error): void {
    const text = this.callStart === 0 ? `connection failed: ${error.message}` : `socket error: ${errorCode(error)}`;
    if (!this.errors.includes(text)) this.errors.push(text);
  }

  protected stopSending(): void {
    clearTimeout(this.frameTimer);
    this.frameTimer = undefined;
  }

  protected report(closedBy: ClosedBy): EchoReport {
    const agentAudioMs = round1(this.agentAudioMs);
    return {
      agentAudioMs,
      expectedMs: this.expectedMs,
      complete: this.expectedMs > 0 && agentAudioMs >= COMPLETE_SHARE * this.expectedMs,
      errors: this.errors,
      interruptions: this.interruptions,
      closeCode: this.closeCode,
      closedBy,
      maxGapMs: round1(this.maxGapMs),
      elapsedMs: sinceMs(this.t0),
    };
  }
}
