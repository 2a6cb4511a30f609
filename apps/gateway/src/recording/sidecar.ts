import type { CallOutcome, RecordedCallStart, RecordedToolCall, RecordedToolStatus } from '@stsgate/core';

/** `format` of every sidecar; its JSON Schema is docs/schemas/recording-sidecar.schema.json. */
export const SIDECAR_FORMAT = 'stsgate.call-recording';
export const SIDECAR_VERSION = 1;

/**
 * Bounds on what a client controls (the call uuid, the query string) and on what a long call accumulates: a hostile
 * or endless call costs a bounded sidecar. Lengths in UTF-16 code units, never splitting a surrogate pair.
 */
export const SIDECAR_LIMITS = {
  callIdChars: 256,
  metadataEntries: 64,
  metadataKeyChars: 128,
  metadataValueChars: 1024,
  textChars: 4096,
  transcripts: 10_000,
  toolCalls: 1000,
  errors: 1000,
  interruptions: 10_000,
} as const;

export interface SidecarTranscript {
  readonly role: 'user' | 'agent';
  readonly text: string;
  /** Time since the start of the recording (sample `atMs * 8` of the WAV). */
  readonly atMs: number;
  readonly truncated?: true;
}

export interface SidecarToolCall {
  readonly name: string;
  /** As the provider sent them (JSON text, unparsed). */
  readonly arguments: string;
  readonly output: string;
  readonly status: RecordedToolStatus;
  readonly startedAtMs: number;
  readonly endedAtMs: number;
  readonly truncated?: true;
}

/** The JSON document written next to each recording's WAV (`<id>.json`). */
export interface RecordingSidecar {
  readonly format: typeof SIDECAR_FORMAT;
  readonly version: typeof SIDECAR_VERSION;
  readonly recordingId: string;
  readonly audio: {
    readonly file: string;
    readonly sampleRate: 8000;
    readonly bitsPerSample: 16;
    readonly channels: readonly ['caller', 'agent'];
    readonly durationMs: number;
  };
  /** The AVR call uuid as received (client input). */
  readonly callId: string;
  readonly callIdTruncated: boolean;
  readonly provider: string;
  /** The connect query string (client input). */
  readonly metadata: Readonly<Record<string, string>>;
  readonly metadataTruncated: boolean;
  readonly startedAt: string;
  /** Null while the call lasts (or when the process stopped before the call ended). */
  readonly endedAt: string | null;
  readonly outcome: CallOutcome | null;
  /** False until the call ended and everything was written. */
  readonly complete: boolean;
  /** Set when the recording stopped early (a disk error); what was written before stays valid. */
  readonly failure: string | null;
  readonly transcripts: readonly SidecarTranscript[];
  readonly interruptions: readonly { readonly atMs: number }[];
  readonly toolCalls: readonly SidecarToolCall[];
  readonly errors: readonly { readonly message: string; readonly atMs: number; readonly truncated?: true }[];
  /** Entries not kept beyond the limits above, and audio dropped (ms). */
  readonly dropped: {
    readonly transcripts: number;
    readonly toolCalls: number;
    readonly errors: number;
    readonly interruptions: number;
    readonly audioMs: number;
  };
}

/** `text` cut to `max` UTF-16 code units without splitting a surrogate pair. */
export function boundText(text: string, max: number): { readonly text: string; readonly truncated: boolean } {
  if (text.length <= max) return { text, truncated: false };
  let end = max;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return { text: text.slice(0, end), truncated: true };
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * One call's sidecar, built up as the call goes (times relative to the recording's start, rounded to 0.1 ms) and
 * bounded by {@link SIDECAR_LIMITS}. `dirty` tells whether it changed since it was last serialised.
 */
export class SidecarLog {
  private readonly document: Mutable<RecordingSidecar>;
  private readonly transcripts: SidecarTranscript[] = [];
  private readonly interruptions: { atMs: number }[] = [];
  private readonly toolCalls: SidecarToolCall[] = [];
  private readonly errors: { message: string; atMs: number; truncated?: true }[] = [];
  private readonly dropped = { transcripts: 0, toolCalls: 0, errors: 0, interruptions: 0, audioMs: 0 };
  private audio: Mutable<RecordingSidecar['audio']>;
  dirty = true;

  constructor(recordingId: string, audioFile: string, call: RecordedCallStart, startedAt: Date) {
    const callId = boundText(call.callId, SIDECAR_LIMITS.callIdChars);
    const { metadata, truncated } = boundMetadata(call.metadata);
    this.audio = { file: audioFile, sampleRate: 8000, bitsPerSample: 16, channels: ['caller', 'agent'], durationMs: 0 };
    this.document = {
      format: SIDECAR_FORMAT,
      version: SIDECAR_VERSION,
      recordingId,
      audio: this.audio,
      callId: callId.text,
      callIdTruncated: callId.truncated,
      provider: boundText(call.providerId, SIDECAR_LIMITS.metadataKeyChars).text,
      metadata,
      metadataTruncated: truncated,
      startedAt: startedAt.toISOString(),
      endedAt: null,
      outcome: null,
      complete: false,
      failure: null,
      transcripts: this.transcripts,
      interruptions: this.interruptions,
      toolCalls: this.toolCalls,
      errors: this.errors,
      dropped: this.dropped,
    };
  }

  transcript(role: 'user' | 'agent', text: string, atMs: number): void {
    if (this.transcripts.length >= SIDECAR_LIMITS.transcripts) return this.drop('transcripts');
    const bounded = boundText(text, SIDECAR_LIMITS.textChars);
    this.transcripts.push({ role, text: bounded.text, atMs: ms(atMs), ...(bounded.truncated ? { truncated: true as const } : {}) });
    this.dirty = true;
  }

  interruption(atMs: number): void {
    if (this.interruptions.length >= SIDECAR_LIMITS.interruptions) return this.drop('interruptions');
    this.interruptions.push({ atMs: ms(atMs) });
    this.dirty = true;
  }

  error(message: string, atMs: number): void {
    if (this.errors.length >= SIDECAR_LIMITS.errors) return this.drop('errors');
    const bounded = boundText(message, SIDECAR_LIMITS.textChars);
    this.errors.push({ message: bounded.text, atMs: ms(atMs), ...(bounded.truncated ? { truncated: true as const } : {}) });
    this.dirty = true;
  }

  toolCall(call: RecordedToolCall, startOffsetMs: number): void {
    if (this.toolCalls.length >= SIDECAR_LIMITS.toolCalls) return this.drop('toolCalls');
    const name = boundText(call.name, SIDECAR_LIMITS.metadataKeyChars);
    const args = boundText(call.argumentsJson, SIDECAR_LIMITS.textChars);
    const output = boundText(call.output, SIDECAR_LIMITS.textChars);
    this.toolCalls.push({
      name: name.text,
      arguments: args.text,
      output: output.text,
      status: call.status,
      startedAtMs: ms(call.startedAtMs - startOffsetMs),
      endedAtMs: ms(call.endedAtMs - startOffsetMs),
      ...(name.truncated || args.truncated || output.truncated ? { truncated: true as const } : {}),
    });
    this.dirty = true;
  }

  /**
   * The audio written so far (ms) and dropped so far (ms). Not a change of its own (the WAV header says as much): it
   * goes out with the next write of the sidecar, and the final one.
   */
  audioProgress(durationMs: number, droppedMs: number): void {
    this.audio.durationMs = ms(durationMs);
    this.dropped.audioMs = ms(droppedMs);
  }

  ended(outcome: CallOutcome, endedAt: Date): void {
    this.document.outcome = outcome;
    this.document.endedAt = endedAt.toISOString();
    this.dirty = true;
  }

  failed(reason: string): void {
    this.document.failure = boundText(reason, SIDECAR_LIMITS.textChars).text;
    this.dirty = true;
  }

  completed(): void {
    this.document.complete = true;
    this.dirty = true;
  }

  /** The document as JSON text; clears `dirty`. */
  serialise(): string {
    this.dirty = false;
    return `${JSON.stringify(this.document, null, 2)}\n`;
  }

  private drop(kind: 'transcripts' | 'toolCalls' | 'errors' | 'interruptions'): void {
    this.dropped[kind]++;
    this.dirty = true;
  }
}

/** Times in the sidecar: 0.1 ms resolution. */
function ms(value: number): number {
  return Math.max(0, Math.round(value * 10) / 10);
}

function boundMetadata(metadata: Readonly<Record<string, string>>): { metadata: Record<string, string>; truncated: boolean } {
  const entries: [string, string][] = [];
  let truncated = false;
  for (const [key, value] of Object.entries(metadata)) {
    if (entries.length >= SIDECAR_LIMITS.metadataEntries) {
      truncated = true;
      break;
    }
    const boundedKey = boundText(key, SIDECAR_LIMITS.metadataKeyChars);
    const boundedValue = boundText(String(value), SIDECAR_LIMITS.metadataValueChars);
    truncated ||= boundedKey.truncated || boundedValue.truncated;
    entries.push([boundedKey.text, boundedValue.text]);
  }
  // Own data properties, "__proto__" included: a key from the query string never touches a prototype.
  return { metadata: Object.fromEntries(entries), truncated };
}
