import { ConfigError } from '@stsgate/core';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import type { Gateway } from './app.js';
import type * as DevCommands from './dev-commands.js';
import { DEFAULT_PORT, DEFAULT_STS_PROVIDER } from './config.js';
import { addAdapterPackages } from './adapter-packages.js';
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
        gateway = await serve(resolveServeSetup(env, await addAdapterPackages(env, builtinRegistry())));
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
      return (await devCommands(context))?.emulate(rest, context) ?? 2;
    case 'healthcheck':
      if (wantsHelp(rest)) {
        stdout.write(HEALTHCHECK_USAGE);
        return 0;
      }
      return healthcheck(env);
    case 'call':
      return (await devCommands(context))?.runCallCommand(rest, { stdout, stderr }) ?? 2;
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

/**
 * `stsgate call` and `stsgate emulate` run the test kit (call simulator, provider emulators), which the server does not
 * depend on: it is loaded only for them, and a server installed without it says what to install.
 */
async function devCommands({ stderr }: CliContext): Promise<typeof DevCommands | undefined> {
  try {
    return await import('./dev-commands.js');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ERR_MODULE_NOT_FOUND' || !String((error as Error).message).includes('@stsgate/testkit')) throw error;
    stderr.write('stsgate: this command runs the test kit, which is not installed with the server: npm install @stsgate/testkit\n');
    return undefined;
  }
}

export const EMULATED = ['openai', 'xai', 'speechmatics', 'soniox', 'speechmatics-flow'] as const;
export type Emulated = (typeof EMULATED)[number];
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

/**
 * The port `serve` listens on for this environment, without building any adapter (a health check must not need the
 * providers' keys): PORT, else the default port of the first provider chosen (STS, ASR, LLM, TTS).
 */
export function healthcheckPort(env: Readonly<Record<string, string | undefined>>, registry = builtinRegistry()): number {
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
  // A provider from STSGATE_ADAPTERS may have its own default port; a broken package list leaves the built-in ones.
  const registry = await addAdapterPackages(env, builtinRegistry()).catch(() => builtinRegistry());
  const port = healthcheckPort(env, registry);
  try {
    const response = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(2000) });
    return response.ok ? 0 : 1;
  } catch {
    return 1;
  }
}
