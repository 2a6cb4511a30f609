// The production gateway (apps/gateway/dist `serve()`: same config, fastify app, CallSession, pacer,
// resamplers, metrics) with a bench-only provider emulator instead of the loopback: a 24 kHz PCM
// "Realtime-like" provider that needs no VAD model, so bench/concurrency.mjs --provider=emulated measures
// the gateway's own per-call cost on the 24 kHz path (8k -> 24k in, 24k -> 8k out), which the
// loopback run cannot show (there, Silero VAD inference dominates the gateway's CPU).
//
// The emulator: turn detection by frame energy (voiced >= -40 dBFS, 100 ms of speech starts a turn,
// 550 ms of silence ends it, like a provider's server VAD); each turn is answered with agent audio as
// long as the utterance + 400 ms, streamed as 100 ms deltas (2400 samples at 24 kHz) at real-time rate
// but 300 ms ahead of playback (providers generate faster than real time; a stream exactly at real time
// would underrun AVR Core's buffer whatever the gateway does), by one shared 10 ms clock for all sessions. The reply audio is a read-only speech clip shared by every
// session (a network provider's audio arrives from outside; nothing per call is stored). No provider
// network protocol is emulated (no WebSocket, base64 or JSON towards the provider).
//
// Run by bench/concurrency.mjs as `node bench/lib/emulated-gateway.mjs` with the gateway's environment.

import { randomUUID } from 'node:crypto';
import { AsyncQueue, createResampler } from '../../packages/core/dist/index.js';
import { createLogger, loadGatewayConfig, serve } from '../../apps/gateway/dist/index.js';
import { FIXTURE_NAMES, fixturePath, readWavAs8k } from '../../packages/testkit/dist/index.js';

const RATE = 24000;
const DELTA_SAMPLES = RATE / 10;
const DELTA_MS = 100;
/** Like a real provider, generation runs ahead of real time: deltas go out this far ahead of playback. */
const AHEAD_MS = 300;
const VOICED_MEAN_SQUARE = (32768 * 10 ** (-40 / 20)) ** 2;
const MIN_SPEECH_SAMPLES = RATE / 10;
const END_SILENCE_SAMPLES = (550 * RATE) / 1000;
const REPLY_PAD_SAMPLES = (400 * RATE) / 1000;

/** The fixtures at 24 kHz, end to end, repeated to at least 30 s: the agent's voice. */
function makeReplyClip() {
  const parts = FIXTURE_NAMES.map((name) => {
    const r = createResampler(8000, RATE);
    const pcm8k = readWavAs8k(fixturePath(name));
    return new Int16Array([...r.process(pcm8k), ...r.flush()]);
  });
  const once = parts.reduce((sum, p) => sum + p.length, 0);
  const repeats = Math.ceil((30 * RATE) / once);
  const clip = new Int16Array(once * repeats);
  let at = 0;
  for (let k = 0; k < repeats; k++) {
    for (const part of parts) {
      clip.set(part, at);
      at += part.length;
    }
  }
  return clip;
}

/** One timer for every session: sessions with a reply in progress get their due deltas each tick. */
class EmulatorClock {
  constructor() {
    this.playing = new Set();
    this.timer = undefined;
  }

  add(session) {
    this.playing.add(session);
    this.timer ??= setInterval(() => this.tick(), 10);
  }

  remove(session) {
    this.playing.delete(session);
    if (this.playing.size === 0 && this.timer !== undefined) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  tick() {
    const now = performance.now();
    for (const session of this.playing) if (!session.emitDue(now)) this.remove(session);
  }
}

class EmulatedSession {
  constructor(clock, clip, signal) {
    this.inputSampleRate = RATE;
    this.outputSampleRate = RATE;
    this.events = new AsyncQueue();
    this.clock = clock;
    this.clip = clip;
    this.closed = false;
    this.speaking = false;
    this.voicedRun = 0;
    this.silentRun = 0;
    this.utterance = 0;
    this.reply = undefined;
    this.onAbort = () => void this.close();
    this.signal = signal;
    signal.addEventListener('abort', this.onAbort, { once: true });
  }

  sendAudio(samples) {
    if (this.closed || samples.length === 0) return;
    let sum = 0;
    for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
    const voiced = sum / samples.length >= VOICED_MEAN_SQUARE;
    const n = samples.length;
    if (voiced) {
      this.silentRun = 0;
      if (this.speaking) {
        this.utterance += n;
      } else {
        this.voicedRun += n;
        if (this.voicedRun >= MIN_SPEECH_SAMPLES) {
          this.speaking = true;
          this.utterance = this.voicedRun;
          this.events.push({ type: 'speech_started' });
        }
      }
      return;
    }
    if (!this.speaking) {
      this.voicedRun = 0;
      return;
    }
    this.silentRun += n;
    this.utterance += n;
    if (this.silentRun >= END_SILENCE_SAMPLES) {
      this.speaking = false;
      this.voicedRun = 0;
      this.events.push({ type: 'speech_stopped' });
      const length = Math.min(this.clip.length, this.utterance - this.silentRun + REPLY_PAD_SAMPLES);
      this.silentRun = 0;
      this.startReply(length);
    }
  }

  startReply(length) {
    if (this.reply !== undefined) this.events.push({ type: 'response_done', responseId: this.reply.id });
    this.reply = { id: `emulated-${randomUUID()}`, offset: 0, length, due: performance.now() - AHEAD_MS };
    this.emitDue(this.reply.due);
    if (this.reply !== undefined) this.clock.add(this);
  }

  /** Emits the deltas due by `now`; false once no reply is in progress. */
  emitDue(now) {
    const reply = this.reply;
    if (reply === undefined || this.closed) return false;
    while (reply.due <= now && reply.offset < reply.length) {
      const end = Math.min(reply.offset + DELTA_SAMPLES, reply.length);
      this.events.push({ type: 'audio', responseId: reply.id, samples: this.clip.subarray(reply.offset, end) });
      reply.offset = end;
      reply.due += DELTA_MS;
    }
    if (reply.offset >= reply.length) {
      this.events.push({ type: 'response_done', responseId: reply.id });
      this.reply = undefined;
      return false;
    }
    return true;
  }

  sendDtmf() {}

  truncate(responseId) {
    if (this.reply?.id !== responseId) return;
    this.reply = undefined;
    this.clock.remove(this);
    this.events.push({ type: 'response_done', responseId });
  }

  submitToolResult() {}

  async close() {
    if (this.closed) return;
    this.closed = true;
    this.reply = undefined;
    this.clock.remove(this);
    this.signal.removeEventListener('abort', this.onAbort);
    this.events.end();
  }
}

function createEmulatedRealtime() {
  const clip = makeReplyClip();
  const clock = new EmulatorClock();
  return {
    id: 'emulated-realtime',
    capabilities: {
      inputSampleRates: [RATE],
      outputSampleRates: [RATE],
      encodings: ['pcm_s16le'],
      serverTurnDetection: true,
      userTranscripts: false,
      agentTranscripts: false,
      truncation: true,
      toolCalls: false,
      dtmf: false,
    },
    async connect(call) {
      return new EmulatedSession(clock, clip, call.signal);
    },
  };
}

const config = loadGatewayConfig(process.env);
const logger = createLogger(config.logLevel, config.logPretty);
await serve({ config, port: config.port ?? 6030, sts: { id: 'emulated-realtime', adapter: createEmulatedRealtime() }, logger });
