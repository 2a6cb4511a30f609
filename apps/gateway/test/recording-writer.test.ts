import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import { ConfigError } from '@stsgate/core';
import { memoryLogger } from '@stsgate/testkit';
import { loadGatewayConfig } from '../src/config.js';
import { CallRecording, CallRecordings, StereoTimeline, newRecordingId, RECORDING_ID_PATTERN, type RecordingSidecar } from '../src/recording/index.js';
import { ManualClock } from '@stsgate/testkit';
import { parseStereoWav, sidecarValidator } from './recording-files.js';

// The recording writer on its own: placement on the call clock, incremental WAV + sidecar, failures, hostile input, retention.
const scratch: string[] = [];
afterEach(() => {
  for (const dir of scratch.splice(0)) rmSync(dir, { recursive: true, force: true });
});
function scratchDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'recording-unit-'));
  scratch.push(dir);
  return dir;
}

const silent = pino({ level: 'silent' });
const frame = (value: number, length = 160) => new Int16Array(length).fill(value);
const left = (stereo: Int16Array) => stereo.filter((_, i) => i % 2 === 0);
const right = (stereo: Int16Array) => stereo.filter((_, i) => i % 2 === 1);
/** [value, first position, length] runs of a channel. */
function runs(samples: Int16Array): [number, number, number][] {
  const out: [number, number, number][] = [];
  for (let i = 0; i < samples.length; i++) {
    const last = out.at(-1);
    if (last !== undefined && last[0] === samples[i]) last[2]++;
    else out.push([samples[i] as number, i, 1]);
  }
  return out;
}

describe('StereoTimeline: placing audio on the call clock', () => {
  it('joins caller audio that arrives with jitter; a burst after a stall stays joined; a real pause becomes silence', () => {
    const timeline = new StereoTimeline({ callerJitterMs: 200, maxPendingMs: 30_000 });
    timeline.caller(frame(1), 0);
    timeline.caller(frame(2), 160 + 40); // 5 ms late
    timeline.caller(frame(3), 320 - 16); // 2 ms early
    // A 300 ms stall: the next 15 frames arrive at once, late; they were contiguous and stay so.
    for (let i = 0; i < 15; i++) timeline.caller(frame(4 + i), 480 + 2400);
    // AVR Core paused for a second: the frames after it arrive at real-time pace, 1 s later than the stream's end.
    const resumeAt = 480 + 2400 + 8000;
    for (let i = 0; i < 5; i++) timeline.caller(frame(50 + i), resumeAt + i * 160);
    const stereo = timeline.take(resumeAt + 5 * 160, true) as Int16Array;
    const caller = runs(left(stereo));
    expect(caller.slice(0, 18).map(([value, at]) => [value, at])).toEqual(Array.from({ length: 18 }, (_, i) => [i + 1, i * 160]));
    expect(caller[18]).toEqual([0, 18 * 160, 8000]);
    expect(caller.slice(19).map(([value, at, length]) => [value, at, length])).toEqual(Array.from({ length: 5 }, (_, i) => [50 + i, resumeAt + i * 160, 160]));
    expect(timeline.droppedSamples).toBe(0);
  });

  it('a caller stream that stops while late does not hold the rest of the audio back', () => {
    const timeline = new StereoTimeline({ callerJitterMs: 200, maxPendingMs: 2000 });
    timeline.caller(frame(1), 0);
    timeline.caller(frame(2), 160 + 2000); // 250 ms late (a pause?), and no caller audio follows to settle it
    let handedOut = 0;
    for (let step = 0; step < 10; step++) {
      for (let pos = step * 4000; pos < (step + 1) * 4000; pos += 160) timeline.agent(frame(3), pos);
      handedOut += (timeline.take((step + 1) * 4000 - 2000)?.length ?? 0) / 2;
    }
    expect(handedOut).toBe(38_000);
    expect(timeline.droppedSamples).toBe(0);
  });

  it('places agent frames half a tick after they can start on an idle player, queued frames back to back, and cuts at an interruption', () => {
    const timeline = new StereoTimeline({ callerJitterMs: 200, maxPendingMs: 30_000 });
    timeline.agent(frame(1), 1000); // idle: plays within the next 20 ms tick
    timeline.agent(frame(2), 1160); // queued behind it
    timeline.agent(frame(3), 1320);
    timeline.cutAgent(1300); // interruption: nothing after 1300 plays
    timeline.agent(frame(4), 1400); // the next reply, on an idle player again
    const agent = runs(right(timeline.take(2000) as Int16Array));
    expect(agent).toEqual([
      [0, 0, 1080],
      [1, 1080, 160],
      [2, 1240, 60],
      [0, 1300, 180],
      [4, 1480, 160],
      [0, 1640, 360],
    ]);
  });

  it('hands out interleaved stereo once, silence where nothing was written, and keeps later audio for the next take', () => {
    const timeline = new StereoTimeline({ callerJitterMs: 200, maxPendingMs: 30_000 });
    timeline.caller(frame(7), 100);
    timeline.agent(frame(9), 300); // lands at 380 (half a tick later)
    const first = timeline.take(200) as Int16Array;
    expect(first.length).toBe(400);
    expect(runs(left(first))).toEqual([
      [0, 0, 100],
      [7, 100, 100],
    ]);
    expect(right(first).every((v) => v === 0)).toBe(true);
    expect(timeline.take(200)).toBeUndefined();
    const second = timeline.take(600) as Int16Array;
    expect(runs(left(second))).toEqual([
      [7, 0, 60],
      [0, 60, 340],
    ]);
    expect(runs(right(second))).toEqual([
      [0, 0, 180],
      [9, 180, 160],
      [0, 340, 60],
    ]);
    expect(timeline.committedSamples).toBe(600);
  });
});

describe('CallRecording: the files', () => {
  it('is a valid WAV after every flush (header patched) with the sidecar beside it, and final at the end', async () => {
    const dir = scratchDir();
    const clock = new ManualClock(1000);
    const validate = sidecarValidator();
    const recording = new CallRecording({ dir, id: newRecordingId(), clock, logger: silent, flushIntervalMs: 500 });
    const startedAt = clock.now();
    recording.start({ callId: 'call-1', providerId: 'loopback', metadata: { from: '2000', to: '5001' } }, startedAt);
    for (let i = 0; i < 100; i++) {
      recording.callerAudio(frame(i + 1), clock.now());
      if (i >= 50) recording.agentAudio(frame(-(i + 1)), clock.now());
      if (i === 60) recording.controlSent({ type: 'transcript', role: 'user', text: 'Hello.' }, clock.now());
      clock.advance(20);
      await recording.whenWritten();
      if (i === 74) {
        // Mid-call (1.5 s in): the file holds what is older than the jitter allowance, and says so in its header.
        const partial = parseStereoWav(readFileSync(recording.wavPath));
        expect(partial.left.length).toBeGreaterThanOrEqual(8000 - 250 * 8);
        expect(partial.left.length).toBeLessThanOrEqual(12_000 - 250 * 8);
        expect(Array.from(partial.left.subarray(0, 160 * 3)).filter((_, k) => k % 160 === 0)).toEqual([1, 2, 3]);
        const sidecar = JSON.parse(readFileSync(recording.sidecarPath, 'utf8')) as RecordingSidecar;
        expect(validate(sidecar), JSON.stringify(validate.errors)).toBe(true);
        expect(sidecar).toMatchObject({ complete: false, endedAt: null, outcome: null, callId: 'call-1', transcripts: [{ role: 'user', text: 'Hello.', atMs: 1200 }] });
      }
    }
    recording.end('completed', clock.now());
    await recording.close();
    const wav = parseStereoWav(readFileSync(recording.wavPath));
    expect(wav.left.length).toBe(16_000);
    for (let i = 0; i < 100; i++) expect(wav.left[i * 160 + 159]).toBe(i + 1);
    // Agent frames sent to an idle player start half a tick later, then back to back.
    expect(wav.right[50 * 160 + 79]).toBe(0);
    expect(wav.right[50 * 160 + 80]).toBe(-51);
    const sidecar = JSON.parse(readFileSync(recording.sidecarPath, 'utf8')) as RecordingSidecar;
    expect(validate(sidecar), JSON.stringify(validate.errors)).toBe(true);
    expect(sidecar).toMatchObject({ complete: true, outcome: 'completed', failure: null, audio: { durationMs: 2000, file: `${recording.id}.wav` } });
    expect(readdirSync(dir).sort()).toEqual([`${recording.id}.json`, `${recording.id}.wav`]);
    expect(clock.pendingTimers).toBe(0);
    await recording.close(); // idempotent
  });

  it('a full disk (ENOSPC) ends the recording, never the call: one log line, nothing thrown, the sidecar says why', async () => {
    const dir = scratchDir();
    const clock = new ManualClock(1000);
    const { logger, lines } = memoryLogger('debug');
    const recording = new CallRecording({ dir, id: newRecordingId(), clock, logger, flushIntervalMs: 100, openAudioFile: () => open('/dev/full', 'w') });
    recording.start({ callId: 'full-disk', providerId: 'p', metadata: {} }, clock.now());
    for (let i = 0; i < 150; i++) {
      expect(() => recording.callerAudio(frame(1), clock.now())).not.toThrow();
      expect(() => recording.agentAudio(frame(2), clock.now())).not.toThrow();
      clock.advance(20);
      await recording.whenWritten();
    }
    expect(recording.active).toBe(false);
    recording.end('completed', clock.now());
    await recording.close();
    const failures = lines.filter((line) => line.msg.startsWith('recording failed'));
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatchObject({ code: 'ENOSPC' });
    const sidecar = JSON.parse(readFileSync(recording.sidecarPath, 'utf8')) as RecordingSidecar;
    expect(sidecar.failure).toBe('ENOSPC');
    expect(clock.pendingTimers).toBe(0);
  });

  it('a recordings directory removed during the call: one log line, the call goes on', async () => {
    const root = scratchDir();
    const dir = join(root, 'recordings');
    mkdirSync(dir);
    const clock = new ManualClock(1000);
    const { logger, lines } = memoryLogger('debug');
    const recording = new CallRecording({ dir, id: newRecordingId(), clock, logger, flushIntervalMs: 100 });
    recording.start({ callId: 'gone', providerId: 'p', metadata: {} }, clock.now());
    await recording.whenWritten();
    rmSync(dir, { recursive: true, force: true });
    for (let i = 0; i < 100; i++) {
      recording.callerAudio(frame(1), clock.now());
      recording.controlSent({ type: 'transcript', role: 'agent', text: 'still talking' }, clock.now());
      clock.advance(20);
      await recording.whenWritten();
    }
    recording.end('completed', clock.now());
    await recording.close();
    expect(lines.filter((line) => line.msg.startsWith('recording failed'))).toHaveLength(1);
    expect(readdirSync(root)).toEqual([]);
  });

  it('client input never reaches a file name: a 10 kB uuid with NUL bytes and ../, hostile metadata, all bounded inside the JSON', async () => {
    const root = scratchDir();
    const dir = join(root, 'recordings');
    mkdirSync(dir);
    const clock = new ManualClock(1000);
    const id = newRecordingId();
    expect(id).toMatch(RECORDING_ID_PATTERN);
    const hostileId = `../../etc/x\u0000${'/..\u0000'.repeat(2500)}`;
    const metadata: Record<string, string> = {};
    Object.defineProperty(metadata, '__proto__', { value: 'polluted', enumerable: true });
    metadata['../../etc/passwd\u0000'] = '\u0000'.repeat(5000);
    for (let i = 0; i < 100; i++) metadata[`k${i}`] = `../v${i}`;
    const recording = new CallRecording({ dir, id, clock, logger: silent });
    recording.start({ callId: hostileId, providerId: 'p', metadata }, clock.now());
    recording.callerAudio(frame(3), clock.now());
    clock.advance(500);
    recording.end('completed', clock.now());
    await recording.close();
    expect(readdirSync(root)).toEqual(['recordings']);
    expect(readdirSync(dir).sort()).toEqual([`${id}.json`, `${id}.wav`]);
    parseStereoWav(readFileSync(join(dir, `${id}.wav`)));
    const sidecar = JSON.parse(readFileSync(join(dir, `${id}.json`), 'utf8')) as RecordingSidecar;
    const validate = sidecarValidator();
    expect(validate(sidecar), JSON.stringify(validate.errors)).toBe(true);
    expect(sidecar.callId).toBe(hostileId.slice(0, 256));
    expect(sidecar.callIdTruncated).toBe(true);
    expect(Object.keys(sidecar.metadata)).toHaveLength(64);
    expect(sidecar.metadataTruncated).toBe(true);
    expect(Object.hasOwn(sidecar.metadata, '__proto__')).toBe(true);
    expect(sidecar.metadata['../../etc/passwd\u0000']).toBe('\u0000'.repeat(1024));
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
  });
});

describe('CallRecordings: the directory and retention', () => {
  /** A finished recording of `bytes` (WAV + sidecar) last written `daysAgo` days ago. */
  function plant(dir: string, id: string, bytes: number, daysAgo: number): void {
    writeFileSync(join(dir, `${id}.wav`), Buffer.alloc(bytes - 100));
    writeFileSync(join(dir, `${id}.json`), Buffer.alloc(100));
    const at = new Date(Date.now() - daysAgo * 86_400_000);
    utimesSync(join(dir, `${id}.wav`), at, at);
    utimesSync(join(dir, `${id}.json`), at, at);
  }

  it('deletes the oldest recordings beyond the size limit and those past the age limit, one log line per pass; other files stay', async () => {
    const dir = scratchDir();
    const ids = ['20260101T000000Z-0000000000000001', '20260102T000000Z-0000000000000002', '20260103T000000Z-0000000000000003', '20260104T000000Z-0000000000000004', '20260105T000000Z-0000000000000005'];
    plant(dir, ids[0]!, 10_000, 40); // past the age limit
    plant(dir, ids[1]!, 10_000, 5);
    plant(dir, ids[2]!, 10_000, 4);
    plant(dir, ids[3]!, 10_000, 3);
    plant(dir, ids[4]!, 10_000, 2);
    writeFileSync(join(dir, `${ids[4]}.json.tmp`), 'left by a crash');
    writeFileSync(join(dir, 'notes.txt'), 'not a recording');
    writeFileSync(join(dir, 'x.wav'), 'not a recording either');
    const { logger, lines } = memoryLogger('debug');
    const recordings = await CallRecordings.open({ dir, maxBytes: 25_000, maxAgeDays: 30 }, { logger });
    try {
      expect(readdirSync(dir).sort()).toEqual([`${ids[3]}.json`, `${ids[3]}.wav`, `${ids[4]}.json`, `${ids[4]}.wav`, 'notes.txt', 'x.wav']);
      const passes = lines.filter((line) => line.msg.startsWith('recording retention'));
      expect(passes).toHaveLength(1);
      expect(passes[0]).toMatchObject({ deleted: 3, freedBytes: 30_000, remainingBytes: 20_000 });

      // A call recorded now takes the total over the limit when it ends: the oldest goes, the new one stays.
      const clock = new ManualClock(1000);
      const recording = recordings.createRecorder(clock, logger);
      recording.start({ callId: 'new', providerId: 'p', metadata: {} }, clock.now());
      for (let i = 0; i < 10; i++) {
        recording.callerAudio(frame(1), clock.now());
        clock.advance(20);
      }
      expect(recordings.activeCount).toBe(1);
      recording.end('completed', clock.now());
      await recording.close();
      await recordings.enforceRetention();
      expect(recordings.activeCount).toBe(0);
      expect(existsSync(recording.wavPath)).toBe(true);
      expect(existsSync(join(dir, `${ids[3]}.wav`))).toBe(false);
      expect(existsSync(join(dir, `${ids[4]}.wav`))).toBe(true);
      expect(existsSync(join(dir, 'notes.txt'))).toBe(true);
    } finally {
      await recordings.close();
    }
  });

  it('a RECORDINGS_DIR that cannot be used stops the start with a configuration error', async () => {
    const dir = scratchDir();
    writeFileSync(join(dir, 'a-file'), '');
    await expect(CallRecordings.open({ dir: join(dir, 'a-file', 'recordings'), maxBytes: 1 << 30, maxAgeDays: 1 }, { logger: silent })).rejects.toThrow(ConfigError);
    // Where nothing can be created (Node's own recursive mkdir never returns there): an error, not a hang.
    if (process.platform === 'linux') {
      await expect(CallRecordings.open({ dir: '/proc/stsgate-no-such-dir/recordings', maxBytes: 1 << 30, maxAgeDays: 1 }, { logger: silent })).rejects.toThrow(
        /RECORDINGS_DIR="\/proc\/stsgate-no-such-dir\/recordings" cannot be written to/,
      );
    }
    // Missing parents are created, mode 0700.
    const nested = join(dir, 'a', 'b', 'recordings');
    await (await CallRecordings.open({ dir: nested, maxBytes: 1 << 30, maxAgeDays: 1 }, { logger: silent })).close();
    expect(statSync(join(dir, 'a')).mode & 0o777).toBe(0o700);
    expect(statSync(nested).mode & 0o777).toBe(0o700);
  });

  it('is configured from RECORDINGS_DIR (unset: nothing recorded), RECORDINGS_MAX_BYTES and RECORDINGS_MAX_AGE_DAYS', () => {
    expect(loadGatewayConfig({}).recordings).toBeUndefined();
    expect(loadGatewayConfig({ RECORDINGS_DIR: '' }).recordings).toBeUndefined();
    expect(loadGatewayConfig({ RECORDINGS_DIR: '/var/rec' }).recordings).toEqual({ dir: '/var/rec', maxBytes: 10 * 1024 ** 3, maxAgeDays: 30 });
    expect(loadGatewayConfig({ RECORDINGS_DIR: 'rec', RECORDINGS_MAX_BYTES: '500M', RECORDINGS_MAX_AGE_DAYS: '7' }).recordings).toEqual({
      dir: join(process.cwd(), 'rec'),
      maxBytes: 500 * 1024 ** 2,
      maxAgeDays: 7,
    });
    expect(loadGatewayConfig({ RECORDINGS_DIR: '/r', RECORDINGS_MAX_BYTES: '2GiB' }).recordings?.maxBytes).toBe(2 * 1024 ** 3);
    expect(() => loadGatewayConfig({ RECORDINGS_MAX_BYTES: '10X', RECORDINGS_MAX_AGE_DAYS: '0' })).toThrow(
      /RECORDINGS_MAX_BYTES="10X" is not a size[\s\S]*RECORDINGS_MAX_AGE_DAYS="0" is not a number of days/,
    );
  });
});
