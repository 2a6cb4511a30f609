// Server messages -> AsrEvents, pure (no socket, no timer): unit-tested on its own. Final tokens come once, non-final
// ones again (maybe changed) in every message; `<end>` ends an utterance, `<fin>` answers `finalize`: never text.
import type { AsrEvent } from '@stsgate/core';
import type { ServerMessage } from './wire.js';

export class TranscriptMapper {
  #utterance = ''; // final text of the utterance in progress, as the tokens spell it (each with its own leading space)
  #partial = '';

  map(message: ServerMessage): AsrEvent[] {
    const events: AsrEvent[] = [];
    let [finals, nonFinals] = ['', ''];
    for (const { text, is_final } of message.tokens) {
      if (text === '<end>' || text === '<fin>') {
        this.#final(events, finals);
        [finals, nonFinals] = ['', ''];
        this.flush(text === '<fin>', events);
      } else if (is_final) finals += text;
      else nonFinals += text;
    }
    this.#final(events, finals);
    const partial = (this.#utterance + nonFinals).trim();
    if (partial !== '' && partial !== this.#partial) events.push({ type: 'partial', text: partial });
    this.#partial = partial;
    return events;
  }

  /** Ends the utterance (`<end>`, `<fin>`, a drop, the end). An answer to `finalize` is given even empty: the host waits. */
  flush(answer = false, events: AsrEvent[] = []): AsrEvent[] {
    const text = this.#utterance.trim();
    if (text !== '' || answer) events.push({ type: 'end_of_utterance', text });
    this.#utterance = this.#partial = '';
    return events;
  }

  #final(events: AsrEvent[], text: string): void {
    const final = this.#utterance === '' ? text.trimStart() : text;
    if (final.trim() === '') return;
    this.#utterance += final;
    events.push({ type: 'final', text: final });
  }
}
