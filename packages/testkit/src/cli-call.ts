import { parseArgs } from 'node:util';
import type { Logger } from 'pino';
import { AVR_SAMPLE_RATE } from '@stsgate/core';
import { reportToJson, simulateCall, type CallReport, type DtmfEvent } from './call-simulator.js';
import { readWavAs8k, writeWav } from './wav.js';

export interface CliIo {
  readonly stdout: { write(chunk: string): unknown };
  readonly stderr: { write(chunk: string): unknown };
  /** Abort to hang up early (e.g. on SIGINT); the report and WAV are still written. */
  readonly signal?: AbortSignal;
  readonly logger?: Logger;
}

/**
 * The quiet time after which the call hangs up. Counted from the end of the input at the earliest, it also covers the
 * reply's latency (end-of-turn detection plus the first audio, about 1 to 1.5 s) when the input ends with speech.
 */
const DEFAULT_IDLE_MS = 2000;
/** Replies longer than this are rare on the phone; a longer one is reported as cut. */
const DEFAULT_TAIL_CAP_MS = 20_000;

export const CALL_USAGE = `Usage: stsgate call <ws-url> --in caller.wav --out reply.wav [options]

Acts as AVR Core: connects to an STS WebSocket, sends init, streams caller.wav as 20 ms frames in real time,
then silence until the agent's reply has been heard, and writes what the caller heard (8 kHz mono WAV).

Options:
  --in <file>         caller audio (WAV at any sample rate, any channel count; converted to 8 kHz)  [required]
  --out <file>        where to write the heard audio (8 kHz mono s16 WAV)                            [required]
  --uuid <id>         call uuid sent in init (default: random)
  --idle-ms <n>       after the input, hang up once the agent has been quiet this long: no message
                      arriving and no audio left to play (default ${DEFAULT_IDLE_MS})
  --tail-ms <n>       the longest to wait after the input (default ${DEFAULT_TAIL_CAP_MS}); reply audio still
                      queued then is cut, and the report says how much
  --dtmf <list>       DTMF digits to send, as ms:digit pairs, e.g. 1500:5,2300:#
  --connect-timeout-ms <n>  WebSocket handshake timeout (default 5000)
  --json              print the report as JSON instead of text
  -h, --help          show this help

Exit codes: 0 the call went through; 1 it could not be made, or it failed: the server sent an AVR error, broke
the protocol, or the connection ended abnormally (a close code other than 1000, a dropped connection); the
report says why; 2 bad usage.
`;

/** `stsgate call`: run one simulated AVR call from the command line. Returns the process exit code. */
export async function runCallCommand(argv: readonly string[], io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        in: { type: 'string' },
        out: { type: 'string' },
        uuid: { type: 'string' },
        'tail-ms': { type: 'string' },
        'idle-ms': { type: 'string' },
        dtmf: { type: 'string' },
        'connect-timeout-ms': { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    return usageError(io, error instanceof Error ? error.message : String(error));
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.stdout.write(CALL_USAGE);
    return 0;
  }
  if (positionals.length !== 1 || positionals[0] === undefined) {
    return usageError(io, positionals.length === 0 ? 'missing <ws-url>' : 'expected exactly one <ws-url>');
  }
  const url = positionals[0];
  if (!/^wss?:\/\//i.test(url)) return usageError(io, `<ws-url> must start with ws:// or wss:// (got "${url}")`);
  if (values.in === undefined) return usageError(io, '--in is required');
  if (values.out === undefined) return usageError(io, '--out is required');

  let tailMs: number | undefined;
  let idleMs: number | undefined;
  let connectTimeoutMs: number | undefined;
  let dtmf: DtmfEvent[] | undefined;
  try {
    tailMs = parseNumberOption('--tail-ms', values['tail-ms'], 0);
    idleMs = parseNumberOption('--idle-ms', values['idle-ms'], 0);
    connectTimeoutMs = parseNumberOption('--connect-timeout-ms', values['connect-timeout-ms'], 1);
    dtmf = values.dtmf === undefined ? undefined : parseDtmf(values.dtmf);
  } catch (error) {
    return usageError(io, error instanceof Error ? error.message : String(error));
  }

  let input: Int16Array;
  try {
    input = readWavAs8k(values.in);
  } catch (error) {
    io.stderr.write(`error: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }

  let report: CallReport;
  try {
    report = await simulateCall({
      url,
      input,
      ...(values.uuid !== undefined && { uuid: values.uuid }),
      tailMs: tailMs ?? DEFAULT_TAIL_CAP_MS,
      idleMs: idleMs ?? DEFAULT_IDLE_MS,
      ...(dtmf !== undefined && { dtmf }),
      ...(connectTimeoutMs !== undefined && { connectTimeoutMs }),
      ...(io.signal !== undefined && { signal: io.signal }),
      ...(io.logger !== undefined && { logger: io.logger }),
    });
  } catch (error) {
    io.stderr.write(`error: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }

  try {
    writeWav(values.out, report.heard, AVR_SAMPLE_RATE);
  } catch (error) {
    io.stderr.write(`error: could not write ${values.out}: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }

  const failures = callFailures(report);
  if (values.json) io.stdout.write(`${JSON.stringify({ ...reportToJson(report), out: values.out, failures }, null, 2)}\n`);
  else io.stdout.write(formatReport(report, values.out));
  return failures.length > 0 ? 1 : 0;
}

/**
 * Why the call failed, for the exit code (smoke tests must catch a broken setup): an AVR `error` message, a protocol
 * breach, or an abnormal end of the connection. Empty when it went through; a server closing with 1000 (e.g. the
 * agent hung up) is a normal end.
 */
function callFailures(report: CallReport): string[] {
  const failures = report.errors.map((error) => `the server sent an AVR error: ${JSON.stringify(error.message)}`);
  const [firstProblem, ...moreProblems] = report.protocolProblems;
  if (firstProblem !== undefined) {
    failures.push(
      `the server broke the AVR STS protocol: ${firstProblem.problem}${moreProblems.length > 0 ? ` (and ${moreProblems.length} more)` : ''}`,
    );
  }
  const { code, reason, initiatedBy } = report.close;
  const quotedReason = reason === '' ? '' : ` ${JSON.stringify(reason)}`;
  if (initiatedBy === 'transport') failures.push(`the connection failed: ${report.transportError ?? `code ${code}`}`);
  else if (report.transportError !== null) failures.push(`transport error: ${report.transportError}`);
  if (initiatedBy === 'server' && code === 1006) failures.push('the server dropped the connection without closing it (code 1006)');
  else if (initiatedBy === 'server' && code !== 1000) failures.push(`the server closed the call with code ${code}${quotedReason}`);
  else if (initiatedBy === 'client' && code !== 1000) failures.push(`the server did not answer the hang-up with code 1000 (got ${code}${quotedReason})`);
  return failures;
}

function usageError(io: CliIo, message: string): number {
  io.stderr.write(`error: ${message}\n\n${CALL_USAGE}`);
  return 2;
}

function parseNumberOption(name: string, value: string | undefined, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < min) throw new Error(`${name} must be a number >= ${min}`);
  return n;
}

/** "1500:5,2300:#" -> [{atMs:1500,digit:'5'},{atMs:2300,digit:'#'}] */
export function parseDtmf(spec: string): DtmfEvent[] {
  return spec
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part.length > 0)
    .map((part) => {
      const match = /^(\d+(?:\.\d+)?):([0-9A-D*#])$/i.exec(part);
      if (match === null || match[1] === undefined || match[2] === undefined) {
        throw new Error(`invalid --dtmf entry "${part}" (expected ms:digit, digit one of 0-9 A-D * #)`);
      }
      return { atMs: Number(match[1]), digit: match[2].toUpperCase() };
    });
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}

function msOrDash(ms: number | null): string {
  return ms === null ? '-' : `${Math.round(ms)} ms`;
}

/** Human-readable summary of a call report. */
export function formatReport(report: CallReport, outPath?: string): string {
  const lines: string[] = [];
  const { close, received } = report;
  lines.push(`call ${report.uuid} -> ${report.url}`);
  lines.push(
    `ended: ${report.endReason} after ${seconds(report.durationMs)}; closed by ${close.initiatedBy}, ` +
      `code ${close.code}${close.reason === '' ? '' : ` "${close.reason}"`}`,
  );
  const dtmf = report.sent.dtmf.map((d) => `${d.digit}@${d.atMs}ms`).join(' ');
  lines.push(`sent: ${report.sent.audioFrames} audio frames${dtmf === '' ? '' : `, DTMF ${dtmf}`}`);
  lines.push(
    `received: ${received.audioMessages} audio messages (${seconds(received.audioMs)}` +
      `${received.irregularFrames > 0 ? `, ${received.irregularFrames} not 320 bytes` : ''}), ` +
      `${received.interruptions} interruptions, ${received.transcripts} transcripts, ${received.errors} errors`,
  );
  lines.push(
    `heard: ${seconds(report.heardAgentMs)} of agent audio` +
      `${report.firstAudioHeardAtMs === null ? '' : `, first at ${seconds(report.firstAudioHeardAtMs)}`}` +
      `${report.unplayedAgentMs > 0 ? `; ${seconds(report.unplayedAgentMs)} still queued at hang-up` : ''}`,
  );
  if (report.tailEndedBy === 'idle' && report.idleMs !== null) lines.push(`tail: hung up after ${seconds(report.idleMs)} without agent audio`);
  if (report.tailEndedBy === 'cap') {
    lines.push(
      `tail: hung up at the --tail-ms cap (${seconds(report.tailMs)} after the input)` +
        `${report.unplayedAgentMs > 0 ? `; ${seconds(report.unplayedAgentMs)} of agent audio still queued was cut` : ''}`,
    );
  }
  lines.push(
    `caller speech: ${
      report.callerSpeech.length === 0
        ? 'none detected'
        : report.callerSpeech.map((s) => `${seconds(s.startMs)}-${seconds(s.endMs)}`).join(', ')
    }`,
  );
  if (report.responseLatencies.length > 0) {
    lines.push('response latency (caller speech end -> agent audio):');
    for (const l of report.responseLatencies) {
      lines.push(`  speech ended ${seconds(l.speechEndMs)}: received ${msOrDash(l.receivedMs)}, heard ${msOrDash(l.heardMs)}`);
    }
  }
  if (report.bargeIns.length > 0) {
    lines.push('barge-in (caller spoke over the agent):');
    for (const b of report.bargeIns) {
      lines.push(
        `  at ${seconds(b.speechStartMs)}: interruption ${msOrDash(b.reactionMs)}, ` +
          `playback ${b.playbackStopped && b.playbackStoppedAtMs !== null ? `stopped after ${msOrDash(b.playbackStoppedAtMs - b.speechStartMs)}` : 'did not stop'}`,
      );
    }
  }
  if (report.transcripts.length > 0) {
    lines.push('transcripts:');
    for (const t of report.transcripts) lines.push(`  [${seconds(t.atMs).padStart(8)}] ${t.role}: ${t.text}`);
  }
  if (report.errors.length > 0) {
    lines.push('errors from the server:');
    for (const e of report.errors) lines.push(`  [${seconds(e.atMs).padStart(8)}] ${e.message}`);
  }
  if (report.protocolProblems.length > 0) {
    lines.push('protocol problems:');
    for (const p of report.protocolProblems) lines.push(`  [${seconds(p.atMs).padStart(8)}] ${p.problem}`);
  }
  if (report.transportError !== null) lines.push(`transport error: ${report.transportError}`);
  if (outPath !== undefined) lines.push(`wrote ${outPath} (${seconds(report.durationMs)}, 8 kHz mono)`);
  const failures = callFailures(report);
  if (failures.length > 0) lines.push('call failed:', ...failures.map((failure) => `  - ${failure}`));
  return `${lines.join('\n')}\n`;
}
