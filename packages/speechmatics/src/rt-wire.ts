/**
 * Real-time ASR (WebSocket API v2) wire shapes: the `StartRecognition` we send (typed against the official
 * `@speechmatics/real-time-client` models) and a parser for every server message.
 */
import type { AdditionalVocabObject, StartRecognition, TranscriptionConfig } from '@speechmatics/real-time-client';
import { z } from 'zod';
import { audioAddedSeq, idOf, noticeOf, parseEnvelope, transcriptSchema } from './common-wire.js';
import type { Notice, TranscriptMessage } from './common-wire.js';

/** Region endpoints per the docs (`global` routes to the nearest region). */
export const RT_REGION_URLS = {
  eu: 'wss://eu.rt.speechmatics.com/v2',
  us: 'wss://us.rt.speechmatics.com/v2',
  global: 'wss://global.rt.speechmatics.com/v2',
} as const;
export type RtRegion = keyof typeof RT_REGION_URLS;
export const DEFAULT_RT_URL = RT_REGION_URLS.eu;

/**
 * SPEECHMATICS_REGION values: `@speechmatics/auth`'s (`eu`, `usa`, `au`, what AVR passes) and the real-time
 * endpoints' own names (`us`, `global`).
 */
export const SPEECHMATICS_REGIONS = ['eu', 'usa', 'au', 'us', 'global'] as const;
export type SpeechmaticsRegion = (typeof SPEECHMATICS_REGIONS)[number];

/** The real-time endpoint of a region. No Australian one is documented, so `au` takes `global` (the nearest). */
export function speechmaticsRtUrl(region: SpeechmaticsRegion): string {
  switch (region) {
    case 'eu':
      return RT_REGION_URLS.eu;
    case 'usa':
    case 'us':
      return RT_REGION_URLS.us;
    case 'au':
    case 'global':
      return RT_REGION_URLS.global;
  }
}

export type RtModel = 'standard' | 'enhanced' | 'melia-1';
export type RtDiarization = 'none' | 'speaker';

export interface RtSettings {
  readonly sampleRate: number;
  readonly language: string;
  readonly model?: RtModel | undefined;
  /** Seconds, 0.7..4. */
  readonly maxDelay?: number | undefined;
  readonly maxDelayMode?: 'flexible' | 'fixed' | undefined;
  readonly domain?: string | undefined;
  readonly outputLocale?: string | undefined;
  readonly additionalVocab?: readonly (string | AdditionalVocabObject)[] | undefined;
  readonly diarization?: RtDiarization | undefined;
  /** Seconds of silence that end an utterance (0 disables `EndOfUtterance`). */
  readonly endOfUtteranceSilence: number;
  readonly enablePartials: boolean;
}

export function buildStartRecognition(settings: RtSettings): StartRecognition {
  const config: TranscriptionConfig = {
    language: settings.language,
    enable_partials: settings.enablePartials,
    conversation_config: { end_of_utterance_silence_trigger: settings.endOfUtteranceSilence },
    ...(settings.model === undefined ? {} : { model: settings.model }),
    ...(settings.maxDelay === undefined ? {} : { max_delay: settings.maxDelay }),
    ...(settings.maxDelayMode === undefined ? {} : { max_delay_mode: settings.maxDelayMode }),
    ...(settings.domain === undefined ? {} : { domain: settings.domain }),
    ...(settings.outputLocale === undefined ? {} : { output_locale: settings.outputLocale }),
    ...(settings.additionalVocab === undefined || settings.additionalVocab.length === 0 ? {} : { additional_vocab: [...settings.additionalVocab] }),
    ...(settings.diarization === undefined ? {} : { diarization: settings.diarization }),
  };
  return {
    message: 'StartRecognition',
    audio_format: { type: 'raw', encoding: 'pcm_s16le', sample_rate: settings.sampleRate },
    transcription_config: config,
  };
}

const eouSchema = z.object({ metadata: z.object({ start_time: z.number(), end_time: z.number() }).optional() });

export type RtServerMessage =
  | { kind: 'started'; id: string | undefined }
  | { kind: 'audio_added'; seqNo: number }
  | { kind: 'transcript'; message: TranscriptMessage }
  | { kind: 'end_of_utterance'; endMs: number | undefined }
  | { kind: 'end_of_transcript' }
  | Notice
  /** A valid message this adapter does not use (translations, audio events, speakers). */
  | { kind: 'ignored'; message: string }
  | { kind: 'invalid'; reason: string };

/** Never throws: anything unusable is `invalid` with a reason that holds no transcript text. */
export function parseRtMessage(text: string): RtServerMessage {
  const envelope = parseEnvelope(text);
  if (!envelope.ok) return { kind: 'invalid', reason: envelope.reason };
  const { name, json } = envelope;
  switch (name) {
    case 'RecognitionStarted':
      return { kind: 'started', id: idOf(json) };
    case 'AudioAdded': {
      const seqNo = audioAddedSeq(json);
      return seqNo === undefined ? { kind: 'invalid', reason: 'AudioAdded without seq_no' } : { kind: 'audio_added', seqNo };
    }
    case 'AddTranscript':
    case 'AddPartialTranscript': {
      const parsed = transcriptSchema.safeParse(json);
      return parsed.success ? { kind: 'transcript', message: parsed.data } : { kind: 'invalid', reason: `malformed ${name}` };
    }
    case 'EndOfUtterance': {
      const parsed = eouSchema.safeParse(json);
      const end = parsed.success ? parsed.data.metadata?.end_time : undefined;
      return { kind: 'end_of_utterance', endMs: end === undefined ? undefined : Math.round(end * 1000) };
    }
    case 'EndOfTranscript':
      return { kind: 'end_of_transcript' };
    case 'Info':
    case 'Warning':
    case 'Error':
      return noticeOf(name, json);
    case 'AddPartialTranslation':
    case 'AddTranslation':
    case 'AudioEventStarted':
    case 'AudioEventEnded':
    case 'SpeakersResult':
    case 'ChannelAudioAdded':
      return { kind: 'ignored', message: name };
    default:
      return { kind: 'invalid', reason: `unknown message "${name.slice(0, 40)}"` };
  }
}
