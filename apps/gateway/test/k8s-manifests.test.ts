/**
 * deploy/k8s: every YAML document is validated against the Kubernetes OpenAPI schemas (kubernetes-models; KEDA's
 * CRD schema from @kubernetes-models/keda; a kind without a schema fails), and the invariants that make scale-in
 * safe are checked: the grace period covers SHUTDOWN_GRACE_MS + preStop, readiness is /health (503 while
 * draining), liveness is not, the pod is locked down, and the autoscalers scale on a metric a live gateway exports.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { ConfigMap, Secret, Service } from 'kubernetes-models/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1';
import { buildGateway, builtinRegistry, gatewayConfig, type Gateway } from '../src/index.js';

const K8S = fileURLToPath(new URL('../../../deploy/k8s/', import.meta.url));
const BASE = join(K8S, 'base');

interface Validatable {
  validate(): void;
}
type Model = new (data: never) => Validatable;
/** Every apiVersion/kind allowed under deploy/k8s and the schema that validates it. */
const MODELS: Readonly<Record<string, Model>> = {
  'v1/ConfigMap': ConfigMap as unknown as Model,
  'v1/Secret': Secret as unknown as Model,
  'v1/Service': Service as unknown as Model,
  'apps/v1/Deployment': Deployment as unknown as Model,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler as unknown as Model,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget as unknown as Model,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy as unknown as Model,
  'keda.sh/v1alpha1/ScaledObject': ScaledObject as unknown as Model,
};
const KUSTOMIZATION = 'kustomize.config.k8s.io/v1beta1/Kustomization';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- manifests are checked field by field below
type Doc = Record<string, any>;
interface Manifest {
  readonly file: string;
  readonly doc: Doc;
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return yamlFiles(path);
    return /\.ya?ml$/.test(name) ? [path] : [];
  });
}

function loadManifests(): Manifest[] {
  return yamlFiles(K8S).flatMap((path) =>
    parseAllDocuments(readFileSync(path, 'utf8')).flatMap((document) => {
      if (document.errors.length > 0) throw new Error(`${relative(K8S, path)}: ${document.errors.map((e) => e.message).join('; ')}`);
      const doc = document.toJS() as Doc | null;
      return doc === null ? [] : [{ file: relative(K8S, path), doc }];
    }),
  );
}

/** Validate one document; the problems (unknown kind, schema errors), empty when it is valid. */
export function validateManifest(doc: Doc): string[] {
  const key = `${String(doc.apiVersion)}/${String(doc.kind)}`;
  if (key === KUSTOMIZATION) return Array.isArray(doc.resources) ? [] : ['a Kustomization without resources'];
  const model = MODELS[key];
  if (model === undefined) return [`no schema for ${key}`];
  try {
    new model(doc as never).validate();
    return [];
  } catch (error) {
    return [error instanceof Error ? error.message : String(error)];
  }
}

const manifests = loadManifests();
const find = (kind: string): Doc => {
  const found = manifests.filter((m) => m.doc.kind === kind && m.file.startsWith('base/'));
  expect(found, kind).toHaveLength(1);
  return found[0]!.doc;
};
const seconds = (value: string) => Number(value) / 1000;

describe('deploy/k8s manifests', () => {
  it('every document validates against the Kubernetes (or KEDA CRD) schema', () => {
    expect(manifests.length).toBeGreaterThanOrEqual(10);
    const problems = manifests.flatMap(({ file, doc }) => validateManifest(doc).map((p) => `${file} ${String(doc.kind)}: ${p}`));
    expect(problems).toEqual([]);
  });

  it('a broken manifest is rejected: an unknown kind, a misspelled required field, a wrong type', () => {
    expect(validateManifest({ apiVersion: 'example.com/v1', kind: 'Widget' })).toEqual(['no schema for example.com/v1/Widget']);
    const misspelled = structuredClone(find('Deployment'));
    misspelled.spec.selektor = misspelled.spec.selector;
    delete misspelled.spec.selector;
    expect(validateManifest(misspelled).join()).toMatch(/selector/);
    const wrongType = structuredClone(find('Deployment'));
    wrongType.spec.template.spec.containers[0].ports[0].containerPort = 'six thousand';
    expect(validateManifest(wrongType).join()).toMatch(/containerPort/);
    const hpa = structuredClone(find('HorizontalPodAutoscaler'));
    hpa.spec.metrics[0].pods.metric = { nmae: 'stsgate_active_calls' };
    expect(validateManifest(hpa)).not.toEqual([]);
    const scaledObject = structuredClone(manifests.find((m) => m.doc.kind === 'ScaledObject')!.doc);
    delete scaledObject.spec.scaleTargetRef;
    expect(validateManifest(scaledObject)).not.toEqual([]);
    // The upstream schemas allow unknown fields (as the API server's non-strict decoding does): a typo in an
    // optional field is not a schema error. The invariant tests below read the fields that matter by name.
    const typo = structuredClone(find('Deployment'));
    typo.spec.template.spec.terminationGracePeriodSecond = 30;
    expect(validateManifest(typo)).toEqual([]);
  });

  it('kustomization.yaml lists every manifest of base/ except the secret example', () => {
    const kustomization = parseYaml(readFileSync(join(BASE, 'kustomization.yaml'), 'utf8')) as Doc;
    const inBase = readdirSync(BASE).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml' && f !== 'secret.example.yaml');
    expect([...(kustomization.resources as string[])].sort()).toEqual(inBase.sort());
  });

  it('the grace period outlasts SHUTDOWN_GRACE_MS + preStop, so scale-in never cuts a call', () => {
    const config = find('ConfigMap');
    const pod = find('Deployment').spec.template.spec;
    const [container] = pod.containers;
    const preStop = container.lifecycle.preStop.exec.command as string[];
    expect(preStop[0]).toBe('sleep');
    const preStopSeconds = Number(preStop[1]);
    expect(preStopSeconds).toBeGreaterThanOrEqual(3);
    const grace = seconds(config.data.SHUTDOWN_GRACE_MS);
    expect(grace).toBeGreaterThan(0);
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(grace + preStopSeconds);
    // The container reads the ConfigMap (and the Secret) as its environment.
    expect(container.envFrom).toEqual([{ configMapRef: { name: config.metadata.name } }, { secretRef: { name: 'stsgate-secrets' } }]);
  });

  it('readiness is /health (503 while draining); liveness does not use /health', () => {
    const [container] = find('Deployment').spec.template.spec.containers;
    expect(container.readinessProbe.httpGet.path).toBe('/health');
    expect(container.livenessProbe.httpGet).toBeUndefined();
    expect(container.livenessProbe.tcpSocket).toBeDefined();
  });

  it('the pod runs as non-root with a read-only root filesystem, no privilege escalation, no capabilities', () => {
    const pod = find('Deployment').spec.template.spec;
    const [container] = pod.containers;
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: 'RuntimeDefault' } });
    expect(container.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, privileged: false, capabilities: { drop: ['ALL'] } });
    expect(container.volumeMounts).toContainEqual({ name: 'tmp', mountPath: '/tmp' });
    expect(container.resources.requests).toBeDefined();
    expect(container.resources.limits).toBeDefined();
  });

  it('Service, PDB, HPA and MAX_CALLS agree', () => {
    const service = find('Service');
    expect(service.spec.ports).toEqual([{ name: 'avr-sts', port: 6030, targetPort: 'avr-sts', protocol: 'TCP' }]);
    const [container] = find('Deployment').spec.template.spec.containers;
    expect(container.ports).toContainEqual({ name: 'avr-sts', containerPort: 6030, protocol: 'TCP' });
    expect(find('PodDisruptionBudget').spec.maxUnavailable).toBe(1);
    const hpa = find('HorizontalPodAutoscaler');
    const target = Number(hpa.spec.metrics[0].pods.target.averageValue);
    const maxCalls = Number(find('ConfigMap').data.MAX_CALLS);
    expect(target).toBeGreaterThan(0);
    expect(maxCalls).toBeGreaterThan(target); // headroom above the target while new pods start
    const scaledObject = manifests.find((m) => m.doc.kind === 'ScaledObject')!.doc;
    expect(Number(scaledObject.spec.triggers[0].metadata.threshold)).toBe(target);
  });
});

describe('deploy/k8s autoscaling against a live /metrics', () => {
  let gateway: Gateway | undefined;
  let known: Set<string>;

  beforeAll(async () => {
    const logger = pino({ level: 'silent' });
    const definition = builtinRegistry().get('sts', 'loopback');
    if (definition === undefined) throw new Error('loopback provider missing from the registry');
    gateway = await buildGateway(gatewayConfig(), { sts: { id: 'loopback', adapter: definition.fromEnv({}, { logger }) }, logger });
    await gateway.app.listen({ host: '127.0.0.1', port: 0 });
    const port = (gateway.app.server.address() as AddressInfo).port;
    const scrape = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    known = new Set([...scrape.matchAll(/^# TYPE (\S+) gauge$/gm)].map((m) => m[1]!));
  }, 30_000);

  afterAll(async () => {
    await gateway?.app.close();
  });

  it('the HPA, the prometheus-adapter rule and the KEDA query use a gauge the gateway exports', () => {
    const metric = find('HorizontalPodAutoscaler').spec.metrics[0].pods.metric.name as string;
    expect(metric).toBe('stsgate_active_calls');
    expect(known).toContain(metric);
    const adapter = manifests.find((m) => m.file.startsWith('prometheus-adapter/'))!.doc;
    const rules = (parseYaml(adapter.data['config.yaml'] as string) as Doc).rules as Doc[];
    expect(rules.map((r) => r.name.as)).toContain(metric);
    expect(rules.every((r) => known.has(String(r.seriesQuery).split('{')[0]!))).toBe(true);
    const scaledObject = manifests.find((m) => m.doc.kind === 'ScaledObject')!.doc;
    expect(scaledObject.spec.triggers[0].type).toBe('prometheus');
    expect(scaledObject.spec.triggers[0].metadata.query).toMatch(new RegExp(`^sum\\(${metric}\\{`));
  });
});
