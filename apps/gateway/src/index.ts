export { buildGateway, callMetadata, type Gateway, type GatewayDeps } from './app.js';
export { CallSession, CLOSE, type CallState, type CallSessionOptions, type ToolRunner, type ToolCallContext } from './call-session.js';
export { gatewayConfig, loadGatewayConfig, gatewayEnvSchema, DEFAULT_PORT, type GatewayConfig } from './config.js';
export { createLogger, loggerOptions, REDACT_PATHS } from './logging.js';
export { GatewayMetrics } from './metrics.js';
export { OutboundPacer, OutboundQueue } from './outbound.js';
export { builtinRegistry } from './providers.js';
export { resolveServeSetup, serve, type ServeSetup } from './serve.js';
