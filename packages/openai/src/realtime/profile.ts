/**
 * `RealtimeProfile`: what an OpenAI-Realtime-compatible provider does differently from OpenAI's GA API, as data (and
 * one session builder). The adapter, the connection, the handshake and the event mapper take everything
 * provider-specific from it, so such a provider is a definitions file (xai.ts) rather than a fork.
 */
import type { ProviderName } from '../errors.js';
import { buildSession } from './wire.js';
import type { AssistantTextPart, ServerError, SessionSettings, WireAudioFormat, WireSession } from './wire.js';

/** Adapter options a provider has no session field for: setting one is a configuration error, never silently dropped. */
export type UnsupportedOption = 'semanticVad' | 'noiseReduction' | 'maxOutputTokens' | 'reasoningEffort' | 'providerTools';

/**
 * What a server `error` says about the adapter's own requests: `cancel_not_active`, a `response.cancel` that reached
 * the server after the response ended (a harmless race); `response_active`, a `response.create` (or xAI's
 * `force_message`) that arrived while a response the server started itself was running (asked again once it is done);
 * `other`, anything else (reported).
 */
export type ServerErrorKind = 'cancel_not_active' | 'response_active' | 'other';

export interface RealtimeProfile extends ProviderName {
  /** `?model=` is appended. */
  readonly defaultUrl: string;
  readonly defaultModel: string;
  readonly defaultVoice: string;
  /** The wire formats (of those this adapter speaks) the provider accepts; the first is the default. */
  readonly audioFormats: readonly [WireAudioFormat, ...WireAudioFormat[]];
  /** Headers of the WebSocket upgrade (the key never goes in the URL, so never in a log line). */
  authHeaders(apiKey: string): Readonly<Record<string, string>>;
  /** The `session` of `session.update`: where the provider wants each setting. Instructions arrive non-blank or undefined. */
  session(settings: SessionSettings): WireSession;
  readonly unsupported: readonly UnsupportedOption[];
  /** `conversation.item.truncate` exists: the provider can be told how much of a reply the caller heard. */
  readonly truncate: boolean;
  /**
   * How a text is spoken word for word (the welcome message): `instructed_response`, a response whose instructions
   * tell the model to read it (GA has no text-to-speech response); `force_message`, xAI's item that the server speaks
   * itself as a whole response.
   */
  readonly verbatim: 'instructed_response' | 'force_message';
  /** Content part type of assistant text in `conversation.item.create` (the restored conversation). */
  readonly assistantText: AssistantTextPart;
  /** How the provider says which of its errors are races with the adapter's own requests. */
  errorKind(error: ServerError): ServerErrorKind;
}

/** OpenAI's error codes for the two races. */
export function openAiErrorKind(error: ServerError): ServerErrorKind {
  switch (error.code) {
    case 'response_cancel_not_active':
      return 'cancel_not_active';
    case 'conversation_already_has_active_response':
      return 'response_active';
    default:
      return 'other';
  }
}

/** OpenAI's Realtime API, GA protocol. */
export const openAiProfile: RealtimeProfile = {
  id: 'openai',
  label: 'OpenAI',
  defaultUrl: 'wss://api.openai.com/v1/realtime',
  defaultModel: 'gpt-realtime-2',
  defaultVoice: 'alloy',
  audioFormats: ['pcmu', 'pcm24'],
  // No OpenAI-Beta header: it selects the retired beta shape.
  authHeaders: (apiKey) => ({ Authorization: `Bearer ${apiKey}` }),
  session: buildSession,
  unsupported: ['providerTools'],
  truncate: true,
  verbatim: 'instructed_response',
  assistantText: 'output_text',
  errorKind: openAiErrorKind,
};
