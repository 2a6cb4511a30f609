/**
 * Why the sessions speak the protocol over `ws` instead of through the official clients: one malformed frame from
 * the provider throws inside the SDK's socket listener, an uncaught exception that ends the whole process (every
 * call on the gateway). Each case runs the real SDK in a child process against a one-frame server; if a future SDK
 * version survives, this test fails and the choice should be revisited.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';

const packageDir = fileURLToPath(new URL('..', import.meta.url));

const SCRIPT = String.raw`
const { WebSocketServer } = require('ws');
const { RealtimeClient } = require('@speechmatics/real-time-client');
const { FlowClient } = require('@speechmatics/flow-client');
const [client, bad] = process.argv.slice(1);
const server = new WebSocketServer({ port: 0, host: '127.0.0.1' });
server.on('connection', (socket) => socket.on('message', (data, isBinary) => {
  if (isBinary) return;
  const started = String(data).includes('StartRecognition') ? 'RecognitionStarted' : 'ConversationStarted';
  socket.send(JSON.stringify({ message: started, id: 'x' }));
  setTimeout(() => socket.send(bad === 'odd-binary' ? Buffer.alloc(3) : 'not json'), 20);
}));
server.on('listening', async () => {
  const port = server.address().port;
  if (client === 'rt') {
    await new RealtimeClient({ url: 'ws://127.0.0.1:' + port + '/v2', connectionTimeout: 500 }).start('jwt', { transcription_config: { language: 'en' } });
  } else {
    await new FlowClient('ws://127.0.0.1:' + port, { appId: 'test', websocketBinaryType: 'arraybuffer' }).startConversation('jwt', { config: { template_id: 't', template_variables: {} } });
  }
  setTimeout(() => { process.stdout.write('survived'); process.exit(0); }, 300);
});
`;

function run(client: 'rt' | 'flow', bad: 'text' | 'odd-binary'): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', SCRIPT, client, bad], { cwd: packageDir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('official Speechmatics clients on a malformed provider frame', () => {
  test('@speechmatics/real-time-client: a non-JSON text frame crashes the process', async () => {
    const result = await run('rt', 'text');
    expect(result.stdout).not.toContain('survived');
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/SyntaxError|not valid JSON|Unexpected token/);
  });

  test('@speechmatics/flow-client: a non-JSON text frame crashes the process', async () => {
    const result = await run('flow', 'text');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('Failed to parse message as JSON');
  });

  test('@speechmatics/flow-client: an odd-length audio frame crashes the process', async () => {
    const result = await run('flow', 'odd-binary');
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/RangeError.*Int16Array|should be a multiple of 2/);
  });
});
