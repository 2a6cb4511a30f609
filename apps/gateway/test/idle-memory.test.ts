import { afterEach, describe, expect, it, vi } from 'vitest';
import pino from 'pino';
import { Writable } from 'node:stream';
import { getHeapStatistics } from 'node:v8';
import { WebSocket } from 'ws';
import type { AddressInfo } from 'node:net';
import { buildGateway, gatewayConfig } from '../src/index.js';
import { IdleMemoryRelease, collectAllGarbage } from '../src/idle-memory.js';
import { AvrRecorder } from './ws-client.js';
import { ScriptedSts } from './scripted-sts.js';

const silent = pino({ level: 'silent' });

afterEach(() => {
  vi.useRealTimers();
});

describe('collectAllGarbage', () => {
  it('frees what nothing references any more, without --expose-gc', async () => {
    // ~40 MB of small objects that outlive this block only as garbage.
    let garbage: number[][] | undefined = Array.from({ length: 200_000 }, (_, i) => [i, i + 1, i + 2, i + 3, i + 4, i + 5, i + 6, i + 7]);
    const withGarbage = getHeapStatistics().used_heap_size;
    expect(garbage.length).toBe(200_000);
    garbage = undefined;
    await collectAllGarbage();
    expect(withGarbage - getHeapStatistics().used_heap_size).toBeGreaterThan(10 * 1048576);
  });
});

describe('IdleMemoryRelease', () => {
  const counted = () => {
    let collections = 0;
    const release = new IdleMemoryRelease({ quietMs: 10_000, logger: silent, collect: async () => void collections++ });
    return { release, collections: () => collections };
  };

  it('collects once, after the last call has been gone for the quiet period', async () => {
    vi.useFakeTimers();
    const { release, collections } = counted();
    release.callsChanged(1);
    release.callsChanged(0);
    await vi.advanceTimersByTimeAsync(9_999);
    expect(collections()).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(collections()).toBe(1);
    // Idle with nothing new to give back: no further collections.
    await vi.advanceTimersByTimeAsync(120_000);
    expect(collections()).toBe(1);
    await release.close();
  });

  it('does not collect while a call is in progress, and starts the quiet period over when calls end again', async () => {
    vi.useFakeTimers();
    const { release, collections } = counted();
    release.callsChanged(0);
    await vi.advanceTimersByTimeAsync(6_000);
    release.callsChanged(2);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(collections()).toBe(0);
    release.callsChanged(1);
    release.callsChanged(0);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(collections()).toBe(1);
    await release.close();
  });

  it('starts nothing after close', async () => {
    vi.useFakeTimers();
    const { release, collections } = counted();
    release.callsChanged(0);
    await release.close();
    release.callsChanged(0);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(collections()).toBe(0);
  });

  it('logs a failed collection as a warning and keeps working', async () => {
    vi.useFakeTimers();
    const lines: string[] = [];
    const logger = pino({ level: 'debug' }, new Writable({ write: (chunk, _encoding, done) => void (lines.push(String(chunk)), done()) }));
    let attempts = 0;
    const release = new IdleMemoryRelease({
      quietMs: 1_000,
      logger,
      collect: async () => {
        if (++attempts === 1) throw new Error('inspector unavailable');
      },
    });
    release.callsChanged(0);
    await vi.advanceTimersByTimeAsync(1_000);
    release.callsChanged(0);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(attempts).toBe(2);
    expect(lines.filter((line) => line.includes('idle memory release failed') && line.includes('"level":40'))).toHaveLength(1);
    expect(lines.filter((line) => line.includes('memory of ended calls released'))).toHaveLength(1);
    await release.close();
  });
});

describe('the gateway with releaseMemoryWhenIdleMs', () => {
  it('releases memory once its last call has ended, not while a call is up', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'debug' }, new Writable({ write: (chunk, _encoding, done) => void (lines.push(String(chunk)), done()) }));
    const sts = new ScriptedSts();
    const gateway = await buildGateway(gatewayConfig(), { sts: { id: 'scripted', adapter: sts }, logger, releaseMemoryWhenIdleMs: 200 });
    try {
      await gateway.app.listen({ host: '127.0.0.1', port: 0 });
      const socket = new WebSocket(`ws://127.0.0.1:${(gateway.app.server.address() as AddressInfo).port}/`);
      await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
      const call = new AvrRecorder(socket);
      const session = sts.nextSession();
      call.send({ type: 'init', uuid: 'idle-memory' });
      await session;
      const released = () => lines.filter((line) => line.includes('memory of ended calls released'));
      await new Promise((resolve) => setTimeout(resolve, 400));
      expect(released()).toHaveLength(0);
      socket.close();
      await vi.waitFor(() => expect(released()).toHaveLength(1), { timeout: 5_000 });
      const entry = JSON.parse(released()[0] ?? '{}') as { rssBeforeMB?: unknown; rssAfterMB?: unknown };
      expect(typeof entry.rssBeforeMB).toBe('number');
      expect(typeof entry.rssAfterMB).toBe('number');
    } finally {
      await gateway.app.close();
    }
  });
});
