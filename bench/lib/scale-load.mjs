// The scale bench's load generator (bench/scale.mjs): N simulated AVR Core calls towards the gateway AND the fake
// OpenAI Realtime (GA) server the gateway connects to for them, in one process, so each call's AVR client and its
// provider connection share one clock (every latency is a difference of performance.now() values of this process).
//
// Cheap by construction (it must stay under 80% of its core at 500 calls): lean framing (lean-ws.mjs), caller frames
// pre-encoded once as whole masked WebSocket frames shared by every call, agent audio pre-encoded as base64 chunks, one
// timer for everything (5 ms slots: caller frames of a quarter of the calls per slot, so each call sends one 20 ms
// frame every 20 ms; the script of a twentieth of the calls per slot, so each call's provider advances in 100 ms units).
//
// The fake provider speaks the GA wire protocol the adapter expects (packages/openai/src/realtime/wire.ts): upgrade
// with `Authorization: Bearer`, `session.created` -> `session.update` -> `session.updated`, server VAD events, the
// response lifecycle (`response.created` ... `response.output_audio.delta` ... `response.done`), a server-side cancel on
// barge-in (`interrupt_response: true`), `conversation.item.truncated` for a truncate, pong for the adapter's pings.
// It pairs a provider connection with its call by the call's uuid, which the gateway puts in the session's
// instructions (OPENAI_INSTRUCTIONS="... [scale-call:{{uuid}}]").
//
// Measured per window (see bench/README.md, `scale`): caller audio latency (AVR frame written -> its bytes arrive at the
// fake provider), agent frame lateness against each reply's playout schedule and frames lost, speech_started ->
// `interruption` latency, the generator's own clock lag.
import { performance } from 'node:perf_hooks';
import { AVR_FRAME_MS, AVR_FRAME_SAMPLES, createResampler, decodeMulaw, encodeAvrAudio, encodeMulaw } from '../../packages/core/dist/index.js';
import { concatPcm, fixturePath, readWavAs8k, silence } from '../../packages/testkit/dist/index.js';
import { FrameReader, OPCODE, closeFrame, connectClient, encodeFrame, startServer, textFrame } from './lean-ws.mjs';
import { sleep } from './util.mjs';

/**
 * Each call's provider, in 100 ms units: the caller speaks (speech_started ... speech_stopped, committed), the response
 * starts 300 ms later and streams 3 s of agent audio as 100 ms deltas every 100 ms, then 700 ms of quiet. Every second
 * response is barged in on: 50 ms after its 15th delta (mid-way through the audio that delta carries, so AVR Core is
 * playing it) the next caller turn starts (speech_started during agent audio) and the server cancels the response. At
 * a delta's boundary instead, AVR Core's buffer (as the gateway models it) would just have run dry, and the gateway
 * rightly sends no interruption. One pattern (a whole reply and an interrupted one) is 78 units; the agent speaks 58%
 * of the time.
 */
export const SCRIPT = { unitMs: 100, callerUnits: 10, thinkUnits: 3, replyUnits: 30, pauseUnits: 7, bargeAtUnits: 15, bargeEvery: 2, transcriptEvery: 4 };
const PATTERN_UNITS =
  (SCRIPT.bargeEvery - 1) * (SCRIPT.callerUnits + SCRIPT.thinkUnits + SCRIPT.replyUnits + SCRIPT.pauseUnits) + SCRIPT.callerUnits + SCRIPT.thinkUnits + SCRIPT.bargeAtUnits;
export const SCRIPT_FACTS = {
  patternMs: PATTERN_UNITS * SCRIPT.unitMs,
  agentTalkShare: Math.round((((SCRIPT.bargeEvery - 1) * SCRIPT.replyUnits + SCRIPT.bargeAtUnits) / PATTERN_UNITS) * 1000) / 1000,
  framesPerWholeReply: (SCRIPT.replyUnits * SCRIPT.unitMs) / AVR_FRAME_MS,
};

/**
 * Where in the pattern call `index` starts its script: the fractional parts of index x the golden ratio, a
 * low-discrepancy sequence, so that any number of the first calls (all of a step, or those a gateway admitted before it
 * refused the rest) are spread evenly over the pattern: their replies do not pile up in the same seconds.
 */
const GOLDEN_RATIO_FRACTION = (Math.sqrt(5) - 1) / 2;
function scriptOffsetUnits(index) {
  return Math.floor(((index * GOLDEN_RATIO_FRACTION) % 1) * PATTERN_UNITS) + 1;
}

export const UUID_MARK = (uuid) => `[scale-call:${uuid}]`;
const UUID_PATTERN = /\[scale-call:([^\]]+)\]/;
const SLOT_MS = 5;
const CALLER_PHASES = AVR_FRAME_MS / SLOT_MS;
const PROVIDER_PHASES = SCRIPT.unitMs / SLOT_MS;
/** Caller frames in the pre-encoded loop; each carries its index in its first sample (see TAGS). */
const LOOP_FRAMES = 250;
/** Send times kept per call: frames still in flight must fit (5.1 s). */
const RING = 256;
/** A call whose socket holds this much unsent is not being read: its caller frames are skipped (and counted). */
const MAX_CLIENT_BACKLOG_BYTES = 256 * 1024;

// Caller frame n of the loop starts with the sample whose G.711 mu-law code is TAG_BYTES[n]: the fake provider reads it
// back from the pcmu bytes (or from the PCM16 a relay forwards) to check that its frame counting matches the frames sent.
// Code 0x7f (negative zero) is left out: it decodes to 0, which encodes as 0xff.
const TAG_BYTES = Uint8Array.from({ length: LOOP_FRAMES }, (_, n) => (n < 0x7f ? n : n + 1));
const TAG_SAMPLES = decodeMulaw(TAG_BYTES);
if (!Buffer.from(encodeMulaw(TAG_SAMPLES)).equals(Buffer.from(TAG_BYTES))) throw new Error('mu-law tag samples do not round-trip');

/**
 * What the provider receives per 20 ms caller frame. pcm24: the gateway's 8k -> 24k resampler, whose output lags its
 * input by a constant number of samples (measured here with the same resampler): frame n is complete at the provider
 * once (n + 1) x 960 - 2 x lag bytes have arrived.
 */
function formatOf(name) {
  switch (name) {
    case 'pcmu':
      return { name, bytesPerFrame: AVR_FRAME_SAMPLES, lagBytes: 0, bytesPerMs: 8, tag: 'mulaw', wire: { type: 'audio/pcmu' } };
    case 'pcm24': {
      const lagSamples = 3 * AVR_FRAME_SAMPLES - createResampler(8000, 24000).process(new Int16Array(AVR_FRAME_SAMPLES)).length;
      return { name, bytesPerFrame: 6 * AVR_FRAME_SAMPLES, lagBytes: 2 * lagSamples, bytesPerMs: 48, tag: undefined, wire: { type: 'audio/pcm', rate: 24000 } };
    }
    case 'relay':
      // bench/lib/ws-relay.mjs forwards each AVR frame's base64 (PCM16 8 kHz) as one append.
      return { name, bytesPerFrame: 2 * AVR_FRAME_SAMPLES, lagBytes: 0, bytesPerMs: 16, tag: 'pcm16', wire: { type: 'audio/pcm', rate: 8000 } };
    default:
      throw new Error(`unknown format ${name}`);
  }
}

/** The caller loop as whole client WebSocket frames of AVR `audio` messages (speech and silence), tagged. */
function buildCallerFrames() {
  const speech = concatPcm(readWavAs8k(fixturePath('question')), silence(1500));
  const frames = [];
  for (let n = 0; n < LOOP_FRAMES; n++) {
    const samples = new Int16Array(AVR_FRAME_SAMPLES);
    for (let i = 0; i < AVR_FRAME_SAMPLES; i++) samples[i] = speech[(n * AVR_FRAME_SAMPLES + i) % speech.length];
    samples[0] = TAG_SAMPLES[n];
    frames.push(encodeFrame(OPCODE.text, [Buffer.from(encodeAvrAudio(samples))], true));
  }
  return frames;
}

/** One reply's agent audio as base64 chunks of 100 ms in the wire format (real speech). */
function buildAgentChunks(format) {
  const speech8k = concatPcm(readWavAs8k(fixturePath('greeting')), readWavAs8k(fixturePath('question')), readWavAs8k(fixturePath('short')));
  let bytes;
  if (format.name === 'pcmu') bytes = Buffer.from(encodeMulaw(speech8k));
  else {
    const speech24k = createResampler(8000, 24000).process(speech8k);
    bytes = Buffer.from(speech24k.buffer, speech24k.byteOffset, speech24k.byteLength);
  }
  const size = format.bytesPerMs * SCRIPT.unitMs;
  const reply = Buffer.concat(Array.from({ length: Math.ceil((SCRIPT.replyUnits * size) / bytes.length) }, () => bytes));
  return Array.from({ length: SCRIPT.replyUnits }, (_, i) => Buffer.from(reply.subarray(i * size, (i + 1) * size).toString('base64')));
}

const B64_VALUES = new Uint8Array(128);
for (const [i, c] of [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'].entries()) B64_VALUES[c.charCodeAt(0)] = i;
/** Byte `index` of the base64 text starting at `start` in `text` (bytes), without decoding the rest. */
function base64ByteAt(text, start, index) {
  const at = start + Math.floor(index / 3) * 4;
  const v = (B64_VALUES[text[at]] << 18) | (B64_VALUES[text[at + 1]] << 12) | (B64_VALUES[text[at + 2]] << 6) | B64_VALUES[text[at + 3]];
  return (v >> (16 - 8 * (index % 3))) & 0xff;
}

const APPEND_PREFIX = Buffer.from('{"type":"input_audio_buffer.append","audio":"');
const AVR_AUDIO_PREFIX = Buffer.from('{"type":"audio","audio":"');
const AVR_AUDIO_MESSAGE_BYTES = Buffer.byteLength(encodeAvrAudio(new Int16Array(AVR_FRAME_SAMPLES)));
const DELTA_HEAD = Buffer.from('{"type":"response.output_audio.delta","event_id":"');
const DELTA_TAIL = Buffer.from('"}');
const EQUALS = 0x3d;

function startsWith(payload, prefix) {
  return payload.length >= prefix.length && payload.compare(prefix, 0, prefix.length, 0, prefix.length) === 0;
}

/** Numbers of one measurement window, filled by the calls while `start <= t < end`. */
function newWindow(start, end) {
  return {
    start,
    end,
    callerFramesSent: 0,
    callerFramesSkipped: 0,
    /** `input_audio_buffer.append` messages the provider read in the window. */
    appendsReceived: 0,
    callerLatency: [],
    callerLatencyCompleting: [],
    agentFrames: 0,
    lateness: [],
    underrunGaps: [],
    /** Per reply: the provider writes its first delta -> AVR Core reads its first frame. */
    firstFrameAdded: [],
    irregularFrames: 0,
    strayFrames: 0,
    orphanFrames: 0,
    wholeReplies: [],
    barges: [],
    unexpectedInterruptions: 0,
    avrControl: {},
    avrErrorSamples: [],
    clockLag: [],
  };
}

/** The load: a fake provider server, the calls, the shared clock. One instance per audio format. */
export class ScaleLoad {
  constructor({ format, apiKey }) {
    this.format = formatOf(format);
    this.apiKey = apiKey;
    this.callerFrames = buildCallerFrames();
    this.agentChunks = this.format.name === 'relay' ? [] : buildAgentChunks(this.format);
    this.calls = new Map();
    this.callerPhases = Array.from({ length: CALLER_PHASES }, () => new Set());
    this.providerPhases = Array.from({ length: PROVIDER_PHASES }, () => new Set());
    /** Barge-ins due half a unit after a call's own phase. */
    this.bargePhases = Array.from({ length: PROVIDER_PHASES }, () => new Set());
    this.providerSockets = new Set();
    this.window = undefined;
    this.eventSeq = 0;
    // Whole-run checks (all must stay 0 but tagChecks): protocol fidelity and frame matching.
    this.checks = {
      tagChecks: 0,
      tagMismatches: 0,
      unmatchedAppendBytes: 0,
      unpairedProviderConnections: 0,
      unexpectedClientEvents: {},
      truncates: 0,
      truncatesOfUnknownItems: 0,
      truncatesBeyondSentAudio: 0,
      avrProtocolProblems: 0,
      providerClosedByGateway: 0,
      avrClosedByGateway: 0,
    };
    this.stopped = false;
  }

  async start() {
    this.server = await startServer(
      (socket, request, rest) => this.onProviderConnection(socket, rest),
      (request) => request.headers.authorization === `Bearer ${this.apiKey}`,
    );
    this.t0 = performance.now();
    this.slot = 0;
    this.schedule();
  }

  get providerUrl() {
    return `ws://127.0.0.1:${this.server.address().port}/v1/realtime`;
  }

  nextEventId() {
    return `event_${++this.eventSeq}`;
  }

  // ---- the shared clock ----

  schedule() {
    if (this.stopped) return;
    this.timer = setTimeout(this.run, Math.max(0, this.t0 + this.slot * SLOT_MS - performance.now()));
  }

  run = () => {
    const now = performance.now();
    // Drift-free: after a late wake-up every due slot runs (AVR Core's clock does not slow down either).
    while (this.t0 + this.slot * SLOT_MS <= now) {
      const w = this.window;
      if (w !== undefined && now >= w.start && now < w.end) w.clockLag.push(now - (this.t0 + this.slot * SLOT_MS));
      for (const call of this.callerPhases[this.slot % CALLER_PHASES]) call.sendCallerFrame();
      for (const call of this.providerPhases[this.slot % PROVIDER_PHASES]) call.advance();
      const barges = this.bargePhases[this.slot % PROVIDER_PHASES];
      if (barges.size > 0) {
        for (const call of barges) call.startCallerTurn();
        barges.clear();
      }
      this.slot++;
    }
    this.schedule();
  };

  // ---- calls ----

  /**
   * Connects `count` calls to the gateway (or relay) on `port`, at most `parallel` at a time; each is ready once its
   * provider connection is configured. Call i's script starts i / count of a pattern after that, so the load is even.
   * No call is started after `rampLimitMs` (an overloaded gateway would take minutes). Resolves with the ready calls,
   * the failures and how many were not started.
   */
  async connectCalls({ port, count, prefix, parallel = 25, timeoutMs = 20_000, rampLimitMs = 30_000, arrivalsPerSecond }) {
    const calls = [];
    const failures = [];
    const started = performance.now();
    // Calls arriving at a given rate (as on a phone line) take as long as they need, plus the usual limit.
    const deadline = started + rampLimitMs + (arrivalsPerSecond === undefined ? 0 : (count / arrivalsPerSecond) * 1000);
    let next = 0;
    const worker = async () => {
      while (next < count && performance.now() < deadline) {
        const index = next++;
        if (arrivalsPerSecond !== undefined) await sleep(started + (index / arrivalsPerSecond) * 1000 - performance.now());
        const call = new Call(this, index, `${prefix}-${index}`, scriptOffsetUnits(index));
        this.calls.set(call.uuid, call);
        try {
          await call.connect(port, timeoutMs);
          calls.push(call);
        } catch (error) {
          failures.push(error instanceof Error ? error.message : String(error));
          call.destroy();
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(parallel, count) }, worker));
    return { calls, failures, notStarted: count - next };
  }

  join(call) {
    this.callerPhases[call.index % CALLER_PHASES].add(call);
    if (this.format.name !== 'relay') this.providerPhases[call.index % PROVIDER_PHASES].add(call);
  }

  /** `call.startCallerTurn()` half a unit from now. */
  deferBarge(call) {
    this.bargePhases[(call.index + PROVIDER_PHASES / 2) % PROVIDER_PHASES].add(call);
  }

  leave(call) {
    this.callerPhases[call.index % CALLER_PHASES].delete(call);
    this.providerPhases[call.index % PROVIDER_PHASES].delete(call);
    this.bargePhases[(call.index + PROVIDER_PHASES / 2) % PROVIDER_PHASES].delete(call);
    this.calls.delete(call.uuid);
  }

  /**
   * Hangs every call up (close frame, as AVR Core does); resolves once all AVR sockets closed or after `timeoutMs` (then
   * the rest are cut). Provider connections are left to the gateway to close, as it does when a call ends.
   */
  async hangUp(calls, timeoutMs = 10_000) {
    let timer;
    await Promise.race([Promise.all(calls.map((call) => call.hangUp())), new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
    for (const call of calls) call.avr?.destroy();
  }

  openWindow(start, end) {
    this.window = newWindow(start, end);
    return this.window;
  }

  closeWindow() {
    const w = this.window;
    this.window = undefined;
    return w;
  }

  // ---- the fake provider's connections ----

  onProviderConnection(socket, rest) {
    const connection = { socket, call: undefined };
    this.providerSockets.add(socket);
    const reader = new FrameReader((opcode, payload) => {
      if (connection.call !== undefined) connection.call.onProviderFrame(opcode, payload);
      else this.onUnpairedFrame(connection, opcode, payload);
    });
    socket.on('data', (chunk) => reader.push(chunk));
    socket.on('close', () => {
      this.providerSockets.delete(socket);
      connection.call?.providerClosed();
    });
    socket.write(textFrame(JSON.stringify({ type: 'session.created', event_id: this.nextEventId(), session: this.session({}) })));
    if (rest.length > 0) reader.push(rest);
  }

  /** Before `session.update` the connection's call is unknown; the update names it (the instructions carry the uuid). */
  onUnpairedFrame(connection, opcode, payload) {
    if (opcode === OPCODE.ping) {
      connection.socket.write(encodeFrame(OPCODE.pong, [payload]));
      return;
    }
    if (opcode !== OPCODE.text) {
      if (opcode === OPCODE.close) connection.socket.end(closeFrame(1000));
      return;
    }
    const event = JSON.parse(payload.toString('utf8'));
    const uuid = UUID_PATTERN.exec(event.session?.instructions ?? '')?.[1];
    const call = uuid === undefined ? undefined : this.calls.get(uuid);
    if (event.type !== 'session.update' || call === undefined) {
      this.checks.unpairedProviderConnections++;
      connection.socket.end(closeFrame(1008));
      return;
    }
    connection.call = call;
    call.providerAttached(connection.socket, event);
  }

  /** A GA session object: the defaults, with what a `session.update` set (echoed, as the server does). */
  session(update) {
    const format = this.format.wire;
    return {
      object: 'realtime.session',
      type: 'realtime',
      id: 'sess_scale',
      model: 'gpt-realtime',
      output_modalities: ['audio'],
      instructions: '',
      tools: [],
      tool_choice: 'auto',
      max_output_tokens: 'inf',
      ...update,
      audio: {
        input: {
          format,
          transcription: null,
          noise_reduction: null,
          turn_detection: { type: 'server_vad', threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 500, create_response: true, interrupt_response: true },
          ...update.audio?.input,
        },
        output: { format, voice: 'alloy', speed: 1, ...update.audio?.output },
      },
    };
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    for (const call of this.calls.values()) call.destroy();
    for (const socket of this.providerSockets) socket.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

class Call {
  constructor(load, index, uuid, startUnits) {
    this.load = load;
    this.index = index;
    this.uuid = uuid;
    // AVR Core side.
    this.avr = undefined;
    this.hungUp = false;
    this.framesSent = 0;
    this.sendTimes = new Float64Array(RING);
    this.receivedAt = 0;
    this.avrClosed = undefined;
    // Provider side.
    this.provider = undefined;
    this.providerBytes = 0;
    this.framesDelivered = 0;
    this.whenReady = undefined;
    // The provider's script.
    this.state = 'wait';
    this.remaining = startUnits;
    this.itemSeq = 0;
    this.replySeq = 0;
    this.lastItemId = null;
    this.userItemId = undefined;
    this.reply = undefined;
    this.lastReply = undefined;
    /** The last few replies by assistant item id (a truncate names one; a lagging gateway may name an older one). */
    this.replies = new Map();
    this.pendingBarge = undefined;
  }

  async connect(port, timeoutMs) {
    const ready = new Promise((resolve) => (this.whenReady = resolve));
    const { socket, rest } = await connectClient(port, `/?from=scale&to=bench&uniqueid=${this.uuid}`, timeoutMs);
    this.avr = socket;
    this.avrClosed = new Promise((resolve) => socket.once('close', resolve));
    const reader = new FrameReader((opcode, payload) => this.onAvrFrame(opcode, payload));
    socket.on('data', (chunk) => {
      this.receivedAt = performance.now();
      reader.push(chunk);
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      if (!this.hungUp) this.load.checks.avrClosedByGateway++;
      this.load.leave(this);
    });
    if (rest.length > 0) reader.push(rest);
    socket.write(textFrame(JSON.stringify({ type: 'init', uuid: this.uuid }), true));
    let timer;
    const timeout = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no provider connection within ${timeoutMs} ms`)), timeoutMs)));
    try {
      await Promise.race([ready, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- AVR Core: caller audio out, agent audio and control in ----

  sendCallerFrame() {
    const w = this.load.window;
    if (this.avr.writableLength > MAX_CLIENT_BACKLOG_BYTES) {
      if (w !== undefined) w.callerFramesSkipped++;
      return;
    }
    const n = this.framesSent++;
    const now = performance.now();
    this.sendTimes[n % RING] = now;
    this.avr.write(this.load.callerFrames[n % LOOP_FRAMES]);
    if (w !== undefined && now >= w.start && now < w.end) w.callerFramesSent++;
  }

  onAvrFrame(opcode, payload) {
    if (opcode !== OPCODE.text) {
      if (opcode === OPCODE.ping) this.avr.write(encodeFrame(OPCODE.pong, [payload], true));
      else if (opcode === OPCODE.close) this.avr.end();
      else this.load.checks.avrProtocolProblems++;
      return;
    }
    if (startsWith(payload, AVR_AUDIO_PREFIX)) this.onAgentFrame(payload.length);
    else this.onAvrControl(payload);
  }

  /**
   * AVR Core's playout of a reply starts with its first frame and then takes 20 ms per frame: frame i is due at
   * first + 20 ms x i, and arriving later is lateness. That schedule is never re-anchored: once a reply fell behind, the
   * rest of it counts as late until the gateway catches up. Beside it, the buffer as AVR Core plays it (playout resumes
   * with a frame that arrives after the buffer ran dry): each gap of more than a frame. Frames belong to the provider's
   * latest reply on this call (replies are >= 1.3 s apart, far more than a frame's way through the gateway).
   */
  onAgentFrame(length) {
    const now = this.receivedAt;
    const w = this.load.window;
    const inWindow = w !== undefined && now >= w.start && now < w.end;
    if (inWindow && length !== AVR_AUDIO_MESSAGE_BYTES) w.irregularFrames++;
    const reply = this.lastReply;
    if (reply === undefined || reply.interruptedAt !== undefined) {
      // Audio with no reply, or after the interruption of its reply reached AVR Core: must not happen.
      if (inWindow && reply === undefined) w.orphanFrames++;
      else if (inWindow) w.strayFrames++;
      return;
    }
    if (reply.framesReceived === 0) {
      reply.firstFrameAt = now;
      reply.playEnd = now;
      if (inWindow) w.firstFrameAdded.push(now - reply.firstDeltaAt);
    }
    const lateness = now - reply.firstFrameAt - AVR_FRAME_MS * reply.framesReceived;
    const gap = now - reply.playEnd;
    reply.playEnd = Math.max(reply.playEnd, now) + AVR_FRAME_MS;
    reply.framesReceived++;
    if (!inWindow) return;
    w.agentFrames++;
    w.lateness.push(lateness > 0 ? lateness : 0);
    // Sub-frame gaps are the jitter of a stream with no slack (deltas exactly in real time): not counted.
    if (gap > AVR_FRAME_MS) w.underrunGaps.push(gap);
  }

  onAvrControl(payload) {
    const now = this.receivedAt;
    let message;
    try {
      message = JSON.parse(payload.toString('utf8'));
    } catch {
      this.load.checks.avrProtocolProblems++;
      return;
    }
    const w = this.load.window;
    const inWindow = w !== undefined && now >= w.start && now < w.end;
    if (inWindow) w.avrControl[message.type] = (w.avrControl[message.type] ?? 0) + 1;
    if (message.type === 'error' && inWindow && w.avrErrorSamples.length < 5) w.avrErrorSamples.push(String(message.message));
    if (message.type !== 'interruption') return;
    const barge = this.pendingBarge;
    if (barge === undefined) {
      if (inWindow) w.unexpectedInterruptions++;
      return;
    }
    this.pendingBarge = undefined;
    barge.interruptedAt = now;
    barge.reply.interruptedAt = now;
  }

  hangUp() {
    this.hungUp = true;
    this.load.leave(this);
    if (this.avr === undefined || this.avr.destroyed) return Promise.resolve();
    this.avr.write(closeFrame(1000, true));
    return this.avrClosed;
  }

  destroy() {
    this.hungUp = true;
    this.load.leave(this);
    this.avr?.destroy();
    this.provider?.destroy();
  }

  // ---- the fake provider: caller audio in, script out ----

  providerAttached(socket, update) {
    this.provider = socket;
    this.send([{ type: 'session.updated', session: this.load.session(update.session ?? {}) }]);
    // Caller audio starts once the provider connection is configured: no frame waits in (or falls out of) the
    // gateway's early-audio buffer, so frame n sent is frame n received.
    this.load.join(this);
    this.whenReady();
  }

  providerClosed() {
    if (!this.hungUp) this.load.checks.providerClosedByGateway++;
  }

  onProviderFrame(opcode, payload) {
    if (opcode === OPCODE.text) {
      if (startsWith(payload, APPEND_PREFIX)) this.onAppend(payload);
      else this.onClientEvent(JSON.parse(payload.toString('utf8')));
      return;
    }
    if (opcode === OPCODE.ping) this.provider.write(encodeFrame(OPCODE.pong, [payload]));
    else if (opcode === OPCODE.close) this.provider.end(closeFrame(1000));
  }

  /**
   * An `input_audio_buffer.append`: counts its bytes without decoding them. Caller frame n is complete once
   * (n + 1) x bytesPerFrame - lagBytes have arrived; its latency is now - the time it was written by AVR Core. The
   * last frame an append completes is also counted apart (`completing`): its latency has no wait for the rest of the
   * gateway's batch in it.
   */
  onAppend(payload) {
    const now = performance.now();
    const format = this.load.format;
    const b64End = payload.length - 2;
    const padding = payload[b64End - 1] === EQUALS ? (payload[b64End - 2] === EQUALS ? 2 : 1) : 0;
    const bytes = ((b64End - APPEND_PREFIX.length) / 4) * 3 - padding;
    const first = this.providerBytes;
    this.providerBytes += bytes;
    const w = this.load.window;
    if (w !== undefined && now >= w.start && now < w.end) w.appendsReceived++;
    let last = -1;
    while (this.framesDelivered < this.framesSent && (this.framesDelivered + 1) * format.bytesPerFrame - format.lagBytes <= this.providerBytes) {
      const n = this.framesDelivered++;
      if (format.tag !== undefined) this.checkTag(payload, n * format.bytesPerFrame - first, bytes, n);
      const sentAt = this.sendTimes[n % RING];
      last = w !== undefined && sentAt >= w.start && sentAt < w.end ? now - sentAt : -1;
      if (last >= 0) w.callerLatency.push(last);
    }
    if (last >= 0) w.callerLatencyCompleting.push(last);
    if (this.providerBytes > this.framesSent * format.bytesPerFrame) this.load.checks.unmatchedAppendBytes += bytes;
  }

  /** The first sample of caller frame n, when it is in this append, must carry n's tag. */
  checkTag(payload, offset, bytes, n) {
    const format = this.load.format;
    if (offset < 0 || offset + (format.tag === 'pcm16' ? 2 : 1) > bytes) return;
    const checks = this.load.checks;
    checks.tagChecks++;
    const start = APPEND_PREFIX.length;
    const ok =
      format.tag === 'mulaw'
        ? base64ByteAt(payload, start, offset) === TAG_BYTES[n % LOOP_FRAMES]
        : ((base64ByteAt(payload, start, offset) | (base64ByteAt(payload, start, offset + 1) << 8)) << 16) >> 16 === TAG_SAMPLES[n % LOOP_FRAMES];
    if (!ok) checks.tagMismatches++;
  }

  onClientEvent(event) {
    switch (event.type) {
      case 'conversation.item.truncate': {
        const reply = this.replies.get(event.item_id);
        this.load.checks.truncates++;
        if (reply === undefined) this.load.checks.truncatesOfUnknownItems++;
        else if (event.audio_end_ms > reply.deltas * SCRIPT.unitMs) this.load.checks.truncatesBeyondSentAudio++;
        this.send([{ type: 'conversation.item.truncated', item_id: event.item_id, content_index: event.content_index ?? 0, audio_end_ms: event.audio_end_ms }]);
        return;
      }
      case 'response.cancel':
        if (this.reply !== undefined && (event.response_id === undefined || event.response_id === this.reply.responseId)) {
          this.send(this.closeReply('cancelled', 'client_cancelled'));
        } else {
          this.send([{ type: 'error', error: { type: 'invalid_request_error', code: 'response_cancel_not_active', message: 'Cancellation failed: no active response found', param: null, event_id: event.event_id ?? null } }]);
        }
        return;
      case 'session.update':
        this.send([{ type: 'session.updated', session: this.load.session(event.session ?? {}) }]);
        return;
      default:
        // Nothing else is expected with server VAD and no greeting (response.create, commit, item.create...).
        this.load.checks.unexpectedClientEvents[event.type] = (this.load.checks.unexpectedClientEvents[event.type] ?? 0) + 1;
    }
  }

  /** Server events as separate text frames in one write (the server sends them back to back). */
  send(events, extraFrame) {
    const socket = this.provider;
    if (socket === undefined || socket.destroyed) return;
    socket.cork();
    for (const event of events) socket.write(textFrame(JSON.stringify({ type: event.type, event_id: this.load.nextEventId(), ...event })));
    if (extraFrame !== undefined) socket.write(extraFrame);
    socket.uncork();
  }

  inputMs() {
    return Math.round(this.providerBytes / this.load.format.bytesPerMs);
  }

  /** One 100 ms unit of the script. */
  advance() {
    switch (this.state) {
      case 'barging':
        return;
      case 'wait':
        if (--this.remaining <= 0) this.startCallerTurn();
        return;
      case 'caller':
        if (--this.remaining <= 0) this.endCallerTurn();
        return;
      case 'think':
        if (--this.remaining <= 0) this.startReply();
        return;
      case 'reply': {
        const reply = this.reply;
        if (reply === undefined) {
          // Cancelled by the gateway (not expected here; counted in checks when it happens).
          this.state = 'wait';
          this.remaining = SCRIPT.pauseUnits;
        } else if (reply.deltas === SCRIPT.replyUnits) {
          this.send(this.closeReply('completed'));
          this.state = 'wait';
          this.remaining = SCRIPT.pauseUnits;
        } else {
          this.sendDelta([]);
          if (reply.barge && reply.deltas === SCRIPT.bargeAtUnits) {
            this.state = 'barging';
            this.load.deferBarge(this);
          }
        }
        return;
      }
    }
  }

  /** The server's VAD hears the caller: speech_started; during a response, the server also cancels it (barge-in). */
  startCallerTurn() {
    const itemId = `item_u${this.index}_${++this.itemSeq}`;
    this.userItemId = itemId;
    const reply = this.reply;
    const events = [{ type: 'input_audio_buffer.speech_started', audio_start_ms: Math.max(0, this.inputMs() - 300), item_id: itemId }];
    if (reply !== undefined) events.push(...this.closeReply('cancelled', 'turn_detected'));
    const t0 = performance.now();
    this.send(events);
    if (reply !== undefined) {
      this.pendingBarge = { t0, reply, interruptedAt: undefined };
      const w = this.load.window;
      if (w !== undefined && t0 >= w.start && t0 < w.end) w.barges.push(this.pendingBarge);
    }
    this.state = 'caller';
    this.remaining = SCRIPT.callerUnits;
  }

  endCallerTurn() {
    const itemId = this.userItemId;
    const item = { id: itemId, object: 'realtime.item', type: 'message', status: 'completed', role: 'user', content: [{ type: 'input_audio', transcript: null }] };
    const previous = this.lastItemId;
    this.lastItemId = itemId;
    this.send([
      { type: 'input_audio_buffer.speech_stopped', audio_end_ms: this.inputMs(), item_id: itemId },
      { type: 'input_audio_buffer.committed', item_id: itemId, previous_item_id: previous },
      { type: 'conversation.item.added', previous_item_id: previous, item },
      { type: 'conversation.item.done', previous_item_id: previous, item },
    ]);
    this.state = 'think';
    this.remaining = SCRIPT.thinkUnits;
  }

  /** The response the server creates for the committed turn (server VAD with create_response), and its first delta. */
  startReply() {
    const seq = ++this.replySeq;
    const responseId = `resp_${this.index}_${seq}`;
    const itemId = `item_a${this.index}_${seq}`;
    const reply = {
      seq,
      responseId,
      itemId,
      barge: seq % SCRIPT.bargeEvery === 0,
      deltas: 0,
      framesReceived: 0,
      firstFrameAt: 0,
      firstDeltaAt: 0,
      playEnd: 0,
      interruptedAt: undefined,
      // The delta's fields after its event_id (GA order: type, event_id, response_id, item_id, indexes, delta).
      deltaMiddle: Buffer.from(`","response_id":"${responseId}","item_id":"${itemId}","output_index":0,"content_index":0,"delta":"`),
    };
    const item = { id: itemId, object: 'realtime.item', type: 'message', status: 'in_progress', role: 'assistant', content: [] };
    const previous = this.lastItemId;
    this.lastItemId = itemId;
    this.reply = reply;
    this.lastReply = reply;
    this.replies.set(itemId, reply);
    if (this.replies.size > 4) this.replies.delete(this.replies.keys().next().value);
    this.state = 'reply';
    this.sendDelta([
      { type: 'conversation.item.input_audio_transcription.completed', item_id: this.userItemId, content_index: 0, transcript: 'Caller turn.' },
      { type: 'response.created', response: this.responseObject(reply, 'in_progress', null, []) },
      { type: 'rate_limits.updated', rate_limits: [{ name: 'tokens', limit: 40000, remaining: 35904, reset_seconds: 0.3 }] },
      { type: 'response.output_item.added', response_id: responseId, output_index: 0, item },
      { type: 'conversation.item.added', previous_item_id: previous, item },
      { type: 'response.content_part.added', response_id: responseId, item_id: itemId, output_index: 0, content_index: 0, part: { type: 'audio', transcript: '' } },
    ]);
  }

  /** The next 100 ms of agent audio (after `events`), with a transcript delta every few. */
  sendDelta(events) {
    const reply = this.reply;
    const chunk = this.load.agentChunks[reply.deltas];
    const frame = encodeFrame(OPCODE.text, [DELTA_HEAD, Buffer.from(this.load.nextEventId()), reply.deltaMiddle, chunk, DELTA_TAIL]);
    if (reply.deltas === 0) reply.firstDeltaAt = performance.now();
    if (reply.deltas % SCRIPT.transcriptEvery === 0) {
      events.push({ type: 'response.output_audio_transcript.delta', response_id: reply.responseId, item_id: reply.itemId, output_index: 0, content_index: 0, delta: 'word ' });
    }
    reply.deltas++;
    this.send(events, frame);
  }

  /** The end of the active response: its parts and item closed, then response.done. */
  closeReply(status, reason) {
    const reply = this.reply;
    this.reply = undefined;
    const transcript = 'word '.repeat(Math.ceil(reply.deltas / SCRIPT.transcriptEvery)).trim();
    const ids = { response_id: reply.responseId, item_id: reply.itemId, output_index: 0, content_index: 0 };
    const item = {
      id: reply.itemId,
      object: 'realtime.item',
      type: 'message',
      status: status === 'completed' ? 'completed' : 'incomplete',
      role: 'assistant',
      content: [{ type: 'output_audio', transcript }],
    };
    if (status === 'completed') {
      const w = this.load.window;
      const now = performance.now();
      if (w !== undefined && now >= w.start && now < w.end) w.wholeReplies.push(reply);
    }
    return [
      { type: 'response.output_audio.done', ...ids },
      { type: 'response.output_audio_transcript.done', ...ids, transcript },
      { type: 'response.content_part.done', ...ids, part: { type: 'audio', transcript } },
      { type: 'conversation.item.done', previous_item_id: this.userItemId ?? null, item },
      { type: 'response.output_item.done', response_id: reply.responseId, output_index: 0, item },
      { type: 'response.done', response: this.responseObject(reply, status, status === 'completed' ? null : { type: 'cancelled', reason }, [item]) },
    ];
  }

  responseObject(reply, status, statusDetails, output) {
    const audioTokens = Math.ceil((reply.deltas * SCRIPT.unitMs) / 50);
    return {
      object: 'realtime.response',
      id: reply.responseId,
      status,
      status_details: statusDetails,
      output,
      conversation_id: `conv_${this.index}`,
      output_modalities: ['audio'],
      max_output_tokens: 'inf',
      audio: { output: { format: this.load.format.wire, voice: 'alloy' } },
      usage: status === 'in_progress' ? null : { total_tokens: 120 + audioTokens, input_tokens: 120, output_tokens: audioTokens },
      metadata: null,
    };
  }
}
