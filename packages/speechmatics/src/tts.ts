/**
 * `createSpeechmaticsTts`: Speechmatics TTS (`POST /generate/<voice>?output_format=pcm_16000`, streamed raw PCM
 * s16le 16 kHz) as a core TtsAdapter. No npm SDK exists, so this is a small typed client on `fetch`. The host
 * resamples the 16 kHz output to AVR's 8 kHz.
 */
import { ProviderError, Pcm16Assembler, parseRetryAfter } from '@stsgate/core';
import type { CallContext, SampleRate, TtsAdapter, TtsCapabilities, TtsRequest } from '@stsgate/core';
import { PROVIDER, connectionError, providerErrorFromStatus } from './errors.js';

export const DEFAULT_TTS_URL = 'https://preview.tts.speechmatics.com';
export const DEFAULT_TTS_VOICE = 'sarah';
/** Voices documented at the time of writing (English only); others are passed through for newer servers. */
export const SPEECHMATICS_TTS_VOICES: readonly string[] = ['sarah', 'theo', 'megan', 'jack'];
export const TTS_SAMPLE_RATE: SampleRate = 16000;
export const DEFAULT_TTS_TIMEOUT_MS = 30_000;

export interface SpeechmaticsTtsOptions {
  readonly apiKey: string;
  /** Default `https://preview.tts.speechmatics.com`; `http://` works for local servers. */
  readonly url?: string;
  /** Default `sarah`; a request's own voice wins. */
  readonly voice?: string;
  /** No response, or no data, for this long: a `timeout` ProviderError. Default 30000. */
  readonly timeoutMs?: number;
}

export const speechmaticsTtsCapabilities: TtsCapabilities = {
  outputSampleRates: [TTS_SAMPLE_RATE],
  encodings: ['pcm_s16le'],
  streamingInput: false,
};

/** `<base>/generate/<voice>?output_format=pcm_16000` (a base with a path keeps it). */
export function ttsGenerateUrl(base: string, voice: string): string {
  const url = new URL(base);
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/generate/${encodeURIComponent(voice)}`;
  url.search = '';
  url.searchParams.set('output_format', 'pcm_16000');
  return url.toString();
}

export function createSpeechmaticsTts(options: SpeechmaticsTtsOptions): TtsAdapter {
  if (options.apiKey.trim() === '') throw new RangeError('Speechmatics TTS needs an API key');
  const base = options.url ?? DEFAULT_TTS_URL;
  const protocol = new URL(base).protocol;
  if (protocol !== 'http:' && protocol !== 'https:') throw new RangeError(`Speechmatics TTS URL must be http(s), not ${protocol}`);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TTS_TIMEOUT_MS;
  const secret = options.apiKey;

  async function* stream(request: TtsRequest, call: CallContext): AsyncGenerator<Int16Array> {
    const cancelled = (): ProviderError => new ProviderError(PROVIDER, 'closed', 'speech synthesis was cancelled: the call ended', { retryable: false });
    if (call.signal.aborted) throw cancelled();
    if (request.text.trim() === '') throw new ProviderError(PROVIDER, 'invalid_request', 'nothing to synthesize: the text is empty', { retryable: false });
    // One place decides why the request ended early: the call, the inactivity timeout, or the consumer.
    const upstream = new AbortController();
    let stopReason: ProviderError | undefined;
    const stop = (reason: ProviderError): void => {
      stopReason ??= reason;
      upstream.abort(reason);
    };
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => stop(new ProviderError(PROVIDER, 'timeout', `Speechmatics TTS sent nothing for ${timeoutMs} ms`)), timeoutMs);
    };
    const onCallAbort = (): void => stop(cancelled());
    call.signal.addEventListener('abort', onCallAbort, { once: true });
    let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
    try {
      arm();
      let response: Response;
      try {
        response = await fetch(ttsGenerateUrl(base, request.voice ?? options.voice ?? DEFAULT_TTS_VOICE), {
          method: 'POST',
          headers: { Authorization: `Bearer ${secret}`, 'Content-Type': 'application/json', Accept: 'audio/pcm, application/json' },
          body: JSON.stringify({ text: request.text }),
          signal: upstream.signal,
        });
      } catch (error) {
        throw stopReason ?? connectionError(error, 'Speechmatics TTS connection failed', secret);
      }
      if (!response.ok) {
        const text = await response.text().catch(() => '');
        throw stopReason ?? providerErrorFromStatus(response.status, text, {
          secret,
          what: 'TTS request failed',
          retryAfterMs: parseRetryAfter(response.headers.get('retry-after') ?? undefined),
        });
      }
      if (response.body === null) throw new ProviderError(PROVIDER, 'protocol', 'Speechmatics TTS answered without a body');
      reader = response.body.getReader();
      const assembler = new Pcm16Assembler();
      for (;;) {
        let chunk: Awaited<ReturnType<typeof reader.read>>;
        try {
          chunk = await reader.read();
        } catch (error) {
          throw stopReason ?? connectionError(error, 'the Speechmatics TTS stream failed', secret);
        }
        if (chunk.done) break;
        arm();
        const samples = assembler.push(chunk.value);
        if (samples.length > 0) yield samples;
      }
      if (stopReason !== undefined) throw stopReason;
      if (assembler.pendingBytes > 0) call.logger.debug({ provider: PROVIDER }, 'Speechmatics TTS stream ended on an odd byte (dropped)');
    } finally {
      clearTimeout(timer);
      call.signal.removeEventListener('abort', onCallAbort);
      // Early return by the consumer, an error, or the call ending: stop the upstream request.
      if (!upstream.signal.aborted) upstream.abort();
      reader?.releaseLock();
    }
  }

  return {
    id: PROVIDER,
    capabilities: speechmaticsTtsCapabilities,
    synthesize(request: TtsRequest, call: CallContext) {
      return { outputSampleRate: TTS_SAMPLE_RATE, audio: stream(request, call) };
    },
  };
}
