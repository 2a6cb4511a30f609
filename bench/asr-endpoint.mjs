// AVR's ASR HTTP endpoint at scale: the built gateway (`stsgate serve`, ASR_PROVIDER=soniox) in its own process
// pinned to core 1; in this process (core 0) the Soniox real-time STT emulator and N concurrent
// `POST /speech-to-text-stream` requests, each streaming caller audio (greeting.wav + 1.2 s of silence, looped)
// in 20 ms chunks at real time, as AVR Core does. Reports, per step: gateway CPU per stream-second, RSS, the
// utterances returned per stream against those sent, and the time from the end of an utterance's audio to its
// text (endpointing delay of the emulator, ~500 ms, included: compare steps, not the absolute value).
import { request as httpRequest } from 'node:http';
import { pathToFileURL } from 'node:url';
import { startGateway } from './lib/gateway-process.mjs';
import { percentile, procCpuMs, procRssKb, round, setAffinity, sleep, which } from './lib/util.mjs';
import { concatPcm, fixturePath, readWavAs8k, silence, startSonioxSttEmulator } from '../packages/testkit/dist/index.js';

const KEY = 'soniox-bench-key';

async function runStep(streams, seconds) {
  const stt = await startSonioxSttEmulator({ apiKey: KEY, requireHeaderAuth: true });
  const gateway = await startGateway({ ASR_PROVIDER: 'soniox', SONIOX_API_KEY: KEY, SONIOX_WEBSOCKET_URL: stt.url });
  const utterance = readWavAs8k(fixturePath('greeting'));
  const loop = concatPcm(utterance, silence(1200));
  const bytes = Buffer.from(loop.buffer, loop.byteOffset, loop.byteLength);
  const chunks = [];
  for (let i = 0; i < bytes.length; i += 320) chunks.push(bytes.subarray(i, i + 320));
  const utteranceEndChunk = Math.ceil((utterance.length * 2) / 320);

  const clients = [];
  for (let s = 0; s < streams; s++) {
    const client = { utteranceEnds: [], texts: [], offset: Math.floor(Math.random() * chunks.length), done: undefined };
    client.done = new Promise((resolve) => {
      client.req = httpRequest(`http://127.0.0.1:${gateway.port}/speech-to-text-stream`, { method: 'POST', headers: { 'content-type': 'application/octet-stream', 'x-uuid': `bench-${s}` } }, (res) => {
        res.on('data', (data) => client.texts.push({ at: performance.now(), text: data.toString('utf8') }));
        res.on('end', resolve);
        res.on('error', resolve);
      });
      client.req.on('error', resolve);
    });
    clients.push(client);
  }
  let tick = 0;
  const started = performance.now();
  const timer = setInterval(() => {
    const due = Math.floor((performance.now() - started) / 20);
    for (; tick < due; tick++) {
      for (const client of clients) {
        const index = (client.offset + tick) % chunks.length;
        client.req.write(chunks[index]);
        if (index === utteranceEndChunk - 1) client.utteranceEnds.push(performance.now());
      }
    }
  }, 5);
  await sleep(4000);
  const cpuBefore = procCpuMs(gateway.child.pid);
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const cpuAfter = procCpuMs(gateway.child.pid);
  const windowMs = performance.now() - t0;
  const rssKb = procRssKb(gateway.child.pid);
  clearInterval(timer);
  for (const client of clients) client.req.end();
  await Promise.race([Promise.all(clients.map((c) => c.done)), sleep(5000)]);

  const delays = [];
  let sent = 0;
  let returned = 0;
  for (const client of clients) {
    sent += client.utteranceEnds.length;
    returned += client.texts.length;
    for (const end of client.utteranceEnds) {
      const text = client.texts.find((t) => t.at >= end);
      if (text !== undefined && text.at - end < 5000) delays.push(text.at - end);
    }
  }
  delays.sort((a, b) => a - b);
  gateway.child.kill('SIGTERM');
  await new Promise((resolve) => gateway.child.once('exit', resolve));
  await stt.close();
  return {
    streams,
    pinnedToCore1: gateway.pinned,
    windowSeconds: round(windowMs / 1000, 1),
    gatewayCpuMsPerStreamSecond: round((cpuAfter - cpuBefore) / ((streams * windowMs) / 1000), 3),
    gatewayCpuPercentOfOneCore: round(((cpuAfter - cpuBefore) / windowMs) * 100, 1),
    gatewayRssMB: round(rssKb / 1024, 1),
    utterancesSent: sent,
    utterancesReturned: returned,
    textDelayAfterSpeechEndMs: delays.length === 0 ? null : { p50: round(percentile(delays, 50), 1), p99: round(percentile(delays, 99), 1) },
  };
}

export async function benchAsrEndpoint({ quick = false } = {}) {
  const steps = quick ? [10] : [10, 50, 100, 200];
  const seconds = quick ? 5 : 12;
  const results = [];
  for (const streams of steps) results.push(await runStep(streams, seconds));
  return {
    method: 'gateway (ASR_PROVIDER=soniox) pinned to core 1; Soniox STT emulator + N real-time POST /speech-to-text-stream streams in the bench process (core 0)',
    tasksetAvailable: which('taskset') !== undefined,
    steps: results,
  };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (which('taskset') !== undefined) setAffinity(process.pid, '0');
  const result = await benchAsrEndpoint({ quick: process.argv.includes('--quick') });
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}
