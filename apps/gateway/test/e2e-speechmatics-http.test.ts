import type { AddressInfo } from 'node:net';
import { request as httpRequest } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import {
  FIXTURE_TEXT,
  SPEECHMATICS_TTS_SAMPLE_RATE,
  concatPcm,
  fixturePath,
  goertzel,
  readWavAs8k,
  silence,
  startSpeechmaticsRtEmulator,
  startSpeechmaticsTtsEmulator,
} from '@stsgate/testkit';
import { buildGateway, builtinRegistry, resolveServeSetup } from '../src/index.js';

// `ASR_PROVIDER=speechmatics` / `TTS_PROVIDER=speechmatics` as `stsgate serve` composes them from the environment,
// over real HTTP, against the Speechmatics real-time (WebSocket v2) and TTS (HTTP) emulators.
const KEY = 'speechmatics-e2e-key';
const silent = () => pino({ level: 'silent' });
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startGateway(env: Record<string, string>) {
  const setup = resolveServeSetup({ SPEECHMATICS_API_KEY: KEY, LOG_LEVEL: 'silent', ...env }, builtinRegistry(), silent);
  const gateway = await buildGateway(setup.config, { logger: setup.logger, sts: setup.sts, asr: setup.asr, tts: setup.tts });
  await gateway.app.listen({ host: '127.0.0.1', port: 0 });
  cleanups.push(() => gateway.app.close());
  return { base: `http://127.0.0.1:${(gateway.app.server.address() as AddressInfo).port}`, setup };
}

async function startRt() {
  const rt = await startSpeechmaticsRtEmulator({ apiKey: KEY });
  cleanups.push(() => rt.close());
  return rt;
}

async function startTts(options: { chunkIntervalMs?: number } = {}) {
  const tts = await startSpeechmaticsTtsEmulator({ apiKey: KEY, ...options });
  cleanups.push(() => tts.close());
  return tts;
}

/**
 * Stream PCM to the ASR endpoint in 20 ms chunks at `speed` x real time; collect each response write. A response
 * that ends while audio is still being sent (an error answer) ends the upload too, as the caller would: the
 * connection is not left half-used, so closing the gateway does not wait for it.
 */
function streamToAsr(url: string, pcm: Int16Array, uuid: string, speed = 4) {
  return new Promise<{ status: number; contentType: string | undefined; connection: string | undefined; writes: string[] }>((resolve, reject) => {
    let answered = false;
    const req = httpRequest(url, { method: 'POST', headers: { 'content-type': 'application/octet-stream', 'x-uuid': uuid } }, (res) => {
      const writes: string[] = [];
      res.on('data', (data: Buffer) => writes.push(data.toString('utf8')));
      res.on('end', () => {
        answered = true;
        if (!req.writableEnded) req.destroy();
        resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'], connection: res.headers['connection'], writes });
      });
    });
    req.on('error', (error) => {
      if (!answered) reject(error);
    });
    void (async () => {
      const bytes = Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength);
      for (let i = 0; i < bytes.length && !answered; i += 320) {
        req.write(bytes.subarray(i, i + 320));
        await new Promise((r) => setTimeout(r, 20 / speed));
      }
      if (!answered) req.end();
    })();
  });
}

function ttsRequest(base: string, text: string) {
  return fetch(`${base}/text-to-speech-stream`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-uuid': 'tts-call' }, body: JSON.stringify({ text }) });
}

const asrEnv = (url: string) => ({ ASR_PROVIDER: 'speechmatics', SPEECHMATICS_RT_URL: url, SPEECHMATICS_LANGUAGE: 'en', SPEECHMATICS_END_OF_UTTERANCE_SILENCE: '0.6' });

describe('AVR HTTP ASR with Speechmatics real-time, end to end', () => {
  it('one utterance: one plain-text write equal to the fixture text; header auth; raw pcm_s16le 8 kHz', async () => {
    const rt = await startRt();
    const { base, setup } = await startGateway(asrEnv(rt.url));
    expect(setup.asr?.id).toBe('speechmatics');
    expect(setup.sts).toBeUndefined();
    expect(setup.port).toBe(6010);

    const pcm = concatPcm(readWavAs8k(fixturePath('greeting')), silence(1200));
    const { status, contentType, writes } = await streamToAsr(`${base}/speech-to-text-stream`, pcm, 'sm-asr-1');
    expect(status).toBe(200);
    expect(contentType).toMatch(/^text\/plain/);
    expect(writes).toEqual([FIXTURE_TEXT['greeting.wav']]);

    expect(rt.connections).toHaveLength(1);
    const connection = rt.connections[0];
    expect(connection?.authVia).toBe('header');
    expect(connection?.headers['authorization']).toBe(`Bearer ${KEY}`);
    expect(connection?.query['jwt']).toBeUndefined();
    expect(connection?.startRecognition?.audio_format).toEqual({ type: 'raw', encoding: 'pcm_s16le', sample_rate: 8000 });
    expect(connection?.transcriptionConfig?.language).toBe('en');
    expect(connection?.transcriptionConfig?.conversation_config?.end_of_utterance_silence_trigger).toBe(0.6);
    // Every byte the caller sent reached Speechmatics at 8 kHz (no resampling), then EndOfStream with the frame count.
    expect(connection?.audioBytes).toBe(pcm.byteLength);
    expect(connection?.endOfStream).toBe(connection?.audioFrames);
  });

  it('two utterances: two writes, in order, no end-of-stream marker', async () => {
    const rt = await startRt();
    const { base } = await startGateway(asrEnv(rt.url));
    const pcm = concatPcm(readWavAs8k(fixturePath('greeting')), silence(1200), readWavAs8k(fixturePath('question')), silence(1200));
    const { status, writes } = await streamToAsr(`${base}/speech-to-text-stream`, pcm, 'sm-asr-2');
    expect(status).toBe(200);
    expect(writes).toEqual([FIXTURE_TEXT['greeting.wav'], FIXTURE_TEXT['question.wav']]);
    expect(writes.join('')).not.toMatch(/<end>|<fin>/);
    expect(rt.connections).toHaveLength(1);
    expect(rt.connections[0]?.authVia).toBe('header');
  });

  it('a wrong key is a JSON 502 "ASR provider error" before any text, without the key in it, and no retry storm', async () => {
    const rt = await startRt();
    const wrongKey = 'not-the-speechmatics-key';
    const { base } = await startGateway({ ...asrEnv(rt.url), SPEECHMATICS_API_KEY: wrongKey });
    const refused = await streamToAsr(`${base}/speech-to-text-stream`, concatPcm(readWavAs8k(fixturePath('short')), silence(800)), 'sm-bad-key');
    expect(refused.status).toBe(502);
    expect(refused.contentType).toMatch(/^application\/json/);
    // The upload may still be running: the gateway closes the connection rather than keep a busy socket alive.
    expect(refused.connection).toBe('close');
    const body = refused.writes.join('');
    const message = (JSON.parse(body) as { message: string }).message;
    expect(message).toMatch(/^ASR provider error: /);
    expect(message).toMatch(/401/);
    expect(body).not.toContain(wrongKey);
    expect(rt.connections).toHaveLength(0);
    // Auth failures are not retried: one rejected upgrade.
    expect(rt.upgrades.length).toBe(1);
    expect(rt.upgrades[0]?.status).toBe(401);
  });
});

describe('AVR HTTP TTS with Speechmatics, end to end', () => {
  it('streams raw 8 kHz PCM as long as the synthesized 16 kHz audio; voice from SPEECHMATICS_TTS_VOICE, pcm_16000', async () => {
    const tts = await startTts();
    const { base, setup } = await startGateway({ TTS_PROVIDER: 'speechmatics', SPEECHMATICS_TTS_URL: tts.baseUrl, SPEECHMATICS_TTS_VOICE: 'theo' });
    expect(setup.tts?.id).toBe('speechmatics');
    expect(setup.port).toBe(6011);
    const text = 'Sure, which day works for you?';
    const response = await ttsRequest(base, text);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/octet-stream');
    const bytes = Buffer.from(await response.arrayBuffer());
    expect(bytes.length % 2).toBe(0);
    expect(bytes.subarray(0, 4).toString('latin1')).not.toBe('RIFF');

    expect(tts.requests).toHaveLength(1);
    const record = tts.requests[0];
    expect(record?.path).toBe('/generate/theo');
    expect(record?.voice).toBe('theo');
    expect(record?.outputFormat).toBe('pcm_16000');
    expect(record?.headers['authorization']).toBe(`Bearer ${KEY}`);
    expect(record?.body).toEqual({ text });
    expect(record?.completed).toBe(true);
    expect(record?.aborted).toBe(false);

    // 60 ms per character at 16 kHz; the gateway's 8 kHz stream lasts as long (± a few ms of resampler delay).
    const expectedMs = text.length * 60;
    expect(((record?.bytesSent ?? 0) / 2 / SPEECHMATICS_TTS_SAMPLE_RATE) * 1000).toBe(expectedMs);
    const samples = new Int16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2);
    const gatewayMs = (samples.length / 8000) * 1000;
    expect(Math.abs(gatewayMs - expectedMs)).toBeLessThanOrEqual(5);
    // It is theo's voice (120 Hz fundamental), not noise or a mis-rated stream.
    const body = samples.subarray(800, samples.length - 800);
    expect(goertzel(body, 120)).toBeGreaterThan(10 * goertzel(body, 240));
  });

  it('a client that leaves mid-stream aborts the upstream Speechmatics request', async () => {
    const tts = await startTts({ chunkIntervalMs: 40 });
    const { base } = await startGateway({ TTS_PROVIDER: 'speechmatics', SPEECHMATICS_TTS_URL: tts.baseUrl });
    let received = 0;
    const req = httpRequest(`${base}/text-to-speech-stream`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      res.once('data', (data: Buffer) => {
        received += data.length;
        req.destroy();
      });
    });
    req.on('error', () => undefined);
    req.end(JSON.stringify({ text: 'This is a rather long answer that takes many seconds to synthesize. '.repeat(4) }));
    const record = await tts.waitFor(() => tts.requests.find((r) => r.aborted), { timeoutMs: 5000 });
    expect(received).toBeGreaterThan(0);
    expect(record.voice).toBe('sarah'); // the adapter's default voice
    expect(record.completed).toBe(false);
    expect(record.chunksSent).toBeLessThan(20);
  });

  it('an emulator 401 (wrong key) is a JSON 502 "TTS provider error" before any audio, without the key in it', async () => {
    const tts = await startTts();
    const wrongKey = 'wrong-speechmatics-key';
    const { base } = await startGateway({ TTS_PROVIDER: 'speechmatics', SPEECHMATICS_TTS_URL: tts.baseUrl, SPEECHMATICS_API_KEY: wrongKey });
    const refused = await ttsRequest(base, 'Hello');
    expect(refused.status).toBe(502);
    expect(refused.headers.get('content-type')).toMatch(/^application\/json/);
    const text = await refused.text();
    const message = (JSON.parse(text) as { message: string }).message;
    expect(message).toMatch(/^TTS provider error: .*HTTP 401/);
    expect(text).not.toContain(wrongKey);
    expect(tts.requests).toHaveLength(1);
    expect(tts.requests[0]?.status).toBe(401);

    // The same for a 401 the service returns to a good key (a status fault).
    tts.queueFault({ action: { type: 'status', status: 401 } });
    const { base: goodBase } = await startGateway({ TTS_PROVIDER: 'speechmatics', SPEECHMATICS_TTS_URL: tts.baseUrl });
    const faulted = await ttsRequest(goodBase, 'Hello');
    expect(faulted.status).toBe(502);
    expect(((await faulted.json()) as { message: string }).message).toMatch(/^TTS provider error: .*HTTP 401/);
  });
});

describe('default port of the Speechmatics HTTP providers', () => {
  it('ASR_PROVIDER=speechmatics alone listens on 6010, TTS_PROVIDER=speechmatics alone on 6011; PORT still wins', () => {
    const registry = builtinRegistry();
    const asr = resolveServeSetup({ ASR_PROVIDER: 'speechmatics', SPEECHMATICS_API_KEY: KEY }, registry, silent);
    expect(asr.port).toBe(6010);
    expect(asr.asr?.id).toBe('speechmatics');
    expect(asr.sts).toBeUndefined();
    expect(asr.tts).toBeUndefined();
    const tts = resolveServeSetup({ TTS_PROVIDER: 'speechmatics', SPEECHMATICS_API_KEY: KEY }, registry, silent);
    expect(tts.port).toBe(6011);
    expect(tts.tts?.id).toBe('speechmatics');
    expect(tts.sts).toBeUndefined();
    expect(tts.asr).toBeUndefined();
    expect(resolveServeSetup({ ASR_PROVIDER: 'speechmatics', SPEECHMATICS_API_KEY: KEY, PORT: '7000' }, registry, silent).port).toBe(7000);
  });
});
