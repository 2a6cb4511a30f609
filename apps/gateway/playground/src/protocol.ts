// AVR's STS protocol as AVR Core speaks it (the page is the client): JSON text frames, audio as base64 PCM s16le 8 kHz.
import { AVR_MAX_AUDIO_BYTES, avrOutboundSchema } from '../../../../packages/core/src/protocol/avr-sts.js';

const MAX_AUDIO_BASE64_LENGTH = Math.ceil(AVR_MAX_AUDIO_BYTES / 3) * 4;

export type ServerMessage =
  | { readonly type: 'audio'; readonly samples: Int16Array<ArrayBuffer> }
  | { readonly type: 'interruption' }
  | { readonly type: 'transcript'; readonly role: 'user' | 'agent'; readonly text: string }
  | { readonly type: 'error'; readonly message: string };

export type Parsed = { readonly ok: true; readonly message: ServerMessage } | { readonly ok: false; readonly problem: string };

/** One frame from the gateway, validated. Never throws: a bad frame is a problem to show, not a broken page. */
export function parseServerMessage(data: unknown): Parsed {
  if (typeof data !== 'string') return { ok: false, problem: 'a binary frame (AVR frames are JSON text)' };
  let json: unknown;
  try {
    json = JSON.parse(data);
  } catch {
    return { ok: false, problem: 'a frame that is not JSON' };
  }
  const result = avrOutboundSchema.safeParse(json);
  if (!result.success) {
    const type = typeof json === 'object' && json !== null && 'type' in json && typeof json.type === 'string' ? json.type.slice(0, 32) : undefined;
    return { ok: false, problem: type === undefined ? 'a message without a type' : `an invalid or unknown "${type}" message` };
  }
  const message = result.data;
  if (message.type !== 'audio') return { ok: true, message };
  const samples = decodePcm(message.audio);
  return samples === undefined ? { ok: false, problem: 'audio that is not whole s16 samples (or over 1 s)' } : { ok: true, message: { type: 'audio', samples } };
}

/** Base64 PCM s16le (already checked to be strict base64) to samples; undefined for an odd or oversized payload. */
function decodePcm(base64: string): Int16Array<ArrayBuffer> | undefined {
  if (base64.length > MAX_AUDIO_BASE64_LENGTH) return undefined;
  const binary = atob(base64);
  if (binary.length === 0 || binary.length % 2 !== 0 || binary.length > AVR_MAX_AUDIO_BYTES) return undefined;
  const samples = new Int16Array(binary.length / 2);
  for (let i = 0; i < samples.length; i++) {
    const value = binary.charCodeAt(2 * i) | (binary.charCodeAt(2 * i + 1) << 8);
    samples[i] = value > 0x7fff ? value - 0x10000 : value;
  }
  return samples;
}

export function initMessage(uuid: string): string {
  return JSON.stringify({ type: 'init', uuid });
}

export function audioMessage(samples: Int16Array): string {
  let binary = '';
  for (const sample of samples) binary += String.fromCharCode(sample & 0xff, (sample >> 8) & 0xff);
  return JSON.stringify({ type: 'audio', audio: btoa(binary) });
}
