import type { TurnMetrics } from '../contracts/sts.js';
import type { AvrOutbound } from '../protocol/avr-sts.js';

export type CallState = 'awaiting_init' | 'connecting' | 'active' | 'closing' | 'closed';

/**
 * How far behind a peer is in reading what the runtime sends it (a host measures it its own way, e.g. bytes unsent
 * on a socket). `clear`: send everything. `congested`: agent audio and error replies to malformed messages wait; a
 * peer congested for 15 s is not reading and the call ends. `overflowing`: the peer is not reading at all; the next
 * control message ends the call instead of being buffered.
 */
export type PeerBacklog = 'clear' | 'congested' | 'overflowing';

/** Why a call ends, towards AVR Core (a WebSocket host maps them to 1000, 1001, 1002, 1008 and 1011). */
export type CallCloseCode = 'normal' | 'going_away' | 'protocol_error' | 'policy_violation' | 'provider_failure';

/**
 * AVR Core as the runtime sees it, whatever carries the call (a WebSocket, an HTTP stream, a test). Two priorities:
 * agent audio is paced by the runtime and sent with `sendAudio` only while the backlog is `clear`; control messages
 * (`interruption`, `transcript`, `error`) go out with `sendControl` at once and must never wait behind queued audio.
 */
export interface AvrPeer {
  /** False once the peer is gone or the call was closed towards it: nothing more is sent. */
  readonly open: boolean;
  readonly backlog: PeerBacklog;
  /** One 20 ms frame of agent audio, PCM 8 kHz (160 samples). */
  sendAudio(frame: Int16Array): void;
  sendControl(message: AvrOutbound): void;
  /**
   * End the call towards AVR Core if it is still open, and deliver nothing more to the runtime. Called once.
   * `dropConnection`: the peer misbehaved (a policy close); stop reading it and drop the connection soon.
   */
  close(code: CallCloseCode, reason: string | undefined, dropConnection: boolean): void;
  /** The call is fully closed (provider session included): release what is left. Called once, after `close`. */
  dispose?(): void;
}

/** Per-call budgets: one hostile or broken client costs a bounded amount and never hurts another call. */
export interface CallLimits {
  /** No inbound message for this long ends the call (AVR Core streams audio every 20 ms while a call lasts). */
  readonly idleTimeoutMs: number;
  /** Sustained inbound messages per second (AVR Core sends 50); bursts of 5 s worth pass. Beyond: error + policy close. */
  readonly maxMessagesPerSecond: number;
  /** Malformed messages tolerated in a burst (refilled one per second). Beyond: error + policy close. */
  readonly maxProtocolErrors: number;
  /** Sustained DTMF digits per second (bursts of twice that pass); excess digits are dropped. */
  readonly maxDtmfPerSecond: number;
}

export const DEFAULT_CALL_LIMITS: CallLimits = { idleTimeoutMs: 120_000, maxMessagesPerSecond: 200, maxProtocolErrors: 10, maxDtmfPerSecond: 10 };

/** A per-call budget the peer broke. */
export type PolicyViolation = 'message_rate' | 'protocol_errors' | 'not_reading';

/** How a call ended (the `outcome` of its metrics and of its last log line). */
export type CallOutcome =
  | 'completed'
  | 'init_timeout'
  | 'idle_timeout'
  | 'provider_error'
  | 'provider_closed'
  | 'provider_ended'
  | 'shutdown'
  | `policy_${PolicyViolation}`;

/** What a call runtime reports for metrics; durations in ms. The host labels them with the call's provider. */
export type CallMetric =
  | { readonly type: 'call_opened' }
  | { readonly type: 'call_closed'; readonly outcome: CallOutcome; readonly durationMs: number }
  /** One audio message from AVR Core (any state). */
  | { readonly type: 'caller_audio' }
  /** 20 ms frames of agent audio sent to AVR Core. */
  | { readonly type: 'agent_frames'; readonly count: number }
  /** Agent audio of a reply already playing sent after AVR Core's buffer ran dry: one per gap the caller heard. */
  | { readonly type: 'late_agent_audio' }
  /** An error by kind: `internal`, `socket`, `protocol_<code>`, `provider_<category>`. */
  | { readonly type: 'error'; readonly kind: string }
  | { readonly type: 'policy_close'; readonly kind: PolicyViolation }
  | { readonly type: 'dtmf_dropped' }
  | { readonly type: 'early_audio_dropped' }
  | { readonly type: 'interruption' }
  /** The caller's speech onset (as the provider located it) to the `interruption` sent to AVR Core. */
  | { readonly type: 'barge_in_reaction'; readonly durationMs: number }
  /** `provider`: the provider session being re-established, as the adapter names it. */
  | { readonly type: 'provider_reconnecting'; readonly provider: string }
  | { readonly type: 'provider_connect'; readonly outcome: 'success' | 'failure'; readonly durationMs: number }
  /** The caller's end of speech to the reply's first agent audio. */
  | { readonly type: 'response_latency'; readonly durationMs: number }
  /** Stage timings of one agent turn, as a composed agent reported them. */
  | { readonly type: 'turn_metrics'; readonly metrics: TurnMetrics };

/** Where a call runtime's metrics go (the gateway: Prometheus); core itself records nothing. */
export interface CallRuntimeObserver {
  record(metric: CallMetric): void;
}
