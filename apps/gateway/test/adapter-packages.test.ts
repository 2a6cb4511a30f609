import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { ConfigError } from '@stsgate/core';
import { addAdapterPackages, buildGateway, builtinRegistry, resolveServeSetup } from '../src/index.js';
import { healthcheckPort } from '../src/cli-main.js';
import { echoCall, fixturePath, readWavAs8k } from '@stsgate/testkit';
import type { AddressInfo } from 'node:net';

// An app directory as the image has it (/usr/src/app): packages installed from npm in its node_modules.
const appDir = mkdtempSync(join(tmpdir(), 'stsgate-app-'));
mkdirSync(join(appDir, 'node_modules'));
symlinkSync(fileURLToPath(new URL('./fixtures/third-party-adapter/', import.meta.url)), join(appDir, 'node_modules', 'stsgate-adapter-parrot'));
mkdirSync(join(appDir, 'node_modules', 'not-an-adapter'));
writeFileSync(join(appDir, 'node_modules', 'not-an-adapter', 'package.json'), JSON.stringify({ name: 'not-an-adapter', type: 'module', exports: './index.js' }));
writeFileSync(join(appDir, 'node_modules', 'not-an-adapter', 'index.js'), 'export const adapters = [{ kind: "sts", id: "Bad Id" }];\n');
afterAll(() => rmSync(appDir, { recursive: true, force: true }));
const silent = () => pino({ level: 'silent' });

describe('STSGATE_ADAPTERS: adapters installed from npm', () => {
  it('adds the package\'s adapters to the registry: STS_PROVIDER picks one, with its default port', async () => {
    const env = { STSGATE_ADAPTERS: ' stsgate-adapter-parrot ', STS_PROVIDER: 'parrot' };
    const registry = await addAdapterPackages(env, builtinRegistry(), appDir);
    expect(registry.ids('sts')).toContain('parrot');
    const setup = resolveServeSetup(env, registry, silent);
    expect(setup.sts?.id).toBe('parrot');
    expect(setup.port).toBe(6077);
    expect(healthcheckPort(env, registry)).toBe(6077);
  });

  it('a call through the third-party adapter: its transcript, then the caller\'s audio back', async () => {
    const env = { STSGATE_ADAPTERS: 'stsgate-adapter-parrot', STS_PROVIDER: 'parrot', PARROT_GREETING: 'hi there' };
    const setup = resolveServeSetup(env, await addAdapterPackages(env, builtinRegistry(), appDir), silent);
    const gateway = await buildGateway(setup.config, { logger: setup.logger, sts: setup.sts });
    await gateway.app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const speech = readWavAs8k(fixturePath('short'));
      const call = await echoCall(`ws://127.0.0.1:${(gateway.app.server.address() as AddressInfo).port}/`, { uuid: 'parrot-call', speech, trailingSilenceMs: 500, timeoutMs: 3000 });
      expect(call.errors).toEqual([]);
      expect(call.agentAudioMs).toBeGreaterThanOrEqual(call.expectedMs);
    } finally {
      await gateway.app.close();
    }
  });

  it('reports every problem at once: not installed, not a package name, an invalid definition, an id already taken', async () => {
    const env = { STSGATE_ADAPTERS: 'stsgate-adapter-missing,../etc,not-an-adapter' };
    const error = await addAdapterPackages(env, builtinRegistry(), appDir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([
      `STSGATE_ADAPTERS: package "stsgate-adapter-missing" is not installed (looked in ${appDir} and the gateway's node_modules)`,
      'STSGATE_ADAPTERS: "../etc" is not an npm package name',
      'STSGATE_ADAPTERS: package "not-an-adapter" exports an invalid adapter definition (id: must be lower-case letters, digits, ".", "_" or "-")',
    ]);
    const twice = await addAdapterPackages({ STSGATE_ADAPTERS: 'stsgate-adapter-parrot' }, await addAdapterPackages({ STSGATE_ADAPTERS: 'stsgate-adapter-parrot' }, builtinRegistry(), appDir), appDir).catch((e: unknown) => e);
    expect((twice as ConfigError).problems).toEqual(['STSGATE_ADAPTERS: package "stsgate-adapter-parrot" defines sts provider "parrot", which is already taken']);
  });

  it('unset or blank: the built-in adapters only', async () => {
    const before = builtinRegistry().ids('sts');
    expect((await addAdapterPackages({ STSGATE_ADAPTERS: '' }, builtinRegistry(), appDir)).ids('sts')).toEqual(before);
    expect((await addAdapterPackages({}, builtinRegistry(), appDir)).ids('sts')).toEqual(before);
  });
});
