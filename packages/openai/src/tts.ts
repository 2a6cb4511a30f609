/** `createOpenAiTts`: `/v1/audio/speech` with raw PCM output (24 kHz s16le), streamed, as a core TtsAdapter. */
import OpenAI from 'openai';
import type { Logger } from 'pino';
import { ProviderError, Pcm16Assembler } from '@stsgate/core';
import type { CallContext, TtsAdapter, TtsRequest } from '@stsgate/core';
import { PROVIDER } from './errors.js';
import { cancelled, providerErrorFromSdk } from './rest-errors.js';

export const DEFAULT_TTS_MODEL = 'gpt-4o-mini-tts';
export const DEFAULT_TTS_VOICE = 'alloy';
/** OpenAI's `pcm` response format: 24 kHz, 16-bit signed little-endian, mono, no header. */
export const TTS_SAMPLE_RATE = 24000;
const MAX_INPUT_CHARS = 4096;

export interface OpenAiTtsOptions {
  readonly apiKey: string;
  readonly baseURL?: string;
  /** Default `gpt-4o-mini-tts`. */
  readonly model?: string;
  /** Default `alloy`; a request's own voice wins. */
  readonly voice?: string;
  /** Speaking style (not for tts-1 models). */
  readonly instructions?: string;
  readonly speed?: number;
  readonly logger: Logger;
  readonly timeoutMs?: number;
}

export function createOpenAiTts(options: OpenAiTtsOptions): TtsAdapter {
  const client = new OpenAI({
    apiKey: options.apiKey,
    ...(options.baseURL === undefined ? {} : { baseURL: options.baseURL }),
    maxRetries: 0,
    timeout: options.timeoutMs ?? 30_000,
  });
  const configuredModel = options.model ?? DEFAULT_TTS_MODEL;

  async function* stream(request: TtsRequest, call: CallContext): AsyncGenerator<Int16Array> {
    // A request's own model (AVR's TTS body `model`) wins over the configured one.
    const model = request.model ?? configuredModel;
    const supportsInstructions = !model.startsWith('tts-1');
    if (request.text.length > MAX_INPUT_CHARS) {
      throw new ProviderError(PROVIDER, 'invalid_request', `speech input is ${request.text.length} characters; the limit is ${MAX_INPUT_CHARS}`, {
        retryable: false,
      });
    }
    // Aborted when the call ends or when the consumer stops iterating early.
    const abort = new AbortController();
    const onCallAbort = (): void => abort.abort();
    call.signal.addEventListener('abort', onCallAbort, { once: true });
    if (call.signal.aborted) abort.abort();
    try {
      let response: Response;
      try {
        response = await client.audio.speech.create(
          {
            model,
            voice: request.voice ?? options.voice ?? DEFAULT_TTS_VOICE,
            input: request.text,
            response_format: 'pcm',
            ...(options.instructions !== undefined && supportsInstructions ? { instructions: options.instructions } : {}),
            ...(options.speed === undefined ? {} : { speed: options.speed }),
          },
          { signal: abort.signal },
        );
      } catch (error) {
        throw providerErrorFromSdk(error, options.apiKey, 'speech synthesis', call.signal.aborted);
      }
      const body = response.body;
      if (body === null) return;
      const assembler = new Pcm16Assembler();
      try {
        for await (const chunk of body) {
          const samples = assembler.push(chunk);
          if (samples.length > 0) yield samples;
        }
      } catch (error) {
        throw providerErrorFromSdk(error, options.apiKey, 'speech stream', call.signal.aborted);
      }
      if (call.signal.aborted) throw cancelled('speech synthesis');
      if (assembler.pendingBytes > 0) call.logger.debug({ provider: PROVIDER }, 'speech stream ended on an odd byte (dropped)');
    } finally {
      call.signal.removeEventListener('abort', onCallAbort);
      abort.abort();
    }
  }

  return {
    id: PROVIDER,
    capabilities: { outputSampleRates: [TTS_SAMPLE_RATE], encodings: ['pcm_s16le'], streamingInput: false },
    synthesize(request: TtsRequest, call: CallContext) {
      return { outputSampleRate: TTS_SAMPLE_RATE, audio: stream(request, call) };
    },
  };
}
