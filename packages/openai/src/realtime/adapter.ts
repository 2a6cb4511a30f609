/**
 * `createRealtimeAdapter(profile, options)`: the OpenAI Realtime (GA) speech-to-speech adapter, for OpenAI
 * (`createOpenAiRealtime`) or an OpenAI-compatible provider described by its profile (xai.ts).
 */
import { DEFAULT_RECONNECT_POLICY, ProviderError, toProviderError } from '@stsgate/core';
import type { ReconnectPolicyOptions, StsAdapter, StsCallContext, StsCapabilities, StsSession, VadAdapter } from '@stsgate/core';
import { renderInstructions } from '@stsgate/agent';
import type { ProviderName } from '../errors.js';
import { audioCodec } from './audio-codec.js';
import type { TlsOptions } from './connection.js';
import type { ResponseRequest } from './map-events.js';
import { openAiProfile } from './profile.js';
import type { RealtimeProfile, UnsupportedOption } from './profile.js';
import { OpenAiRealtimeSession } from './session.js';
import { sessionUpdate, vadTuning } from './wire.js';
import type { SessionSettings, TurnDetectionSetting, WireAudioFormat } from './wire.js';

export const DEFAULT_REALTIME_URL = openAiProfile.defaultUrl;
export const DEFAULT_REALTIME_MODEL = openAiProfile.defaultModel;
export const DEFAULT_VOICE = openAiProfile.defaultVoice;
export const DEFAULT_AUDIO_FORMAT: WireAudioFormat = openAiProfile.audioFormats[0];
export const DEFAULT_DTMF_MESSAGE = 'The caller pressed {{digit}} on the keypad.';
/** Caller audio goes to the provider as it arrives: batching saves messages but delays the caller's voice. */
export const DEFAULT_INPUT_BATCH_MS = 0;

/** Options of `createOpenAiRealtime`, and of `createRealtimeAdapter` (defaults: the profile's; OpenAI's are given). */
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
  /**
   * The system prompt, or how to get it for a call (e.g. from a URL, templated with call metadata). Blank or
   * absent: none is sent and the server's default instructions apply.
   */
  readonly instructions?: string | ((call: StsCallContext) => Promise<string> | string);
  /** Input transcription (user transcripts); `null` turns it off. Default `whisper-1`. */
  readonly transcription?: { readonly model: string; readonly language?: string } | null;
  /**
   * Default server VAD (threshold 0.5, 300 ms prefix padding, 500 ms silence unless set). `none`: the server never
   * ends a turn; `vad` does (its tuning from the same fields), and the session commits each turn itself.
   */
  readonly turnDetection?: TurnDetectionSetting;
  /** The gateway's VAD, required by turn detection `none` (one stream per call) and unused otherwise. */
  readonly vad?: VadAdapter;
  readonly noiseReduction?: 'near_field' | 'far_field';
  readonly maxOutputTokens?: number | 'inf';
  /** Only for reasoning models (gpt-realtime-2*). */
  readonly reasoningEffort?: 'minimal' | 'low' | 'medium' | 'high' | 'xhigh';
  /** Tools the provider runs itself (xAI: `{type:'web_search'}`...), sent with the call's function tools. */
  readonly providerTools?: SessionSettings['providerTools'];
  /** The agent speaks first (one `response.create` once the session is configured). Default true. */
  readonly greeting?: boolean;
  /**
   * The agent's first words, instead of a greeting of its own (whatever `greeting` says); `{{from}}`, `{{to}}`,
   * `{{uuid}}` and other call metadata are substituted. OpenAI: read by the model, told to say it word for word (see
   * `verbatimResponse`): the Realtime API has no text-to-speech response, so that is not a guarantee; a completed
   * reading whose transcript differs is logged as a warning. A profile with `verbatim: 'force_message'` (xAI) has the
   * server speak it.
   */
  readonly welcomeMessage?: string;
  /** The user message a keypad digit becomes; `{{digit}}` is replaced. */
  readonly dtmfMessage?: string;
  /**
   * Caller audio per `input_audio_buffer.append`: 0 (default) sends each frame as it arrives; N collects N ms per
   * append (fewer messages and less CPU, but the caller's audio reaches the provider up to N ms later).
   */
  readonly inputBatchMs?: number;
  /** Caller audio kept while reconnecting (default 5000 ms). */
  readonly maxGapBufferMs?: number;
  readonly reconnect?: Partial<ReconnectPolicyOptions>;
  /** The WebSocket upgrade, then the handshake up to `session.updated`: each within this (default 10 000 ms). */
  readonly handshakeTimeoutMs?: number;
  /** WebSocket ping period (default 10 000 ms; 0 disables); no pong within `pongTimeoutMs` (5000) = dropped. */
  readonly pingIntervalMs?: number;
  readonly pongTimeoutMs?: number;
  readonly tls?: TlsOptions;
}

export function realtimeCapabilities(
  options: Pick<OpenAiRealtimeOptions, 'audioFormat' | 'transcription'>,
  profile: Pick<RealtimeProfile, 'audioFormats' | 'truncate'> = openAiProfile,
): StsCapabilities {
  const codec = audioCodec(options.audioFormat ?? profile.audioFormats[0]);
  return {
    inputSampleRates: [codec.sampleRate],
    outputSampleRates: [codec.sampleRate],
    encodings: [codec.format === 'pcmu' ? 'mulaw' : 'pcm_s16le'],
    // Always: the server's VAD, or with turn detection `none` the session's own (options.vad). The host adds none.
    serverTurnDetection: true,
    userTranscripts: options.transcription !== null,
    agentTranscripts: true,
    truncation: profile.truncate,
    toolCalls: true,
    dtmf: true,
  };
}

/** `${url}?model=<model>`; http(s) URLs are taken as ws(s). */
export function realtimeUrl(base: string, model: string, provider: ProviderName = openAiProfile): string {
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw new ProviderError(provider.id, 'invalid_request', `invalid ${provider.label} Realtime URL: ${base}`, { retryable: false });
  }
  if (url.protocol === 'https:') url.protocol = 'wss:';
  else if (url.protocol === 'http:') url.protocol = 'ws:';
  if (url.protocol !== 'wss:' && url.protocol !== 'ws:') {
    throw new ProviderError(provider.id, 'invalid_request', `${provider.label} Realtime URL must be ws:// or wss://, got ${url.protocol}`, {
      retryable: false,
    });
  }
  url.searchParams.set('model', model);
  return url.toString();
}

/** Options set that the profile's provider has no field for. */
function unsupportedOptions(profile: RealtimeProfile, options: OpenAiRealtimeOptions): string[] {
  const set: Record<UnsupportedOption, boolean> = {
    semanticVad: options.turnDetection?.type === 'semantic_vad',
    noiseReduction: options.noiseReduction !== undefined,
    maxOutputTokens: options.maxOutputTokens !== undefined,
    reasoningEffort: options.reasoningEffort !== undefined,
    providerTools: (options.providerTools?.length ?? 0) > 0,
  };
  return profile.unsupported.filter((option) => set[option]).map((option) => `${profile.label} has no ${option}`);
}

/** The OpenAI Realtime (GA) adapter. */
export function createOpenAiRealtime(options: OpenAiRealtimeOptions): StsAdapter {
  return createRealtimeAdapter(openAiProfile, options);
}

/** The Realtime adapter for an OpenAI-compatible provider: everything provider-specific comes from `profile`. */
export function createRealtimeAdapter(profile: RealtimeProfile, options: OpenAiRealtimeOptions): StsAdapter {
  const provider = profile.id;
  const problems: string[] = unsupportedOptions(profile, options);
  const audioFormat = options.audioFormat ?? profile.audioFormats[0];
  if (!profile.audioFormats.includes(audioFormat)) problems.push(`${profile.label} takes audio formats ${profile.audioFormats.join(', ')}, not ${audioFormat}`);
  if (options.apiKey.trim() === '') problems.push('apiKey is empty');
  const inputBatchMs = options.inputBatchMs ?? DEFAULT_INPUT_BATCH_MS;
  if (!(Number.isFinite(inputBatchMs) && inputBatchMs >= 0 && inputBatchMs <= 500)) problems.push(`inputBatchMs must be in [0, 500], got ${inputBatchMs}`);
  const dtmfMessage = options.dtmfMessage ?? DEFAULT_DTMF_MESSAGE;
  if (!dtmfMessage.includes('{{digit}}')) problems.push('dtmfMessage must contain {{digit}}');
  const turnDetection = options.turnDetection ?? { type: 'server_vad' };
  if (turnDetection.type === 'none' && options.vad === undefined) {
    problems.push("turnDetection none needs a vad: nothing else would end the caller's turns");
  }
  if (options.welcomeMessage?.trim() === '') problems.push('welcomeMessage is empty');
  const model = options.model ?? profile.defaultModel;
  let url = '';
  try {
    url = realtimeUrl(options.url ?? profile.defaultUrl, model, profile);
  } catch (error) {
    problems.push(error instanceof Error ? error.message : String(error));
  }
  if (problems.length > 0) {
    throw new ProviderError(provider, 'invalid_request', `invalid ${profile.label} Realtime options: ${problems.join('; ')}`, { retryable: false });
  }

  const codec = audioCodec(audioFormat);
  const transcription = options.transcription === undefined ? { model: 'whisper-1' } : options.transcription;
  const capabilities = realtimeCapabilities({ ...options, audioFormat }, profile);
  const reconnectPolicy: ReconnectPolicyOptions = { ...DEFAULT_RECONNECT_POLICY, ...options.reconnect };

  async function instructionsFor(call: StsCallContext): Promise<string | undefined> {
    const source = options.instructions;
    if (source === undefined || typeof source === 'string') return source;
    try {
      return await source(call);
    } catch (error) {
      const providerError = toProviderError(provider, error);
      throw new ProviderError(provider, providerError.category === 'unknown' ? 'invalid_request' : providerError.category, `could not load the instructions: ${providerError.message}`, {
        cause: error,
        retryable: false,
      });
    }
  }

  function greetingFor(call: StsCallContext): ResponseRequest | null {
    if (options.welcomeMessage !== undefined) return { verbatim: renderInstructions(options.welcomeMessage, call) };
    return (options.greeting ?? true) ? {} : null;
  }

  return {
    id: provider,
    capabilities,
    async connect(call: StsCallContext): Promise<StsSession> {
      // Defensive: a host built against an older contract may not pass tools.
      const tools = (call.tools as StsCallContext['tools'] | undefined) ?? [];
      const instructions = await instructionsFor(call);
      const blank = instructions === undefined || instructions.trim() === '';
      if (blank) call.logger.debug({ provider }, 'no instructions for this call: the server default applies');
      const settings: SessionSettings = {
        audioFormat: codec.format,
        voice: options.voice ?? profile.defaultVoice,
        ...(blank ? {} : { instructions }),
        ...(transcription === null ? {} : { transcription }),
        turnDetection,
        ...(options.noiseReduction === undefined ? {} : { noiseReduction: options.noiseReduction }),
        ...(options.maxOutputTokens === undefined ? {} : { maxOutputTokens: options.maxOutputTokens }),
        ...(options.reasoningEffort === undefined ? {} : { reasoningEffort: options.reasoningEffort }),
        ...(options.providerTools === undefined ? {} : { providerTools: options.providerTools }),
        tools,
      };
      call.logger.debug({ provider, model, format: codec.format, tools: tools.length }, `opening ${profile.label} Realtime session`);
      return OpenAiRealtimeSession.open(call, {
        profile,
        url,
        apiKey: options.apiKey,
        codec,
        sessionUpdate: sessionUpdate('stsgate_session_update', profile.session(settings)),
        greeting: greetingFor(call),
        ...(turnDetection.type === 'none' && options.vad !== undefined ? { turnTaking: { vad: options.vad, tuning: vadTuning(turnDetection) } } : {}),
        // semantic_vad documents no padding: its onsets count from the server's position as it is.
        ...(turnDetection.type === 'server_vad' ? { speechPaddingMs: vadTuning(turnDetection).prefixPaddingMs } : {}),
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
