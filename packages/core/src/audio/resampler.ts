import { SAMPLE_RATES } from '../contracts/common.js';
import type { SampleRate } from '../contracts/common.js';
import { RESAMPLER_KERNEL_WASM } from './wasm/resampler-kernel.js';

/**
 * Streaming, stateful, anti-aliased sample-rate converter between the telephony/provider rates
 * (8, 16, 24 and 48 kHz). One instance per direction per call.
 */
export interface Resampler {
  readonly inputRate: SampleRate;
  readonly outputRate: SampleRate;
  /**
   * Feeds any number of samples and returns the output samples that are complete (possibly none).
   * Chunking never changes the result: the concatenated outputs equal those of one call with everything.
   */
  process(input: Int16Array): Int16Array;
  /**
   * Drains the filter tail at end of stream (the input is treated as followed by silence), so that the
   * stream's total output is `ceil(totalInput * outputRate / inputRate)` samples. Afterwards the
   * instance is reset and can start a new stream.
   */
  flush(): Int16Array;
  /** Forgets history and pending input (e.g. a new utterance after an interruption). */
  reset(): void;
}

/**
 * Filter design. Passband up to 0.875 x the lower Nyquist frequency (3.5 kHz when 8 kHz is involved),
 * stopband from the lower Nyquist frequency on (so nothing above the new Nyquist can alias, and upsampling
 * images start there), Kaiser-windowed sinc designed for 100 dB. A Kaiser design has the same ripple in
 * both bands, so the passband is flat to about 0.0001 dB. 100 dB is below what Int16 output can show (a
 * full-scale tone's quantisation noise is 98 dB down, G.711's about 38 dB); the 120 dB design used before
 * cost 15-17% more taps and 1.4 ms more delay per conversion for nothing audible (see bench/resampler.mjs).
 * Group delay (compensated, so it is latency): 6.5 ms when 8 kHz is involved, 2.2 to 3.3 ms between 16, 24
 * and 48 kHz.
 */
const PASSBAND_FRACTION = 0.875;
const DESIGN_ATTENUATION_DB = 100;
/**
 * Per-phase tap counts are padded to a multiple of this (zero taps, oldest end): the kernel's inner loop takes 16
 * taps at a time (four f32x4 accumulators).
 */
const TAP_BLOCK = 16;

/** Immutable polyphase coefficient tables for one (inputRate, outputRate) pair. */
interface FilterBank {
  /** Interpolation factor L. */
  readonly up: number;
  /** Decimation factor M. */
  readonly down: number;
  /** Taps per phase K (multiple of TAP_BLOCK). */
  readonly taps: number;
  /**
   * L phases of K taps, phase-major. Phase p holds prototype taps h[p + jL] in reverse order (oldest input
   * first), so each output is a forward dot product over K consecutive input samples. Designed in float64,
   * stored as float32 for the kernel: that moves the worst stopband level by at most 0.15 dB (of 100).
   */
  readonly coeffs: Float32Array;
  /** Phase and newest-input index of output 0 (the prototype's group delay is compensated). */
  readonly startPhase: number;
  readonly startIndex: number;
  /** Per phase p, two entries: the phase of the next output, and how many input samples it advances. */
  readonly steps: Int32Array;
}

function gcd(a: number, b: number): number {
  while (b !== 0) {
    const t = a % b;
    a = b;
    b = t;
  }
  return a;
}

/** Modified Bessel function of the first kind, order 0 (power series; converges fast for beta < 20). */
function besselI0(x: number): number {
  const q = (x * x) / 4;
  let sum = 1;
  let term = 1;
  for (let k = 1; k < 64; k++) {
    term *= q / (k * k);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return sum;
}

function designFilterBank(inputRate: number, outputRate: number): FilterBank {
  const g = gcd(inputRate, outputRate);
  const up = outputRate / g;
  const down = inputRate / g;
  const upRate = inputRate * up;
  const nyquist = Math.min(inputRate, outputRate) / 2;
  const passEdge = PASSBAND_FRACTION * nyquist;
  const stopEdge = nyquist;

  // Kaiser's estimates for beta and length.
  const atten = DESIGN_ATTENUATION_DB;
  const beta = 0.1102 * (atten - 8.7);
  const transition = (2 * Math.PI * (stopEdge - passEdge)) / upRate;
  const minLength = Math.ceil((atten - 7.95) / (2.285 * transition)) + 1;
  // Odd length (integer group delay D), with D a multiple of L so that output 0 is phase 0.
  const delay = Math.ceil((minLength - 1) / 2 / up) * up;
  const length = 2 * delay + 1;

  const cutoff = (passEdge + stopEdge) / 2 / upRate; // cycles per (upsampled) sample
  const proto = new Float64Array(length);
  const i0Beta = besselI0(beta);
  let sum = 0;
  for (let k = 0; k < length; k++) {
    const m = k - delay;
    const r = m / delay;
    const window = besselI0(beta * Math.sqrt(Math.max(0, 1 - r * r))) / i0Beta;
    const x = 2 * Math.PI * cutoff * m;
    const sinc = m === 0 ? 2 * cutoff : Math.sin(x) / (Math.PI * m);
    proto[k] = sinc * window;
    sum += proto[k] as number;
  }
  // DC gain L in the upsampled domain, i.e. unity gain through the converter.
  const scale = up / sum;

  const taps = Math.ceil(Math.ceil(length / up) / TAP_BLOCK) * TAP_BLOCK;
  const coeffs = new Float32Array(up * taps);
  for (let p = 0; p < up; p++) {
    for (let j = 0; j < taps; j++) {
      const k = p + j * up;
      if (k < length) coeffs[p * taps + (taps - 1 - j)] = (proto[k] as number) * scale;
    }
  }

  const steps = new Int32Array(2 * up);
  for (let p = 0; p < up; p++) {
    steps[2 * p] = (p + down) % up;
    steps[2 * p + 1] = Math.floor((p + down) / up);
  }

  return { up, down, taps, coeffs, startPhase: delay % up, startIndex: Math.floor(delay / up), steps };
}

/** Immutable coefficient tables, computed once per rate pair and shared by all instances. */
const FILTER_BANKS = new Map<number, FilterBank>();

function filterBankFor(inputRate: number, outputRate: number): FilterBank {
  const key = inputRate * 1_000_000 + outputRate;
  let bank = FILTER_BANKS.get(key);
  if (bank === undefined) {
    bank = designFilterBank(inputRate, outputRate);
    FILTER_BANKS.set(key, bank);
  }
  return bank;
}

/** The kernel's exports (see wasm/resampler-kernel.wat). */
interface KernelExports {
  readonly memory: { readonly buffer: ArrayBuffer };
  /** Writes `count` Int16 outputs at byte offset `out`; the other arguments are byte offsets and filter state. */
  readonly filter: (
    coeffs: number,
    taps: number,
    steps: number,
    buf: number,
    out: number,
    count: number,
    newest: number,
    phase: number,
  ) => void;
}

/**
 * The part of the WebAssembly API used here, reached through `globalThis`: core's TypeScript libraries (ES +
 * Node types) do not declare it, and declaring it globally would clash with the DOM library's in the playground.
 */
interface WebAssemblyApi {
  readonly Module: new (bytes: Uint8Array) => object;
  readonly Instance: new (module: object) => { readonly exports: unknown };
}

/** The compiled kernel, shared by all instances (a Module is immutable; each instance has its own memory). */
let kernel: object | undefined;

/**
 * One kernel instance with its own 64 KiB memory. A module this small compiles synchronously everywhere, AudioWorklets
 * too; a page with a Content-Security-Policy must allow it with 'wasm-unsafe-eval' in script-src.
 */
function instantiateKernel(): KernelExports {
  const wasm = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly;
  kernel ??= new wasm.Module(RESAMPLER_KERNEL_WASM);
  return new wasm.Instance(kernel).exports as KernelExports;
}

/** Bytes of the instance's memory (one page; the kernel's memory cannot grow, so views of it stay valid). */
const MEMORY_BYTES = 65536;
/** Output samples per kernel call (Int16). */
const OUT_CAPACITY = 4096;

const align16 = (bytes: number): number => Math.ceil(bytes / 16) * 16;

/**
 * The FIR's dot products run in WebAssembly with 128-bit SIMD (f32x4), about 6x faster than scalar float64 JS
 * (f64x2 is about 1.7x slower than f32x4). float32's 24-bit mantissa keeps the arithmetic's rounding far below
 * the Int16 output's (outputs differ from a float64 computation by at most 1 LSB, rarely). Each instance has its
 * own kernel instance and memory, released by the garbage collector with it. V8 reserves about 10 GiB of address
 * space per WebAssembly memory, so one process can hold about 13,000 resamplers at once (6,500 calls).
 */
class PolyphaseResampler implements Resampler {
  readonly inputRate: SampleRate;
  readonly outputRate: SampleRate;
  private readonly bank: FilterBank;
  private readonly filter: KernelExports['filter'];
  /** Byte offsets in the kernel's memory: coefficients at 0, then phase steps, outputs, input buffer. */
  private readonly stepsAt: number;
  private readonly outAt: number;
  private readonly bufAt: number;
  /** Kernel output (Int16) and input buffer (float32) in the kernel's memory. */
  private readonly out: Int16Array;
  /** Input history (K - 1 samples before `newest`'s window) followed by not yet consumed input. */
  private readonly buf: Float32Array;
  /**
   * Input samples appended per kernel call, so that a piece always fits (between calls the buffer holds at most
   * K - 1 samples of history plus the group delay's look-ahead) and yields at most OUT_CAPACITY outputs. Larger
   * chunks are processed in pieces.
   */
  private readonly piece: number;
  /** Valid samples in `buf`. */
  private len = 0;
  /** Index in `buf` of the newest input sample the next output depends on (may be >= len). */
  private newest = 0;
  /** Polyphase phase of the next output. */
  private phase = 0;
  /** Samples fed / produced since the last reset (for the flush length). */
  private consumed = 0;
  private produced = 0;

  constructor(inputRate: SampleRate, outputRate: SampleRate, bank: FilterBank) {
    this.inputRate = inputRate;
    this.outputRate = outputRate;
    this.bank = bank;
    const { up, down, taps, startIndex, coeffs, steps } = bank;
    const { memory, filter } = instantiateKernel();
    this.filter = filter;
    this.stepsAt = align16(coeffs.byteLength);
    this.outAt = this.stepsAt + align16(steps.byteLength);
    this.bufAt = this.outAt + OUT_CAPACITY * 2;
    new Float32Array(memory.buffer, 0, coeffs.length).set(coeffs);
    new Int32Array(memory.buffer, this.stepsAt, steps.length).set(steps);
    this.out = new Int16Array(memory.buffer, this.outAt, OUT_CAPACITY);
    this.buf = new Float32Array(memory.buffer, this.bufAt, (MEMORY_BYTES - this.bufAt) / 4);
    this.piece = Math.min(this.buf.length - (taps - 1 + startIndex), Math.floor((OUT_CAPACITY * down) / up));
    this.reset();
  }

  reset(): void {
    const { taps } = this.bank;
    // K - 1 zeros of history: the stream is preceded by silence.
    this.buf.fill(0, 0, taps - 1);
    this.len = taps - 1;
    this.newest = taps - 1 + this.bank.startIndex;
    this.phase = this.bank.startPhase;
    this.consumed = 0;
    this.produced = 0;
  }

  process(input: Int16Array): Int16Array {
    const n = input.length;
    const out = new Int16Array(this.outputsWith(n));
    let at = 0;
    for (let i = 0; i < n; i += this.piece) {
      const end = Math.min(n, i + this.piece);
      this.buf.set(i === 0 && end === n ? input : input.subarray(i, end), this.len);
      this.len += end - i;
      at = this.drain(out, at, this.outputsWith(0));
    }
    this.consumed += n;
    return out;
  }

  flush(): Int16Array {
    const { up, down } = this.bank;
    const total = Math.ceil((this.consumed * up) / down);
    const remaining = total - this.produced;
    let out: Int16Array;
    if (remaining > 0) {
      // Pad with silence up to the newest input sample the last output needs. Both fit: what is left is at most
      // the filter's look-ahead (its group delay), far less than the buffer and OUT_CAPACITY.
      const lastT = this.newest * up + this.phase + (remaining - 1) * down;
      const needed = Math.floor(lastT / up) + 1;
      if (needed > this.len) {
        this.buf.fill(0, this.len, needed);
        this.len = needed;
      }
      out = new Int16Array(remaining);
      this.drain(out, 0, remaining);
    } else {
      out = new Int16Array(0);
    }
    this.reset();
    return out;
  }

  /** Number of outputs whose newest input sample is buffered once `extra` more samples are. */
  private outputsWith(extra: number): number {
    const { up, down } = this.bank;
    const t0 = this.newest * up + this.phase;
    const lastT = (this.len + extra) * up - 1;
    return t0 > lastT ? 0 : Math.floor((lastT - t0) / down) + 1;
  }

  /**
   * Computes `count` outputs (all of whose inputs are buffered) into out[at..], then discards input no longer
   * needed. Returns the index after them.
   */
  private drain(out: Int16Array, at: number, count: number): number {
    if (count === 0) return at;
    const { up, down, taps } = this.bank;
    this.filter(0, taps, this.stepsAt, this.bufAt, this.outAt, count, this.newest, this.phase);
    out.set(this.out.subarray(0, count), at);
    this.produced += count;

    // Output n is at time newest * L + phase (in upsampled samples); each output advances it by M.
    const t = this.newest * up + this.phase + count * down;
    let newest = Math.floor(t / up);
    this.phase = t - newest * up;
    // Keep only the K - 1 samples of history the next output needs.
    let drop = newest - (taps - 1);
    if (drop > this.len) drop = this.len;
    if (drop > 0) {
      this.buf.copyWithin(0, drop, this.len);
      this.len -= drop;
      newest -= drop;
    }
    this.newest = newest;
    return at + count;
  }
}

/** Pass-through for equal rates: returns the caller's array itself, no copy. */
class IdentityResampler implements Resampler {
  readonly inputRate: SampleRate;
  readonly outputRate: SampleRate;

  constructor(rate: SampleRate) {
    this.inputRate = rate;
    this.outputRate = rate;
  }

  process(input: Int16Array): Int16Array {
    return input;
  }

  flush(): Int16Array {
    return new Int16Array(0);
  }

  reset(): void {}
}

function assertRate(rate: number, name: string): asserts rate is SampleRate {
  if (!(SAMPLE_RATES as readonly number[]).includes(rate)) {
    throw new RangeError(`${name} must be one of ${SAMPLE_RATES.join(', ')} Hz, got ${String(rate)}`);
  }
}

/**
 * Creates a streaming resampler. Equal rates give an identity that returns its input array unchanged
 * (no copy). Otherwise a windowed-sinc polyphase FIR with compensated group delay: output sample n is
 * aligned with input time n * inputRate / outputRate, and the output is rounded (half to even) and clamped to
 * int16. Each instance holds a 64 KiB WebAssembly memory (no close(): the garbage collector releases it).
 */
export function createResampler(inputRate: SampleRate, outputRate: SampleRate): Resampler {
  assertRate(inputRate, 'inputRate');
  assertRate(outputRate, 'outputRate');
  if (inputRate === outputRate) return new IdentityResampler(inputRate);
  return new PolyphaseResampler(inputRate, outputRate, filterBankFor(inputRate, outputRate));
}
