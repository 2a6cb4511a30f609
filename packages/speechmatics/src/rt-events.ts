/**
 * Real-time ASR transcripts -> core ASR events. Pure (no IO, no timers): unit-tested without sockets.
 *
 * Finals arrive once each (`AddTranscript`); a partial holds the words not final yet and replaces the previous
 * partial. `EndOfUtterance` follows the utterance's last final, so the utterance text is every final since the
 * previous one. Times are shifted by `offsetMs` (caller audio before the current provider session began, after a
 * reconnect).
 */
import type { AsrEvent } from '@stsgate/core';
import { joinSegments, segmentOf } from './common-wire.js';
import type { TranscriptMessage } from './common-wire.js';

export class RtTranscriptMapper {
  private finals: string[] = [];
  private started = false;
  private lastPartial = '';
  private offsetMs: number;
  /** End (ms, caller audio clock) of the latest final: audio before it will never be needed again. */
  private finalEndMsValue = 0;

  constructor(offsetMs = 0) {
    this.offsetMs = offsetMs;
  }

  get finalEndMs(): number {
    return this.finalEndMsValue;
  }

  /** Final text of the utterance in progress. */
  get utteranceText(): string {
    return joinSegments(this.finals);
  }

  transcript(message: TranscriptMessage): AsrEvent[] {
    const segment = segmentOf(message);
    const events: AsrEvent[] = [];
    if (message.message === 'AddPartialTranscript') {
      const text = joinSegments([...this.finals, segment.text]);
      if (text === '' || text === this.lastPartial) return events;
      this.speechStarted(events);
      this.lastPartial = text;
      events.push({ type: 'partial', text });
      return events;
    }
    const text = segment.text.trim();
    if (text === '') return events;
    this.speechStarted(events);
    this.finals.push(segment.text);
    const endMs = this.offsetMs + segment.endMs;
    this.finalEndMsValue = Math.max(this.finalEndMsValue, endMs);
    events.push({
      type: 'final',
      text,
      startMs: this.offsetMs + segment.startMs,
      endMs,
      ...(segment.confidence === undefined ? {} : { confidence: segment.confidence }),
    });
    return events;
  }

  /** `EndOfUtterance`: the utterance's whole final text, if it had any. */
  endOfUtterance(): AsrEvent[] {
    const text = this.utteranceText;
    this.finals = [];
    this.started = false;
    this.lastPartial = '';
    return text === '' ? [] : [{ type: 'end_of_utterance', text }];
  }

  /** The stream ends (or the session is replaced): pending finals close their utterance. */
  flush(): AsrEvent[] {
    return this.endOfUtterance();
  }

  /**
   * A new provider session replays audio from `offsetMs` on: its times start there. Finals already received stay
   * in the utterance; a partial that was never made final is forgotten (the replay repeats it).
   */
  restart(offsetMs: number): void {
    this.offsetMs = offsetMs;
    this.lastPartial = '';
  }

  private speechStarted(events: AsrEvent[]): void {
    if (this.started) return;
    this.started = true;
    events.push({ type: 'speech_started' });
  }
}
