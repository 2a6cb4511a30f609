import { ProviderError, type CallContext, type SampleRate, type TtsAdapter, type TtsRequest } from '@stsgate/core';

/** Deliberate defects for the conformance self-test. */
export interface TtsDefects {
  /** Ask for `wav` and pass the container through. */
  readonly passWavHeader?: boolean;
  /** Do not wire call.signal / iterator return to the upstream request. */
  readonly ignoreAbort?: boolean;
  /** Report every HTTP error as `server`. */
  readonly everythingIsServerError?: boolean;
  /** Read the whole body before yielding. */
  readonly buffer?: boolean;
}

function categoryOf(status: number): ProviderError['category'] {
  if (status === 401) return 'auth';
  if (status === 400) return 'invalid_request';
  if (status === 429) return 'rate_limit';
  return 'server';
}

/** A small, correct Soniox REST TTS adapter used only to prove the conformance suite. */
export function referenceSonioxTts(baseUrl: string, apiKey: string, defects: TtsDefects = {}): TtsAdapter {
  const rate: SampleRate = 8000;
  return {
    id: 'reference-soniox-tts',
    capabilities: { outputSampleRates: [rate], encodings: ['pcm_s16le'], streamingInput: false },
    synthesize: (request: TtsRequest, call: CallContext) => {
      async function* audio(): AsyncGenerator<Int16Array> {
        const controller = new AbortController();
        const onAbort = (): void => controller.abort();
        if (defects.ignoreAbort !== true) call.signal.addEventListener('abort', onAbort, { once: true });
        try {
          const response = await fetch(`${baseUrl}/tts`, {
            method: 'POST',
            headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' },
            body: JSON.stringify({
              model: 'tts-rt-v1',
              language: request.language ?? 'en',
              voice: request.voice ?? 'Adrian',
              audio_format: defects.passWavHeader === true ? 'wav' : 'pcm_s16le',
              sample_rate: rate,
              text: request.text,
            }),
            signal: controller.signal,
          }).catch((error: unknown) => {
            throw new ProviderError('soniox', call.signal.aborted ? 'closed' : 'connectivity', 'request failed', { cause: error });
          });
          if (!response.ok) {
            const status = response.status;
            throw new ProviderError('soniox', defects.everythingIsServerError === true ? 'server' : categoryOf(status), `HTTP ${String(status)}`, { statusCode: status });
          }
          const reader = (response.body as ReadableStream<Uint8Array>).getReader();
          const pending: Uint8Array[] = [];
          let odd: number | undefined;
          const toPcm = (bytes: Uint8Array): Int16Array => {
            const all = odd === undefined ? bytes : Uint8Array.of(odd, ...bytes);
            odd = all.length % 2 === 1 ? all[all.length - 1] : undefined;
            const out = new Int16Array(all.length >> 1);
            const view = new DataView(all.buffer, all.byteOffset, all.byteLength);
            for (let i = 0; i < out.length; i++) out[i] = view.getInt16(i * 2, true);
            return out;
          };
          try {
            for (;;) {
              const { done, value } = await reader.read().catch(() => ({ done: true as const, value: undefined }));
              if (done) break;
              if (defects.buffer === true) pending.push(value);
              else yield toPcm(value);
            }
            for (const bytes of pending) yield toPcm(bytes);
          } finally {
            if (defects.ignoreAbort !== true) controller.abort();
            else {
              // The defect: keep downloading after the consumer left.
              const drain = async (): Promise<void> => {
                for (let result = await reader.read(); !result.done; result = await reader.read());
              };
              drain().catch(() => undefined);
            }
          }
        } finally {
          call.signal.removeEventListener('abort', onAbort);
        }
      }
      if (request.text.trim().length === 0) {
        return {
          outputSampleRate: rate,
          audio: (async function* (): AsyncGenerator<Int16Array> {
            yield* [];
            throw new ProviderError('soniox', 'invalid_request', 'empty text');
          })(),
        };
      }
      return { outputSampleRate: rate, audio: audio() };
    },
  };
}
