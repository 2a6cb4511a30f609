/**
 * `AddTranscript` / `AddPartialTranscript`: the real-time API's transcript shape, which Flow reuses for the
 * caller's speech. Parsed leniently (unknown fields kept out, optional ones optional) so new server fields never
 * break a call.
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
