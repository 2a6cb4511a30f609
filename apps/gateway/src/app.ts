import { timingSafeEqual } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import websocket from '@fastify/websocket';
import type { Logger } from 'pino';
import type { AsrAdapter, LlmAdapter, StsAdapter, TtsAdapter } from '@stsgate/core';
import type { GatewayConfig } from './config.js';
import { CallSession, type ToolRunner } from './call-session.js';
import { WebSocketTransport } from './call-transport.js';
import { callMetadata } from './call-metadata.js';
import { registerLegacyStsRoute } from './legacy-sts-route.js';
import { registerAsrRoute, registerTtsRoute } from './http-routes.js';
import { registerLlmRoute, type LlmRouteOptions } from './llm-route.js';
import { GatewayMetrics } from './metrics.js';
import { OutboundPacer } from './outbound.js';

export interface GatewayDeps {
  /** Speech-to-speech over AVR's WebSocket protocol (any path). */
  readonly sts?: { readonly id: string; readonly adapter: StsAdapter } | undefined;
  /** `POST /speech-to-text-stream` (AVR ASR contract). */
  readonly asr?: { readonly id: string; readonly adapter: AsrAdapter } | undefined;
  /** `POST /text-to-speech-stream` (AVR TTS contract). */
  readonly tts?: { readonly id: string; readonly adapter: TtsAdapter } | undefined;
  /** `POST /prompt-stream` (AVR LLM contract). */
  readonly llm?: { readonly id: string; readonly adapter: LlmAdapter; readonly options: Omit<LlmRouteOptions, 'tools'> } | undefined;
  readonly logger: Logger;
  /** The agent's tools (run by the gateway when the provider or the LLM asks). */
  readonly tools?: ToolRunner | undefined;
  /** Node process metrics (event loop lag, GC, memory) on /metrics; off in tests. */
  readonly collectProcessMetrics?: boolean;
  readonly initTimeoutMs?: number;
}

export interface Gateway {
  readonly app: FastifyInstance;
  readonly metrics: GatewayMetrics;
  readonly calls: ReadonlySet<CallSession>;
  /**
   * Stop accepting calls, let the calls in progress finish for up to `graceMs`, then close the
   * rest cleanly (AVR `error` + close 1001) and stop the server.
   */
  shutdown(graceMs: number): Promise<void>;
}

export async function buildGateway(config: GatewayConfig, deps: GatewayDeps): Promise<Gateway> {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
  });
  const metrics = new GatewayMetrics(deps.collectProcessMetrics ?? false);
  const pacer = new OutboundPacer();
  const calls = new Set<CallSession>();
  let draining = false;
  let shutdownDone: Promise<void> | undefined;
  let endGrace: (() => void) | undefined;

  await app.register(websocket, {
    options: { maxPayload: config.wsMaxPayloadBytes },
    // Sessions are closed by shutdown() after their grace period, not the instant the server closes.
    preClose: async () => {
      await Promise.all([...calls].map((call) => call.shutdown()));
    },
  });

  app.get('/health', async (_request, reply) => {
    if (draining) return reply.code(503).send({ status: 'draining' });
    return { status: 'ok' };
  });

  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  const admit = async (request: FastifyRequest, reply: FastifyReply) => {
    if (draining) return reply.code(503).send({ message: 'the gateway is shutting down' });
    if (config.authToken !== undefined && !authorised(request, config.authToken)) {
      metrics.errors.inc({ kind: 'auth' });
      return reply.code(401).send({ message: 'missing or invalid token' });
    }
    if (calls.size >= config.maxCalls) {
      metrics.errors.inc({ kind: 'capacity' });
      return reply.code(503).send({ message: `call limit reached (${config.maxCalls})` });
    }
    return undefined;
  };

  const admitHttp = async (request: FastifyRequest, reply: FastifyReply) => {
    if (draining) return reply.code(503).send({ message: 'the gateway is shutting down' });
    if (config.authToken !== undefined && !authorised(request, config.authToken)) {
      metrics.errors.inc({ kind: 'auth' });
      return reply.code(401).send({ message: 'missing or invalid token' });
    }
    return undefined;
  };
  const httpDeps = { logger: deps.logger, metrics, admit: admitHttp };
  if (deps.asr !== undefined) registerAsrRoute(app, deps.asr, httpDeps);
  if (deps.tts !== undefined) registerTtsRoute(app, deps.tts, httpDeps);
  if (deps.llm !== undefined) {
    registerLlmRoute(app, deps.llm, httpDeps, { ...deps.llm.options, tools: deps.tools });
  }

  const sts = deps.sts;
  // AVR Core connects to STS_URL as given, so any path upgrades to a call.
  if (sts !== undefined) app.route({
    method: 'GET',
    url: '/*',
    preValidation: admit,
    handler: (_request, reply) => reply.code(426).send({ message: 'connect with a WebSocket (AVR STS protocol)' }),
    wsHandler: (socket, request) => {
      const call = new CallSession(new WebSocketTransport(socket), {
        adapter: sts.adapter,
        providerId: sts.id,
        logger: deps.logger.child({ conn: request.id }),
        metrics,
        pacer,
        metadata: callMetadata(request.url),
        earlyAudioBufferMs: config.earlyAudioBufferMs,
        outboundLeadMs: config.outboundLeadMs,
        outboundStartBufferMs: config.outboundStartBufferMs,
        providerConnectTimeoutMs: config.providerConnectTimeoutMs,
        ...(deps.tools === undefined ? {} : { tools: deps.tools }),
        ...(deps.initTimeoutMs === undefined ? {} : { initTimeoutMs: deps.initTimeoutMs }),
      });
      calls.add(call);
      void call.closed.then(() => calls.delete(call));
    },
  });

  // AVR's legacy STS contract (raw PCM over HTTP), still accepted by AVR Core as an STS_URL.
  if (sts !== undefined) {
    registerLegacyStsRoute(app, sts, {
      logger: deps.logger,
      metrics,
      pacer,
      config,
      tools: deps.tools,
      admit,
      onCall: (call) => {
        calls.add(call);
        void call.closed.then(() => calls.delete(call));
      },
    });
  }

  app.addHook('onClose', async () => {
    pacer.close();
  });

  return {
    app,
    metrics,
    calls,
    async shutdown(graceMs: number) {
      if (shutdownDone !== undefined) {
        // A second request (e.g. a second SIGTERM) ends the grace period now.
        endGrace?.();
        return shutdownDone;
      }
      draining = true;
      deps.logger.info({ activeCalls: calls.size, graceMs }, 'shutting down: no new calls; waiting for calls in progress');
      shutdownDone = (async () => {
        if (calls.size > 0) {
          let timer: NodeJS.Timeout | undefined;
          const deadline = new Promise<void>((resolve) => {
            endGrace = resolve;
            timer = setTimeout(resolve, graceMs);
          });
          await Promise.race([Promise.all([...calls].map((call) => call.closed)), deadline]);
          clearTimeout(timer);
        }
        if (calls.size > 0) deps.logger.warn({ activeCalls: calls.size }, 'grace period over: closing remaining calls');
        await app.close();
      })();
      return shutdownDone;
    },
  };
}

function authorised(request: FastifyRequest, token: string): boolean {
  const header = request.headers.authorization;
  const fromHeader = typeof header === 'string' && header.startsWith('Bearer ') ? header.slice(7) : undefined;
  const fromQuery = new URLSearchParams(request.url.split('?')[1] ?? '').get('token') ?? undefined;
  const presented = fromHeader ?? fromQuery;
  if (presented === undefined) return false;
  const a = Buffer.from(presented);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}
