// probeHealth: sequential GET /health on fresh connections, latency and failures.
import { request as httpRequest } from 'node:http';
import { performance } from 'node:perf_hooks';
import { requirePositive, round1 } from './common.js';

export interface ProbeHealthOptions {
  /** Pause between the end of one probe and the start of the next (default 50 ms). */
  readonly intervalMs?: number;
  /** A probe without a complete answer after this long is a failure with this latency (default 2000 ms). */
  readonly timeoutMs?: number;
}

export interface HealthReport {
  readonly samples: number;
  readonly worstMs: number;
  readonly p99Ms: number;
  /** Probes that timed out, failed to connect or got another status than 200. */
  readonly failures: number;
}

export interface HealthProbe {
  /** Stop probing (after the probe in flight, if any) and summarise. */
  stop(): Promise<HealthReport>;
}

/**
 * Poll `GET <baseUrl>/health` one request at a time, each on a fresh connection (agent: false, Connection: close), and
 * record its latency (request sent -> response fully read).
 */
export function probeHealth(baseUrl: string, options: ProbeHealthOptions = {}): HealthProbe {
  requirePositive('intervalMs', options.intervalMs, true);
  requirePositive('timeoutMs', options.timeoutMs);
  const url = new URL('/health', baseUrl);
  const intervalMs = options.intervalMs ?? 50;
  const timeoutMs = options.timeoutMs ?? 2000;
  const latencies: number[] = [];
  let failures = 0;
  let stopped = false;
  let pause: { timer: NodeJS.Timeout; resolve: () => void } | undefined;
  const loop = (async () => {
    while (!stopped) {
      const probe = await probeOnce(url, timeoutMs);
      latencies.push(probe.ms);
      if (!probe.ok) failures++;
      if (stopped) break;
      await new Promise<void>((resolve) => (pause = { timer: setTimeout(resolve, intervalMs), resolve }));
      pause = undefined;
    }
  })();
  return {
    async stop() {
      stopped = true;
      if (pause !== undefined) {
        clearTimeout(pause.timer);
        pause.resolve();
      }
      await loop;
      const sorted = Float64Array.from(latencies).sort();
      const p99 = sorted.length === 0 ? 0 : (sorted[Math.min(sorted.length - 1, Math.ceil(0.99 * sorted.length) - 1)] as number);
      return { samples: sorted.length, worstMs: round1(sorted.at(-1) ?? 0), p99Ms: round1(p99), failures };
    },
  };
}

function probeOnce(url: URL, timeoutMs: number): Promise<{ ms: number; ok: boolean }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let settled = false;
    const done = (ok: boolean, timedOut = false): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ms: timedOut ? timeoutMs : performance.now() - t0, ok });
    };
    const req = httpRequest(url, { agent: false, headers: { connection: 'close' } }, (res) => {
      res.on('end', () => done(res.statusCode === 200));
      res.on('error', () => done(false));
      res.resume();
    });
    req.on('error', () => done(false));
    const timer = setTimeout(() => {
      done(false, true);
      req.destroy();
    }, timeoutMs);
    req.end();
  });
}
