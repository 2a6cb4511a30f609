import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { AsyncQueue, toProviderError, PcmHistory } from '@stsgate/core';
import type { CallContext, StsEvent, StsSession, VadEvent, VadStream } from '@stsgate/core';
import { dtmfFrequencies, dtmfTone } from './dtmf.js';

export const LOOPBACK_RATE = 8000;
const PROVIDER = 'loopback';
/**
 * Caller audio waiting for the VAD beyond this is dropped, oldest first (logged once per overload episode).
 * The VAD runs ~300x real time, so this only bounds memory if it stalls.
 */
const MAX_BACKLOG_SAMPLES = 20 * LOOPBACK_RATE;
/** Audio kept while idle so a speech_start reported after minSpeechMs still finds its beginning. */
const IDLE_HISTORY_SAMPLES = 3 * LOOPBACK_RATE;
/** DTMF tones waiting to play beyond this are dropped (logged once per burst): a flood of digits cannot queue audio. */
const MAX_QUEUED_TONES = 8;
/** At most this much queued audio per VAD call (100 ms), which is also the granularity of the maxUtterance cut. */
const MAX_BATCH_SAMPLES = LOOPBACK_RATE / 10;

export interface LoopbackSessionSettings {
  readonly maxUtteranceMs: number;
  /** Linear gain applied to echoed speech. */
  readonly gain: number;
  readonly chunkSamples: number;
  /** Pre-roll kept when an over-long utterance is cut by the session itself. */
  readonly padSamples: number;
}

interface Response {
  readonly id: string;
  readonly samples: Int16Array;
  readonly gain: number;
  readonly tone: boolean;
  offset: number;
}

/**
 * One call: caller audio -> VAD (one process() at a time, in order) -> each utterance played back as a
 * response. Playback yields to the event loop between chunks, so truncate() and close() take effect mid-reply.
 */
export class LoopbackSession implements StsSession {
  readonly inputSampleRate = LOOPBACK_RATE;
  readonly outputSampleRate = LOOPBACK_RATE;
  readonly events = new AsyncQueue<StsEvent>();

  private readonly logger: Logger;
  private readonly maxUtteranceSamples: number;
  private inbox: Int16Array[] = [];
  private inboxSamples = 0;
  private dropping = false;
  private pumping = false;
  /** Samples the VAD has processed (stream position). */
  private fed = 0;
  private readonly history = new PcmHistory(IDLE_HISTORY_SAMPLES * 2);
  /** Start (stream position) of the utterance in progress, or undefined. */
  private utteranceStart: number | undefined;
  private readonly responses: Response[] = [];
  private timer: NodeJS.Immediate | undefined;
  private closed = false;
  /** The last digit was dropped because too many tones were queued (the next drop is not logged again). */
  private droppingTones = false;
  private closing: Promise<void> | undefined;
  private readonly onAbort = (): void => void this.close();

  constructor(
    private readonly vad: VadStream,
    private readonly call: CallContext,
    private readonly settings: LoopbackSessionSettings,
  ) {
    this.logger = call.logger.child({ provider: PROVIDER });
    this.maxUtteranceSamples = Math.round((settings.maxUtteranceMs * LOOPBACK_RATE) / 1000);
    call.signal.addEventListener('abort', this.onAbort, { once: true });
  }

  sendAudio(samples: Int16Array): void {
    if (this.closed || samples.length === 0) return;
    this.inbox.push(samples.slice());
    this.inboxSamples += samples.length;
    while (this.inboxSamples > MAX_BACKLOG_SAMPLES && this.inbox.length > 1) {
      const dropped = this.inbox.shift() as Int16Array;
      this.inboxSamples -= dropped.length;
      if (!this.dropping) {
        this.dropping = true;
        this.logger.warn({ backlogMs: (this.inboxSamples * 1000) / LOOPBACK_RATE }, 'VAD is behind: dropping caller audio');
      }
    }
    void this.pump();
  }

  sendDtmf(digit: string): void {
    if (this.closed) return;
    const frequencies = dtmfFrequencies(digit);
    if (frequencies === undefined) {
      this.logger.warn({ digit }, 'ignoring an invalid DTMF digit');
      return;
    }
    if (this.responses.filter((r) => r.tone).length >= MAX_QUEUED_TONES) {
      if (!this.droppingTones) this.logger.warn({ digit, queued: MAX_QUEUED_TONES }, 'too many DTMF tones waiting to play: dropping digits');
      this.droppingTones = true;
      return;
    }
    this.droppingTones = false;
    const id = this.enqueueResponse(dtmfTone(digit, { sampleRate: LOOPBACK_RATE }), 1, true);
    this.logger.debug({ digit, ...frequencies, responseId: id }, 'playing DTMF tone');
  }

  truncate(responseId: string, heardMs: number): void {
    const index = this.responses.findIndex((r) => r.id === responseId);
    if (index < 0) {
      this.logger.debug({ responseId, heardMs }, 'truncate of a finished response');
      return;
    }
    const [response] = this.responses.splice(index, 1) as [Response];
    this.logger.debug(
      { responseId, heardMs, emittedMs: (response.offset * 1000) / LOOPBACK_RATE, totalMs: (response.samples.length * 1000) / LOOPBACK_RATE },
      'response truncated: remaining audio abandoned',
    );
    this.events.push({ type: 'response_done', responseId });
  }

  submitToolResult(callId: string): void {
    this.logger.debug({ toolCallId: callId }, 'loopback has no tools: result ignored');
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    this.call.signal.removeEventListener('abort', this.onAbort);
    if (this.timer !== undefined) clearImmediate(this.timer);
    this.timer = undefined;
    this.responses.length = 0;
    this.inbox = [];
    this.inboxSamples = 0;
    this.history.release();
    this.events.end();
    await this.vad.close();
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (!this.closed && this.inbox.length > 0) {
        const chunk = this.takeInbox();
        this.history.append(chunk);
        let vadEvents: VadEvent[];
        try {
          vadEvents = await this.vad.process(chunk);
        } catch (error) {
          if (!this.closed) this.fail(error);
          return;
        }
        if (this.closed) return;
        this.fed += chunk.length;
        for (const event of vadEvents) this.onVadEvent(event);
        this.cutLongUtterance();
        this.history.discardBefore(
          this.utteranceStart === undefined ? this.fed - IDLE_HISTORY_SAMPLES : this.utteranceStart - this.settings.padSamples,
        );
      }
    } finally {
      this.pumping = false;
    }
  }

  /** Queued audio, coalesced up to MAX_BATCH_SAMPLES: a backlog is worked off in few VAD calls. */
  private takeInbox(): Int16Array {
    let count = 0;
    let total = 0;
    for (const part of this.inbox) {
      if (count > 0 && total + part.length > MAX_BATCH_SAMPLES) break;
      count++;
      total += part.length;
    }
    const parts = this.inbox.splice(0, count);
    this.inboxSamples -= total;
    if (this.inbox.length === 0) this.dropping = false;
    if (parts.length === 1) return parts[0] as Int16Array;
    const out = new Int16Array(total);
    let offset = 0;
    for (const part of parts) {
      out.set(part, offset);
      offset += part.length;
    }
    return out;
  }

  private onVadEvent(event: VadEvent): void {
    switch (event.type) {
      case 'speech_start':
        this.utteranceStart = Math.round((event.atMs * LOOPBACK_RATE) / 1000);
        this.events.push({ type: 'speech_started', onsetAgoMs: ((this.fed - this.utteranceStart) * 1000) / LOOPBACK_RATE });
        return;
      case 'speech_end':
        this.utteranceStart = undefined;
        this.events.push({ type: 'speech_stopped' });
        this.play(event.audio, 'utterance');
        return;
      case 'misfire':
        this.logger.debug({ atMs: event.atMs }, 'VAD misfire');
        return;
    }
  }

  /** An utterance longer than maxUtteranceMs is ended here: played as it stands, the VAD starts over. */
  private cutLongUtterance(): void {
    const start = this.utteranceStart;
    if (start === undefined || this.fed - start < this.maxUtteranceSamples) return;
    this.utteranceStart = undefined;
    this.vad.reset();
    this.events.push({ type: 'speech_stopped' });
    this.play(this.history.copy(start - this.settings.padSamples, this.fed), 'utterance cut at maxUtteranceMs');
  }

  private play(samples: Int16Array, reason: string): void {
    if (samples.length === 0) return;
    const id = this.enqueueResponse(samples, this.settings.gain, false);
    this.logger.debug({ responseId: id, ms: (samples.length * 1000) / LOOPBACK_RATE, reason }, 'playing back');
  }

  private enqueueResponse(samples: Int16Array, gain: number, tone: boolean): string {
    const id = `loopback-${randomUUID()}`;
    this.responses.push({ id, samples, gain, tone, offset: 0 });
    this.schedule();
    return id;
  }

  private schedule(): void {
    if (this.timer !== undefined || this.closed || this.responses.length === 0) return;
    this.timer = setImmediate(() => {
      this.timer = undefined;
      this.emitChunk();
    });
  }

  private emitChunk(): void {
    const response = this.responses[0];
    if (response === undefined || this.closed) return;
    const end = Math.min(response.offset + this.settings.chunkSamples, response.samples.length);
    if (end > response.offset) {
      this.events.push({ type: 'audio', responseId: response.id, samples: applyGain(response.samples.subarray(response.offset, end), response.gain) });
      response.offset = end;
    }
    if (response.offset >= response.samples.length) {
      this.responses.shift();
      this.events.push({ type: 'response_done', responseId: response.id });
    }
    this.schedule();
  }

  private fail(error: unknown): void {
    const providerError = toProviderError(PROVIDER, error);
    this.logger.error({ err: providerError }, 'loopback session failed');
    this.events.push({ type: 'error', error: providerError, fatal: true });
    void this.close();
  }
}

/** A fresh copy scaled by `gain`, rounded and clamped. */
function applyGain(samples: Int16Array, gain: number): Int16Array {
  if (gain === 1) return samples.slice();
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const v = Math.round((samples[i] as number) * gain);
    out[i] = v > 32767 ? 32767 : v < -32768 ? -32768 : v;
  }
  return out;
}
