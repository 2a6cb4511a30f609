import type { AsrAdapter, AsrEvent, AsrStream, CallContext, SampleRate } from '@stsgate/core';
import { ProviderError } from '@stsgate/core';
import WebSocket from 'ws';

/** Deliberate defects for the conformance self-test. */
export interface AsrDefects {
  /** Keep `<end>`/`<fin>` in the text. */
  readonly leakControlTokens?: boolean;
  /** Drop audio pushed before the socket is open (avr-asr-soniox's bug). */
  readonly dropEarlyAudio?: boolean;
  /** One end_of_utterance per Soniox message instead of per `<end>` (B11). */
  readonly utterancePerMessage?: boolean;
  /** Never send `{"type":"finalize"}` although the capability says so. */
  readonly ignoreFinalize?: boolean;
}

class EventQueue implements AsyncIterable<AsrEvent> {
  readonly #items: AsrEvent[] = [];
  #ended = false;
  #wake: (() => void) | undefined;

  push(event: AsrEvent): void {
    if (this.#ended) return;
    this.#items.push(event);
    this.#wake?.();
  }

  end(): void {
    this.#ended = true;
    this.#wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<AsrEvent> {
    for (;;) {
      const next = this.#items.shift();
      if (next !== undefined) {
        yield next;
        continue;
      }
      if (this.#ended) return;
      await new Promise<void>((resolve) => (this.#wake = resolve));
      this.#wake = undefined;
    }
  }
}

/** A small, correct Soniox ASR adapter used only to prove the conformance suite (and its defects make it fail). */
export function referenceSonioxAsr(url: string, apiKey: string, defects: AsrDefects = {}): AsrAdapter {
  return {
    id: 'reference-soniox',
    capabilities: { inputSampleRates: [8000], encodings: ['pcm_s16le'], interimResults: true, endpointing: true, finalize: true, diarization: false },
    open: (_call: CallContext): Promise<AsrStream> => {
      const ws = new WebSocket(url, { headers: { Authorization: `Bearer ${apiKey}` } });
      const events = new EventQueue();
      const pending: (Buffer | string)[] = [];
      let open = false;
      let closed = false;
      let utterance = '';
      const send = (data: Buffer | string, early = false): void => {
        if (closed) return;
        if (open) ws.send(data);
        else if (!(early && defects.dropEarlyAudio === true)) pending.push(data);
      };
      ws.on('open', () => {
        open = true;
        // Soniox's own endpoint delay (2000 ms) is longer than the suite's 1.5 s pauses.
        ws.send(JSON.stringify({ model: 'stt-rt-v5', audio_format: 'pcm_s16le', sample_rate: 8000, num_channels: 1, enable_endpoint_detection: true, max_endpoint_delay_ms: 500 }));
        for (const data of pending.splice(0)) ws.send(data);
      });
      const flush = (): void => {
        const text = utterance.trim();
        utterance = '';
        if (text.length > 0) events.push({ type: 'end_of_utterance', text });
      };
      ws.on('message', (data) => {
        const message = JSON.parse(String(data)) as {
          tokens?: { text: string; is_final: boolean }[];
          finished?: boolean;
          error_code?: number;
          error_message?: string;
        };
        if (message.error_code !== undefined) {
          events.push({
            type: 'error',
            error: new ProviderError('soniox', message.error_code === 401 ? 'auth' : 'server', message.error_message ?? 'error', { statusCode: message.error_code }),
            fatal: true,
          });
          events.end();
          return;
        }
        let finals = '';
        let partial = '';
        let endpoint = false;
        for (const token of message.tokens ?? []) {
          const control = token.text === '<end>' || token.text === '<fin>';
          if (control) endpoint = true;
          if (control && defects.leakControlTokens !== true) continue;
          if (token.is_final) finals += token.text;
          else partial += token.text;
        }
        if (finals.length > 0) {
          events.push({ type: 'final', text: finals.trim() });
          utterance += finals;
        }
        if (partial.length > 0) events.push({ type: 'partial', text: (utterance + partial).trim() });
        if (endpoint || (defects.utterancePerMessage === true && finals.length > 0)) flush();
        if (message.finished === true) {
          flush();
          events.end();
        }
      });
      ws.on('close', () => {
        closed = true;
        events.end();
      });
      ws.on('error', () => undefined);
      const stream: AsrStream = {
        inputSampleRate: 8000 as SampleRate,
        pushAudio: (samples) => send(Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength), true),
        finalize: () => {
          if (defects.ignoreFinalize !== true) send(JSON.stringify({ type: 'finalize' }));
        },
        endInput: () => send(''),
        events,
        close: () => {
          if (!closed) {
            closed = true;
            ws.terminate();
          }
          events.end();
          return Promise.resolve();
        },
      };
      return Promise.resolve(stream);
    },
  };
}
