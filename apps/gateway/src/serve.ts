import type { Logger } from 'pino';
import { agentEnvSchema, createToolSet, type ToolSet } from '@stsgate/agent';
import {
  AdapterResolver,
  ConfigError,
  blankToUndefined,
  zodProblems,
  type AdapterRegistry,
  type AsrAdapter,
  type Env,
  type LlmAdapter,
  type StsAdapter,
  type TtsAdapter,
  type VadAdapter,
} from '@stsgate/core';
import { buildGateway, type Gateway } from './app.js';
import { DEFAULT_PORT, DEFAULT_STS_PROVIDER, loadGatewayConfig, type GatewayConfig } from './config.js';
import { llmRouteEnvSchema, llmRouteOptionsFromEnv, type LlmRouteOptions } from './llm-route.js';
import { createLogger } from './logging.js';

export interface ServeSetup {
  readonly config: GatewayConfig;
  readonly port: number;
  readonly sts: { readonly id: string; readonly adapter: StsAdapter } | undefined;
  readonly asr: { readonly id: string; readonly adapter: AsrAdapter } | undefined;
  readonly tts: { readonly id: string; readonly adapter: TtsAdapter } | undefined;
  /** `POST /prompt-stream` (AVR LLM contract) with this LLM, and its settings. */
  readonly llm: { readonly id: string; readonly adapter: LlmAdapter; readonly options: LlmRouteOptions } | undefined;
  readonly logger: Logger;
  /** The agent's tools (built-ins + TOOLS_DIR), when the STS provider or the LLM route can call tools. */
  readonly tools: ToolSet | undefined;
  /** The VADs the chosen providers use: `serve()` prepares them (loads their models) before it listens. */
  readonly vads?: readonly VadAdapter[];
}

export const PROVIDER_VARIABLES = { sts: 'STS_PROVIDER', asr: 'ASR_PROVIDER', llm: 'LLM_PROVIDER', tts: 'TTS_PROVIDER' } as const;

/** A provider variable's value; unset, blank and avr-app's literal `undefined` are all "not chosen". */
export function providerId(env: Env, name: string): string | undefined {
  const value = blankToUndefined(env[name]);
  return typeof value === 'string' ? value.trim() : undefined;
}

/**
 * Validate the whole configuration (the gateway's variables and every chosen provider's) and build
 * the adapters. Every problem is reported once, in one ConfigError.
 *
 * `STS_PROVIDER` selects the speech-to-speech provider (AVR's WebSocket); `ASR_PROVIDER`, `LLM_PROVIDER` and
 * `TTS_PROVIDER` serve AVR's HTTP ASR, LLM and TTS contracts (and are the stages of a cascade STS provider, which
 * shares the same adapter instances). With none of them set, the loopback STS provider runs. Without `PORT`, the
 * port is that of the AVR container the first configured provider replaces (STS, then ASR, LLM, TTS).
 */
export function resolveServeSetup(env: Env, registry: AdapterRegistry, makeLogger = createLogger): ServeSetup {
  const problems: string[] = [];
  let config: GatewayConfig | undefined;
  try {
    config = loadGatewayConfig(env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    problems.push(...error.problems);
  }
  const logger = makeLogger(config?.logLevel ?? 'info', config?.logPretty ?? false);
  const resolver = new AdapterResolver(registry, env, { logger });
  const nothingChosen = Object.values(PROVIDER_VARIABLES).every((name) => providerId(env, name) === undefined);
  const choose = <K extends 'sts' | 'asr' | 'llm' | 'tts'>(kind: K, fallback?: string) => {
    const id = providerId(env, PROVIDER_VARIABLES[kind]) ?? fallback;
    if (id === undefined) return undefined;
    const definition = registry.get(kind, id);
    if (definition === undefined) {
      problems.push(`${PROVIDER_VARIABLES[kind]}: unknown provider "${id}" (available: ${registry.ids(kind).join(', ') || 'none'})`);
      return undefined;
    }
    try {
      return { id, adapter: resolver.resolve(kind, id), defaultPort: definition.defaultPort };
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      problems.push(...error.problems);
      return undefined;
    }
  };
  const sts = choose('sts', nothingChosen ? DEFAULT_STS_PROVIDER : undefined);
  const asr = choose('asr');
  const llm = choose('llm');
  const tts = choose('tts');
  const agentEnv = agentEnvSchema.safeParse(env);
  if (!agentEnv.success) problems.push(...zodProblems(agentEnv.error));
  let llmOptions: Omit<LlmRouteOptions, 'tools'> | undefined;
  if (llm !== undefined) {
    const llmEnv = llmRouteEnvSchema.safeParse(env);
    if (!llmEnv.success) problems.push(...zodProblems(llmEnv.error));
    else {
      try {
        llmOptions = llmRouteOptionsFromEnv(llmEnv.data);
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        problems.push(...error.problems);
      }
    }
  }
  // A stage shared by the cascade and an HTTP route reports its problems once.
  const unique = [...new Set(problems)];
  if (unique.length > 0 || config === undefined || !agentEnv.success) throw new ConfigError('stsgate', unique);
  const wantsTools = sts?.adapter.capabilities.toolCalls === true || (llm?.adapter.capabilities.toolCalls === true && llmOptions !== undefined);
  const tools = wantsTools ? createToolSet(agentEnv.data, logger.child({ component: 'tools' })) : undefined;
  if (nothingChosen) {
    logger.info(
      `no STS_PROVIDER set: running the "loopback" diagnostic provider, which plays each caller utterance back. ` +
        `Set STS_PROVIDER to one of: ${registry.ids('sts').join(', ')} to use a real provider.`,
    );
  }
  const port = config.port ?? sts?.defaultPort ?? asr?.defaultPort ?? llm?.defaultPort ?? tts?.defaultPort ?? DEFAULT_PORT;
  const strip = <T extends { id: string; adapter: unknown }>(chosen: T | undefined) => (chosen ? { id: chosen.id, adapter: chosen.adapter as T['adapter'] } : undefined);
  return {
    config,
    port,
    sts: strip(sts),
    asr: strip(asr),
    tts: strip(tts),
    llm: llm === undefined || llmOptions === undefined ? undefined : { id: llm.id, adapter: llm.adapter, options: llmOptions },
    logger,
    tools,
    vads: resolver.builtOf('vad'),
  };
}

/**
 * Loads the VADs' models before the gateway listens: the first call does not wait for them, and a model that cannot
 * load stops the start-up with a ConfigError (reported in one line) instead of failing every call.
 */
async function prepareVads(vads: readonly VadAdapter[], logger: Logger): Promise<void> {
  const started = performance.now();
  const results = await Promise.allSettled(vads.map((vad) => vad.prepare?.()));
  const problems = results.flatMap((result, index) => {
    if (result.status === 'fulfilled') return [];
    const reason: unknown = result.reason;
    const cause = reason instanceof Error && reason.cause instanceof Error ? `: ${reason.cause.message}` : '';
    return [`vad:${vads[index]?.id ?? '?'}: ${reason instanceof Error ? reason.message : String(reason)}${cause}`];
  });
  if (problems.length > 0) throw new ConfigError('stsgate', problems);
  if (vads.length > 0) logger.debug({ vads: vads.map((vad) => vad.id), ms: Math.round(performance.now() - started) }, 'VADs prepared');
}

/** The gateway cannot listen where it was configured to: a setup problem, reported in one line (no stack trace). */
export class ListenError extends Error {
  override readonly name = 'ListenError';
}

/** What to fix when `listen` fails with a cause the user can fix, or undefined for anything else. */
export function listenErrorMessage(error: unknown, host: string, port: number): string | undefined {
  const code = error instanceof Error ? (error as NodeJS.ErrnoException).code : undefined;
  switch (code) {
    case 'EADDRINUSE':
      return `port ${port} on ${host} is in use: set PORT to another port`;
    case 'EACCES':
      return `not allowed to listen on port ${port} on ${host}${port < 1024 ? ' (ports below 1024 need privileges)' : ''}: set PORT to another port`;
    case 'EADDRNOTAVAIL':
      return `HOST=${host} is not an address of this machine: set HOST to one of its addresses (or 0.0.0.0 for all)`;
    default:
      return undefined;
  }
}

/**
 * Connections waiting to be accepted (Node's default is 511; the kernel caps it at net.core.somaxconn): a burst of
 * connections (a flood, or every AVR Core call reconnecting at once) must not push out a health probe or a call.
 */
const LISTEN_BACKLOG = 4096;

/** A gateway with no call for this long gives the ended calls' memory back to the system (one full GC). */
const RELEASE_MEMORY_WHEN_IDLE_MS = 10_000;

/** Run the gateway until SIGTERM/SIGINT, then shut down gracefully. Throws a ListenError when it cannot listen. */
export async function serve(setup: ServeSetup): Promise<Gateway> {
  const { config, logger, port, sts, asr, llm, tts, tools } = setup;
  await prepareVads(setup.vads ?? [], logger);
  const gateway = await buildGateway(config, { logger, collectProcessMetrics: true, releaseMemoryWhenIdleMs: RELEASE_MEMORY_WHEN_IDLE_MS, sts, asr, llm, tts, tools });
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: closing calls now');
      void gateway.shutdown(0);
      return;
    }
    stopping = true;
    logger.info({ signal }, 'signal received');
    gateway.shutdown(config.shutdownGraceMs).catch((error: unknown) => logger.error({ err: error }, 'shutdown failed'));
  };
  gateway.app.addHook('onClose', async () => {
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
  });
  try {
    await gateway.app.listen({ host: config.host, port, backlog: LISTEN_BACKLOG });
  } catch (error) {
    await gateway.app.close();
    const message = listenErrorMessage(error, config.host, port);
    throw message === undefined ? error : new ListenError(message, { cause: error });
  }
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  const address = gateway.app.server.address();
  const boundPort = typeof address === 'object' && address !== null ? address.port : port;
  logger.info(
    { host: config.host, port: boundPort, sts: sts?.id, asr: asr?.id, llm: llm?.id, tts: tts?.id },
    `stsgate listening on port ${boundPort}` +
      (sts ? `; STS_URL=ws://<this-host>:${boundPort}` : '') +
      (asr ? `; ASR_URL=http://<this-host>:${boundPort}/speech-to-text-stream` : '') +
      (llm ? `; LLM_URL=http://<this-host>:${boundPort}/prompt-stream` : '') +
      (tts ? `; TTS_URL=http://<this-host>:${boundPort}/text-to-speech-stream` : ''),
  );
  return gateway;
}
