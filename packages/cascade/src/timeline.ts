/**
 * Where each piece of an agent reply's text sits in the reply's audio, so that a barge-in after `heardMs` of audio
 * keeps in the conversation only the words the caller heard. Pure (no IO, no timers).
 *
 * A segment is one TTS synthesis (a sentence or clause); its audio occupies [startMs, endMs) of the reply's audio.
 * Within a segment words are placed in proportion to their characters (speech rate is roughly even within a
 * sentence); a segment still being synthesized is assumed to last at least `MS_PER_CHARACTER` per character.
 */

/** About 15 characters a second: a typical TTS speaking rate, used only for a segment whose audio is incomplete. */
const MS_PER_CHARACTER = 65;

interface Segment {
  text: string;
  readonly startMs: number;
  audioMs: number;
  complete: boolean;
}

export class SpokenTimeline {
  private readonly segments: Segment[] = [];
  private totalMs = 0;

  /** Audio of the reply so far, ms. */
  get audioMs(): number {
    return this.totalMs;
  }

  /** Every segment's text, in order. */
  get text(): string {
    return joinText(this.segments.map((segment) => segment.text));
  }

  /** A new segment starts at the current end of the audio. The previous one is complete. */
  begin(text: string): void {
    this.completeLast();
    this.segments.push({ text, startMs: this.totalMs, audioMs: 0, complete: false });
  }

  /** More text for the open segment (a TTS fed incrementally speaks it all as one segment). */
  appendText(text: string): void {
    const last = this.segments.at(-1);
    if (last === undefined || last.complete) this.begin(text);
    else last.text = joinText([last.text, text]);
  }

  /** `ms` of audio of the open segment was emitted. */
  addAudio(ms: number): void {
    const last = this.segments.at(-1);
    if (last === undefined) return;
    last.audioMs += ms;
    this.totalMs += ms;
  }

  /** The open segment has all its audio. */
  completeLast(): void {
    const last = this.segments.at(-1);
    if (last !== undefined) last.complete = true;
  }

  /** The words the caller heard in the first `heardMs` of the reply's audio (whole words only). */
  heardText(heardMs: number): string {
    const heard: string[] = [];
    for (const segment of this.segments) {
      if (heardMs <= segment.startMs) break;
      const durationMs = segment.complete ? segment.audioMs : Math.max(segment.audioMs, segment.text.length * MS_PER_CHARACTER);
      const into = heardMs - segment.startMs;
      if (into >= durationMs) {
        heard.push(segment.text);
        continue;
      }
      heard.push(wholeWordsPrefix(segment.text, into / durationMs));
      break;
    }
    return joinText(heard);
  }
}

/** The words of `text` that fit entirely in its first `fraction` (by characters). */
export function wholeWordsPrefix(text: string, fraction: number): string {
  if (fraction >= 1) return text;
  if (fraction <= 0) return '';
  const cut = Math.floor(text.length * fraction);
  // The word under the cut was not finished: drop it.
  if (cut < text.length && !/\s/.test(text.charAt(cut))) {
    const lastSpace = text.slice(0, cut).search(/\s\S*$/);
    return lastSpace < 0 ? '' : text.slice(0, lastSpace).trimEnd();
  }
  return text.slice(0, cut).trimEnd();
}

function joinText(parts: readonly string[]): string {
  return parts
    .map((part) => part.trim())
    .filter((part) => part !== '')
    .join(' ');
}
