import { Framer } from '../audio/framer.js';
import { AVR_FRAME_MS, AVR_FRAME_SAMPLES } from '../protocol/avr-sts.js';
import { systemClock, type CallClock, type CallTimer } from './clock.js';

export interface OutboundFrame {
  readonly responseId: string;
  readonly samples: Int16Array;
}

/**
 * Agent audio waiting to be sent to AVR Core, as exact 20 ms frames, remembering which reply each
 * frame belongs to (for truncation). A reply's last partial frame is padded with silence when the
 * reply ends or the next one starts, so frames never mix two replies.
 */
export class OutboundQueue {
  private readonly framer = new Framer(AVR_FRAME_SAMPLES);
  /** Complete frames per reply, oldest first. */
  private readonly spans: { responseId: string; frames: number }[] = [];
  private openResponseId: string | undefined;

  push(responseId: string, samples8k: Int16Array): void {
    if (this.openResponseId !== undefined && this.openResponseId !== responseId) this.endResponse(this.openResponseId);
    this.openResponseId = responseId;
    const before = this.completeFrames();
    this.framer.push(samples8k);
    this.credit(responseId, this.completeFrames() - before);
  }

  /** The reply has no more audio: pad its partial frame so it can be sent. */
  endResponse(responseId: string): void {
    if (this.openResponseId !== responseId) return;
    this.openResponseId = undefined;
    const partial = this.framer.bufferedSamples % AVR_FRAME_SAMPLES;
    if (partial === 0) return;
    this.framer.push(new Int16Array(AVR_FRAME_SAMPLES - partial));
    this.credit(responseId, 1);
  }

  shift(): OutboundFrame | undefined {
    const span = this.spans[0];
    if (span === undefined) return undefined;
    const samples = this.framer.nextFrame();
    if (samples === undefined) return undefined;
    if (--span.frames === 0) this.spans.shift();
    return { responseId: span.responseId, samples };
  }

  /** Frames ready to send. */
  get pendingFrames(): number {
    let frames = 0;
    for (const span of this.spans) frames += span.frames;
    return frames;
  }

  get pendingMs(): number {
    return this.pendingFrames * AVR_FRAME_MS;
  }

  /** The oldest queued reply has all its audio here (it ended, or a newer reply started). */
  frontReplyComplete(): boolean {
    const front = this.spans[0];
    return front !== undefined && front.responseId !== this.openResponseId;
  }

  /** Any agent audio still held here, a partial frame included. */
  hasAudio(): boolean {
    return this.framer.bufferedSamples > 0;
  }

  clear(): void {
    this.framer.clear();
    this.spans.length = 0;
    this.openResponseId = undefined;
  }

  private completeFrames(): number {
    return Math.floor(this.framer.bufferedSamples / AVR_FRAME_SAMPLES);
  }

  private credit(responseId: string, frames: number): void {
    if (frames <= 0) return;
    const last = this.spans.at(-1);
    if (last !== undefined && last.responseId === responseId) last.frames += frames;
    else this.spans.push({ responseId, frames });
  }
}

/** Something with outbound audio to send when there is room in AVR Core's buffer. */
export interface Pumpable {
  /** Send what fits; returns true while audio is still waiting. */
  pump(): boolean;
}

/** Who tops up a call's outbound audio while it waits (one {@link OutboundPacer} can serve every call of a process). */
export interface AudioPacer {
  /** Send what fits now; keep pumping while audio remains. */
  schedule(call: Pumpable): void;
  /** Stop pumping `call` (its queue was dropped, or it ended). */
  cancel(call: Pumpable): void;
}

/**
 * One timer for the whole process instead of one per call: every call that still has audio waiting has its playback
 * buffer topped up every `periodMs`. The calls are spread over `groups` ticks of `periodMs / groups` each, one group
 * per tick, so the work of a period (hundreds of calls' frames) does not all land in one event-loop turn, where it
 * would delay every other call's caller audio and control messages by as much. Owned by the host; `close()` stops it.
 */
export class OutboundPacer implements AudioPacer {
  /** The waiting calls by group; a call keeps its group while it waits. */
  private readonly groups: Set<Pumpable>[];
  private readonly groupOf = new Map<Pumpable, Set<Pumpable>>();
  private nextGroup = 0;
  private timer: CallTimer | undefined;

  constructor(
    private readonly periodMs = 10,
    private readonly clock: CallClock = systemClock(),
    groups = 1,
  ) {
    if (!Number.isInteger(groups) || groups < 1) throw new RangeError(`OutboundPacer: groups must be a positive integer, not ${groups}`);
    this.groups = Array.from({ length: groups }, () => new Set<Pumpable>());
  }

  /** Send what fits now; keep pumping on the tick while audio remains. */
  schedule(call: Pumpable): void {
    if (!call.pump()) {
      this.cancel(call);
      return;
    }
    if (this.groupOf.has(call)) return;
    // The smallest group: the calls stay evenly spread over the ticks.
    const group = this.groups.reduce((smallest, candidate) => (candidate.size < smallest.size ? candidate : smallest));
    group.add(call);
    this.groupOf.set(call, group);
    this.timer ??= this.clock.setInterval(() => this.tick(), this.periodMs / this.groups.length);
  }

  cancel(call: Pumpable): void {
    this.groupOf.get(call)?.delete(call);
    this.groupOf.delete(call);
    this.stopIfIdle();
  }

  close(): void {
    for (const group of this.groups) group.clear();
    this.groupOf.clear();
    this.stopIfIdle();
  }

  private tick(): void {
    const group = this.groups[this.nextGroup] as Set<Pumpable>;
    this.nextGroup = (this.nextGroup + 1) % this.groups.length;
    for (const call of group) {
      if (!call.pump()) {
        group.delete(call);
        this.groupOf.delete(call);
      }
    }
    this.stopIfIdle();
  }

  private stopIfIdle(): void {
    if (this.groupOf.size === 0 && this.timer !== undefined) {
      this.timer.clear();
      this.timer = undefined;
    }
  }
}
