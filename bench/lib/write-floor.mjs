// What one message per caller frame toward the provider costs the process that writes it, before any of the gateway's
// work: N client WebSockets on loopback, each sending one 20 ms pcmu append (216 bytes of base64 in the OpenAI
// template) every 20 ms, in 4 phases 5 ms apart, for `--seconds`. The writer is pinned to CPU 1, the receiving ws
// server to CPU 0. Two ways of writing, alternated `--rounds` times:
//   ws-send    `ws`'s `send()` of the JSON text, as the gateway's provider connections do
//   raw-write  the same frame pre-built (header, mask, payload) and written with `net.Socket.write`: no WebSocket
//              library at all, only Node's stream and the system call
// Prints JSON: per mode the writer's CPU in ms per call-second (user and system split) of every round.
// Run: node bench/lib/write-floor.mjs [--calls=100] [--seconds=15] [--rounds=2]
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { round, setAffinity } from './util.mjs';

const WebSocket = createRequire(new URL('../../packages/testkit/package.json', import.meta.url))('ws');
const self = fileURLToPath(import.meta.url);
const value = (name, fallback) => Number(process.argv.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback);
const FRAME_MS = 20;
const PHASES = 4;
const MULAW_BYTES_PER_FRAME = 160;

function childOutput(child, pattern) {
  return new Promise((resolve, reject) => {
    let text = '';
    child.stdout.on('data', (chunk) => {
      text += chunk;
      const match = pattern.exec(text);
      if (match) resolve(match);
    });
    child.on('exit', (code) => reject(new Error(`${self} child exited with ${code}: ${text}`)));
  });
}

/** The receiving end: a `ws` server that reads and drops every message. */
function sink() {
  const server = new WebSocket.WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  server.on('connection', (socket) => socket.on('message', () => undefined));
  server.on('listening', () => process.stdout.write(`listening ${server.address().port}\n`));
}

/** The writer: `calls` connections, one append per connection per 20 ms for `seconds`, then its CPU on stdout. */
async function writer(port, mode, calls, seconds) {
  const sockets = await Promise.all(
    Array.from({ length: calls }, () => new Promise((resolve, reject) => {
      const socket = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
      socket.once('open', () => resolve(socket));
      socket.once('error', reject);
    })),
  );
  const audio = Buffer.alloc(MULAW_BYTES_PER_FRAME, 0x7f);
  const send = (socket, frameIndex) => {
    audio[0] = frameIndex & 0xff; // a payload that changes, as caller audio does
    const text = `{"type":"input_audio_buffer.append","audio":"${audio.toString('base64')}"}`;
    if (mode === 'ws-send') {
      socket.send(text);
      return;
    }
    const payload = Buffer.from(text, 'latin1');
    const frame = Buffer.allocUnsafe(payload.length + 8);
    frame[0] = 0x81; // FIN, text
    frame[1] = 0x80 | 126; // masked, 16-bit length
    frame.writeUInt16BE(payload.length, 2);
    const mask = (frameIndex * 2654435761) >>> 0;
    frame.writeUInt32BE(mask, 4);
    for (let i = 0; i < payload.length; i++) frame[8 + i] = payload[i] ^ ((mask >>> (8 * (3 - (i & 3)))) & 0xff);
    socket._socket.write(frame);
  };
  const start = process.cpuUsage();
  const startedAt = performance.now();
  let slot = 0;
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      const phase = slot % PHASES;
      const frameIndex = Math.floor(slot / PHASES);
      slot++;
      for (let i = phase; i < calls; i += PHASES) send(sockets[i], frameIndex);
      if (performance.now() - startedAt >= seconds * 1000) {
        clearInterval(timer);
        resolve();
      }
    }, FRAME_MS / PHASES);
  });
  const used = process.cpuUsage(start);
  const callSeconds = calls * ((performance.now() - startedAt) / 1000);
  process.stdout.write(`${JSON.stringify({ userMs: used.user / 1000, systemMs: used.system / 1000, callSeconds })}\n`);
  process.exit(0);
}

async function main() {
  const calls = value('calls', 100);
  const seconds = value('seconds', 15);
  const rounds = value('rounds', 2);
  const server = spawn(process.execPath, [self, 'sink'], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const [, port] = await childOutput(server, /listening (\d+)\n/);
    setAffinity(server.pid, '0');
    const results = { 'ws-send': [], 'raw-write': [] };
    for (let r = 0; r < rounds; r++) {
      for (const mode of Object.keys(results)) {
        const child = spawn('taskset', ['-c', '1', process.execPath, self, 'writer', port, mode, String(calls), String(seconds)], { stdio: ['ignore', 'pipe', 'inherit'] });
        const [line] = await childOutput(child, /\{.*\}\n/);
        const { userMs, systemMs, callSeconds } = JSON.parse(line);
        results[mode].push({ cpuMsPerCallSecond: round((userMs + systemMs) / callSeconds, 3), systemPercent: round((100 * systemMs) / (userMs + systemMs), 1) });
        process.stderr.write(`[write-floor] ${mode}: ${JSON.stringify(results[mode].at(-1))}\n`);
      }
    }
    process.stdout.write(`${JSON.stringify({ calls, seconds, messagesPerCallSecond: 1000 / FRAME_MS, results }, null, 2)}\n`);
  } finally {
    server.kill();
  }
}

const [role, ...args] = process.argv.slice(2);
if (role === 'sink') sink();
else if (role === 'writer') await writer(Number(args[0]), args[1], Number(args[2]), Number(args[3]));
else await main();
