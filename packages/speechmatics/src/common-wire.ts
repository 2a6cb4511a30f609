/**
 * What the real-time API and Flow share on the wire: the `{"message": ...}` envelope, `Info`/`Warning`/`Error`
 * notices, `AddAudio` acknowledgements and the transcript shape (Flow reuses the real-time one for the caller's
 * speech). Parsed leniently (unknown fields ignored, optional ones optional) so new server fields never break a call.
 */
import { z } from 'zod';

const alternativeSchema = z.object({
  content: z.string(),
  confidence: z.number().optional(),
  language: z.string().optional(),
  speaker: z.string().optional(),
});

const resultSchema = z.object({
  type: z.string(),
  start_time: z.number(),
  end_time: z.number(),
  is_eos: z.boolean().optional(),
  attaches_to: z.string().optional(),
  alternatives: z.array(alternativeSchema).optional(),
});

export const transcriptSchema = z.object({
  message: z.enum(['AddTranscript', 'AddPartialTranscript']),
  metadata: z.object({ start_time: z.number(), end_time: z.number(), transcript: z.string() }),
  results: z.array(resultSchema).default([]),
  forced: z.boolean().optional(),
  channel: z.string().optional(),
});

export type TranscriptMessage = z.infer<typeof transcriptSchema>;

/** A transcript segment as the mappers use it: formatted text, times in ms of the provider session. */
export interface TranscriptSegment {
  readonly text: string;
  readonly startMs: number;
  readonly endMs: number;
  /** Mean word confidence, when the words carry one. */
  readonly confidence: number | undefined;
}

export function segmentOf(message: TranscriptMessage): TranscriptSegment {
  let sum = 0;
  let count = 0;
  for (const result of message.results) {
    const confidence = result.type === 'word' ? result.alternatives?.[0]?.confidence : undefined;
    if (confidence === undefined) continue;
    sum += confidence;
    count++;
  }
  return {
    text: message.metadata.transcript,
    startMs: Math.round(message.metadata.start_time * 1000),
    endMs: Math.round(message.metadata.end_time * 1000),
    confidence: count === 0 ? undefined : sum / count,
  };
}

/** Segments are formatted with their own spacing ("Hello there. "); joined text has single spaces and no ends. */
export function joinSegments(parts: readonly string[]): string {
  return parts.join('').replace(/\s+/g, ' ').trim();
}

const namedSchema = z.object({ message: z.string() });
const seqSchema = z.object({ seq_no: z.number().int() });
const noticeSchema = z.object({ type: z.string().default('unknown'), reason: z.string().optional() });

/** A server frame's JSON and its `message` name, or why it is unusable (never the frame's content). */
export function parseEnvelope(text: string): { ok: true; name: string; json: unknown } | { ok: false; reason: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  const named = namedSchema.safeParse(json);
  return named.success ? { ok: true, name: named.data.message, json } : { ok: false, reason: 'no "message" field' };
}

export type Notice = { kind: 'info' | 'warning' | 'error'; type: string; reason: string | undefined };

/** `Info`, `Warning` or `Error` (`name` is one of them). */
export function noticeOf(name: 'Info' | 'Warning' | 'Error', json: unknown): Notice {
  const parsed = noticeSchema.safeParse(json);
  const notice = parsed.success ? parsed.data : { type: 'unknown', reason: undefined };
  return { kind: name === 'Info' ? 'info' : name === 'Warning' ? 'warning' : 'error', type: notice.type, reason: notice.reason };
}

/** `AudioAdded.seq_no`, if well formed. */
export function audioAddedSeq(json: unknown): number | undefined {
  const parsed = seqSchema.safeParse(json);
  return parsed.success ? parsed.data.seq_no : undefined;
}

/** A string `id` field (RecognitionStarted, ConversationStarted). */
export function idOf(json: unknown): string | undefined {
  const id = (json as { id?: unknown }).id;
  return typeof id === 'string' ? id : undefined;
}
