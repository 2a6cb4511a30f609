import { open, rename, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { AvrOutbound, CallClock, CallOutcome, CallRecorder, CallTimer, RecordedCallStart, RecordedToolCall } from '@stsgate/core';
import { SIDECAR_LIMITS, SidecarLog, boundText } from './sidecar.js';
import { SAMPLES_PER_MS, StereoTimeline } from './timeline.js';
import { WAV_BYTES_PER_SAMPLE_FRAME, WAV_HEADER_BYTES, WAV_MAX_DATA_BYTES, pcmBytes, writeWavHeader } from './wav.js';

export interface CallRecordingOptions {
  /** The recordings directory; files are `<id>.wav` and `<id>.json` in it. */
  readonly dir: string;
  /** Server-generated (see `newRecordingId`): never derived from anything the client sent. */
  readonly id: string;
  /** The call's clock (the one its runtime reads): every time the runtime reports is on it. */
  readonly clock: CallClock;
  readonly logger: Logger;
  /** How often audio and the sidecar are written (default {@link RECORDING_FLUSH_INTERVAL_MS}). */
  readonly flushIntervalMs?: number;
  /** See `TimelineSettings.callerJitterMs` (default 200 ms). */
  readonly callerJitterMs?: number;
  /** Audio held in memory beyond what was written, at most (default 30 000 ms; beyond it audio is dropped, counted). */
  readonly maxPendingMs?: number;
  /** Wall clock of the sidecar's `startedAt`/`endedAt` (default `Date.now`). */
  readonly wallClock?: () => number;
  /** Opens the WAV (default: create it, refusing an existing path, mode 0600); tests inject failing files. */
  readonly openAudioFile?: (path: string) => Promise<FileHandle>;
  /** Told once the recording is over (its files final, or given up), with the bytes it left on disk. */
  readonly onClosed?: (recording: CallRecording, bytesOnDisk: number) => void;
}

/**
 * Audio and the sidecar are written this often. With the jitter allowance (200 ms) and {@link COMMIT_MARGIN_MS}, a
 * crash loses at most a second of audio; each write costs two file-system calls (append, header), so this is the
 * main knob of the recording's CPU cost (bench/recording.mjs).
 */
export const RECORDING_FLUSH_INTERVAL_MS = 750;
const DEFAULTS = { flushIntervalMs: RECORDING_FLUSH_INTERVAL_MS, callerJitterMs: 200, maxPendingMs: 30_000 } as const;
/** Audio is written up to this far behind the call clock: late caller audio (within the jitter allowance) still fits. */
const COMMIT_MARGIN_MS = 50;
/** Memory reserved per call beyond one flush interval and the margins: agent audio sent ahead (OUTBOUND_LEAD_MS). */
const AGENT_LEAD_ALLOWANCE_MS = 250;

const createExclusive = (path: string): Promise<FileHandle> => open(path, 'wx', 0o600);

/**
 * One call's recording: a stereo WAV (left the caller as AVR Core sent it, right the agent as AVR Core played it, on
 * the call clock) and a JSON sidecar, written incrementally. The runtime's reports only copy into memory; a timer
 * writes what is older than the jitter allowance every `flushIntervalMs` (audio appended, then the WAV header patched,
 * then the sidecar replaced atomically when it changed), so a crash loses about a second and leaves valid files. A
 * disk error is logged once and ends the recording, never the call. `close()` is idempotent and leaves no timer or
 * file handle behind.
 */
export class CallRecording implements CallRecorder {
  readonly id: string;
  readonly wavPath: string;
  readonly sidecarPath: string;
  private readonly clock: CallClock;
  private log: Logger;
  private readonly timeline: StereoTimeline;
  private readonly flushIntervalMs: number;
  private readonly commitMarginSamples: number;
  private readonly wallClock: () => number;
  private sidecar: SidecarLog | undefined;
  /** Call-clock time of sample 0. */
  private origin = 0;
  private state: 'idle' | 'recording' | 'ending' | 'closed' = 'idle';
  private failed = false;
  private timer: CallTimer | undefined;
  private file: Promise<FileHandle> | undefined;
  private dataBytes = 0;
  private sidecarBytes = 0;
  private audioFull = false;
  private readonly header = Buffer.alloc(WAV_HEADER_BYTES);
  /** The write in progress (one at a time); a tick that finds one running skips. */
  private writing: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private endAtPos: number | undefined;

  constructor(private readonly options: CallRecordingOptions) {
    this.id = options.id;
    this.wavPath = join(options.dir, `${options.id}.wav`);
    this.sidecarPath = join(options.dir, `${options.id}.json`);
    this.clock = options.clock;
    this.log = options.logger.child({ component: 'recording', recording: options.id });
    this.flushIntervalMs = options.flushIntervalMs ?? DEFAULTS.flushIntervalMs;
    const callerJitterMs = options.callerJitterMs ?? DEFAULTS.callerJitterMs;
    this.commitMarginSamples = Math.round((callerJitterMs + COMMIT_MARGIN_MS) * SAMPLES_PER_MS);
    this.timeline = new StereoTimeline({
      callerJitterMs,
      maxPendingMs: options.maxPendingMs ?? DEFAULTS.maxPendingMs,
      initialPendingMs: this.flushIntervalMs + callerJitterMs + COMMIT_MARGIN_MS + AGENT_LEAD_ALLOWANCE_MS,
    });
    this.wallClock = options.wallClock ?? Date.now;
  }

  /** Whether the call started (its files exist, or are being created) and the recording has not failed. */
  get active(): boolean {
    return (this.state === 'recording' || this.state === 'ending') && !this.failed;
  }

  /** Bytes written so far (WAV and sidecar). */
  get bytesOnDisk(): number {
    return (this.dataBytes > 0 || this.file !== undefined ? WAV_HEADER_BYTES : 0) + this.dataBytes + this.sidecarBytes;
  }

  /** Resolves once the write in progress, if any, is done (never rejects). */
  whenWritten(): Promise<void> {
    return this.writing ?? Promise.resolve();
  }

  // ---- CallRecorder: called by the runtime, in memory only ------------------------------------------------------

  start(call: RecordedCallStart, atMs: number): void {
    if (this.state !== 'idle') return;
    this.state = 'recording';
    this.origin = atMs;
    try {
      this.log = this.log.child({ callId: boundText(call.callId, SIDECAR_LIMITS.callIdChars).text });
      this.sidecar = new SidecarLog(this.id, `${this.id}.wav`, call, new Date(this.wallClock()));
    } catch (error) {
      void this.fail(error);
      return;
    }
    const openAudioFile = this.options.openAudioFile ?? createExclusive;
    try {
      this.file = openAudioFile(this.wavPath);
    } catch (error) {
      this.file = Promise.reject(error);
    }
    // A failed open is handled by the first write; until then nothing awaits it.
    this.file.catch(() => undefined);
    this.startWrite(() => this.writeStart());
    this.timer = this.clock.setInterval(() => this.flush(), this.flushIntervalMs);
    this.log.debug({ file: this.wavPath }, 'recording the call');
  }

  callerAudio(samples: Int16Array, atMs: number): void {
    if (this.state !== 'recording' || this.failed) return;
    try {
      this.timeline.caller(samples, this.position(atMs));
    } catch (error) {
      void this.fail(error); // a bug here must cost the recording, never the call
    }
  }

  agentAudio(frame: Int16Array, playsAtMs: number): void {
    if (this.state !== 'recording' || this.failed) return;
    try {
      this.timeline.agent(frame, this.position(playsAtMs));
    } catch (error) {
      void this.fail(error);
    }
  }

  controlSent(message: AvrOutbound, atMs: number): void {
    const sidecar = this.sidecar;
    if (this.state !== 'recording' || sidecar === undefined) return;
    const offsetMs = atMs - this.origin;
    switch (message.type) {
      case 'transcript':
        sidecar.transcript(message.role, message.text, offsetMs);
        return;
      case 'error':
        sidecar.error(message.message, offsetMs);
        return;
      case 'interruption':
        try {
          if (!this.failed) this.timeline.cutAgent(this.position(atMs));
        } catch (error) {
          void this.fail(error);
        }
        sidecar.interruption(offsetMs);
        return;
      case 'audio':
        return;
    }
  }

  toolCall(call: RecordedToolCall): void {
    if (this.state !== 'recording') return;
    this.sidecar?.toolCall(call, this.origin);
  }

  end(outcome: CallOutcome, atMs: number): void {
    if (this.state !== 'recording') {
      void this.close();
      return;
    }
    this.state = 'ending';
    this.endAtPos = this.position(atMs);
    this.sidecar?.ended(outcome, new Date(this.wallClock()));
    void this.close();
  }

  // ---- lifecycle ---------------------------------------------------------------------------------------------------

  /**
   * Write what is left (up to the end of the call), the final sidecar, and close the file. Idempotent; never rejects.
   * Without `end` (the host closing early), the recording ends now.
   */
  close(): Promise<void> {
    this.closing ??= this.finish();
    return this.closing;
  }

  private async finish(): Promise<void> {
    this.timer?.clear();
    this.timer = undefined;
    const started = this.state !== 'idle';
    if (this.state === 'recording') this.endAtPos = this.position(this.clock.now());
    this.state = 'closed';
    if (started) {
      await this.writing;
      if (!this.failed) {
        const endPos = this.endAtPos ?? this.timeline.committedSamples;
        this.timeline.truncate(endPos);
        const audio = this.timeline.take(endPos, true);
        try {
          await this.writeChunk(audio);
          this.reportAudioProgress();
          this.sidecar?.completed();
          await this.writeSidecar();
        } catch (error) {
          await this.fail(error);
        }
      }
      this.timeline.release();
      await this.closeFile();
    }
    this.options.onClosed?.(this, this.bytesOnDisk);
  }

  /** Timer: hand what is old enough to a write, unless one is still running (it then waits for the next tick). */
  private flush(): void {
    if (this.state !== 'recording' || this.failed || this.writing !== undefined) return;
    const upTo = this.position(this.clock.now()) - this.commitMarginSamples;
    const audio = this.timeline.take(upTo);
    if (audio === undefined && this.sidecar?.dirty !== true) return;
    this.startWrite(async () => {
      await this.writeChunk(audio);
      if (this.sidecar?.dirty === true) await this.writeSidecar();
    });
  }

  private startWrite(write: () => Promise<void>): void {
    const running = write()
      .catch((error: unknown) => this.fail(error))
      .finally(() => {
        if (this.writing === running) this.writing = undefined;
      });
    this.writing = running;
  }

  private async writeStart(): Promise<void> {
    const file = await this.fileHandle();
    await file.write(writeWavHeader(this.header, 0), 0, WAV_HEADER_BYTES, 0);
    await this.writeSidecar();
  }

  /** Appends interleaved audio, then patches the header: the file is a valid WAV of everything appended. */
  private async writeChunk(audio: Int16Array | undefined): Promise<void> {
    if (audio === undefined || this.failed) return;
    const bytes = pcmBytes(audio);
    if (this.dataBytes + bytes.length > WAV_MAX_DATA_BYTES) {
      if (!this.audioFull) this.log.warn({ dataBytes: this.dataBytes }, 'recording reached the WAV size limit: the rest of the call is not recorded');
      this.audioFull = true;
      return;
    }
    const file = await this.fileHandle();
    await file.write(bytes, 0, bytes.length, WAV_HEADER_BYTES + this.dataBytes);
    this.dataBytes += bytes.length;
    await file.write(writeWavHeader(this.header, this.dataBytes), 0, WAV_HEADER_BYTES, 0);
    this.reportAudioProgress();
  }

  private reportAudioProgress(): void {
    this.sidecar?.audioProgress(this.dataBytes / WAV_BYTES_PER_SAMPLE_FRAME / SAMPLES_PER_MS, this.timeline.droppedSamples / SAMPLES_PER_MS);
  }

  /** Replaces the sidecar atomically (temp file + rename): a reader never sees half of one. */
  private async writeSidecar(): Promise<void> {
    const sidecar = this.sidecar;
    if (sidecar === undefined) return;
    const text = sidecar.serialise();
    const temp = `${this.sidecarPath}.tmp`;
    await writeFile(temp, text, { mode: 0o600 });
    await rename(temp, this.sidecarPath);
    this.sidecarBytes = Buffer.byteLength(text);
  }

  private fileHandle(): Promise<FileHandle> {
    if (this.file === undefined) throw new Error('recording not started');
    return this.file;
  }

  /** A disk error (ENOSPC, EACCES, a directory gone...): logged once; the call goes on unrecorded from here. */
  private async fail(error: unknown): Promise<void> {
    if (this.failed) return;
    this.failed = true;
    const code = error instanceof Error ? (error as NodeJS.ErrnoException).code : undefined;
    this.log.error({ err: error, code }, 'recording failed: the call goes on without it');
    this.timer?.clear();
    this.timer = undefined;
    this.timeline.release();
    this.sidecar?.failed(code ?? (error instanceof Error ? error.message : String(error)));
    // The sidecar may still be writable (the WAV's disk is full, not the directory gone): one best-effort attempt.
    await this.writeSidecar().catch(() => undefined);
  }

  private async closeFile(): Promise<void> {
    const file = this.file;
    if (file === undefined) return;
    try {
      await (await file).close();
    } catch {
      // Never opened, or already unusable: nothing left to release.
    }
  }

  private position(atMs: number): number {
    return Math.round((atMs - this.origin) * SAMPLES_PER_MS);
  }
}
