/**
 * Soniox real-time STT emulator (docs/reference/provider-protocols.md §5.1–5.5): plain ws on 127.0.0.1:<random port>.
 *
 *   const stt = await startSonioxSttEmulator({ apiKey: 'soniox-test-key' });
 *   // official SDK (Node >= 22, global WebSocket):
 *   const client = new SonioxNodeClient({ api_key: 'soniox-test-key', realtime: { ws_base_url: stt.url } });
 *   const session = client.realtime.stt({ model: 'stt-rt-v5', audio_format: 'pcm_s16le', sample_rate: 8000, num_channels: 1 });
 *   // or raw ws with header auth:  new WebSocket(stt.url, { headers: { Authorization: 'Bearer soniox-test-key' } })
 *   const conn = await stt.waitForConnection();
 *   await stt.waitFor(() => conn.closeInfo);
 *   await stt.close();
 *
 * API (stable; append-only):
 *   startSonioxSttEmulator(options: SonioxSttEmulatorOptions): Promise<SonioxSttEmulator>
 *   emulator.url   ws://127.0.0.1:PORT/transcribe-websocket (usable verbatim as the SDK's `realtime.ws_base_url`)
 *   emulator.port, connections: SonioxSttConnection[] (accepted upgrades, in order), upgrades: every attempt,
 *   queueFault(fault) (for the next connection; also `options.faults`), waitFor(probe), waitForConnection(index?), close()
 *   connection: headers, path, authVia, rawConfig, config, audioBytes, audioMs, audioFrames, finalizeCount,
 *     keepaliveCount, endOfAudio, sent (every JSON message sent), utterances, closeInfo, stalled,
 *     finalText() (the final tokens sent, control tokens removed), applyFault(action), close(code, reason)
 *   fixtureRecognizer(), scriptedRecognizer(texts, fallback?): recognisers for `options.recognize`
 *   SONIOX_STT_MODELS: the model ids accepted by default (`stt-rt-v5`, `stt-rt-v4`)
 *   SONIOX_DEFAULT_MAX_ENDPOINT_DELAY_MS: the endpoint delay without `max_endpoint_delay_ms` (2000)
 *
 * Behaviour (audio clock: everything is driven by the audio received, never by wall time, except the idle timeout
 * and `latency`):
 * - Upgrade only at `/transcribe-websocket` (HTTP 404 otherwise). No acknowledgement is ever sent: the first client
 *   message must be the config JSON (a binary first frame, invalid JSON or a non-object -> 400).
 * - Auth: `Authorization: Bearer <key>` on the upgrade, or the subprotocol pair `soniox-api-key`, `<key>` (UNCONFIRMED
 *   layout), or (deprecated) `api_key` in the config. A connection-level key wins over the config key. Wrong or
 *   missing key -> `{"error_code":401,...}` and close. `requireHeaderAuth` simulates the 2027-01-15 rule: a key only
 *   in the config is refused with 401.
 * - Config validated with zod (strict: unknown fields -> 400 "Unknown field: x"): `model` (SONIOX_STT_MODELS plus
 *   `options.models`; others -> 400 "Invalid model specified."), `audio_format` (required, as the API reference says;
 *   the SDKs fill in `auto`), raw formats (`pcm_*`, `mulaw`, `alaw`) require `sample_rate` and `num_channels`,
 *   `language_hints` string[], booleans, `max_endpoint_delay_ms` (an integer in 500..3000), `endpoint_sensitivity`
 *   (-1..1), `endpoint_latency_adjustment_level` (0..3), `client_reference_id` (at most 256 characters), `context`
 *   object {general:[{key,value}], text, terms: string[], translation_terms:[{source,target}]}, `translation`
 *   one_way/two_way. Errors are `{"error_code":400,"error_message":...}` then close (code 1000).
 * - Audio: binary frames decoded per the format (every raw pcm_* variant, mulaw, alaw, multi-channel averaged; `wav`
 *   and `auto` only for a PCM/G.711 RIFF stream; other containers -> 400 from the emulator). Odd trailing bytes wait
 *   for the next frame.
 * - Segmentation: 10 ms frames, voiced at or above `vad.thresholdDbfs` (default -40 dBFS); an utterance ends after
 *   `max_endpoint_delay_ms` (config) or `vad.endpointDelayMs` (default 2000, Soniox's documented server default) of
 *   unvoiced audio: always the maximum delay, where Soniox's semantic endpointing may answer sooner. Utterances with
 *   less than `vad.minSpeechMs` (default 60) of voiced audio are dropped. Tests that want quick endpoints send
 *   `max_endpoint_delay_ms: 500`.
 * - Responses (text frames): one every `responseIntervalMs` of received audio (default 120; tokens may be empty):
 *   `{tokens, final_audio_proc_ms, total_audio_proc_ms}`. While an utterance is ongoing its words are revealed as
 *   non-final tokens (one word per 250 ms of audio; re-sent each time, may change). When it ends its text is
 *   decided by `options.recognize` on the whole utterance and sent as final tokens, `finalWordsPerResponse` words per
 *   response (default 3; the rest of the words follow as non-final in the same response), with
 *   `{"text":"<end>","is_final":true}` appended to the last one when `enable_endpoint_detection` is on.
 *   Tokens: `text` with a leading space (except the session's very first token), punctuation as separate tokens
 *   without a space, words longer than 8 letters split into two sub-word tokens, `start_ms`/`end_ms` spread over the
 *   utterance, `confidence`, `language` (first language hint, else `en`) with `enable_language_identification`,
 *   `speaker: "1"` with diarization.
 * - `{"type":"finalize"}` (optional `trailing_silence_ms`) -> the ongoing utterance becomes final, then `<fin>`
 *   (in the same response as the last finals, or alone). `{"type":"keepalive"}` is counted. Any other text -> 400.
 * - Empty frame (0-byte binary or "" text) -> remaining finals (no `<end>`), then
 *   `{"tokens":[],"final_audio_proc_ms":T,"total_audio_proc_ms":T,"finished":true}` and close 1000.
 * - No client message for more than `idleTimeoutMs` (default 20000) -> 408 "Request timeout." and close.
 * - `realTimeLimit` (default off): audio sent faster than `maxFactor` x real time beyond a bucket of `allowanceMs`
 *   -> 400 "Audio is sent faster than real time." and close (Soniox drops bursting clients; threshold and wording
 *   UNCONFIRMED).
 *
 * Latency (`options.latency`, default none): `finalDelayMs` holds every response that carries a final token (finals,
 * `<end>`, `<fin>`) this many ms of wall time after the emulator decided it on the audio clock. Responses keep their
 * order: those decided meanwhile (non-final, `finished`) wait behind it and the end-of-stream close follows them. An
 * error, a fault or a close drops what is still held.
 *
 * Faults (`SonioxSttFault`, FIFO, each for one connection; `times` for several): at `upgrade` (`http` status
 * response, or `drop`), at `config` (right after the config is accepted), after `{afterAudioMs}` of audio, at
 * `finalize` or at `end`. Actions: `error` (JSON error + close; 503 default message "Cannot continue request
 * (code N). Please restart the request."), `drop` (socket destroyed, no close frame), `stall` (stops answering and
 * stops its idle timer; the socket stays open), `close` (close frame with the given code).
 *
 * Not implemented: translation output (config accepted, tokens are not translated), real speaker diarization,
 * compressed containers (mp3, ogg, ...), endpoint_sensitivity effects, temporary API keys, exact close codes
 * and error wording other than those quoted in §5 (UNCONFIRMED, emulator wording).
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { RawData, WebSocket } from 'ws';
import { z } from 'zod';
import { FIXTURE_NAMES, FIXTURE_TEXT, fixturePath } from '../fixtures.js';
import { readWavAs8k } from '../wav.js';
import { rawSampleCodec, StreamDecoder, wavSampleCodec } from './audio-codecs.js';
import { bearerToken, silentLogger, TimerSet, type JsonValue, type WaitOptions } from './common.js';
import { levelDbfs, SpeechSegmenter, splitWords, spreadWords } from './speech-turns.js';
import { ArmedFaults, createWsEmulatorHost, failUpgrade, toBuffer, writeRawHttp } from './ws-server.js';

// ---- public types ----------------------------------------------------------------------------------------------------

/** Model ids accepted by default (`stt-rt-v4` is an alias of `stt-rt-v5` since 2026-06-16). */
export const SONIOX_STT_MODELS: readonly string[] = ['stt-rt-v5', 'stt-rt-v4'];
/** The endpoint delay Soniox applies when the config has no `max_endpoint_delay_ms` (documented default). */
export const SONIOX_DEFAULT_MAX_ENDPOINT_DELAY_MS = 2000;

export interface SonioxToken {
  readonly text: string;
  readonly start_ms?: number;
  readonly end_ms?: number;
  readonly confidence?: number;
  readonly is_final: boolean;
  readonly speaker?: string;
  readonly language?: string;
}

export interface SonioxSttResult {
  readonly tokens: readonly SonioxToken[];
  readonly final_audio_proc_ms: number;
  readonly total_audio_proc_ms: number;
  readonly finished?: true;
}

export interface SonioxErrorMessage {
  readonly error_code: number;
  readonly error_message: string;
}

export type SonioxSttServerMessage = SonioxSttResult | SonioxErrorMessage;

const contextSchema = z
  .object({
    general: z.array(z.object({ key: z.string(), value: z.string() }).strict()).optional(),
    text: z.string().optional(),
    terms: z.array(z.string()).optional(),
    translation_terms: z.array(z.object({ source: z.string(), target: z.string() }).strict()).optional(),
  })
  .strict();

const translationSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('one_way'), target_language: z.string() }).strict(),
  z.object({ type: z.literal('two_way'), language_a: z.string(), language_b: z.string() }).strict(),
]);

const configSchema = z
  .object({
    api_key: z.string().optional(),
    model: z.string(),
    audio_format: z.string(),
    sample_rate: z.number().int().min(1000).max(192000).optional(),
    num_channels: z.number().int().min(1).max(16).optional(),
    language_hints: z.array(z.string()).optional(),
    language_hints_strict: z.boolean().optional(),
    enable_language_identification: z.boolean().optional(),
    enable_speaker_diarization: z.boolean().optional(),
    enable_endpoint_detection: z.boolean().optional(),
    // The SDKs' documented ranges (@soniox/node 2.3.0 SttSessionConfig).
    max_endpoint_delay_ms: z
      .number()
      .int({ error: 'must be a whole number of ms' })
      .min(500, { error: 'must be between 500 and 3000' })
      .max(3000, { error: 'must be between 500 and 3000' })
      .optional(),
    endpoint_sensitivity: z.number().min(-1, { error: 'must be between -1.0 and 1.0' }).max(1, { error: 'must be between -1.0 and 1.0' }).optional(),
    endpoint_latency_adjustment_level: z.number().int().min(0, { error: 'must be 0, 1, 2 or 3' }).max(3, { error: 'must be 0, 1, 2 or 3' }).optional(),
    client_reference_id: z.string().max(256, { error: 'must be at most 256 characters' }).optional(),
    context: contextSchema.optional(),
    translation: translationSchema.optional(),
  })
  .strict();

/** The config message as accepted (validated). */
export type SonioxSttConfig = z.infer<typeof configSchema>;

const controlSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('finalize'), trailing_silence_ms: z.number().int().min(0).optional() }).strict(),
  z.object({ type: z.literal('keepalive') }).strict(),
]);

/** What the recogniser sees of one utterance. */
export interface SonioxUtterance {
  /** 0-based per connection. */
  readonly index: number;
  /** Stream time of its first voiced frame. */
  readonly startMs: number;
  /** Duration from the first to the last voiced frame (so far, when not complete). */
  readonly audioMs: number;
  /** Its audio (mono, `sampleRate`), first to last voiced frame. */
  readonly samples: Int16Array;
  readonly sampleRate: number;
  /** False while the utterance is still going on (a guess for the non-final tokens). */
  readonly complete: boolean;
}

export type SonioxRecognizer = (utterance: SonioxUtterance) => string;

export interface SonioxUtteranceRecord {
  readonly index: number;
  readonly startMs: number;
  readonly endMs: number;
  readonly text: string;
  readonly endedBy: 'endpoint' | 'finalize' | 'end';
}

export type SonioxSttFaultAction =
  | { readonly type: 'error'; readonly code: number; readonly message?: string; readonly closeCode?: number }
  | { readonly type: 'drop' }
  | { readonly type: 'stall' }
  | { readonly type: 'close'; readonly code: number; readonly reason?: string }
  /** Only at `upgrade`: answer the upgrade with this HTTP status. */
  | { readonly type: 'http'; readonly status: number; readonly body?: JsonValue };

export type SonioxSttFaultTrigger = 'upgrade' | 'config' | 'finalize' | 'end' | { readonly afterAudioMs: number };

export interface SonioxSttFault {
  /** Default `config`. */
  readonly at?: SonioxSttFaultTrigger;
  readonly action: SonioxSttFaultAction;
  /** Number of consecutive connections it applies to (default 1). */
  readonly times?: number;
}

export interface SonioxSttUpgradeRecord {
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  /** 101, or the HTTP status the upgrade was answered with. */
  readonly status: number;
}

export interface SonioxSttCloseInfo {
  readonly code: number;
  readonly reason: string;
  /** Who ended the connection: a close frame from the client or the server, or a dropped socket. */
  readonly by: 'client' | 'server' | 'dropped';
}

export interface SonioxSttConnection {
  readonly index: number;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  /** Where the accepted key came from (undefined until the config was accepted). */
  readonly authVia: 'header' | 'subprotocol' | 'config' | undefined;
  /** The first message, parsed (undefined before it arrived or when it was not JSON). */
  readonly rawConfig: JsonValue | undefined;
  /** The config once accepted. */
  readonly config: SonioxSttConfig | undefined;
  readonly audioBytes: number;
  readonly audioFrames: number;
  /** Decoded audio received, in ms. */
  readonly audioMs: number;
  readonly finalizeCount: number;
  readonly keepaliveCount: number;
  /** How the client ended its audio (`""` text frame or 0-byte binary frame). */
  readonly endOfAudio: 'text' | 'binary' | undefined;
  readonly sent: readonly SonioxSttServerMessage[];
  readonly utterances: readonly SonioxUtteranceRecord[];
  readonly closeInfo: SonioxSttCloseInfo | undefined;
  readonly stalled: boolean;
  /** Text of every final token sent, joined, control tokens removed. */
  finalText(): string;
  applyFault(action: SonioxSttFaultAction): void;
  close(code?: number, reason?: string): void;
}

/** Provider latency added on top of the audio clock (see the header comment). */
export interface SonioxSttLatency {
  /** Wall time between deciding a response with final tokens and sending it (default 0). */
  readonly finalDelayMs?: number;
}

export interface SonioxSttEmulatorOptions {
  /** Valid API key(s). */
  readonly apiKey: string | readonly string[];
  /** Extra accepted model ids (e.g. `stt-rt-v3`). */
  readonly models?: readonly string[];
  /** Refuse a key sent only in the config message (the 2027-01-15 rule). */
  readonly requireHeaderAuth?: boolean;
  /** Close with 408 after this long without a client message (default 20000). */
  readonly idleTimeoutMs?: number;
  /** Text of each utterance (default: `fixtureRecognizer()`). */
  readonly recognize?: SonioxRecognizer;
  readonly vad?: {
    readonly thresholdDbfs?: number;
    /** Trailing silence that ends an utterance when the config has no `max_endpoint_delay_ms` (default 2000, Soniox's). */
    readonly endpointDelayMs?: number;
    readonly minSpeechMs?: number;
  };
  /** Audio ms between two responses (default 120). */
  readonly responseIntervalMs?: number;
  /** Words finalised per response at the end of an utterance (default 3). */
  readonly finalWordsPerResponse?: number;
  readonly latency?: SonioxSttLatency;
  /**
   * Soniox may drop a client that sends audio in long bursts (§5.2; its threshold is UNCONFIRMED). When set, audio is
   * metered by a bucket of `allowanceMs` audio drained at `maxFactor` x real time; audio that overflows it ->
   * `{"error_code":400,"error_message":"Audio is sent faster than real time."}` and close. Default: not enforced.
   */
  readonly realTimeLimit?: SonioxSttRealTimeLimit;
  readonly faults?: readonly SonioxSttFault[];
  readonly logger?: Logger;
}

export interface SonioxSttRealTimeLimit {
  readonly maxFactor: number;
  readonly allowanceMs: number;
}

export interface SonioxSttEmulator {
  /** `ws://127.0.0.1:PORT/transcribe-websocket`. */
  readonly url: string;
  readonly port: number;
  readonly connections: readonly SonioxSttConnection[];
  readonly upgrades: readonly SonioxSttUpgradeRecord[];
  queueFault(fault: SonioxSttFault): void;
  waitFor<T>(probe: () => T | undefined | null | false, options?: WaitOptions): Promise<T>;
  /** Resolves with connection `index` (default: the next one not yet returned by this method). */
  waitForConnection(index?: number, options?: WaitOptions): Promise<SonioxSttConnection>;
  close(): Promise<void>;
}

// ---- recognisers --------------------------------------------------------------------------------------------------

const ENVELOPE_DBFS_FLOOR = -60;

/** Level of each 10 ms block in dBFS (floored at -60). */
function envelope(samples: Int16Array, rate: number): number[] {
  const block = Math.max(1, Math.round(rate / 100));
  const out: number[] = [];
  for (let i = 0; i + block <= samples.length; i += block) out.push(Math.max(ENVELOPE_DBFS_FLOOR, levelDbfs(samples.subarray(i, i + block))));
  return out;
}

function voicedEnvelope(samples: Int16Array, rate: number, thresholdDbfs: number): number[] {
  const env = envelope(samples, rate);
  const first = env.findIndex((level) => level >= thresholdDbfs);
  if (first < 0) return [];
  let last = env.length - 1;
  while (last > first && (env[last] as number) < thresholdDbfs) last--;
  return env.slice(first, last + 1);
}

/** Best Pearson correlation of `a` and `b` over their common length, shifting `b` by up to ±`maxShift` blocks. */
function envelopeCorrelation(a: readonly number[], b: readonly number[], maxShift = 3): number {
  let best = -1;
  for (let shift = -maxShift; shift <= maxShift; shift++) {
    const pairs: [number, number][] = [];
    for (let i = 0; i < a.length; i++) {
      const j = i + shift;
      if (j >= 0 && j < b.length) pairs.push([a[i] as number, b[j] as number]);
    }
    if (pairs.length < 10) continue;
    const meanA = pairs.reduce((sum, [x]) => sum + x, 0) / pairs.length;
    const meanB = pairs.reduce((sum, [, y]) => sum + y, 0) / pairs.length;
    let dot = 0;
    let varA = 0;
    let varB = 0;
    for (const [x, y] of pairs) {
      dot += (x - meanA) * (y - meanB);
      varA += (x - meanA) ** 2;
      varB += (y - meanB) ** 2;
    }
    const r = dot / Math.sqrt(varA * varB + 1e-9);
    if (r > best) best = r;
  }
  return best;
}

/**
 * Identifies the test kit's speech fixtures (greeting/short/question.wav) by the duration and the 10 ms energy
 * envelope of the utterance; anything else is `utterance N` (1-based), or `fallback(utterance)` when given.
 * Partial guesses (incomplete utterances of at least 300 ms) compare the prefix.
 */
export function fixtureRecognizer(options: { readonly thresholdDbfs?: number; readonly fallback?: SonioxRecognizer } = {}): SonioxRecognizer {
  const thresholdDbfs = options.thresholdDbfs ?? -40;
  const profiles = FIXTURE_NAMES.map((name) => {
    const env = voicedEnvelope(readWavAs8k(fixturePath(name)), 8000, thresholdDbfs);
    return { text: FIXTURE_TEXT[name], env, durationMs: env.length * 10 };
  });
  const fallback = options.fallback ?? ((utterance: SonioxUtterance): string => `utterance ${String(utterance.index + 1)}`);
  return (utterance) => {
    const env = voicedEnvelope(utterance.samples, utterance.sampleRate, thresholdDbfs);
    const durationMs = env.length * 10;
    let best: { text: string; r: number } | undefined;
    for (const profile of profiles) {
      if (utterance.complete) {
        if (Math.abs(durationMs - profile.durationMs) > Math.max(150, 0.1 * profile.durationMs)) continue;
      } else if (durationMs < 300 || durationMs > profile.durationMs + 150) continue;
      const r = envelopeCorrelation(env, profile.env);
      if (r >= (utterance.complete ? 0.5 : 0.6) && (best === undefined || r > best.r)) best = { text: profile.text, r };
    }
    return best?.text ?? fallback(utterance);
  };
}

/** `texts[index]` for utterance `index`, else `fallback` (default: `fixtureRecognizer()`). */
export function scriptedRecognizer(texts: readonly string[], fallback: SonioxRecognizer = fixtureRecognizer()): SonioxRecognizer {
  return (utterance) => texts[utterance.index] ?? fallback(utterance);
}

// ---- audio decoding -------------------------------------------------------------------------------------------------

const CONTAINER_FORMATS = new Set(['auto', 'aac', 'aiff', 'amr', 'asf', 'wav', 'mp3', 'flac', 'ogg', 'webm']);

/** Parses a RIFF/WAVE header; returns the decoder, rate and data offset, `undefined` if more bytes are needed. */
function parseWavHeader(data: Buffer): { decoder: StreamDecoder; rate: number; dataOffset: number } | 'invalid' | undefined {
  if (data.length < 12) return undefined;
  if (data.toString('ascii', 0, 4) !== 'RIFF' || data.toString('ascii', 8, 12) !== 'WAVE') return 'invalid';
  let offset = 12;
  let fmt: { tag: number; channels: number; rate: number; bits: number } | undefined;
  while (offset + 8 <= data.length) {
    const id = data.toString('ascii', offset, offset + 4);
    const size = data.readUInt32LE(offset + 4);
    if (id === 'data') {
      if (fmt === undefined) return 'invalid';
      const codec = wavSampleCodec(fmt.tag, fmt.bits);
      if (codec === undefined) return 'invalid';
      return { decoder: new StreamDecoder(codec, Math.max(1, fmt.channels)), rate: fmt.rate, dataOffset: offset + 8 };
    }
    if (offset + 8 + size > data.length) return undefined;
    if (id === 'fmt ' && size >= 16) {
      fmt = {
        tag: data.readUInt16LE(offset + 8),
        channels: data.readUInt16LE(offset + 10),
        rate: data.readUInt32LE(offset + 12),
        bits: data.readUInt16LE(offset + 22),
      };
    }
    offset += 8 + size + (size % 2);
  }
  return data.length > 65536 ? 'invalid' : undefined;
}

// ---- tokens ---------------------------------------------------------------------------------------------------------

interface WordPiece {
  readonly text: string;
  readonly word: number;
  readonly startMs: number;
  readonly endMs: number;
}

/** Splits text into token pieces spread over [startMs, endMs]: punctuation and long-word halves are own tokens. */
function pieces(text: string, startMs: number, endMs: number): WordPiece[] {
  const out: WordPiece[] = [];
  for (const { index, core, punctuation, startMs: wordStartMs, endMs: wordEndMs } of spreadWords(splitWords(text), startMs, endMs)) {
    const wordStart = Math.round(wordStartMs);
    const wordEnd = Math.round(wordEndMs);
    const parts = core.length > 8 ? [core.slice(0, Math.ceil(core.length / 2)), core.slice(Math.ceil(core.length / 2))] : core.length > 0 ? [core] : [];
    const step = parts.length === 0 ? 0 : (wordEnd - wordStart) / parts.length;
    parts.forEach((part, p) => {
      out.push({
        text: p === 0 ? ` ${part}` : part,
        word: index,
        startMs: Math.round(wordStart + step * p),
        endMs: Math.round(wordStart + step * (p + 1)),
      });
    });
    if (punctuation.length > 0) out.push({ text: punctuation, word: index, startMs: wordEnd, endMs: wordEnd });
  }
  return out;
}

// ---- connection -----------------------------------------------------------------------------------------------------

/**
 * Runs sends in order, none before its due time: an entry waits for its own delay and for every entry queued before
 * it; with nothing pending and no delay it runs at once (so a zero delay changes nothing). Its timer belongs to the
 * connection's TimerSet, whose clear() (close, drop, stall) drops what is pending. Shared with the Speechmatics RT
 * emulator.
 */
export class OrderedSends {
  readonly #timers: TimerSet;
  readonly #queue: { readonly dueAt: number; readonly run: () => void }[] = [];

  constructor(timers: TimerSet) {
    this.#timers = timers;
  }

  push(delayMs: number, run: () => void): void {
    this.#queue.push({ dueAt: performance.now() + delayMs, run });
    if (this.#queue.length === 1) this.#drain();
  }

  #drain(): void {
    for (let head = this.#queue[0]; head !== undefined; head = this.#queue[0]) {
      const waitMs = head.dueAt - performance.now();
      if (waitMs > 0) {
        // Checked again when the timer fires: Node timers can fire up to 1 ms early.
        this.#timers.after(waitMs, () => this.#drain());
        return;
      }
      // Still queued while it runs, so whatever it pushes waits behind it.
      head.run();
      this.#queue.shift();
    }
  }
}

interface Settings {
  readonly apiKeys: ReadonlySet<string>;
  readonly models: ReadonlySet<string>;
  readonly requireHeaderAuth: boolean;
  readonly idleTimeoutMs: number;
  readonly recognize: SonioxRecognizer;
  readonly thresholdDbfs: number;
  readonly endpointDelayMs: number;
  readonly minSpeechMs: number;
  readonly responseIntervalMs: number;
  readonly finalWordsPerResponse: number;
  readonly finalDelayMs: number;
  readonly realTimeLimit: SonioxSttRealTimeLimit | undefined;
  readonly logger: Logger;
}

function subprotocolKey(headers: IncomingHttpHeaders): string | undefined {
  const raw = headers['sec-websocket-protocol'];
  if (raw === undefined) return undefined;
  const list = raw.split(',').map((entry) => entry.trim());
  const at = list.indexOf('soniox-api-key');
  return at < 0 ? undefined : (list[at + 1] ?? '');
}

function describeIssue(issue: z.core.$ZodIssue, root: unknown): string {
  const path = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') return `Unknown field: ${issue.keys.join(', ')}`;
  let value: unknown = root;
  for (const key of issue.path) value = typeof value === 'object' && value !== null ? (value as Record<PropertyKey, unknown>)[key] : undefined;
  if (issue.code === 'invalid_type' && value === undefined) return `Missing required field: ${path}`;
  return `Invalid value for field ${path}: ${issue.message}`;
}

class Connection implements SonioxSttConnection {
  rawConfig: JsonValue | undefined;
  config: SonioxSttConfig | undefined;
  authVia: 'header' | 'subprotocol' | 'config' | undefined;
  audioBytes = 0;
  audioFrames = 0;
  finalizeCount = 0;
  keepaliveCount = 0;
  endOfAudio: 'text' | 'binary' | undefined;
  readonly sent: SonioxSttServerMessage[] = [];
  readonly utterances: SonioxUtteranceRecord[] = [];
  closeInfo: SonioxSttCloseInfo | undefined;
  stalled = false;

  readonly #ws: WebSocket;
  readonly #settings: Settings;
  readonly #notify: () => void;
  readonly #timers = new TimerSet();
  /** Responses (and the end-of-stream close), in order, finals held for `latency.finalDelayMs`. */
  readonly #responses = new OrderedSends(this.#timers);
  #idleTimer: NodeJS.Timeout | undefined;
  readonly #faults: ArmedFaults<Exclude<SonioxSttFaultTrigger, 'upgrade'>, SonioxSttFaultAction>;
  #phase: 'config' | 'streaming' | 'done' = 'config';
  #decoder: StreamDecoder | undefined;
  #wavHeader: Buffer | undefined;
  readonly #speech: SpeechSegmenter;
  #sinceResponse = 0;
  #finalSamples = 0;
  #anyTokenSent = false;
  #hangoverSamples = 0;
  /** `realTimeLimit` bucket: ms of audio ahead of the allowed pace, as of wall time `#paceAt`. */
  #paceLevelMs = 0;
  #paceAt: number | undefined;

  constructor(
    readonly index: number,
    readonly path: string,
    readonly headers: IncomingHttpHeaders,
    ws: WebSocket,
    settings: Settings,
    faults: readonly SonioxSttFault[],
    notify: () => void,
  ) {
    this.#ws = ws;
    this.#settings = settings;
    this.#notify = notify;
    this.#speech = new SpeechSegmenter(8000, settings.thresholdDbfs, settings.minSpeechMs);
    this.#faults = new ArmedFaults(faults, 'config');
    ws.on('message', (data: RawData, isBinary: boolean) => this.#onMessage(toBuffer(data), isBinary));
    ws.on('close', (code: number, reason: Buffer) => {
      this.closeInfo ??= { code, reason: reason.toString('utf8'), by: 'client' };
      this.#timers.clear();
      this.#phase = 'done';
      this.#notify();
    });
    ws.on('error', (error: Error) => settings.logger.debug({ err: error }, 'soniox stt emulator: socket error'));
    this.#armIdle();
  }

  get audioMs(): number {
    const speech = this.#speech;
    return (speech.samples * 1000) / speech.rate + (speech.pending * 1000) / speech.rate;
  }

  finalText(): string {
    let text = '';
    for (const message of this.sent) {
      if (!('tokens' in message)) continue;
      for (const token of message.tokens) if (token.is_final && token.text !== '<end>' && token.text !== '<fin>') text += token.text;
    }
    return text;
  }

  applyFault(action: SonioxSttFaultAction): void {
    if (this.closeInfo !== undefined) return;
    switch (action.type) {
      case 'error':
        this.#fail(action.code, action.message ?? defaultErrorMessage(action.code), action.closeCode ?? 1000);
        return;
      case 'drop':
        this.closeInfo = { code: 1006, reason: '', by: 'dropped' };
        this.#phase = 'done';
        this.#timers.clear();
        this.#ws.terminate();
        this.#notify();
        return;
      case 'stall':
        this.stalled = true;
        this.#timers.clear();
        this.#notify();
        return;
      case 'close':
        this.close(action.code, action.reason ?? '');
        return;
      case 'http':
        // Only meaningful at the upgrade; on an open socket it is a drop.
        this.applyFault({ type: 'drop' });
        return;
      default: {
        const exhaustive: never = action;
        throw new Error(`unknown fault ${JSON.stringify(exhaustive)}`);
      }
    }
  }

  close(code = 1000, reason = ''): void {
    if (this.closeInfo !== undefined) return;
    this.closeInfo = { code, reason, by: 'server' };
    this.#phase = 'done';
    this.#timers.clear();
    this.#ws.close(code, reason);
    this.#notify();
  }

  dispose(): void {
    this.#timers.clear();
    if (this.closeInfo === undefined) this.closeInfo = { code: 1006, reason: 'emulator closed', by: 'dropped' };
    this.#ws.terminate();
  }

  #armIdle(): void {
    this.#timers.cancel(this.#idleTimer);
    this.#idleTimer = this.#timers.after(this.#settings.idleTimeoutMs, () => {
      if (!this.stalled && this.#phase !== 'done') this.#fail(408, 'Request timeout.', 1000);
    });
  }

  #send(message: SonioxSttServerMessage): void {
    if (this.stalled || this.closeInfo !== undefined) return;
    this.sent.push(message);
    this.#ws.send(JSON.stringify(message));
    this.#notify();
  }

  #respond(result: SonioxSttResult): void {
    const delayMs = result.tokens.some((token) => token.is_final) ? this.#settings.finalDelayMs : 0;
    this.#responses.push(delayMs, () => this.#send(result));
  }

  #fail(code: number, message: string, closeCode = 1000): void {
    this.#send({ error_code: code, error_message: message });
    this.close(closeCode, '');
  }

  /** Runs the faults armed for `trigger`; returns true when one ended or froze the connection. */
  #trigger(matches: (at: Exclude<SonioxSttFaultTrigger, 'upgrade'>) => boolean): boolean {
    const due = this.#faults.take(matches);
    if (due.length === 0) return false;
    for (const action of due) this.applyFault(action);
    return this.stalled || this.closeInfo !== undefined;
  }

  #onMessage(data: Buffer, isBinary: boolean): void {
    if (this.stalled || this.#phase === 'done') return;
    this.#armIdle();
    if (this.#phase === 'config') {
      this.#onConfig(data, isBinary);
      this.#notify();
      return;
    }
    if (data.length === 0) {
      this.endOfAudio = isBinary ? 'binary' : 'text';
      this.#notify();
      if (this.#trigger((at) => at === 'end')) return;
      this.#endOfStream();
      return;
    }
    if (isBinary) {
      this.#onAudio(data);
      return;
    }
    this.#onControl(data.toString('utf8'));
  }

  #onConfig(data: Buffer, isBinary: boolean): void {
    if (isBinary) {
      this.#fail(400, 'The first message must be a JSON configuration message.');
      return;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(data.toString('utf8'));
    } catch {
      this.#fail(400, 'Invalid JSON in the configuration message.');
      return;
    }
    this.rawConfig = parsed as JsonValue;
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      this.#fail(400, 'The configuration message must be a JSON object.');
      return;
    }
    // Auth first: a connection-level key wins over the deprecated config field.
    const configKey = (parsed as Record<string, unknown>).api_key;
    // A malformed Authorization header is a wrong key, not a missing one.
    const headerKey = this.headers.authorization === undefined ? undefined : (bearerToken(this.headers) ?? '');
    const protocolKey = subprotocolKey(this.headers);
    const connectionKey = headerKey ?? protocolKey;
    if (connectionKey !== undefined) {
      if (!this.#settings.apiKeys.has(connectionKey)) {
        this.#fail(401, 'Invalid API key.');
        return;
      }
      this.authVia = headerKey !== undefined ? 'header' : 'subprotocol';
    } else if (typeof configKey === 'string' && configKey.length > 0) {
      if (this.#settings.requireHeaderAuth) {
        this.#fail(401, 'API key in the configuration message is no longer supported. Send it in the Authorization header.');
        return;
      }
      if (!this.#settings.apiKeys.has(configKey)) {
        this.#fail(401, 'Invalid API key.');
        return;
      }
      this.authVia = 'config';
    } else {
      this.#fail(401, 'Missing API key.');
      return;
    }
    const result = configSchema.safeParse(parsed);
    if (!result.success) {
      const issue = result.error.issues[0];
      this.#fail(400, issue === undefined ? 'Invalid configuration.' : describeIssue(issue, parsed));
      return;
    }
    const config = result.data;
    if (!this.#settings.models.has(config.model)) {
      this.#fail(400, 'Invalid model specified.');
      return;
    }
    const format = config.audio_format;
    const codec = rawSampleCodec(format);
    if (codec !== undefined) {
      if (config.sample_rate === undefined) {
        this.#fail(400, `Missing required field: sample_rate (required for audio_format ${format}).`);
        return;
      }
      if (config.num_channels === undefined) {
        this.#fail(400, `Missing required field: num_channels (required for audio_format ${format}).`);
        return;
      }
      this.#decoder = new StreamDecoder(codec, config.num_channels);
    } else if (!CONTAINER_FORMATS.has(format)) {
      this.#fail(400, `Invalid audio_format: ${format}.`);
      return;
    }
    this.config = config;
    if (config.sample_rate !== undefined && codec !== undefined) this.#setRate(config.sample_rate);
    this.#phase = 'streaming';
    this.#trigger((at) => at === 'config');
  }

  #setRate(rate: number): void {
    this.#speech.setRate(rate);
    this.#hangoverSamples = this.#speech.samplesIn(this.config?.max_endpoint_delay_ms ?? this.#settings.endpointDelayMs);
  }

  #onControl(text: string): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      this.#fail(400, 'Invalid JSON message.');
      return;
    }
    const result = controlSchema.safeParse(parsed);
    if (!result.success) {
      this.#fail(400, 'Invalid control message.');
      return;
    }
    switch (result.data.type) {
      case 'keepalive':
        this.keepaliveCount++;
        this.#notify();
        return;
      case 'finalize':
        this.finalizeCount++;
        this.#notify();
        if (this.#trigger((at) => at === 'finalize')) return;
        this.#flushFrame();
        this.#endUtterance('finalize', { text: '<fin>', is_final: true });
        return;
      default: {
        const exhaustive: never = result.data;
        throw new Error(`unknown control ${JSON.stringify(exhaustive)}`);
      }
    }
  }

  #onAudio(data: Buffer): void {
    this.audioBytes += data.length;
    this.audioFrames++;
    const audioMsBefore = this.audioMs;
    let bytes = data;
    if (this.#decoder === undefined) {
      const format = this.config?.audio_format ?? 'auto';
      if (format !== 'auto' && format !== 'wav') {
        this.#fail(400, `audio_format ${format} is not supported by the emulator.`);
        return;
      }
      this.#wavHeader = this.#wavHeader === undefined ? data : Buffer.concat([this.#wavHeader, data]);
      const header = parseWavHeader(this.#wavHeader);
      if (header === undefined) return;
      if (header === 'invalid') {
        this.#fail(400, 'Unable to detect the audio format (the emulator detects only PCM/G.711 WAV).');
        return;
      }
      this.#decoder = header.decoder;
      this.#setRate(header.rate);
      bytes = this.#wavHeader.subarray(header.dataOffset);
      this.#wavHeader = undefined;
    }
    for (const frame of this.#speech.frames(this.#decoder.decode(bytes))) {
      this.#processFrame(frame);
      if (this.closeInfo !== undefined || this.stalled) return;
    }
    if (this.#tooFast(this.audioMs - audioMsBefore)) {
      this.#fail(400, 'Audio is sent faster than real time.');
      return;
    }
    if (this.#sinceResponse * 1000 >= this.#settings.responseIntervalMs * this.#speech.rate) {
      this.#sinceResponse = 0;
      this.#sendPartial();
    }
    this.#notify();
    const audioMs = this.audioMs;
    this.#trigger((at) => typeof at === 'object' && audioMs >= at.afterAudioMs);
  }

  /** Meters `addedMs` of audio against `realTimeLimit`; true when it overflows. */
  #tooFast(addedMs: number): boolean {
    const limit = this.#settings.realTimeLimit;
    if (limit === undefined) return false;
    const now = performance.now();
    const drainedMs = this.#paceAt === undefined ? 0 : (now - this.#paceAt) * limit.maxFactor;
    this.#paceLevelMs = Math.max(0, this.#paceLevelMs - drainedMs) + addedMs;
    this.#paceAt = now;
    return this.#paceLevelMs > limit.allowanceMs;
  }

  #processFrame(frame: Int16Array): void {
    const voiced = this.#speech.addFrame(frame);
    this.#sinceResponse += frame.length;
    if (voiced) return;
    const open = this.#speech.open;
    if (open === undefined) {
      this.#finalSamples = this.#speech.samples;
    } else if (this.#speech.silenceAfter(open) >= this.#hangoverSamples) {
      this.#endUtterance('endpoint', this.config?.enable_endpoint_detection === true ? { text: '<end>', is_final: true } : undefined);
    }
  }

  #ms(samples: number): number {
    return Math.round(this.#speech.ms(samples));
  }

  #token(piece: WordPiece, isFinal: boolean): SonioxToken {
    const config = this.config;
    const text = this.#anyTokenSent || !piece.text.startsWith(' ') ? piece.text : piece.text.slice(1);
    if (isFinal) this.#anyTokenSent = true;
    const seed = (piece.startMs * 31 + piece.text.length * 7) % 10;
    const language = config?.enable_language_identification === true ? (config.language_hints?.[0] ?? 'en') : undefined;
    return {
      text,
      start_ms: piece.startMs,
      end_ms: piece.endMs,
      confidence: isFinal ? 0.9 + seed / 100 : 0.6 + seed / 50,
      is_final: isFinal,
      ...(config?.enable_speaker_diarization === true ? { speaker: '1' } : {}),
      ...(language !== undefined ? { language } : {}),
    };
  }

  #nonFinalTokens(list: readonly WordPiece[]): SonioxToken[] {
    const saved = this.#anyTokenSent;
    const tokens = list.map((piece) => this.#token(piece, false));
    this.#anyTokenSent = saved;
    return tokens;
  }

  #sendPartial(): void {
    const open = this.#speech.open;
    let tokens: SonioxToken[] = [];
    if (open !== undefined && this.#speech.longEnough(open)) {
      const view = this.#speech.view(open, false);
      const words = splitWords(this.#settings.recognize(view));
      const revealed = Math.max(1, Math.min(words.length, Math.floor(view.audioMs / 250)));
      tokens = this.#nonFinalTokens(pieces(words.slice(0, revealed).join(' '), view.startMs, view.startMs + view.audioMs));
    }
    this.#respond({ tokens, final_audio_proc_ms: this.#ms(this.#finalSamples), total_audio_proc_ms: this.#ms(this.#speech.samples) });
  }

  /** Finalises the open utterance (if any) in groups; `control` is appended to the last response (or sent alone). */
  #endUtterance(endedBy: SonioxUtteranceRecord['endedBy'], control: SonioxToken | undefined): void {
    const open = this.#speech.end();
    const totalMs = this.#ms(this.#speech.samples);
    let list: WordPiece[] = [];
    if (open !== undefined) {
      const view = this.#speech.view(open, true);
      const text = this.#settings.recognize(view).trim();
      list = pieces(text, view.startMs, view.startMs + view.audioMs);
      this.utterances.push({ index: open.index, startMs: view.startMs, endMs: view.startMs + view.audioMs, text, endedBy });
    }
    this.#finalSamples = this.#speech.samples;
    const groupWords = this.#settings.finalWordsPerResponse;
    const words = list.length === 0 ? 0 : (list[list.length - 1] as WordPiece).word + 1;
    if (words === 0) {
      // Nothing to finalise: `<fin>` still answers a finalize; `<end>` needs an utterance.
      if (control !== undefined && endedBy === 'finalize') this.#respond({ tokens: [control], final_audio_proc_ms: totalMs, total_audio_proc_ms: totalMs });
      this.#notify();
      return;
    }
    for (let from = 0; from < words; from += groupWords) {
      const last = from + groupWords >= words;
      const finals = list.filter((piece) => piece.word >= from && piece.word < from + groupWords).map((piece) => this.#token(piece, true));
      const rest = this.#nonFinalTokens(list.filter((piece) => piece.word >= from + groupWords));
      const finalMs = last ? totalMs : (finals[finals.length - 1]?.end_ms ?? totalMs);
      const tokens = last && control !== undefined ? [...finals, control] : [...finals, ...rest];
      this.#respond({ tokens, final_audio_proc_ms: finalMs, total_audio_proc_ms: totalMs });
      if (this.closeInfo !== undefined || this.stalled) return;
    }
  }

  /** Processes the incomplete analysis frame at a finalize or at the end of the audio. */
  #flushFrame(): void {
    const rest = this.#speech.flush();
    if (rest !== undefined) this.#processFrame(rest);
  }

  #endOfStream(): void {
    this.#flushFrame();
    if (this.closeInfo !== undefined) return;
    this.#endUtterance('end', undefined);
    const totalMs = this.#ms(this.#speech.samples);
    this.#respond({ tokens: [], final_audio_proc_ms: totalMs, total_audio_proc_ms: totalMs, finished: true });
    this.#responses.push(0, () => this.close(1000, ''));
  }
}

function defaultErrorMessage(code: number): string {
  switch (code) {
    case 400:
      return 'Bad request.';
    case 401:
      return 'Invalid API key.';
    case 402:
      return 'Insufficient balance.';
    case 408:
      return 'Request timeout.';
    case 429:
      return 'Rate limit exceeded.';
    case 503:
      return 'Cannot continue request (code 1). Please restart the request.';
    default:
      return 'Internal server error.';
  }
}

// ---- server ---------------------------------------------------------------------------------------------------------

export async function startSonioxSttEmulator(options: SonioxSttEmulatorOptions): Promise<SonioxSttEmulator> {
  const settings: Settings = {
    apiKeys: new Set(typeof options.apiKey === 'string' ? [options.apiKey] : options.apiKey),
    models: new Set([...SONIOX_STT_MODELS, ...(options.models ?? [])]),
    requireHeaderAuth: options.requireHeaderAuth === true,
    idleTimeoutMs: options.idleTimeoutMs ?? 20_000,
    recognize: options.recognize ?? fixtureRecognizer({ thresholdDbfs: options.vad?.thresholdDbfs ?? -40 }),
    thresholdDbfs: options.vad?.thresholdDbfs ?? -40,
    endpointDelayMs: options.vad?.endpointDelayMs ?? SONIOX_DEFAULT_MAX_ENDPOINT_DELAY_MS,
    minSpeechMs: options.vad?.minSpeechMs ?? 60,
    responseIntervalMs: options.responseIntervalMs ?? 120,
    finalWordsPerResponse: Math.max(1, options.finalWordsPerResponse ?? 3),
    finalDelayMs: Math.max(0, options.latency?.finalDelayMs ?? 0),
    realTimeLimit: options.realTimeLimit,
    logger: options.logger ?? silentLogger(),
  };
  const host = createWsEmulatorHost<Connection, SonioxSttFault>(
    { perMessageDeflate: false, handleProtocols: (protocols) => (protocols.has('soniox-api-key') ? 'soniox-api-key' : false) },
    options.faults,
  );
  const upgrades: SonioxSttUpgradeRecord[] = [];

  host.server.on('request', (request, response) => {
    const path = new URL(request.url ?? '/', 'http://127.0.0.1').pathname;
    response
      .writeHead(path === '/transcribe-websocket' ? 426 : 404, { 'content-type': 'application/json' })
      .end(JSON.stringify({ error_code: path === '/transcribe-websocket' ? 426 : 404, error_message: 'Not found.' }));
  });

  host.server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = new URL(request.url ?? '/', 'http://127.0.0.1').pathname;
    const record = (status: number): void => {
      upgrades.push({ path, headers: request.headers, status });
      host.notify();
    };
    if (path !== '/transcribe-websocket') {
      writeRawHttp(socket, 404, { error_code: 404, error_message: 'Not found.' });
      record(404);
      return;
    }
    const fault = host.faults.take();
    if (fault !== undefined && fault.at === 'upgrade') {
      const http = fault.action.type === 'http' ? fault.action : undefined;
      record(failUpgrade(socket, http, (status) => ({ error_code: status, error_message: defaultErrorMessage(status) })));
      return;
    }
    host.accept(request, socket, head, (ws, index) => {
      upgrades.push({ path, headers: request.headers, status: 101 });
      return new Connection(index, path, request.headers, ws, settings, fault === undefined ? [] : [fault], host.notify);
    });
  });

  const port = await host.listen();
  return { url: `ws://127.0.0.1:${String(port)}/transcribe-websocket`, port, upgrades, ...host.api };
}
