#!/usr/bin/env node
import { ConfigError } from '@stsgate/core';
import { writeFileSync } from 'node:fs';
import {
  runCallCommand,
  startOpenAiRealtimeEmulator,
  startOpenAiRestEmulator,
  startSonioxSttEmulator,
  startSonioxTtsEmulator,
  startSpeechmaticsAuthEmulator,
  startSpeechmaticsFlowEmulator,
  startSpeechmaticsRtEmulator,
  startSpeechmaticsTtsEmulator,
} from '@stsgate/testkit';
import { DEFAULT_PORT, DEFAULT_STS_PROVIDER } from './config.js';
import { builtinRegistry } from './providers.js';
import { PROVIDER_VARIABLES, providerId, resolveServeSetup, serve } from './serve.js';

const USAGE = `stsgate: speech-to-speech gateway for Agent Voice Response

Usage:
  stsgate serve                 run the gateway (configured by environment variables; see README)
  stsgate call <ws-url> --in caller.wav --out reply.wav [--uuid ID] [--tail-ms N] [--dtmf MS:DIGIT,...] [--json]
                                act as AVR Core: stream a WAV to a gateway in real time, record what the caller hears
  stsgate emulate <provider>... [--write-env FILE]
                                run local emulators of providers to try them without a key, and print (or write to
                                FILE) the variables that point the gateway at them. Providers:
                                  openai             Realtime (STS_PROVIDER=openai), Chat Completions and speech (LLM, TTS)
                                  speechmatics       real-time ASR, TTS and temporary keys
                                  soniox             real-time ASR and TTS (REST and WebSocket)
                                  speechmatics-flow  Flow and temporary keys (STS_PROVIDER=speechmatics-flow)
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

const EMULATED = ['openai', 'speechmatics', 'soniox', 'speechmatics-flow'] as const;
type Emulated = (typeof EMULATED)[number];

/** Starts one provider's emulators; returns the variables that point the gateway at them, and how to stop them. */
async function startEmulators(provider: Emulated): Promise<{ env: Record<string, string>; close: () => Promise<void> }> {
  switch (provider) {
    case 'openai': {
      const apiKey = 'sk-emulator-key';
      const realtime = await startOpenAiRealtimeEmulator({ apiKey });
      const rest = await startOpenAiRestEmulator({ apiKey });
      return {
        env: { OPENAI_API_KEY: apiKey, OPENAI_REALTIME_URL: realtime.url, OPENAI_BASE_URL: rest.baseUrl },
        close: async () => {
          await realtime.close();
          await rest.close();
        },
      };
    }
    case 'speechmatics': {
      const apiKey = 'sm-emulator-key';
      const auth = await startSpeechmaticsAuthEmulator({ apiKey });
      const rt = await startSpeechmaticsRtEmulator({ apiKey });
      const tts = await startSpeechmaticsTtsEmulator({ apiKey });
      return {
        env: { SPEECHMATICS_API_KEY: apiKey, SPEECHMATICS_RT_URL: rt.url, SPEECHMATICS_TTS_URL: tts.baseUrl, SPEECHMATICS_MANAGEMENT_URL: auth.baseUrl },
        close: async () => {
          await rt.close();
          await tts.close();
          await auth.close();
        },
      };
    }
    case 'soniox': {
      const apiKey = 'soniox-emulator-key';
      const stt = await startSonioxSttEmulator({ apiKey });
      const tts = await startSonioxTtsEmulator({ apiKey });
      return {
        env: { SONIOX_API_KEY: apiKey, SONIOX_WEBSOCKET_URL: stt.url, SONIOX_TTS_URL: tts.url, SONIOX_TTS_WEBSOCKET_URL: tts.wsUrl },
        close: async () => {
          await stt.close();
          await tts.close();
        },
      };
    }
    case 'speechmatics-flow': {
      const apiKey = 'sm-emulator-key';
      const auth = await startSpeechmaticsAuthEmulator({ apiKey });
      const flow = await startSpeechmaticsFlowEmulator({ verifyToken: (jwt) => auth.verify(jwt, 'flow'), greeting: { text: 'Hello, how can I help?', ms: 1500 } });
      return {
        env: { SPEECHMATICS_API_KEY: apiKey, SPEECHMATICS_FLOW_URL: flow.baseUrl, SPEECHMATICS_MANAGEMENT_URL: auth.baseUrl },
        close: async () => {
          await flow.close();
          await auth.close();
        },
      };
    }
  }
}

/**
 * Local provider emulators for trying the gateway without an API key: their ASR recognises the test kit's speech
 * fixtures, their LLM answers "You said: ...", their TTS and STS answer with synthetic speech.
 */
async function emulate(args: string[]): Promise<number> {
  const writeEnvAt = args.indexOf('--write-env');
  const envFile = writeEnvAt >= 0 ? args[writeEnvAt + 1] : undefined;
  const names = args.filter((arg, index) => index !== writeEnvAt && index !== writeEnvAt + 1);
  const unknown = names.filter((name) => !(EMULATED as readonly string[]).includes(name));
  if (names.length === 0 || unknown.length > 0 || (writeEnvAt >= 0 && envFile === undefined)) {
    process.stderr.write(`stsgate: usage: stsgate emulate <${EMULATED.join('|')}>... [--write-env FILE]\n`);
    return 2;
  }
  const started = [];
  for (const name of new Set(names as Emulated[])) started.push(await startEmulators(name));
  const env = Object.assign({}, ...started.map((s) => s.env)) as Record<string, string>;
  const lines = Object.entries(env).map(([key, value]) => `${key}=${value}`);
  if (envFile !== undefined) writeFileSync(envFile, `${lines.join('\n')}\n`);
  process.stdout.write(
    `Emulators of ${[...new Set(names)].join(', ')} listening${envFile === undefined ? '' : ` (variables written to ${envFile})`}. Point the gateway at them with:\n` +
      lines.map((line) => `  ${line}\n`).join('') +
      'Stop with Ctrl-C.\n',
  );
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  for (const { close } of started) await close();
  return 0;
}

/** Probe the gateway on this host, on the port `serve` would pick from the same environment. */
async function healthcheck(env: NodeJS.ProcessEnv): Promise<number> {
  const registry = builtinRegistry();
  const id = (kind: keyof typeof PROVIDER_VARIABLES) => providerId(env, PROVIDER_VARIABLES[kind]);
  const nothingChosen = (['sts', 'asr', 'llm', 'tts'] as const).every((kind) => id(kind) === undefined);
  const chosen = [
    registry.get('sts', id('sts') ?? (nothingChosen ? DEFAULT_STS_PROVIDER : '')),
    registry.get('asr', id('asr') ?? ''),
    registry.get('llm', id('llm') ?? ''),
    registry.get('tts', id('tts') ?? ''),
  ];
  const port = providerId(env, 'PORT') ?? String(chosen.find((definition) => definition?.defaultPort !== undefined)?.defaultPort ?? DEFAULT_PORT);
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
