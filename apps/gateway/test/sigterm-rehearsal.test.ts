import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { WebSocket } from 'ws';
import { AvrRecorder } from './ws-client.js';

// Issue 12's SIGTERM rehearsal: the real `stsgate serve` process, 20 calls that outlast the grace period, then SIGTERM.
// Readiness must fail at once, no new call may start, every call must end with an AVR `error` and close 1001 at the
// grace deadline, and the process must exit 0 soon after — within what the Kubernetes manifests leave before SIGKILL.
// The bounds are generous (a loaded 2-core CI machine), they check behaviour, not speed.

const GATEWAY = fileURLToPath(new URL('..', import.meta.url));
const CLI = `${GATEWAY}dist/cli.js`;
const BASE = fileURLToPath(new URL('../../../deploy/k8s/base/', import.meta.url));
const CALLS = 20;
const GRACE_MS = 1500;
/** How soon /health must answer 503 after SIGTERM ("readiness failing at once"). */
const READINESS_BOUND_MS = 500;
/** How far past the grace deadline the calls may close, and the process may exit. */
const CLOSE_OVERRUN_BOUND_MS = 2000;
const EXIT_OVERRUN_BOUND_MS = 3000;
/** The calls must not close before the deadline; a little slack for timer granularity. */
const EARLY_TOLERANCE_MS = 50;

type Doc = Record<string, unknown>;

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs: number, everyMs = 25): Promise<void> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

async function activeCalls(base: string): Promise<number | undefined> {
  const text = await fetch(`${base}/metrics`).then((r) => r.text(), () => '');
  const match = /^stsgate_active_calls(?:\{[^}]*\})? (\d+)/m.exec(text);
  return match === null ? undefined : Number(match[1]);
}

/** A new call after SIGTERM: the upgrade's HTTP status, or 'refused' if the connection itself is refused. */
function upgradeOutcome(url: string): Promise<number | 'refused' | 'accepted'> {
  return new Promise((resolve) => {
    const socket = new WebSocket(url);
    socket.once('unexpected-response', (_request, response) => {
      resolve(response.statusCode ?? 0);
      socket.terminate();
    });
    socket.once('open', () => {
      resolve('accepted');
      socket.terminate();
    });
    socket.once('error', () => resolve('refused'));
  });
}

interface CallTimes {
  readonly recorder: AvrRecorder;
  errorAt?: number;
  closeAt?: number;
}

/** One AVR call that keeps streaming 20 ms of caller audio every 100 ms until the gateway closes it. */
async function openCall(url: string, uuid: string): Promise<CallTimes> {
  const socket = new WebSocket(url);
  cleanups.push(() => socket.terminate());
  await new Promise((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  const call: CallTimes = { recorder: new AvrRecorder(socket) };
  socket.on('message', () => {
    if (call.errorAt === undefined && call.recorder.of('error').length > 0) call.errorAt = Date.now();
  });
  socket.once('close', () => {
    call.closeAt = Date.now();
    clearInterval(streaming);
  });
  call.recorder.send({ type: 'init', uuid });
  const frame = new Int16Array(160);
  const streaming = setInterval(() => {
    if (socket.readyState === WebSocket.OPEN) call.recorder.sendAudio(frame);
  }, 100);
  cleanups.push(() => clearInterval(streaming));
  return call;
}

describe('SIGTERM rehearsal (the built apps/gateway/dist/cli.js, as the image runs it)', () => {
  // A fresh clone that runs the tests before any build gets the gateway built here (turbo: cached when up to date).
  beforeAll(() => {
    if (!existsSync(CLI)) execFileSync('pnpm', ['exec', 'turbo', 'run', 'build', '--filter=@stsgate/gateway...', '--output-logs=errors-only'], { cwd: `${GATEWAY}../..`, stdio: 'ignore' });
  }, 300_000);

  it(`drains ${CALLS} calls longer than the grace period: 503 at once, error + 1001 at the deadline, exit 0 before SIGKILL`, async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const url = `ws://127.0.0.1:${port}/`;
    const child: ChildProcess = spawn(process.execPath, [CLI, 'serve'], {
      cwd: GATEWAY,
      env: { PATH: process.env.PATH ?? '', PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'silent', STS_PROVIDER: 'loopback', SHUTDOWN_GRACE_MS: String(GRACE_MS) },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    let exitAt: number | undefined;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => {
        exitAt = Date.now();
        resolve({ code, signal });
      }),
    );
    cleanups.push(() => {
      if (exitAt === undefined) child.kill('SIGKILL');
    });

    await waitFor(`/health ok (stderr: ${stderr})`, () => fetch(`${base}/health`).then((r) => r.ok, () => false), 10_000, 50);
    const calls = await Promise.all(Array.from({ length: CALLS }, (_, i) => openCall(url, `rehearsal-${i}`)));
    await waitFor(`${CALLS} active calls`, async () => (await activeCalls(base)) === CALLS, 5000);
    // Let the calls stream for a moment: they are in progress, not just connected.
    await sleep(300);
    expect(calls.every((call) => call.closeAt === undefined)).toBe(true);

    const sigtermAt = Date.now();
    expect(child.kill('SIGTERM')).toBe(true);

    // (1) Readiness fails at once.
    let health: { status: number; body: string } | undefined;
    await waitFor(
      'a 503 from /health',
      async () => {
        const response = await fetch(`${base}/health`).catch(() => undefined);
        if (response === undefined) return false;
        health = { status: response.status, body: await response.text() };
        return health.status === 503;
      },
      READINESS_BOUND_MS + 2000,
      10,
    );
    const readinessMs = Date.now() - sigtermAt;
    expect(health?.body).toContain('draining');
    expect(readinessMs).toBeLessThan(READINESS_BOUND_MS);

    // (2) No new call starts.
    const late = await upgradeOutcome(url);
    expect(late).not.toBe('accepted');
    // While draining, the listener is still up: the upgrade is answered 503.
    expect(late).toBe(503);

    // (3) Every call ends cleanly at the deadline: an AVR error, then close 1001.
    await waitFor('every call closed', () => calls.every((call) => call.closeAt !== undefined), GRACE_MS + CLOSE_OVERRUN_BOUND_MS + 1000);
    for (const call of calls) {
      expect(call.recorder.errors()).toEqual(['the gateway is shutting down']);
      expect(call.recorder.closeCode).toBe(1001);
      expect(call.errorAt).toBeDefined();
      expect(call.errorAt!).toBeLessThanOrEqual(call.closeAt!);
      expect(call.recorder.messages.at(-1)?.type).toBe('error');
    }
    const closeMs = calls.map((call) => call.closeAt! - sigtermAt);
    expect(Math.min(...closeMs)).toBeGreaterThanOrEqual(GRACE_MS - EARLY_TOLERANCE_MS);
    expect(Math.max(...closeMs)).toBeLessThan(GRACE_MS + CLOSE_OVERRUN_BOUND_MS);

    // (4) The process exits 0 soon after the deadline.
    const exit = await Promise.race([exited, sleep(GRACE_MS + EXIT_OVERRUN_BOUND_MS + 2000).then(() => undefined)]);
    expect(exit, `the process did not exit (stderr: ${stderr})`).toEqual({ code: 0, signal: null });
    const exitMs = exitAt! - sigtermAt;
    expect(exitMs).toBeLessThan(GRACE_MS + EXIT_OVERRUN_BOUND_MS);

    console.info(
      `[sigterm-rehearsal] 503 after ${readinessMs} ms; late upgrade: ${late}; closes ${Math.min(...closeMs)}–${Math.max(...closeMs)} ms; ` +
        `exit ${exitMs} ms (grace ${GRACE_MS} ms, overrun ${exitMs - GRACE_MS} ms)`,
    );

    // The manifests leave enough time before SIGKILL: preStop + grace + the overrun bound (which the measured one is under).
    const deployment = parseYaml(readFileSync(`${BASE}deployment.yaml`, 'utf8')) as Doc;
    const configmap = parseYaml(readFileSync(`${BASE}configmap.yaml`, 'utf8')) as Doc;
    const pod = ((deployment.spec as Doc).template as Doc).spec as Doc;
    const terminationGraceS = pod.terminationGracePeriodSeconds as number;
    const containers = pod.containers as Doc[];
    const gateway = containers.find((c) => (c.lifecycle as Doc | undefined)?.preStop !== undefined);
    expect(gateway, 'a container with a preStop hook').toBeDefined();
    const preStop = ((gateway!.lifecycle as Doc).preStop as Doc).exec as { command: string[] };
    expect(preStop.command[0]).toBe('sleep');
    const preStopS = Number(preStop.command[1]);
    const graceS = Number((configmap.data as Doc).SHUTDOWN_GRACE_MS) / 1000;
    expect(Number.isFinite(preStopS) && Number.isFinite(graceS)).toBe(true);
    const overrunS = Math.max(exitMs - GRACE_MS, EXIT_OVERRUN_BOUND_MS) / 1000;
    expect(terminationGraceS).toBeGreaterThan(preStopS + graceS + overrunS);
  });
});
