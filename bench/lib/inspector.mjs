// A Chrome DevTools Protocol session with a process started with `--inspect=127.0.0.1:<port>`: used by the scale bench
// to profile the gateway over exactly a measurement window (Profiler.start/stop; --cpu-prof would cover the whole life
// of the process: start-up, ramp-up, teardown) and to force a full GC (HeapProfiler.collectGarbage) when telling
// retained memory from garbage. No session is attached while a window is measured without profiling.
import { createRequire } from 'node:module';

const WebSocket = createRequire(new URL('../../packages/testkit/package.json', import.meta.url))('ws');

export class InspectorSession {
  static async open(port) {
    const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
    const url = targets[0]?.webSocketDebuggerUrl;
    if (url === undefined) throw new Error(`no inspector target on port ${port}`);
    const socket = new WebSocket(url, { perMessageDeflate: false });
    await new Promise((resolve, reject) => {
      socket.once('open', resolve);
      socket.once('error', reject);
    });
    return new InspectorSession(socket);
  }

  constructor(socket) {
    this.socket = socket;
    this.nextId = 1;
    this.pending = new Map();
    socket.on('message', (data) => {
      const message = JSON.parse(data.toString('utf8'));
      const waiter = this.pending.get(message.id);
      if (waiter === undefined) return;
      this.pending.delete(message.id);
      if (message.error !== undefined) waiter.reject(new Error(`${waiter.method}: ${message.error.message}`));
      else waiter.resolve(message.result);
    });
    socket.on('close', () => {
      for (const waiter of this.pending.values()) waiter.reject(new Error(`${waiter.method}: inspector session closed`));
      this.pending.clear();
    });
  }

  /** One protocol command; resolves with its result. */
  send(method, params = {}, timeoutMs = 30_000) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method} timed out`));
      }, timeoutMs);
      this.pending.set(id, {
        method,
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.socket.send(JSON.stringify({ id, method, params }));
    });
  }

  close() {
    this.socket.close();
  }
}

/** A full, synchronous GC in the inspected process. */
export async function collectGarbage(port) {
  const session = await InspectorSession.open(port);
  try {
    await session.send('HeapProfiler.collectGarbage');
  } finally {
    session.close();
  }
}

/** Starts the sampling profiler; `stop()` resolves with the profile (the .cpuprofile JSON object). */
export async function startProfiler(port, samplingIntervalUs = 1000) {
  const session = await InspectorSession.open(port);
  await session.send('Profiler.enable');
  await session.send('Profiler.setSamplingInterval', { interval: samplingIntervalUs });
  await session.send('Profiler.start');
  return {
    async stop() {
      try {
        return (await session.send('Profiler.stop')).profile;
      } finally {
        session.close();
      }
    },
  };
}
