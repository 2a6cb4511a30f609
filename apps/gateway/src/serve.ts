import type { Logger } from 'pino';
import { agentEnvSchema, createToolSet } from '@stsgate/agent';
import { ConfigError, zodProblems, type AdapterRegistry, type Env, type StsAdapter } from '@stsgate/core';
import type { ToolRunner } from './call-session.js';
import { buildGateway, type Gateway } from './app.js';
import { DEFAULT_PORT, DEFAULT_STS_PROVIDER, loadGatewayConfig, type GatewayConfig } from './config.js';
import { createLogger } from './logging.js';

export interface ServeSetup {
  readonly config: GatewayConfig;
  readonly port: number;
  readonly sts: { readonly id: string; readonly adapter: StsAdapter };
  readonly logger: Logger;
  /** The agent's tools (built-ins + TOOLS_DIR), when the provider can call tools. */
  readonly tools: ToolRunner | undefined;
}

/**
 * Validate the whole configuration (the gateway's variables and the chosen provider's) and build
 * the provider adapter. Every problem is reported in one ConfigError.
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
  // Read directly so a provider problem is reported even when other gateway variables are invalid.
  const providerId = env.STS_PROVIDER || DEFAULT_STS_PROVIDER;
  const definition = registry.get('sts', providerId);
  if (definition === undefined) {
    problems.push(`STS_PROVIDER: unknown provider "${providerId}" (available: ${registry.ids('sts').join(', ')})`);
  }
  const logger = makeLogger(config?.logLevel ?? 'info', config?.logPretty ?? false);
  let adapter: StsAdapter | undefined;
  if (definition !== undefined) {
    try {
      adapter = definition.fromEnv(env, { logger: logger.child({ provider: providerId }) });
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      problems.push(...error.problems.map((problem) => `${providerId}: ${problem}`));
    }
  }
  const agentEnv = agentEnvSchema.safeParse(env);
  if (!agentEnv.success) problems.push(...zodProblems(agentEnv.error));
  if (problems.length > 0 || config === undefined || adapter === undefined || !agentEnv.success) {
    throw new ConfigError('stsgate', problems);
  }
  const tools = adapter.capabilities.toolCalls ? createToolSet(agentEnv.data, logger.child({ component: 'tools' })) : undefined;
  if (!env.STS_PROVIDER) {
    logger.info(
      `no STS_PROVIDER set: running the "loopback" diagnostic provider, which plays each caller utterance back. ` +
        `Set STS_PROVIDER to one of: ${registry.ids('sts').join(', ')} to use a real provider.`,
    );
  }
  return { config, port: config.port ?? definition?.defaultPort ?? DEFAULT_PORT, sts: { id: providerId, adapter }, logger, tools };
}

/** Run the gateway until SIGTERM/SIGINT, then shut down gracefully. */
export async function serve(setup: ServeSetup): Promise<Gateway> {
  const { config, logger, port, sts, tools } = setup;
  const gateway = await buildGateway(config, { sts, logger, collectProcessMetrics: true, ...(tools === undefined ? {} : { tools }) });
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
  logger.info({ host: config.host, port: boundPort, provider: sts.id }, `stsgate listening: STS_URL=ws://<this-host>:${boundPort}`);
  return gateway;
}
