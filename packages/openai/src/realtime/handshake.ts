/**
 * Connection set-up as a pure state machine: wait for `session.created`, send `session.update`, wait for
 * `session.updated`. An `error` naming the update's event_id means the configuration was rejected (GA
 * rejects the whole update, so nothing of it applies): fatal, never retried. One exception: a refused input
 * transcription (its `param` names it, e.g. a transcription model the provider has shut down) is sent again without
 * transcription, so calls go on without the caller's transcripts, and the connection reports why.
 */
import { ProviderError } from '@stsgate/core';
import { OPENAI, describeServerError } from '../errors.js';
import type { ProviderName } from '../errors.js';
import type { ParsedServerMessage, RealtimeSessionUpdate, ServerError, WireSession } from './wire.js';

export type HandshakeStep =
  /** Send this `session.update` now. */
  | { kind: 'send_update'; event: RealtimeSessionUpdate }
  /** The session is configured; `warnings` list settings the server did not take as sent. */
  | { kind: 'configured'; warnings: string[] }
  | { kind: 'failed'; error: ProviderError }
  /** Consumed by the handshake; keep waiting. */
  | { kind: 'wait' }
  /** Not part of the handshake: hand it to the event mapper. */
  | { kind: 'pass' };

export class Handshake {
  private state: 'awaiting_created' | 'awaiting_updated' | 'done' = 'awaiting_created';
  /** The last `error` event seen: a close that follows takes its message from it. */
  lastError: ServerError | undefined;
  /** The update sent last (the configured one, or it without transcription). */
  private sent: RealtimeSessionUpdate;
  /** Why the transcription was left out, once it was. */
  private transcriptionRefused: string | undefined;

  constructor(
    private readonly update: RealtimeSessionUpdate,
    private readonly apiKey?: string,
    private readonly provider: ProviderName = OPENAI,
  ) {
    this.sent = update;
  }

  get done(): boolean {
    return this.state === 'done';
  }

  handle(message: ParsedServerMessage): HandshakeStep {
    if (this.state === 'done' || message.kind !== 'event') return { kind: 'pass' };
    const event = message.event;
    switch (event.type) {
      case 'session.created':
        if (this.state !== 'awaiting_created') return { kind: 'wait' };
        this.state = 'awaiting_updated';
        return { kind: 'send_update', event: this.update };
      case 'session.updated': {
        if (this.state !== 'awaiting_updated') return { kind: 'wait' };
        this.state = 'done';
        const warnings = this.compare(event.session);
        if (this.transcriptionRefused !== undefined) {
          warnings.push(`the input transcription was refused, so the caller's words are not transcribed: ${this.transcriptionRefused}`);
        }
        return { kind: 'configured', warnings };
      }
      case 'error': {
        this.lastError = event.error;
        if (this.state === 'awaiting_updated' && event.error.event_id === this.sent.event_id) {
          const retry = this.transcriptionRefused === undefined && refusesTranscription(event.error) ? withoutTranscription(this.sent) : undefined;
          if (retry !== undefined) {
            this.transcriptionRefused = describeServerError(event.error, this.apiKey);
            this.sent = retry;
            return { kind: 'send_update', event: retry };
          }
          this.state = 'done';
          return {
            kind: 'failed',
            error: new ProviderError(
              this.provider.id,
              'invalid_request',
              `${this.provider.label} rejected the session configuration: ${describeServerError(event.error, this.apiKey)}`,
              { retryable: false, ...(event.error.code ? { providerCode: event.error.code } : {}) },
            ),
          };
        }
        // Before the session is configured an error is followed by a close (bad key, bad model).
        return { kind: 'wait' };
      }
      default:
        return { kind: 'pass' };
    }
  }

  /** Audio formats the server reports differently from what was sent (e.g. a server that ignored them). */
  private compare(session: Record<string, unknown>): string[] {
    const warnings: string[] = [];
    const sent = asRecord(this.update.session.audio);
    const audio = asRecord(session['audio']);
    if (sent === undefined || audio === undefined) return warnings;
    const formatType = (record: Record<string, unknown>, direction: 'input' | 'output'): unknown =>
      asRecord(asRecord(record[direction])?.['format'])?.['type'];
    for (const direction of ['input', 'output'] as const) {
      const expected = formatType(sent, direction);
      const actual = formatType(audio, direction);
      if (typeof expected === 'string' && typeof actual === 'string' && actual !== expected) {
        warnings.push(`${direction} audio format is ${actual}, not ${expected}`);
      }
    }
    return warnings;
  }
}

function refusesTranscription(error: ServerError): boolean {
  return typeof error.param === 'string' && error.param.startsWith('session.audio.input.transcription');
}

/** The update without input transcription (a new event_id), or undefined when it has none. */
function withoutTranscription(update: RealtimeSessionUpdate): RealtimeSessionUpdate | undefined {
  const audio = asRecord(update.session.audio);
  const input = asRecord(audio?.['input']);
  if (audio === undefined || input === undefined || input['transcription'] === undefined || input['transcription'] === null) return undefined;
  const { transcription: _refused, ...rest } = input;
  const session = { ...update.session, audio: { ...audio, input: rest } } as WireSession;
  return { ...update, event_id: `${update.event_id}_without_transcription`, session };
}

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}
