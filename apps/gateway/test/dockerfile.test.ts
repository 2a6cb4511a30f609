import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { validate, ValidationSeverity } from 'dockerfile-utils';
import { describe, expect, it } from 'vitest';
import { builtinRegistry } from '../src/index.js';

// docker/gateway.Dockerfile: a build stage, a runtime stage, and one final stage per provider image (hadolint cannot
// run here; dockerfile-utils' validator, every rule at least a warning, lints it instead).
const dockerfile = readFileSync(fileURLToPath(new URL('../../../docker/gateway.Dockerfile', import.meta.url)), 'utf8');

/** Each stage's base, its own instructions, and those inherited from stages it builds on. */
function stages(): Map<string, { from: string; lines: string[] }> {
  const found = new Map<string, { from: string; lines: string[] }>();
  let current: string[] | undefined;
  for (const line of dockerfile.split('\n')) {
    const from = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i.exec(line);
    if (from) {
      current = [];
      found.set(from[2] ?? `#${found.size}`, { from: from[1]!, lines: current });
    } else if (/^([A-Z]+\s|\s+\S)/.test(line)) current?.push(line); // instructions and their continuation lines
  }
  return found;
}
function inherited(name: string): string[] {
  const stage = stages().get(name);
  if (stage === undefined) return [];
  return [...inherited(stage.from), ...stage.lines];
}

const KIND_VARIABLE = { sts: 'STS_PROVIDER', asr: 'ASR_PROVIDER', llm: 'LLM_PROVIDER', tts: 'TTS_PROVIDER' } as const;
// target -> the provider it bakes in
const TARGETS: Record<string, [kind: keyof typeof KIND_VARIABLE, id: string]> = {
  openai: ['sts', 'openai'],
  xai: ['sts', 'xai'],
  speechmatics: ['sts', 'speechmatics'],
  'speechmatics-flow': ['sts', 'speechmatics-flow'],
  soniox: ['sts', 'soniox'],
  cascade: ['sts', 'cascade'],
  'asr-soniox': ['asr', 'soniox'],
  'tts-soniox': ['tts', 'soniox'],
  'llm-openai': ['llm', 'openai'],
};

// Targets whose provider runs the Silero VAD (onnxruntime-node): the cascades, and loopback in the default.
const NEEDS_VAD = new Set(['speechmatics', 'soniox', 'cascade', 'default']);

describe('docker/gateway.Dockerfile', () => {
  it('lints clean: no error or warning from dockerfile-utils', () => {
    const all = ValidationSeverity.WARNING;
    const diagnostics = validate(dockerfile, {
      deprecatedMaintainer: all,
      directiveCasing: all,
      emptyContinuationLine: all,
      instructionCasing: all,
      instructionCmdMultiple: all,
      instructionEntrypointMultiple: all,
      instructionHealthcheckMultiple: all,
      instructionJSONInSingleQuotes: all,
      instructionWorkdirRelative: all,
    });
    // DiagnosticSeverity: 1 error, 2 warning
    expect(diagnostics.filter((diagnostic) => diagnostic.severity === undefined || diagnostic.severity <= 2)).toEqual([]);
  });

  it('has one final stage per target, the all-in-one default last', () => {
    const names = [...stages().keys()];
    expect(names).toEqual(['build', 'runtime-base', 'runtime', 'runtime-novad', ...Object.keys(TARGETS), 'default']);
    for (const name of names.slice(4)) expect(stages().get(name)!.from, name).toBe(NEEDS_VAD.has(name) ? 'runtime' : 'runtime-novad');
  });

  it.each(Object.entries(TARGETS))('%s bakes its provider in and exposes its default port', (target, [kind, id]) => {
    const definition = builtinRegistry().get(kind, id);
    expect(definition?.defaultPort, `${kind}:${id}`).toBeDefined();
    const own = stages().get(target)!.lines;
    expect(own.filter((line) => line.startsWith('ENV '))).toEqual([`ENV ${KIND_VARIABLE[kind]}=${id}`]);
    expect(own.filter((line) => line.startsWith('EXPOSE '))).toEqual([`EXPOSE ${definition!.defaultPort}`]);
  });

  it('the default bakes no provider (loopback) and exposes every default port', () => {
    const own = stages().get('default')!.lines;
    expect(own.filter((line) => line.startsWith('ENV '))).toEqual([]);
    const exposed = own.filter((line) => line.startsWith('EXPOSE ')).flatMap((line) => line.split(/\s+/).slice(1).map(Number));
    const ports = new Set(Object.values(TARGETS).map(([kind, id]) => builtinRegistry().get(kind, id)!.defaultPort));
    ports.add(builtinRegistry().get('sts', 'loopback')!.defaultPort);
    for (const port of ports) expect(exposed, String(port)).toContain(port);
  });

  it.each([...Object.keys(TARGETS), 'default'])('%s runs as node in AVR\'s layout, with a health check and serve', (target) => {
    const lines = inherited(target);
    expect(lines.filter((line) => line.startsWith('USER ')).at(-1)).toBe('USER node');
    expect(lines).toContain('WORKDIR /usr/src/app');
    expect(lines.join('\n')).toMatch(/mkdir -p tools avr_tools/);
    expect(lines.filter((line) => line.startsWith('HEALTHCHECK ')).at(-1)).toMatch(/CMD \["node", "gateway\/dist\/cli\.js", "healthcheck"\]$/);
    expect(lines.filter((line) => line.startsWith('CMD ')).at(-1)).toBe('CMD ["node", "--single-threaded-gc", "gateway/dist/cli.js", "serve"]');
  });

  it('starts serve with Node options this Node accepts (a misspelt one stops the container at start-up)', () => {
    const command = JSON.parse(inherited('default').filter((line) => line.startsWith('CMD ')).at(-1)!.slice('CMD '.length)) as string[];
    const nodeOptions = command.slice(1, command.indexOf('gateway/dist/cli.js'));
    expect(nodeOptions).toEqual(['--single-threaded-gc']);
    const run = spawnSync(process.execPath, [...nodeOptions, '-e', 'process.stdout.write("ok")'], { encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(run.stdout).toBe('ok');
    expect(run.status).toBe(0);
  });
});
