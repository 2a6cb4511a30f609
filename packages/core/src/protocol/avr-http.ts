import { z } from 'zod';

/**
 * AVR's HTTP contracts (pipeline mode). Every request from AVR Core carries `X-UUID: <call uuid>`.
 *
 * ASR  `POST /speech-to-text-stream`: chunked raw PCM s16le 8 kHz mono body for the whole listening
 *      session; response is plain UTF-8 text, one write per completed utterance (finals only).
 * LLM  `POST /prompt-stream`: JSON body below; response streams `{"type":"text","content":...}` objects,
 *      one per write, no delimiter; the response end is the end of the turn.
 * TTS  `POST /text-to-speech-stream`: JSON `{"text": ...}`; response streams raw PCM s16le 8 kHz mono.
 * Errors before any body byte is sent: a JSON `{"message": ...}` with a 4xx/5xx status.
 */
export const AVR_UUID_HEADER = 'x-uuid';
export const AVR_ROUTES = {
  asr: '/speech-to-text-stream',
  llm: '/prompt-stream',
  tts: '/text-to-speech-stream',
} as const;

export const avrChatMessageSchema = z.looseObject({
  role: z.enum(['system', 'user', 'assistant', 'tool']),
  content: z.string(),
});
export type AvrChatMessage = z.infer<typeof avrChatMessageSchema>;

export const avrLlmRequestSchema = z.looseObject({
  uuid: z.string().min(1).optional(),
  /** The latest user utterance (some LLM adapters read only this). */
  message: z.string().optional(),
  /** The full history kept by AVR Core; DTMF digits appear as user messages. */
  messages: z.array(avrChatMessageSchema).default([]),
});
export type AvrLlmRequest = z.infer<typeof avrLlmRequestSchema>;

export const avrLlmChunkSchema = z.object({ type: z.literal('text'), content: z.string() });
export type AvrLlmChunk = z.infer<typeof avrLlmChunkSchema>;

const ttsText = z.string().trim().min(1).max(200).optional();
const ttsRate = z.coerce.number().pipe(z.union([z.literal(8000), z.literal(16000), z.literal(24000), z.literal(48000)], { error: 'must be 8000, 16000, 24000 or 48000' }));

/**
 * The TTS request body, with the optional fields AVR's TTS containers accept (avr-tts-soniox: `model`, `voice`,
 * `language`, `audio_format`/`audioFormat`, `sample_rate`/`sampleRate`, `bitrate`). Raw PCM is all AVR Core plays, so
 * `audio_format` must be `pcm_s16le`; `bitrate` (for compressed formats) is accepted and has no effect.
 */
export const avrTtsRequestSchema = z
  .looseObject({
    text: z.string().min(1, 'text must not be empty'),
    voice: ttsText,
    language: ttsText,
    model: ttsText,
    audio_format: z.literal('pcm_s16le', { error: 'only pcm_s16le (raw PCM, what AVR Core plays)' }).optional(),
    audioFormat: z.literal('pcm_s16le', { error: 'only pcm_s16le (raw PCM, what AVR Core plays)' }).optional(),
    sample_rate: ttsRate.optional(),
    sampleRate: ttsRate.optional(),
    bitrate: z.unknown().optional(),
  })
  .transform(({ text, voice, language, model, sample_rate, sampleRate }) => ({
    text,
    ...(voice === undefined ? {} : { voice }),
    ...(language === undefined ? {} : { language }),
    ...(model === undefined ? {} : { model }),
    /** The PCM rate of the response body (default 8000, AVR Core's). */
    sampleRate: sample_rate ?? sampleRate ?? 8000,
  }));
export type AvrTtsRequest = z.output<typeof avrTtsRequestSchema>;

export const avrHttpErrorSchema = z.object({ message: z.string() });
export type AvrHttpError = z.infer<typeof avrHttpErrorSchema>;
