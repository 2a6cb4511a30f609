import { resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError, blankToUndefined, type Env } from '@stsgate/core';
import { DEFAULT_CALL_LIMITS, type CallLimits } from './call-session.js';
import type { RecordingSettings } from './recording/index.js';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * Each schema's message says what was expected ("is not a port number (1-65535)"); loadGatewayConfig puts the
 * variable and the value as typed in front, so the problem names exactly what to fix.
 */
const int = (expected: string, min: number, max: number) =>
  z.string().transform((raw, ctx) => {
    const value = Number(raw.trim());
    if (Number.isInteger(value) && value >= min && value <= max) return value;
    ctx.addIssue({ code: 'custom', message: `is not ${expected}` });
    return z.NEVER;
  });
const milliseconds = (min: number, max: number) => int(`a time in milliseconds from ${min} to ${max}`, min, max);
/** A share from 0.1 to 0.99, e.g. `0.9` (a percentage is refused: it would read as 90 times the whole). */
const share = z.string().transform((raw, ctx) => {
  const value = Number(raw.trim());
  if (raw.trim() !== '' && Number.isFinite(value) && value >= 0.1 && value <= 0.99) return value;
  ctx.addIssue({ code: 'custom', message: 'is not a share of time from 0.1 to 0.99 (e.g. 0.9)' });
  return z.NEVER;
});
/** `CALLER_AUDIO_BATCH_UTILIZATION` unset. */
const DEFAULT_CALLER_AUDIO_BATCH_UTILIZATION = 0.7;
const BOOLEANS = ['true', 'false', '1', '0', 'yes', 'no'] as const;
const boolean = z
  .enum(BOOLEANS, { error: `is not a boolean (${BOOLEANS.join(', ')})` })
  .transform((value) => value === 'true' || value === '1' || value === 'yes');
const BYTE_UNITS = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 } as const;
/** Bytes, or with a binary unit: `500M`, `10G` (`K`, `M`, `G`, `T`; an optional `i`/`B` is accepted: `10GiB`). */
const byteSize = (min: number, max: number) =>
  z.string().transform((raw, ctx) => {
    const match = /^(\d+)\s*([KMGT]?)(?:i?B)?$/i.exec(raw.trim());
    const value = match === null ? NaN : Number(match[1]) * BYTE_UNITS[(match[2] ?? '').toUpperCase() as keyof typeof BYTE_UNITS];
    if (Number.isSafeInteger(value) && value >= min && value <= max) return value;
    ctx.addIssue({ code: 'custom', message: `is not a size from ${min} bytes to ${max / 1024 ** 4} TiB (e.g. 10G, 500M or a number of bytes)` });
    return z.NEVER;
  });
/** Never quoted in a problem. */
const SECRET_VARIABLES: ReadonlySet<string> = new Set(['STSGATE_AUTH_TOKEN']);
/** Unset, empty (compose files write `${VAR:-}`) and avr-app's literal `undefined` all mean "use the default". */
const optional = <T extends z.ZodType>(schema: T) => z.preprocess(blankToUndefined, schema.optional());

export const gatewayEnvSchema = z.object({
  PORT: optional(int('a port number (1-65535)', 1, 65535)),
  HOST: optional(z.string().min(1)).transform((v) => v ?? '0.0.0.0'),
  LOG_LEVEL: optional(z.enum(LOG_LEVELS, { error: `is not a log level (${LOG_LEVELS.join(', ')})` })).transform((v) => v ?? 'info'),
  /** Shared secret: when set, callers must send `?token=` or `Authorization: Bearer`. */
  STSGATE_AUTH_TOKEN: optional(z.string().min(16, 'must be at least 16 characters')),
  MAX_CALLS: optional(int('a whole number from 1 to 100000', 1, 100_000)).transform((v) => v ?? 1000),
  /**
   * Admission by load: new calls and requests are refused (503) while the event loop was busier than this share of the
   * time over the last 3 s, and new calls that would take it there (see LoadGuard). Unset: no such limit (MAX_CALLS only).
   */
  MAX_EVENT_LOOP_UTILIZATION: optional(share),
  /**
   * Above this event-loop utilization (over the last 3 s), caller audio goes to the provider two frames per message
   * instead of one (see LoadGuard). `off`: never.
   */
  CALLER_AUDIO_BATCH_UTILIZATION: optional(z.union([z.literal('off'), share], { error: 'is not a share of time from 0.1 to 0.99 (e.g. 0.7) or off' })).transform(
    (v) => (v === 'off' ? undefined : (v ?? DEFAULT_CALLER_AUDIO_BATCH_UTILIZATION)),
  ),
  WS_MAX_PAYLOAD_BYTES: optional(int('a size in bytes from 1024 to 16777216', 1024, 16 * 1024 * 1024)).transform((v) => v ?? 64 * 1024),
  /** Caller audio kept while the provider connects; older audio is dropped beyond this. */
  EARLY_AUDIO_BUFFER_MS: optional(milliseconds(0, 60_000)).transform((v) => v ?? 3000),
  /** How far ahead of real time agent audio is sent, i.e. the depth of AVR Core's playback buffer. */
  OUTBOUND_LEAD_MS: optional(milliseconds(20, 5000)).transform((v) => v ?? 120),
  /** A reply starting on an empty AVR buffer waits (at most this long) until this much audio is queued. 0: never. */
  OUTBOUND_START_BUFFER_MS: optional(milliseconds(0, 1000)).transform((v) => v ?? 40),
  PROVIDER_CONNECT_TIMEOUT_MS: optional(milliseconds(100, 120_000)).transform((v) => v ?? 10_000),
  /** A call with no message from AVR Core for this long is closed (AVR Core streams audio every 20 ms). */
  CALL_IDLE_TIMEOUT_MS: optional(milliseconds(1000, 86_400_000)).transform((v) => v ?? DEFAULT_CALL_LIMITS.idleTimeoutMs),
  /** Per call: sustained inbound messages per second (AVR Core sends 50); more closes the call with 1008. */
  CALL_MAX_MESSAGES_PER_SECOND: optional(int('a whole number from 60 to 100000', 60, 100_000)).transform((v) => v ?? DEFAULT_CALL_LIMITS.maxMessagesPerSecond),
  /** Per call: malformed messages tolerated in a burst (one forgiven per second); more closes the call with 1008. */
  CALL_MAX_PROTOCOL_ERRORS: optional(int('a whole number from 1 to 10000', 1, 10_000)).transform((v) => v ?? DEFAULT_CALL_LIMITS.maxProtocolErrors),
  /** Per call: sustained DTMF digits per second; faster digits are dropped. */
  CALL_MAX_DTMF_PER_SECOND: optional(int('a whole number from 1 to 1000', 1, 1000)).transform((v) => v ?? DEFAULT_CALL_LIMITS.maxDtmfPerSecond),
  /** The whole body of a TTS or LLM request must arrive within this time (408 otherwise). */
  HTTP_BODY_TIMEOUT_MS: optional(milliseconds(100, 600_000)).transform((v) => v ?? 10_000),
  /** An ASR or legacy STS request body (real-time audio) that sends nothing for this long is ended. */
  HTTP_STREAM_IDLE_TIMEOUT_MS: optional(milliseconds(1000, 86_400_000)).transform((v) => v ?? 300_000),
  /** Call recording: unset, nothing is recorded; set, a stereo WAV + JSON sidecar per call in this directory. */
  RECORDINGS_DIR: optional(z.string().min(1)),
  /** Total size of the recordings kept; the oldest are deleted beyond it. */
  RECORDINGS_MAX_BYTES: optional(byteSize(1024 ** 2, 1024 ** 5)).transform((v) => v ?? 10 * 1024 ** 3),
  /** Recordings older than this are deleted. */
  RECORDINGS_MAX_AGE_DAYS: optional(int('a number of days from 1 to 36500', 1, 36_500)).transform((v) => v ?? 30),
  /** On SIGTERM, calls in progress get this long to finish before they are closed. */
  SHUTDOWN_GRACE_MS: optional(milliseconds(0, 3_600_000)).transform((v) => v ?? 30_000),
  LOG_PRETTY: optional(boolean).transform((v) => v ?? false),
  /** The browser playground at /playground/ (off unless asked for). */
  STSGATE_PLAYGROUND: optional(boolean).transform((v) => v ?? false),
});

export type GatewayEnv = z.output<typeof gatewayEnvSchema>;

export interface GatewayConfig {
  readonly host: string;
  /** Undefined when `PORT` is unset: the provider's drop-in default port applies. */
  readonly port: number | undefined;
  readonly logLevel: (typeof LOG_LEVELS)[number];
  readonly logPretty: boolean;
  readonly authToken: string | undefined;
  readonly maxCalls: number;
  /** `MAX_EVENT_LOOP_UTILIZATION`: refuse new calls and requests above this event-loop utilization; undefined: no limit. */
  readonly maxEventLoopUtilization: number | undefined;
  /** `CALLER_AUDIO_BATCH_UTILIZATION`: batch caller audio above this event-loop utilization; undefined: never. */
  readonly callerAudioBatchUtilization: number | undefined;
  readonly wsMaxPayloadBytes: number;
  readonly earlyAudioBufferMs: number;
  readonly outboundLeadMs: number;
  readonly outboundStartBufferMs: number;
  readonly providerConnectTimeoutMs: number;
  readonly shutdownGraceMs: number;
  /** Call recording (`RECORDINGS_DIR`, resolved to an absolute path); undefined: nothing is recorded. */
  readonly recordings: RecordingSettings | undefined;
  readonly callLimits: CallLimits;
  readonly httpBodyTimeoutMs: number;
  readonly httpStreamIdleTimeoutMs: number;
  /** Serve the browser playground (`STSGATE_PLAYGROUND`). */
  readonly playground: boolean;
}

export const DEFAULT_PORT = 6030;
/** `STS_PROVIDER` is read by the composition root (serve.ts), which knows the available adapters. */
export const DEFAULT_STS_PROVIDER = 'loopback';

/** Validate the gateway's own variables; every problem is listed in one ConfigError. */
export function loadGatewayConfig(env: Env): GatewayConfig {
  const parsed = gatewayEnvSchema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(
      'the gateway',
      parsed.error.issues.map((issue) => {
        const name = issue.path[0];
        if (typeof name !== 'string') return issue.message;
        return SECRET_VARIABLES.has(name) ? `${name} ${issue.message}` : `${name}=${JSON.stringify(env[name])} ${issue.message}`;
      }),
    );
  }
  const e = parsed.data;
  return {
    host: e.HOST,
    port: e.PORT,
    logLevel: e.LOG_LEVEL,
    logPretty: e.LOG_PRETTY,
    authToken: e.STSGATE_AUTH_TOKEN,
    maxCalls: e.MAX_CALLS,
    maxEventLoopUtilization: e.MAX_EVENT_LOOP_UTILIZATION,
    callerAudioBatchUtilization: e.CALLER_AUDIO_BATCH_UTILIZATION,
    wsMaxPayloadBytes: e.WS_MAX_PAYLOAD_BYTES,
    earlyAudioBufferMs: e.EARLY_AUDIO_BUFFER_MS,
    outboundLeadMs: e.OUTBOUND_LEAD_MS,
    outboundStartBufferMs: e.OUTBOUND_START_BUFFER_MS,
    providerConnectTimeoutMs: e.PROVIDER_CONNECT_TIMEOUT_MS,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    recordings:
      e.RECORDINGS_DIR === undefined
        ? undefined
        : { dir: resolve(e.RECORDINGS_DIR), maxBytes: e.RECORDINGS_MAX_BYTES, maxAgeDays: e.RECORDINGS_MAX_AGE_DAYS },
    callLimits: {
      idleTimeoutMs: e.CALL_IDLE_TIMEOUT_MS,
      maxMessagesPerSecond: e.CALL_MAX_MESSAGES_PER_SECOND,
      maxProtocolErrors: e.CALL_MAX_PROTOCOL_ERRORS,
      maxDtmfPerSecond: e.CALL_MAX_DTMF_PER_SECOND,
    },
    httpBodyTimeoutMs: e.HTTP_BODY_TIMEOUT_MS,
    httpStreamIdleTimeoutMs: e.HTTP_STREAM_IDLE_TIMEOUT_MS,
    playground: e.STSGATE_PLAYGROUND,
  };
}

/** Test and embedding helper: the defaults, overridden field by field. */
export function gatewayConfig(overrides: Partial<GatewayConfig> = {}): GatewayConfig {
  return { ...loadGatewayConfig({}), ...overrides };
}
