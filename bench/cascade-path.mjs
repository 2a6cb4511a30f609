// The cascade path end to end (STS_PROVIDER=soniox: Soniox ASR + an LLM + Soniox TTS, with a local Silero VAD): the built
// gateway (`stsgate serve`) in its own process pinned to core 1; in this process (core 0) the testkit's Soniox STT,
// Soniox TTS (WebSocket, streaming text) and OpenAI REST (chat completions) emulators, with FIXED latencies, and N
// simulated AVR Core calls (`simulateCall`, real time).
//
// Each call says question.wav T times (3; 2 in --quick), one turn every CYCLE_MS (6.8 s: the question, then silence
// long enough for the whole reply), and listens to each reply to its end; nobody speaks over a reply, so any
// `interruption` is a bug. Call i of N starts its turns CYCLE_MS * i / N after the others (load spread evenly) and
// every call streams audio from the first call's start to the last call's end, so N calls are live the whole time.
//
// The gateway's own share of "caller end of speech -> first agent audio", per turn:
//
//   gatewayShareMs = receivedMs - (endpointMs + ASR_FINAL_DELAY_MS + LLM_FIRST_TOKEN_MS
//                                  + tokensBeforeFirstChunk * 1000 / LLM_TOKENS_PER_SECOND + TTS_FIRST_BYTE_MS)
//
//   receivedMs      simulateCall's responseLatencies[].receivedMs: the caller's speech end (end of the last voiced
//                   20 ms frame, call time) -> the reply's first AVR audio message reaches the simulated AVR Core
//   endpointMs      the Soniox STT emulator ends an utterance after ENDPOINT_DELAY_MS of unvoiced audio on its audio
//                   clock (10 ms frames, -40 dBFS): the call time at which the caller frame completing that silence
//                   is sent, minus the speech end. 480 ms for a 500 ms endpoint delay, because simulateCall sends
//                   the frame holding audio [t, t + 20 ms) at call time t. Computed from the audio, not assumed.
//   tokensBeforeFirstChunk
//                   the chunker ends the reply's first chunk ("Sure.") only once the next visible character has
//                   arrived: the index (from 0 = the first token) of the LLM token that completes the first chunk,
//                   found by running the cascade's own TextChunker on the emulator's token split (2 here)
//
// Everything else in receivedMs is the gateway's (and the wire's, and this process's event loop: an upper bound).
// The same turn is also cut into hops timed in this process (one clock) by instrumenting the emulators:
//   E0 speech end (simulator)  E1 caller frame completing the endpoint silence sent  E2 STT ends the utterance
//   E3 STT sends the final `<end>` response  E4 chat request arrives  E5 first content token written
//   E6 the token completing the first chunk written  E7 the TTS stream's first text arrives
//   E8 the TTS stream's first audio message sent  E9 first AVR audio frame received
// gateway hops: inbound E2-E1 (AVR frame -> gateway -> STT), asrToLlm E4-E3, chunkToTts E7-E6, ttsToAvr E9-E8;
// provider excess: the emulators' actual waits beyond their fixed latencies (E3-E2-150, E6-E4-340, E8-E7-150).
// gatewayShareMs = sum of the gateway hops + provider excess (the TTS excess includes any wait the TTS needed for
// text the gateway sent in a form it could not start on, e.g. a first chunk without a trailing space).
//
// "Every reply heard whole": each reply's audio played at AVR Core (played 20 ms ticks in the reply's window of the
// simulator's heard timeline) equals what the TTS emulator produced for that reply (its stream's audio bytes), within
// one frame; matched exactly: the scripted reply carries the call and turn ("reference c017 t2"). Agent frames on
// time: silent ticks inside a reply (between its first and last played tick) are underruns.
//
// Also: gateway CPU per call-second (utime + stime from /proc/<pid>/stat over the window in which all N calls are in
// their turn loop, Silero VAD inference of every caller frame included), RSS idle -> load, and the gateway's own
// per-turn histograms from /metrics (stsgate_turn_*_seconds) as a cross-check.
//
// Steps 10, 50, 100 calls, a fresh gateway and fresh emulators each, warmed up by 2 one-turn calls (about 40 s per
// step, 2 min in all); --quick: 10 calls, 2 turns (about 35 s).
// Run: pnpm build && node bench/cascade-path.mjs [--quick] [--steps=10,50] [--turns=3]
//      [--tts-chunk-ms=100] [--tts-rtf=0.5]       (diagnostics: TTS audio message size and pacing)
//      BENCH_GATEWAY_NODE_OPTIONS="..."  (NODE_OPTIONS of the gateway process only, e.g. --import=<a profiler preload>;
//      --cpu-prof is not allowed in NODE_OPTIONS: pass it in BENCH_GATEWAY_NODE_ARGS, see bench/lib/gateway-process.mjs)
// or node bench/run.mjs --only=cascade-path [--quick]
import { ServerResponse } from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { startGateway } from './lib/gateway-process.mjs';
import { cpuPercentBetween, cpuTimes, percentile, procCpuMs, procRssKb, round, setAffinity, sleep, which, windowLoad } from './lib/util.mjs';
import { TextChunker } from '../packages/cascade/dist/index.js';
import {
  FIXTURE_TEXT,
  concatPcm,
  detectSpeechSegments,
  fixturePath,
  readWavAs8k,
  silence,
  simulateCall,
  startOpenAiRestEmulator,
  startSonioxSttEmulator,
  startSonioxTtsEmulator,
} from '../packages/testkit/dist/index.js';

const KEY = 'soniox-bench-key-0123456789';
// Fixed provider latencies (emulator options), realistic for hosted services.
const ENDPOINT_DELAY_MS = 500; // Soniox endpointing: unvoiced audio that ends an utterance (the emulator's default)
const ASR_FINAL_DELAY_MS = 150; // Soniox STT: final tokens sent this long after the endpoint was decided
const LLM_FIRST_TOKEN_MS = 300; // chat completion: request -> first content token
const LLM_TOKENS_PER_SECOND = 50; // then one token every 20 ms
const TTS_FIRST_BYTE_MS = 150; // Soniox TTS WebSocket: first complete text -> first audio
const TTS_CHUNK_MS = 100; // audio per TTS message (the emulator's default)
const TTS_REAL_TIME_FACTOR = 0.5; // TTS audio streamed at 2x real time
const FRAME_MS = 20;
const LEAD_MS = 1500; // silence before a call's turn loop (connect, session set-up)
const CYCLE_MS = 6800; // one turn: question.wav (2.17 s) + silence for the whole reply (~1.4 s latency + ~2.5 s audio)
const WARM_UP_CALLS = 2;
const QUESTION = readWavAs8k(fixturePath('question'));
const QUESTION_TEXT = FIXTURE_TEXT['question.wav'];
/** The reply to turn `turn` of call `ref`: a short first sentence, then one that names the call and turn. */
const replyText = (ref, turn) => `Sure. We open at nine, reference ${ref} t${turn}.`;
const REPLY_TAG = /reference (\S+) t(\d+)\./;
const INSTRUCTIONS = 'You are the bench agent of call {{uuid}}.';
const CALL_IN_INSTRUCTIONS = /bench agent of call (\S+)\./;

/** The OpenAI REST emulator's token split with `latency.tokensPerSecond` (openai-rest.ts `splitTokens`). */
const emulatorTokens = (text) => text.match(/\s*[\p{L}\p{N}'’]+|\s*[^\s\p{L}\p{N}'’]|\s+$/gu) ?? [];

/** Index of the LLM token whose arrival lets the cascade's chunker emit the reply's first chunk. */
function tokensBeforeFirstChunk(text) {
  const chunker = new TextChunker({});
  const tokens = emulatorTokens(text);
  for (let i = 0; i < tokens.length; i++) if (chunker.push(tokens[i]).length > 0) return i;
  return tokens.length; // only at the end of the reply (flush)
}

/**
 * Call time (ms from the question's first sample) at which simulateCall sends the caller frame that completes the
 * STT emulator's endpoint silence, and the question's speech end as the simulator's detector sees it.
 */
function endpointTiming() {
  // The emulator: 10 ms frames at -40 dBFS, an utterance ends after ENDPOINT_DELAY_MS of unvoiced audio.
  const stt = detectSpeechSegments(QUESTION, { frameMs: 10, hangoverMs: ENDPOINT_DELAY_MS, thresholdDbfs: -40, minSpeechMs: 60 });
  const sim = detectSpeechSegments(QUESTION); // simulateCall's own detector (20 ms frames)
  const decidedAtAudioMs = stt.at(-1).endMs + ENDPOINT_DELAY_MS; // audio position at which the endpoint is decided
  const frameSentAtMs = (Math.ceil(decidedAtAudioMs / FRAME_MS) - 1) * FRAME_MS; // that frame holds [t, t + 20)
  return { speechEndMs: sim.at(-1).endMs, frameSentAtMs, endpointMs: frameSentAtMs - sim.at(-1).endMs };
}

const stats = (values, digits = 1) => {
  const sorted = Float64Array.from(values.filter((v) => Number.isFinite(v))).sort();
  if (sorted.length === 0) return null;
  const r = (v) => round(v, digits);
  return {
    n: sorted.length,
    p50: r(percentile(sorted, 50)),
    p95: r(percentile(sorted, 95)),
    p99: r(percentile(sorted, 99)),
    max: r(sorted[sorted.length - 1]),
    mean: r(sorted.reduce((a, b) => a + b, 0) / sorted.length),
  };
};

/** A caller of `turns` questions, `offsetMs` into the cycle; `padded`: then silence so every call lasts as long. */
function callerInput(turns, offsetMs, padded = true) {
  const block = concatPcm(QUESTION, silence(CYCLE_MS - QUESTION.length / 8));
  const parts = [silence(LEAD_MS + offsetMs)];
  for (let t = 0; t < turns; t++) parts.push(block);
  if (padded) parts.push(silence(CYCLE_MS - offsetMs));
  return concatPcm(...parts);
}

// ---- emulator instrumentation (this process's clock) -----------------------------------------------------------------

/** Wraps `array.push` so that `onPush(item)` runs for every item added. */
function onPush(array, handler) {
  const push = array.push.bind(array);
  array.push = (...items) => {
    for (const item of items) handler(item);
    return push(...items);
  };
}

/** Soniox STT: per connection, when each utterance was ended and when its `<end>` response went out. */
function instrumentStt(stt) {
  onPush(stt.connections, (connection) => {
    connection.bench = { endpoints: [], finals: [] };
    onPush(connection.utterances, () => connection.bench.endpoints.push(performance.now()));
    onPush(connection.sent, (message) => {
      if (Array.isArray(message.tokens) && message.tokens.some((t) => t.text === '<end>')) connection.bench.finals.push(performance.now());
    });
  });
}

/** OpenAI REST chat: arrival of each request, and the times of its body writes (0: role chunk, 1..: tokens). */
function instrumentRest(rest) {
  const byHeaders = new WeakMap();
  onPush(rest.requests, (record) => {
    record.bench = { arrivedAt: performance.now(), writes: [] };
    byHeaders.set(record.headers, record);
  });
  const write = ServerResponse.prototype.write;
  ServerResponse.prototype.write = function benchWrite(...args) {
    const record = this.req === undefined ? undefined : byHeaders.get(this.req.headers);
    if (record !== undefined) record.bench.writes.push(performance.now());
    return write.apply(this, args);
  };
  return () => {
    ServerResponse.prototype.write = write;
  };
}

/** Soniox TTS WebSocket: per stream, when its first text arrived and its first audio message went out. */
function instrumentTts(tts) {
  onPush(tts.streams, (stream) => {
    stream.bench = { createdAt: performance.now(), firstTextAt: undefined, firstAudioAt: undefined };
    onPush(stream.texts, (text) => {
      if (text.trim() !== '') stream.bench.firstTextAt ??= performance.now();
    });
    let audioMessages = stream.audioMessages;
    Object.defineProperty(stream, 'audioMessages', {
      enumerable: true,
      configurable: true,
      get: () => audioMessages,
      set: (value) => {
        if (audioMessages === 0 && value > 0) stream.bench.firstAudioAt = performance.now();
        audioMessages = value;
      },
    });
  });
}

// ---- /metrics -----------------------------------------------------------------------------------------------------------

const TURN_HISTOGRAMS = ['stsgate_turn_asr_final_seconds', 'stsgate_turn_llm_first_token_seconds', 'stsgate_turn_tts_first_audio_seconds', 'stsgate_response_latency_seconds'];

/** The turn histograms of a /metrics scrape: per name and provider, count, mean and bucket bounds of p50/p99 (ms). */
function turnHistograms(text) {
  const out = {};
  for (const name of TURN_HISTOGRAMS) {
    const series = {};
    for (const line of text.split('\n')) {
      if (!line.startsWith(name)) continue;
      const match = /^(\w+?)(_bucket|_sum|_count)\{([^}]*)\}\s+(\S+)$/.exec(line);
      if (match === null || match[1] !== name) continue;
      const labels = Object.fromEntries([...match[3].matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
      const entry = (series[labels.provider ?? ''] ??= { buckets: [], sum: 0, count: 0 });
      const value = Number(match[4]);
      if (match[2] === '_bucket') entry.buckets.push([labels.le === '+Inf' ? Infinity : Number(labels.le), value]);
      else if (match[2] === '_sum') entry.sum = value;
      else entry.count = value;
    }
    out[name] = Object.fromEntries(
      Object.entries(series).map(([provider, h]) => {
        const bound = (p) => {
          const rank = (p / 100) * h.count;
          const hit = h.buckets.sort((a, b) => a[0] - b[0]).find(([, cumulative]) => cumulative >= rank);
          return hit === undefined || !Number.isFinite(hit[0]) ? null : round(hit[0] * 1000, 0);
        };
        return [provider, { count: h.count, meanMs: h.count === 0 ? null : round((h.sum / h.count) * 1000, 1), p50AtMostMs: bound(50), p99AtMostMs: bound(99) }];
      }),
    );
  }
  return out;
}

/** A plain (unlabelled) gauge of a /metrics scrape, in ms (null when absent). */
function gaugeMs(text, name) {
  const match = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return match === null ? null : round(Number(match[1]) * 1000, 2);
}

// ---- one step -----------------------------------------------------------------------------------------------------------

let current; // the step's gateway and emulators, for cleanup on a signal

async function cleanup(step) {
  if (step === undefined) return;
  step.restoreWrite?.();
  const child = step.gateway?.child;
  if (child !== undefined && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await Promise.race([exited, sleep(5000)]);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  await Promise.allSettled([step.stt?.close(), step.tts?.close(), step.rest?.close()]);
}

/** One call's turns, matched with the emulators' records and timed hop by hop. */
function analyseCall(call, report, records, timing) {
  const { stt, chats, ttsStreams, toPerf } = records;
  const t0 = toPerf(report.startedAt);
  const connection = stt.connections.find((c) => c.config?.client_reference_id === call.uuid);
  const turns = [];
  const segments = report.callerSpeech;
  report.responseLatencies.forEach((latency, k) => {
    const turn = k + 1;
    const chat = chats.find((r) => r.ref === call.ref && r.turn === turn);
    const stream = ttsStreams.find((s) => s.ref === call.ref && s.turn === turn);
    const speechEnd = latency.speechEndMs;
    // The reply's window in the heard timeline: from the speech end to the next caller speech (or the call's end).
    const fromTick = Math.floor(speechEnd / FRAME_MS);
    const toTick = Math.min(report.heard.length / 160, segments[k + 1] === undefined ? Infinity : Math.floor(segments[k + 1].startMs / FRAME_MS));
    let played = 0;
    let first = -1;
    let last = -1;
    for (let tick = fromTick; tick < toTick; tick++) {
      let any = false;
      for (let i = tick * 160; i < tick * 160 + 160; i++) {
        if (report.heard[i] !== 0) {
          any = true;
          break;
        }
      }
      if (!any) continue;
      played++;
      if (first < 0) first = tick;
      last = tick;
    }
    const synthesizedMs = stream === undefined ? null : stream.audioBytes / 16;
    const heardMs = played * FRAME_MS;
    const e = {
      e0: t0 + speechEnd,
      e1: t0 + speechEnd + timing.endpointMs,
      e2: connection?.bench.endpoints[k],
      e3: connection?.bench.finals[k],
      e4: chat?.bench.arrivedAt,
      e5: chat?.bench.writes[1],
      e6: chat?.bench.writes[1 + timing.tokensBeforeFirstChunk],
      e7: stream?.bench.firstTextAt,
      e8: stream?.bench.firstAudioAt,
      e9: latency.receivedMs === null ? undefined : t0 + speechEnd + latency.receivedMs,
    };
    const hop = (a, b) => (e[a] === undefined || e[b] === undefined ? Number.NaN : e[b] - e[a]);
    turns.push({
      receivedMs: latency.receivedMs,
      heardMs: latency.heardMs,
      gatewayShareMs: latency.receivedMs === null ? Number.NaN : latency.receivedMs - timing.fixedMs,
      hops: {
        inbound: hop('e1', 'e2'),
        asrHold: hop('e2', 'e3'),
        asrToLlm: hop('e3', 'e4'),
        llmFirstToken: hop('e4', 'e5'),
        llmToFirstChunk: hop('e5', 'e6'),
        chunkToTts: hop('e6', 'e7'),
        ttsFirstAudio: hop('e7', 'e8'),
        ttsToAvr: hop('e8', 'e9'),
      },
      reply: {
        matched: chat !== undefined && stream !== undefined,
        synthesizedMs,
        heardMs,
        whole: synthesizedMs !== null && Math.abs(heardMs - synthesizedMs) < FRAME_MS,
        underrunTicks: first < 0 ? 0 : last - first + 1 - played,
        spoken: stream?.spoken ?? null,
      },
    });
  });
  return turns;
}

async function runStep(calls, turns, options) {
  const step = {};
  current = step;
  try {
    step.stt = await startSonioxSttEmulator({
      apiKey: KEY,
      vad: { endpointDelayMs: ENDPOINT_DELAY_MS },
      latency: { finalDelayMs: ASR_FINAL_DELAY_MS },
      // Every caller utterance is question.wav: a constant recogniser spares this process the fixture matching.
      recognize: () => QUESTION_TEXT,
    });
    step.tts = await startSonioxTtsEmulator({
      apiKey: KEY,
      chunkMs: options.ttsChunkMs,
      latency: { firstByteMs: TTS_FIRST_BYTE_MS, realTimeFactor: options.ttsRealTimeFactor },
    });
    step.rest = await startOpenAiRestEmulator({
      apiKey: KEY,
      latency: { firstTokenMs: LLM_FIRST_TOKEN_MS, tokensPerSecond: LLM_TOKENS_PER_SECOND },
      chat: (request) => {
        const ref = CALL_IN_INSTRUCTIONS.exec(String(request.messages[0]?.content ?? ''))?.[1] ?? 'unknown';
        return { text: replyText(ref, request.messages.filter((m) => m.role === 'user').length) };
      },
    });
    instrumentStt(step.stt);
    step.restoreWrite = instrumentRest(step.rest);
    instrumentTts(step.tts);
    const { stt, tts, rest } = step;
    const env = {
      STS_PROVIDER: 'soniox',
      LLM_PROVIDER: 'openai',
      SONIOX_API_KEY: KEY,
      SONIOX_WEBSOCKET_URL: stt.url,
      SONIOX_TTS_URL: tts.url,
      SONIOX_TTS_WEBSOCKET_URL: tts.wsUrl,
      OPENAI_API_KEY: KEY,
      OPENAI_BASE_URL: rest.baseUrl,
      SONIOX_GREETING: 'false',
      SONIOX_INSTRUCTIONS: INSTRUCTIONS,
      ...(process.env.BENCH_GATEWAY_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_GATEWAY_NODE_OPTIONS } : {}),
    };
    step.gateway = await startGateway(env);
    const { gateway } = step;
    const url = `ws://127.0.0.1:${gateway.port}/`;

    // Warm-up (JIT, VAD model, connections): short calls of one turn each.
    const warm = await Promise.all(
      Array.from({ length: WARM_UP_CALLS }, (_, i) => simulateCall({ url, uuid: `w${String(i).padStart(3, '0')}`, input: callerInput(1, 0, false), tailMs: 300 })),
    );
    const warmAudio = warm.reduce((n, r) => n + r.received.audioMs, 0);
    if (warmAudio === 0) throw new Error(`cascade-path: no agent audio during the warm-up (errors: ${JSON.stringify(warm.flatMap((r) => r.errors))})`);
    await sleep(500);
    const rssIdleKb = procRssKb(gateway.child.pid);

    // The calls: call i starts its turns CYCLE_MS * i / calls into the cycle; all of them run equally long.
    const callList = Array.from({ length: calls }, (_, i) => ({
      uuid: `c${String(i).padStart(3, '0')}`,
      ref: `c${String(i).padStart(3, '0')}`,
      offsetMs: Math.round((CYCLE_MS * i) / calls / FRAME_MS) * FRAME_MS,
    }));
    const launchStart = performance.now();
    const pending = [];
    for (const call of callList) {
      pending.push(simulateCall({ url, uuid: call.uuid, input: callerInput(turns, call.offsetMs), tailMs: 300 }));
      await sleep(5);
    }
    const launchEnd = performance.now();
    // Steady window: every call is in its turn loop (last call's loop started, first call's loop not ended).
    const windowStart = launchEnd + LEAD_MS + callList.at(-1).offsetMs;
    const windowEnd = launchStart + LEAD_MS + turns * CYCLE_MS;
    if (windowEnd - windowStart < 2000) throw new Error(`cascade-path: steady window too short (${round(windowEnd - windowStart)} ms); use more turns`);
    await sleep(windowStart - performance.now());
    const metricsUrl = `http://127.0.0.1:${gateway.port}/metrics`;
    await (await fetch(metricsUrl)).text(); // resets the gateway's event-loop delay histogram
    const loopDelay = monitorEventLoopDelay({ resolution: 10 });
    loopDelay.enable();
    const benchCpuBefore = process.cpuUsage();
    const machineBefore = cpuTimes();
    const cpuBefore = procCpuMs(gateway.child.pid);
    const t0 = performance.now();
    await sleep(windowEnd - performance.now());
    const cpuAfter = procCpuMs(gateway.child.pid);
    const windowMs = performance.now() - t0;
    const machine = cpuPercentBetween(machineBefore, cpuTimes());
    const benchCpu = process.cpuUsage(benchCpuBefore);
    loopDelay.disable();
    const rssLoadKb = procRssKb(gateway.child.pid);
    const windowMetrics = await (await fetch(metricsUrl)).text();
    const reports = await Promise.all(pending);
    const metricsText = await (await fetch(metricsUrl)).text();
    const gatewayAlive = gateway.child.exitCode === null && gateway.child.signalCode === null;

    // Match the emulators' records to calls and turns.
    const chats = rest.requests
      .filter((r) => r.route === 'chat')
      .map((r) => {
        const messages = r.body?.messages ?? [];
        r.ref = CALL_IN_INSTRUCTIONS.exec(String(messages[0]?.content ?? ''))?.[1];
        r.turn = messages.filter((m) => m.role === 'user').length;
        return r;
      });
    const ttsStreams = tts.streams.map((s) => {
      const match = REPLY_TAG.exec(s.texts.join(' '));
      s.ref = match?.[1];
      s.turn = match === null ? undefined : Number(match[2]);
      return s;
    });
    // simulateCall's startedAt (ISO, ms) -> this process's performance.now() clock.
    const clockOffset = Date.now() - performance.timeOrigin - performance.now();
    const toPerf = (iso) => Date.parse(iso) + 0.5 - performance.timeOrigin - clockOffset;
    const records = { stt, chats, ttsStreams, toPerf };
    const all = [];
    callList.forEach((call, i) => all.push(...analyseCall(call, reports[i], records, options.timing)));

    const share = all.map((t) => t.gatewayShareMs);
    const hopNames = Object.keys(all[0]?.hops ?? {});
    const hops = Object.fromEntries(hopNames.map((name) => [name, stats(all.map((t) => t.hops[name]))]));
    const gatewayHops = all.map((t) => t.hops.inbound + t.hops.asrToLlm + t.hops.chunkToTts + t.hops.ttsToAvr);
    const providerExcess = all.map(
      (t) =>
        t.hops.asrHold - ASR_FINAL_DELAY_MS + (t.hops.llmFirstToken + t.hops.llmToFirstChunk - (LLM_FIRST_TOKEN_MS + options.timing.tokensMs)) + (t.hops.ttsFirstAudio - TTS_FIRST_BYTE_MS),
    );
    const replies = all.map((t) => t.reply);
    const notWhole = replies.filter((r) => !r.whole);
    const playedTicks = replies.reduce((n, r) => n + r.heardMs / FRAME_MS, 0);
    const underrunTicks = replies.reduce((n, r) => n + r.underrunTicks, 0);
    const sum = (f) => reports.reduce((n, r) => n + f(r), 0);
    const callSeconds = (calls * windowMs) / 1000;
    const gatewayCpuMs = cpuAfter - cpuBefore;
    const shareStats = stats(share);
    return {
      calls,
      turnsPerCall: turns,
      pinnedToCore1: gateway.pinned,
      gatewayAlive,
      windowSeconds: round(windowMs / 1000, 1),
      gatewayShareMs: shareStats,
      meetsTarget: shareStats !== null && shareStats.n === calls * turns && shareStats.p50 <= 10 && shareStats.p99 <= 30,
      receivedMs: stats(all.map((t) => t.receivedMs)),
      heardMs: stats(all.map((t) => t.heardMs)),
      gatewayHopsMs: stats(gatewayHops),
      providerExcessMs: stats(providerExcess),
      hopsMs: hops,
      gatewayCpuMsPerCallSecond: round(gatewayCpuMs / callSeconds, 3),
      gatewayCpuPercentOfOneCore: round((gatewayCpuMs / windowMs) * 100, 1),
      // The gateway's own event-loop delay over the window (its /metrics; includes the 10 ms sampling interval).
      gatewayEventLoopDelayP99Ms: gaugeMs(windowMetrics, 'stsgate_nodejs_eventloop_lag_p99_seconds'),
      gatewayEventLoopDelayMaxMs: gaugeMs(windowMetrics, 'stsgate_nodejs_eventloop_lag_max_seconds'),
      gatewayRssIdleMB: round(rssIdleKb / 1024, 1),
      gatewayRssMB: round(rssLoadKb / 1024, 1),
      gatewayRssPerCallKB: round((rssLoadKb - rssIdleKb) / calls, 0),
      replies: {
        expected: calls * turns,
        measured: all.length,
        matchedToEmulators: replies.filter((r) => r.matched).length,
        whole: replies.length - notWhole.length,
        allWhole: all.length === calls * turns && notWhole.length === 0,
        notWhole: notWhole.slice(0, 5).map((r) => ({ synthesizedMs: r.synthesizedMs, heardMs: r.heardMs, spoken: r.spoken })),
        synthesizedMs: stats(replies.map((r) => r.synthesizedMs ?? Number.NaN), 0),
        chatRequests: chats.filter((r) => r.ref?.startsWith('c')).length,
        ttsStreams: ttsStreams.filter((s) => s.ref?.startsWith('c')).length,
        ttsSpokenPiecesFirstReply: ttsStreams.find((s) => s.ref === 'c000' && s.turn === 1)?.spoken ?? null,
        ttsTextsFirstReply: ttsStreams.find((s) => s.ref === 'c000' && s.turn === 1)?.texts ?? null,
      },
      agentFramesOnTime: {
        playedFrames: playedTicks,
        underrunFrames: underrunTicks,
        onTimePercent: playedTicks === 0 ? null : round((playedTicks / (playedTicks + underrunTicks)) * 100, 2),
      },
      avr: {
        agentAudioSecondsPerCall: round(sum((r) => r.received.audioMs) / 1000 / calls, 2),
        unplayedAgentMs: sum((r) => r.unplayedAgentMs),
        interruptions: sum((r) => r.interruptions.length),
        bargeIns: sum((r) => r.bargeIns.length),
        errors: sum((r) => r.errors.length),
        errorMessages: [...new Set(reports.flatMap((r) => r.errors.map((e) => e.message)))].slice(0, 5),
        irregularFrames: sum((r) => r.received.irregularFrames),
        protocolProblems: sum((r) => r.protocolProblems.length),
        callsNotCompleted: reports.filter((r) => r.endReason !== 'completed').length,
        userTranscripts: sum((r) => r.transcripts.filter((t) => t.role === 'user').length),
      },
      // `finalize` messages the gateway sent to the STT: the ASR ends every turn itself here, so each one is a turn
      // detector fallback timer that fired after the turn had already ended (a VAD speech end arriving late).
      sttFinalizeMessages: stt.connections.reduce((n, c) => n + c.finalizeCount, 0),
      // The gateway's per-turn histograms (whole step, the warm-up's turns included: counts should equal `turns`).
      metrics: { turns: calls * turns + WARM_UP_CALLS, ...turnHistograms(metricsText) },
      // Other work on a core (beyond the gateway on core 1, beyond this process on core 0) above 15%: disturbed.
      disturbed:
        (machine.cpu1?.busy ?? 0) - (gateway.pinned ? (gatewayCpuMs / windowMs) * 100 : 0) > 15 ||
        (machine.cpu0?.busy ?? 0) - ((benchCpu.user + benchCpu.system) / 1000 / windowMs) * 100 > 15,
      ...windowLoad({ machine, gatewayPinned: gateway.pinned, gatewayCpuMs, benchCpu, loopDelay, windowMs }),
    };
  } finally {
    await cleanup(step);
    current = undefined;
  }
}

export { runStep };
export async function benchCascadePath({ quick = false, steps, turns, ttsChunkMs = TTS_CHUNK_MS, ttsRealTimeFactor = TTS_REAL_TIME_FACTOR } = {}) {
  const stepList = steps ?? (quick ? [10] : [10, 50, 100]);
  const turnCount = turns ?? (quick ? 2 : 3);
  const endpoint = endpointTiming();
  const first = tokensBeforeFirstChunk(replyText('c000', 1));
  const tokensMs = (first * 1000) / LLM_TOKENS_PER_SECOND;
  const fixedMs = endpoint.endpointMs + ASR_FINAL_DELAY_MS + LLM_FIRST_TOKEN_MS + tokensMs + TTS_FIRST_BYTE_MS;
  const timing = { endpointMs: endpoint.endpointMs, tokensBeforeFirstChunk: first, tokensMs, fixedMs };
  const results = [];
  for (const calls of stepList) {
    process.stderr.write(`[bench] cascade-path: ${calls} calls x ${turnCount} turns ...\n`);
    results.push(await runStep(calls, turnCount, { timing, ttsChunkMs, ttsRealTimeFactor }));
  }
  const problems = [];
  for (const r of results) {
    const at = `${r.calls} calls`;
    if (!r.gatewayAlive) problems.push(`${at}: the gateway exited`);
    if (r.replies.measured !== r.replies.expected) problems.push(`${at}: ${r.replies.measured} of ${r.replies.expected} turns answered`);
    if (!r.replies.allWhole) problems.push(`${at}: ${r.replies.measured - r.replies.whole} replies not heard whole`);
    if (r.replies.matchedToEmulators !== r.replies.measured) problems.push(`${at}: ${r.replies.measured - r.replies.matchedToEmulators} replies not matched to a chat request and a TTS stream`);
    for (const key of ['interruptions', 'bargeIns', 'errors', 'irregularFrames', 'protocolProblems', 'callsNotCompleted']) {
      if (r.avr[key] > 0) problems.push(`${at}: ${r.avr[key]} ${key}`);
    }
    if (r.agentFramesOnTime.underrunFrames > 0) problems.push(`${at}: ${r.agentFramesOnTime.underrunFrames} agent frames late (playout underruns inside replies)`);
    if (!r.meetsTarget) problems.push(`${at}: gateway share p50 ${r.gatewayShareMs?.p50} ms / p99 ${r.gatewayShareMs?.p99} ms (target p50 <= 10, p99 <= 30)`);
  }
  return {
    method:
      'gateway (STS_PROVIDER=soniox, LLM_PROVIDER=openai: Soniox STT + OpenAI chat + Soniox TTS WebSocket, Silero VAD) in its own process pinned to core 1; ' +
      'Soniox STT/TTS and OpenAI REST emulators with fixed latencies + simulated AVR Core calls (simulateCall, real time) in the bench process (core 0)',
    tasksetAvailable: which('taskset') !== undefined,
    providerLatencies: {
      endpointDelayMs: ENDPOINT_DELAY_MS,
      asrFinalDelayMs: ASR_FINAL_DELAY_MS,
      llmFirstTokenMs: LLM_FIRST_TOKEN_MS,
      llmTokensPerSecond: LLM_TOKENS_PER_SECOND,
      ttsFirstByteMs: TTS_FIRST_BYTE_MS,
      ttsChunkMs,
      ttsRealTimeFactor,
    },
    subtracted: {
      endpointMs: endpoint.endpointMs,
      asrFinalDelayMs: ASR_FINAL_DELAY_MS,
      llmFirstTokenMs: LLM_FIRST_TOKEN_MS,
      tokensBeforeFirstChunk: first,
      tokensBeforeFirstChunkMs: tokensMs,
      ttsFirstByteMs: TTS_FIRST_BYTE_MS,
      totalMs: fixedMs,
      formula: 'gatewayShareMs = receivedMs - (endpointMs + asrFinalDelayMs + llmFirstTokenMs + tokensBeforeFirstChunk * 1000 / llmTokensPerSecond + ttsFirstByteMs)',
    },
    reply: replyText('c000', 1),
    cycleMs: CYCLE_MS,
    target: 'gateway share of caller end of speech -> first agent audio p50 <= 10 ms, p99 <= 30 ms at 100 calls; every reply heard whole; no interruption',
    problems,
    steps: results,
  };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const onSignal = (signal) => {
    void cleanup(current).finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  if (which('taskset') !== undefined) setAffinity(process.pid, '0');
  const arg = (name) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const result = await benchCascadePath({
    quick: process.argv.includes('--quick'),
    ...(arg('steps') === undefined ? {} : { steps: arg('steps').split(',').map(Number) }),
    ...(arg('turns') === undefined ? {} : { turns: Number(arg('turns')) }),
    ...(arg('tts-chunk-ms') === undefined ? {} : { ttsChunkMs: Number(arg('tts-chunk-ms')) }),
    ...(arg('tts-rtf') === undefined ? {} : { ttsRealTimeFactor: Number(arg('tts-rtf')) }),
  });
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}
