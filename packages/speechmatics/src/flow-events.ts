/**
 * Flow server messages and agent audio -> core STS events. Pure (no IO, no timers): unit-tested without sockets.
 *
 * - Each `ResponseStarted` opens a reply with its own id; its audio frames follow, and `ResponseCompleted` closes
 *   it (`response_done` plus the agent transcript).
 * - `ResponseInterrupted` means Flow stopped the reply because the caller spoke: `interrupted` (the host flushes
 *   what is queued and tells AVR Core), then `response_done`, and the agent transcript of what was spoken. Audio
 *   of that reply still in flight is dropped until the next reply starts.
 * - The caller's finals are gathered into one user transcript per turn, sent when the agent starts answering (or
 *   calls a tool, or the conversation ends).
 */
import type { StsEvent } from '@stsgate/core';
import { joinSegments, segmentOf } from './common-wire.js';
import type { FlowServerMessage } from './flow-wire.js';

export class FlowEventMapper {
  private replies = 0;
  private current: string | undefined;
  /** After an interruption: audio of the stopped reply is still arriving. */
  private discardAudio = false;
  private userFinals: string[] = [];
  private lastPartial = '';

  get currentResponseId(): string | undefined {
    return this.current;
  }

  /** A binary frame of agent audio (16 kHz samples). */
  audio(samples: Int16Array): StsEvent[] {
    if (samples.length === 0 || this.discardAudio) return [];
    // Audio without ResponseStarted (not seen from Flow, but cheap to handle) opens a reply of its own.
    const events: StsEvent[] = this.current === undefined ? this.openReply() : [];
    events.push({ type: 'audio', responseId: this.current as string, samples });
    return events;
  }

  /** Messages that are not about the connection itself (the session handles those). */
  message(message: FlowServerMessage): StsEvent[] {
    switch (message.kind) {
      case 'transcript': {
        const segment = segmentOf(message.message);
        if (message.message.message === 'AddPartialTranscript') {
          const text = joinSegments([...this.userFinals, segment.text]);
          if (text === '' || text === this.lastPartial) return [];
          this.lastPartial = text;
          return [{ type: 'transcript', role: 'user', text, final: false }];
        }
        if (segment.text.trim() !== '') this.userFinals.push(segment.text);
        return [];
      }
      case 'response_started': {
        const events = this.flushUser();
        events.push(...this.closeReply());
        events.push(...this.openReply());
        return events;
      }
      case 'response_completed': {
        if (this.current === undefined) return this.agentText(message.content);
        const events: StsEvent[] = [{ type: 'response_done', responseId: this.current }];
        this.current = undefined;
        events.push(...this.agentText(message.content));
        return events;
      }
      case 'response_interrupted': {
        const responseId = this.current;
        this.current = undefined;
        this.discardAudio = true;
        const events: StsEvent[] = responseId === undefined ? [{ type: 'interrupted' }] : [{ type: 'interrupted', responseId }, { type: 'response_done', responseId }];
        events.push(...this.agentText(message.content));
        return events;
      }
      case 'tool_invoke':
        return [...this.flushUser(), { type: 'tool_call', callId: message.id, name: message.name, argumentsJson: message.argumentsJson }];
      case 'conversation_ending':
      case 'conversation_ended':
        return this.flushUser();
      case 'conversation_started':
      case 'audio_added':
      case 'info':
      case 'warning':
      case 'error':
      case 'ignored':
      case 'invalid':
        return [];
    }
  }

  /**
   * The conversation is gone (dropped, or the session closes): an open reply ends and the caller's last words are
   * reported. A new conversation starts clean.
   */
  reset(): StsEvent[] {
    const events = [...this.flushUser(), ...this.closeReply()];
    this.discardAudio = false;
    return events;
  }

  private openReply(): StsEvent[] {
    this.replies++;
    this.current = `flow-reply-${String(this.replies)}`;
    this.discardAudio = false;
    return [];
  }

  private closeReply(): StsEvent[] {
    const responseId = this.current;
    this.current = undefined;
    return responseId === undefined ? [] : [{ type: 'response_done', responseId }];
  }

  private flushUser(): StsEvent[] {
    const text = joinSegments(this.userFinals);
    this.userFinals = [];
    this.lastPartial = '';
    return text === '' ? [] : [{ type: 'transcript', role: 'user', text, final: true }];
  }

  private agentText(content: string): StsEvent[] {
    const text = content.replace(/\s+/g, ' ').trim();
    return text === '' ? [] : [{ type: 'transcript', role: 'agent', text, final: true }];
  }
}
