/** OpenAI-specific environment pieces; the generic ones are in @stsgate/core. */
import { z } from 'zod';
import { blankToUndefined } from '@stsgate/core';

/** A positive integer up to `max`, or `inf` (case-insensitive). */
export function envTokens(max: number) {
  return z.preprocess(
    (value) => {
      const blank = blankToUndefined(value);
      if (typeof blank !== 'string') return blank;
      const trimmed = blank.trim().toLowerCase();
      return trimmed === 'inf' ? 'inf' : Number(trimmed);
    },
    z.union([z.literal('inf'), z.number().int().min(1).max(max)], { error: `must be an integer from 1 to ${max}, or "inf"` }).optional(),
  );
}

/** Model names that only the Realtime API serves (not Chat Completions). */
export function isRealtimeModel(model: string): boolean {
  return /realtime/i.test(model);
}
