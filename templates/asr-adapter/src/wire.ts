// The provider's wire format (here Soniox real-time STT): the config message that opens a connection, the control
// messages, and a zod schema of everything the server sends, parsed at the boundary.
import { z } from 'zod';

export const FINALIZE_MESSAGE = '{"type":"finalize"}';
export const KEEPALIVE_MESSAGE = '{"type":"keepalive"}';

/** The first message of every connection. The key goes in the `Authorization` header, never in here. */
export function configMessage(model: string, sampleRate: number, languageHints: readonly string[], callId: string): string {
  const hints = languageHints.length === 0 ? {} : { language_hints: languageHints };
  // <end> at most 1 s after the caller stops (Soniox waits up to 2 s without max_endpoint_delay_ms).
  const audio = { audio_format: 'pcm_s16le', sample_rate: sampleRate, num_channels: 1, enable_endpoint_detection: true, max_endpoint_delay_ms: 1000 };
  return JSON.stringify({ model, ...audio, ...hints, client_reference_id: callId.slice(0, 256) });
}

const serverMessageSchema = z.object({
  tokens: z.array(z.object({ text: z.string(), is_final: z.boolean().default(false) })).default([]),
  final_audio_proc_ms: z.number().optional(), // the audio (ms since the connection began) that is final
  finished: z.boolean().optional(),
  error_code: z.coerce.number().int().optional(),
  error_message: z.string().optional(),
});
export type ServerMessage = z.output<typeof serverMessageSchema>;

/** One text frame: the message, or (a string) why it is not one. Never throws. */
export function parseServerMessage(text: string): ServerMessage | string {
  try {
    const parsed = serverMessageSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : z.prettifyError(parsed.error);
  } catch {
    return 'not JSON';
  }
}
