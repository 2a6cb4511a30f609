import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { pino, type Logger } from 'pino';
import WebSocket, { type RawData } from 'ws';
import {
  AVR_FRAME_BYTES,
  AVR_FRAME_MS,
  AVR_FRAME_SAMPLES,
  AVR_SAMPLE_RATE,
  avrOutboundSchema,
  encodeAvrAudio,
  pcmFromBytes,
} from '@stsgate/core';
import { detectSpeechSegments, type SpeechDetectorOptions, type SpeechSegment } from './speech-segments.js';

// ---- public types ------------------------------------------------------------------------------

export interface DtmfEvent {
  /** Call time at which the digit is sent (before that tick's audio frame). */
  readonly atMs: number;
  /** One of 0-9, A-D, * or #. */
  readonly digit: string;
}

export interface SimulateCallOptions {
  /** STS WebSocket URL, used exactly as given (AVR Core appends its `POST /call` payload as a query string). */
  readonly url: string;
  /** Call uuid sent in `init` (default: a random UUID). */
  readonly uuid?: string;
  /** Caller audio: 8 kHz mono s16. Streamed from call time 0; the last partial frame is zero-padded. */
  readonly input: Int16Array;
  /**
   * Silence streamed after the input so the reply can be received and heard (default 4000 ms). With `idleMs`, the
   * longest the call waits after the input for the agent to go quiet.
   */
  readonly tailMs?: number;
  /**
   * Hang up once the agent has been quiet this long after the input: no message from the server, and nothing left in
   * the playout buffer. Counted from the end of the input (or the last DTMF digit) at the earliest; `tailMs` caps the
   * wait. Unset (default): the whole `tailMs` is streamed.
   */
  readonly idleMs?: number;
  readonly dtmf?: readonly DtmfEvent[];
  /**
   * true (default): one frame every 20 ms on a drift-free schedule, like AVR Core. false: frames back to back
   * (yielding to I/O between frames); all times are then on the virtual clock of 20 ms ticks.
   */
  readonly realtime?: boolean;
  readonly logger?: Logger;
  /** Aborting ends the call like a caller hang-up (the report is still returned, endReason "aborted"). */
  readonly signal?: AbortSignal;
  /** Time allowed for the WebSocket handshake (default 5000 ms). */
  readonly connectTimeoutMs?: number;
  /** Time allowed for the server to answer our close frame before the socket is dropped (default 2000 ms). */
  readonly closeTimeoutMs?: number;
  /** Tuning of the energy detector that finds caller speech in `input`. */
  readonly speechDetector?: SpeechDetectorOptions;
}

export type CallEndReason = 'completed' | 'server_closed' | 'aborted' | 'connection_error';

export interface TranscriptEntry {
  readonly role: 'user' | 'agent';
  readonly text: string;
  readonly atMs: number;
}

export interface ResponseLatency {
  /** End of the caller's speech segment (call time). */
  readonly speechEndMs: number;
  /** Speech end to the first agent audio message received (before the caller spoke again); null if none. */
  readonly receivedMs: number | null;
  /** Speech end to the start of the tick in which that reply audio began to play; null if never heard. */
  readonly heardMs: number | null;
}

/**
 * A barge-in is caller speech that starts while the agent is talking. A gap in the agent audio shorter than this
 * (a chunk that arrived late, playing on after it) is an underrun inside the reply, not the agent going quiet: caller
 * speech starting in it is still a barge-in, and it does not count as the playback stopping.
 */
export const UNDERRUN_MAX_MS = 100;

export interface BargeIn {
  /** Start of caller speech while agent audio was playing (or in an underrun, see {@link UNDERRUN_MAX_MS}). */
  readonly speechStartMs: number;
  /** Call time of the first `interruption` at or after the speech start (before the next caller segment). */
  readonly interruptionAtMs: number | null;
  /** speechStartMs to interruptionAtMs. */
  readonly reactionMs: number | null;
  /**
   * Whether the agent went quiet while the caller spoke or within 1 s after the speech ended (and before the
   * caller's next segment): a reply that keeps playing over the caller is "not stopped".
   */
  readonly playbackStopped: boolean;
  /** Start of the first silent tick after speechStartMs that is not part of an underrun. */
  readonly playbackStoppedAtMs: number | null;
}

export interface CallReport {
  readonly url: string;
  readonly uuid: string;
  /** Wall-clock time of call time 0 (the first frame), ISO 8601. */
  readonly startedAt: string;
  readonly realtime: boolean;
  /** The options the tail ran with: `idleMs` null when unset. */
  readonly tailMs: number;
  readonly idleMs: number | null;
  readonly endReason: CallEndReason;
  /** Call time covered by the heard timeline (number of 20 ms ticks played x 20). */
  readonly durationMs: number;
  readonly sent: {
    readonly audioFrames: number;
    readonly dtmf: readonly DtmfEvent[];
  };
  readonly received: {
    readonly audioMessages: number;
    readonly audioBytes: number;
    readonly audioMs: number;
    /** Audio messages whose payload is not exactly 320 bytes (20 ms). */
    readonly irregularFrames: number;
    readonly interruptions: number;
    readonly transcripts: number;
    readonly errors: number;
  };
  /** Call time of the first agent audio message / of the first tick that played agent audio. */
  readonly firstAudioReceivedAtMs: number | null;
  readonly firstAudioHeardAtMs: number | null;
  /**
   * With `idleMs`, what ended the wait after the input: 'idle' (the agent went quiet) or 'cap' (`tailMs` ran out,
   * `unplayedAgentMs` was cut). Null without `idleMs`, or when the call ended otherwise (server close, abort).
   */
  readonly tailEndedBy: 'idle' | 'cap' | null;
  /** Agent audio actually played to the caller, and audio still queued when the call ended. */
  readonly heardAgentMs: number;
  readonly unplayedAgentMs: number;
  readonly callerSpeech: readonly SpeechSegment[];
  readonly responseLatencies: readonly ResponseLatency[];
  /** Non-null `responseLatencies[].receivedMs`, in order. */
  readonly responseLatenciesMs: readonly number[];
  readonly bargeIns: readonly BargeIn[];
  /** Non-null `bargeIns[].reactionMs`, in order. */
  readonly bargeInReactionMs: readonly number[];
  readonly transcripts: readonly TranscriptEntry[];
  readonly errors: readonly { readonly message: string; readonly atMs: number }[];
  /** Each `interruption` received and how much queued agent audio it flushed. */
  readonly interruptions: readonly { readonly atMs: number; readonly flushedMs: number }[];
  /** Messages from the server that break the AVR STS protocol (never the payload itself). */
  readonly protocolProblems: readonly { readonly atMs: number; readonly problem: string }[];
  /** Socket-level error after the connection was up (e.g. reset), if any. */
  readonly transportError: string | null;
  readonly close: {
    readonly code: number;
    readonly reason: string;
    readonly initiatedBy: 'client' | 'server' | 'transport';
    readonly atMs: number;
  };
  readonly serverClosedFirst: boolean;
  /** What the caller heard: one 20 ms tick of 8 kHz audio per tick of the call, silence when nothing played. */
  readonly heard: Int16Array;
  /** All agent audio received, concatenated in arrival order (including audio later flushed). */
  readonly receivedAudio: Int16Array;
}

export type CallReportJson = Omit<CallReport, 'heard' | 'receivedAudio'>;

/** The report without its audio arrays: safe for JSON.stringify. */
export function reportToJson(report: CallReport): CallReportJson {
  const { heard: _heard, receivedAudio: _received, ...rest } = report;
  return rest;
}

/**
 * Act as AVR Core for one call against an STS WebSocket endpoint. Rejects only when the connection cannot be
 * established (or `signal` is aborted before it is); everything that happens during the call is in the report.
 */
export async function simulateCall(options: SimulateCallOptions): Promise<CallReport> {
  const config = normaliseOptions(options);
  options.signal?.throwIfAborted();
  const ws = await connect(config);
  return new CallSession(config, ws).run();
}

// ---- implementation ----------------------------------------------------------------------------

const DTMF_DIGIT = /^[0-9A-D*#]$/;
const SAMPLES_PER_MS = AVR_SAMPLE_RATE / 1000;
/** How long after the end of the caller's barge-in speech the agent may still go quiet and count as stopped. */
const BARGE_IN_STOP_WINDOW_MS = 1000;

interface Config {
  readonly url: string;
  readonly uuid: string;
  readonly input: Int16Array;
  readonly tailMs: number;
  readonly idleMs: number | undefined;
  readonly dtmf: readonly DtmfEvent[];
  readonly realtime: boolean;
  readonly logger: Logger;
  readonly signal: AbortSignal | undefined;
  readonly connectTimeoutMs: number;
  readonly closeTimeoutMs: number;
  readonly speechDetector: SpeechDetectorOptions;
}

function normaliseOptions(options: SimulateCallOptions): Config {
  if (!(options.input instanceof Int16Array)) throw new TypeError('input must be an Int16Array of 8 kHz samples');
  const tailMs = options.tailMs ?? 4000;
  if (!Number.isFinite(tailMs) || tailMs < 0) throw new RangeError(`tailMs must be >= 0 (got ${tailMs})`);
  const idleMs = options.idleMs;
  if (idleMs !== undefined && (!Number.isFinite(idleMs) || idleMs < 0)) throw new RangeError(`idleMs must be >= 0 (got ${idleMs})`);
  const connectTimeoutMs = options.connectTimeoutMs ?? 5000;
  const closeTimeoutMs = options.closeTimeoutMs ?? 2000;
  for (const [name, value] of [
    ['connectTimeoutMs', connectTimeoutMs],
    ['closeTimeoutMs', closeTimeoutMs],
  ] as const) {
    if (!Number.isFinite(value) || value <= 0) throw new RangeError(`${name} must be > 0 (got ${value})`);
  }
  const dtmf = [...(options.dtmf ?? [])].sort((a, b) => a.atMs - b.atMs);
  for (const event of dtmf) {
    if (!DTMF_DIGIT.test(event.digit)) throw new RangeError(`invalid DTMF digit "${event.digit}" (0-9, A-D, *, #)`);
    if (!Number.isFinite(event.atMs) || event.atMs < 0) throw new RangeError(`invalid DTMF time ${event.atMs}`);
  }
  const uuid = options.uuid ?? randomUUID();
  if (uuid.length === 0) throw new RangeError('uuid must not be empty');
  return {
    url: options.url,
    uuid,
    input: options.input,
    tailMs,
    idleMs,
    dtmf,
    realtime: options.realtime ?? true,
    logger: (options.logger ?? pino({ level: 'silent' })).child({ component: 'call-simulator', uuid }),
    signal: options.signal,
    connectTimeoutMs,
    closeTimeoutMs,
    speechDetector: options.speechDetector ?? {},
  };
}

function connect(config: Config): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(config.url, { perMessageDeflate: false, handshakeTimeout: config.connectTimeoutMs });
    const cleanup = (): void => {
      clearTimeout(timer);
      ws.off('open', onOpen);
      ws.off('error', onError);
      ws.off('close', onClose);
      config.signal?.removeEventListener('abort', onAbort);
    };
    const fail = (error: Error): void => {
      cleanup();
      // Swallow late socket errors from a connection we are abandoning.
      ws.on('error', () => {});
      ws.terminate();
      reject(error);
    };
    const onOpen = (): void => {
      cleanup();
      resolve(ws);
    };
    const onError = (error: Error): void => {
      fail(new Error(`could not connect to ${config.url}: ${error.message}`, { cause: error }));
    };
    const onClose = (code: number): void => {
      fail(new Error(`connection to ${config.url} closed during the handshake (code ${code})`));
    };
    const onAbort = (): void => {
      fail(config.signal?.reason instanceof Error ? config.signal.reason : new Error('call aborted'));
    };
    const timer = setTimeout(() => {
      fail(new Error(`could not connect to ${config.url} within ${config.connectTimeoutMs} ms`));
    }, config.connectTimeoutMs);
    ws.on('open', onOpen);
    ws.on('error', onError);
    ws.on('close', onClose);
    config.signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** A chunk of agent audio in the simulated AVR Core playout buffer. */
interface QueuedAudio {
  readonly samples: Int16Array;
  offset: number;
  readonly receivedAtMs: number;
  started: boolean;
}

class CallSession {
  private readonly log: Logger;
  private readonly inputFrames: number;
  /** Ticks until the caller's input (audio and DTMF) has been sent: the earliest an idle hang-up can come. */
  private readonly inputTicks: number;
  private readonly totalTicks: number;
  private readonly heard: Int16Array;
  /** 1 where the tick played any agent audio. */
  private readonly tickPlayed: Uint8Array;

  private t0 = 0;
  private nextTick = 0;
  private nextDtmf = 0;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private closeTimer: NodeJS.Timeout | undefined;
  private endReason: CallEndReason | undefined;
  private tailEndedBy: CallReport['tailEndedBy'] = null;
  /** Call time of the last sign of the agent: a server message, or the end of the last agent audio played. */
  private lastAgentActivityMs = 0;
  private finished = false;
  private resolve: ((report: CallReport) => void) | undefined;

  private readonly queue: QueuedAudio[] = [];
  private queuedSamples = 0;
  private heardAgentSamples = 0;
  private readonly playStarts: { receivedAtMs: number; tick: number }[] = [];
  private readonly arrivals: number[] = [];
  private readonly receivedChunks: Int16Array[] = [];

  private audioFramesSent = 0;
  private readonly dtmfSent: DtmfEvent[] = [];
  private audioBytes = 0;
  private irregularFrames = 0;
  private readonly transcripts: TranscriptEntry[] = [];
  private readonly errors: { message: string; atMs: number }[] = [];
  private readonly interruptions: { atMs: number; flushedMs: number }[] = [];
  private readonly protocolProblems: { atMs: number; problem: string }[] = [];
  private transportError: string | null = null;
  private closeInfo: CallReport['close'] | undefined;
  private startedAt = '';

  constructor(
    private readonly config: Config,
    private readonly ws: WebSocket,
  ) {
    this.log = config.logger;
    this.inputFrames = Math.ceil(config.input.length / AVR_FRAME_SAMPLES);
    const lastDtmf = config.dtmf.at(-1);
    // A digit goes out with the first tick at or after its time.
    this.inputTicks = Math.max(this.inputFrames, lastDtmf === undefined ? 0 : Math.ceil(lastDtmf.atMs / AVR_FRAME_MS) + 1);
    this.totalTicks = this.inputFrames + Math.ceil(config.tailMs / AVR_FRAME_MS);
    this.heard = new Int16Array(this.totalTicks * AVR_FRAME_SAMPLES);
    this.tickPlayed = new Uint8Array(this.totalTicks);
  }

  run(): Promise<CallReport> {
    return new Promise((resolve) => {
      this.resolve = resolve;
      this.ws.on('message', this.onMessage);
      this.ws.on('error', this.onError);
      this.ws.on('close', this.onClose);
      this.config.signal?.addEventListener('abort', this.onAbort, { once: true });
      if (this.config.signal?.aborted === true) {
        this.onAbort();
        return;
      }
      this.ws.send(JSON.stringify({ type: 'init', uuid: this.config.uuid }));
      this.startedAt = new Date().toISOString();
      this.t0 = performance.now();
      this.log.debug({ url: this.config.url, ticks: this.totalTicks }, 'call started');
      this.onTimer();
    });
  }

  /** Call time in ms: wall clock in realtime mode, the tick clock otherwise. */
  private nowMs(): number {
    return this.config.realtime ? performance.now() - this.t0 : this.nextTick * AVR_FRAME_MS;
  }

  private readonly onTimer = (): void => {
    this.timer = undefined;
    this.immediate = undefined;
    if (this.endReason !== undefined) return;
    if (this.config.realtime) {
      // Run every tick that is due; after an event-loop stall this catches up instead of drifting.
      const elapsed = performance.now() - this.t0;
      while (this.endReason === undefined && this.nextTick < this.totalTicks && this.nextTick * AVR_FRAME_MS <= elapsed) {
        if (this.agentQuietLongEnough()) {
          this.endTail('idle');
          return;
        }
        this.runTick();
      }
      if (this.endReason !== undefined) return;
      // The call ends when the last tick's 20 ms have been played.
      if (this.nextTick >= this.totalTicks && this.totalTicks * AVR_FRAME_MS <= elapsed) {
        this.endTail('cap');
        return;
      }
      const due = this.t0 + this.nextTick * AVR_FRAME_MS;
      this.timer = setTimeout(this.onTimer, Math.max(0, due - performance.now()));
    } else {
      if (this.nextTick >= this.totalTicks || this.agentQuietLongEnough()) {
        this.endTail(this.nextTick >= this.totalTicks ? 'cap' : 'idle');
        return;
      }
      this.runTick();
      // setImmediate runs after pending I/O callbacks, so server messages interleave with our frames.
      if (this.endReason === undefined) this.immediate = setImmediate(this.onTimer);
    }
  };

  /** With idleMs: whether the call can hang up before the tick now due, the agent having gone quiet after the input. */
  private agentQuietLongEnough(): boolean {
    const { idleMs } = this.config;
    if (idleMs === undefined || this.nextTick < this.inputTicks || this.queuedSamples > 0) return false;
    const quietSinceMs = Math.max(this.lastAgentActivityMs, this.inputTicks * AVR_FRAME_MS);
    return this.nextTick * AVR_FRAME_MS - quietSinceMs >= idleMs;
  }

  private endTail(by: 'idle' | 'cap'): void {
    if (this.config.idleMs !== undefined) this.tailEndedBy = by;
    this.endCall('completed');
  }

  private runTick(): void {
    const tick = this.nextTick;
    const tickMs = tick * AVR_FRAME_MS;
    // 1. AVR Core plays the next 20 ms of queued agent audio to the caller.
    this.playTick(tick);
    // 2. DTMF due at or before this tick goes out ahead of the tick's audio frame.
    while (this.nextDtmf < this.config.dtmf.length) {
      const event = this.config.dtmf[this.nextDtmf];
      if (event === undefined || event.atMs > tickMs) break;
      this.send(JSON.stringify({ type: 'dtmf_digit', digit: event.digit }));
      this.dtmfSent.push({ atMs: tickMs, digit: event.digit });
      this.nextDtmf++;
    }
    // 3. The caller's 20 ms frame (input, then silence).
    const frame = new Int16Array(AVR_FRAME_SAMPLES);
    if (tick < this.inputFrames) {
      const from = tick * AVR_FRAME_SAMPLES;
      frame.set(this.config.input.subarray(from, Math.min(from + AVR_FRAME_SAMPLES, this.config.input.length)));
    }
    this.send(encodeAvrAudio(frame));
    this.audioFramesSent++;
    this.nextTick = tick + 1;
  }

  private playTick(tick: number): void {
    let written = 0;
    const base = tick * AVR_FRAME_SAMPLES;
    while (written < AVR_FRAME_SAMPLES) {
      const head = this.queue[0];
      if (head === undefined) break;
      if (!head.started) {
        head.started = true;
        this.playStarts.push({ receivedAtMs: head.receivedAtMs, tick });
      }
      const take = Math.min(AVR_FRAME_SAMPLES - written, head.samples.length - head.offset);
      this.heard.set(head.samples.subarray(head.offset, head.offset + take), base + written);
      head.offset += take;
      written += take;
      if (head.offset >= head.samples.length) this.queue.shift();
    }
    if (written > 0) {
      this.lastAgentActivityMs = Math.max(this.lastAgentActivityMs, (tick + 1) * AVR_FRAME_MS);
      this.tickPlayed[tick] = 1;
      this.queuedSamples -= written;
      this.heardAgentSamples += written;
    }
  }

  private send(text: string): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(text, (error) => {
      if (error !== undefined && error !== null) this.log.debug({ err: error }, 'send failed');
    });
  }

  private readonly onMessage = (data: RawData, isBinary: boolean): void => {
    const atMs = this.nowMs();
    this.lastAgentActivityMs = Math.max(this.lastAgentActivityMs, atMs);
    if (isBinary) {
      this.problem(atMs, 'binary frame (AVR STS uses JSON text frames only)');
      return;
    }
    const text = Array.isArray(data)
      ? Buffer.concat(data).toString('utf8')
      : data instanceof ArrayBuffer
        ? Buffer.from(data).toString('utf8')
        : data.toString('utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      this.problem(atMs, 'message is not valid JSON');
      return;
    }
    const result = avrOutboundSchema.safeParse(parsed);
    if (!result.success) {
      const rawType = typeof parsed === 'object' && parsed !== null ? (parsed as { type?: unknown }).type : undefined;
      const shown = typeof rawType === 'string' && /^[\w.-]{1,32}$/.test(rawType) ? `"${rawType}"` : 'message';
      this.problem(atMs, `invalid ${shown}: ${describeIssues(result.error)}`);
      return;
    }
    const message = result.data;
    switch (message.type) {
      case 'audio':
        this.onAudio(message.audio, atMs);
        return;
      case 'interruption': {
        const flushedMs = this.queuedSamples / SAMPLES_PER_MS;
        this.queue.length = 0;
        this.queuedSamples = 0;
        this.interruptions.push({ atMs, flushedMs });
        this.log.debug({ atMs, flushedMs }, 'interruption: playout flushed');
        return;
      }
      case 'transcript':
        this.transcripts.push({ role: message.role, text: message.text, atMs });
        return;
      case 'error':
        this.errors.push({ message: message.message, atMs });
        this.log.debug({ atMs, message: message.message }, 'server error message');
        return;
    }
  };

  private onAudio(base64: string, atMs: number): void {
    const bytes = Buffer.from(base64, 'base64');
    if (bytes.length !== AVR_FRAME_BYTES) this.irregularFrames++;
    if (bytes.length === 0) {
      this.problem(atMs, 'audio message with an empty payload');
      return;
    }
    if (bytes.length % 2 !== 0) {
      this.problem(atMs, `audio payload of ${bytes.length} bytes is not whole s16le samples`);
      return;
    }
    const samples = pcmFromBytes(bytes);
    this.audioBytes += bytes.length;
    this.arrivals.push(atMs);
    this.receivedChunks.push(samples);
    // Audio arriving after the last tick can no longer be heard; it still counts as received.
    if (this.nextTick < this.totalTicks && this.endReason === undefined) {
      this.queue.push({ samples, offset: 0, receivedAtMs: atMs, started: false });
      this.queuedSamples += samples.length;
    }
  }

  private problem(atMs: number, problem: string): void {
    this.protocolProblems.push({ atMs, problem });
    this.log.debug({ atMs, problem }, 'protocol problem');
  }

  private readonly onError = (error: Error): void => {
    this.transportError ??= error.message;
    this.log.debug({ err: error }, 'socket error');
  };

  private readonly onAbort = (): void => {
    this.endCall('aborted');
  };

  private readonly onClose = (code: number, reason: Buffer): void => {
    // Ticks that were due before the close (an event-loop stall can delay them past it) still play: AVR Core would
    // have played that audio before the socket went away.
    if (this.config.realtime && this.endReason === undefined) {
      const elapsed = performance.now() - this.t0;
      while (this.nextTick < this.totalTicks && this.nextTick * AVR_FRAME_MS <= elapsed) this.runTick();
    }
    const atMs = this.nowMs();
    let initiatedBy: CallReport['close']['initiatedBy'];
    if (this.endReason !== undefined) initiatedBy = 'client';
    else if (this.transportError !== null) initiatedBy = 'transport';
    else initiatedBy = 'server';
    this.closeInfo = { code, reason: reason.toString('utf8'), initiatedBy, atMs };
    if (this.endReason === undefined) this.endReason = initiatedBy === 'server' ? 'server_closed' : 'connection_error';
    this.log.debug({ code, initiatedBy }, 'socket closed');
    this.finish();
  };

  private endCall(reason: CallEndReason): void {
    if (this.endReason !== undefined) return;
    this.endReason = reason;
    this.stopTicking();
    if (this.ws.readyState === WebSocket.CLOSED) {
      this.finish();
      return;
    }
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.close(1000, reason === 'aborted' ? 'call aborted' : 'call ended');
    }
    this.closeTimer = setTimeout(() => {
      this.closeTimer = undefined;
      this.ws.terminate();
    }, this.config.closeTimeoutMs);
  }

  private stopTicking(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.immediate !== undefined) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.stopTicking();
    if (this.closeTimer !== undefined) clearTimeout(this.closeTimer);
    this.closeTimer = undefined;
    this.config.signal?.removeEventListener('abort', this.onAbort);
    this.ws.off('message', this.onMessage);
    this.ws.off('close', this.onClose);
    this.ws.off('error', this.onError);
    this.ws.on('error', () => {}); // a closed socket should not emit, but never let one crash the caller
    const report = this.buildReport();
    this.queue.length = 0;
    this.resolve?.(report);
    this.resolve = undefined;
  }

  private buildReport(): CallReport {
    const ticksPlayed = this.nextTick;
    const durationMs = ticksPlayed * AVR_FRAME_MS;
    const callerSpeech = detectSpeechSegments(this.config.input, {
      ...this.config.speechDetector,
      sampleRate: AVR_SAMPLE_RATE,
    }).filter((segment) => segment.startMs < durationMs);

    const responseLatencies: ResponseLatency[] = callerSpeech.map((segment, index) => {
      const windowEnd = callerSpeech[index + 1]?.startMs ?? Number.POSITIVE_INFINITY;
      const inWindow = (atMs: number): boolean => atMs >= segment.endMs && atMs < windowEnd;
      const received = this.arrivals.find(inWindow);
      const heard = this.playStarts.find((start) => inWindow(start.receivedAtMs));
      return {
        speechEndMs: segment.endMs,
        receivedMs: received === undefined ? null : round(received - segment.endMs),
        heardMs: heard === undefined ? null : round(heard.tick * AVR_FRAME_MS - segment.endMs),
      };
    });

    const bargeIns: BargeIn[] = [];
    const agentTalking = agentTalkingTicks(this.tickPlayed.subarray(0, ticksPlayed));
    callerSpeech.forEach((segment, index) => {
      const startTick = Math.floor(segment.startMs / AVR_FRAME_MS);
      if (startTick >= ticksPlayed || agentTalking[startTick] !== 1) return;
      const windowEnd = callerSpeech[index + 1]?.startMs ?? Number.POSITIVE_INFINITY;
      const interruption = this.interruptions.find((i) => i.atMs >= segment.startMs && i.atMs < windowEnd);
      const stopWindowEnd = Math.min(windowEnd, segment.endMs + BARGE_IN_STOP_WINDOW_MS);
      const windowEndTick = Math.min(ticksPlayed, Math.ceil(stopWindowEnd / AVR_FRAME_MS));
      let stoppedTick: number | undefined;
      for (let tick = startTick; tick < windowEndTick; tick++) {
        if (agentTalking[tick] !== 1) {
          stoppedTick = tick;
          break;
        }
      }
      bargeIns.push({
        speechStartMs: segment.startMs,
        interruptionAtMs: interruption === undefined ? null : round(interruption.atMs),
        reactionMs: interruption === undefined ? null : round(interruption.atMs - segment.startMs),
        playbackStopped: stoppedTick !== undefined,
        playbackStoppedAtMs: stoppedTick === undefined ? null : stoppedTick * AVR_FRAME_MS,
      });
    });

    const firstPlayed = this.tickPlayed.subarray(0, ticksPlayed).indexOf(1);
    const receivedAudio = concat(this.receivedChunks);
    return {
      url: this.config.url,
      uuid: this.config.uuid,
      startedAt: this.startedAt,
      realtime: this.config.realtime,
      tailMs: this.config.tailMs,
      idleMs: this.config.idleMs ?? null,
      endReason: this.endReason ?? 'completed',
      tailEndedBy: this.tailEndedBy,
      durationMs,
      sent: { audioFrames: this.audioFramesSent, dtmf: this.dtmfSent },
      received: {
        audioMessages: this.arrivals.length,
        audioBytes: this.audioBytes,
        audioMs: receivedAudio.length / SAMPLES_PER_MS,
        irregularFrames: this.irregularFrames,
        interruptions: this.interruptions.length,
        transcripts: this.transcripts.length,
        errors: this.errors.length,
      },
      firstAudioReceivedAtMs: this.arrivals[0] === undefined ? null : round(this.arrivals[0]),
      firstAudioHeardAtMs: firstPlayed < 0 ? null : firstPlayed * AVR_FRAME_MS,
      heardAgentMs: this.heardAgentSamples / SAMPLES_PER_MS,
      unplayedAgentMs: this.queuedSamples / SAMPLES_PER_MS,
      callerSpeech,
      responseLatencies,
      responseLatenciesMs: responseLatencies.flatMap((l) => (l.receivedMs === null ? [] : [l.receivedMs])),
      bargeIns,
      bargeInReactionMs: bargeIns.flatMap((b) => (b.reactionMs === null ? [] : [b.reactionMs])),
      transcripts: this.transcripts.map((t) => ({ ...t, atMs: round(t.atMs) })),
      errors: this.errors.map((e) => ({ ...e, atMs: round(e.atMs) })),
      interruptions: this.interruptions.map((i) => ({ atMs: round(i.atMs), flushedMs: i.flushedMs })),
      protocolProblems: this.protocolProblems.map((p) => ({ ...p, atMs: round(p.atMs) })),
      transportError: this.transportError,
      close: this.closeInfo
        ? { ...this.closeInfo, atMs: round(this.closeInfo.atMs) }
        : { code: 1006, reason: '', initiatedBy: 'transport', atMs: round(this.nowMs()) },
      serverClosedFirst: this.closeInfo?.initiatedBy === 'server',
      heard: this.heard.slice(0, ticksPlayed * AVR_FRAME_SAMPLES),
      receivedAudio,
    };
  }
}

/**
 * 1 for each tick in which the agent is talking: it played agent audio, or it lies in an underrun (a silent gap of
 * less than UNDERRUN_MAX_MS with agent audio played on both sides of it).
 */
function agentTalkingTicks(played: Uint8Array): Uint8Array {
  const talking = played.slice();
  const maxGapTicks = Math.ceil(UNDERRUN_MAX_MS / AVR_FRAME_MS) - 1;
  let lastPlayed = -1;
  for (let tick = 0; tick < played.length; tick++) {
    if (played[tick] !== 1) continue;
    const gap = tick - lastPlayed - 1;
    if (lastPlayed >= 0 && gap > 0 && gap <= maxGapTicks) talking.fill(1, lastPlayed + 1, tick);
    lastPlayed = tick;
  }
  return talking;
}

interface SchemaIssues {
  readonly issues: readonly { readonly path: readonly PropertyKey[]; readonly message: string }[];
}

function describeIssues(error: SchemaIssues): string {
  // Paths and the schema's own wording only: never echo received values.
  return error.issues
    .map((issue) => (issue.path.length > 0 ? `${issue.path.map(String).join('.')}: ${issue.message}` : issue.message))
    .join('; ');
}

/** Times in reports: 0.1 ms resolution is plenty and keeps JSON readable. */
function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

function concat(chunks: readonly Int16Array[]): Int16Array {
  let length = 0;
  for (const chunk of chunks) length += chunk.length;
  const out = new Int16Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}
