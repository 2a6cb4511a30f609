import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import type { CallClock, CallTimer } from '@stsgate/core';

// Helpers of the recording tests: a strict reader of the recorder's WAV, the published sidecar schema, a hand-driven clock.

export interface StereoWav {
  readonly left: Int16Array;
  readonly right: Int16Array;
  readonly dataBytes: number;
}

/** Parses a 16-bit PCM 8 kHz stereo WAV exactly as the recorder writes it; throws on anything else or on sizes that disagree. */
export function parseStereoWav(bytes: Buffer): StereoWav {
  const fail = (why: string): never => {
    throw new Error(`not the recorder's WAV: ${why}`);
  };
  if (bytes.length < 44) fail(`${bytes.length} bytes`);
  if (bytes.toString('latin1', 0, 4) !== 'RIFF' || bytes.toString('latin1', 8, 12) !== 'WAVE') fail('no RIFF/WAVE');
  if (bytes.toString('latin1', 12, 16) !== 'fmt ' || bytes.readUInt32LE(16) !== 16) fail('fmt chunk');
  if (bytes.readUInt16LE(20) !== 1 || bytes.readUInt16LE(22) !== 2 || bytes.readUInt32LE(24) !== 8000) fail('format');
  if (bytes.readUInt32LE(28) !== 32000 || bytes.readUInt16LE(32) !== 4 || bytes.readUInt16LE(34) !== 16) fail('block layout');
  if (bytes.toString('latin1', 36, 40) !== 'data') fail('data chunk');
  const dataBytes = bytes.readUInt32LE(40);
  if (bytes.readUInt32LE(4) !== 36 + dataBytes) fail(`RIFF size ${bytes.readUInt32LE(4)} for ${dataBytes} data bytes`);
  if (44 + dataBytes !== bytes.length) fail(`data size ${dataBytes} in a ${bytes.length}-byte file`);
  if (dataBytes % 4 !== 0) fail('partial sample frame');
  const frames = dataBytes / 4;
  const left = new Int16Array(frames);
  const right = new Int16Array(frames);
  for (let i = 0; i < frames; i++) {
    left[i] = bytes.readInt16LE(44 + i * 4);
    right[i] = bytes.readInt16LE(46 + i * 4);
  }
  return { left, right, dataBytes };
}

export const SIDECAR_SCHEMA_PATH = fileURLToPath(new URL('../../../docs/schemas/recording-sidecar.schema.json', import.meta.url));

/** The published sidecar schema, compiled (draft 2020-12, strict, date-time checked). */
export function sidecarValidator(): ValidateFunction {
  const ajv = new Ajv2020({ allErrors: true, strict: true });
  ajv.addFormat('date-time', { type: 'string', validate: (value: string) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/.test(value) && !Number.isNaN(Date.parse(value)) });
  return ajv.compile(JSON.parse(readFileSync(SIDECAR_SCHEMA_PATH, 'utf8')) as object);
}

/** A call clock moved by hand: `advance` runs the timers that come due, in order. */
export class ManualClock implements CallClock {
  private time = 1000;
  private nextId = 0;
  private readonly timers = new Map<number, { due: number; every: number | undefined; callback: () => void }>();

  now(): number {
    return this.time;
  }

  setTimeout(callback: () => void, ms: number): CallTimer {
    return this.add(callback, ms, undefined);
  }

  setInterval(callback: () => void, ms: number): CallTimer {
    return this.add(callback, ms, ms);
  }

  get pendingTimers(): number {
    return this.timers.size;
  }

  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      let next: [number, { due: number; every: number | undefined; callback: () => void }] | undefined;
      for (const entry of this.timers) if (entry[1].due <= end && (next === undefined || entry[1].due < next[1].due)) next = entry;
      if (next === undefined) break;
      const [id, timer] = next;
      this.time = Math.max(this.time, timer.due);
      if (timer.every === undefined) this.timers.delete(id);
      else timer.due += timer.every;
      timer.callback();
    }
    this.time = end;
  }

  private add(callback: () => void, ms: number, every: number | undefined): CallTimer {
    const id = this.nextId++;
    this.timers.set(id, { due: this.time + ms, every, callback });
    return { clear: () => void this.timers.delete(id) };
  }
}
