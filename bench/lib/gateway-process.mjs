// Runs the built gateway (`stsgate serve`) as a child process pinned to CPU 1, for the benches that drive it
// from this process over real sockets.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { setAffinity, sleep } from './util.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));

/**
 * The Node options the gateway runs with in production (docker/gateway.Dockerfile's CMD, `pnpm start`): every bench
 * measures that process. `--single-threaded-gc`: V8 collects on the event loop's own thread, in short incremental
 * steps, instead of in helper threads that, on a gateway's one core, preempt the event loop for 10-30 ms at a time
 * (bench/README.md, "GC"). `BENCH_GATEWAY_GC=concurrent` leaves it out, to compare.
 */
export function gatewayNodeFlags() {
  const gc = process.env.BENCH_GATEWAY_GC ?? 'single-threaded';
  if (gc !== 'single-threaded' && gc !== 'concurrent') throw new Error(`BENCH_GATEWAY_GC: single-threaded or concurrent, not "${gc}"`);
  return gc === 'single-threaded' ? ['--single-threaded-gc'] : [];
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

/**
 * Starts `stsgate serve` with `env` on a free port; resolves once /health answers. It runs with `gatewayNodeFlags()`;
 * `BENCH_GATEWAY_NODE_ARGS` adds Node options to the gateway process only, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`
 * (written when the gateway exits); `options.nodeArgs` adds more (e.g. `--inspect=127.0.0.1:<port>`). `options.onLog`
 * gets each line the gateway logs (its pino JSON on stdout, Node's own lines on stderr) instead of passing stderr
 * through and dropping stdout.
 */
export async function startGateway(env, options = {}) {
  const port = await freePort();
  const nodeArgs = [...gatewayNodeFlags(), ...(process.env.BENCH_GATEWAY_NODE_ARGS ?? '').split(' ').filter((arg) => arg !== ''), ...(options.nodeArgs ?? [])];
  const onLog = options.onLog;
  const child = spawn(process.execPath, [...nodeArgs, `${root}apps/gateway/dist/cli.js`, 'serve'], {
    env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn' },
    stdio: onLog === undefined ? ['ignore', 'ignore', 'inherit'] : ['ignore', 'pipe', 'pipe'],
  });
  if (onLog !== undefined) {
    const lines = (chunk) => {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') onLog(line);
    };
    child.stdout.on('data', lines);
    child.stderr.on('data', lines);
  }
  // BENCH_GATEWAY_CPUS=0,1 leaves the gateway both cores (diagnostic: a gateway with an idle core beside it; the
  // generator's core is then shared, and `machineCpuPercent`'s per-core split no longer separates the two).
  const pinned = setAffinity(child.pid, process.env.BENCH_GATEWAY_CPUS ?? '1');
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/health`)).ok) return { child, port, pinned };
    } catch {
      await sleep(100);
    }
  }
  child.kill('SIGKILL');
  throw new Error('gateway did not start');
}

