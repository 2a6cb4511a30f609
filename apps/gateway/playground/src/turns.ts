/** Turn timing on the page: when the caller stopped talking, and how long the agent took to answer. */

/** Frames quieter than this are never voice. */
const VOICE_MIN_DBFS = -50;
/** A frame is voice when it is this far above the background level... */
const VOICE_ABOVE_FLOOR_DB = 12;
/** ...which follows quiet frames down at once and creeps up this much per frame (1 dB/s), so speech cannot lift it. */
const FLOOR_RISE_DB = 0.02;
/** The caller counts as silent after this long without voice. */
const SILENT_AFTER_S = 0.3;
/**
 * Agent audio that starts sooner after the caller's last voice answers nothing: no end-of-turn detection is that
 * fast, so the agent is talking over the caller (or was already speaking), and no latency is counted.
 */
const MIN_ANSWER_S = 0.15;

/** An energy voice detector for 20 ms frames, adapting to the microphone's background level. */
export class VoiceDetector {
  private floorDbfs = VOICE_MIN_DBFS;

  isVoice(levelDbfs: number): boolean {
    this.floorDbfs = levelDbfs < this.floorDbfs ? levelDbfs : this.floorDbfs + FLOOR_RISE_DB;
    return levelDbfs > Math.max(VOICE_MIN_DBFS, this.floorDbfs + VOICE_ABOVE_FLOOR_DB);
  }
}

/** Latency of each turn: from the end of the caller's last voiced frame to the agent's first audible output. */
export class TurnTimer {
  private lastVoiceEnd: number | undefined;
  /** The caller's voice that ended the previous turn (each utterance is answered once). */
  private answeredVoiceEnd: number | undefined;

  /** A captured frame ending at `endTime` (context time, s). */
  frame(endTime: number, voice: boolean): void {
    if (voice) this.lastVoiceEnd = endTime;
  }

  /** Whether the caller has been heard within the last SILENT_AFTER_S before `now`. */
  callerSpeaking(now: number): boolean {
    return this.lastVoiceEnd !== undefined && now - this.lastVoiceEnd < SILENT_AFTER_S;
  }

  /** The agent became audible at `at`: the turn's latency in ms, or undefined when it answers no new utterance. */
  agentStarted(at: number): number | undefined {
    const voiceEnd = this.lastVoiceEnd;
    if (voiceEnd === undefined || voiceEnd === this.answeredVoiceEnd || at - voiceEnd < MIN_ANSWER_S) return undefined;
    this.answeredVoiceEnd = voiceEnd;
    return Math.round((at - voiceEnd) * 1000);
  }
}
