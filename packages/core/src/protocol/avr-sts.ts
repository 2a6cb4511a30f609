import { z } from 'zod';

/** AVR's internal audio: PCM s16le, mono, 8 kHz; 20 ms frames of 160 samples (320 bytes). */
export const AVR_SAMPLE_RATE = 8000;
export const AVR_FRAME_MS = 20;
export const AVR_FRAME_SAMPLES = (AVR_SAMPLE_RATE * AVR_FRAME_MS) / 1000;
export const AVR_FRAME_BYTES = AVR_FRAME_SAMPLES * 2;

/** Strict base64 (RFC 4648, padded). Node's decoder silently skips bad characters, so check first. */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

// ---- AVR Core -> STS ------------------------------------------------------------------------

export const avrInitSchema = z.looseObject({
  type: z.literal('init'),
  uuid: z.string().min(1).max(128),
  /** Optional per-call provider overrides (AVR's docs show it; core is not known to send it). */
  provider_config: z.record(z.string(), z.unknown()).optional(),
});

export const avrAudioInSchema = z.looseObject({
  type: z.literal('audio'),
  audio: z.string().regex(BASE64, 'audio is not valid base64'),
});

export const avrDtmfSchema = z.looseObject({
  type: z.literal('dtmf_digit'),
  digit: z.string().regex(/^[0-9A-D*#]$/, 'digit must be one of 0-9, A-D, * or #'),
});

export const avrInboundSchema = z.discriminatedUnion('type', [avrInitSchema, avrAudioInSchema, avrDtmfSchema]);
export type AvrInboundWire = z.infer<typeof avrInboundSchema>;

/** What the decoder hands the gateway: audio is already PCM samples. */
export type AvrInbound =
  | { type: 'init'; uuid: string; providerConfig: Record<string, unknown> | undefined }
  | { type: 'audio'; samples: Int16Array }
  | { type: 'dtmf_digit'; digit: string };

// ---- STS -> AVR Core ------------------------------------------------------------------------

export const avrAudioOutSchema = z.object({ type: z.literal('audio'), audio: z.string().regex(BASE64) });
export const avrInterruptionSchema = z.object({ type: z.literal('interruption') });
export const avrTranscriptSchema = z.object({
  type: z.literal('transcript'),
  role: z.enum(['user', 'agent']),
  text: z.string(),
});
export const avrErrorSchema = z.object({ type: z.literal('error'), message: z.string() });

export const avrOutboundSchema = z.discriminatedUnion('type', [
  avrAudioOutSchema,
  avrInterruptionSchema,
  avrTranscriptSchema,
  avrErrorSchema,
]);
export type AvrOutbound = z.infer<typeof avrOutboundSchema>;

// ---- decoding ---------------------------------------------------------------------------------

export type AvrProtocolErrorCode =
  | 'invalid_json'
  | 'not_an_object'
  | 'unknown_type'
  | 'invalid_message'
  | 'invalid_audio';

/** A protocol error. Its message names the problem, never the payload (which may hold PII or audio). */
export class AvrProtocolError extends Error {
  override readonly name = 'AvrProtocolError';
  constructor(
    readonly code: AvrProtocolErrorCode,
    message: string,
    /** The `type` field when it was a string of sane length, for logs and metrics. */
    readonly messageType?: string,
  ) {
    super(message);
  }
}

export type DecodeResult<T> = { ok: true; message: T } | { ok: false; error: AvrProtocolError };

const KNOWN_TYPES = new Set(['init', 'audio', 'dtmf_digit']);

/** Largest base64 audio payload we accept in one message: 1 s at 8 kHz s16le. */
export const AVR_MAX_AUDIO_BYTES = AVR_SAMPLE_RATE * 2;

function describeIssues(error: z.ZodError): string {
  // Paths and zod's own wording only: zod messages do not quote received values for these schemas.
  return error.issues
    .map((issue) => (issue.path.length > 0 ? `${issue.path.join('.')}: ${issue.message}` : issue.message))
    .join('; ');
}

/** Decode one text frame from AVR Core. Never throws. */
export function decodeAvrInbound(raw: string): DecodeResult<AvrInbound> {
  const audio = decodeCanonicalAudio(raw);
  if (audio !== undefined) return audio;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return { ok: false, error: new AvrProtocolError('invalid_json', 'message is not valid JSON') };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return { ok: false, error: new AvrProtocolError('not_an_object', 'message must be a JSON object') };
  }
  const rawType: unknown = (parsed as { type?: unknown }).type;
  const messageType = typeof rawType === 'string' && rawType.length <= 32 ? rawType : undefined;
  if (typeof rawType !== 'string') {
    return { ok: false, error: new AvrProtocolError('invalid_message', 'message has no string "type" field') };
  }
  if (!KNOWN_TYPES.has(rawType)) {
    const shown = messageType !== undefined && /^[\w.-]+$/.test(messageType) ? ` "${messageType}"` : '';
    return {
      ok: false,
      error: new AvrProtocolError('unknown_type', `unknown message type${shown}`, messageType),
    };
  }
  const result = avrInboundSchema.safeParse(parsed);
  if (!result.success) {
    const code = rawType === 'audio' ? 'invalid_audio' : 'invalid_message';
    return {
      ok: false,
      error: new AvrProtocolError(code, `invalid "${rawType}" message: ${describeIssues(result.error)}`, rawType),
    };
  }
  const message = result.data;
  switch (message.type) {
    case 'init':
      return { ok: true, message: { type: 'init', uuid: message.uuid, providerConfig: message.provider_config } };
    case 'dtmf_digit':
      return { ok: true, message: { type: 'dtmf_digit', digit: message.digit } };
    case 'audio':
      return decodeAudioPayload(message.audio);
  }
}

/** What AVR Core sends 50 times a second per call: `JSON.stringify({ type: 'audio', audio })`, byte for byte. */
const CANONICAL_AUDIO_PREFIX = '{"type":"audio","audio":"';
const CANONICAL_AUDIO_SUFFIX_LENGTH = 2; // `"}`

/**
 * The hot path: an audio message in AVR Core's exact form. Strict base64 between the fixed prefix and suffix is a
 * complete, valid JSON object, so no parse or schema is needed: the payload is decoded straight into the samples and
 * checked by its length (Node's decoder skips or stops at any character outside the alphabet, so a payload that is
 * not strict base64 decodes to fewer bytes than its length promises; the URL-safe alphabet, which Node also takes, is
 * refused first). Anything else, valid or not, returns undefined and goes through JSON.parse and the schema, which
 * give the precise error.
 */
function decodeCanonicalAudio(raw: string): DecodeResult<AvrInbound> | undefined {
  const end = raw.length - CANONICAL_AUDIO_SUFFIX_LENGTH;
  const start = CANONICAL_AUDIO_PREFIX.length;
  if (end <= start || ((end - start) & 3) !== 0 || raw.charCodeAt(end) !== 0x22 || raw.charCodeAt(end + 1) !== 0x7d) return undefined;
  if (!raw.startsWith(CANONICAL_AUDIO_PREFIX)) return undefined;
  const base64 = raw.slice(start, end);
  if (base64.includes('-') || base64.includes('_')) return undefined;
  const padding = raw.charCodeAt(end - 1) !== 0x3d ? 0 : raw.charCodeAt(end - 2) === 0x3d ? 2 : 1;
  const byteCount = ((end - start) / 4) * 3 - padding;
  if (byteCount === 0 || byteCount % 2 !== 0 || byteCount > AVR_MAX_AUDIO_BYTES) return undefined;
  const samples = new Int16Array(byteCount / 2);
  if (Buffer.from(samples.buffer).write(base64, 'base64') !== byteCount) return undefined;
  return { ok: true, message: { type: 'audio', samples } };
}

function decodeAudioPayload(base64: string): DecodeResult<AvrInbound> {
  // base64 length bounds the byte count (up to 2 padding bytes): reject before allocating.
  const byteCount = (base64.length / 4) * 3 - (base64.endsWith('==') ? 2 : base64.endsWith('=') ? 1 : 0);
  if (byteCount > AVR_MAX_AUDIO_BYTES) {
    return {
      ok: false,
      error: new AvrProtocolError('invalid_audio', `audio payload exceeds ${AVR_MAX_AUDIO_BYTES} bytes`, 'audio'),
    };
  }
  if (byteCount === 0) {
    return { ok: false, error: new AvrProtocolError('invalid_audio', 'audio payload is empty', 'audio') };
  }
  if (byteCount % 2 !== 0) {
    return {
      ok: false,
      error: new AvrProtocolError('invalid_audio', `audio has an odd byte count (${byteCount}); expected s16le samples`, 'audio'),
    };
  }
  // Strict base64 (checked by the caller) decodes to exactly byteCount bytes: straight into the samples.
  const samples = new Int16Array(byteCount / 2);
  Buffer.from(samples.buffer).write(base64, 'base64');
  return { ok: true, message: { type: 'audio', samples } };
}

/** Copy little-endian s16 bytes into a fresh, aligned Int16Array (never aliases a pooled Buffer). */
export function pcmFromBytes(bytes: Uint8Array): Int16Array {
  const samples = new Int16Array(bytes.length >> 1);
  new Uint8Array(samples.buffer).set(bytes.subarray(0, samples.length * 2));
  return samples;
}

/** View PCM samples as little-endian bytes without copying (all supported hosts are little-endian). */
export function bytesFromPcm(samples: Int16Array): Buffer {
  return Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength);
}

// ---- encoding -----------------------------------------------------------------------------------

export function encodeAvrAudio(samples: Int16Array): string {
  return `{"type":"audio","audio":"${bytesFromPcm(samples).toString('base64')}"}`;
}

export function encodeAvrOutbound(message: AvrOutbound): string {
  switch (message.type) {
    case 'audio':
    case 'interruption':
    case 'transcript':
    case 'error':
      return JSON.stringify(message);
  }
}
