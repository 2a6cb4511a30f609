import { ConfigError } from '@stsgate/core';
import { readFileSync, writeFileSync } from 'node:fs';
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
import { z } from 'zod';
import type { Gateway } from './app.js';
import { DEFAULT_PORT, DEFAULT_STS_PROVIDER } from './config.js';
import { builtinRegistry } from './providers.js';
import { ListenError, PROVIDER_VARIABLES, providerId, resolveServeSetup, serve } from './serve.js';

const USAGE = `stsgate: speech-to-speech gateway for Agent Voice Response

Usage:
  stsgate serve                 run the gateway (configured by environment variables; see README)
  stsgate call <ws-url> --in caller.wav --out reply.wav [options]
                                act as AVR Core: stream a WAV to a gateway in real time, record what the caller hears,
                                exit 1 if the call failed (stsgate call --help for the options)
  stsgate emulate <provider>... [--write-env FILE]
                                run local emulators of providers (openai, speechmatics, soniox, speechmatics-flow)
                                to try them without a key, and print (or write to FILE) the variables that point the
                                gateway at them
  stsgate healthcheck           exit 0 if the local gateway answers GET /health (for container health checks)
  stsgate help                  this text (stsgate <command> --help: that command's)
  stsgate --version             the gateway's version
`;

function serveUsage(): string {
  const registry = builtinRegistry();
  return `Usage: stsgate serve

Runs the gateway until SIGTERM or SIGINT (a second signal closes calls at once). No options: it is configured by
environment variables, validated at start-up; the main ones:
  STS_PROVIDER      speech-to-speech provider (default loopback, which plays each caller utterance back):
                    ${registry.ids('sts').join(', ')}
  ASR_PROVIDER, LLM_PROVIDER, TTS_PROVIDER
                    the cascade's stages, also served as AVR's HTTP ASR, LLM and TTS routes
  PORT, HOST        where to listen (default: the port of the AVR container the provider replaces; 0.0.0.0)
  LOG_LEVEL         fatal, error, warn, info (default), debug, trace, silent
The README lists every variable. No key at hand? \`stsgate emulate <provider>\` runs local emulators.

Exit status 2: invalid configuration, or the port cannot be used.
`;
}

const HEALTHCHECK_USAGE = `Usage: stsgate healthcheck

Exits 0 if the gateway on this host answers GET http://127.0.0.1:<port>/health within 2 s, 1 otherwise. The port is
the one \`stsgate serve\` picks from the same environment (PORT, else the provider's default). For container health
checks.
`;

const EMULATE_USAGE = `Usage: stsgate emulate <provider>... [--write-env FILE]

Runs local emulators of providers, to try the gateway without an API key, and prints (or writes to FILE, one
VARIABLE=value a line) the variables that point the gateway at them. Stop with Ctrl-C. Providers:
  openai             Realtime (STS_PROVIDER=openai), Chat Completions and speech (LLM, TTS)
  speechmatics       real-time ASR, TTS and temporary keys
  soniox             real-time ASR and TTS (REST and WebSocket)
  speechmatics-flow  Flow and temporary keys (STS_PROVIDER=speechmatics-flow)
`;

const wantsHelp = (args: readonly string[]): boolean => args.includes('--help') || args.includes('-h');

/** Where the CLI reads its configuration and writes its output; the process's own by default. */
export interface CliContext {
  readonly env: NodeJS.ProcessEnv;
  readonly stdout: { write(chunk: string): unknown };
  readonly stderr: { write(chunk: string): unknown };
}

/** Runs one `stsgate` command; resolves with its exit code once it is done (serve and emulate: after a signal). */
export async function main(
  argv: readonly string[],
  context: CliContext = { env: process.env, stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  const { env, stdout, stderr } = context;
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve': {
      if (wantsHelp(rest)) {
        stdout.write(serveUsage());
        return 0;
      }
      let gateway: Gateway;
      try {
        gateway = await serve(resolveServeSetup(env, builtinRegistry()));
      } catch (error) {
        if (error instanceof ConfigError) {
          const hint = emulatorHint(error.problems);
          stderr.write(`stsgate: ${error.message}\n${hint === undefined ? '' : `${hint}\n`}`);
          return 2;
        }
        if (error instanceof ListenError) {
          stderr.write(`stsgate: ${error.message}\n`);
          return 2;
        }
        throw error;
      }
      // Runs until a signal; then exits as soon as the shutdown is done, whatever sockets or timers are left.
      await gateway.stopped;
      return 0;
    }
    case 'emulate':
      if (wantsHelp(rest)) {
        stdout.write(EMULATE_USAGE);
        return 0;
      }
      return emulate(rest, context);
    case 'healthcheck':
      if (wantsHelp(rest)) {
        stdout.write(HEALTHCHECK_USAGE);
        return 0;
      }
      return healthcheck(env);
    case 'call':
      return runCallCommand(rest, { stdout, stderr });
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      stdout.write(USAGE);
      return 0;
    case '--version':
    case 'version':
      stdout.write(`${gatewayVersion()}\n`);
      return 0;
    default:
      stderr.write(`stsgate: unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

/** Read at run time: package.json sits next to src/ and dist/, in the repository and in the image alike. */
function gatewayVersion(): string {
  const manifest: unknown = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  return z.object({ version: z.string() }).parse(manifest).version;
}

const EMULATED = ['openai', 'speechmatics', 'soniox', 'speechmatics-flow'] as const;
type Emulated = (typeof EMULATED)[number];
const isEmulated = (name: string | undefined): name is Emulated => (EMULATED as readonly (string | undefined)[]).includes(name);

/**
 * For problems naming a provider key (`SONIOX_API_KEY is required`): how to try those providers without one.
 * Problems are prefixed by their adapter (`speechmatics-flow: SPEECHMATICS_API_KEY ...`), which picks the emulator
 * when several share a key; otherwise the key names it.
 */
function emulatorHint(problems: readonly string[]): string | undefined {
  const providers = new Set<Emulated>();
  for (const problem of problems) {
    for (const [, keyOwner] of problem.matchAll(/\b([A-Z]+)_API_KEY\b/g)) {
      const owner = keyOwner?.toLowerCase();
      const scope = /^([\w-]+):/.exec(problem)?.[1];
      const provider = isEmulated(scope) && owner !== undefined && scope.startsWith(owner) ? scope : owner;
      if (isEmulated(provider)) providers.add(provider);
    }
  }
  if (providers.size === 0) return undefined;
  return (
    `hint: no key at hand? Try it against local emulators: \`stsgate emulate ${[...providers].join(' ')} --write-env emulators.env\`, ` +
    'then start the gateway with those variables added (set -a; . ./emulators.env; set +a).'
  );
}

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
      // The real management API no longer mints Flow keys; accounts that still have Flow do get them.
      const auth = await startSpeechmaticsAuthEmulator({ apiKey, allowFlowKeys: true });
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

/** The provider variables that use what was emulated (the cascade for a mix). */
function suggestedProviders(names: ReadonlySet<Emulated>): Record<string, string> {
  if (names.has('speechmatics-flow')) return { STS_PROVIDER: 'speechmatics-flow' };
  const asr = names.has('soniox') ? 'soniox' : names.has('speechmatics') ? 'speechmatics' : undefined;
  const tts = names.has('speechmatics') ? 'speechmatics' : names.has('soniox') ? 'soniox' : undefined;
  if (asr === undefined || tts === undefined) return names.has('openai') ? { STS_PROVIDER: 'openai' } : {};
  const llm = names.has('openai') ? { LLM_PROVIDER: 'openai' } : {};
  return asr === tts ? { STS_PROVIDER: asr, ...llm } : { STS_PROVIDER: 'cascade', ASR_PROVIDER: asr, TTS_PROVIDER: tts, ...llm };
}

/** A word for a POSIX shell (single-quoted when it holds anything but safe characters). */
function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * Local provider emulators for trying the gateway without an API key: their ASR recognises the test kit's speech
 * fixtures, their LLM answers "You said: ...", their TTS and STS answer with synthetic speech.
 */
async function emulate(args: readonly string[], { stdout, stderr }: CliContext): Promise<number> {
  const writeEnvAt = args.indexOf('--write-env');
  const envFile = writeEnvAt >= 0 ? args[writeEnvAt + 1] : undefined;
  const names = writeEnvAt < 0 ? [...args] : args.filter((_arg, index) => index !== writeEnvAt && index !== writeEnvAt + 1);
  const unknown = names.filter((name) => !(EMULATED as readonly string[]).includes(name));
  if (names.length === 0 || unknown.length > 0 || (writeEnvAt >= 0 && envFile === undefined)) {
    stderr.write(`stsgate: usage: stsgate emulate <${EMULATED.join('|')}>... [--write-env FILE]\n`);
    return 2;
  }
  const started = [];
  for (const name of new Set(names as Emulated[])) started.push(await startEmulators(name));
  const env = Object.assign({}, ...started.map((s) => s.env)) as Record<string, string>;
  const lines = Object.entries(env).map(([key, value]) => `${key}=${value}`);
  if (envFile !== undefined) writeFileSync(envFile, `${lines.join('\n')}\n`);
  const providers = Object.entries(suggestedProviders(new Set(names as Emulated[]))).map(([key, value]) => `${key}=${value}`);
  const command = ['env', ...lines, ...providers].map(shellQuote).join(' ');
  stdout.write(
    `Emulators of ${[...new Set(names)].join(', ')} listening${envFile === undefined ? '' : ` (variables written to ${envFile})`}. ` +
      `Run the gateway against them, from the repository root:\n  ${command} bash scripts/dev.sh start\nStop with Ctrl-C.\n`,
  );
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  for (const { close } of started) await close();
  return 0;
}

/**
 * The port `serve` listens on for this environment, without building any adapter (a health check must not need the
 * providers' keys): PORT, else the default port of the first provider chosen (STS, ASR, LLM, TTS).
 */
export function healthcheckPort(env: Readonly<Record<string, string | undefined>>): number {
  const registry = builtinRegistry();
  const id = (kind: keyof typeof PROVIDER_VARIABLES) => providerId(env, PROVIDER_VARIABLES[kind]);
  const nothingChosen = (['sts', 'asr', 'llm', 'tts'] as const).every((kind) => id(kind) === undefined);
  const chosen = [
    registry.get('sts', id('sts') ?? (nothingChosen ? DEFAULT_STS_PROVIDER : '')),
    registry.get('asr', id('asr') ?? ''),
    registry.get('llm', id('llm') ?? ''),
    registry.get('tts', id('tts') ?? ''),
  ];
  const port = Number(providerId(env, 'PORT'));
  return Number.isInteger(port) && port > 0 ? port : (chosen.find((definition) => definition?.defaultPort !== undefined)?.defaultPort ?? DEFAULT_PORT);
}

/** Probe the gateway on this host, on the port `serve` would pick from the same environment. */
async function healthcheck(env: NodeJS.ProcessEnv): Promise<number> {
  const port = healthcheckPort(env);
  try {
    const response = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(2000) });
    return response.ok ? 0 : 1;
  } catch {
    return 1;
  }
}
