/** `createOpenAiRealtime`: the OpenAI Realtime (GA) speech-to-speech adapter. */
import { DEFAULT_RECONNECT_POLICY, ProviderError, toProviderError } from '@stsgate/core';
import type { ReconnectPolicyOptions, StsAdapter, StsCallContext, StsCapabilities, StsSession } from '@stsgate/core';
import { PROVIDER } from '../errors.js';
import { audioCodec } from './audio-codec.js';
import type { TlsOptions } from './connection.js';
import { OpenAiRealtimeSession } from './session.js';
import { buildSession, sessionUpdate } from './wire.js';
import type { SessionSettings, TurnDetectionSetting, WireAudioFormat } from './wire.js';

export const DEFAULT_REALTIME_URL = 'wss://api.openai.com/v1/realtime';
export const DEFAULT_REALTIME_MODEL = 'gpt-realtime-2';
export const DEFAULT_VOICE = 'alloy';
export const DEFAULT_AUDIO_FORMAT: WireAudioFormat = 'pcmu';
export const DEFAULT_DTMF_MESSAGE = 'The caller pressed {{digit}} on the keypad.';
export const DEFAULT_INPUT_BATCH_MS = 40;

export interface OpenAiRealtimeOptions {
  readonly apiKey: string;
  /** Default `gpt-realtime-2`. */
  readonly model?: string;
  /** Default `wss://api.openai.com/v1/realtime`; `ws://` works for local or self-hosted servers. */
  readonly url?: string;
  /** Default `alloy`. */
  readonly voice?: string;
  /** `pcmu` (default): G.711 mu-law 8 kHz both ways, no resampling. `pcm24`: PCM16 at 24 kHz. */
  readonly audioFormat?: WireAudioFormat;
  /** The system prompt, or how to get it for a call (e.g. from a URL, templated with call metadata). */
  readonly instructions?: string | ((call: StsCallContext) => Promise<string> | string);
  /** Input transcription (user transcripts); `null` turns it off. Default `whisper-1`. */
  readonly transcription?: { readonly model: string; readonly language?: string } | null;
  /** Default server VAD. `none`: the server never ends a turn by itself. */
  readonly turnDetection?: TurnDetectionSetting;
  readonly noiseReduction?: 'near_field' | 'far_field';
  readonly maxOutputTokens?: number | 'inf';
  /** Only for reasoning models (gpt-realtime-2*). */
  readonly reasoningEffort?: 'minimal' | 'low' | 'medium' | 'high' | 'xhigh';
  /** The agent speaks first (one `response.create` once the session is configured). Default true. */
  readonly greeting?: boolean;
  /** The user message a keypad digit becomes; `{{digit}}` is replaced. */
  readonly dtmfMessage?: string;
  /** Caller audio per `input_audio_buffer.append` (default 40 ms; adds at most this much latency). */
  readonly inputBatchMs?: number;
  /** Caller audio kept while reconnecting (default 5000 ms). */
  readonly maxGapBufferMs?: number;
  readonly reconnect?: Partial<ReconnectPolicyOptions>;
  /** Socket open to `session.updated` (default 10 000 ms). */
  readonly handshakeTimeoutMs?: number;
  /** WebSocket ping period (default 10 000 ms; 0 disables); no pong within `pongTimeoutMs` (5000) = dropped. */
  readonly pingIntervalMs?: number;
  readonly pongTimeoutMs?: number;
  readonly tls?: TlsOptions;
}

export function realtimeCapabilities(options: Pick<OpenAiRealtimeOptions, 'audioFormat' | 'transcription' | 'turnDetection'>): StsCapabilities {
  const codec = audioCodec(options.audioFormat ?? DEFAULT_AUDIO_FORMAT);
  return {
    inputSampleRates: [codec.sampleRate],
    outputSampleRates: [codec.sampleRate],
    encodings: [codec.format === 'pcmu' ? 'mulaw' : 'pcm_s16le'],
    serverTurnDetection: (options.turnDetection?.type ?? 'server_vad') !== 'none',
    userTranscripts: options.transcription !== null,
    agentTranscripts: true,
    truncation: true,
    toolCalls: true,
    dtmf: true,
  };
}

/** `${url}?model=<model>`; http(s) URLs are taken as ws(s). */
export function realtimeUrl(base: string, model: string): string {
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw new ProviderError(PROVIDER, 'invalid_request', `invalid OpenAI Realtime URL: ${base}`, { retryable: false });
  }
  if (url.protocol === 'https:') url.protocol = 'wss:';
  else if (url.protocol === 'http:') url.protocol = 'ws:';
  if (url.protocol !== 'wss:' && url.protocol !== 'ws:') {
    throw new ProviderError(PROVIDER, 'invalid_request', `OpenAI Realtime URL must be ws:// or wss://, got ${url.protocol}`, { retryable: false });
  }
  url.searchParams.set('model', model);
  return url.toString();
}

export function createOpenAiRealtime(options: OpenAiRealtimeOptions): StsAdapter {
  const problems: string[] = [];
  if (options.apiKey.trim() === '') problems.push('apiKey is empty');
  const inputBatchMs = options.inputBatchMs ?? DEFAULT_INPUT_BATCH_MS;
  if (!(Number.isFinite(inputBatchMs) && inputBatchMs >= 10 && inputBatchMs <= 500)) problems.push(`inputBatchMs must be in [10, 500], got ${inputBatchMs}`);
  const dtmfMessage = options.dtmfMessage ?? DEFAULT_DTMF_MESSAGE;
  if (!dtmfMessage.includes('{{digit}}')) problems.push('dtmfMessage must contain {{digit}}');
  const model = options.model ?? DEFAULT_REALTIME_MODEL;
  let url = '';
  try {
    url = realtimeUrl(options.url ?? DEFAULT_REALTIME_URL, model);
  } catch (error) {
    problems.push(error instanceof Error ? error.message : String(error));
  }
  if (problems.length > 0) throw new ProviderError(PROVIDER, 'invalid_request', `invalid OpenAI Realtime options: ${problems.join('; ')}`, { retryable: false });

  const codec = audioCodec(options.audioFormat ?? DEFAULT_AUDIO_FORMAT);
  const transcription = options.transcription === undefined ? { model: 'whisper-1' } : options.transcription;
  const capabilities = realtimeCapabilities(options);
  const reconnectPolicy: ReconnectPolicyOptions = { ...DEFAULT_RECONNECT_POLICY, ...options.reconnect };

  async function instructionsFor(call: StsCallContext): Promise<string> {
    const source = options.instructions;
    if (source === undefined) return '';
    if (typeof source === 'string') return source;
    try {
      return await source(call);
    } catch (error) {
      const providerError = toProviderError(PROVIDER, error);
      throw new ProviderError(PROVIDER, providerError.category === 'unknown' ? 'invalid_request' : providerError.category, `could not load the instructions: ${providerError.message}`, {
        cause: error,
        retryable: false,
      });
    }
  }

  return {
    id: PROVIDER,
    capabilities,
    async connect(call: StsCallContext): Promise<StsSession> {
      // Defensive: a host built against an older contract may not pass tools.
      const tools = (call.tools as StsCallContext['tools'] | undefined) ?? [];
      const settings: SessionSettings = {
        audioFormat: codec.format,
        voice: options.voice ?? DEFAULT_VOICE,
        instructions: await instructionsFor(call),
        ...(transcription === null ? {} : { transcription }),
        turnDetection: options.turnDetection ?? { type: 'server_vad' },
        ...(options.noiseReduction === undefined ? {} : { noiseReduction: options.noiseReduction }),
        ...(options.maxOutputTokens === undefined ? {} : { maxOutputTokens: options.maxOutputTokens }),
        ...(options.reasoningEffort === undefined ? {} : { reasoningEffort: options.reasoningEffort }),
        tools,
      };
      call.logger.debug({ provider: PROVIDER, model, format: codec.format, tools: tools.length }, 'opening OpenAI Realtime session');
      return OpenAiRealtimeSession.open(call, {
        url,
        apiKey: options.apiKey,
        codec,
        sessionUpdate: sessionUpdate('stsgate_session_update', buildSession(settings)),
        greeting: options.greeting ?? true,
        dtmfMessage,
        inputBatchMs,
        maxGapBufferMs: options.maxGapBufferMs ?? 5000,
        reconnectPolicy,
        handshakeTimeoutMs: options.handshakeTimeoutMs ?? 10_000,
        pingIntervalMs: options.pingIntervalMs ?? 10_000,
        pongTimeoutMs: options.pongTimeoutMs ?? 5_000,
        ...(options.tls === undefined ? {} : { tls: options.tls }),
      });
    },
  };
}
