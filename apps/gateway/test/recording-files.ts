import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';

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

