import type { AvrOutbound } from '../protocol/avr-sts.js';
import type { CallOutcome } from './types.js';

/** How a tool call ended: its runner's answer, a runner that failed, the runtime's time limit, or no tools configured. */
export type RecordedToolStatus = 'ok' | 'failed' | 'timeout' | 'unavailable';

/** One tool call as the runtime ran it; times on the call clock (ms). */
export interface RecordedToolCall {
  readonly name: string;
  /** The arguments as the provider sent them (JSON text, unparsed). */
  readonly argumentsJson: string;
  /** What was handed back to the provider (the runtime's error text for `failed`, `timeout`, `unavailable`). */
  readonly output: string;
  readonly status: RecordedToolStatus;
  readonly startedAtMs: number;
  readonly endedAtMs: number;
}

/** Who the call is, as known when `init` arrives. */
export interface RecordedCallStart {
  /** The AVR call uuid exactly as received: client input, never trusted for anything but display. */
  readonly callId: string;
  readonly providerId: string;
  /** The connect query string (client input). */
  readonly metadata: Readonly<Record<string, string>>;
}

/**
 * What a call runtime tells a recorder: the call as AVR Core and the caller experienced it. Every time is on the
 * call's clock ({@link CallClock}, ms). The runtime calls these synchronously on its hot paths, so an implementation
 * only copies into memory (any I/O happens elsewhere) and must never throw. Audio and tool calls come only between
 * `start` and `end`; a call that never sends `init` gets no `start`, but may still see `controlSent` (its errors)
 * and `end`, which then have nothing to record. Nothing comes after `end`.
 */
export interface CallRecorder {
  /** `init` arrived at `atMs`: the recording starts. */
  start(call: RecordedCallStart, atMs: number): void;
  /** Caller audio (PCM 8 kHz) as AVR Core sent it, arriving at `atMs` (copy it: the array is not yours). */
  callerAudio(samples: Int16Array, atMs: number): void;
  /**
   * One 20 ms frame of agent audio (PCM 8 kHz) sent to AVR Core, which starts playing it at `playsAtMs`: after the
   * audio already queued there (frames are sent up to `outboundLeadMs` ahead), or at once on an idle buffer.
   */
  agentAudio(frame: Int16Array, playsAtMs: number): void;
  /**
   * A control message sent to AVR Core at `atMs`: `transcript` (final), `error`, or `interruption` (AVR Core drops
   * its queued agent audio now: what was scheduled to play after `atMs` was never heard).
   */
  controlSent(message: AvrOutbound, atMs: number): void;
  toolCall(call: RecordedToolCall): void;
  /** The call ended at `atMs` (nothing more will be reported). */
  end(outcome: CallOutcome, atMs: number): void;
}
