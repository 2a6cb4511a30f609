/** Registry definitions: the Soniox adapters configured from avr-asr-soniox's and avr-tts-soniox's variables. */
import { z } from 'zod';
import { defineAdapter } from '@stsgate/core';
import type { AdapterDefinition } from '@stsgate/core';
import { createSonioxAsr } from './asr.js';
import { createSonioxTts } from './tts.js';
import { blankToUndefined, envInt, envNumber, envSecret, envText, envUrl, splitList } from '@stsgate/core';
import {
  DEFAULT_STT_MODEL,
  DEFAULT_STT_URL,
  DEFAULT_TTS_LANGUAGE,
  DEFAULT_TTS_MODEL,
  DEFAULT_TTS_URL,
  DEFAULT_TTS_VOICE,
  DEFAULT_TTS_WS_URL,
  MAX_ENDPOINT_DELAY_LIMITS,
} from './wire.js';

export const sonioxAsrEnvSchema = z.object({
  SONIOX_API_KEY: envSecret('SONIOX_API_KEY'),
  SONIOX_WEBSOCKET_URL: envUrl(['ws:', 'wss:']).transform((url) => url ?? DEFAULT_STT_URL),
  SONIOX_SPEECH_RECOGNITION_MODEL: envText().transform((model) => model ?? DEFAULT_STT_MODEL),
  /** Comma list of language hints (`en`, `en,it`); entries trimmed, empty ones dropped. */
  SONIOX_SPEECH_RECOGNITION_LANGUAGE: envText().transform((value) => splitList(value ?? 'en')),
  /** Unset: the adapter's 1000 ms (DEFAULT_MAX_ENDPOINT_DELAY_MS), not Soniox's 2000. */
  SONIOX_MAX_ENDPOINT_DELAY_MS: envInt(MAX_ENDPOINT_DELAY_LIMITS.min, MAX_ENDPOINT_DELAY_LIMITS.max),
  SONIOX_CONTEXT: envText(),
  SONIOX_TERMS: envText().transform((value) => splitList(value)),
});
export type SonioxAsrEnv = z.output<typeof sonioxAsrEnvSchema>;

/** The `soniox` ASR provider (real-time WebSocket STT; port 6018 like avr-asr-soniox). */
export function defineSonioxAsr(): AdapterDefinition<'asr'> {
  return defineAdapter({
    kind: 'asr',
    id: 'soniox',
    description: 'Soniox real-time speech-to-text (WebSocket, endpoint detection, finalize)',
    defaultPort: 6018,
    envSchema: sonioxAsrEnvSchema,
    create(env) {
      return createSonioxAsr({
        apiKey: env.SONIOX_API_KEY,
        url: env.SONIOX_WEBSOCKET_URL,
        model: env.SONIOX_SPEECH_RECOGNITION_MODEL,
        languageHints: env.SONIOX_SPEECH_RECOGNITION_LANGUAGE,
        ...(env.SONIOX_MAX_ENDPOINT_DELAY_MS === undefined ? {} : { maxEndpointDelayMs: env.SONIOX_MAX_ENDPOINT_DELAY_MS }),
        ...(env.SONIOX_CONTEXT === undefined ? {} : { contextText: env.SONIOX_CONTEXT }),
        ...(env.SONIOX_TERMS.length === 0 ? {} : { contextTerms: env.SONIOX_TERMS }),
      });
    },
  });
}

/** Only 8000 Hz is useful to AVR (core re-chunks 8 kHz PCM); other values are rejected, not resampled. */
const ttsSampleRate = z.preprocess(
  blankToUndefined,
  z.coerce
    .number()
    .pipe(z.literal(8000, { error: 'only 8000 is supported (AVR plays 8 kHz PCM)' }))
    .optional(),
);

const ttsAudioFormat = z.preprocess(
  (value) => {
    const blank = blankToUndefined(value);
    return typeof blank === 'string' ? blank.trim().toLowerCase() : blank;
  },
  z.literal('pcm_s16le', { error: 'only pcm_s16le is supported (AVR plays raw PCM16)' }).optional(),
);

export const sonioxTtsEnvSchema = z.object({
  SONIOX_API_KEY: envSecret('SONIOX_API_KEY'),
  SONIOX_TTS_URL: envUrl(['http:', 'https:']).transform((url) => url ?? DEFAULT_TTS_URL),
  /** The streaming-text socket (`streamText`, used by the cascade pipeline). */
  SONIOX_TTS_WEBSOCKET_URL: envUrl(['ws:', 'wss:']).transform((url) => url ?? DEFAULT_TTS_WS_URL),
  SONIOX_TTS_MODEL: envText().transform((model) => model ?? DEFAULT_TTS_MODEL),
  SONIOX_TTS_LANGUAGE: envText().transform((language) => language ?? DEFAULT_TTS_LANGUAGE),
  SONIOX_TTS_VOICE: envText().transform((voice) => voice ?? DEFAULT_TTS_VOICE),
  SONIOX_TTS_SAMPLE_RATE: ttsSampleRate,
  SONIOX_TTS_AUDIO_FORMAT: ttsAudioFormat,
  /**
   * avr-tts-soniox's variable, accepted so its env files keep working, never sent: Soniox takes a bitrate only for
   * compressed formats and ours is always pcm_s16le (any text, as avr-tts-soniox ignored what was not a number).
   */
  SONIOX_TTS_BITRATE: envText(),
  SONIOX_TTS_SPEED: envNumber(0.7, 1.3),
  SONIOX_TTS_TIMEOUT_MS: envInt(100, 600_000),
  /** `streamText` streams multiplexed on one WebSocket connection (default 5, Soniox's limit; 1: one connection each). */
  SONIOX_TTS_STREAMS_PER_CONNECTION: envInt(1, 5),
});
export type SonioxTtsEnv = z.output<typeof sonioxTtsEnvSchema>;

/** The `soniox` TTS provider (REST and WebSocket, streamed 8 kHz PCM; port 6011 like avr-tts-soniox). */
export function defineSonioxTts(): AdapterDefinition<'tts'> {
  return defineAdapter({
    kind: 'tts',
    id: 'soniox',
    description: 'Soniox text-to-speech (REST /tts and WebSocket streaming text, 8 kHz PCM)',
    defaultPort: 6011,
    envSchema: sonioxTtsEnvSchema,
    create(env, context) {
      if (env.SONIOX_TTS_BITRATE !== undefined) {
        context.logger.warn(
          { provider: 'soniox', bitrate: env.SONIOX_TTS_BITRATE },
          'SONIOX_TTS_BITRATE is ignored: Soniox takes a bitrate only for compressed formats (mp3, opus, aac), and this adapter always asks for pcm_s16le',
        );
      }
      return createSonioxTts({
        apiKey: env.SONIOX_API_KEY,
        url: env.SONIOX_TTS_URL,
        websocketUrl: env.SONIOX_TTS_WEBSOCKET_URL,
        model: env.SONIOX_TTS_MODEL,
        language: env.SONIOX_TTS_LANGUAGE,
        voice: env.SONIOX_TTS_VOICE,
        sampleRate: 8000,
        ...(env.SONIOX_TTS_SPEED === undefined ? {} : { speed: env.SONIOX_TTS_SPEED }),
        ...(env.SONIOX_TTS_TIMEOUT_MS === undefined ? {} : { timeoutMs: env.SONIOX_TTS_TIMEOUT_MS }),
        ...(env.SONIOX_TTS_STREAMS_PER_CONNECTION === undefined ? {} : { maxStreamsPerConnection: env.SONIOX_TTS_STREAMS_PER_CONNECTION }),
        logger: context.logger,
      });
    },
  });
}
