import { AsyncQueue, ProviderError } from '@stsgate/core';
import type { SampleRate, StsAdapter, StsCallContext, StsCapabilities, StsEvent, StsSession } from '@stsgate/core';

/** Deliberate defects for the conformance self-test. */
export interface StsDefects {
  /** Caller audio of every session feeds one turn detector, and its replies go to every session. */
  readonly sharedBuffer?: boolean;
  /** One more audio chunk after each response_done. */
  readonly audioAfterDone?: boolean;
  /** Caller audio sent before the simulated provider socket is open (30 ms after connect) is dropped. */
  readonly dropEarlyAudio?: boolean;
  /** The second close() throws and the events never end. */
  readonly closeNotIdempotent?: boolean;
  /** connect() goes ahead although call.signal is already aborted. */
  readonly ignoreAbortedSignal?: boolean;
  /** sendDtmf() of an invalid digit throws. */
  readonly throwOnBadDigit?: boolean;
  /** submitToolResult() of an unknown call id reports an error event. */
  readonly errorOnUnknownToolResult?: boolean;
  /** Transcripts keep an `<end>` marker. */
  readonly leakControlTokens?: boolean;
  /** A tool result is dropped: no reply follows. */
  readonly ignoreToolResult?: boolean;
  /** outputSampleRate is 48 kHz while the capabilities declare only 24 kHz. */
  readonly undeclaredOutputRate?: boolean;
  /** Interleaves empty audio events. */
  readonly emptyAudioChunks?: boolean;
  /** The tool call arguments are not JSON. */
  readonly badToolArguments?: boolean;
  /** truncate() stops the reply's audio but never ends it (no response_done), so the host waits forever. */
  readonly truncateLeavesReplyOpen?: boolean;
  /** A dropped provider connection is not restored: a fatal error event, and the session ends. */
  readonly endOnDrop?: boolean;
  /** After a reconnect the last reply is spoken again (a restored conversation that re-runs its last response). */
  readonly replayAfterReconnect?: boolean;
  /** The same, but only once the next caller turn arrives (before the reply to it). */
  readonly replayWithNextTurn?: boolean;
  /** A tool result more than 1 s after its tool_call is dropped as stale: the session waits for the tool forever. */
  readonly lateToolResultLost?: boolean;
  /** A tool call unanswered for 1 s fails the call: a fatal error event, and the session ends. */
  readonly failOnSlowTool?: boolean;
}

const PROVIDER = 'reference-sts';
const INPUT_RATE: SampleRate = 16000;
const OUTPUT_RATE: SampleRate = 24000;
const FRAME = (INPUT_RATE / 1000) * 20;
const SPEECH_RMS = 300;
const MIN_SPEECH_FRAMES = 5;
const END_SILENCE_FRAMES = 20;
const REPLY_MS = 600;
const CHUNK = (OUTPUT_RATE / 1000) * 100;
const DTMF = /^[0-9A-D*#]$/i;
/** The simulated provider socket opens this long after connect() or a drop. */
const CONNECT_MS = 30;
/** The defective tool deadlines (lateToolResultLost, failOnSlowTool). */
const TOOL_DEADLINE_MS = 1000;

const CAPABILITIES: StsCapabilities = {
  inputSampleRates: [INPUT_RATE],
  outputSampleRates: [OUTPUT_RATE],
  encodings: ['pcm_s16le'],
  serverTurnDetection: true,
  userTranscripts: true,
  agentTranscripts: true,
  truncation: true,
  toolCalls: true,
  dtmf: true,
};

function tone(ms: number, frequency: number): Int16Array {
  const n = Math.round((ms * OUTPUT_RATE) / 1000);
  const out = new Int16Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.round(8000 * Math.sin((2 * Math.PI * frequency * i) / OUTPUT_RATE));
  return out;
}

/** Energy turn detection over 20 ms frames: a turn ends after 400 ms of silence following >= 100 ms of speech. */
class TurnDetector {
  #pending = new Int16Array(0);
  #speechFrames = 0;
  #silentFrames = 0;

  constructor(private readonly onTurn: () => void) {}

  push(samples: Int16Array): void {
    const all = new Int16Array(this.#pending.length + samples.length);
    all.set(this.#pending);
    all.set(samples, this.#pending.length);
    let offset = 0;
    for (; offset + FRAME <= all.length; offset += FRAME) this.#frame(all.subarray(offset, offset + FRAME));
    this.#pending = all.slice(offset);
  }

  #frame(frame: Int16Array): void {
    let sum = 0;
    for (const sample of frame) sum += sample * sample;
    const speech = Math.sqrt(sum / frame.length) > SPEECH_RMS;
    if (speech) {
      this.#speechFrames++;
      this.#silentFrames = 0;
      return;
    }
    this.#silentFrames++;
    if (this.#speechFrames >= MIN_SPEECH_FRAMES && this.#silentFrames >= END_SILENCE_FRAMES) {
      this.#speechFrames = 0;
      this.onTurn();
    }
  }
}

interface Shared {
  readonly sessions: Set<ReferenceSession>;
  detector: TurnDetector | undefined;
}

class ReferenceSession implements StsSession {
  readonly inputSampleRate = INPUT_RATE;
  readonly outputSampleRate: SampleRate;
  readonly events = new AsyncQueue<StsEvent>();
  #open = false;
  #closed = false;
  #closeCount = 0;
  #early: Int16Array[] = [];
  #turns = 0;
  #responses = 0;
  /** Tool calls waiting for their result, with when they were made. */
  #pendingCalls = new Map<string, number>();
  #lastReply: { text: string; ms: number } | undefined;
  #replayOwed = false;
  #active: { id: string; timer: NodeJS.Timeout | undefined } | undefined;
  #queue: (() => void)[] = [];
  readonly #detector: TurnDetector;
  readonly #timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly call: StsCallContext,
    private readonly defects: StsDefects,
    private readonly shared: Shared,
  ) {
    this.outputSampleRate = defects.undeclaredOutputRate === true ? 48000 : OUTPUT_RATE;
    this.#detector = new TurnDetector(() => this.onTurn());
    if (defects.sharedBuffer === true) shared.detector ??= new TurnDetector(() => shared.sessions.forEach((session) => session.onTurn()));
    shared.sessions.add(this);
    call.signal.addEventListener('abort', () => void this.close(), { once: true });
    this.#later(CONNECT_MS, () => this.#opened());
  }

  /** The simulated provider socket is open: the audio held meanwhile goes to it. */
  #opened(): void {
    this.#open = true;
    const early = this.#early;
    this.#early = [];
    for (const samples of early) this.#feed(samples);
  }

  /** The simulated provider socket drops: it reconnects CONNECT_MS later, caller audio meanwhile held (as at connect). */
  dropConnection(): void {
    if (this.#closed) return;
    if (this.defects.endOnDrop === true) {
      this.events.push({ type: 'error', fatal: true, error: new ProviderError(PROVIDER, 'connectivity', 'the provider connection dropped') });
      void this.close();
      return;
    }
    this.#open = false;
    this.#later(CONNECT_MS, () => {
      this.#opened();
      const last = this.#lastReply;
      if (this.defects.replayAfterReconnect === true && last !== undefined) this.#reply(last.text, last.ms);
      if (this.defects.replayWithNextTurn === true) this.#replayOwed = true;
    });
  }

  sendAudio(samples: Int16Array): void {
    if (this.#closed || samples.length === 0) return;
    if (!this.#open) {
      if (this.defects.dropEarlyAudio !== true) this.#early.push(samples.slice());
      return;
    }
    this.#feed(samples);
  }

  sendDtmf(digit: string): void {
    if (this.#closed) return;
    if (!DTMF.test(digit)) {
      if (this.defects.throwOnBadDigit === true) throw new Error(`invalid digit ${digit}`);
      return;
    }
    this.#reply(`You pressed ${digit}.`, 300);
  }

  truncate(responseId: string): void {
    if (this.#closed || this.#active?.id !== responseId) return;
    clearTimeout(this.#active.timer);
    if (this.defects.truncateLeavesReplyOpen === true) return;
    this.#finish(responseId);
  }

  submitToolResult(callId: string): void {
    if (this.#closed) return;
    const calledAt = this.#pendingCalls.get(callId);
    if (calledAt !== undefined && this.defects.lateToolResultLost === true && Date.now() - calledAt > TOOL_DEADLINE_MS) return;
    if (!this.#pendingCalls.delete(callId)) {
      if (this.defects.errorOnUnknownToolResult === true) {
        this.events.push({ type: 'error', fatal: false, error: new ProviderError(PROVIDER, 'invalid_request', `unknown tool call ${callId}`) });
      }
      return;
    }
    if (this.defects.ignoreToolResult !== true) this.#reply('Your order has shipped.', REPLY_MS);
  }

  async close(): Promise<void> {
    this.#closeCount++;
    if (this.defects.closeNotIdempotent === true && this.#closeCount > 1) throw new Error('already closed');
    if (this.#closed) return;
    this.#closed = true;
    this.shared.sessions.delete(this);
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    this.#queue = [];
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (this.defects.closeNotIdempotent !== true) this.events.end();
  }

  #feed(samples: Int16Array): void {
    (this.shared.detector ?? this.#detector).push(samples);
  }

  onTurn(): void {
    if (this.#closed) return;
    const turn = ++this.#turns;
    const marker = this.defects.leakControlTokens === true ? ' <end>' : '';
    this.events.push({ type: 'speech_started' });
    this.events.push({ type: 'speech_stopped' });
    this.events.push({ type: 'transcript', role: 'user', text: `Caller turn ${String(turn)}.${marker}`, final: true });
    const tool = this.call.tools[0];
    if (turn === 1 && tool !== undefined) {
      const callId = `call_${String(turn)}`;
      this.#pendingCalls.set(callId, Date.now());
      if (this.defects.failOnSlowTool === true) {
        this.#later(TOOL_DEADLINE_MS, () => {
          if (!this.#pendingCalls.has(callId)) return;
          this.events.push({ type: 'error', fatal: true, error: new ProviderError(PROVIDER, 'timeout', `tool call ${callId} got no result within ${String(TOOL_DEADLINE_MS)} ms`) });
          void this.close();
        });
      }
      const argumentsJson = this.defects.badToolArguments === true ? '{order: 42' : '{"order":42}';
      this.events.push({ type: 'tool_call', callId, name: tool.name, argumentsJson });
      return;
    }
    const last = this.#lastReply;
    if (this.#replayOwed && last !== undefined) this.#reply(last.text, last.ms);
    this.#replayOwed = false;
    this.#reply(`Reply to turn ${String(turn)}.${marker}`, REPLY_MS);
  }

  /** Replies play one after the other. */
  #reply(text: string, ms: number): void {
    this.#lastReply = { text, ms };
    const start = (): void => {
      const id = `resp_${String(++this.#responses)}`;
      const audio = tone(ms, 440);
      this.events.push({ type: 'transcript', role: 'agent', text, final: true });
      this.#active = { id, timer: undefined };
      let offset = 0;
      const step = (): void => {
        if (this.#closed || this.#active?.id !== id) return;
        if (this.defects.emptyAudioChunks === true) this.events.push({ type: 'audio', responseId: id, samples: new Int16Array(0) });
        this.events.push({ type: 'audio', responseId: id, samples: audio.slice(offset, offset + CHUNK) });
        offset += CHUNK;
        if (offset >= audio.length) this.#finish(id);
        else this.#active.timer = this.#later(5, step);
      };
      step();
    };
    if (this.#active === undefined) start();
    else this.#queue.push(start);
  }

  #finish(id: string): void {
    this.#active = undefined;
    this.events.push({ type: 'response_done', responseId: id });
    if (this.defects.audioAfterDone === true) this.#later(5, () => this.events.push({ type: 'audio', responseId: id, samples: tone(20, 440) }));
    this.#queue.shift()?.();
  }

  #later(ms: number, run: () => void): NodeJS.Timeout {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (!this.#closed) run();
    }, ms);
    this.#timers.add(timer);
    return timer;
  }
}

export interface ReferenceStsAdapter extends StsAdapter {
  /** Drops the simulated provider connection of every open session (the harness's `dropConnection`). */
  dropConnections(): void;
}

/**
 * An in-process STS adapter used only to prove the conformance suite: energy turn detection at 16 kHz, a 600 ms
 * 24 kHz tone as the reply, transcripts of both roles, a tool call on the first turn when a tool is offered, DTMF,
 * truncation, and a simulated provider connection that reconnects when dropped. Its defects make checks fail.
 */
export function referenceSts(defects: StsDefects = {}): ReferenceStsAdapter {
  const shared: Shared = { sessions: new Set(), detector: undefined };
  return {
    id: PROVIDER,
    dropConnections: () => {
      for (const session of [...shared.sessions]) session.dropConnection();
    },
    capabilities: CAPABILITIES,
    connect: (call: StsCallContext): Promise<StsSession> => {
      if (call.signal.aborted && defects.ignoreAbortedSignal !== true) {
        return Promise.reject(new ProviderError(PROVIDER, 'closed', 'the call ended before the session opened', { retryable: false }));
      }
      return Promise.resolve(new ReferenceSession(call, defects, shared));
    },
  };
}
