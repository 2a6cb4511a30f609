import type { Logger } from 'pino';
import { agentEnvSchema, createToolSet } from '@stsgate/agent';
import { ConfigError, zodProblems, type AdapterRegistry, type AsrAdapter, type Env, type StsAdapter, type TtsAdapter } from '@stsgate/core';
import type { ToolRunner } from './call-session.js';
import { buildGateway, type Gateway } from './app.js';
import { DEFAULT_PORT, DEFAULT_STS_PROVIDER, loadGatewayConfig, type GatewayConfig } from './config.js';
import { createLogger } from './logging.js';

export interface ServeSetup {
  readonly config: GatewayConfig;
  readonly port: number;
  readonly sts: { readonly id: string; readonly adapter: StsAdapter } | undefined;
  readonly asr: { readonly id: string; readonly adapter: AsrAdapter } | undefined;
  readonly tts: { readonly id: string; readonly adapter: TtsAdapter } | undefined;
  readonly logger: Logger;
  /** The agent's tools (built-ins + TOOLS_DIR), when the STS provider can call tools. */
  readonly tools: ToolRunner | undefined;
}

const PROVIDER_VARIABLES = { sts: 'STS_PROVIDER', asr: 'ASR_PROVIDER', tts: 'TTS_PROVIDER' } as const;

/**
 * Validate the whole configuration (the gateway's variables and every chosen provider's) and build
 * the adapters. Every problem is reported in one ConfigError.
 *
 * `STS_PROVIDER` selects the speech-to-speech provider (AVR's WebSocket); `ASR_PROVIDER` and
 * `TTS_PROVIDER` serve AVR's HTTP ASR and TTS contracts. With none of them set, the loopback STS
 * provider runs. Without `PORT`, the port is that of the AVR container the first configured
 * provider replaces (STS, then ASR, then TTS).
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
  const nothingChosen = !env.STS_PROVIDER && !env.ASR_PROVIDER && !env.TTS_PROVIDER;
  const choose = <K extends 'sts' | 'asr' | 'tts'>(kind: K, fallback?: string) => {
    const id = env[PROVIDER_VARIABLES[kind]] || fallback;
    if (id === undefined) return undefined;
    const definition = registry.get(kind, id);
    if (definition === undefined) {
      problems.push(`${PROVIDER_VARIABLES[kind]}: unknown provider "${id}" (available: ${registry.ids(kind).join(', ') || 'none'})`);
      return undefined;
    }
    try {
      const adapter = definition.fromEnv(env, { logger: logger.child({ provider: id, kind }) });
      return { id, adapter, defaultPort: definition.defaultPort };
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      problems.push(...error.problems.map((problem) => `${id}: ${problem}`));
      return undefined;
    }
  };
  const sts = choose('sts', nothingChosen ? DEFAULT_STS_PROVIDER : undefined);
  const asr = choose('asr');
  const tts = choose('tts');
  const agentEnv = agentEnvSchema.safeParse(env);
  if (!agentEnv.success) problems.push(...zodProblems(agentEnv.error));
  if (problems.length > 0 || config === undefined || !agentEnv.success) throw new ConfigError('stsgate', problems);
  const tools = sts?.adapter.capabilities.toolCalls ? createToolSet(agentEnv.data, logger.child({ component: 'tools' })) : undefined;
  if (nothingChosen) {
    logger.info(
      `no STS_PROVIDER set: running the "loopback" diagnostic provider, which plays each caller utterance back. ` +
        `Set STS_PROVIDER to one of: ${registry.ids('sts').join(', ')} to use a real provider.`,
    );
  }
  const port = config.port ?? sts?.defaultPort ?? asr?.defaultPort ?? tts?.defaultPort ?? DEFAULT_PORT;
  const strip = <T extends { id: string; adapter: unknown }>(chosen: T | undefined) => (chosen ? { id: chosen.id, adapter: chosen.adapter as T['adapter'] } : undefined);
  return { config, port, sts: strip(sts), asr: strip(asr), tts: strip(tts), logger, tools };
}

/** Run the gateway until SIGTERM/SIGINT, then shut down gracefully. */
export async function serve(setup: ServeSetup): Promise<Gateway> {
  const { config, logger, port, sts, asr, tts, tools } = setup;
  const gateway = await buildGateway(config, { logger, collectProcessMetrics: true, sts, asr, tts, tools });
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: closing calls now');
      void gateway.shutdown(0);
      return;
    }
    stopping = true;
    logger.info({ signal }, 'signal received');
    gateway.shutdown(config.shutdownGraceMs).then(
      () => logger.info('shutdown complete'),
      (error: unknown) => logger.error({ err: error }, 'shutdown failed'),
    );
  };
  gateway.app.addHook('onClose', async () => {
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
  });
  await gateway.app.listen({ host: config.host, port });
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  const address = gateway.app.server.address();
  const boundPort = typeof address === 'object' && address !== null ? address.port : port;
  logger.info(
    { host: config.host, port: boundPort, sts: sts?.id, asr: asr?.id, tts: tts?.id },
    `stsgate listening on port ${boundPort}` +
      (sts ? `; STS_URL=ws://<this-host>:${boundPort}` : '') +
      (asr ? `; ASR_URL=http://<this-host>:${boundPort}/speech-to-text-stream` : '') +
      (tts ? `; TTS_URL=http://<this-host>:${boundPort}/text-to-speech-stream` : ''),
  );
  return gateway;
}
