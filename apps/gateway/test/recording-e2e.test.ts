import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import { concatPcm, fixturePath, readWavAs8k, silence, simulateCall, startOpenAiRealtimeEmulator, whiteNoise, type RealtimeScript } from '@stsgate/testkit';
import { buildGateway, builtinRegistry, resolveServeSetup } from '../src/index.js';
import type { RecordingSidecar } from '../src/recording/index.js';
import { parseStereoWav, sidecarValidator } from './recording-files.js';

// RECORDINGS_DIR on a real gateway over loopback TCP, in real time: the OpenAI Realtime path against its emulator
// (transcripts both ways, a barge-in, a tool call), then hostile call ids and query strings.
const API_KEY = 'sk-test-recording-0123456789';
const MS = 8; // samples per ms
const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function scratchDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function startStack(script: RealtimeScript, env: Record<string, string>) {
  const emulator = await startOpenAiRealtimeEmulator({ apiKey: API_KEY, script });
  cleanups.push(() => emulator.close());
  const setup = resolveServeSetup(
    { STS_PROVIDER: 'openai', OPENAI_API_KEY: API_KEY, OPENAI_REALTIME_URL: emulator.url, OPENAI_TRANSCRIPTION_MODEL: 'gpt-4o-mini-transcribe', LOG_LEVEL: 'silent', ...env },
    builtinRegistry(),
    () => pino({ level: 'silent' }),
  );
  const gateway = await buildGateway(setup.config, { sts: setup.sts, logger: setup.logger, tools: setup.tools });
  await gateway.app.listen({ host: '127.0.0.1', port: 0 });
  cleanups.push(() => gateway.app.close());
  return { base: `ws://127.0.0.1:${(gateway.app.server.address() as AddressInfo).port}/` };
}

/** Every recording in `dir` is complete (sidecars final, no temporary file left): the gateway finished writing. */
async function recordingsSettled(dir: string, expected: number, timeoutMs = 5000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const names = readdirSync(dir).sort();
    const sidecars = names.filter((name) => name.endsWith('.json'));
    const complete = sidecars.filter((name) => (JSON.parse(readFileSync(join(dir, name), 'utf8')) as RecordingSidecar).complete);
    if (complete.length === expected && sidecars.length === expected && !names.some((name) => name.endsWith('.tmp'))) return names;
    if (Date.now() > deadline) throw new Error(`recordings not settled: ${JSON.stringify(names)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Normalised cross-correlation of `b` against `a` from `offset + lag` on (a[offset + lag + i] ~ b[i]), over their overlap. */
function correlationAt(a: Int16Array, b: Int16Array, lag: number, offset: number): number {
  const shift = offset + lag;
  let dot = 0;
  let energyA = 0;
  let energyB = 0;
  for (let i = Math.max(0, -shift), end = Math.min(b.length, a.length - shift); i < end; i++) {
    const x = a[i + shift] as number;
    const y = b[i] as number;
    dot += x * y;
    energyA += x * x;
    energyB += y * y;
  }
  return dot / Math.sqrt(energyA * energyB + 1e-9);
}

/** The lag (samples, |lag| <= maxLag) at which `b` best matches `a` from `offset` on, and the correlation there. */
function bestLag(a: Int16Array, b: Int16Array, maxLag: number, offset = 0): { lag: number; correlation: number } {
  let best = { lag: 0, correlation: -Infinity };
  for (let lag = -maxLag; lag <= maxLag; lag++) {
    const correlation = correlationAt(a, b, lag, offset);
    if (correlation > best.correlation) best = { lag, correlation };
  }
  return best;
}

/** Runs of agent audio in a channel: [start, end) separated by more than `gap` samples of silence (noise has no 5 ms of zeros). */
function audioSegments(samples: Int16Array, gap = 5 * MS): [number, number][] {
  const segments: [number, number][] = [];
  let start = -1;
  let lastLoud = -Infinity;
  for (let i = 0; i < samples.length; i++) {
    if (samples[i] === 0) continue;
    if (start < 0 || i - lastLoud > gap) {
      if (start >= 0) segments.push([start, lastLoud + 1]);
      start = i;
    }
    lastLoud = i;
  }
  if (start >= 0) segments.push([start, lastLoud + 1]);
  return segments;
}


describe('call recording (RECORDINGS_DIR), end to end', () => {
  it('records a call with a barge-in: both channels match what the caller sent and heard, aligned; the sidecar validates', { timeout: 40_000 }, async () => {
    const recordingsDir = join(scratchDir('recording-e2e-'), 'recordings');
    const toolsDir = scratchDir('recording-e2e-tools-');
    writeFileSync(
      join(toolsDir, 'lookup_hours.js'),
      `module.exports = { name: 'lookup_hours', description: 'Opening hours', input_schema: { type: 'object', properties: { day: { type: 'string' } } },
        handler: async (uuid, args) => 'Open 9 to 17 on ' + args.day };\n`,
    );
    // Agent audio is noise (24 kHz, as the model sends it): any misplacement shows as a drop in correlation.
    const { base } = await startStack(
      {
        transcribe: ({ index }) => (index === 0 ? 'Hello, I would like to book an appointment.' : 'What time do you open on Saturday?'),
        onUserTurn: (turn) =>
          turn.index === 0
            ? { transcript: 'Our opening hours are long to explain.', audio: whiteNoise(4000, 9000, 7, 24000) }
            : { transcript: 'Let me check.', audio: whiteNoise(600, 9000, 8, 24000), functionCall: { name: 'lookup_hours', arguments: '{"day":"saturday"}' } },
        onToolOutput: () => ({ transcript: 'We are open nine to five.', audio: whiteNoise(1500, 9000, 9, 24000) }),
      },
      { OPENAI_GREETING: 'false', TOOLS_DIR: toolsDir, RECORDINGS_DIR: recordingsDir },
    );
    const input = concatPcm(readWavAs8k(fixturePath('greeting')), silence(1500), readWavAs8k(fixturePath('question')));
    const uuid = 'e2e-recording-call';
    const report = await simulateCall({ url: `${base}?from=2000&to=5001`, uuid, input, tailMs: 4500 });
    expect(report.errors).toEqual([]);
    expect(report.received.interruptions).toBeGreaterThanOrEqual(1);

    const names = await recordingsSettled(recordingsDir, 1);
    expect(names).toHaveLength(2);
    const [sidecarName, wavName] = names as [string, string];
    const wav = parseStereoWav(readFileSync(join(recordingsDir, wavName)));

    // Left: the caller as sent (the input, then the tail's silence), on the call clock.
    const sent = new Int16Array(report.sent.audioFrames * 160);
    sent.set(input);
    const caller = bestLag(wav.left, sent, 50 * MS);
    // Right: what the caller heard, reply by reply (each reply's start falls somewhere in a 20 ms playout tick).
    const replies = audioSegments(wav.right).filter(([start, end]) => end - start >= 50 * MS);
    const agent = replies.map(([start, end]) => ({ start, end, ...bestLag(report.heard, wav.right.subarray(start, end), 50 * MS, start) }));
    const measured = {
      callerCorrelation: round(caller.correlation),
      callerLagMs: caller.lag / MS,
      replies: agent.map((r) => ({ atMs: r.start / MS, ms: (r.end - r.start) / MS, correlation: round(r.correlation), lagMs: r.lag / MS })),
      firstAudioReceivedAtMs: report.firstAudioReceivedAtMs,
      firstAudioHeardAtMs: report.firstAudioHeardAtMs,
    };
    console.log(`recording e2e: ${JSON.stringify(measured)}`);
    expect(caller.correlation).toBeGreaterThan(0.9);
    expect(Math.abs(caller.lag)).toBeLessThanOrEqual(20 * MS);
    expect(replies.length).toBeGreaterThanOrEqual(2);
    // The simulated AVR Core plays a reply from the first 20 ms tick after it arrives; the recording places it half a
    // tick after the gateway sent it (the average wait for that tick). So what was heard lags the recording by -10 to
    // +10 ms, plus the delivery from gateway to caller (on a loaded machine, the suite's parallel files: about 15 ms
    // seen), minus how late the caller's tick ran (a late tick plays audio that arrived within it from its nominal
    // start). The bounds leave 10 ms for the late tick and 30 ms for the delivery.
    for (const reply of agent) {
      expect(reply.correlation).toBeGreaterThan(0.9);
      expect(reply.lag).toBeGreaterThanOrEqual(-20 * MS);
      expect(reply.lag).toBeLessThanOrEqual((20 + 20) * MS);
    }
    // Every bit of agent audio the caller heard is in the recording (the replies cover it, give or take a tick each).
    const heardSegments = audioSegments(report.heard).filter(([start, end]) => end - start >= 50 * MS);
    expect(heardSegments.length).toBe(replies.length);

    const sidecar = JSON.parse(readFileSync(join(recordingsDir, sidecarName), 'utf8')) as RecordingSidecar;
    const validate = sidecarValidator();
    expect(validate(sidecar), JSON.stringify(validate.errors)).toBe(true);
    expect(sidecar).toMatchObject({ callId: uuid, provider: 'openai', metadata: { from: '2000', to: '5001' }, outcome: 'completed', complete: true, failure: null });
    expect(sidecar.audio.file).toBe(wavName);
    expect(Math.abs(sidecar.audio.durationMs - wav.left.length / MS)).toBeLessThanOrEqual(0.051); // 0.1 ms resolution
    expect(sidecar.transcripts.map((t) => `${t.role}: ${t.text}`)).toEqual(expect.arrayContaining([
      'user: Hello, I would like to book an appointment.',
      'user: What time do you open on Saturday?',
      'agent: Let me check.',
      'agent: We are open nine to five.',
    ]));
    expect(sidecar.toolCalls).toEqual([expect.objectContaining({ name: 'lookup_hours', arguments: '{"day":"saturday"}', output: 'Open 9 to 17 on saturday', status: 'ok' })]);
    // The interruption: the first reply stops there in the recording (and was cut short of its 4 s).
    expect(sidecar.interruptions.length).toBeGreaterThanOrEqual(1);
    const cutAt = Math.round(sidecar.interruptions[0]!.atMs * MS);
    const firstReply = replies[0]!;
    expect(Math.abs(firstReply[1] - cutAt)).toBeLessThanOrEqual(2);
    expect(firstReply[1] - firstReply[0]).toBeLessThan(3800 * MS);
    // (The sidecar's times have 0.1 ms resolution: the cut is within a sample of `cutAt`.)
    expect(wav.right.subarray(cutAt + 2, cutAt + 100 * MS).every((v) => v === 0), 'the agent channel is silent after the interruption').toBe(true);
    // Transcripts are on the WAV's clock: the caller's second turn is transcribed after the question started.
    const questionAt = (readWavAs8k(fixturePath('greeting')).length + 1500 * MS) / MS;
    const secondTurn = sidecar.transcripts.find((t) => t.text.startsWith('What time'));
    expect(secondTurn!.atMs).toBeGreaterThan(questionAt);
  });

  it('hostile call ids and query values cannot leave the directory or break the files', { timeout: 40_000 }, async () => {
    const root = scratchDir('recording-e2e-hostile-');
    const recordingsDir = join(root, 'recordings');
    const { base } = await startStack({ onUserTurn: () => ({ transcript: 'ok', audioMs: 300 }) }, { OPENAI_GREETING: 'false', RECORDINGS_DIR: recordingsDir });
    const query = `?from=..%2F..%2Fetc%2Fpasswd&to=%00%00%2F&..%2F..%2Fk=v&__proto__=x&long=${'a'.repeat(3000)}`;
    const input = readWavAs8k(fixturePath('short'));
    const uuids = ['../../etc/x', `..\u0000/..\u0000/x\u0000`, `../../etc/x${'\u0000'.repeat(10)}${'/..'.repeat(3330)}`];
    const reports = [];
    for (const uuid of uuids) reports.push(await simulateCall({ url: `${base}${query}`, uuid, input, tailMs: 600, realtime: false }));
    // The 10 kB one is refused as an invalid init (AVR's uuid is at most 128 characters): no call, nothing recorded.
    expect(reports[2]!.errors.length).toBeGreaterThan(0);
    const names = await recordingsSettled(recordingsDir, 2);

    expect(readdirSync(root)).toEqual(['recordings']);
    expect(existsSync(join(root, '..', 'etc'))).toBe(false);
    expect(names).toHaveLength(4);
    for (const name of names) expect(name).toMatch(/^\d{8}T\d{6}Z-[0-9a-f]{16}\.(wav|json)$/);
    const validate = sidecarValidator();
    const recorded = names
      .filter((name) => name.endsWith('.json'))
      .map((name) => {
        const sidecar = JSON.parse(readFileSync(join(recordingsDir, name), 'utf8')) as RecordingSidecar;
        expect(validate(sidecar), JSON.stringify(validate.errors)).toBe(true);
        expect(parseStereoWav(readFileSync(join(recordingsDir, sidecar.audio.file))).left.length).toBeGreaterThan(0);
        expect(sidecar.metadata).toMatchObject({ from: '../../etc/passwd', to: '\u0000\u0000/', '../../k': 'v', long: 'a'.repeat(1024) });
        expect(sidecar.metadataTruncated).toBe(true);
        return sidecar.callId;
      });
    expect(recorded.sort()).toEqual(uuids.slice(0, 2).sort());
  });
});

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}
