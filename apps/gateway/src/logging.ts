import pino, { type Logger, type LoggerOptions } from 'pino';

/**
 * Paths that may carry secrets. Transcripts and prompts are logged only at debug level, under
 * `text`, by the code that has them; audio is never logged.
 */
export const REDACT_PATHS = [
  'apiKey',
  'api_key',
  'token',
  'authorization',
  '*.apiKey',
  '*.api_key',
  '*.token',
  '*.authorization',
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'headers.authorization',
  'metadata.token',
];

export function loggerOptions(level: string, pretty: boolean): LoggerOptions {
  return {
    level,
    base: { service: 'stsgate' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    // Never log query strings: AVR Core's URL may carry the auth token and caller numbers.
    serializers: {
      req: (req: { method?: string; url?: string; id?: string }) => ({
        id: req.id,
        method: req.method,
        path: typeof req.url === 'string' ? req.url.split('?')[0] : undefined,
      }),
    },
    ...(pretty ? { transport: { target: 'pino-pretty', options: { colorize: true } } } : {}),
  };
}

export function createLogger(level: string, pretty = false): Logger {
  return pino(loggerOptions(level, pretty));
}
