import { afterEach, describe, expect, it, vi } from 'vitest';
import pino from 'pino';
import { Writable } from 'node:stream';
import type { EventLoopUtilization } from 'node:perf_hooks';
import { buildGateway, gatewayConfig, loadGatewayConfig, type Gateway } from '../src/index.js';
import { BATCHING_OFF_RATIO, LOAD_SAMPLE_MS, LoadGuard } from '../src/load-guard.js';
import { AvrRecorder } from './ws-client.js';
import { ScriptedSts } from './scripted-sts.js';

/**
 * An event loop whose busy share the test sets: each reading without arguments (a sample) adds 1 s of time at that
 * share; with two readings, the difference, as Node's `performance.eventLoopUtilization(current, previous)` gives it.
 */
function fakeEventLoop(initialShare: number) {
  let share = initialShare;
  let active = 0;
  let idle = 0;
  const reading = (a: number, i: number): EventLoopUtilization => ({ active: a, idle: i, utilization: a + i === 0 ? 0 : a / (a + i) });
  const measure = (current?: EventLoopUtilization, previous?: EventLoopUtilization): EventLoopUtilization => {
    if (current !== undefined && previous !== undefined) return reading(current.active - previous.active, current.idle - previous.idle);
    active += share * 1000;
    idle += (1 - share) * 1000;
    return reading(active, idle);
  };
  return { measure, setShare: (value: number) => void (share = value) };
}

function capturingLogger() {
  const lines: { level: number; msg: string; utilization?: number; limit?: number; batchAbove?: number }[] = [];
  const logger = pino(
    { level: 'info' },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString()) as (typeof lines)[number]);
        done();
      },
    }),
  );
  return { logger, lines };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('LoadGuard', () => {
  it('refuses every new call and request above the limit, and says so once each way', () => {
    vi.useFakeTimers();
    const loop = fakeEventLoop(0.5);
    const { logger, lines } = capturingLogger();
    const reported: number[] = [];
    const guard = new LoadGuard({ maxUtilization: 0.9, activeCalls: () => 0, logger, eventLoopUtilization: loop.measure, onSample: (u) => reported.push(u) });
    guard.start();
    expect(guard.utilization).toBeUndefined();
    expect(guard.refusal(true)).toBeUndefined();

    vi.advanceTimersByTime(LOAD_SAMPLE_MS);
    expect(guard.utilization).toBeCloseTo(0.5, 6);
    loop.setShare(0.98);
    vi.advanceTimersByTime(2 * LOAD_SAMPLE_MS);
    // (0.5 + 0.98 + 0.98) / 3 = 0.82: one quiet second in the window still admits.
    expect(guard.utilization).toBeCloseTo(0.82, 6);
    expect(guard.refusal(true)).toBeUndefined();
    vi.advanceTimersByTime(LOAD_SAMPLE_MS);
    expect(guard.utilization).toBeCloseTo(0.98, 6);
    const overloaded = 'the gateway is overloaded: its event loop was 98% busy over the last 3 s (limit 90%)';
    expect(guard.refusal(true)).toBe(overloaded);
    expect(guard.refusal(false)).toBe(overloaded);
    vi.advanceTimersByTime(3 * LOAD_SAMPLE_MS);
    expect(guard.refusal(true)).toBe(overloaded);

    loop.setShare(0.3);
    vi.advanceTimersByTime(LOAD_SAMPLE_MS);
    // (0.98 + 0.98 + 0.3) / 3 = 0.753
    expect(guard.refusal(true)).toBeUndefined();
    expect(reported.map((u) => Math.round(u * 1000) / 1000)).toEqual([0.5, 0.74, 0.82, 0.98, 0.98, 0.98, 0.98, 0.753]);
    expect(lines.map((line) => [line.level, line.msg, line.utilization, line.limit])).toEqual([
      [40, 'at the load limit: refusing new calls until the event loop has room', 0.98, 0.9],
      [30, 'load under the limit: accepting new calls', 0.753, 0.9],
    ]);

    guard.close();
    expect(vi.getTimerCount()).toBe(0);
    expect(guard.refusal(true)).toBeUndefined();
    vi.advanceTimersByTime(5 * LOAD_SAMPLE_MS);
    expect(reported).toHaveLength(8);
  });

  it('from half the limit on, refuses the calls that would take the loop past it, from what a call costs now', () => {
    vi.useFakeTimers();
    const loop = fakeEventLoop(0.6);
    let calls = 100;
    const guard = new LoadGuard({ maxUtilization: 0.8, activeCalls: () => calls, logger: pino({ level: 'silent' }), eventLoopUtilization: loop.measure });
    guard.start();
    vi.advanceTimersByTime(3 * LOAD_SAMPLE_MS);
    // 100 calls take 60%: 0.6% each, so 133 fit under 80%.
    expect(guard.callCapacity).toBe(133);
    expect(guard.refusal(true)).toBeUndefined();
    calls = 132;
    expect(guard.refusal(true)).toBeUndefined();
    calls = 133;
    expect(guard.refusal(true)).toBe('the gateway is at its load limit: 133 calls keep its event loop 60% busy, one more would take it past 80%');
    // An HTTP request is not a call: only the limit itself refuses it.
    expect(guard.refusal(false)).toBeUndefined();

    // Each sample counts the calls in progress over its second (the mean of its two ends): 116.5, 133, 133 calls
    // at 60% cost 0.47% each, 170 fit; once every second of the window had 133, 0.45% each, 177 fit.
    vi.advanceTimersByTime(3 * LOAD_SAMPLE_MS);
    expect(guard.callCapacity).toBe(170);
    vi.advanceTimersByTime(LOAD_SAMPLE_MS);
    expect(guard.callCapacity).toBe(177);
    expect(guard.refusal(true)).toBeUndefined();

    // Below half the limit the loop's share is mostly not the calls' (timers, metrics): no estimate, no refusal.
    loop.setShare(0.35);
    vi.advanceTimersByTime(3 * LOAD_SAMPLE_MS);
    expect(guard.callCapacity).toBeUndefined();
    calls = 5000;
    expect(guard.refusal(true)).toBeUndefined();
    guard.close();
  });

  it('without a limit only measures', () => {
    vi.useFakeTimers();
    const { logger, lines } = capturingLogger();
    const guard = new LoadGuard({ maxUtilization: undefined, activeCalls: () => 10, logger, eventLoopUtilization: fakeEventLoop(1).measure });
    guard.start();
    vi.advanceTimersByTime(5 * LOAD_SAMPLE_MS);
    expect(guard.utilization).toBe(1);
    expect(guard.callCapacity).toBeUndefined();
    expect(guard.refusal(true)).toBeUndefined();
    expect(lines).toEqual([]);
    guard.close();
  });

  it('batches caller audio above its share, and stops only well below it (batching lowers the load)', () => {
    vi.useFakeTimers();
    const loop = fakeEventLoop(0.5);
    const { logger, lines } = capturingLogger();
    const reported: boolean[] = [];
    const guard = new LoadGuard({
      maxUtilization: undefined,
      batchCallerAudioAbove: 0.7,
      activeCalls: () => 200,
      logger,
      eventLoopUtilization: loop.measure,
      onSample: (_u, batching) => reported.push(batching),
    });
    guard.start();
    vi.advanceTimersByTime(3 * LOAD_SAMPLE_MS);
    expect(guard.callerAudioFramesPerSend()).toBe(1);
    loop.setShare(0.79);
    // (0.5 + 0.5 + 0.79) / 3 = 0.597, then (0.5 + 0.79 + 0.79) / 3 = 0.693: not above; then 0.79.
    vi.advanceTimersByTime(2 * LOAD_SAMPLE_MS);
    expect(guard.batchingCallerAudio).toBe(false);
    vi.advanceTimersByTime(LOAD_SAMPLE_MS);
    expect(guard.batchingCallerAudio).toBe(true);
    expect(guard.callerAudioFramesPerSend()).toBe(2);
    // Batching saved a fifth: 0.64 is under the share, but not under 3/4 of it (0.525).
    loop.setShare(0.64);
    vi.advanceTimersByTime(3 * LOAD_SAMPLE_MS);
    expect(guard.callerAudioFramesPerSend()).toBe(2);
    loop.setShare(0.5);
    vi.advanceTimersByTime(3 * LOAD_SAMPLE_MS);
    expect(0.5).toBeLessThan(0.7 * BATCHING_OFF_RATIO);
    expect(guard.callerAudioFramesPerSend()).toBe(1);
    expect(reported).toEqual([false, false, false, false, false, true, true, true, true, true, true, false]);
    expect(lines.map((line) => [line.level, line.msg, line.utilization, line.batchAbove])).toEqual([
      [30, 'event loop busy: caller audio goes to the providers 40 ms at a time', 0.79, 0.7],
      [30, 'event loop has room: caller audio goes to the providers frame by frame again', 0.5, 0.7],
    ]);
    guard.close();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('never batches without a share', () => {
    vi.useFakeTimers();
    const guard = new LoadGuard({ maxUtilization: undefined, activeCalls: () => 10, logger: pino({ level: 'silent' }), eventLoopUtilization: fakeEventLoop(1).measure });
    guard.start();
    vi.advanceTimersByTime(5 * LOAD_SAMPLE_MS);
    expect(guard.callerAudioFramesPerSend()).toBe(1);
    guard.close();
  });

  it('measures the real event loop by default', async () => {
    const guard = new LoadGuard({ maxUtilization: undefined, activeCalls: () => 0, logger: pino({ level: 'silent' }), sampleMs: 20 });
    guard.start();
    // Keep the loop busy between samples: the share must come out well above zero.
    const until = Date.now() + 200;
    while (guard.utilization === undefined || Date.now() < until) {
      const spin = Date.now() + 15;
      while (Date.now() < spin);
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(guard.utilization).toBeGreaterThan(0.3);
    expect(guard.utilization).toBeLessThanOrEqual(1);
    guard.close();
  });
});

describe('MAX_EVENT_LOOP_UTILIZATION', () => {
  it('is a share from 0.1 to 0.99, unset by default', () => {
    expect(loadGatewayConfig({}).maxEventLoopUtilization).toBeUndefined();
    expect(loadGatewayConfig({ MAX_EVENT_LOOP_UTILIZATION: '0.9' }).maxEventLoopUtilization).toBe(0.9);
    expect(loadGatewayConfig({ MAX_EVENT_LOOP_UTILIZATION: '' }).maxEventLoopUtilization).toBeUndefined();
    for (const value of ['90', '0', '1', 'busy', '0.05']) {
      expect(() => loadGatewayConfig({ MAX_EVENT_LOOP_UTILIZATION: value })).toThrow(
        `MAX_EVENT_LOOP_UTILIZATION=${JSON.stringify(value)} is not a share of time from 0.1 to 0.99 (e.g. 0.9)`,
      );
    }
  });
});

describe('CALLER_AUDIO_BATCH_UTILIZATION', () => {
  it('is a share from 0.1 to 0.99 (0.7 by default) or off', () => {
    expect(loadGatewayConfig({}).callerAudioBatchUtilization).toBe(0.7);
    expect(loadGatewayConfig({ CALLER_AUDIO_BATCH_UTILIZATION: '0.5' }).callerAudioBatchUtilization).toBe(0.5);
    expect(loadGatewayConfig({ CALLER_AUDIO_BATCH_UTILIZATION: 'off' }).callerAudioBatchUtilization).toBeUndefined();
    for (const value of ['70', '1', 'on', 'none']) {
      expect(() => loadGatewayConfig({ CALLER_AUDIO_BATCH_UTILIZATION: value })).toThrow(
        `CALLER_AUDIO_BATCH_UTILIZATION=${JSON.stringify(value)} is not a share of time from 0.1 to 0.99 (e.g. 0.7) or off`,
      );
    }
  });
});

describe('the gateway under load', () => {
  const gateways: Gateway[] = [];
  afterEach(async () => {
    await Promise.all(gateways.splice(0).map((g) => g.app.close()));
  });

  async function until(predicate: () => boolean | Promise<boolean>): Promise<void> {
    const started = Date.now();
    while (!(await predicate())) {
      if (Date.now() - started > 5000) throw new Error('condition not met in time');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  it('refuses new calls with 503 at the load limit; calls in progress, health and metrics go on', async () => {
    const loop = fakeEventLoop(0.2);
    const sts = new ScriptedSts();
    const gateway = await buildGateway(gatewayConfig({ maxEventLoopUtilization: 0.85 }), {
      sts: { id: sts.id, adapter: sts },
      logger: pino({ level: 'silent' }),
      loadSampling: { sampleMs: 10, eventLoopUtilization: loop.measure },
    });
    gateways.push(gateway);
    await gateway.app.ready();
    const metric = async (pattern: RegExp) => Number(pattern.exec((await gateway.app.inject('/metrics')).body)?.[1]);
    /** Until the gauge the guard sets shows the fake loop's new share over its whole window. */
    const untilUtilization = (reached: (utilization: number) => boolean) =>
      until(async () => reached(await metric(/^stsgate_event_loop_utilization (\S+)$/m)));

    const before = new AvrRecorder(await gateway.app.injectWS('/'));
    before.send({ type: 'init', uuid: 'before' });
    const session = await sts.nextSession();

    // One call takes 60% of the loop: a second would take it past 85%, before the loop is there.
    loop.setShare(0.6);
    await untilUtilization((u) => u > 0.59);
    const atCapacity = await gateway.app.inject('/');
    expect(atCapacity.statusCode).toBe(503);
    expect(atCapacity.json()).toEqual({ message: 'the gateway is at its load limit: 1 call keeps its event loop 60% busy, one more would take it past 85%' });

    loop.setShare(0.95);
    await untilUtilization((u) => u > 0.94);
    await expect(gateway.app.injectWS('/')).rejects.toThrow(/503/);
    // The answer itself (the same hook answers before a WebSocket upgrade).
    const refused = await gateway.app.inject('/');
    expect(refused.statusCode).toBe(503);
    expect(refused.json()).toEqual({ message: expect.stringMatching(/^the gateway is overloaded: its event loop was 95% busy over the last 0\.0[1-3] s \(limit 85%\)$/) });
    expect(await metric(/^stsgate_errors_total\{kind="overload"\} (\S+)$/m)).toBe(3);
    expect((await gateway.app.inject('/health')).statusCode).toBe(200);
    // The call admitted before goes on.
    before.send({ type: 'audio', audio: Buffer.alloc(320).toString('base64') });
    await until(() => session.audio.length > 0);
    expect(gateway.calls.size).toBe(1);

    // Under half the limit: admitted.
    loop.setShare(0.3);
    await untilUtilization((u) => u < 0.31);
    const after = new AvrRecorder(await gateway.app.injectWS('/'));
    after.send({ type: 'init', uuid: 'after' });
    await sts.nextSession();
    expect(gateway.calls.size).toBe(2);
  });

  it('sends caller audio two frames per provider message while its event loop is busy, frame by frame again after', async () => {
    const loop = fakeEventLoop(0.9);
    const sts = new ScriptedSts();
    const gateway = await buildGateway(gatewayConfig({}), {
      sts: { id: sts.id, adapter: sts },
      logger: pino({ level: 'silent' }),
      loadSampling: { sampleMs: 10, eventLoopUtilization: loop.measure },
    });
    gateways.push(gateway);
    await gateway.app.ready();
    const batched = async () => Number(/^stsgate_caller_audio_batched (\S+)$/m.exec((await gateway.app.inject('/metrics')).body)?.[1]);
    await until(async () => (await batched()) === 1);

    const avr = new AvrRecorder(await gateway.app.injectWS('/'));
    avr.send({ type: 'init', uuid: 'busy' });
    const session = await sts.nextSession();
    const frame = (value: number) => ({ type: 'audio', audio: Buffer.alloc(320, value).toString('base64') });
    for (let i = 1; i <= 4; i++) avr.send(frame(i));
    await until(() => session.audio.length >= 2);
    expect(session.audio.map((chunk) => [chunk.length, (chunk[0] ?? 0) & 0xff])).toEqual([
      [320, 1],
      [320, 3],
    ]);

    loop.setShare(0.2);
    await until(async () => (await batched()) === 0);
    avr.send(frame(5));
    avr.send(frame(6));
    await until(() => session.audio.length >= 4);
    expect(session.audio.map((chunk) => chunk.length)).toEqual([320, 320, 160, 160]);
  });
});
