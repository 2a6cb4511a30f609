// The OpenAI Realtime path end to end: the built gateway (`stsgate serve`, STS_PROVIDER=openai) in its own
// process, pinned to core 1; in this process (core 0) the OpenAI Realtime GA emulator and N simulated AVR Core
// calls. Each call loops "question.wav, then 3.5 s of silence"; the emulator answers every caller turn with
// 2.5 s of agent audio streamed faster than real time (100 ms deltas every 15 ms), as the real service does.
// For each audio format (OPENAI_AUDIO_FORMAT=pcmu | pcm24) and call count it reports:
// - gateway CPU per call-second (utime+stime from /proc/<pid>/stat over a steady window), RSS;
// - added latency: emulator sends the first `response.output_audio.delta` of a reply -> the first AVR audio
//   frame of that reply reaches the client (same clock: both ends live in this process);
// - agent audio delivered on time (a playout buffer per call starting at each reply's first frame).
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';
import { startGateway } from './lib/gateway-process.mjs';
import { percentile, procCpuMs, procRssKb, round, setAffinity, sleep, which } from './lib/util.mjs';
import { encodeAvrAudio } from '../packages/core/dist/index.js';
import { concatPcm, fixturePath, readWavAs8k, silence, startOpenAiRealtimeEmulator } from '../packages/testkit/dist/index.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const WebSocket = createRequire(`${root}packages/testkit/package.json`)('ws');
const API_KEY = 'sk-bench-0123456789';
const REPLY_MS = 2500;

/** One step: `calls` concurrent calls for `seconds` of steady state. */
async function runStep(format, calls, seconds) {
  const firstDeltaSent = new Map(); // `${connectionIndex}:${replyIndex}` -> ms
  const emulator = await startOpenAiRealtimeEmulator({
    apiKey: API_KEY,
    script: { onUserTurn: () => ({ transcript: 'Agent reply.', audioMs: REPLY_MS }) },
  });
  // Time-stamp the first audio delta of each reply as the emulator sends it (bench-only instrumentation).
  const instrument = (connection, index) => {
    let replies = 0;
    let lastResponse;
    const push = connection.serverEvents.push.bind(connection.serverEvents);
    connection.serverEvents.push = (...events) => {
      for (const event of events) {
        if (event.type === 'response.output_audio.delta' && event.response_id !== lastResponse) {
          lastResponse = event.response_id;
          firstDeltaSent.set(`${index}:${replies++}`, performance.now());
        }
      }
      return push(...events);
    };
  };
  const gateway = await startGateway({ STS_PROVIDER: 'openai', OPENAI_API_KEY: API_KEY, OPENAI_REALTIME_URL: emulator.url, OPENAI_AUDIO_FORMAT: format, OPENAI_GREETING: 'false' });
  const caller = concatPcm(readWavAs8k(fixturePath('question')), silence(3500));
  const frames = [];
  for (let i = 0; i + 160 <= caller.length; i += 160) frames.push(encodeAvrAudio(caller.subarray(i, i + 160)));

  const clients = [];
  for (let c = 0; c < calls; c++) {
    const socket = new WebSocket(`ws://127.0.0.1:${gateway.port}/`);
    await new Promise((resolve, reject) => {
      socket.once('open', resolve);
      socket.once('error', reject);
    });
    socket.send(JSON.stringify({ type: 'init', uuid: `bench-${c}` }));
    // One call at a time until its provider connection exists: emulator connection c is call c.
    const connection = await emulator.waitFor(() => emulator.connections[c], { timeoutMs: 20_000 });
    instrument(connection, c);
    const client = { socket, connectionIndex: c, replies: [], offset: Math.floor(Math.random() * frames.length), lastFrameAt: -Infinity, late: 0, frames: 0, playout: 0 };
    socket.on('message', (data) => {
      const now = performance.now();
      if (!data.toString('utf8', 0, 20).includes('"audio"')) return;
      if (now - client.lastFrameAt > 300) {
        client.replies.push(now);
        client.playout = now; // a new reply starts playing on arrival
      }
      client.lastFrameAt = now;
      client.frames++;
      client.playout = Math.max(client.playout, now) + 20;
      if (client.playout - now < 0) client.late++;
    });
    clients.push(client);
  }

  let tick = 0;
  const started = performance.now();
  const timer = setInterval(() => {
    const due = Math.floor((performance.now() - started) / 20);
    for (; tick < due; tick++) for (const client of clients) client.socket.send(frames[(client.offset + tick) % frames.length]);
  }, 5);
  await sleep(6000); // warm-up: every call has had a turn
  const repliesBefore = clients.map((c) => c.replies.length);
  const cpuBefore = procCpuMs(gateway.child.pid);
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const cpuAfter = procCpuMs(gateway.child.pid);
  const windowMs = performance.now() - t0;
  const rssKb = procRssKb(gateway.child.pid);
  clearInterval(timer);

  const latencies = [];
  clients.forEach((client, c) => {
    client.replies.forEach((receivedAt, r) => {
      if (r < repliesBefore[c]) return;
      const sent = firstDeltaSent.get(`${client.connectionIndex}:${r}`);
      if (sent !== undefined && receivedAt >= sent) latencies.push(receivedAt - sent);
    });
  });
  latencies.sort((a, b) => a - b);
  const frames8k = clients.reduce((n, c) => n + c.frames, 0);
  for (const client of clients) client.socket.close();
  await sleep(300);
  gateway.child.kill('SIGTERM');
  await new Promise((resolve) => gateway.child.once('exit', resolve));
  await emulator.close();
  const callSeconds = (calls * windowMs) / 1000;
  return {
    format,
    calls,
    pinnedToCore1: gateway.pinned,
    windowSeconds: round(windowMs / 1000, 1),
    gatewayCpuMsPerCallSecond: round((cpuAfter - cpuBefore) / callSeconds, 3),
    gatewayCpuPercentOfOneCore: round(((cpuAfter - cpuBefore) / windowMs) * 100, 1),
    gatewayRssMB: round(rssKb / 1024, 1),
    addedLatencyMs: latencies.length === 0 ? null : { samples: latencies.length, p50: round(percentile(latencies, 50), 2), p99: round(percentile(latencies, 99), 2), max: round(latencies.at(-1), 2) },
    agentFramesReceived: frames8k,
    agentSecondsPerCall: round((frames8k * 0.02) / calls, 1),
  };
}

export { runStep };
export async function benchOpenAiPath({ quick = false } = {}) {
  const steps = quick ? [10] : [10, 50, 100];
  const seconds = quick ? 5 : 15;
  const results = [];
  for (const format of ['pcmu', 'pcm24']) for (const calls of steps) results.push(await runStep(format, calls, seconds));
  return {
    method:
      'gateway (STS_PROVIDER=openai) in its own process pinned to core 1; OpenAI Realtime GA emulator + simulated AVR Core calls in the bench process (core 0)',
    tasksetAvailable: which('taskset') !== undefined,
    replyMs: REPLY_MS,
    steps: results,
  };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (which('taskset') !== undefined) setAffinity(process.pid, '0');
  const result = await benchOpenAiPath({ quick: process.argv.includes('--quick') });
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}
