/**
 * Speechmatics management-platform emulator for temporary keys (docs/reference/provider-protocols.md §2.1, §2.6):
 * plain http on 127.0.0.1:<random port>.
 *
 *   const auth = await startSpeechmaticsAuthEmulator({ apiKey: 'sm-test-key' });
 *   // official SDK:
 *   const jwt = await createSpeechmaticsJWT({ type: 'rt', apiKey: 'sm-test-key', managementPlatformURL: auth.baseUrl });
 *   auth.verify(jwt, 'rt'); // true while not expired
 *   // pair it with the RT emulator: startSpeechmaticsRtEmulator({ verifyToken: (token) => auth.verify(token, 'rt') })
 *   await auth.close();
 *
 * API (stable; append-only):
 *   startSpeechmaticsAuthEmulator(options: SpeechmaticsAuthEmulatorOptions): Promise<SpeechmaticsAuthEmulator>
 *   emulator.baseUrl  http://127.0.0.1:PORT/v1 (usable verbatim as @speechmatics/auth's `managementPlatformURL`)
 *   emulator.port, requests: SpeechmaticsAuthRequestRecord[] (every request, in order), issued: SpeechmaticsAuthIssuedKey[],
 *   verify(token, type): boolean (issued here for that type and not expired), queueFault(fault) (also
 *   `options.faults`), waitFor(probe), close()
 *
 * POST /v1/api_keys?type=<batch|rt|tts>  (`type` omitted -> `batch`, as in the management API spec; `flow` only with
 *   `options.allowFlowKeys`: Speechmatics withdrew Flow and its management API no longer lists that type, §3)
 * - `Authorization: Bearer <API key>` must be one of `options.apiKey`; wrong or missing -> 403
 *   `{"code":403,"error":"Forbidden","detail":"..."}` (the SDK turns any 403 into SpeechmaticsJWTError 'Unauthorized';
 *   the body follows the management API's ErrorResponse schema {code, error, detail}; the exact wording is UNCONFIRMED).
 * - JSON body `{"ttl": 60..86400 (integer, required), "region"?: string|null, "client_ref"?: string|null}`; other
 *   fields (`project_id`, `name`, ...) are accepted and ignored. A bad ttl, an unknown type, a batch key without
 *   `client_ref`, a body that is not a JSON object -> 422 `{"code":422,"error":"Unprocessable Entity","message":"...",
 *   "detail":"..."}` (the SDK reads `json.message` into SpeechmaticsJWTError 'ValidationFailed'; the rest of the body
 *   is UNCONFIRMED). `region` and `client_ref` are recorded; `client_ref` is ignored for non-batch keys.
 * - Success -> 201 `{"apikey_id": null, "key_value": "<JWT>"}`. The key is a JWT-looking HS256 token (random secret per
 *   emulator) whose payload holds `type`, `iat`, `exp`, `jti` (and `client_ref`/`region` when given). It is only
 *   meaningful to this emulator: `verify()` checks the issued list (exact token, same type, `clock() < expiresAtMs`).
 * - Any other path -> 404 JSON; another method on /v1/api_keys -> 405 JSON.
 *
 * Faults (`SpeechmaticsAuthFault`, FIFO, `times` default 1), applied to requests on /v1/api_keys before auth and
 * validation: `{type:'status', status, body?}` (answer with this status; default body is the ErrorResponse shape),
 * `{type:'stall'}` (never answer; the socket stays open until the client gives up or the emulator closes),
 * `{type:'drop'}` (destroy the socket without a response).
 *
 * Not implemented: the rest of the management API (projects, permanent keys, key deletion), regional restrictions
 * (`au` + `rt`), real JWT claims or signatures the Speechmatics services would accept.
 */
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { Logger } from 'pino';
import { z } from 'zod';
import { apiKeyProblem, ChangeWaiters, closeServer, FaultQueue, isRecord, listenOnLoopback, readBody, sendJson, silentLogger, type JsonValue, type WaitOptions } from './common.js';

// ---- public types ----------------------------------------------------------------------------------------------------

export type SpeechmaticsAuthKeyType = 'batch' | 'rt' | 'flow' | 'tts';

/** Every key type the emulator knows; `flow` is minted only with `allowFlowKeys`. */
export const SPEECHMATICS_AUTH_KEY_TYPES: readonly SpeechmaticsAuthKeyType[] = ['batch', 'rt', 'flow', 'tts'];

export interface SpeechmaticsAuthIssuedKey {
  readonly token: string;
  readonly type: SpeechmaticsAuthKeyType;
  /** Seconds, as requested. */
  readonly ttl: number;
  /** `clock()` at issue time + ttl. */
  readonly expiresAtMs: number;
  readonly clientRef: string | undefined;
  readonly region: string | undefined;
}

export type SpeechmaticsAuthFault = (
  | { readonly type: 'status'; readonly status: number; readonly body?: JsonValue }
  | { readonly type: 'stall' }
  | { readonly type: 'drop' }
) & {
  /** Number of consecutive requests it applies to (default 1). */
  readonly times?: number;
};

export interface SpeechmaticsAuthRequestRecord {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  /** The `type` query parameter as sent (undefined when absent). */
  readonly type: string | undefined;
  /** The parsed JSON body (null when empty or not JSON). */
  readonly body: JsonValue;
  /** HTTP status answered; 0 while pending or when stalled/dropped. */
  status: number;
  /** The key issued by this request. */
  token: string | undefined;
  /** The fault applied to this request, if any. */
  fault: SpeechmaticsAuthFault['type'] | undefined;
}

export interface SpeechmaticsAuthEmulatorOptions {
  /** Valid long-lived API key(s). */
  readonly apiKey: string | readonly string[];
  /** Also mint `flow` keys, for accounts that still have Flow (default false: 422 like any unknown type). */
  readonly allowFlowKeys?: boolean;
  readonly faults?: readonly SpeechmaticsAuthFault[];
  /** Clock for issue and expiry times (default `Date.now`). */
  readonly clock?: () => number;
  readonly logger?: Logger;
}

export interface SpeechmaticsAuthEmulator {
  /** `http://127.0.0.1:PORT/v1`. */
  readonly baseUrl: string;
  readonly port: number;
  readonly requests: readonly SpeechmaticsAuthRequestRecord[];
  readonly issued: readonly SpeechmaticsAuthIssuedKey[];
  /** True when `token` was issued here for `type` and has not expired. */
  verify(token: string, type: SpeechmaticsAuthKeyType): boolean;
  queueFault(fault: SpeechmaticsAuthFault): void;
  waitFor<T>(probe: () => T | undefined | null | false, options?: WaitOptions): Promise<T>;
  close(): Promise<void>;
}

// ---- implementation -------------------------------------------------------------------------------------------------

const bodySchema = z.looseObject({
  ttl: z.number().int().min(60).max(86400),
  region: z.string().nullable().optional(),
  client_ref: z.string().nullable().optional(),
});

const STATUS_TEXT: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  410: 'Gone',
  422: 'Unprocessable Entity',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
};

function errorBody(status: number, detail: string): JsonValue {
  const body: { [key: string]: JsonValue } = { code: status, error: STATUS_TEXT[status] ?? 'Error', detail };
  if (status === 422) body.message = detail;
  return body;
}

function base64url(value: Buffer | string): string {
  return Buffer.from(value).toString('base64url');
}

function describeBodyIssue(issue: z.core.$ZodIssue | undefined): string {
  if (issue === undefined) return 'Invalid request body.';
  const path = issue.path.map(String).join('.');
  if (path === 'ttl') return 'ttl must be an integer between 60 and 86400.';
  return `Invalid value for ${path}: ${issue.message}`;
}

export async function startSpeechmaticsAuthEmulator(options: SpeechmaticsAuthEmulatorOptions): Promise<SpeechmaticsAuthEmulator> {
  const apiKeys = new Set(typeof options.apiKey === 'string' ? [options.apiKey] : options.apiKey);
  const clock = options.clock ?? Date.now;
  const logger = options.logger ?? silentLogger();
  const secret = randomBytes(32);
  const requests: SpeechmaticsAuthRequestRecord[] = [];
  const issued: SpeechmaticsAuthIssuedKey[] = [];
  const waiters = new ChangeWaiters();
  const notify = (): void => waiters.notify();
  const faults = new FaultQueue(options.faults);
  const keyTypes = SPEECHMATICS_AUTH_KEY_TYPES.filter((type) => type !== 'flow' || options.allowFlowKeys === true);

  const mint = (type: SpeechmaticsAuthKeyType, ttl: number, clientRef: string | undefined, region: string | undefined): SpeechmaticsAuthIssuedKey => {
    const nowMs = clock();
    const iat = Math.floor(nowMs / 1000);
    const payload: { [key: string]: JsonValue } = { iss: 'speechmatics-emulator', type, iat, exp: iat + ttl, jti: randomUUID() };
    if (clientRef !== undefined) payload.client_ref = clientRef;
    if (region !== undefined) payload.region = region;
    const signingInput = `${base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${base64url(JSON.stringify(payload))}`;
    const signature = base64url(createHmac('sha256', secret).update(signingInput).digest());
    const key: SpeechmaticsAuthIssuedKey = { token: `${signingInput}.${signature}`, type, ttl, expiresAtMs: nowMs + ttl * 1000, clientRef, region };
    issued.push(key);
    return key;
  };

  const server = createServer((incoming, response) => {
    void (async () => {
      const url = new URL(incoming.url ?? '/', 'http://127.0.0.1');
      const raw = await readBody(incoming, 1024 * 1024);
      let body: JsonValue = null;
      try {
        body = raw.length === 0 ? null : (JSON.parse(raw.toString('utf8')) as JsonValue);
      } catch {
        body = null;
      }
      const record: SpeechmaticsAuthRequestRecord = {
        method: incoming.method ?? 'GET',
        path: url.pathname,
        headers: incoming.headers,
        type: url.searchParams.get('type') ?? undefined,
        body,
        status: 0,
        token: undefined,
        fault: undefined,
      };
      requests.push(record);
      const answer = (status: number, payload: JsonValue): void => {
        record.status = status;
        sendJson(response, status, payload);
        notify();
      };
      if (url.pathname !== '/v1/api_keys' && url.pathname !== '/v1/api_keys/') {
        answer(404, errorBody(404, `No route for ${url.pathname}.`));
        return;
      }
      if (incoming.method !== 'POST') {
        answer(405, errorBody(405, 'Only POST is supported on /v1/api_keys by the emulator.'));
        return;
      }
      const fault = faults.take();
      if (fault !== undefined) {
        record.fault = fault.type;
        switch (fault.type) {
          case 'status':
            answer(fault.status, fault.body ?? errorBody(fault.status, 'Emulated failure.'));
            return;
          case 'stall':
            notify();
            return;
          case 'drop':
            incoming.socket.destroy();
            notify();
            return;
          default: {
            const exhaustive: never = fault;
            throw new Error(`unknown fault ${JSON.stringify(exhaustive)}`);
          }
        }
      }
      const keyProblem = apiKeyProblem(incoming.headers, apiKeys);
      if (keyProblem !== undefined) {
        answer(403, errorBody(403, keyProblem));
        return;
      }
      const type = record.type ?? 'batch';
      if (!(keyTypes as readonly string[]).includes(type)) {
        answer(422, errorBody(422, `Invalid key type '${type}'; expected one of ${keyTypes.join(', ')}.`));
        return;
      }
      if (!isRecord(body)) {
        answer(422, errorBody(422, 'The request body must be a JSON object with a ttl.'));
        return;
      }
      const parsed = bodySchema.safeParse(body);
      if (!parsed.success) {
        answer(422, errorBody(422, describeBodyIssue(parsed.error.issues[0])));
        return;
      }
      const clientRef = parsed.data.client_ref ?? undefined;
      if (type === 'batch' && (clientRef === undefined || clientRef.length === 0)) {
        answer(422, errorBody(422, 'client_ref is required for batch temporary keys.'));
        return;
      }
      const key = mint(type as SpeechmaticsAuthKeyType, parsed.data.ttl, clientRef, parsed.data.region ?? undefined);
      record.token = key.token;
      answer(201, { apikey_id: null, key_value: key.token });
    })().catch((error: unknown) => {
      logger.error({ err: error }, 'speechmatics auth emulator: request failed');
      if (!response.headersSent) sendJson(response, 500, errorBody(500, 'Internal server error.'));
      else response.destroy();
    });
  });

  const port = await listenOnLoopback(server);
  return {
    baseUrl: `http://127.0.0.1:${String(port)}/v1`,
    port,
    requests,
    issued,
    verify: (token, type) => {
      const key = issued.find((entry) => entry.token === token);
      return key !== undefined && key.type === type && clock() < key.expiresAtMs;
    },
    queueFault: (fault) => faults.push(fault),
    waitFor: (probe, waitOptions) => waiters.waitFor(probe, waitOptions),
    close: async () => {
      waiters.close();
      await closeServer(server);
    },
  };
}
