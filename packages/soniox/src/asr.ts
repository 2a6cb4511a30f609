/**
 * `createSonioxAsr`: Soniox real-time STT over its WebSocket API as a core AsrAdapter.
 *
 * Transport: a plain `ws` client that sends `Authorization: Bearer <key>` on the upgrade (the form Soniox
 * requires from 2027-01-15) and never puts the key in the config message. The official `@soniox/node` SDK
 * cannot do that (it uses the global WebSocket, which takes no headers, and sends `api_key` in the config);
 * it is used for its types only.
 */
import type { ClientRequest, IncomingMessage } from 'node:http';
import { endianness } from 'node:os';
import type { Logger } from 'pino';
import { WebSocket } from 'ws';
import type { RawData } from 'ws';
import { AsyncQueue, DEFAULT_RECONNECT_POLICY, closeWebSocket, readErrorBody, PcmHistory, ProviderError, ReconnectBudget, msToSamples, samplesToMs, toProviderError, runWithReconnect, parseRetryAfter } from '@stsgate/core';
import type { AsrAdapter, AsrCapabilities, AsrEvent, AsrStream, CallContext, ReconnectPolicyOptions, SampleRate } from '@stsgate/core';
import { PROVIDER, providerErrorFromClose, providerErrorFromSoniox, providerErrorFromStatus, sanitizeMessage } from './errors.js';
import { TokenAccumulator } from './tokens.js';
import { DEFAULT_LANGUAGE_HINTS, DEFAULT_STT_MODEL, DEFAULT_STT_URL, buildSttConfig, parseSttMessage } from './wire.js';
import type { SttConfigMessage, SttControlMessage } from './wire.js';

export interface SonioxAsrOptions {
  readonly apiKey: string;
  /** Default `wss://stt-rt.soniox.com/transcribe-websocket`; `ws://` works for local servers. */
  readonly url?: string;
  /** Default `stt-rt-v5`. */
  readonly model?: string;
  /** Default `['en']`; an empty list sends no hints. */
  readonly languageHints?: readonly string[];
  readonly maxEndpointDelayMs?: number;
  readonly contextText?: string;
  readonly contextTerms?: readonly string[];
  /** Rate of the audio the host pushes, default 8000 (AVR). */
  readonly sampleRate?: 8000 | 16000;
  /** While no audio flows, a `keepalive` goes out at least this often. Default 10000 (Soniox closes after 20 s). */
  readonly keepaliveIntervalMs?: number;
  /** Upgrade timeout per attempt. Default 10000. */
  readonly connectTimeoutMs?: number;
  /** From the end-of-audio frame to `finished`. Default 10000. */
  readonly finishTimeoutMs?: number;
  /** Audio held while the socket is not open (first connect, reconnect) or catching up; oldest dropped beyond it. Default 10000. */
  readonly maxQueuedMs?: number;
  /** Audio not yet final that is replayed into a new session after a drop. Default 5000. */
  readonly maxReplayMs?: number;
  readonly reconnect?: ReconnectPolicyOptions;
}

export const DEFAULT_KEEPALIVE_INTERVAL_MS = 10_000;

export const sonioxAsrCapabilities: AsrCapabilities = {
  inputSampleRates: [8000, 16000],
  encodings: ['pcm_s16le'],
  interimResults: true,
  endpointing: true,
  finalize: true,
  diarization: false,
};

export function createSonioxAsr(options: SonioxAsrOptions): AsrAdapter {
  const sampleRate: SampleRate = options.sampleRate ?? 8000;
  if (sampleRate !== 8000 && sampleRate !== 16000) throw new RangeError(`Soniox ASR sample rate must be 8000 or 16000, not ${String(sampleRate)}`);
  return {
    id: PROVIDER,
    capabilities: sonioxAsrCapabilities,
    open(call: CallContext): Promise<AsrStream> {
      if (call.signal.aborted) {
        return Promise.reject(new ProviderError(PROVIDER, 'closed', 'the call ended before the ASR stream opened', { retryable: false }));
      }
      const config = buildSttConfig(
        {
          model: options.model ?? DEFAULT_STT_MODEL,
          sampleRate,
          languageHints: options.languageHints ?? DEFAULT_LANGUAGE_HINTS,
          maxEndpointDelayMs: options.maxEndpointDelayMs,
          contextText: options.contextText,
          contextTerms: options.contextTerms,
        },
        call.callId,
      );
      return Promise.resolve(new SonioxAsrStream(options, config, sampleRate, call));
    },
  };
}

type Pending = { kind: 'audio'; samples: Int16Array } | { kind: 'finalize' };

/**
 * Audio that waited (the replay after a drop, what was queued while connecting) goes out at most this much faster
 * than real time: Soniox drops clients that send long bursts (§5.2).
 */
const MAX_CATCH_UP_RATE = 2;
const CATCH_UP_TICK_MS = 20;
/** A late tick sends at most this much wall time's worth, so it never turns into a burst. */
const MAX_CATCH_UP_STEP_MS = 50;

const LITTLE_ENDIAN = endianness() === 'LE';

/** PCM samples -> a fresh little-endian byte buffer (the caller may reuse its array). */
function pcmBytes(samples: Int16Array): Buffer {
  const bytes = Buffer.alloc(samples.byteLength);
  if (LITTLE_ENDIAN) {
    bytes.set(new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength));
  } else {
    for (let i = 0; i < samples.length; i++) bytes.writeInt16LE(samples[i] as number, i * 2);
  }
  return bytes;
}

/**
 * One call's stream. The socket opens in the background: audio (and `finalize`) pushed before it is open or
 * while it reconnects is queued, bounded, and sent in order after the config message and the replay, at no more
 * than twice real time; until that backlog is out, new audio queues behind it.
 */
class SonioxAsrStream implements AsrStream {
  readonly events: AsyncQueue<AsrEvent> = new AsyncQueue<AsrEvent>();
  private readonly logger: Logger;
  private readonly tokens = new TokenAccumulator();
  private readonly budget: ReconnectBudget;
  /** Aborted by `close()` and by the call's signal: stops connecting and retrying. */
  private readonly lifetime = new AbortController();
  private readonly keepaliveMs: number;
  private readonly maxQueued: number;
  private readonly maxReplay: number;

  /** The open, configured socket (undefined while connecting or reconnecting). */
  private socket: WebSocket | undefined;
  private readonly pending: Pending[] = [];
  private pendingSamples = 0;
  private queueOverflowWarned = false;
  private finalizeQueued = false;
  /** Audio sent to the current session that is not final yet, by absolute position (for replay). */
  private readonly history: PcmHistory;
  /** Absolute position (samples) of the current session's first audio sample. */
  private sessionBase = 0;
  /** History still to replay into the current session: [replayAt, replayEnd). */
  private replayAt = 0;
  private replayEnd = 0;
  /** Runs while a backlog (replay, queue) is going out paced. */
  private catchUpTimer: NodeJS.Timeout | undefined;
  private catchUpTickAt = 0;
  private lastSentAt = Date.now();
  private keepaliveTimer: NodeJS.Timeout | undefined;
  private finishTimer: NodeJS.Timeout | undefined;
  private inputEnded = false;
  private endFrameSent = false;
  private done = false;
  private closing: Promise<void> | undefined;
  private invalidReported = false;
  private readonly onCallAbort = (): void => void this.close();

  constructor(
    private readonly options: SonioxAsrOptions,
    private readonly config: SttConfigMessage,
    readonly inputSampleRate: SampleRate,
    private readonly call: CallContext,
  ) {
    this.logger = call.logger.child({ provider: PROVIDER, kind: 'asr' });
    this.budget = new ReconnectBudget(options.reconnect ?? DEFAULT_RECONNECT_POLICY);
    this.keepaliveMs = Math.max(200, options.keepaliveIntervalMs ?? DEFAULT_KEEPALIVE_INTERVAL_MS);
    this.maxQueued = msToSamples(options.maxQueuedMs ?? 10_000, inputSampleRate);
    this.maxReplay = msToSamples(options.maxReplayMs ?? 5000, inputSampleRate);
    this.history = new PcmHistory(Math.max(1, this.maxReplay));
    call.signal.addEventListener('abort', this.onCallAbort, { once: true });
    this.connect(undefined);
  }

  pushAudio(samples: Int16Array): void {
    if (this.done || this.inputEnded || samples.length === 0) return;
    if (this.socket !== undefined && this.catchUpTimer === undefined) {
      this.sendAudio(this.socket, samples);
      return;
    }
    this.pending.push({ kind: 'audio', samples: samples.slice() });
    this.pendingSamples += samples.length;
    this.trimQueue();
  }

  finalize(): void {
    if (this.done || this.inputEnded || this.finalizeQueued || this.tokens.finalizePending) return;
    if (this.socket !== undefined && this.catchUpTimer === undefined) {
      this.sendFinalize(this.socket);
      return;
    }
    this.finalizeQueued = true;
    this.pending.push({ kind: 'finalize' });
  }

  endInput(): void {
    if (this.done || this.inputEnded) return;
    this.inputEnded = true;
    // While a backlog goes out, the catch-up sends the end frame after it.
    if (this.socket !== undefined && this.catchUpTimer === undefined) this.sendEndFrame(this.socket);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.done = true;
      this.lifetime.abort();
      this.call.signal.removeEventListener('abort', this.onCallAbort);
      this.stopTimers();
      this.pending.length = 0;
      this.history.release();
      this.events.end();
      const socket = this.socket;
      this.socket = undefined;
      if (socket !== undefined) await closeWebSocket(socket);
    })();
    return this.closing;
  }

  // ---- connection ----------------------------------------------------------------------------------

  private connect(initialError: ProviderError | undefined): void {
    // A session that was up and dropped is being re-established (the host counts reconnects).
    if (initialError !== undefined) this.call.observer?.reconnecting(PROVIDER);
    runWithReconnect(() => this.openSocket(), {
      provider: PROVIDER,
      budget: this.budget,
      signal: this.lifetime.signal,
      ...(initialError === undefined ? {} : { initialError }),
      onRetry: (error, delayMs, attempt) => {
        this.logger.warn({ category: error.category, err: error.message, attempt, delayMs }, 'Soniox connection failed; reconnecting');
      },
    }).then(
      (socket) => this.attach(socket, initialError !== undefined),
      (error: unknown) => {
        if (this.done) return;
        this.fail(toProviderError(PROVIDER, error));
      },
    );
  }

  /** Opens a socket with the key in the `Authorization` header; resolves once the upgrade succeeded. */
  private openSocket(): Promise<WebSocket> {
    const timeoutMs = this.options.connectTimeoutMs ?? 10_000;
    const secret = this.options.apiKey;
    return new Promise<WebSocket>((resolve, reject) => {
      const socket = new WebSocket(this.options.url ?? DEFAULT_STT_URL, {
        headers: { Authorization: `Bearer ${secret}` },
        perMessageDeflate: false,
        handshakeTimeout: timeoutMs,
      });
      let settled = false;
      let socketError: Error | undefined;
      const finish = (error: ProviderError | undefined): void => {
        if (settled) return;
        settled = true;
        this.lifetime.signal.removeEventListener('abort', onAbort);
        socket.removeAllListeners();
        // Never leave the socket without an 'error' listener (an unhandled one would throw).
        socket.on('error', () => undefined);
        if (error === undefined) {
          resolve(socket);
          return;
        }
        if (socket.readyState !== WebSocket.CLOSED) socket.terminate();
        reject(error);
      };
      const onAbort = (): void => finish(new ProviderError(PROVIDER, 'closed', 'the call ended before the Soniox connection was ready', { retryable: false }));
      this.lifetime.signal.addEventListener('abort', onAbort, { once: true });

      socket.on('unexpected-response', (request: ClientRequest, response: IncomingMessage) => {
        const status = response.statusCode ?? 0;
        const retryAfter = response.headers['retry-after'];
        readErrorBody(response).then(
          (body) => {
            request.destroy();
            finish(
              providerErrorFromStatus(status, body, {
                secret,
                what: 'rejected the connection',
                retryAfterMs: parseRetryAfter(Array.isArray(retryAfter) ? retryAfter[0] : retryAfter),
              }),
            );
          },
          () => {
            request.destroy();
            finish(providerErrorFromStatus(status, '', { secret, what: 'rejected the connection' }));
          },
        );
      });
      socket.on('error', (error: Error) => {
        socketError = error;
        const mapped = toProviderError(PROVIDER, error);
        finish(mapped.category === 'unknown' ? new ProviderError(PROVIDER, 'connectivity', `Soniox connection failed: ${sanitizeMessage(error.message, secret)}`, { cause: error }) : mapped);
      });
      socket.on('close', (code: number, reason: Buffer) => {
        finish(socketError !== undefined ? toProviderError(PROVIDER, socketError) : providerErrorFromClose(code, reason.toString('utf8'), secret));
      });
      socket.on('open', () => finish(undefined));
    });
  }

  /** The socket is open: send the config, then replayed and queued audio, in order and paced. */
  private attach(socket: WebSocket, reconnected: boolean): void {
    if (this.done) {
      void closeWebSocket(socket);
      return;
    }
    let lastError: ProviderError | undefined;
    let finished = false;
    let socketError: Error | undefined;
    socket.on('message', (data: RawData, isBinary: boolean) => {
      if (this.socket !== socket || this.done) return;
      if (isBinary) return;
      const outcome = this.onMessage(rawText(data));
      if (outcome === 'finished') finished = true;
      else if (outcome instanceof ProviderError) lastError = outcome;
    });
    socket.on('error', (error: Error) => {
      socketError = error;
    });
    socket.on('close', (code: number, reason: Buffer) => {
      if (this.socket !== socket) return;
      this.socket = undefined;
      this.stopTimers();
      if (this.done || finished) return;
      let error = lastError;
      if (error === undefined && socketError !== undefined) {
        error = toProviderError(PROVIDER, socketError);
        if (error.category === 'unknown') error = providerErrorFromClose(code, reason.toString('utf8'), this.options.apiKey);
      }
      error ??= providerErrorFromClose(code, reason.toString('utf8'), this.options.apiKey);
      this.onDrop(error);
    });

    this.socket = socket;
    socket.send(JSON.stringify(this.config));
    this.logger.debug({ model: this.config.model, sampleRate: this.config.sample_rate, reconnected }, 'Soniox session open');
    if (reconnected) this.logger.info({ replayMs: samplesToMs(this.history.end - this.history.first, this.inputSampleRate) }, 'Soniox session restored');

    // Audio the previous session had not finalised, then what was queued meanwhile.
    this.sessionBase = this.history.first;
    this.replayAt = this.history.first;
    this.replayEnd = this.history.end;
    this.lastSentAt = Date.now();
    this.endFrameSent = false;
    this.startKeepalive(socket);
    this.catchUpTickAt = Date.now() - CATCH_UP_TICK_MS;
    this.catchUp(socket);
  }

  /**
   * Sends the next slice of the backlog (replay first, then the queue, `finalize` in its place) at
   * MAX_CATCH_UP_RATE x the wall time since the last tick; once it is out, audio flows directly again.
   */
  private catchUp(socket: WebSocket): void {
    if (this.socket !== socket) return;
    const now = Date.now();
    let budget = msToSamples(Math.min(now - this.catchUpTickAt, MAX_CATCH_UP_STEP_MS) * MAX_CATCH_UP_RATE, this.inputSampleRate);
    this.catchUpTickAt = now;
    if (this.replayAt < this.replayEnd && budget > 0) {
      const end = Math.min(this.replayEnd, this.replayAt + budget);
      socket.send(pcmBytes(this.history.copy(this.replayAt, end)));
      budget -= end - this.replayAt;
      this.replayAt = end;
      this.lastSentAt = now;
    }
    while (this.replayAt >= this.replayEnd && this.pending.length > 0) {
      const item = this.pending[0] as Pending;
      if (item.kind === 'finalize') {
        this.pending.shift();
        this.finalizeQueued = false;
        if (!this.tokens.finalizePending) this.sendFinalize(socket);
        continue;
      }
      if (budget <= 0) break;
      let samples = item.samples;
      if (samples.length > budget) {
        item.samples = samples.subarray(budget);
        samples = samples.subarray(0, budget);
      } else {
        this.pending.shift();
      }
      this.pendingSamples -= samples.length;
      budget -= samples.length;
      this.sendAudio(socket, samples);
    }
    if (this.replayAt < this.replayEnd || this.pending.length > 0) {
      this.catchUpTimer ??= setInterval(() => this.catchUp(socket), CATCH_UP_TICK_MS);
      return;
    }
    this.stopCatchUp();
    if (this.inputEnded) this.sendEndFrame(socket);
  }

  private stopCatchUp(): void {
    if (this.catchUpTimer !== undefined) clearInterval(this.catchUpTimer);
    this.catchUpTimer = undefined;
  }

  private onDrop(error: ProviderError): void {
    this.logger.warn({ category: error.category, err: error.message }, 'Soniox connection lost');
    // Whatever is final is kept; the new session starts at the oldest audio that is not final yet.
    const offsetMs = samplesToMs(this.history.first, this.inputSampleRate);
    for (const event of this.tokens.restart(offsetMs)) this.events.push(event);
    this.connect(error);
  }

  /** Ends the stream with a fatal error; final text already received is flushed first. */
  private fail(error: ProviderError): void {
    if (this.done) return;
    for (const event of this.tokens.flush()) this.events.push(event);
    this.events.push({ type: 'error', error, fatal: true });
    void this.close();
  }

  // ---- messages ------------------------------------------------------------------------------------

  private onMessage(text: string): 'finished' | ProviderError | undefined {
    const message = parseSttMessage(text);
    switch (message.kind) {
      case 'invalid':
        if (!this.invalidReported) {
          this.invalidReported = true;
          this.events.push({ type: 'error', error: new ProviderError(PROVIDER, 'protocol', `unexpected Soniox message (${message.reason})`), fatal: false });
        }
        return undefined;
      case 'error': {
        // The server closes right after; the close handler decides between reconnecting and failing.
        const error = providerErrorFromSoniox(message.code, message.message, { secret: this.options.apiKey });
        this.logger.debug({ code: message.code }, 'Soniox error message');
        return error;
      }
      case 'result': {
        const result = message.result;
        for (const event of this.tokens.push(result)) this.events.push(event);
        if (result.final_audio_proc_ms !== undefined) {
          this.history.discardBefore(this.sessionBase + msToSamples(result.final_audio_proc_ms, this.inputSampleRate));
        }
        if (result.finished === true) {
          for (const event of this.tokens.flush()) this.events.push(event);
          this.logger.debug('Soniox session finished');
          void this.close();
          return 'finished';
        }
        return undefined;
      }
    }
  }

  // ---- sending -------------------------------------------------------------------------------------

  private sendAudio(socket: WebSocket, samples: Int16Array): void {
    socket.send(pcmBytes(samples));
    this.history.append(samples);
    if (this.history.end - this.history.first > this.maxReplay) this.history.discardBefore(this.history.end - this.maxReplay);
    this.lastSentAt = Date.now();
  }

  private sendFinalize(socket: WebSocket): void {
    this.sendControl(socket, { type: 'finalize' });
    this.tokens.finalizeRequested();
  }

  private sendControl(socket: WebSocket, message: SttControlMessage): void {
    socket.send(JSON.stringify(message));
    this.lastSentAt = Date.now();
  }

  /** The empty frame ends the session; the server answers with the last finals and `finished`. */
  private sendEndFrame(socket: WebSocket): void {
    if (this.endFrameSent) return;
    this.endFrameSent = true;
    this.stopKeepalive();
    socket.send('');
    this.finishTimer ??= setTimeout(() => {
      this.finishTimer = undefined;
      const ms = this.options.finishTimeoutMs ?? 10_000;
      this.fail(new ProviderError(PROVIDER, 'timeout', `Soniox did not finish within ${ms} ms of the end of audio`, { retryable: false }));
    }, this.options.finishTimeoutMs ?? 10_000);
  }

  private trimQueue(): void {
    while (this.pendingSamples > this.maxQueued) {
      const index = this.pending.findIndex((item) => item.kind === 'audio');
      if (index < 0) break;
      const [dropped] = this.pending.splice(index, 1);
      if (dropped?.kind === 'audio') this.pendingSamples -= dropped.samples.length;
      if (!this.queueOverflowWarned) {
        this.queueOverflowWarned = true;
        this.logger.warn({ maxQueuedMs: this.options.maxQueuedMs ?? 10_000 }, 'Soniox not connected or catching up: oldest queued caller audio dropped');
      }
    }
  }

  private startKeepalive(socket: WebSocket): void {
    this.stopKeepalive();
    // Ticks at half the interval, so silence between two messages never exceeds the interval.
    const half = Math.max(100, Math.floor(this.keepaliveMs / 2));
    this.keepaliveTimer = setInterval(() => {
      if (this.socket !== socket || socket.readyState !== WebSocket.OPEN) return;
      if (Date.now() - this.lastSentAt >= half) this.sendControl(socket, { type: 'keepalive' });
    }, half);
  }

  private stopKeepalive(): void {
    if (this.keepaliveTimer !== undefined) clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = undefined;
  }

  private stopTimers(): void {
    this.stopKeepalive();
    this.stopCatchUp();
    if (this.finishTimer !== undefined) clearTimeout(this.finishTimer);
    this.finishTimer = undefined;
  }
}

function rawText(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  if (data instanceof ArrayBuffer) return Buffer.from(data).toString('utf8');
  return data.toString('utf8');
}
