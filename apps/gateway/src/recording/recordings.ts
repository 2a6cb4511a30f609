import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, lstat, mkdir, readdir, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { ConfigError, type CallClock } from '@stsgate/core';
import { CallRecording, type CallRecordingOptions } from './call-recording.js';

/** Where recordings go and how much of them is kept (RECORDINGS_DIR, RECORDINGS_MAX_BYTES, RECORDINGS_MAX_AGE_DAYS). */
export interface RecordingSettings {
  readonly dir: string;
  /** The recordings' total size; beyond it the oldest finished ones are deleted. */
  readonly maxBytes: number;
  /** Finished recordings not written to for longer than this are deleted. */
  readonly maxAgeDays: number;
}

export interface CallRecordingsOptions {
  readonly logger: Logger;
  /** How often retention is enforced besides start-up (default 60 000 ms). */
  readonly retentionCheckMs?: number;
  /** Wall clock (ms) for names and ages (default `Date.now`). */
  readonly now?: () => number;
  /** Settings of every call's recording (tests shorten the flush interval, inject failing files). */
  readonly recording?: Pick<CallRecordingOptions, 'flushIntervalMs' | 'callerJitterMs' | 'maxPendingMs' | 'openAudioFile'>;
}

/** What one retention pass did. */
export interface RetentionReport {
  readonly deleted: number;
  readonly freedBytes: number;
  readonly remainingBytes: number;
}

/** `20261205T101112Z-<16 hex>`: UTC start time (so names sort oldest first) and 64 random bits. Nothing from the client. */
export const RECORDING_ID_PATTERN = /^\d{8}T\d{6}Z-[0-9a-f]{16}$/;
/** The files a recording leaves: its WAV, its sidecar, and the sidecar's temporary file while it is replaced. */
const RECORDING_FILE = /^(\d{8}T\d{6}Z-[0-9a-f]{16})\.(wav|json|json\.tmp)$/;
const DAY_MS = 86_400_000;
const DEFAULT_RETENTION_CHECK_MS = 60_000;
/** At shutdown, how long closing waits for recordings still writing their last audio. */
const CLOSE_WAIT_MS = 5000;

/** A server-generated recording id (file names derive from it and nothing else). */
export function newRecordingId(now: number = Date.now()): string {
  const stamp = new Date(now).toISOString().slice(0, 19).replace(/[-:]/g, '');
  return `${stamp}Z-${randomBytes(8).toString('hex')}`;
}

/**
 * `mkdir -p` with mode 0700, one level at a time from the deepest existing ancestor (Node's recursive mkdir never
 * returns on a path it cannot create under, such as one in /proc).
 */
async function ensureDirectory(dir: string): Promise<void> {
  const missing: string[] = [];
  for (let current = dir; ; current = dirname(current)) {
    const stats = await stat(current).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT' || dirname(current) === current) throw error;
      return undefined;
    });
    if (stats === undefined) {
      missing.push(current);
      continue;
    }
    if (!stats.isDirectory()) throw Object.assign(new Error(`${current} is not a directory`), { code: 'ENOTDIR' });
    break;
  }
  for (const path of missing.reverse()) {
    await mkdir(path, { mode: 0o700 }).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error;
    });
  }
}

interface FinishedRecording {
  bytes: number;
  /** Wall-clock ms of its last write. */
  modifiedAt: number;
}

/**
 * The recordings directory (RECORDINGS_DIR): one {@link CallRecording} per call, named by the server, and retention
 * (oldest finished recordings deleted first, beyond `maxBytes` in total or older than `maxAgeDays`; recordings in
 * progress are never deleted), enforced at start-up, every `retentionCheckMs`, and when a finished recording takes the
 * total over the limit. Only files named like recordings are ever touched. `close()` stops the timer and waits (a
 * bounded time) for recordings still writing.
 */
export class CallRecordings {
  private readonly log: Logger;
  private readonly now: () => number;
  /** Finished recordings by id, oldest (least recently written) first. */
  private readonly finished = new Map<string, FinishedRecording>();
  private readonly inProgress = new Set<CallRecording>();
  private timer: NodeJS.Timeout | undefined;
  private enforcing: Promise<RetentionReport> | undefined;
  /** The limit is exceeded by recordings in progress alone: said once until it is not. */
  private overLimitWarned = false;
  private closed = false;

  private constructor(
    readonly settings: RecordingSettings,
    private readonly options: CallRecordingsOptions,
  ) {
    this.log = options.logger.child({ component: 'recordings' });
    this.now = options.now ?? Date.now;
  }

  /**
   * Creates the directory (mode 0700) if needed, checks it can be written, indexes the recordings already there and
   * enforces retention. A directory that cannot be used is a configuration error: recording was asked for.
   */
  static async open(settings: RecordingSettings, options: CallRecordingsOptions): Promise<CallRecordings> {
    try {
      await ensureDirectory(settings.dir);
      await access(settings.dir, constants.W_OK | constants.X_OK);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? (error instanceof Error ? error.message : String(error));
      throw new ConfigError('the gateway', [`RECORDINGS_DIR=${JSON.stringify(settings.dir)} cannot be written to (${code})`]);
    }
    const recordings = new CallRecordings(settings, options);
    await recordings.index();
    await recordings.enforceRetention();
    recordings.timer = setInterval(() => void recordings.enforceRetention(), options.retentionCheckMs ?? DEFAULT_RETENTION_CHECK_MS);
    recordings.timer.unref();
    recordings.log.info(
      { dir: settings.dir, recordings: recordings.finished.size, bytes: recordings.finishedBytes(), maxBytes: settings.maxBytes, maxAgeDays: settings.maxAgeDays },
      'call recording is on',
    );
    return recordings;
  }

  /** A recorder for one call (nothing is written unless the call starts). Owned here until the recording closes. */
  createRecorder(clock: CallClock, logger: Logger): CallRecording {
    const recording = new CallRecording({
      ...this.options.recording,
      dir: this.settings.dir,
      id: newRecordingId(this.now()),
      clock,
      logger,
      wallClock: this.now,
      onClosed: (closed, bytes) => this.recordingClosed(closed, bytes),
    });
    this.inProgress.add(recording);
    return recording;
  }

  /** Recordings in progress (created and not closed yet). */
  get activeCount(): number {
    return this.inProgress.size;
  }

  /** Deletes the oldest finished recordings beyond the age and size limits; one log line per pass that deleted any. */
  enforceRetention(): Promise<RetentionReport> {
    this.enforcing ??= this.retentionPass().finally(() => (this.enforcing = undefined));
    return this.enforcing;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.timer = undefined;
    let wait: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all([...this.inProgress].map((recording) => recording.close())),
      new Promise((resolve) => (wait = setTimeout(resolve, CLOSE_WAIT_MS))),
    ]);
    clearTimeout(wait);
    await this.enforcing;
  }

  private recordingClosed(recording: CallRecording, bytes: number): void {
    this.inProgress.delete(recording);
    if (bytes === 0) return;
    this.finished.set(recording.id, { bytes, modifiedAt: this.now() });
    if (!this.closed && this.totalBytes() > this.settings.maxBytes) void this.enforceRetention();
  }

  private async retentionPass(): Promise<RetentionReport> {
    const now = this.now();
    const maxAgeMs = this.settings.maxAgeDays * DAY_MS;
    let total = this.totalBytes();
    let deleted = 0;
    let freedBytes = 0;
    const problems = new Set<string>();
    for (const [id, recording] of [...this.finished]) {
      const tooOld = now - recording.modifiedAt > maxAgeMs;
      if (!tooOld && total <= this.settings.maxBytes) continue;
      this.finished.delete(id);
      for (const suffix of ['.wav', '.json', '.json.tmp']) {
        await unlink(join(this.settings.dir, `${id}${suffix}`)).catch((error: NodeJS.ErrnoException) => {
          if (error.code !== 'ENOENT') problems.add(error.code ?? error.message);
        });
      }
      total -= recording.bytes;
      freedBytes += recording.bytes;
      deleted++;
    }
    if (deleted > 0) {
      this.log.info(
        { deleted, freedBytes, remainingBytes: total, maxBytes: this.settings.maxBytes, maxAgeDays: this.settings.maxAgeDays, ...(problems.size > 0 ? { problems: [...problems] } : {}) },
        'recording retention: deleted the oldest recordings',
      );
    }
    const overLimit = total > this.settings.maxBytes;
    if (overLimit && !this.overLimitWarned) {
      this.log.warn({ bytes: total, maxBytes: this.settings.maxBytes, inProgress: this.inProgress.size }, 'recordings in progress alone exceed RECORDINGS_MAX_BYTES');
    }
    this.overLimitWarned = overLimit;
    return { deleted, freedBytes, remainingBytes: total };
  }

  /** Indexes the recordings already in the directory; leftovers of an interrupted sidecar write are removed. */
  private async index(): Promise<void> {
    const found = new Map<string, FinishedRecording>();
    for (const name of (await readdir(this.settings.dir)).sort()) {
      const match = RECORDING_FILE.exec(name);
      if (match === null) continue;
      const id = match[1] as string;
      const path = join(this.settings.dir, name);
      const stats = await lstat(path).catch(() => undefined);
      if (stats === undefined || !stats.isFile()) continue;
      if (match[2] === 'json.tmp') {
        await unlink(path).catch(() => undefined);
        continue;
      }
      const entry = found.get(id) ?? { bytes: 0, modifiedAt: 0 };
      entry.bytes += stats.size;
      entry.modifiedAt = Math.max(entry.modifiedAt, stats.mtimeMs);
      found.set(id, entry);
    }
    // Oldest first: least recently written (as recordings that finish later join the end).
    for (const [id, entry] of [...found].sort(([, a], [, b]) => a.modifiedAt - b.modifiedAt)) this.finished.set(id, entry);
  }

  private finishedBytes(): number {
    let bytes = 0;
    for (const recording of this.finished.values()) bytes += recording.bytes;
    return bytes;
  }

  private totalBytes(): number {
    let bytes = this.finishedBytes();
    for (const recording of this.inProgress) bytes += recording.bytesOnDisk;
    return bytes;
  }
}
