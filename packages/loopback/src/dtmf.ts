/** DTMF (ITU-T Q.23) keypad frequencies: each key is one low (row) and one high (column) tone. */
const ROWS = [697, 770, 852, 941] as const;
const COLUMNS = [1209, 1336, 1477, 1633] as const;
const KEYPAD = ['123A', '456B', '789C', '*0#D'] as const;

export interface DtmfFrequencies {
  readonly low: number;
  readonly high: number;
}

/** The row/column frequencies of a keypad digit (0-9, *, #, A-D; case-insensitive), or undefined. */
export function dtmfFrequencies(digit: string): DtmfFrequencies | undefined {
  if (digit.length !== 1) return undefined;
  const key = digit.toUpperCase();
  for (let row = 0; row < KEYPAD.length; row++) {
    const column = (KEYPAD[row] as string).indexOf(key);
    if (column >= 0) return { low: ROWS[row] as number, high: COLUMNS[column] as number };
  }
  return undefined;
}

export interface DtmfToneOptions {
  readonly sampleRate?: number;
  readonly durationMs?: number;
  /** Silence after the tone, so repeated digits stay distinct. */
  readonly gapMs?: number;
  /** Peak amplitude of each of the two sines, as a fraction of full scale. */
  readonly amplitude?: number;
}

/** A dual-tone burst for `digit` (default 200 ms at 8 kHz, -12 dBFS per tone, 5 ms ramps, 60 ms gap). */
export function dtmfTone(digit: string, options: DtmfToneOptions = {}): Int16Array {
  const frequencies = dtmfFrequencies(digit);
  if (frequencies === undefined) throw new RangeError(`not a DTMF digit: ${JSON.stringify(digit)}`);
  const { sampleRate = 8000, durationMs = 200, gapMs = 60, amplitude = 0.25 } = options;
  const toneSamples = Math.round((durationMs * sampleRate) / 1000);
  const out = new Int16Array(toneSamples + Math.round((gapMs * sampleRate) / 1000));
  const ramp = Math.min(Math.round(0.005 * sampleRate), Math.floor(toneSamples / 2));
  const wLow = (2 * Math.PI * frequencies.low) / sampleRate;
  const wHigh = (2 * Math.PI * frequencies.high) / sampleRate;
  const scale = amplitude * 32767;
  for (let i = 0; i < toneSamples; i++) {
    const edge = Math.min(i, toneSamples - 1 - i);
    const envelope = edge < ramp ? 0.5 - 0.5 * Math.cos((Math.PI * edge) / ramp) : 1;
    out[i] = Math.round(scale * envelope * (Math.sin(wLow * i) + Math.sin(wHigh * i)));
  }
  return out;
}
