/**
 * When has the caller finished a turn, and what did they say? The ASR's own endpointing decides (Soniox endpoint
 * detection, Speechmatics EndOfUtterance: they know the words, not just the silence). The local VAD is the
 * fallback: once it has heard the caller stop, the ASR gets `endpointMaxWaitMs` to end the utterance; then it is
 * asked to finalize (when it can) and gets `finalizeGraceMs` more; then the turn ends with the text recognised so
 * far. An ASR without endpointing is asked to finalize as soon as the VAD hears the end. A turn without words
 * starts nothing.
 */
import type { AsrEvent } from '@stsgate/core';

export interface TurnSettings {
  /** The ASR marks utterance ends itself. */
  readonly asrEndpointing: boolean;
  /** The ASR can be asked to make pending words final. */
  readonly asrFinalize: boolean;
  /** After the VAD heard the caller stop: how long the ASR may take to end the utterance. */
  readonly endpointMaxWaitMs: number;
  /** After asking the ASR to finalize: how long its final words may take. */
  readonly finalizeGraceMs: number;
}

export interface Turn {
  readonly text: string;
  /**
   * Where the caller stopped speaking, on the caller-audio clock (ms of audio since the stream began): where the VAD
   * heard the speech end, else the end of the last final word (when the ASR times its words).
   */
  readonly endOfSpeechMs: number | undefined;
  /** What ended it: the ASR's endpointing, or the VAD fallback with the words recognised by then. */
  readonly endedBy: 'asr' | 'vad';
}

export interface TurnListener {
  /** Ask the ASR to make its pending words final. */
  finalize(): void;
  turn(turn: Turn): void;
}

/** An ASR end of utterance this soon after a fallback turn is the late end of that same utterance: dropped. */
const LATE_END_OF_UTTERANCE_MS = 3000;

export class TurnDetector {
  private finals: string[] = [];
  private hypothesis = '';
  private vadEndMs: number | undefined;
  private lastWordEndMs: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private fallbackAt: number | undefined;
  /** The ASR ended an utterance since the VAD last heard speech begin. */
  private endedSinceSpeech = false;
  private closed = false;

  constructor(
    private readonly settings: TurnSettings,
    private readonly listener: TurnListener,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Words the ASR has recognised in the utterance in progress (final or not). */
  get words(): number {
    return countWords(this.hypothesis);
  }

  asr(event: AsrEvent): void {
    if (this.closed) return;
    switch (event.type) {
      case 'speech_started':
        return;
      case 'partial':
        this.hypothesis = event.text;
        return;
      case 'final': {
        this.finals.push(event.text.trim());
        if (event.endMs !== undefined) this.lastWordEndMs = Math.max(this.lastWordEndMs ?? 0, event.endMs);
        const finalText = this.finals.join(' ');
        if (countWords(finalText) >= countWords(this.hypothesis)) this.hypothesis = finalText;
        return;
      }
      case 'end_of_utterance': {
        const late = this.fallbackAt !== undefined && this.now() - this.fallbackAt < LATE_END_OF_UTTERANCE_MS;
        this.fallbackAt = undefined;
        const text = event.text.trim() || this.finals.join(' ');
        const endOfSpeechMs = this.endOfSpeechMs();
        this.resetUtterance();
        this.endedSinceSpeech = true;
        if (!late) this.emit(text, endOfSpeechMs, 'asr');
        return;
      }
      case 'error':
        return;
    }
  }

  /** The VAD heard speech begin: the caller is still talking, nothing ends now. */
  speechStarted(): void {
    this.clearTimer();
    this.vadEndMs = undefined;
    this.endedSinceSpeech = false;
  }

  /** The VAD heard the caller stop at `atMs` of caller audio. */
  speechEnded(atMs: number): void {
    if (this.closed) return;
    // The ASR already ended this speech's turn (its endpointing is quicker than the VAD's silence): nothing pending.
    if (this.endedSinceSpeech && this.hypothesis === '') return;
    this.vadEndMs = atMs;
    this.clearTimer();
    if (this.settings.asrEndpointing) this.timer = setTimeout(() => this.askFinalize(), this.settings.endpointMaxWaitMs);
    else this.askFinalize();
  }

  close(): void {
    this.closed = true;
    this.clearTimer();
  }

  private askFinalize(): void {
    this.timer = undefined;
    if (!this.settings.asrFinalize) {
      this.fallback();
      return;
    }
    this.listener.finalize();
    this.timer = setTimeout(() => this.fallback(), this.settings.finalizeGraceMs);
  }

  /** The ASR did not end the utterance in time: the turn ends with what it recognised. */
  private fallback(): void {
    this.timer = undefined;
    const text = this.finals.length > 0 ? this.finals.join(' ') : this.hypothesis;
    const endOfSpeechMs = this.endOfSpeechMs();
    this.resetUtterance();
    if (text.trim() === '') return;
    this.fallbackAt = this.now();
    this.emit(text, endOfSpeechMs, 'vad');
  }

  private endOfSpeechMs(): number | undefined {
    return this.vadEndMs ?? this.lastWordEndMs;
  }

  private emit(text: string, endOfSpeechMs: number | undefined, endedBy: Turn['endedBy']): void {
    const trimmed = text.replace(/\s+/g, ' ').trim();
    if (trimmed === '') return;
    this.listener.turn({ text: trimmed, endOfSpeechMs, endedBy });
  }

  private resetUtterance(): void {
    this.clearTimer();
    this.finals = [];
    this.hypothesis = '';
    this.vadEndMs = undefined;
    this.lastWordEndMs = undefined;
  }

  private clearTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

export function countWords(text: string): number {
  const trimmed = text.trim();
  return trimmed === '' ? 0 : trimmed.split(/\s+/).length;
}
