import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { healthcheckPort, main, type CliContext } from '../src/cli-main.js';
import { builtinRegistry, resolveServeSetup } from '../src/index.js';
import { listenErrorMessage } from '../src/serve.js';

function run(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const context: CliContext = {
    env,
    stdout: { write: (chunk: string) => (out += chunk) },
    stderr: { write: (chunk: string) => (err += chunk) },
  };
  return main(argv, context).then((code) => ({ code, out, err }));
}

describe('stsgate CLI', () => {
  it('healthcheck probes the port serve listens on, ASR-, LLM- and TTS-only gateways included', () => {
    const keys = { OPENAI_API_KEY: 'sk-x', SONIOX_API_KEY: 'k', SPEECHMATICS_API_KEY: 'k' };
    const cases: [Record<string, string>, number][] = [
      [{}, 6030],
      [{ STS_PROVIDER: 'speechmatics-flow' }, 6040],
      [{ ASR_PROVIDER: 'soniox' }, 6018],
      [{ ASR_PROVIDER: 'speechmatics' }, 6010],
      [{ LLM_PROVIDER: 'openai' }, 6002],
      [{ TTS_PROVIDER: 'openai' }, 6011],
      [{ TTS_PROVIDER: 'soniox', PORT: '7000' }, 7000],
      [{ STS_PROVIDER: 'undefined', PORT: 'undefined' }, 6030],
    ];
    for (const [env, port] of cases) {
      expect(healthcheckPort(env)).toBe(port);
      expect(resolveServeSetup({ ...keys, ...env }, builtinRegistry(), () => pino({ level: 'silent' })).port).toBe(port);
    }
  });

  it('--version prints the gateway package version', async () => {
    const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    const result = await run(['--version']);
    expect(result).toEqual({ code: 0, out: `${version}\n`, err: '' });
    expect(version).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('serve --help, healthcheck --help and emulate --help show help instead of running', async () => {
    // With a broken configuration, serve would exit 2: exit 0 and the help text show it never ran.
    const serveHelp = await run(['serve', '--help'], { PORT: 'abc' });
    expect(serveHelp.code).toBe(0);
    expect(serveHelp.err).toBe('');
    expect(serveHelp.out).toMatch(/^Usage: stsgate serve\n/);
    expect(serveHelp.out).toContain('STS_PROVIDER');
    expect(serveHelp.out).toMatch(/openai.*soniox/);

    const healthHelp = await run(['healthcheck', '-h']);
    expect(healthHelp.code).toBe(0);
    expect(healthHelp.out).toMatch(/^Usage: stsgate healthcheck\n/);

    const emulateHelp = await run(['emulate', '--help']);
    expect(emulateHelp.code).toBe(0);
    expect(emulateHelp.out).toMatch(/^Usage: stsgate emulate/);
  });

  it('the server does not depend on the test kit: only call and emulate load it, from dev-commands.ts', () => {
    const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { dependencies: Record<string, string> };
    expect(Object.keys(manifest.dependencies)).not.toContain('@stsgate/testkit');
    const sources = readdirSync(new URL('../src/', import.meta.url)).filter((name) => name.endsWith('.ts'));
    const importers = sources.filter((name) => /from '@stsgate\/testkit/.test(readFileSync(new URL(`../src/${name}`, import.meta.url), 'utf8')));
    expect(importers).toEqual(['dev-commands.ts']);
    // cli-main.ts reaches it only through a dynamic import (and a type-only import, erased at build).
    expect(readFileSync(new URL('../src/cli-main.ts', import.meta.url), 'utf8')).not.toMatch(/^import (?!type )[^;]*dev-commands/m);
  });

  it('call and emulate still run (loaded on demand): a bad invocation gets their own usage and exit 2', async () => {
    const emulate = await run(['emulate', 'no-such-provider']);
    expect(emulate.code).toBe(2);
    expect(emulate.err).toBe('stsgate: usage: stsgate emulate <openai|xai|speechmatics|soniox|speechmatics-flow>... [--write-env FILE]\n');
    const call = await run(['call']);
    expect(call.code).toBe(2);
    expect(call.err).toMatch(/stsgate call/);
  });

  it('a configuration error names the value typed and exits 2', async () => {
    const result = await run(['serve'], { PORT: 'abc', LOG_LEVEL: 'silent' });
    expect(result.code).toBe(2);
    expect(result.err).toContain('PORT="abc" is not a port number (1-65535)');
    expect(result.err).not.toContain('stsgate emulate');
  });

  it('a missing provider key ends the error with a hint to try the provider against its emulator', async () => {
    const openai = await run(['serve'], { STS_PROVIDER: 'openai', LOG_LEVEL: 'silent' });
    expect(openai.code).toBe(2);
    expect(openai.err).toContain('OPENAI_API_KEY is required');
    expect(openai.err).toMatch(/stsgate emulate openai\b[^\n]*\n$/);

    const flow = await run(['serve'], { STS_PROVIDER: 'speechmatics-flow', LOG_LEVEL: 'silent' });
    expect(flow.err).toContain('SPEECHMATICS_API_KEY is required');
    expect(flow.err).toMatch(/stsgate emulate speechmatics-flow\b[^\n]*\n$/);

    const cascade = await run(['serve'], {
      STS_PROVIDER: 'cascade',
      ASR_PROVIDER: 'soniox',
      LLM_PROVIDER: 'openai',
      TTS_PROVIDER: 'speechmatics',
      LOG_LEVEL: 'silent',
    });
    expect(cascade.err).toContain('SONIOX_API_KEY is required');
    expect(cascade.err).toMatch(/stsgate emulate soniox openai speechmatics\b[^\n]*\n$/);
  });

  it('a port in use is reported in one line with exit status 2', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as AddressInfo;
    try {
      const result = await run(['serve'], { PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'silent' });
      expect(result.code).toBe(2);
      expect(result.err).toBe(`stsgate: port ${port} on 127.0.0.1 is in use: set PORT to another port\n`);
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
  });

  it('explains listen errors a user can fix, and leaves others alone', () => {
    const errno = (code: string) => Object.assign(new Error(`listen ${code}`), { code });
    expect(listenErrorMessage(errno('EADDRINUSE'), '0.0.0.0', 6030)).toBe('port 6030 on 0.0.0.0 is in use: set PORT to another port');
    expect(listenErrorMessage(errno('EACCES'), '0.0.0.0', 80)).toBe(
      'not allowed to listen on port 80 on 0.0.0.0 (ports below 1024 need privileges): set PORT to another port',
    );
    expect(listenErrorMessage(errno('EACCES'), '0.0.0.0', 6030)).toBe('not allowed to listen on port 6030 on 0.0.0.0: set PORT to another port');
    expect(listenErrorMessage(errno('EADDRNOTAVAIL'), '203.0.113.7', 6030)).toBe(
      'HOST=203.0.113.7 is not an address of this machine: set HOST to one of its addresses (or 0.0.0.0 for all)',
    );
    expect(listenErrorMessage(errno('EMFILE'), '0.0.0.0', 6030)).toBeUndefined();
    expect(listenErrorMessage('EADDRINUSE', '0.0.0.0', 6030)).toBeUndefined();
  });

  it('an unknown command shows the usage with exit status 2', async () => {
    const result = await run(['serv']);
    expect(result.code).toBe(2);
    expect(result.err).toMatch(/^stsgate: unknown command "serv"\n\nstsgate: speech-to-speech gateway/);
  });
});
