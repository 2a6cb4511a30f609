import type { AddressInfo } from 'node:net';
import { request as httpRequest } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import {
  FIXTURE_TEXT,
  concatPcm,
  fixturePath,
  readWavAs8k,
  silence,
  startSonioxSttEmulator,
  startSonioxTtsEmulator,
} from '@stsgate/testkit';
import { buildGateway, builtinRegistry, resolveServeSetup } from '../src/index.js';

// `ASR_PROVIDER=soniox` / `TTS_PROVIDER=soniox` as `stsgate serve` composes them, over real HTTP, against the
// Soniox emulators (STT requiring header auth, as Soniox will from 2027-01-15).
const KEY = 'soniox-e2e-key';
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startGateway(env: Record<string, string>) {
  const setup = resolveServeSetup({ SONIOX_API_KEY: KEY, LOG_LEVEL: 'silent', ...env }, builtinRegistry(), () => pino({ level: 'silent' }));
  const gateway = await buildGateway(setup.config, { logger: setup.logger, sts: setup.sts, asr: setup.asr, tts: setup.tts });
  await gateway.app.listen({ host: '127.0.0.1', port: 0 });
  cleanups.push(() => gateway.app.close());
  return { base: `http://127.0.0.1:${(gateway.app.server.address() as AddressInfo).port}`, setup };
}

/** Stream PCM to the ASR endpoint in 20 ms chunks at `speed` x real time; collect each response write. */
function streamToAsr(url: string, pcm: Int16Array, uuid: string, speed = 4) {
  return new Promise<{ status: number; writes: string[] }>((resolve, reject) => {
    const req = httpRequest(url, { method: 'POST', headers: { 'content-type': 'application/octet-stream', 'x-uuid': uuid } }, (res) => {
      const writes: string[] = [];
      res.on('data', (data: Buffer) => writes.push(data.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, writes }));
    });
    req.on('error', reject);
    void (async () => {
      const bytes = Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength);
      for (let i = 0; i < bytes.length; i += 320) {
        req.write(bytes.subarray(i, i + 320));
        await new Promise((r) => setTimeout(r, 20 / speed));
      }
      req.end();
    })();
  });
}

describe('AVR HTTP endpoints with Soniox, end to end', () => {
  it('ASR: one plain-text write per utterance, no <end> token, drop-in port 6018', async () => {
    const stt = await startSonioxSttEmulator({ apiKey: KEY, requireHeaderAuth: true });
    cleanups.push(() => stt.close());
    const { base, setup } = await startGateway({ ASR_PROVIDER: 'soniox', SONIOX_WEBSOCKET_URL: stt.url, SONIOX_SPEECH_RECOGNITION_LANGUAGE: 'en, it' });
    expect(setup.port).toBe(6018);
    expect(setup.sts).toBeUndefined();
    const pcm = concatPcm(readWavAs8k(fixturePath('greeting')), silence(1200), readWavAs8k(fixturePath('question')), silence(1200));
    const { status, writes } = await streamToAsr(`${base}/speech-to-text-stream`, pcm, 'asr-call-1');
    expect(status).toBe(200);
    expect(writes).toEqual([FIXTURE_TEXT['greeting.wav'], FIXTURE_TEXT['question.wav']]);
    expect(writes.join('')).not.toMatch(/<end>|<fin>/);
    const connection = stt.connections[0];
    expect(connection?.authVia).toBe('header');
    expect(connection?.config?.language_hints).toEqual(['en', 'it']);
  });

  it('TTS: streams raw 8 kHz PCM, and a bad key is a clear error before any audio', async () => {
    const tts = await startSonioxTtsEmulator({ apiKey: KEY });
    cleanups.push(() => tts.close());
    const { base, setup } = await startGateway({ TTS_PROVIDER: 'soniox', SONIOX_TTS_URL: tts.url });
    expect(setup.port).toBe(6011);
    const response = await fetch(`${base}/text-to-speech-stream`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-uuid': 'tts-call' }, body: '{"text":"Sure, which day works for you?"}' });
    expect(response.status).toBe(200);
    const bytes = Buffer.from(await response.arrayBuffer());
    expect(bytes.length).toBeGreaterThan(8000); // more than half a second of 8 kHz audio
    expect(bytes.length % 2).toBe(0);
    expect(bytes.subarray(0, 4).toString('latin1')).not.toBe('RIFF');

    const { base: badBase } = await startGateway({ TTS_PROVIDER: 'soniox', SONIOX_TTS_URL: tts.url, SONIOX_API_KEY: 'wrong-key' });
    const refused = await fetch(`${badBase}/text-to-speech-stream`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"text":"Hello"}' });
    expect(refused.status).toBeGreaterThanOrEqual(400);
    expect(((await refused.json()) as { message: string }).message).toMatch(/TTS provider error/);
  });

  it('ASR faults: a bad key is a JSON 502 before any text; a 503 mid-utterance is recovered without losing words', async () => {
    const stt = await startSonioxSttEmulator({ apiKey: KEY, requireHeaderAuth: true });
    cleanups.push(() => stt.close());
    const bad = await startGateway({ ASR_PROVIDER: 'soniox', SONIOX_WEBSOCKET_URL: stt.url, SONIOX_API_KEY: 'not-the-key' });
    const refused = await streamToAsr(`${bad.base}/speech-to-text-stream`, concatPcm(readWavAs8k(fixturePath('short')), silence(800)), 'bad-key');
    expect(refused.status).toBe(502);
    expect(JSON.parse(refused.writes.join('')).message).toMatch(/^ASR provider error: /);

    stt.queueFault({ at: { afterAudioMs: 1500 }, action: { type: 'error', code: 503 } });
    const { base } = await startGateway({ ASR_PROVIDER: 'soniox', SONIOX_WEBSOCKET_URL: stt.url });
    const pcm = concatPcm(readWavAs8k(fixturePath('greeting')), silence(1200));
    const { status, writes } = await streamToAsr(`${base}/speech-to-text-stream`, pcm, 'asr-503');
    expect(status).toBe(200);
    expect(writes).toEqual([FIXTURE_TEXT['greeting.wav']]);
    expect(stt.connections.filter((c) => c.headers['authorization'] === `Bearer ${KEY}`).length).toBeGreaterThanOrEqual(2);
  });
});
