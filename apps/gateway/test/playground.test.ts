import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { ConfigError, decodeAvrInbound } from '@stsgate/core';
import { buildGateway, gatewayConfig } from '../src/index.js';
import { JitterBuffer } from '../playground/src/jitter-buffer.js';
import { audioMessage, parseServerMessage } from '../playground/src/protocol.js';
import { TurnTimer, VoiceDetector } from '../playground/src/turns.js';
import { ScriptedSts } from './scripted-sts.js';

// The playground's logic that needs no browser (the page itself runs in playground.browser.test.ts).

describe('playground route', () => {
  const deps = { sts: { id: 'scripted', adapter: new ScriptedSts() }, logger: pino({ level: 'silent' }) };

  it('is off by default: /playground/ is just another STS path', async () => {
    const gateway = await buildGateway(gatewayConfig(), deps);
    const response = await gateway.app.inject({ method: 'GET', url: '/playground/' });
    expect(response.statusCode).toBe(426);
    await gateway.app.close();
  });

  it('refuses to start when the page was not built', async () => {
    const building = buildGateway(gatewayConfig({ playground: true }), { ...deps, playgroundAssetsDir: '/nonexistent/playground' });
    await expect(building).rejects.toBeInstanceOf(ConfigError);
    await expect(building).rejects.toThrow(/playground is not built/);
  });
});

const ramp = (length: number, from = 0) => Float32Array.from({ length }, (_, i) => (from + i) / 10_000);

describe('playground jitter buffer', () => {
  it('holds audio until the target is queued, then plays it in order', () => {
    const buffer = new JitterBuffer(256, 10_000);
    const out = new Float32Array(128);
    buffer.push(ramp(200));
    expect(buffer.read(out)).toBe(0);
    expect(out.every((v) => v === 0)).toBe(true);
    buffer.push(ramp(100, 200));
    expect(buffer.read(out)).toBe(128);
    expect(out).toEqual(ramp(128));
    expect(buffer.bufferedSamples).toBe(172);
  });

  it('plays a reply shorter than the target once it has waited the target', () => {
    const buffer = new JitterBuffer(256, 10_000);
    const out = new Float32Array(128);
    buffer.push(ramp(50));
    expect(buffer.read(out)).toBe(0);
    expect(buffer.read(out)).toBe(50);
    expect(out.subarray(50).every((v) => v === 0)).toBe(true);
  });

  it('waits for the target again after running dry', () => {
    const buffer = new JitterBuffer(200, 10_000);
    const out = new Float32Array(128);
    buffer.push(ramp(300));
    expect([buffer.read(out), buffer.read(out), buffer.read(out)]).toEqual([128, 128, 44]);
    buffer.push(ramp(100));
    expect(buffer.read(out)).toBe(0);
  });

  it('drops everything at once on clear, and the oldest audio beyond its maximum', () => {
    const buffer = new JitterBuffer(100, 1000);
    expect(buffer.push(ramp(800))).toBe(0);
    expect(buffer.push(ramp(400, 800))).toBe(200);
    const out = new Float32Array(128);
    buffer.read(out);
    expect(out).toEqual(ramp(128, 200));
    expect(buffer.clear()).toBe(872);
    expect(buffer.read(out)).toBe(0);
  });
});

describe('playground turn timing', () => {
  it('counts voice above the background level', () => {
    const detector = new VoiceDetector();
    expect(detector.isVoice(-120)).toBe(false);
    expect(detector.isVoice(-20)).toBe(true);
    // A noisy room: its steady level is not voice, speech above it is.
    const noisy = new VoiceDetector();
    for (let i = 0; i < 100; i++) noisy.isVoice(-40);
    expect(noisy.isVoice(-40)).toBe(false);
    expect(noisy.isVoice(-20)).toBe(true);
  });

  it('times each answer from the caller’s last voiced frame, once per utterance', () => {
    const timer = new TurnTimer();
    expect(timer.agentStarted(0.5)).toBeUndefined(); // a greeting answers nothing
    timer.frame(1.0, true);
    timer.frame(2.0, true);
    timer.frame(2.02, false);
    expect(timer.callerSpeaking(2.1)).toBe(true);
    expect(timer.callerSpeaking(2.4)).toBe(false);
    expect(timer.agentStarted(2.7)).toBe(700);
    expect(timer.agentStarted(4.0)).toBeUndefined(); // the same utterance
    timer.frame(5.0, true);
    expect(timer.agentStarted(5.05)).toBeUndefined(); // talking over the caller is no answer
    expect(timer.agentStarted(5.6)).toBe(600);
  });
});

describe('playground protocol', () => {
  it('encodes caller audio exactly as the gateway decodes it', () => {
    const samples = Int16Array.from({ length: 160 }, (_, i) => (i - 80) * 409);
    const decoded = decodeAvrInbound(audioMessage(samples));
    expect(decoded.ok && decoded.message.type === 'audio' ? decoded.message.samples : undefined).toEqual(samples);
  });

  it('decodes agent audio (s16le) and the control messages', () => {
    const samples = Int16Array.from([0, 1, -1, 32767, -32768]);
    const audio = Buffer.from(samples.buffer).toString('base64');
    expect(parseServerMessage(JSON.stringify({ type: 'audio', audio }))).toEqual({ ok: true, message: { type: 'audio', samples } });
    expect(parseServerMessage('{"type":"interruption"}')).toEqual({ ok: true, message: { type: 'interruption' } });
    expect(parseServerMessage('{"type":"transcript","role":"agent","text":"Hi"}')).toEqual({ ok: true, message: { type: 'transcript', role: 'agent', text: 'Hi' } });
    expect(parseServerMessage('{"type":"error","message":"boom"}')).toEqual({ ok: true, message: { type: 'error', message: 'boom' } });
  });

  it('turns malformed frames into problems, never exceptions', () => {
    const problems = [
      new ArrayBuffer(4),
      'not json',
      'null',
      '[]',
      '{"text":"no type"}',
      '{"type":"wat"}',
      '{"type":"transcript","role":"robot","text":"x"}',
      '{"type":"audio","audio":"!!!"}',
      '{"type":"audio","audio":"AAAA"}', // 3 bytes: not whole samples
      '{"type":"audio","audio":""}',
      JSON.stringify({ type: 'audio', audio: Buffer.alloc(16_002).toString('base64') }),
    ].map((frame) => parseServerMessage(frame));
    for (const parsed of problems) expect(parsed).toMatchObject({ ok: false, problem: expect.any(String) });
  });
});
