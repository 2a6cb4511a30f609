/** What the page and its two AudioWorklet processors tell each other. All times are AudioContext times (s). */

export const CAPTURE_PROCESSOR = 'stsgate-capture';
export const PLAYBACK_PROCESSOR = 'stsgate-playback';

/** Capture -> page: one 20 ms frame of caller audio at 8 kHz. */
export interface CapturedFrame {
  readonly samples: Int16Array;
  /** When the frame's last sample was captured. */
  readonly endTime: number;
}

/** Page -> playback: agent audio (8 kHz) to queue, or drop everything queued (an AVR `interruption`). */
export type PlaybackCommand = { readonly type: 'audio'; readonly samples: Int16Array } | { readonly type: 'flush' };

/** Playback -> page. */
export type PlaybackReport =
  /** The first audible output after the agent was quiet. */
  | { readonly type: 'speaking'; readonly at: number }
  /** No audible output for a while: the agent's turn is over (or it pauses). */
  | { readonly type: 'quiet' }
  /** About every 50 ms: the output level, and the audible audio played so far. */
  | { readonly type: 'level'; readonly levelDbfs: number; readonly audibleMs: number }
  /** A flush was done: the next quantum is silent. `lastAudibleEnd`: when the last audible output ended. */
  | { readonly type: 'flushed'; readonly lastAudibleEnd: number; readonly discardedMs: number; readonly wasSpeaking: boolean }
  /** Audio was dropped because more than the buffer's maximum was queued. */
  | { readonly type: 'overflow'; readonly droppedMs: number };
