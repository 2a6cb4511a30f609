import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  concatPcm as concat,
  detectSpeechSegments,
  fixturePath,
  readWav,
  reportToJson,
  silence,
  simulateCall,
  UNDERRUN_MAX_MS,
  type CallReport,
} from '../src/index.js';
import {
  frameSamples,
  meanSquare,
  sendFrames,
  startFakeSts,
  tone,
  audioMessage,
  type FakeSts,
} from './fake-sts.js';

const SPEECH_MEAN_SQUARE = (32768 * 0.01) ** 2; // -40 dBFS, like the simulator's detector

let sts: FakeSts | undefined;
afterEach(async () => {
  await sts?.close();
  sts = undefined;
});

function loadFixture(name: 'short' | 'question'): Int16Array {
  return readWav(fixturePath(name)).samples;
}

function indexOfFirstNonZero(samples: Int16Array): number {
  return samples.findIndex((s) => s !== 0);
}

describe('simulateCall', () => {
  it('sends init then 320-byte frames, and plays the echoed reply into the heard timeline', async () => {
    const input = loadFixture('short'); // 1.3 s
    const inputFrames = Math.ceil(input.length / 160);
    let echoed: Int16Array = new Int16Array(0);
    sts = await startFakeSts((conn) => {
      conn.ws.on('message', () => {
        // After the whole utterance has arrived, answer with it (non-silent frames only) 200 ms later.
        if (conn.frames.length !== inputFrames) return;
        const voiced = conn.frames.map(frameSamples).filter((f) => f.some((s) => s !== 0));
        echoed = concat(...voiced);
        setTimeout(() => {
          conn.ws.send(JSON.stringify({ type: 'transcript', role: 'user', text: 'Yes, please.' }));
          sendFrames(conn.ws, echoed);
          conn.ws.send(JSON.stringify({ type: 'transcript', role: 'agent', text: 'Yes, please.' }));
        }, 200);
      });
    });
    const query = '/?from=2000&to=5001&channel=PJSIP%2F2000-00000013';
    const report = await simulateCall({ url: `${sts.url}${query}`, uuid: 'call-1', input, tailMs: 1600 });
    const conn = sts.connections[0];
    if (conn === undefined) throw new Error('no connection');
    await conn.closed;

    expect(conn.requestUrl).toBe(query);
    expect(conn.messages[0]).toEqual({ type: 'init', uuid: 'call-1' });
    const totalTicks = inputFrames + 80;
    expect(conn.frames).toHaveLength(totalTicks);
    expect(conn.messages.slice(1).every((m) => m.type === 'audio')).toBe(true);
    expect(conn.frames.every((f) => f.length === 320)).toBe(true);
    // The caller audio arrives unchanged (last frame zero-padded).
    expect(Array.from(concat(...conn.frames.map(frameSamples)).subarray(0, input.length))).toEqual(Array.from(input));

    expect(report.endReason).toBe('completed');
    expect(report.sent.audioFrames).toBe(totalTicks);
    expect(report.durationMs).toBe(totalTicks * 20);
    expect(report.heard).toHaveLength(totalTicks * 160);
    expect(report.close).toMatchObject({ code: 1000, initiatedBy: 'client' });
    expect(report.serverClosedFirst).toBe(false);
    expect(report.received.audioMessages).toBe(echoed.length / 160);
    expect(report.received.irregularFrames).toBe(0);
    expect(report.protocolProblems).toEqual([]);
    expect(report.transcripts.map((t) => [t.role, t.text])).toEqual([
      ['user', 'Yes, please.'],
      ['agent', 'Yes, please.'],
    ]);

    // The reply was played contiguously, starting on a tick boundary after the input ended.
    expect(echoed.length).toBeGreaterThan(8000 * 0.8);
    // (The first voiced frame may begin with zeros, so align to the tick holding the first non-zero sample.)
    const start = Math.floor(indexOfFirstNonZero(report.heard) / 160) * 160;
    expect(start / 8).toBeGreaterThanOrEqual(inputFrames * 20);
    expect(Array.from(report.heard.subarray(start, start + echoed.length))).toEqual(Array.from(echoed));
    expect(report.heard.subarray(start + echoed.length).every((s) => s === 0)).toBe(true);
    expect(report.heardAgentMs).toBe(echoed.length / 8);
    expect(report.firstAudioHeardAtMs).toBe(start / 8);
    expect(Array.from(report.receivedAudio)).toEqual(Array.from(echoed));

    // One caller segment; latency = reply arrival - speech end, heard at the next tick.
    expect(report.callerSpeech).toHaveLength(1);
    const [latency] = report.responseLatencies;
    const speechEnd = report.callerSpeech[0]?.endMs ?? Number.NaN;
    expect(latency?.speechEndMs).toBe(speechEnd);
    expect(latency?.receivedMs).not.toBeNull();
    expect(latency?.receivedMs).toBeGreaterThan(inputFrames * 20 - speechEnd);
    expect(latency?.heardMs).toBe(start / 8 - speechEnd);
    expect(latency?.heardMs).toBeGreaterThanOrEqual(latency?.receivedMs ?? Number.POSITIVE_INFINITY);
    expect(report.responseLatenciesMs).toEqual([latency?.receivedMs]);
    expect(report.bargeIns).toEqual([]);

    // Everything but the audio is JSON.
    const json = JSON.parse(JSON.stringify(reportToJson(report))) as Record<string, unknown>;
    expect(json.heard).toBeUndefined();
    expect(json.uuid).toBe('call-1');
  });

  it('flushes the playout buffer on interruption and measures the barge-in', async () => {
    const speech = loadFixture('short');
    const input = concat(silence(1000), speech); // caller speaks over the agent at ~1.14 s
    sts = await startFakeSts((conn) => {
      let interrupted = false;
      conn.ws.on('message', () => {
        const last = conn.messages.at(-1);
        if (last?.type === 'init') sendFrames(conn.ws, tone(3000, 440, 8000)); // 3 s reply, sent at once
        const frame = conn.frames.at(-1);
        if (!interrupted && frame !== undefined && meanSquare(frameSamples(frame)) >= SPEECH_MEAN_SQUARE) {
          interrupted = true;
          conn.ws.send(JSON.stringify({ type: 'interruption' }));
        }
      });
    });
    const report = await simulateCall({ url: sts.url, input, tailMs: 600 });

    expect(report.interruptions).toHaveLength(1);
    const interruption = report.interruptions[0];
    expect(interruption?.flushedMs).toBeGreaterThan(1000);
    expect(report.callerSpeech).toHaveLength(1);
    const speechStart = report.callerSpeech[0]?.startMs ?? Number.NaN;
    expect(speechStart).toBeGreaterThan(1000);

    expect(report.bargeIns).toHaveLength(1);
    const bargeIn = report.bargeIns[0];
    expect(bargeIn?.speechStartMs).toBe(speechStart);
    expect(bargeIn?.interruptionAtMs).toBe(interruption?.atMs);
    expect(bargeIn?.reactionMs).toBeGreaterThanOrEqual(0);
    expect(report.bargeInReactionMs).toEqual([bargeIn?.reactionMs]);
    expect(bargeIn?.playbackStopped).toBe(true);
    const stoppedAt = bargeIn?.playbackStoppedAtMs ?? Number.NaN;
    expect(stoppedAt).toBeGreaterThan(speechStart);
    // Playback stops from the first tick processed after the interruption arrived (ticks are 20 ms apart).
    expect(stoppedAt).toBeGreaterThanOrEqual(Math.floor((interruption?.atMs ?? Number.NaN) / 20) * 20);

    // The agent was audible up to the interruption and silent after it: nothing flushed was played.
    const heard = report.heard;
    expect(meanSquare(heard.subarray(speechStart * 8 - 160, speechStart * 8))).toBeGreaterThan(1e6);
    expect(heard.subarray(stoppedAt * 8).every((s) => s === 0)).toBe(true);
    const firstHeard = report.firstAudioHeardAtMs ?? Number.NaN;
    expect(firstHeard).toBeLessThan(100);
    expect(report.heardAgentMs).toBe(stoppedAt - firstHeard);
    expect(report.heardAgentMs + (interruption?.flushedMs ?? 0)).toBe(3000);
    expect(report.unplayedAgentMs).toBe(0);
  });

  it('counts caller speech that starts in an underrun of the reply as a barge-in, and a longer pause as none', async () => {
    const input = concat(silence(1000), loadFixture('short'));
    const [segment] = detectSpeechSegments(input, { sampleRate: 8000 });
    if (segment === undefined) throw new Error('no speech in the input');
    const speechStartTick = Math.floor(segment.startMs / 20);
    const heardTicks = (heard: Int16Array): number[] =>
      Array.from({ length: heard.length / 160 }, (_, tick) => tick).filter((tick) => heard.subarray(tick * 160, (tick + 1) * 160).some((s) => s !== 0));
    // The agent's reply comes in two chunks: 100 ms when frame `firstAt` arrives, 3 s more when frame
    // speechStartTick - 1 does. Frames are sent back to back (realtime: false), so each chunk plays from a tick or two
    // after its trigger: the reply pauses around the caller's speech start.
    const run = async (firstAt: number): Promise<{ report: CallReport; silentTicks: number }> => {
      sts = await startFakeSts((conn) => {
        conn.ws.on('message', () => {
          if (conn.frames.length === firstAt + 1) sendFrames(conn.ws, tone(100, 300, 6000));
          if (conn.frames.length === speechStartTick) sendFrames(conn.ws, tone(3000, 300, 6000));
        });
      });
      const report = await simulateCall({ url: sts.url, input, tailMs: 400, realtime: false });
      await sts.close();
      sts = undefined;
      const played = heardTicks(report.heard);
      const before = played.filter((tick) => tick < speechStartTick).at(-1) ?? Number.NaN;
      const after = played.find((tick) => tick >= speechStartTick) ?? Number.NaN;
      expect(after).toBeGreaterThan(speechStartTick); // the speech starts in the pause
      return { report, silentTicks: after - before - 1 };
    };

    const underrun = await run(speechStartTick - 8);
    expect(underrun.silentTicks).toBeLessThan(UNDERRUN_MAX_MS / 20);
    expect(underrun.report.bargeIns).toHaveLength(1);
    // The reply played on to the end of the call: the underrun is not the playback stopping.
    expect(underrun.report.bargeIns[0]).toMatchObject({ speechStartMs: segment.startMs, playbackStopped: false, playbackStoppedAtMs: null });

    const pause = await run(speechStartTick - 14);
    expect(pause.silentTicks).toBeGreaterThanOrEqual(UNDERRUN_MAX_MS / 20);
    expect(pause.report.bargeIns).toEqual([]);
  });

  it('reports a barge-in the agent ignored', async () => {
    const input = loadFixture('short');
    sts = await startFakeSts((conn) => {
      conn.ws.once('message', () => sendFrames(conn.ws, tone(4000, 300, 6000)));
    });
    const report = await simulateCall({ url: sts.url, input, tailMs: 200 });
    expect(report.bargeIns).toHaveLength(1);
    expect(report.bargeIns[0]).toMatchObject({ interruptionAtMs: null, reactionMs: null, playbackStopped: false });
    expect(report.bargeInReactionMs).toEqual([]);
    // Played without a gap from its first tick to the end of the call.
    expect(report.heardAgentMs).toBe(report.durationMs - (report.firstAudioHeardAtMs ?? Number.NaN));
    expect(report.unplayedAgentMs).toBe(4000 - report.heardAgentMs);
  });

  it('records malformed server messages as protocol problems and handles the server closing first', async () => {
    sts = await startFakeSts((conn) => {
      conn.ws.once('message', () => {
        conn.ws.send('not json');
        conn.ws.send(JSON.stringify({ type: 'bogus' }));
        conn.ws.send(JSON.stringify({ type: 'audio', audio: '!!!!' }));
        conn.ws.send(Buffer.from([1, 2, 3, 4]), { binary: true });
        conn.ws.send(JSON.stringify({ type: 'audio', audio: 'AA==' })); // one byte
        conn.ws.send(JSON.stringify({ type: 'audio' }));
        conn.ws.send(JSON.stringify({ type: 'transcript', role: 'robot', text: 'x' }));
        conn.ws.send(audioMessage(tone(12.5, 400, 5000))); // 100 samples: valid, irregular size
        conn.ws.send(JSON.stringify({ type: 'error', message: 'Unable to connect to AI provider' }));
        setTimeout(() => conn.ws.close(4001, 'provider gone'), 300);
      });
    });
    const report = await simulateCall({ url: sts.url, input: silence(1000), tailMs: 3000 });

    expect(report.protocolProblems.map((p) => p.problem)).toEqual([
      'message is not valid JSON',
      expect.stringMatching(/^invalid "bogus"/),
      expect.stringMatching(/^invalid "audio": audio/),
      expect.stringMatching(/binary frame/),
      expect.stringMatching(/1 bytes is not whole s16le samples/),
      expect.stringMatching(/^invalid "audio": audio/),
      expect.stringMatching(/^invalid "transcript": role/),
    ]);
    expect(report.received.audioMessages).toBe(1);
    expect(report.received.irregularFrames).toBe(2);
    expect(report.heardAgentMs).toBe(12.5);
    expect(report.errors).toEqual([{ message: 'Unable to connect to AI provider', atMs: expect.any(Number) as number }]);
    expect(report.endReason).toBe('server_closed');
    expect(report.serverClosedFirst).toBe(true);
    expect(report.close).toMatchObject({ code: 4001, reason: 'provider gone', initiatedBy: 'server' });
    expect(report.durationMs).toBeLessThan(4000);
    expect(report.heard).toHaveLength(report.durationMs * 8);
  });

  it('sends DTMF digits ahead of the frame that is due at their time', async () => {
    sts = await startFakeSts(() => {});
    const report = await simulateCall({
      url: sts.url,
      input: silence(400),
      tailMs: 0,
      dtmf: [
        { atMs: 210, digit: '#' },
        { atMs: 100, digit: '5' },
      ],
    });
    const conn = sts.connections[0];
    if (conn === undefined) throw new Error('no connection');
    await conn.closed;
    const types = conn.messages.map((m) => (m.type === 'dtmf_digit' ? `dtmf:${String(m.digit)}` : String(m.type)));
    const expected = ['init', ...Array<string>(5).fill('audio'), 'dtmf:5', ...Array<string>(6).fill('audio'), 'dtmf:#'];
    expected.push(...Array<string>(20 - 11).fill('audio'));
    expect(types).toEqual(expected);
    expect(report.sent.dtmf).toEqual([
      { atMs: 100, digit: '5' },
      { atMs: 220, digit: '#' },
    ]);
    await expect(simulateCall({ url: sts.url, input: silence(20), dtmf: [{ atMs: 0, digit: 'x' }] })).rejects.toThrow(
      /invalid DTMF digit/,
    );
  });

  it('streams back to back when realtime is false', async () => {
    sts = await startFakeSts((conn) => {
      conn.ws.on('message', () => {
        if (conn.frames.length === 10) sendFrames(conn.ws, tone(200, 500, 4000));
      });
    });
    const report = await simulateCall({ url: sts.url, input: loadFixture('question'), tailMs: 2000, realtime: false });
    const conn = sts.connections[0];
    if (conn === undefined) throw new Error('no connection');
    await conn.closed;
    const frames = Math.ceil(loadFixture('question').length / 160) + 100;
    expect(conn.frames).toHaveLength(frames);
    expect(report.sent.audioFrames).toBe(frames);
    expect(report.realtime).toBe(false);
    expect(report.endReason).toBe('completed');
    expect(report.received.audioMessages).toBe(10);
  });

  it('with idleMs, stays on while the reply arrives or plays, and hangs up once the agent has been quiet that long', async () => {
    sts = await startFakeSts((conn) => {
      conn.ws.on('message', () => {
        if (conn.frames.length !== 20) return; // the input (400 ms) has been sent
        // A reply in two parts: the second arrives while the first still plays.
        setTimeout(() => sendFrames(conn.ws, tone(1000, 440, 6000)), 300);
        setTimeout(() => sendFrames(conn.ws, tone(600, 660, 6000)), 900);
      });
    });
    const report = await simulateCall({ url: sts.url, input: silence(400), tailMs: 10_000, idleMs: 500 });
    expect(report.endReason).toBe('completed');
    expect(report.tailEndedBy).toBe('idle');
    expect(report.heardAgentMs).toBe(1600);
    expect(report.unplayedAgentMs).toBe(0);
    // Playback ended 1600 ms after it began; the call 500 ms later (on the 20 ms tick grid).
    const playbackEnd = (report.firstAudioHeardAtMs ?? Number.NaN) + 1600;
    expect(report.durationMs).toBeGreaterThanOrEqual(playbackEnd + 500);
    expect(report.durationMs).toBeLessThanOrEqual(playbackEnd + 500 + 40);
    expect(report.sent.audioFrames).toBe(report.durationMs / 20);
  });

  it('with idleMs, waits at least that long after the input and the last DTMF digit', async () => {
    sts = await startFakeSts(() => {});
    const report = await simulateCall({ url: sts.url, input: silence(200), tailMs: 5000, idleMs: 300, dtmf: [{ atMs: 600, digit: '9' }] });
    expect(report.sent.dtmf).toEqual([{ atMs: 600, digit: '9' }]);
    expect(report.tailEndedBy).toBe('idle');
    expect(report.durationMs).toBe(620 + 300);
  });

  it('with idleMs, gives up at tailMs after the input and reports the agent audio cut', async () => {
    sts = await startFakeSts((conn) => {
      conn.ws.once('message', () => sendFrames(conn.ws, tone(5000, 440, 6000)));
    });
    const report = await simulateCall({ url: sts.url, input: silence(200), tailMs: 1000, idleMs: 500 });
    expect(report.tailEndedBy).toBe('cap');
    expect(report.durationMs).toBe(1200);
    expect(report.heardAgentMs + report.unplayedAgentMs).toBe(5000);
    expect(report.unplayedAgentMs).toBeGreaterThan(3700);

    const fixed = await simulateCall({ url: sts.url, input: silence(20), tailMs: 40 });
    expect(fixed.tailEndedBy).toBeNull();
    await expect(simulateCall({ url: sts.url, input: silence(20), idleMs: -1 })).rejects.toThrow(/idleMs must be >= 0/);
  });

  it('ends the call like a hang-up when aborted', async () => {
    sts = await startFakeSts(() => {});
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 300);
    const report = await simulateCall({ url: sts.url, input: silence(2000), signal: controller.signal });
    const conn = sts.connections[0];
    if (conn === undefined) throw new Error('no connection');
    expect(await conn.closed).toEqual({ code: 1000, reason: 'call aborted' });
    expect(report.endReason).toBe('aborted');
    expect(report.close.initiatedBy).toBe('client');
    expect(report.durationMs).toBeLessThan(2000);
    expect(report.sent.audioFrames).toBe(report.durationMs / 20);

    const aborted = AbortSignal.abort();
    await expect(simulateCall({ url: sts.url, input: silence(20), signal: aborted })).rejects.toThrow();
  });

  it('rejects when the endpoint is unreachable or never answers the handshake', async () => {
    const closedPort = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    await expect(simulateCall({ url: `ws://127.0.0.1:${closedPort}/`, input: silence(20) })).rejects.toThrow(
      /could not connect/,
    );

    const sockets = new Set<Socket>();
    const silent: Server = createServer((socket) => {
      // Accept TCP but never answer the upgrade; read so the client's FIN is seen.
      sockets.add(socket);
      socket.resume();
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = silent.address() as AddressInfo;
      await expect(
        simulateCall({ url: `ws://127.0.0.1:${port}/`, input: silence(20), connectTimeoutMs: 300 }),
      ).rejects.toThrow(/could not connect/);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });
});
