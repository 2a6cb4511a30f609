import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import { ConfigError } from '@stsgate/core';

/**
 * Where the build (playground/build.mjs) puts the page: this package's dist/playground, from src/ (tests) as from
 * dist/ (both sit one level below the package root).
 */
export const PLAYGROUND_ASSETS_DIR = fileURLToPath(new URL('../dist/playground/', import.meta.url));

/** The only files served, read once at start-up: no request ever reaches the filesystem. */
const ASSETS: ReadonlyMap<string, string> = new Map([
  ['index.html', 'text/html; charset=utf-8'],
  ['playground.css', 'text/css; charset=utf-8'],
  ['playground.js', 'text/javascript; charset=utf-8'],
  ['capture-worklet.js', 'text/javascript; charset=utf-8'],
  ['playback-worklet.js', 'text/javascript; charset=utf-8'],
]);

/**
 * The page loads nothing but its own files; it may call any WebSocket URL (the form's gateway URL is editable).
 * Worklet modules count as scripts.
 */
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  // Worklets compile the resampler's WebAssembly kernel; 'wasm-unsafe-eval' allows that and still forbids eval.
  "script-src 'self' 'wasm-unsafe-eval'",
  "style-src 'self'",
  "connect-src 'self' ws: wss:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export interface PlaygroundOptions {
  readonly logger: Logger;
  /** The STS provider calls reach; without one there is nothing to talk to and the page is not served. */
  readonly stsProvider: string | undefined;
  readonly assetsDir?: string | undefined;
}

/**
 * `STSGATE_PLAYGROUND=true`: the browser playground at `/playground/`. The page is static and holds no secret, so it
 * is served without the token; the call it makes is an ordinary STS WebSocket, refused without `?token=` when
 * `STSGATE_AUTH_TOKEN` is set. Throws a ConfigError when the page was not built.
 */
export async function registerPlayground(app: FastifyInstance, options: PlaygroundOptions): Promise<void> {
  if (options.stsProvider === undefined) {
    options.logger.warn('STSGATE_PLAYGROUND is on but no STS provider is configured: the playground is not served');
    return;
  }
  const assetsDir = options.assetsDir ?? PLAYGROUND_ASSETS_DIR;
  const files = new Map<string, Buffer>();
  for (const name of ASSETS.keys()) {
    try {
      files.set(name, await readFile(join(assetsDir, name)));
    } catch {
      throw new ConfigError('the gateway', [`STSGATE_PLAYGROUND=true but the playground is not built (${join(assetsDir, name)} is missing): run "pnpm build"`]);
    }
  }
  const send = (reply: FastifyReply, name: string) => {
    const body = files.get(name);
    const type = ASSETS.get(name);
    if (body === undefined || type === undefined) return reply.code(404).send({ message: 'not found' });
    return reply
      .header('content-type', type)
      .header('cache-control', 'no-cache')
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('content-security-policy', CONTENT_SECURITY_POLICY)
      .send(body);
  };
  // Relative, so the page's relative asset URLs also work behind a reverse proxy's path prefix.
  app.get('/playground', (_request, reply) => reply.redirect('playground/'));
  app.get('/playground/', (_request, reply) => send(reply, 'index.html'));
  app.get<{ Params: { file: string } }>('/playground/:file', (request, reply) => send(reply, request.params.file));
  options.logger.info({ path: '/playground/', sts: options.stsProvider }, 'browser playground on: open /playground/ (https or localhost)');
}
