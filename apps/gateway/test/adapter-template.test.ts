// docs/adapter-guide.md, "Writing an ASR adapter from the template", end to end: `pnpm create:adapter` copies
// templates/asr-adapter under a new name, and the copy is an ASR provider a gateway loads with STSGATE_ADAPTERS and
// selects with ASR_PROVIDER, serving AVR's HTTP ASR against the Soniox emulator (the protocol the template speaks).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { FIXTURE_TEXT, concatPcm, fixturePath, readWavAs8k, silence, startSonioxSttEmulator } from '@stsgate/testkit';
import { addAdapterPackages, buildGateway, builtinRegistry, resolveServeSetup } from '../src/index.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const script = join(root, 'scripts/create-adapter.mjs');
const scratch = mkdtempSync(join(tmpdir(), 'stsgate-create-adapter-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Runs the script as `node scripts/create-adapter.mjs ...args` from the repository root. */
function create(...args: string[]) {
  const env = { ...process.env, npm_lifecycle_event: '' };
  const run = spawnSync(process.execPath, [script, ...args], { cwd: root, env, encoding: 'utf8' });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** Every file below `dir`, relative, sorted. */
function listFiles(dir: string, prefix = ''): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((entry) => (entry.isDirectory() ? listFiles(join(dir, entry.name), `${prefix}${entry.name}/`) : [`${prefix}${entry.name}`]))
    .sort();
}

const TEMPLATE_NAMES = /example-asr|exampleAsr|ExampleAsr|EXAMPLE_ASR|Example ASR/;

describe('pnpm create:adapter', () => {
  it('copies the template outside the workspace: renamed everywhere, real version ranges, nothing installed or built', () => {
    const target = join(scratch, 'acme-stt');
    const run = create('acme-stt', '--dir', target);
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('created stsgate-adapter-acme-stt (ASR_PROVIDER=acme-stt, ACME_STT_* variables)');
    const template = join(root, 'templates/asr-adapter');
    const expected = listFiles(template).filter((file) => !/^(node_modules|dist|\.turbo)\//.test(file));
    expect(listFiles(target)).toEqual(expected);
    expect(expected).toEqual(expect.arrayContaining(['package.json', 'src/asr.ts', 'src/wire.ts', 'src/mapping.ts', 'src/index.ts', 'test/conformance.test.ts']));
    for (const file of expected) expect(readFileSync(join(target, file), 'utf8'), file).not.toMatch(TEMPLATE_NAMES);

    const manifest = JSON.parse(readFileSync(join(target, 'package.json'), 'utf8')) as { name: string; dependencies: Record<string, string>; devDependencies: Record<string, string> };
    const coreVersion = (JSON.parse(readFileSync(join(root, 'packages/core/package.json'), 'utf8')) as { version: string }).version;
    expect(manifest.name).toBe('stsgate-adapter-acme-stt');
    expect(manifest.dependencies['@stsgate/core']).toBe(`^${coreVersion}`);
    expect(manifest.devDependencies['@stsgate/testkit']).toMatch(/^\^\d+\.\d+\.\d+/);
    expect(readFileSync(join(target, 'package.json'), 'utf8')).not.toContain('workspace:');

    const asr = readFileSync(join(target, 'src/asr.ts'), 'utf8');
    expect(asr).toContain("export const PROVIDER = 'acme-stt';");
    expect(asr).toContain('export function createAcmeStt(options: AcmeSttOptions): AsrAdapter');
    expect(readFileSync(join(target, 'src/index.ts'), 'utf8')).toContain("ACME_STT_API_KEY: envSecret('ACME_STT_API_KEY')");
  });

  it('defaults to packages/<name>, in the workspace, where workspace:^ stays (dry run: nothing written)', () => {
    const run = create('acme', '--dry-run');
    expect(run.status).toBe(0);
    const plan = JSON.parse(run.stdout) as { target: string; insideWorkspace: boolean; package: string; envPrefix: string; dependencies: Record<string, string> };
    expect(plan).toMatchObject({ target: join(root, 'packages/acme'), insideWorkspace: true, package: 'stsgate-adapter-acme', envPrefix: 'ACME_' });
    expect(plan.dependencies['@stsgate/core']).toBe('workspace:^');
    expect(existsSync(join(root, 'packages/acme'))).toBe(false);
  });

  it('refuses a bad name, the template\'s own name, and a folder that is not empty (exit status 2, nothing written)', () => {
    const taken = join(scratch, 'taken');
    mkdirSync(taken);
    writeFileSync(join(taken, 'notes.txt'), 'mine\n');
    for (const args of [['Acme'], ['acme_stt'], ['example-asr'], [], ['acme-stt', '--dir', taken]]) {
      const run = create(...args);
      expect(run.status, args.join(' ')).toBe(2);
      expect(run.stderr).toMatch(/^create-adapter: .+\nusage: pnpm create:adapter/);
    }
    expect(readdirSync(taken)).toEqual(['notes.txt']);
  });

  it('the copy is a provider: STSGATE_ADAPTERS loads it, ASR_PROVIDER=acme-stt serves AVR\'s HTTP ASR with it', async () => {
    const target = join(scratch, 'loaded');
    expect(create('acme-stt', '--dir', target).status).toBe(0);
    // Installed as npm would install it: its dependencies (the template's), and a build (here its source, through vitest).
    symlinkSync(join(root, 'templates/asr-adapter/node_modules'), join(target, 'node_modules'));
    mkdirSync(join(target, 'dist'));
    writeFileSync(join(target, 'dist/index.js'), "export * from '../src/index.ts';\n");
    const app = join(scratch, 'app');
    mkdirSync(join(app, 'node_modules'), { recursive: true });
    symlinkSync(target, join(app, 'node_modules/stsgate-adapter-acme-stt'));

    const key = 'acme-template-key';
    const stt = await startSonioxSttEmulator({ apiKey: key, requireHeaderAuth: true });
    const env = { STSGATE_ADAPTERS: 'stsgate-adapter-acme-stt', ASR_PROVIDER: 'acme-stt', ACME_STT_API_KEY: key, ACME_STT_URL: stt.url, LOG_LEVEL: 'silent' };
    const registry = await addAdapterPackages(env, builtinRegistry(), app);
    expect(registry.ids('asr')).toContain('acme-stt');
    const setup = resolveServeSetup(env, registry, () => pino({ level: 'silent' }));
    expect(setup.asr?.id).toBe('acme-stt');
    const gateway = await buildGateway(setup.config, { logger: setup.logger, asr: setup.asr });
    await gateway.app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const pcm = concatPcm(readWavAs8k(fixturePath('greeting')), silence(1200), readWavAs8k(fixturePath('question')), silence(1200));
      // The whole call in one body: the adapter holds the audio until its connection is ready, then catches up.
      const response = await fetch(`http://127.0.0.1:${(gateway.app.server.address() as AddressInfo).port}/speech-to-text-stream`, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream', 'x-uuid': 'template-call' },
        body: Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength),
      });
      expect(response.status).toBe(200);
      expect(await response.text()).toBe(`${FIXTURE_TEXT['greeting.wav']}${FIXTURE_TEXT['question.wav']}`);
      expect(stt.connections[0]?.authVia).toBe('header');
    } finally {
      await gateway.app.close();
      await stt.close();
    }
  });
});
