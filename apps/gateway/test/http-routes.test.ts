import type { AddressInfo } from 'node:net';
import { request as httpRequest } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import {
  AsyncQueue,
  ProviderError,
  type AsrAdapter,
  type AsrEvent,
  type AsrStream,
  type CallContext,
  type SampleRate,
  type TtsAdapter,
  type TtsRequest,
} from '@stsgate/core';
import { buildGateway, gatewayConfig, resolveServeSetup, builtinRegistry, type Gateway } from '../src/index.js';

const logger = pino({ level: 'silent' });
const gateways: Gateway[] = [];
afterEach(async () => {
  await Promise.all(gateways.splice(0).map((g) => g.app.close()));
});

/** An ASR provider the test drives: every 1600 samples received (200 ms) is one "utterance". */
class ScriptedAsrStream implements AsrStream {
  readonly events = new AsyncQueue<AsrEvent>();
  readonly received: number[] = [];
  ended = false;
  closed = 0;
  private pendingSamples = 0;
  constructor(
    readonly call: CallContext,
    readonly inputSampleRate: SampleRate,
  ) {}
  pushAudio(samples: Int16Array): void {
    for (const sample of samples) this.received.push(sample);
    this.pendingSamples += samples.length;
    while (this.pendingSamples >= 1600) {
      this.pendingSamples -= 1600;
      this.events.push({ type: 'partial', text: 'ignored partial' });
      this.events.push({ type: 'end_of_utterance', text: ` utterance ${Math.floor(this.received.length / 1600)}` });
    }
  }
  finalize(): void {}
  endInput(): void {
    this.ended = true;
    if (this.pendingSamples > 0) this.events.push({ type: 'end_of_utterance', text: 'tail' });
    this.events.end();
  }
  async close(): Promise<void> {
    this.closed++;
    this.events.end();
  }
}

class ScriptedAsr implements AsrAdapter {
  readonly id = 'scripted';
  readonly streams: ScriptedAsrStream[] = [];
  readonly capabilities;
  constructor(
    private readonly rate: SampleRate = 8000,
    private readonly failWith?: unknown,
  ) {
    this.capabilities = { inputSampleRates: [rate], encodings: ['pcm_s16le' as const], interimResults: true, endpointing: true, finalize: true, diarization: false };
  }
  async open(call: CallContext): Promise<AsrStream> {
    if (this.failWith !== undefined) throw this.failWith;
    const stream = new ScriptedAsrStream(call, this.rate);
    this.streams.push(stream);
    return stream;
  }
}

class ScriptedTts implements TtsAdapter {
  readonly id = 'scripted';
  readonly capabilities;
  readonly calls: CallContext[] = [];
  readonly requests: TtsRequest[] = [];
  constructor(
    private readonly rate: SampleRate = 8000,
    private readonly options: { chunks?: number; failBeforeAudio?: unknown; delayMs?: number } = {},
  ) {
    this.capabilities = { outputSampleRates: [rate], encodings: ['pcm_s16le' as const], streamingInput: false };
  }
  synthesize(request: TtsRequest, call: CallContext) {
    this.calls.push(call);
    this.requests.push(request);
    const { chunks = 5, failBeforeAudio, delayMs = 0 } = this.options;
    const rate = this.rate;
    return {
      outputSampleRate: rate,
      audio: (async function* () {
        if (failBeforeAudio !== undefined) throw failBeforeAudio;
        for (let i = 0; i < chunks; i++) {
          if (call.signal.aborted) return;
          if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
          yield new Int16Array(rate / 10).fill(i + request.text.length);
        }
      })(),
    };
  }
}

async function start(deps: { asr?: AsrAdapter; tts?: TtsAdapter }) {
  const gateway = await buildGateway(gatewayConfig(), {
    logger,
    ...(deps.asr ? { asr: { id: 'scripted', adapter: deps.asr } } : {}),
    ...(deps.tts ? { tts: { id: 'scripted', adapter: deps.tts } } : {}),
  });
  await gateway.app.listen({ host: '127.0.0.1', port: 0 });
  gateways.push(gateway);
  return `http://127.0.0.1:${(gateway.app.server.address() as AddressInfo).port}`;
}

function pcmBody(samples: number, chunkBytes: number): Buffer[] {
  const pcm = Buffer.alloc(samples * 2);
  for (let i = 0; i < samples; i++) pcm.writeInt16LE((i % 1000) - 500, i * 2);
  const chunks: Buffer[] = [];
  for (let i = 0; i < pcm.length; i += chunkBytes) chunks.push(pcm.subarray(i, i + chunkBytes));
  return chunks;
}

/** POST a chunked body; resolves with status, headers and the body chunks as they arrived. */
function postChunked(url: string, chunks: Buffer[], headers: Record<string, string> = {}, gapMs = 2) {
  return new Promise<{ status: number; writes: string[] }>((resolve, reject) => {
    const req = httpRequest(url, { method: 'POST', headers: { 'content-type': 'application/octet-stream', ...headers } }, (res) => {
      const writes: string[] = [];
      res.on('data', (data: Buffer) => writes.push(data.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, writes }));
    });
    req.on('error', reject);
    void (async () => {
      for (const chunk of chunks) {
        req.write(chunk);
        await new Promise((r) => setTimeout(r, gapMs));
      }
      req.end();
    })();
  });
}

describe('POST /speech-to-text-stream', () => {
  it('streams the PCM body to the ASR and answers one plain-text write per utterance', async () => {
    const asr = new ScriptedAsr();
    const base = await start({ asr });
    const chunks = pcmBody(4000, 321); // odd-sized chunks: samples split across chunk boundaries
    const { status, writes } = await postChunked(`${base}/speech-to-text-stream`, chunks, { 'x-uuid': 'call-7' });
    expect(status).toBe(200);
    expect(writes.join('|')).toBe('utterance 1|utterance 2|tail');
    const [stream] = asr.streams;
    expect(stream?.call.callId).toBe('call-7');
    expect(stream?.received).toHaveLength(4000);
    expect(stream?.received.slice(0, 3)).toEqual([-500, -499, -498]);
    expect(stream?.received[3999]).toBe(((3999 % 1000) - 500));
    expect(stream?.ended).toBe(true);
    expect(stream?.closed).toBe(1);
  });

  it('handles several requests for the same call in a row, and an empty body without opening the provider', async () => {
    const asr = new ScriptedAsr();
    const base = await start({ asr });
    const empty = await postChunked(`${base}/speech-to-text-stream`, [], { 'x-uuid': 'same' });
    expect(empty).toEqual({ status: 200, writes: [] });
    expect(asr.streams).toHaveLength(0);
    for (let i = 0; i < 3; i++) {
      const { status, writes } = await postChunked(`${base}/speech-to-text-stream`, pcmBody(1600, 640), { 'x-uuid': 'same' });
      expect(status).toBe(200);
      expect(writes).toEqual(['utterance 1']);
    }
    expect(asr.streams.map((s) => s.call.callId)).toEqual(['same', 'same', 'same']);
  });

  it('resamples to the rate the ASR asks for', async () => {
    const asr = new ScriptedAsr(16000);
    const base = await start({ asr });
    await postChunked(`${base}/speech-to-text-stream`, pcmBody(8000, 640));
    const received = asr.streams[0]?.received.length ?? 0;
    expect(received).toBeGreaterThan(15_500);
    expect(received).toBeLessThanOrEqual(16_000);
  });

  it('answers a provider failure before any text with a JSON 502', async () => {
    const base = await start({ asr: new ScriptedAsr(8000, new ProviderError('scripted', 'auth', 'invalid API key')) });
    const response = await fetch(`${base}/speech-to-text-stream`, { method: 'POST', body: Buffer.alloc(640), headers: { 'content-type': 'application/octet-stream' } });
    expect(response.status).toBe(502);
    expect(await response.json()).toEqual({ message: 'ASR provider error: invalid API key' });
  });

  it('closes the provider stream when the client goes away mid-body', async () => {
    const asr = new ScriptedAsr();
    const base = await start({ asr });
    const req = httpRequest(`${base}/speech-to-text-stream`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' } });
    req.on('error', () => undefined);
    req.write(Buffer.alloc(640));
    await until(() => asr.streams.length === 1);
    req.destroy();
    await until(() => asr.streams[0]?.closed === 1);
    expect(asr.streams[0]?.ended).toBe(false);
  });
});

describe('POST /text-to-speech-stream', () => {
  it('streams raw 8 kHz PCM', async () => {
    const tts = new ScriptedTts();
    const base = await start({ tts });
    const response = await fetch(`${base}/text-to-speech-stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-uuid': 'tts-1' },
      body: JSON.stringify({ text: 'Hello' }),
    });
    expect(response.status).toBe(200);
    const body = Buffer.from(await response.arrayBuffer());
    expect(body.length).toBe(5 * 800 * 2);
    expect(body.readInt16LE(0)).toBe(5);
    expect(body.subarray(0, 4).toString('ascii')).not.toBe('RIFF');
    expect(tts.calls[0]?.callId).toBe('tts-1');
  });

  it("takes the optional fields AVR's TTS containers accept: voice, language, model, sample_rate", async () => {
    const tts = new ScriptedTts();
    const base = await start({ tts });
    const post = (body: unknown) => fetch(`${base}/text-to-speech-stream`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const response = await post({ text: 'Hello', voice: 'Maya', language: 'it', model: 'tts-rt-v1', audio_format: 'pcm_s16le', sample_rate: 16000, bitrate: 64000 });
    expect(response.status).toBe(200);
    expect(tts.requests[0]).toEqual({ text: 'Hello', voice: 'Maya', language: 'it', model: 'tts-rt-v1' });
    // 5 chunks of 100 ms at 8 kHz, resampled to the 16 kHz asked for.
    expect((await response.arrayBuffer()).byteLength / 2).toBe(8000);
    expect((await post({ text: 'Hi', sampleRate: '8000', audioFormat: 'pcm_s16le' })).status).toBe(200);
    const refused = await post({ text: 'Hi', audio_format: 'mp3' });
    expect(refused.status).toBe(400);
    expect(await refused.json()).toEqual({ message: 'expected a JSON body {"text": "..."} with non-empty text (audio_format: only pcm_s16le (raw PCM, what AVR Core plays))' });
    expect((await post({ text: 'Hi', sample_rate: 11025 })).status).toBe(400);
  });

  it('resamples a 24 kHz provider to 8 kHz', async () => {
    const base = await start({ tts: new ScriptedTts(24000) });
    const response = await fetch(`${base}/text-to-speech-stream`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"text":"Hi"}' });
    const samples = (await response.arrayBuffer()).byteLength / 2;
    expect(samples).toBeGreaterThan(3900);
    expect(samples).toBeLessThanOrEqual(4000);
  });

  it('refuses a missing or empty text with 400, and a provider failure with a JSON error before any audio', async () => {
    const base = await start({ tts: new ScriptedTts(8000, { failBeforeAudio: new ProviderError('scripted', 'rate_limit', 'slow down') }) });
    for (const body of ['{}', '{"text":""}', 'not json']) {
      const response = await fetch(`${base}/text-to-speech-stream`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      expect(response.status).toBe(400);
    }
    const failed = await fetch(`${base}/text-to-speech-stream`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"text":"x"}' });
    expect(failed.status).toBe(502);
    expect(await failed.json()).toEqual({ message: 'TTS provider error: slow down' });
  });

  it('aborts the synthesis when the client goes away', async () => {
    const tts = new ScriptedTts(8000, { chunks: 1000, delayMs: 10 });
    const base = await start({ tts });
    const req = httpRequest(`${base}/text-to-speech-stream`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      res.once('data', () => req.destroy());
    });
    req.on('error', () => undefined);
    req.end('{"text":"a long story"}');
    await until(() => tts.calls[0]?.signal.aborted === true);
  });
});

describe('provider selection', () => {
  it('with only a TTS provider configured, serves no STS (no loopback fallback)', () => {
    const registry = builtinRegistry();
    const setup = resolveServeSetup({ TTS_PROVIDER: 'openai', OPENAI_API_KEY: 'sk-x' }, registry, () => logger);
    expect(setup.sts).toBeUndefined();
    expect(setup.tts?.id).toBe('openai');
  });
});

async function until(predicate: () => boolean, timeoutMs = 5000): Promise<void> {
  const started = Date.now();
  while (!predicate()) {
    if (Date.now() - started > timeoutMs) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
