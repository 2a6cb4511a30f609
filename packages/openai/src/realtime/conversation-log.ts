/**
 * What the caller and the agent said, kept so a replacement connection can be given the same conversation.
 * Items keep the order the server created them in: a user turn reserves its slot when its audio is
 * committed, even though its transcript arrives later. Assistant text is cut to what the caller heard.
 */
import type { RestorableItem } from './wire.js';

type Entry =
  | { kind: 'user'; itemId: string | undefined; text: string }
  | {
      kind: 'assistant';
      itemId: string;
      /** Transcript deltas so far, replaced by the final transcript when it arrives. */
      text: string;
      /** Audio received for the item. */
      receivedMs: number;
      /** Set by a truncate: how much of the audio the caller heard. */
      heardMs: number | undefined;
    }
  | { kind: 'function_call'; callId: string; name: string; argumentsJson: string }
  | { kind: 'function_call_output'; callId: string; output: string };

/** Default bound: a long call keeps its most recent turns. */
const DEFAULT_MAX_ENTRIES = 200;

export class ConversationLog {
  private entries: Entry[] = [];
  private readonly byItem = new Map<string, Entry>();

  constructor(private readonly maxEntries = DEFAULT_MAX_ENTRIES) {}

  get size(): number {
    return this.entries.length;
  }

  /** A caller audio turn was committed as `itemId`; its transcript may follow. */
  reserveUser(itemId: string): void {
    if (this.byItem.has(itemId)) return;
    this.push({ kind: 'user', itemId, text: '' });
  }

  userTranscript(itemId: string, text: string): void {
    const entry = this.byItem.get(itemId);
    if (entry?.kind === 'user') entry.text = text;
    else if (entry === undefined) this.push({ kind: 'user', itemId, text });
  }

  /** A user text message the adapter created itself (e.g. a DTMF note). */
  userText(text: string): void {
    this.push({ kind: 'user', itemId: undefined, text });
  }

  reserveAssistant(itemId: string): void {
    if (this.byItem.has(itemId)) return;
    this.push({ kind: 'assistant', itemId, text: '', receivedMs: 0, heardMs: undefined });
  }

  assistantDelta(itemId: string, delta: string): void {
    const entry = this.assistant(itemId);
    entry.text += delta;
  }

  assistantTranscript(itemId: string, text: string): void {
    this.assistant(itemId).text = text;
  }

  assistantAudio(itemId: string, receivedMs: number): void {
    this.assistant(itemId).receivedMs = receivedMs;
  }

  assistantHeard(itemId: string, heardMs: number): void {
    const entry = this.byItem.get(itemId);
    if (entry?.kind === 'assistant') entry.heardMs = heardMs;
  }

  functionCall(callId: string, name: string, argumentsJson: string): void {
    this.push({ kind: 'function_call', callId, name, argumentsJson });
  }

  functionCallOutput(callId: string, output: string): void {
    this.push({ kind: 'function_call_output', callId, output });
  }

  /**
   * True when the conversation ends on a turn the agent has not answered yet (a user message or a tool
   * result), so a restored connection should ask for a response.
   */
  owesResponse(): boolean {
    for (let i = this.entries.length - 1; i >= 0; i--) {
      const entry = this.entries[i] as Entry;
      if (entry.kind === 'user' && entry.text.trim() === '') continue; // never transcribed: not restored
      if (entry.kind === 'assistant' && restoredText(entry) === '') continue;
      return entry.kind === 'user' || entry.kind === 'function_call_output';
    }
    return false;
  }

  /** The conversation as items for `conversation.item.create`, oldest first; empty turns are left out. */
  toItems(): RestorableItem[] {
    const items: RestorableItem[] = [];
    const calls = new Set<string>();
    for (const entry of this.entries) {
      switch (entry.kind) {
        case 'user':
          if (entry.text.trim() !== '') items.push({ kind: 'user', text: entry.text });
          break;
        case 'assistant': {
          const text = restoredText(entry);
          if (text !== '') items.push({ kind: 'assistant', text });
          break;
        }
        case 'function_call':
          calls.add(entry.callId);
          items.push({ kind: 'function_call', callId: entry.callId, name: entry.name, argumentsJson: entry.argumentsJson });
          break;
        case 'function_call_output':
          // An output whose call was dropped from the bounded log would be rejected: leave it out.
          if (calls.has(entry.callId)) items.push({ kind: 'function_call_output', callId: entry.callId, output: entry.output });
          break;
      }
    }
    return items;
  }

  /** Item ids are per connection: forget them (entries stay) once the connection that made them is gone. */
  forgetItemIds(): void {
    this.byItem.clear();
  }

  private assistant(itemId: string): Extract<Entry, { kind: 'assistant' }> {
    const entry = this.byItem.get(itemId);
    if (entry?.kind === 'assistant') return entry;
    const created: Extract<Entry, { kind: 'assistant' }> = { kind: 'assistant', itemId, text: '', receivedMs: 0, heardMs: undefined };
    this.push(created);
    return created;
  }

  private push(entry: Entry): void {
    this.entries.push(entry);
    if ((entry.kind === 'user' || entry.kind === 'assistant') && entry.itemId !== undefined) this.byItem.set(entry.itemId, entry);
    if (this.entries.length > this.maxEntries) {
      const dropped = this.entries.splice(0, this.entries.length - this.maxEntries);
      for (const old of dropped) if ((old.kind === 'user' || old.kind === 'assistant') && old.itemId !== undefined) this.byItem.delete(old.itemId);
    }
  }
}

/** The part of an assistant turn the caller heard: the transcript cut in proportion, at a word boundary. */
export function heardText(text: string, heardMs: number | undefined, receivedMs: number): string {
  const trimmed = text.trim();
  if (heardMs === undefined || receivedMs <= 0 || heardMs >= receivedMs) return trimmed;
  if (heardMs <= 0) return '';
  const cut = Math.floor((trimmed.length * heardMs) / receivedMs);
  if (cut >= trimmed.length) return trimmed;
  // Keep whole words only: back off to the last whitespace before the cut (unless the cut is on one).
  const next = trimmed[cut];
  if (next !== undefined && /\s/.test(next)) return trimmed.slice(0, cut).trimEnd();
  const space = trimmed.lastIndexOf(' ', cut);
  return space <= 0 ? '' : trimmed.slice(0, space).trimEnd();
}

function restoredText(entry: Extract<Entry, { kind: 'assistant' }>): string {
  return heardText(entry.text, entry.heardMs, entry.receivedMs);
}
