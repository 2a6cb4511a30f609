import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { builtinRegistry, resolveServeSetup } from '../src/index.js';

// docker/compose/<provider>.yml are avr-infra's own service blocks with only `image:` changed (a tag of stsgate's
// image: a target of docker/gateway.Dockerfile) and a `healthcheck:` added; test/fixtures/avr-infra holds the
// avr-infra files they mirror, verbatim.
const composeDir = fileURLToPath(new URL('../../../docker/compose/', import.meta.url));
const fixtureDir = fileURLToPath(new URL('./fixtures/avr-infra/', import.meta.url));
const dockerfile = fileURLToPath(new URL('../../../docker/gateway.Dockerfile', import.meta.url));
const AVR_INFRA_COMMIT = '93f608ef6b9ddb1baed6772a7130682cfc81896e';

// The provider each AVR container becomes. avr-sts-speechmatics's block has no LLM key: the deprecated Flow provider.
const SERVES: Record<string, [kind: 'sts' | 'asr' | 'llm' | 'tts', id: string]> = {
  'avr-sts-openai': ['sts', 'openai'],
  'avr-sts-xai': ['sts', 'xai'],
  'avr-sts-speechmatics': ['sts', 'speechmatics-flow'],
  'avr-asr-soniox': ['asr', 'soniox'],
  'avr-tts-soniox': ['tts', 'soniox'],
  'avr-llm-openai': ['llm', 'openai'],
};
const MIRRORS = [
  { file: 'openai.yml', avr: 'docker-compose-openai-realtime.yml', services: ['avr-sts-openai'] },
  { file: 'xai.yml', avr: 'docker-compose-xai.yml', services: ['avr-sts-xai'] },
  { file: 'speechmatics.yml', avr: 'docker-compose-speechmatics.yml', services: ['avr-sts-speechmatics'] },
  { file: 'soniox.yml', avr: 'docker-compose-soniox.yml', services: ['avr-asr-soniox', 'avr-tts-soniox', 'avr-llm-openai'] },
];

type Service = Record<string, unknown> & { image?: string; environment?: string[]; healthcheck?: unknown };
type ComposeFile = { services: Record<string, Service>; networks?: unknown } & Record<string, unknown>;
const read = (path: string) => readFileSync(path, 'utf8');
const load = (path: string) => parse(read(path)) as ComposeFile;
const without = (service: Service, ...keys: string[]) => Object.fromEntries(Object.entries(service).filter(([key]) => !keys.includes(key)));

/** docker/gateway.Dockerfile: target name -> the variables it bakes in. */
function imageTargets(): Map<string, Record<string, string>> {
  const targets = new Map<string, Record<string, string>>();
  let current: Record<string, string> | undefined;
  for (const line of read(dockerfile).split('\n')) {
    const from = /^FROM\s+\S+\s+AS\s+(\S+)/i.exec(line);
    if (from) targets.set(from[1]!, (current = {}));
    const env = /^ENV\s+(\w+)=(\S+)$/.exec(line);
    if (env && current) current[env[1]!] = env[2]!;
  }
  return targets;
}

/** What compose hands the container for a list-form environment, with the operator's .env holding only API keys. */
function containerEnv(environment: string[]): Record<string, string> {
  const operator = (name: string) => (name.endsWith('_API_KEY') ? `${name.toLowerCase()}-from-env` : '');
  const interpolate = (value: string) =>
    value.replace(/\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)/g, (_match, braced: string | undefined, fallback: string | undefined, bare: string | undefined) => {
      const value = operator((braced ?? bare)!);
      return value === '' && fallback !== undefined ? fallback : value;
    });
  return Object.fromEntries(environment.map((entry) => [entry.slice(0, entry.indexOf('=')), interpolate(entry.slice(entry.indexOf('=') + 1))]));
}

describe('docker/compose', () => {
  const files = readdirSync(composeDir).filter((name) => name.endsWith('.yml'));

  it('has one file per mirrored avr-infra provider, and try.yml', () => {
    expect(files.sort()).toEqual([...MIRRORS.map((mirror) => mirror.file), 'try.yml'].sort());
  });

  describe('validates against the Compose Specification schema', () => {
    const schema = JSON.parse(read(`${composeDir}compose-spec.schema.json`)) as { $schema: string };
    // The schema names draft-07 by its https address; Ajv (whose default class is draft-07) knows it by the http one.
    const draft07 = JSON.parse(read(createRequire(import.meta.url).resolve('ajv/dist/refs/json-schema-draft-07.json'))) as object;
    const ajv = new Ajv({ allErrors: true, strict: false });
    if (schema.$schema !== 'http://json-schema.org/draft-07/schema#') ajv.addMetaSchema({ ...draft07, $id: schema.$schema });
    const validate = ajv.compile(schema);
    it.each(files)('%s', (file) => {
      const valid = validate(load(`${composeDir}${file}`));
      expect(validate.errors ?? []).toEqual([]);
      expect(valid).toBe(true);
    });
    it('and the schema rejects a broken file', () => {
      expect(validate({ services: { 'avr-sts-openai': { image: 'stsgate/gateway:openai', restart: 'always', environmnet: ['PORT=6030'] } } })).toBe(false);
      expect(validate({ services: { 'avr-sts-openai': { image: 'stsgate/gateway:openai', environment: 'PORT=6030' } } })).toBe(false);
    });
  });

  const healthcheck = /^HEALTHCHECK\s+(.*?)\s*CMD\s+(\[.*\])\s*$/m.exec(read(dockerfile));
  const targets = imageTargets();

  describe.each(MIRRORS)('$file mirrors avr-infra $avr', ({ file, avr, services }) => {
    const ours = load(`${composeDir}${file}`);
    const theirs = load(`${fixtureDir}${avr}`);

    it("holds avr-infra's service blocks and network, differing only in image and healthcheck", () => {
      expect(Object.keys(ours).sort()).toEqual(['networks', 'services']);
      expect(ours.networks).toEqual(theirs.networks);
      expect(Object.keys(ours.services)).toEqual(services);
      for (const name of services) {
        expect(theirs.services[name], name).toBeDefined();
        expect(without(ours.services[name]!, 'image', 'healthcheck'), name).toEqual(without(theirs.services[name]!, 'image', 'healthcheck'));
        expect(ours.services[name]!.image, name).toMatch(/^stsgate\/gateway:/);
      }
    });

    it("names the avr-infra commit and file it mirrors, the fixture's", () => {
      expect(read(`${fixtureDir}${avr}`).split('\n')[0]).toContain(`avr-infra@${AVR_INFRA_COMMIT}:${avr}`);
      expect(read(`${composeDir}${file}`)).toContain(`avr-infra@${AVR_INFRA_COMMIT}:${avr}`);
    });

    it("adds the image's own health check", () => {
      expect(healthcheck).not.toBeNull();
      const options = Object.fromEntries([...healthcheck![1]!.matchAll(/--([\w-]+)=(\S+)/g)].map(([, key, value]) => [key!.replace('-', '_'), value]));
      for (const name of services) {
        expect(ours.services[name]!.healthcheck, name).toEqual({ test: ['CMD', ...(JSON.parse(healthcheck![2]!) as string[])], ...options });
      }
    });

    it.each(services)('%s: its image serves the block on the port AVR Core calls, which is also our default', (name) => {
      const service = ours.services[name]!;
      const tag = service.image!.slice('stsgate/gateway:'.length);
      const baked = targets.get(tag);
      expect(baked, `gateway.Dockerfile has no target ${tag}`).toBeDefined();
      const env = containerEnv(service.environment ?? []);
      const silent = () => pino({ level: 'silent' });
      const setup = resolveServeSetup({ ...baked, ...env }, builtinRegistry(), silent);
      const [kind, id] = SERVES[name]!;
      expect({ sts: setup.sts?.id, asr: setup.asr?.id, llm: setup.llm?.id, tts: setup.tts?.id }).toEqual({ sts: undefined, asr: undefined, llm: undefined, tts: undefined, [kind]: id });
      expect(String(setup.port)).toBe(env.PORT);
      const { PORT: _port, ...withoutPort } = env;
      expect(resolveServeSetup({ ...baked, ...withoutPort }, builtinRegistry(), silent).port).toBe(setup.port);
      // avr-core's URL for this service, in the same avr-infra file
      const core = (theirs.services['avr-core']!.environment ?? []).filter((entry) => entry.includes(`//${name}:`));
      expect(core.length, `avr-core calls ${name}`).toBe(1);
      expect(core[0]).toContain(`//${name}:${setup.port}`);
    });
  });

  it('try.yml runs the loopback provider on the port it publishes, with the health check', () => {
    const service = load(`${composeDir}try.yml`).services.stsgate!;
    const env = containerEnv(service.environment ?? []);
    const setup = resolveServeSetup(env, builtinRegistry(), () => pino({ level: 'silent' }));
    expect(setup.sts?.id).toBe('loopback');
    expect(service.ports).toEqual([`${setup.port}:${setup.port}`]);
    expect(service.build).toEqual({ context: '../..', dockerfile: 'docker/gateway.Dockerfile' });
    expect((service.healthcheck as { test: string[] }).test).toEqual(['CMD', ...(JSON.parse(healthcheck![2]!) as string[])]);
  });
});
