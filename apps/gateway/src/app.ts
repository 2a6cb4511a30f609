import { timingSafeEqual } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import websocket from '@fastify/websocket';
import type { Logger } from 'pino';
import { systemClock, type AsrAdapter, type LlmAdapter, type StsAdapter, type ToolRunner, type TtsAdapter } from '@stsgate/core';
import type { GatewayConfig } from './config.js';
import { CallSession } from './call-session.js';
import { WebSocketTransport } from './call-transport.js';
import { callMetadata } from './call-metadata.js';
import { registerLegacyStsRoute } from './legacy-sts-route.js';
import { registerAsrRoute, registerTtsRoute } from './http-routes.js';
import { registerLlmRoute, type LlmRouteOptions } from './llm-route.js';
import { GatewayMetrics } from './metrics.js';
import { OutboundPacer } from './outbound.js';
import { CallRecordings } from './recording/index.js';
import { registerPlayground } from './playground.js';
import { IdleMemoryRelease } from './idle-memory.js';
import { LoadGuard, type LoadGuardOptions } from './load-guard.js';

/**
 * Every call's agent audio is topped up every 40 ms: two 20 ms frames per call at a time, written together (one
 * system call, see WebSocketTransport). AVR Core's buffer then holds between OUTBOUND_LEAD_MS - 40 and
 * OUTBOUND_LEAD_MS (80-120 ms by default). The calls are spread over 4 ticks 10 ms apart: at 500 calls one tick's
 * work (a few ms) would otherwise hold up everything else in that event-loop turn. A reply's first audio and every
 * control message go out at once, not on the tick.
 */
const PACER_PERIOD_MS = 40;
const PACER_GROUPS = 4;

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
  /** After this long without a call, one full garbage collection gives the ended calls' memory back (see IdleMemoryRelease). Off when unset. */
  readonly releaseMemoryWhenIdleMs?: number;
  readonly initTimeoutMs?: number;
  /** Tests: the load guard's sampling (period, utilization source); default: every second, Node's own measure. */
  readonly loadSampling?: Pick<LoadGuardOptions, 'sampleMs' | 'eventLoopUtilization'>;
  /** Where the built playground page is (default: this package's dist/playground); served when `config.playground`. */
  readonly playgroundAssetsDir?: string;
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
  /** Resolves once a shutdown has completed (the server is closed). */
  readonly stopped: Promise<void>;
}

export async function buildGateway(config: GatewayConfig, deps: GatewayDeps): Promise<Gateway> {
  // First: a recordings directory that cannot be used stops the start (a ConfigError) before anything is listening.
  const recordings = config.recordings === undefined ? undefined : await CallRecordings.open(config.recordings, { logger: deps.logger });
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
    // At the end of shutdown (after the grace period), HTTP requests still open are cut: a body that never ends cannot hold the process.
    forceCloseConnections: true,
  });
  const metrics = new GatewayMetrics(deps.collectProcessMetrics ?? false);
  const pacer = new OutboundPacer(PACER_PERIOD_MS, systemClock(), PACER_GROUPS);
  const calls = new Set<CallSession>();
  const load = new LoadGuard({
    maxUtilization: config.maxEventLoopUtilization,
    batchCallerAudioAbove: config.callerAudioBatchUtilization,
    activeCalls: () => calls.size,
    logger: deps.logger,
    onSample: (utilization, batchingCallerAudio) => {
      metrics.eventLoopUtilization.set(utilization);
      metrics.callerAudioBatched.set(batchingCallerAudio ? 1 : 0);
    },
    ...deps.loadSampling,
  });
  const idleMemory =
    deps.releaseMemoryWhenIdleMs === undefined ? undefined : new IdleMemoryRelease({ quietMs: deps.releaseMemoryWhenIdleMs, logger: deps.logger });
  const track = (call: CallSession) => {
    calls.add(call);
    idleMemory?.callsChanged(calls.size);
    void call.closed.then(() => {
      calls.delete(call);
      idleMemory?.callsChanged(calls.size);
    });
  };
  let draining = false;
  let shutdownDone: Promise<void> | undefined;
  let endGrace: (() => void) | undefined;
  let markStopped!: () => void;
  const stopped = new Promise<void>((resolve) => (markStopped = resolve));

  // HTTP requests in progress (the AVR routes): a graceful shutdown waits for them as for calls.
  const httpInFlight = new Set<FastifyReply['raw']>();

  await app.register(websocket, {
    options: { maxPayload: config.wsMaxPayloadBytes },
    // A broken frame or a reset is the client's fault: its call logs one line (rate-limited, no stack); drop the socket.
    errorHandler: (error, socket) => {
      if (!isPeerFault(error)) deps.logger.error({ err: error }, 'WebSocket handler failed');
      socket.terminate();
    },
    // Sessions are closed by shutdown() after their grace period, not the instant the server closes.
    // A provider slow to say goodbye does not hold the exit: its session was already told to close.
    preClose: async () => {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all([...calls].map((call) => call.shutdown())),
        new Promise((resolve) => (timer = setTimeout(resolve, MAX_CALL_CLOSE_WAIT_MS))),
      ]);
      clearTimeout(timer);
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

  // A refused request's body is never read, so its connection closes with the answer (a trickled body cannot hold it).
  app.addHook('onSend', async (request, reply) => {
    if (!request.raw.complete) reply.header('connection', 'close');
  });
  // Client errors (a body too large or too slow, bad JSON) are answered, not logged: a client cannot fill the logs.
  app.setErrorHandler(async (error: Error & { statusCode?: number }, request, reply) => {
    const status = typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500;
    if (status >= 500) request.log.error({ err: error }, 'request failed');
    else request.log.debug({ status, reason: error.message }, 'request refused');
    return reply.code(status).send({ message: status >= 500 ? 'internal error' : error.message });
  });

  /** Runs first (onRequest), before any body is read: refused requests cost no parsing. */
  const refuse = (request: FastifyRequest, reply: FastifyReply, countsAsCall: boolean) => {
    if (draining) return reply.code(503).send({ message: 'the gateway is shutting down' });
    if (config.authToken !== undefined && !authorised(request, config.authToken)) {
      metrics.errors.inc({ kind: 'auth' });
      return reply.code(401).send({ message: 'missing or invalid token' });
    }
    if (countsAsCall && calls.size >= config.maxCalls) {
      metrics.errors.inc({ kind: 'capacity' });
      return reply.code(503).send({ message: `call limit reached (${config.maxCalls})` });
    }
    const overloaded = load.refusal(countsAsCall);
    if (overloaded !== undefined) {
      metrics.errors.inc({ kind: 'overload' });
      return reply.code(503).send({ message: overloaded });
    }
    return undefined;
  };
  const admit = async (request: FastifyRequest, reply: FastifyReply) => refuse(request, reply, true);
  const admitHttp = async (request: FastifyRequest, reply: FastifyReply) => {
    const refused = refuse(request, reply, false);
    if (refused !== undefined) return refused;
    httpInFlight.add(reply.raw);
    reply.raw.once('close', () => httpInFlight.delete(reply.raw));
    return undefined;
  };
  const httpDeps = {
    logger: deps.logger,
    metrics,
    admit: admitHttp,
    bodyTimeoutMs: config.httpBodyTimeoutMs,
    streamIdleTimeoutMs: config.httpStreamIdleTimeoutMs,
  };
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
    onRequest: admit,
    handler: (_request, reply) => reply.code(426).send({ message: 'connect with a WebSocket (AVR STS protocol)' }),
    wsHandler: (socket, request) => {
      const call = new CallSession(new WebSocketTransport(socket, request.raw.socket), {
        adapter: sts.adapter,
        providerId: sts.id,
        logger: deps.logger.child({ conn: request.id }),
        metrics,
        pacer,
        callerAudioFramesPerSend: load.callerAudioFramesPerSend,
        metadata: callMetadata(request.url),
        earlyAudioBufferMs: config.earlyAudioBufferMs,
        outboundLeadMs: config.outboundLeadMs,
        outboundStartBufferMs: config.outboundStartBufferMs,
        providerConnectTimeoutMs: config.providerConnectTimeoutMs,
        limits: config.callLimits,
        ...(deps.tools === undefined ? {} : { tools: deps.tools }),
        ...(deps.initTimeoutMs === undefined ? {} : { initTimeoutMs: deps.initTimeoutMs }),
        recordings,
      });
      track(call);
    },
  });

  // AVR's legacy STS contract (raw PCM over HTTP), still accepted by AVR Core as an STS_URL.
  if (sts !== undefined) {
    registerLegacyStsRoute(app, sts, {
      logger: deps.logger,
      metrics,
      pacer,
      callerAudioFramesPerSend: load.callerAudioFramesPerSend,
      config,
      tools: deps.tools,
      recordings,
      admit,
      onCall: track,
    });
  }

  if (config.playground) await registerPlayground(app, { logger: deps.logger, stsProvider: sts?.id, assetsDir: deps.playgroundAssetsDir });

  app.addHook('onClose', async () => {
    pacer.close();
    load.close();
    await idleMemory?.close();
    // After the calls (closed by preClose): their recordings finish writing, then the retention timer stops.
    await recordings?.close();
  });
  // Sampling starts once the hook above owns it: a failed start leaves no timer behind.
  load.start();

  return {
    app,
    metrics,
    calls,
    stopped,
    async shutdown(graceMs: number) {
      if (shutdownDone !== undefined) {
        // A second request (e.g. a second SIGTERM) ends the grace period now.
        endGrace?.();
        return shutdownDone;
      }
      draining = true;
      deps.logger.info({ activeCalls: calls.size, graceMs }, 'shutting down: no new calls; waiting for calls in progress');
      shutdownDone = (async () => {
        const busy = () => calls.size > 0 || httpInFlight.size > 0;
        if (busy()) {
          let timer: NodeJS.Timeout | undefined;
          let poll: NodeJS.Timeout | undefined;
          await new Promise<void>((resolve) => {
            endGrace = resolve;
            timer = setTimeout(resolve, graceMs);
            poll = setInterval(() => busy() || resolve(), DRAIN_POLL_MS);
          });
          clearTimeout(timer);
          clearInterval(poll);
        }
        if (busy()) deps.logger.warn({ activeCalls: calls.size, httpRequests: httpInFlight.size }, 'grace period over: closing remaining calls and requests');
        try {
          await app.close();
          deps.logger.info('shutdown complete');
        } finally {
          markStopped();
        }
      })();
      return shutdownDone;
    },
  };
}

/** At the end of a shutdown, how long closing calls may wait for their provider sessions to close. */
const MAX_CALL_CLOSE_WAIT_MS = 200;
/** How often a draining gateway checks whether its calls and requests are done. */
const DRAIN_POLL_MS = 20;

/** Errors a client causes on its socket (ws's frame errors carry a `WS_ERR_*` code, a reset an `E*` one). */
function isPeerFault(error: unknown): boolean {
  const code = error instanceof Error ? (error as NodeJS.ErrnoException).code : undefined;
  return typeof code === 'string' && (code.startsWith('WS_ERR_') || code.startsWith('E'));
}

/** `Authorization: Bearer <token>` (the scheme is case-insensitive, RFC 7235) or `?token=`. */
function authorised(request: FastifyRequest, token: string): boolean {
  const header = request.headers.authorization;
  const fromHeader = typeof header === 'string' ? /^bearer +(\S+) *$/i.exec(header)?.[1] : undefined;
  const fromQuery = new URLSearchParams(request.url.split('?')[1] ?? '').get('token') ?? undefined;
  const presented = fromHeader ?? fromQuery;
  if (presented === undefined) return false;
  const a = Buffer.from(presented);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}
