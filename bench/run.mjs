// stsgate bench: runs every part and writes one JSON document to bench/results/latest.json and stdout.
// Progress goes to stderr.
//
//   pnpm bench                      all default parts (~21 min on 2 cores)
//   pnpm bench -- --quick           shorter runs: a smoke check that every part works (~4 min)
//   pnpm bench -- --only=concurrency[,gateway-path,...]
//   node bench/run.mjs --only=concurrency-emulated   (not in the default run)
//
// Parts: resampler (bench/resampler.mjs), gateway-path, concurrency (loopback provider), openai-path
// (bench/openai-path.mjs, maintained separately), flow-path (bench/flow-path.mjs: the Speechmatics Flow path,
// 16 kHz agent audio resampled to 8 kHz), asr-endpoint, cascade-path (bench/cascade-path.mjs: STS_PROVIDER=soniox, ASR +
// LLM + TTS against emulators with fixed latencies), reliability (bench/reliability.mjs: hostile clients against the
// gateway: memory, /health latency and a normal call under each attack; slowloris POSTs; SIGTERM with calls in
// progress); scale (bench/scale.mjs: the OpenAI Realtime path at 100 and 500 real-time calls against a lean fake
// provider, with the performance issue's goals); opt-in (--only=... or --all): concurrency-emulated (same load against a
// 24 kHz provider emulator). Each summary number is also shown as a ratio to bench/baseline.json (`ratioToBaseline`).
// Environment equivalents: BENCH_QUICK=1, BENCH_ONLY=<parts>, BENCH_ALL=1.

import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { compareToBaseline, formatRatioTable, readBaseline } from './lib/baseline.mjs';
import { cpuPercentBetween, cpuTimes, round, sleep, which } from './lib/util.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const RESULTS_DIR = fileURLToPath(new URL('./results/', import.meta.url));
const DEFAULT_PARTS = ['gateway-path', 'resampler', 'concurrency', 'openai-path', 'flow-path', 'asr-endpoint', 'cascade-path', 'reliability', 'scale', 'recording'];
const ALL_PARTS = [...DEFAULT_PARTS, 'concurrency-emulated'];
const REQUIRED_BUILDS = ['packages/core/dist/index.js', 'packages/testkit/dist/index.js', 'packages/silero-vad/dist/index.js', 'apps/gateway/dist/cli.js'];

function parseOptions(argv, env) {
  const args = argv.filter((arg) => arg !== '--');
  const unknown = args.filter((arg) => !/^--(quick|all|only=.+)$/.test(arg));
  if (unknown.length > 0) throw new Error(`unknown argument(s): ${unknown.join(' ')} (use --quick, --only=<part>[,<part>], --all)`);
  const quick = args.includes('--quick') || env.BENCH_QUICK === '1';
  const onlyArg = args.find((arg) => arg.startsWith('--only='))?.slice('--only='.length) ?? env.BENCH_ONLY;
  const all = args.includes('--all') || env.BENCH_ALL === '1';
  let parts = all ? ALL_PARTS : DEFAULT_PARTS;
  if (onlyArg !== undefined && onlyArg !== '') {
    parts = onlyArg.split(',').map((p) => p.trim()).filter((p) => p !== '');
    const bad = parts.filter((p) => !ALL_PARTS.includes(p));
    if (bad.length > 0) throw new Error(`unknown part(s): ${bad.join(', ')} (parts: ${ALL_PARTS.join(', ')})`);
  }
  return { quick, parts };
}

function gitInfo() {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const status = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return { commit, dirty: status.trim() !== '' };
  } catch {
    return { commit: null, dirty: null };
  }
}

function machineInfo() {
  const list = cpus();
  return {
    node: process.version,
    platform: `${process.platform} ${release()} ${process.arch}`,
    cpus: { model: list[0]?.model ?? 'unknown', count: list.length },
    totalMemMB: Math.round(totalmem() / 1048576),
    taskset: which('taskset') !== undefined,
  };
}

const log = (line) => process.stderr.write(`[bench] ${line}\n`);
const CONCURRENCY = fileURLToPath(new URL('./concurrency.mjs', import.meta.url));
const OPENAI_PATH = fileURLToPath(new URL('./openai-path.mjs', import.meta.url));
const FLOW_PATH = fileURLToPath(new URL('./flow-path.mjs', import.meta.url));
const ASR_ENDPOINT = fileURLToPath(new URL('./asr-endpoint.mjs', import.meta.url));
const CASCADE_PATH = fileURLToPath(new URL('./cascade-path.mjs', import.meta.url));
const RELIABILITY = fileURLToPath(new URL('./reliability.mjs', import.meta.url));
const SCALE = fileURLToPath(new URL('./scale.mjs', import.meta.url));
let interrupted = false;

/** Runs a bench script in a child process: its stdout is the JSON result, its stderr is passed through. */
function runChild(script, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => (out += chunk));
    // The child cleans up its own gateway on SIGINT/SIGTERM; pass the signal on and stop after it.
    const forward = (signal) => {
      interrupted = true;
      child.kill(signal);
    };
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
      if (code !== 0) {
        reject(new Error(`${script} ${args.join(' ')} exited with ${code ?? signal}`));
        return;
      }
      try {
        resolve(JSON.parse(out));
      } catch (error) {
        reject(new Error(`${script} printed no JSON result: ${error instanceof Error ? error.message : String(error)}`));
      }
    });
  });
}

async function runPart(name, quick) {
  switch (name) {
    case 'gateway-path': {
      const { benchGatewayPath } = await import('./gateway-path.mjs');
      return benchGatewayPath({ quick });
    }
    case 'resampler': {
      const { benchResampler } = await import('./resampler.mjs');
      // Its own defaults in a full run; quick mode only shortens the throughput loops.
      return quick ? benchResampler({ minSeconds: 0.2 }) : benchResampler();
    }
    // The load generator gets a fresh process (pinned to CPU 0 by itself): no heap or JIT state left
    // over from the in-process parts, whose GC pauses would delay its clock.
    case 'concurrency':
      return runChild(CONCURRENCY, ['--provider=loopback', ...(quick ? ['--quick'] : [])]);
    case 'concurrency-emulated':
      return runChild(CONCURRENCY, ['--provider=emulated', ...(quick ? ['--quick'] : [])]);
    // bench/openai-path.mjs (the OpenAI Realtime path against the testkit emulator) is maintained separately;
    // it prints its JSON result when run as a script.
    case 'openai-path': {
      if (!existsSync(OPENAI_PATH)) throw new Error('bench/openai-path.mjs not found');
      return runChild(OPENAI_PATH, quick ? ['--quick'] : []);
    }
    // bench/flow-path.mjs: STS_PROVIDER=speechmatics against the Flow + temporary-key emulators (real-time agent audio).
    case 'flow-path':
      return runChild(FLOW_PATH, quick ? ['--quick'] : []);
    // bench/asr-endpoint.mjs: POST /speech-to-text-stream streams at real time against the Soniox emulator.
    case 'asr-endpoint':
      return runChild(ASR_ENDPOINT, quick ? ['--quick'] : []);
    // bench/cascade-path.mjs: STS_PROVIDER=soniox (Soniox STT + OpenAI chat + Soniox TTS) against emulators with fixed latencies.
    case 'cascade-path':
      return runChild(CASCADE_PATH, quick ? ['--quick'] : []);
    // bench/reliability.mjs: hostile clients; a failed criterion is pass=false in its result, not an error.
    case 'reliability':
      return runChild(RELIABILITY, quick ? ['--quick'] : []);
    // bench/scale.mjs: the OpenAI Realtime path at scale (100 and 500 real-time calls, pcmu and pcm24) and its goals.
    case 'scale':
      return runChild(SCALE, quick ? ['--quick'] : []);
    // bench/recording.mjs: CPU of call recording (RECORDINGS_DIR) per call-second, the real writer to a temporary directory.
    case 'recording':
      return runChild(fileURLToPath(new URL('./recording.mjs', import.meta.url)), quick ? ['--quick'] : []);
    default:
      throw new Error(`unknown part ${name}`);
  }
}

/** The numbers the performance targets ask for, pulled out of the parts (null where a part did not run). */
function summarize(parts) {
  const summary = {};
  const path = parts['gateway-path'];
  if (path?.totals !== undefined) {
    summary.gatewayPath = {
      cpuMsPerCallSecond24kProvider: path.totals.provider24kPcm.cpuMsPerCallSecond,
      cpuMsPerCallSecond8kProvider: path.totals.provider8kPcm.cpuMsPerCallSecond,
      cpuMsPerCallSecond8kMulawProvider: path.totals.provider8kMulaw.cpuMsPerCallSecond,
      resamplingShareOf24kPath: round(
        (50 * (path.steps.resample8kTo24k.nsPerFrame + path.steps.resample24kTo8k.nsPerFrame)) / (path.totals.provider24kPcm.cpuUsPerCallSecond * 1000),
        3,
      ),
      loopbackVadCpuMsPerCallSecond: path.loopbackVad?.cpuMsPerCallSecond ?? null,
      target: 'CPU per call-second on the OpenAI Realtime path <= 1 ms (hot path only here; see concurrency for the whole process)',
    };
  }
  for (const [key, part] of [
    ['concurrency', parts.concurrency],
    ['concurrencyEmulated', parts['concurrency-emulated']],
  ]) {
    if (part?.steps === undefined) continue;
    const best = part.steps.find((s) => s.pass && s.calls === part.maxSustainedCalls);
    summary[key] = {
      provider: part.provider,
      maxSustainedCalls: part.maxSustainedCalls,
      stoppedBy: part.stoppedBy,
      atMax:
        best === undefined
          ? null
          : {
              calls: best.calls,
              latenessMs: best.latenessMs,
              agentAudioDeliveredOnTimePercent: best.agentAudioDeliveredOnTimePercent,
              replyLatencyP99Ms: best.replyLatencyMs.p99,
              gatewayCpuPercentOfOneCore: best.gateway.cpuPercentOfOneCore,
              gatewayCpuMsPerCallSecond: best.gateway.cpuMsPerCallSecond,
              rssAtLoadMB: best.gateway.rssAtLoadMB,
              rssPerCallKB: best.gateway.rssPerCallKB,
              rssGrowthPerCallKB: best.gateway.rssGrowthPerCallKB,
              agentSecondsPerCall: best.agentSecondsPerCall.mean,
              repliesPerCall: best.repliesPerCall.mean,
            },
      cpuMsPerCallSecondByCalls: Object.fromEntries(part.steps.filter((s) => s.gateway?.cpuMsPerCallSecond !== undefined).map((s) => [s.calls, s.gateway.cpuMsPerCallSecond])),
      gatewayRss: part.gatewayRss,
      gatewayIdleCpuPercent: part.gatewayIdleCpuPercent,
      targets: 'concurrent calls on one core with >= 99% of agent audio on time >= 500; memory per call <= 200 KB and back to baseline when calls end',
    };
  }
  const resampler = parts.resampler;
  const down = resampler?.directions?.['24k->8k']?.candidates;
  if (down !== undefined) {
    const pick = (name) => {
      const c = down[name];
      if (c === undefined) return null;
      return { worstRejectionDb: (c.stopband ?? c.images)?.worstDb ?? null, xRealtime20ms: c.throughput20ms?.xRealtime ?? null };
    };
    summary.resampler24kTo8k = {
      stsgate: pick('stsgate'),
      libsamplerateFastest: pick('libsamplerate-fastest'),
      libsamplerateMedium: pick('libsamplerate-medium'),
      target: '>= 80 dB stopband rejection, faster than libsamplerate-js',
    };
  }
  const openai = parts['openai-path'];
  if (openai?.steps !== undefined) {
    summary.openaiPath = {
      byFormatAndCalls: openai.steps.map((s) => ({
        format: s.format,
        calls: s.calls,
        gatewayCpuMsPerCallSecond: s.gatewayCpuMsPerCallSecond,
        addedLatencyP50Ms: s.addedLatencyMs?.p50 ?? null,
        addedLatencyP99Ms: s.addedLatencyMs?.p99 ?? null,
      })),
      target: 'CPU per call-second <= 1 ms; added latency p99 <= 2 ms at 100 calls',
    };
  }
  const flow = parts['flow-path'];
  if (flow?.steps !== undefined) {
    const at100 = flow.steps.find((s) => s.calls === 100);
    summary.flowPath = {
      pacing: flow.pacing,
      gatewayCpuMsPerCallSecondAt100Calls: at100?.gatewayCpuMsPerCallSecond ?? null,
      addedLatencyP99MsAt100Calls: at100?.addedLatencyMs?.p99 ?? null,
      byCalls: flow.steps.map((s) => ({
        calls: s.calls,
        gatewayCpuMsPerCallSecond: s.gatewayCpuMsPerCallSecond,
        gatewayRssMB: s.gatewayRssMB,
        addedLatencyP50Ms: s.addedLatencyMs?.p50 ?? null,
        addedLatencyP99Ms: s.addedLatencyMs?.p99 ?? null,
        agentAudioDeliveredOnTimePercent: s.agentAudio.deliveredOnTimePercent,
        agentAudioDeliveredOnTimePercentWith40msPrebuffer: s.agentAudio.withPrebuffer.find((p) => p.prebufferMs === 40)?.deliveredOnTimePercent ?? null,
        replyDurationOk: s.replyDurationMs.ok,
        replyDurationMs: { min: s.replyDurationMs.min, max: s.replyDurationMs.max },
      })),
      target: 'CPU per call-second <= 1 ms; added latency p99 <= 2 ms at 100 calls; each 2.5 s reply lasts 2.5 s +- 20 ms at AVR Core',
    };
  }
  const cascade = parts['cascade-path'];
  if (cascade?.steps !== undefined) {
    const at100 = cascade.steps.find((s) => s.calls === 100);
    // The OpenAI Realtime path's CPU per call-second at 100 calls, when openai-path ran in the same run.
    const openaiAt100 = (format) => openai?.steps?.find((s) => s.format === format && s.calls === 100)?.gatewayCpuMsPerCallSecond ?? null;
    summary.cascadePath = {
      gatewayShareMsAt100Calls: at100?.gatewayShareMs ?? null,
      meetsTargetAt100Calls: at100?.meetsTarget ?? null,
      gatewayCpuMsPerCallSecondAt100Calls: at100?.gatewayCpuMsPerCallSecond ?? null,
      openaiPathCpuMsPerCallSecondAt100Calls: { pcmu: openaiAt100('pcmu'), pcm24: openaiAt100('pcm24') },
      subtractedMs: cascade.subtracted.totalMs,
      byCalls: cascade.steps.map((s) => ({
        calls: s.calls,
        gatewayShareMs: s.gatewayShareMs === null ? null : { p50: s.gatewayShareMs.p50, p95: s.gatewayShareMs.p95, p99: s.gatewayShareMs.p99 },
        gatewayHopsMs: s.gatewayHopsMs === null ? null : { p50: s.gatewayHopsMs.p50, p95: s.gatewayHopsMs.p95, p99: s.gatewayHopsMs.p99 },
        providerExcessP50Ms: s.providerExcessMs?.p50 ?? null,
        gatewayCpuMsPerCallSecond: s.gatewayCpuMsPerCallSecond,
        gatewayCpuPercentOfOneCore: s.gatewayCpuPercentOfOneCore,
        gatewayRssIdleMB: s.gatewayRssIdleMB,
        gatewayRssMB: s.gatewayRssMB,
        agentFramesOnTimePercent: s.agentFramesOnTime.onTimePercent,
        allRepliesWhole: s.replies.allWhole,
        interruptions: s.avr.interruptions,
      })),
      problems: cascade.problems,
      target: cascade.target,
    };
  }
  const scale = parts.scale;
  if (scale?.formats !== undefined) {
    const steps = {};
    for (const [format, result] of Object.entries(scale.formats)) {
      for (const s of result.steps) {
        steps[`${format}_${s.calls}`] = {
          gatewayCpuMsPerCallSecond: s.gateway.cpuMsPerCallSecond,
          gatewayCpuPercentOfOneCore: s.gateway.cpuPercentOfOneCore,
          gatewayKernelPercentOfItsCpu: s.gateway.kernelPercentOfItsCpu,
          loadGeneratorCpuPercentOfOneCore: s.loadGenerator.cpuPercentOfOneCore,
          agentLatenessP99Ms: s.agentFrames.latenessMs.p99,
          agentFramesLaterThan20msPercent: s.agentFrames.laterThan20msPercent,
          agentFramesLost: s.agentFrames.lost,
          callerAudioP99Ms: s.callerAudio.latencyMs.p99,
          callerAudioAddedP99Ms: s.callerAudio.addedP99Ms,
          callerAudioAppendCompletingP99Ms: s.callerAudio.appendCompletingLatencyMs.p99,
          agentFirstFrameP99Ms: s.agentFrames.firstFrameAddedMs?.p99 ?? null,
          interruptionP50Ms: s.bargeIns.interruptionLatencyMs.p50,
          interruptionP99Ms: s.bargeIns.interruptionLatencyMs.p99,
          interruptionOverHopsP99Ms: s.bargeIns.interruptionOverHopsP99Ms ?? null,
          gatewayGcPercentOfItsCpu: s.gateway.gcPercentOfItsCpu ?? null,
          rssPerAddedCallKB: s.gateway.rssPerAddedCallKB,
          ...(s.calls === scale.settings.steps.at(-1) ? { rssAfterCallsEndedRatioToIdle: s.gateway.rssAfterCallsEndedRatioToIdle } : {}),
          disturbed: s.disturbed,
        };
      }
    }
    summary.scale = {
      steps,
      failedSteps: Object.values(scale.formats).flatMap((result) => result.failedSteps.map((s) => `${s.format}_${s.calls}`)),
      loopbackHopP99MsByCalls: Object.fromEntries((scale.loopbackHop?.steps ?? []).map((s) => [s.calls, s.latencyMs.p99])),
      // The bare relay's own CPU at the same load: the floor the two loopback WebSocket hops set (see bench/README.md).
      loopbackHopCpuMsPerCallSecondByCalls: Object.fromEntries((scale.loopbackHop?.steps ?? []).map((s) => [s.calls, s.relayCpuMsPerCallSecond])),
      allocator: scale.settings.allocator,
      goalsMet: Object.fromEntries(Object.entries(scale.goals).filter(([, g]) => g !== null).map(([name, g]) => [name, g.met])),
      // The cascade path beside the Realtime path, when cascade-path ran in the same run (its own load: 100 calls, VAD).
      cascadePathCpuMsPerCallSecondAt100Calls: parts['cascade-path']?.steps?.find((s) => s.calls === 100)?.gatewayCpuMsPerCallSecond ?? null,
      target: 'see results.scale.goals',
    };
  }
  const asrEndpoint = parts['asr-endpoint'];
  if (asrEndpoint?.steps !== undefined) {
    summary.asrEndpoint = {
      byStreams: asrEndpoint.steps.map((s) => ({
        streams: s.streams,
        gatewayCpuMsPerStreamSecond: s.gatewayCpuMsPerStreamSecond,
        gatewayCpuPercentOfOneCore: s.gatewayCpuPercentOfOneCore,
        textDelayAfterSpeechEndP99Ms: s.textDelayAfterSpeechEndMs?.p99 ?? null,
      })),
    };
  }
  const reliability = parts.reliability;
  if (reliability?.pass !== undefined) {
    summary.reliability = {
      pass: reliability.pass,
      attacks: (reliability.attacks ?? []).map((a) => ({
        kind: a.kind,
        pass: a.pass,
        rssGrowthMB: a.rssGrowthMB,
        healthWorstMs: a.health.worstMs,
        normalCallComplete: a.normalCall.complete,
        closeCode: a.attack.closeCode ?? null,
      })),
      trickle:
        reliability.trickle === undefined
          ? null
          : {
              pass: reliability.trickle.pass,
              requests: reliability.trickle.requests,
              statuses: reliability.trickle.report.statuses ?? null,
              closedWithoutResponse: reliability.trickle.report.closedWithoutResponse ?? null,
              stillOpenAtHold: reliability.trickle.report.stillOpenAtHold ?? null,
              fdsPeak: reliability.trickle.fdsPeak,
              rssGrowthMB: reliability.trickle.rssGrowthMB,
              healthWorstMs: reliability.trickle.health.worstMs,
              normalCallComplete: reliability.trickle.normalCall.complete,
            },
      sigterm:
        reliability.sigterm === undefined
          ? null
          : { pass: reliability.sigterm.pass, graceMs: reliability.sigterm.graceMs, exitAfterMs: reliability.sigterm.exitAfterMs, overrunMs: reliability.sigterm.overrunMs },
      criteria: reliability.criteria,
    };
  }
  const recording = parts.recording;
  if (recording?.cpuMsPerCallSecond !== undefined) {
    summary.recording = { cpuMsPerCallSecond: recording.cpuMsPerCallSecond, bytesPerCallSecond: recording.bytesPerCallSecond, meetsTarget: recording.meetsTarget, target: recording.target };
  }
  return summary;
}

async function main() {
  const options = parseOptions(process.argv.slice(2), process.env);
  const missing = REQUIRED_BUILDS.filter((file) => !existsSync(`${ROOT}/${file}`));
  if (missing.length > 0) throw new Error(`not built: ${missing.join(', ')}; run "pnpm build" first (or "pnpm bench")`);
  // Other work on the machine distorts every number: sample it first and say so.
  const idleBefore = cpuTimes();
  await sleep(2000);
  const busyBefore = cpuPercentBetween(idleBefore, cpuTimes());
  const busiest = Math.max(0, ...Object.values(busyBefore).map((c) => c.busy));
  if (busiest > 10) log(`warning: the machine is busy before the bench (${JSON.stringify(busyBefore)}); results will be disturbed`);
  const started = performance.now();
  const document = {
    bench: 'stsgate',
    timestamp: new Date().toISOString(),
    quick: options.quick,
    parts: options.parts,
    git: gitInfo(),
    machine: { ...machineInfo(), cpuBusyPercentBeforeStart: busyBefore },
    summary: {},
    results: {},
    errors: {},
    durationSeconds: 0,
  };
  for (const part of options.parts) {
    if (interrupted) {
      document.errors[part] = 'not run: interrupted';
      continue;
    }
    const partStart = performance.now();
    log(`${part}${options.quick ? ' (quick)' : ''} ...`);
    try {
      document.results[part] = await runPart(part, options.quick);
      log(`${part} done in ${round((performance.now() - partStart) / 1000, 1)} s`);
    } catch (error) {
      document.errors[part] = error instanceof Error ? (error.stack ?? error.message) : String(error);
      log(`${part} FAILED: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  document.summary = summarize(document.results);
  const baseline = readBaseline();
  if (baseline !== undefined) {
    document.ratioToBaseline = compareToBaseline(document.summary, document.machine, baseline);
    process.stderr.write(formatRatioTable(document.ratioToBaseline));
  }
  document.durationSeconds = round((performance.now() - started) / 1000, 1);
  const text = `${JSON.stringify(document, null, 2)}\n`;
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(`${RESULTS_DIR}latest.json`, text);
  // A dated copy too, so a later partial run (--only) does not lose a full one.
  writeFileSync(`${RESULTS_DIR}run-${document.timestamp.replace(/[:.]/g, '-')}.json`, text);
  process.stdout.write(text);
  log(`wrote bench/results/latest.json (${document.durationSeconds} s)`);
  if (Object.keys(document.errors).length > 0) process.exitCode = 1;
}

main().catch((error) => {
  process.stderr.write(`[bench] ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 2;
});
