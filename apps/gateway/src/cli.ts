#!/usr/bin/env node
import { ConfigError } from '@stsgate/core';
import { runCallCommand, startOpenAiRealtimeEmulator, startSpeechmaticsAuthEmulator, startSpeechmaticsFlowEmulator } from '@stsgate/testkit';
import { DEFAULT_PORT, DEFAULT_STS_PROVIDER } from './config.js';
import { builtinRegistry } from './providers.js';
import { resolveServeSetup, serve } from './serve.js';

const USAGE = `stsgate: speech-to-speech gateway for Agent Voice Response

Usage:
  stsgate serve                 run the gateway (configured by environment variables; see README)
  stsgate call <ws-url> --in caller.wav --out reply.wav [--uuid ID] [--tail-ms N] [--dtmf MS:DIGIT,...] [--json]
                                act as AVR Core: stream a WAV to a gateway in real time, record what the caller hears
  stsgate emulate openai        run a local OpenAI Realtime (GA) emulator to try STS_PROVIDER=openai without a key
  stsgate emulate speechmatics  run local Speechmatics Flow and temporary-key emulators to try STS_PROVIDER=speechmatics
  stsgate healthcheck           exit 0 if the local gateway answers GET /health (for container health checks)
  stsgate help                  this text
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve': {
      try {
        await serve(resolveServeSetup(process.env, builtinRegistry()));
      } catch (error) {
        if (error instanceof ConfigError) {
          process.stderr.write(`stsgate: ${error.message}\n`);
          return 2;
        }
        throw error;
      }
      return -1; // keep running until a signal
    }
    case 'emulate':
      return emulate(rest);
    case 'healthcheck':
      return healthcheck(process.env);
    case 'call':
      return runCallCommand(rest, { stdout: process.stdout, stderr: process.stderr });
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return 0;
    default:
      process.stderr.write(`stsgate: unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

/** Local provider emulators for trying the gateway without an API key (they answer with a tone). */
async function emulate(args: string[]): Promise<number> {
  const provider = args[0];
  if (provider !== 'openai' && provider !== 'speechmatics') {
    process.stderr.write('stsgate: usage: stsgate emulate openai|speechmatics\n');
    return 2;
  }
  const closers: (() => Promise<void>)[] = [];
  if (provider === 'openai') {
    const apiKey = 'sk-emulator-key';
    const emulator = await startOpenAiRealtimeEmulator({ apiKey });
    closers.push(() => emulator.close());
    process.stdout.write(
      `OpenAI Realtime emulator listening. Run the gateway with:\n` +
        `  STS_PROVIDER=openai OPENAI_API_KEY=${apiKey} OPENAI_REALTIME_URL=${emulator.url} stsgate serve\n`,
    );
  } else {
    const apiKey = 'sm-emulator-key';
    const auth = await startSpeechmaticsAuthEmulator({ apiKey });
    const flow = await startSpeechmaticsFlowEmulator({ verifyToken: (jwt) => auth.verify(jwt, 'flow'), greeting: { text: 'Hello, how can I help?', ms: 1500 } });
    closers.push(() => flow.close(), () => auth.close());
    process.stdout.write(
      `Speechmatics Flow emulator listening. Run the gateway with:\n` +
        `  STS_PROVIDER=speechmatics SPEECHMATICS_API_KEY=${apiKey} SPEECHMATICS_FLOW_URL=${flow.baseUrl} SPEECHMATICS_MANAGEMENT_URL=${auth.baseUrl} stsgate serve\n`,
    );
  }
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  for (const close of closers) await close();
  return 0;
}

/** Probe the gateway on this host, on the port `serve` would pick from the same environment. */
async function healthcheck(env: NodeJS.ProcessEnv): Promise<number> {
  const provider = builtinRegistry().get('sts', env.STS_PROVIDER || DEFAULT_STS_PROVIDER);
  const port = env.PORT || String(provider?.defaultPort ?? DEFAULT_PORT);
  try {
    const response = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(2000) });
    return response.ok ? 0 : 1;
  } catch {
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`stsgate: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
