/**
 * Fake avr-ami (agentvoiceresponse/avr-ami, docs/reference/avr-ecosystem.md §2.8): the HTTP side the AVR tools call.
 *
 *   const ami = await startAvrAmiEmulator();
 *   process.env.AMI_URL = ami.url;                      // http://127.0.0.1:PORT
 *   // avr_transfer -> POST /transfer {uuid, exten, context, priority}; avr_hangup -> POST /hangup {uuid}
 *   const transfer = await ami.waitForRequest('/transfer');
 *   await ami.close();
 *
 * API (stable; append-only):
 *   startAvrAmiEmulator(options?: AvrAmiEmulatorOptions): Promise<AvrAmiEmulator>
 *   emulator.url, port, requests: AvrAmiRequestRecord[] (with receivedAt / respondedAt), setFault(fault | undefined),
 *   addCall(uuid), waitFor(probe), waitForRequest(path, predicate?) (resolves once answered; use waitFor on
 *   `requests` for a stalled one), close()
 *
 * Behaviour, as avr-ami's index.js (Express + express.json()):
 * - `POST /transfer {uuid, exten, context, priority}` -> 200 `{"message":"Call with UUID <uuid> redirect with action: [object Object]"}`
 *   (avr-ami interpolates the AMI action result object, hence `[object Object]`);
 * - `POST /hangup {uuid}` -> 200 `{"message":"Call with UUID <uuid> hangup with action: [object Object]"}`; the call is
 *   then gone (avr-ami drops it on the Asterisk Hangup event), so later requests for that uuid get 404;
 * - `POST /originate` -> 200 `{"message":"Call originate with action: [object Object]"}`;
 * - an unknown uuid -> 404 `{"message":"Call with UUID <uuid> not found"}`. By default every uuid is a live call;
 *   pass `calls` to make only those exist;
 * - a body that is not `Content-Type: application/json` is ignored (uuid undefined), like express.json();
 *   malformed JSON -> 400 (HTML, like Express); other routes -> 404 "Cannot POST /x" (HTML).
 * Faults: `{type:'status', status?: 500}` -> `{"message":"Error communicating with Asterisk"}`, `{type:'delay', ms}`
 * (answer late), `{type:'stall'}` (never answer). Set at start or with `setFault` (undefined clears).
 */
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { asJson, ChangeWaiters, closeServer, isRecord, listenOnLoopback, readBody, silentLogger, TimerSet, type JsonValue, type WaitOptions } from './common.js';

export type AvrAmiFault =
  | { readonly type: 'status'; readonly status?: number; readonly message?: string }
  | { readonly type: 'delay'; readonly ms: number }
  | { readonly type: 'stall' };

export interface AvrAmiEmulatorOptions {
  /** Live call uuids; default: every uuid is a live call (until hung up). */
  readonly calls?: readonly string[];
  readonly fault?: AvrAmiFault;
  readonly logger?: Logger;
}

export interface AvrAmiRequestRecord {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  /** The body as express.json() would see it ({} unless Content-Type is JSON). */
  readonly body: JsonValue;
  readonly uuid: string | undefined;
  readonly receivedAt: number;
  /** Set once answered. */
  respondedAt: number | undefined;
  status: number | undefined;
  response: JsonValue | undefined;
}

export interface AvrAmiEmulator {
  readonly url: string;
  readonly port: number;
  readonly requests: readonly AvrAmiRequestRecord[];
  /** Uuids hung up through POST /hangup. */
  readonly hungUp: readonly string[];
  setFault(fault: AvrAmiFault | undefined): void;
  addCall(uuid: string): void;
  waitFor<T>(probe: () => T | undefined | null | false, options?: WaitOptions): Promise<T>;
  waitForRequest(path: string, predicate?: (request: AvrAmiRequestRecord) => boolean, options?: WaitOptions): Promise<AvrAmiRequestRecord>;
  close(): Promise<void>;
}

function html(message: string): string {
  return `<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Error</title>\n</head>\n<body>\n<pre>${message}</pre>\n</body>\n</html>\n`;
}

export async function startAvrAmiEmulator(options: AvrAmiEmulatorOptions = {}): Promise<AvrAmiEmulator> {
  const logger = options.logger ?? silentLogger();
  const waiters = new ChangeWaiters();
  const timers = new TimerSet();
  const requests: AvrAmiRequestRecord[] = [];
  const hungUp: string[] = [];
  const known = options.calls === undefined ? undefined : new Set(options.calls);
  let fault = options.fault;

  const exists = (uuid: string | undefined): uuid is string =>
    uuid !== undefined && !hungUp.includes(uuid) && (known === undefined || known.has(uuid));

  const answer = (record: AvrAmiRequestRecord, response: ServerResponse, status: number, body: JsonValue, contentType = 'application/json'): void => {
    const send = (): void => {
      if (response.destroyed) return;
      record.status = status;
      record.response = body;
      record.respondedAt = Date.now();
      response.writeHead(status, { 'content-type': `${contentType}; charset=utf-8` });
      response.end(typeof body === 'string' ? body : JSON.stringify(body));
      waiters.notify();
    };
    if (fault?.type === 'delay') timers.after(fault.ms, send);
    else send();
  };

  const server = createServer((request, response) => {
    void (async () => {
      const raw = await readBody(request);
      const url = new URL(request.url ?? '/', 'http://127.0.0.1');
      const method = request.method ?? 'GET';
      const isJson = (request.headers['content-type'] ?? '').includes('application/json');
      let body: JsonValue = {};
      let malformed = false;
      if (isJson && raw.length > 0) {
        try {
          body = asJson(JSON.parse(raw.toString('utf8')));
        } catch {
          malformed = true;
        }
      }
      const uuid = isRecord(body) && typeof body.uuid === 'string' ? body.uuid : undefined;
      const record: AvrAmiRequestRecord = {
        method,
        path: url.pathname,
        headers: request.headers,
        body,
        uuid,
        receivedAt: Date.now(),
        respondedAt: undefined,
        status: undefined,
        response: undefined,
      };
      requests.push(record);
      logger.debug({ method, path: url.pathname }, 'avr-ami emulator request');
      waiters.notify();
      if (fault?.type === 'stall') return;
      if (malformed) {
        answer(record, response, 400, html('SyntaxError: Unexpected token in JSON'), 'text/html');
        return;
      }
      const route = method === 'POST' ? url.pathname : '';
      if (route !== '/transfer' && route !== '/hangup' && route !== '/originate') {
        answer(record, response, 404, html(`Cannot ${method} ${url.pathname}`), 'text/html');
        return;
      }
      if (fault?.type === 'status') {
        answer(record, response, fault.status ?? 500, { message: fault.message ?? 'Error communicating with Asterisk' });
        return;
      }
      if (route === '/originate') {
        answer(record, response, 200, { message: 'Call originate with action: [object Object]' });
        return;
      }
      if (!exists(uuid)) {
        answer(record, response, 404, { message: `Call with UUID ${String(uuid)} not found` });
        return;
      }
      if (route === '/hangup') {
        hungUp.push(uuid);
        answer(record, response, 200, { message: `Call with UUID ${uuid} hangup with action: [object Object]` });
        return;
      }
      answer(record, response, 200, { message: `Call with UUID ${uuid} redirect with action: [object Object]` });
    })().catch((error: unknown) => {
      logger.error({ err: error instanceof Error ? error.message : String(error) }, 'avr-ami emulator handler failed');
      if (!response.headersSent) response.writeHead(500, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ message: 'Error communicating with Asterisk' }));
    });
  });
  const port = await listenOnLoopback(server);
  let closing: Promise<void> | undefined;

  return {
    url: `http://127.0.0.1:${String(port)}`,
    port,
    requests,
    hungUp,
    setFault(next: AvrAmiFault | undefined): void {
      fault = next;
    },
    addCall(uuid: string): void {
      known?.add(uuid);
      const index = hungUp.indexOf(uuid);
      if (index >= 0) hungUp.splice(index, 1);
    },
    waitFor<T>(probe: () => T | undefined | null | false, waitOptions?: WaitOptions): Promise<T> {
      return waiters.waitFor(probe, waitOptions);
    },
    waitForRequest(path: string, predicate?: (request: AvrAmiRequestRecord) => boolean, waitOptions?: WaitOptions): Promise<AvrAmiRequestRecord> {
      return waiters.waitFor(
        () => requests.find((request) => request.path === path && request.respondedAt !== undefined && (predicate?.(request) ?? true)),
        waitOptions,
        `avr-ami ${path}`,
      );
    },
    close(): Promise<void> {
      closing ??= (async () => {
        timers.clear();
        waiters.close();
        await closeServer(server);
      })();
      return closing;
    },
  };
}
