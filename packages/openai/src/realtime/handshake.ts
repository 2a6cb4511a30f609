/**
 * Connection set-up as a pure state machine: wait for `session.created`, send `session.update`, wait for
 * `session.updated`. An `error` naming the update's event_id means the configuration was rejected (GA
 * rejects the whole update, so nothing of it applies): fatal, never retried.
 */
import { ProviderError } from '@stsgate/core';
import { OPENAI, describeServerError } from '../errors.js';
import type { ProviderName } from '../errors.js';
import type { ParsedServerMessage, RealtimeSessionUpdate, ServerError } from './wire.js';

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

  constructor(
    private readonly update: RealtimeSessionUpdate,
    private readonly apiKey?: string,
    private readonly provider: ProviderName = OPENAI,
  ) {}

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
      case 'session.updated':
        if (this.state !== 'awaiting_updated') return { kind: 'wait' };
        this.state = 'done';
        return { kind: 'configured', warnings: this.compare(event.session) };
      case 'error': {
        this.lastError = event.error;
        if (this.state === 'awaiting_updated' && event.error.event_id === this.update.event_id) {
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

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}
