import { randomUUID } from 'node:crypto';
import { PassThrough } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest, preParsingHookHandler } from 'fastify';
import type { Logger } from 'pino';
import {
  AVR_ROUTES,
  AVR_SAMPLE_RATE,
  AVR_UUID_HEADER,
  avrTtsRequestSchema,
  bytesFromPcm,
  createResampler,
  Pcm16Assembler,
  toProviderError,
  type AsrAdapter,
  type AsrStream,
  type CallContext,
  type ProviderError,
  type TtsAdapter,
} from '@stsgate/core';
import type { GatewayMetrics } from './metrics.js';

/**
 * AVR's pipeline-mode HTTP contracts, generic over any ASR or TTS adapter:
 * - `POST /speech-to-text-stream`: a chunked raw PCM s16le 8 kHz body for a whole listening session;
 *   the response is plain UTF-8 text, one write per completed utterance (finals only).
 * - `POST /text-to-speech-stream`: `{"text": ...}` (plus the optional `voice`, `language`, `model`, `sample_rate` AVR's TTS
 *   containers accept) in; raw PCM s16le streamed out, 8 kHz unless `sample_rate` asks for another rate.
 * Errors before the first body byte are a JSON `{"message"}` with a 4xx/5xx status; after it, the
 * response is ended (the status line is gone) and the failure logged.
 */
export interface HttpRouteDeps {
  readonly logger: Logger;
  readonly metrics: GatewayMetrics;
  /** Runs on request (before the body is read): refuse new work (401, 503) by answering; reply undefined to admit. */
  readonly admit: (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
  /** A JSON body (TTS, LLM) must have arrived within this time: 408 otherwise. */
  readonly bodyTimeoutMs: number;
  /** An audio body (ASR) that sends nothing for this long is ended. */
  readonly streamIdleTimeoutMs: number;
}

const MAX_TTS_BODY_BYTES = 64 * 1024;

/** A call id AVR Core may send (`X-UUID`, a body's `uuid`) that is safe to log and pass to providers. */
export const AVR_CALL_ID_PATTERN = /^[\w.:-]{1,128}$/;

export function registerAsrRoute(app: FastifyInstance, asr: { id: string; adapter: AsrAdapter }, deps: HttpRouteDeps): void {
  // The body is a long-lived PCM stream: leave it unparsed and read `request.raw` as it arrives.
  void app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, _payload, done) => done(null));
    scope.post(AVR_ROUTES.asr, { onRequest: deps.admit }, async (request, reply) => {
      const call = requestCall(request, deps.logger, 'asr');
      deps.metrics.httpStreams.inc({ route: 'asr' });
      try {
        await transcribe(request, reply, asr, call, deps);
      } finally {
        call.abort.abort();
        deps.metrics.httpStreams.dec({ route: 'asr' });
      }
    });
  });
}

async function transcribe(
  request: FastifyRequest,
  reply: FastifyReply,
  asr: { id: string; adapter: AsrAdapter },
  call: RequestCall,
  deps: HttpRouteDeps,
): Promise<void> {
  reply.hijack();
  const res = reply.raw;
  const body = request.raw;
  let stream: AsrStream | undefined;
  let resample: ((samples: Int16Array) => Int16Array) | undefined;
  const assembler = new Pcm16Assembler();
  let opening: Promise<void> | undefined;
  let relaying: Promise<void> = Promise.resolve();
  const early: Buffer[] = [];
  let settled = false;
  let settle!: () => void;
  const done = new Promise<void>((resolve) => (settle = resolve));

  /** End the exchange once: close the provider stream and answer (an error status if nothing was sent). */
  const end = async (failure: ProviderError | undefined, outcome?: string) => {
    if (settled) return;
    settled = true;
    body.resume(); // discard whatever the client still sends; never destroy the socket under the response
    await stream?.close();
    if (outcome !== undefined || res.destroyed) deps.metrics.httpRequests.inc({ route: 'asr', outcome: outcome ?? 'client_gone' });
    else finish(res, failure, deps, 'asr');
    settle();
  };
  const fail = (error: unknown) => {
    const failure = toProviderError(asr.id, error);
    deps.metrics.errors.inc({ kind: `provider_${failure.category}`, provider: failure.provider });
    call.logger.error({ err: failure }, 'ASR provider error');
    void end(failure);
  };
  const push = (chunk: Buffer) => {
    const samples = assembler.push(chunk);
    if (samples.length > 0 && stream !== undefined) stream.pushAudio(resample ? resample(samples) : samples);
  };

  // Utterances stream back while audio is still coming in.
  const relay = async (open: AsrStream) => {
    for await (const event of open.events) {
      switch (event.type) {
        case 'end_of_utterance': {
          const text = event.text.trim();
          if (text.length === 0 || settled || res.destroyed) break;
          if (!res.headersSent) res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
          call.logger.debug({ text }, 'utterance');
          if (!res.write(text)) await drained(res, call.abort.signal);
          break;
        }
        case 'error':
          if (event.fatal) fail(event.error);
          else call.logger.warn({ err: event.error }, 'ASR provider warning');
          break;
        case 'speech_started':
        case 'partial':
        case 'final':
          break;
      }
    }
  };

  const open = async () => {
    try {
      const opened = await asr.adapter.open(call.context);
      stream = opened;
      if (opened.inputSampleRate !== AVR_SAMPLE_RATE) {
        const resampler = createResampler(AVR_SAMPLE_RATE, opened.inputSampleRate);
        resample = (samples) => resampler.process(samples);
      }
      relaying = relay(opened).catch(fail);
      if (settled) return;
      for (const chunk of early.splice(0)) push(chunk);
    } catch (error) {
      fail(error);
    }
  };

  // Idle check without a timer per chunk: when the timer fires, it is re-armed for what is left of the window.
  let lastDataAt = performance.now();
  let idleTimer: NodeJS.Timeout | undefined;
  const armIdleTimer = (delayMs: number) => {
    idleTimer = setTimeout(() => {
      if (settled) return;
      const idleMs = performance.now() - lastDataAt;
      if (idleMs < deps.streamIdleTimeoutMs) {
        armIdleTimer(deps.streamIdleTimeoutMs - idleMs);
        return;
      }
      call.logger.warn({ idleMs: Math.round(idleMs) }, 'no audio from AVR Core: ending the request');
      endIdle(res, deps.streamIdleTimeoutMs);
      void end(undefined, 'idle_timeout');
    }, delayMs);
  };
  armIdleTimer(deps.streamIdleTimeoutMs);
  void done.then(() => clearTimeout(idleTimer));

  body.on('data', (chunk: Buffer) => {
    lastDataAt = performance.now();
    if (settled || chunk.length === 0) return;
    opening ??= open();
    if (stream === undefined) early.push(chunk);
    else push(chunk);
  });
  body.on('end', () => {
    if (settled) return;
    if (opening === undefined) {
      void end(undefined); // an empty body: nothing to transcribe, no provider session
      return;
    }
    void opening.then(async () => {
      if (settled || stream === undefined) return;
      stream.endInput();
      await relaying;
      await end(undefined);
    });
  });
  res.on('close', () => {
    if (!settled && !res.writableFinished) {
      call.abort.abort();
      void end(undefined, 'client_gone');
    }
  });
  await done;
}

export function registerTtsRoute(app: FastifyInstance, tts: { id: string; adapter: TtsAdapter }, deps: HttpRouteDeps): void {
  app.post(AVR_ROUTES.tts, { onRequest: deps.admit, preParsing: bodyDeadline(deps.bodyTimeoutMs), bodyLimit: MAX_TTS_BODY_BYTES }, async (request, reply) => {
    const parsed = avrTtsRequestSchema.safeParse(request.body);
    if (!parsed.success) {
      deps.metrics.httpRequests.inc({ route: 'tts', outcome: 'bad_request' });
      const issue = parsed.error.issues[0];
      const problem = issue === undefined || issue.path.length === 0 || issue.path[0] === 'text' ? '' : ` (${issue.path.join('.')}: ${issue.message})`;
      return reply.code(400).send({ message: `expected a JSON body {"text": "..."} with non-empty text${problem}` });
    }
    const { text, voice, language, model, sampleRate } = parsed.data;
    const call = requestCall(request, deps.logger, 'tts');
    deps.metrics.httpStreams.inc({ route: 'tts' });
    reply.hijack();
    const res = reply.raw;
    res.on('close', () => {
      if (!res.writableFinished) call.abort.abort();
    });
    let failure: ProviderError | undefined;
    try {
      const synthesis = tts.adapter.synthesize(
        { text, ...(voice === undefined ? {} : { voice }), ...(language === undefined ? {} : { language }), ...(model === undefined ? {} : { model }) },
        call.context,
      );
      const resampler = synthesis.outputSampleRate === sampleRate ? undefined : createResampler(synthesis.outputSampleRate, sampleRate);
      for await (const chunk of synthesis.audio) {
        if (call.abort.signal.aborted) break;
        const samples = resampler ? resampler.process(chunk) : chunk;
        if (samples.length === 0) continue;
        if (!res.headersSent) res.writeHead(200, { 'content-type': 'application/octet-stream', 'cache-control': 'no-store' });
        // Backpressure: stop pulling from the provider while the client is not reading.
        if (!res.write(bytesFromPcm(samples))) await drained(res, call.abort.signal);
      }
      const tail = resampler?.flush();
      if (tail !== undefined && tail.length > 0 && res.headersSent && !call.abort.signal.aborted) res.write(bytesFromPcm(tail));
    } catch (error) {
      if (!call.abort.signal.aborted) {
        failure = toProviderError(tts.id, error);
        deps.metrics.errors.inc({ kind: `provider_${failure.category}`, provider: failure.provider });
        call.logger.error({ err: failure }, 'TTS provider error');
      }
    } finally {
      call.abort.abort();
      deps.metrics.httpStreams.dec({ route: 'tts' });
    }
    if (res.destroyed || (!res.writable && !res.headersSent)) {
      deps.metrics.httpRequests.inc({ route: 'tts', outcome: 'client_gone' });
      return;
    }
    finish(res, failure, deps, 'tts');
  });
}

/** A streamed request went quiet: answer 408 if nothing was sent yet, else end the stream, and drop the connection. */
function endIdle(res: FastifyReply['raw'], idleTimeoutMs: number): void {
  if (!res.headersSent) {
    res.writeHead(408, { 'content-type': 'application/json', connection: 'close' });
    res.end(JSON.stringify({ message: `no audio received for ${Math.round(idleTimeoutMs / 1000)} s` }));
  } else {
    res.end();
  }
  // The request body is still open: the connection cannot be reused, and the idle client must not keep it.
  res.once('finish', () => res.socket?.destroy());
}

/**
 * A `preParsing` hook: the body must be complete within `timeoutMs`, else the request fails with 408 (a client
 * trickling a body byte by byte holds a connection for that long at most).
 */
export function bodyDeadline(timeoutMs: number): preParsingHookHandler {
  return (_request, _reply, payload, done) => {
    const guarded = new PassThrough();
    const timer = setTimeout(() => {
      payload.unpipe(guarded);
      guarded.destroy(Object.assign(new Error(`the request body did not arrive within ${timeoutMs} ms`), { statusCode: 408 }));
    }, timeoutMs);
    const settle = () => clearTimeout(timer);
    payload.once('end', settle);
    payload.once('error', settle);
    payload.once('close', settle);
    payload.pipe(guarded);
    done(null, guarded);
  };
}

interface RequestCall {
  readonly context: CallContext;
  readonly logger: Logger;
  readonly abort: AbortController;
}

function requestCall(request: FastifyRequest, logger: Logger, route: string): RequestCall {
  const header = request.headers[AVR_UUID_HEADER];
  const uuid = typeof header === 'string' && AVR_CALL_ID_PATTERN.test(header) ? header : randomUUID();
  const abort = new AbortController();
  const callLogger = logger.child({ callId: uuid, route });
  return { context: { callId: uuid, metadata: {}, logger: callLogger, signal: abort.signal }, logger: callLogger, abort };
}

/** End the response: an error status if nothing was sent yet, otherwise just the end of the stream. */
function finish(res: FastifyReply['raw'], failure: ProviderError | undefined, deps: HttpRouteDeps, route: 'asr' | 'tts'): void {
  if (failure !== undefined && !res.headersSent) {
    const status = failure.category === 'invalid_request' ? 400 : failure.category === 'timeout' ? 504 : 502;
    // `connection: close`: the client may still be uploading; a kept-alive socket would hold up a graceful shutdown.
    res.writeHead(status, { 'content-type': 'application/json', connection: 'close' });
    res.end(JSON.stringify({ message: `${route.toUpperCase()} provider error: ${failure.message}` }));
  } else {
    if (!res.headersSent) res.writeHead(200, { 'content-type': route === 'asr' ? 'text/plain; charset=utf-8' : 'application/octet-stream' });
    res.end();
  }
  deps.metrics.httpRequests.inc({ route, outcome: failure === undefined ? 'ok' : 'provider_error' });
}

/** Wait until the client reads again, leaves, or the request is aborted (whichever comes first). */
export function drained(res: FastifyReply['raw'], signal: AbortSignal): Promise<void> {
  if (res.destroyed || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
    signal.addEventListener('abort', done);
  });
}
