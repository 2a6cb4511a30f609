/**
 * Soniox token stream -> core ASR events. Pure (no IO, no timers): unit-tested without sockets.
 *
 * Soniox sends each final token exactly once and re-sends non-final tokens (which may change) in every
 * response; the current text is every final so far plus the latest response's non-finals. `<end>` (endpoint
 * detection) closes an utterance; `<fin>` answers a `finalize` request. Both are control tokens and never
 * appear in any text.
 */
import type { AsrEvent } from '@stsgate/core';
import { END_TOKEN, FIN_TOKEN } from './wire.js';
import type { SttResponse } from './wire.js';

export interface TokenAccumulatorOptions {
  /** Added to token timestamps (ms of caller audio before the current Soniox session began). */
  readonly offsetMs?: number;
}

interface FinalRun {
  text: string;
  startMs: number | undefined;
  endMs: number | undefined;
  confidenceSum: number;
  confidenceCount: number;
}

export class TokenAccumulator {
  /** Final text of the utterance in progress (raw: tokens carry their own leading spaces). */
  private utterance = '';
  /** Speech seen in the utterance in progress (a token with text). */
  private started = false;
  private lastPartial = '';
  /** `finalize` requests not yet answered by `<fin>`. */
  private pendingFinalize = 0;
  private offsetMs: number;
  /** A new session began and has sent no final yet: its first token carries no leading space. */
  private sessionFresh = false;

  constructor(options: TokenAccumulatorOptions = {}) {
    this.offsetMs = options.offsetMs ?? 0;
  }

  /** A `finalize` was sent: its `<fin>` ends the utterance. */
  finalizeRequested(): void {
    this.pendingFinalize++;
  }

  get finalizePending(): boolean {
    return this.pendingFinalize > 0;
  }

  /** Final text of the utterance in progress, trimmed (no non-finals). */
  get utteranceText(): string {
    return this.utterance.trim();
  }

  /** Maps one response (already parsed, not an error) to events, in order. */
  push(response: SttResponse): AsrEvent[] {
    const events: AsrEvent[] = [];
    let run: FinalRun | undefined;
    let nonFinal = '';

    const flushFinal = (): void => {
      if (run === undefined) return;
      const text = this.utterance === '' ? run.text.trimStart() : run.text;
      if (text.trim() !== '') {
        this.utterance += text;
        events.push({
          type: 'final',
          text,
          ...(run.startMs === undefined ? {} : { startMs: run.startMs }),
          ...(run.endMs === undefined ? {} : { endMs: run.endMs }),
          ...(run.confidenceCount === 0 ? {} : { confidence: run.confidenceSum / run.confidenceCount }),
        });
      }
      run = undefined;
    };

    let joinPending = this.sessionFresh;
    for (const token of response.tokens) {
      if (token.translation_status === 'translation') continue;
      if (token.text === END_TOKEN || token.text === FIN_TOKEN) {
        // Control tokens are final by definition; anything pending before them belongs to the utterance.
        flushFinal();
        if (token.text === END_TOKEN) {
          this.endUtterance(events, false);
        } else if (this.pendingFinalize > 0) {
          this.pendingFinalize--;
          this.endUtterance(events, true);
        }
        nonFinal = '';
        continue;
      }
      let text = token.text;
      if (joinPending && text.trim() !== '') {
        // Soniox starts every session's first token without a space; after a reconnect it may continue an utterance.
        joinPending = false;
        if (this.utterance !== '' && !/^\s/.test(text)) text = ` ${text}`;
        if (token.is_final) this.sessionFresh = false;
      }
      if (text.trim() !== '' && !this.started) {
        this.started = true;
        events.push({ type: 'speech_started' });
      }
      if (token.is_final) {
        run ??= { text: '', startMs: undefined, endMs: undefined, confidenceSum: 0, confidenceCount: 0 };
        run.text += text;
        const start = this.timestamp(token.start_ms);
        const end = this.timestamp(token.end_ms);
        if (run.startMs === undefined && start !== undefined) run.startMs = start;
        if (end !== undefined) run.endMs = end;
        if (token.confidence !== undefined) {
          run.confidenceSum += token.confidence;
          run.confidenceCount++;
        }
      } else {
        nonFinal += text;
      }
    }
    flushFinal();

    const partial = (this.utterance + nonFinal).trim();
    if (partial !== '' && partial !== this.lastPartial) {
      this.lastPartial = partial;
      events.push({ type: 'partial', text: partial });
    }
    return events;
  }

  /**
   * The stream is ending (`finished`, or the caller gave up): the utterance in progress, if it has final
   * text, becomes an `end_of_utterance`; non-finals are dropped.
   */
  flush(): AsrEvent[] {
    const events: AsrEvent[] = [];
    if (this.utterance.trim() !== '' || this.pendingFinalize > 0) this.endUtterance(events, this.pendingFinalize > 0);
    this.pendingFinalize = 0;
    return events;
  }

  /**
   * The Soniox session was lost and a new one starts at `offsetMs` of caller audio. Final text is kept (the
   * utterance continues); non-finals are forgotten. A pending `finalize` cannot be answered by the new session
   * (it never saw that request), so it is answered now with the final text so far.
   */
  restart(offsetMs: number): AsrEvent[] {
    this.offsetMs = offsetMs;
    this.sessionFresh = true;
    this.lastPartial = this.utterance.trim();
    const events: AsrEvent[] = [];
    if (this.pendingFinalize > 0) {
      this.pendingFinalize = 0;
      this.endUtterance(events, true);
    }
    return events;
  }

  private endUtterance(events: AsrEvent[], requested: boolean): void {
    const text = this.utterance.trim();
    // An endpoint with no words is noise; an answer to `finalize` is always given (the host waits for it).
    if (text !== '' || requested) events.push({ type: 'end_of_utterance', text });
    this.utterance = '';
    this.started = false;
    this.lastPartial = '';
  }

  private timestamp(ms: number | undefined): number | undefined {
    return ms === undefined ? undefined : ms + this.offsetMs;
  }
}


