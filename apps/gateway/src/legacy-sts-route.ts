import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { AVR_FRAME_SAMPLES, AVR_UUID_HEADER, Framer, Pcm16Assembler, bytesFromPcm, type AvrOutbound, type StsAdapter, type ToolRunner } from '@stsgate/core';
import { callMetadata } from './call-metadata.js';
import { AVR_CALL_ID_PATTERN } from './http-routes.js';
import { CallSession, CLOSE } from './call-session.js';
import type { CallInbound, CallTransport } from './call-transport.js';
import type { GatewayConfig } from './config.js';
import type { GatewayMetrics } from './metrics.js';
import type { OutboundPacer } from './outbound.js';
import type { CallRecordings } from './recording/index.js';

/**
 * AVR's legacy STS contract (`STS_URL=http://host:port/speech-to-speech-stream`, before the WebSocket one):
 * `POST` with `X-UUID` and a chunked, open-ended raw PCM s16le 8 kHz mono body for the whole call; the response
 * streams the agent's raw PCM s16le 8 kHz back. The call ends when the request body ends (or the client leaves).
 */
export const LEGACY_STS_ROUTE = '/speech-to-speech-stream';

export interface LegacyStsDeps {
  readonly logger: Logger;
  readonly metrics: GatewayMetrics;
  readonly pacer: OutboundPacer;
  /** Caller frames per provider message now (the gateway's load guard decides). */
  readonly callerAudioFramesPerSend?: () => number;
  readonly config: Pick<GatewayConfig, 'earlyAudioBufferMs' | 'outboundLeadMs' | 'outboundStartBufferMs' | 'providerConnectTimeoutMs' | 'callLimits'>;
  readonly tools?: ToolRunner | undefined;
  /** Call recording (`RECORDINGS_DIR`), as for WebSocket calls. */
  readonly recordings?: CallRecordings | undefined;
  /** Refuse the call (draining, MAX_CALLS, auth) by answering; reply undefined to admit. */
  readonly admit: (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
  /** Every call started here, so the host counts it with its other calls (MAX_CALLS, draining, shutdown). */
  readonly onCall: (call: CallSession) => void;
}

const RESPONSE_HEADERS = {
  // Raw PCM, not SSE: AVR Core ignores the type, and every legacy AVR adapter labels it this way.
  'content-type': 'text/event-stream',
  'cache-control': 'no-store',
  // One call per connection: when the gateway ends a call, the socket must close even while the client is still uploading.
  connection: 'close',
} as const;

export function registerLegacyStsRoute(app: FastifyInstance, sts: { id: string; adapter: StsAdapter }, deps: LegacyStsDeps): void {
  // The body is the caller's audio for the whole call: leave it unparsed (no size limit) and read `request.raw` as it arrives.
  void app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, _payload, done) => done(null));
    scope.post(LEGACY_STS_ROUTE, { onRequest: deps.admit }, (request, reply) => {
      const uuid = callUuid(request);
      const logger = deps.logger.child({ conn: request.id, route: 'sts_http' });
      reply.hijack();
      const transport = new HttpCallTransport(request.raw, reply.raw, uuid, logger.child({ callId: uuid }));
      const call = new CallSession(transport, {
        adapter: sts.adapter,
        providerId: sts.id,
        logger,
        metrics: deps.metrics,
        pacer: deps.pacer,
        ...(deps.callerAudioFramesPerSend === undefined ? {} : { callerAudioFramesPerSend: deps.callerAudioFramesPerSend }),
        metadata: callMetadata(request.url),
        earlyAudioBufferMs: deps.config.earlyAudioBufferMs,
        outboundLeadMs: deps.config.outboundLeadMs,
        outboundStartBufferMs: deps.config.outboundStartBufferMs,
        providerConnectTimeoutMs: deps.config.providerConnectTimeoutMs,
        limits: deps.config.callLimits,
        ...(deps.tools === undefined ? {} : { tools: deps.tools }),
        recordings: deps.recordings,
      });
      deps.onCall(call);
    });
  });
}

/** `X-UUID` when it is a sane identifier (as for the ASR and TTS routes), else a fresh one. */
function callUuid(request: FastifyRequest): string {
  const header = request.headers[AVR_UUID_HEADER];
  return typeof header === 'string' && AVR_CALL_ID_PATTERN.test(header) ? header : randomUUID();
}

/**
 * The legacy contract as a call transport: request body bytes -> 20 ms frames of caller audio; agent
 * frames -> response body. Only audio can reach AVR Core: `interruption` and `transcript` have no place
 * here, and an `error` becomes the answer's status only while nothing has been written. Barge-in still
 * works because the pacer keeps AVR Core's buffer at the outbound lead: dropping the gateway's queue
 * loses at most that much, already sent.
 */
class HttpCallTransport implements CallTransport {
  private call: CallInbound | undefined;
  private readonly assembler = new Pcm16Assembler();
  private readonly framer = new Framer(AVR_FRAME_SAMPLES);
  /** The last error meant for AVR Core: the message of an error answer if the call fails before any audio. */
  private lastError: string | undefined;
  /**
   * Agent frames sent in this event-loop turn (one pacer top-up), written as one chunk at its end. AVR Core up to 1.4
   * plays each chunk of the answer as one entry of its queue and pauses 10 ms after each: frame by frame, 20 ms of
   * audio took 30 ms. Later cores cut the stream into 20 ms frames themselves, so the chunk size is theirs.
   */
  private pendingAudio: Buffer[] = [];
  private pendingAudioBytes = 0;

  constructor(
    private readonly body: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly uuid: string,
    private readonly log: Logger,
  ) {}

  attach(call: CallInbound): void {
    this.call = call;
    call.handleInit(this.uuid);
    this.body.on('data', this.onData);
    this.body.on('end', this.onEnd);
    this.res.on('close', this.onClose);
    this.res.on('error', this.onError);
  }

  get open(): boolean {
    return !this.res.writableEnded && !this.res.destroyed;
  }

  get backlogBytes(): number {
    return this.res.writableLength + this.pendingAudioBytes;
  }

  sendAudio(samples: Int16Array): void {
    if (this.pendingAudio.length === 0) process.nextTick(this.writeAudio);
    const bytes = bytesFromPcm(samples);
    this.pendingAudio.push(bytes);
    this.pendingAudioBytes += bytes.length;
  }

  sendControl(message: AvrOutbound): void {
    if (message.type === 'error') {
      this.lastError = message.message;
      this.log.warn({ reason: message.message }, 'call error (the HTTP contract cannot carry it to AVR Core)');
    } else {
      this.log.debug({ type: message.type }, 'not representable in the HTTP contract: dropped');
    }
  }

  close(code: number, reason?: string, dropConnection = false): void {
    this.body.off('data', this.onData);
    this.body.off('end', this.onEnd);
    if (dropConnection) {
      this.res.destroy();
      return;
    }
    this.body.resume(); // discard what the client still sends; the response decides when the socket closes
    if (!this.open) return;
    if (this.pendingAudio.length > 0 && code === CLOSE.normal) this.writeAudio();
    if (this.res.headersSent || code === CLOSE.normal) {
      if (!this.res.headersSent) this.res.writeHead(200, RESPONSE_HEADERS);
      this.res.end();
      return;
    }
    const status = code === CLOSE.goingAway ? 503 : 502;
    this.res.writeHead(status, { 'content-type': 'application/json', connection: 'close' });
    this.res.end(JSON.stringify({ message: this.lastError ?? reason ?? 'the call failed' }));
  }

  dispose(): void {
    this.res.off('close', this.onClose);
    this.res.off('error', this.onError);
  }

  private readonly writeAudio = (): void => {
    const chunks = this.pendingAudio;
    this.pendingAudio = [];
    this.pendingAudioBytes = 0;
    if (chunks.length === 0 || !this.open) return;
    if (!this.res.headersSent) this.res.writeHead(200, RESPONSE_HEADERS);
    this.res.write(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks));
  };

  private readonly onData = (chunk: Buffer): void => {
    this.framer.push(this.assembler.push(chunk));
    for (let frame = this.framer.nextFrame(); frame !== undefined; frame = this.framer.nextFrame()) this.call?.handleAudio(frame);
  };

  private readonly onEnd = (): void => this.call?.transportClosed();

  /** The client went away before the call ended (a finished response is the gateway's own close). */
  private readonly onClose = (): void => {
    if (!this.res.writableFinished) this.call?.transportClosed();
  };

  private readonly onError = (error: Error): void => this.call?.transportError(error);
}
