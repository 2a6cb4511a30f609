/**
 * One call's conversation as the LLM sees it: the system prompt, then user turns, agent replies (only what the caller
 * heard of them) and tool exchanges. Bounded: the oldest turns are forgotten first. Pure (no IO, no timers).
 */
import type { LlmMessage } from '@stsgate/core';

type ToolCall = { readonly id: string; readonly name: string; readonly argumentsJson: string };

/** An agent reply's entry; its text changes when a barge-in shows the caller heard less of it. */
export interface AssistantEntry {
  readonly role: 'assistant';
  content: string;
  readonly toolCalls: readonly ToolCall[];
}

type Entry = { readonly role: 'user'; content: string } | AssistantEntry | { readonly role: 'tool'; readonly toolCallId: string; readonly content: string };

/** Sent for a tool call whose result never came (the reply was interrupted, or the call is ending). */
export const MISSING_TOOL_RESULT = 'Error: no result (the caller interrupted before the tool finished)';

export class Conversation {
  private system = '';
  private readonly entries: Entry[] = [];

  /** @param maxMessages messages kept besides the system prompt (at least 2). */
  constructor(private readonly maxMessages: number) {}

  get size(): number {
    return this.entries.length;
  }

  setSystem(text: string): void {
    this.system = text;
  }

  /** A caller turn. Follows directly on an unanswered one (the reply was cut before anything was heard): merged. */
  addUser(text: string): void {
    const last = this.entries.at(-1);
    if (last?.role === 'user') last.content = `${last.content} ${text}`;
    else this.entries.push({ role: 'user', content: text });
    this.bound();
  }

  addAssistant(content: string, toolCalls: readonly ToolCall[] = []): AssistantEntry {
    const entry: AssistantEntry = { role: 'assistant', content, toolCalls };
    this.entries.push(entry);
    this.bound();
    return entry;
  }

  /** The caller heard only `content` of this reply (a reply heard not at all is left out of the requests). */
  truncate(entry: AssistantEntry, content: string): void {
    entry.content = content;
  }

  /** A tool's result, placed after its call (ignored when that call was forgotten). */
  addToolResult(toolCallId: string, content: string): void {
    if (!this.entries.some((entry) => entry.role === 'assistant' && entry.toolCalls.some((call) => call.id === toolCallId))) return;
    this.entries.push({ role: 'tool', toolCallId, content });
    this.bound();
  }

  /**
   * The messages for the next LLM request: the system prompt first, replies nobody heard left out, consecutive user
   * turns merged (a turn whose reply was cut before it was heard, and the next one), and right after
   * each tool-calling reply the result of every call (chat APIs reject a call left unanswered or answered later, so a
   * result that never came gets MISSING_TOOL_RESULT and one that came late is moved next to its call).
   */
  messages(): LlmMessage[] {
    const out: LlmMessage[] = [];
    if (this.system !== '') out.push({ role: 'system', content: this.system });
    const results = new Map<string, string>();
    for (const entry of this.entries) if (entry.role === 'tool') results.set(entry.toolCallId, entry.content);
    for (const entry of this.entries) {
      switch (entry.role) {
        case 'user': {
          const previous = out.at(-1);
          if (previous?.role === 'user') out[out.length - 1] = { role: 'user', content: `${previous.content} ${entry.content}` };
          else out.push({ role: 'user', content: entry.content });
          break;
        }
        case 'assistant':
          if (entry.toolCalls.length === 0) {
            if (entry.content !== '') out.push({ role: 'assistant', content: entry.content });
            break;
          }
          out.push({ role: 'assistant', content: entry.content, toolCalls: entry.toolCalls });
          for (const call of entry.toolCalls) out.push({ role: 'tool', toolCallId: call.id, content: results.get(call.id) ?? MISSING_TOOL_RESULT });
          break;
        case 'tool':
          break; // placed after its call above
      }
    }
    return out;
  }

  /** Forget the oldest entries beyond the limit; the kept history starts with a user turn (never a lone tool result). */
  private bound(): void {
    const limit = Math.max(2, this.maxMessages);
    if (this.entries.length <= limit) return;
    let drop = this.entries.length - limit;
    while (drop < this.entries.length && this.entries[drop]?.role !== 'user') drop++;
    // Never drop the turn in progress: with no user turn to start from, keep everything until one comes.
    if (drop >= this.entries.length) return;
    this.entries.splice(0, drop);
  }
}
