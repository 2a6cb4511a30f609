/**
 * The Grafana dashboard and the Prometheus alert rules in ops/ use only metrics a live gateway exports: every
 * expression is parsed with the official PromQL grammar (lezer-promql), the metric name of each selector is checked
 * against the metric families of a real `/metrics` scrape (loopback provider, process metrics on, one short call).
 */
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { parse as parseYaml } from 'yaml';
import { EqlSingle, Identifier, LabelMatchers, LabelName, MatchOp, MetricName, QuotedLabelMatcher, QuotedLabelName, StringLiteral, UnquotedLabelMatcher, VectorSelector, parser } from '@prometheus-io/lezer-promql';
import type { SyntaxNode } from '@lezer/common';
import { concatPcm, fixturePath, readWavAs8k, silence, simulateCall } from '@stsgate/testkit';
import { buildGateway, builtinRegistry, gatewayConfig, type Gateway } from '../src/index.js';

const OPS = fileURLToPath(new URL('../../../ops/', import.meta.url));
const DASHBOARD_FILE = `${OPS}grafana/stsgate-dashboard.json`;
const RULES_FILE = `${OPS}prometheus/stsgate-alerts.yml`;
/** Series Prometheus itself adds to every target, not exported by the gateway. */
const SYNTHETIC = new Set(['up', 'scrape_duration_seconds', 'scrape_samples_scraped', 'scrape_samples_post_metric_relabeling', 'scrape_series_added']);

// ---- PromQL --------------------------------------------------------------------------------------

interface ParsedExpr {
  readonly metrics: readonly string[];
  readonly problems: readonly string[];
}

const unquote = (literal: string): string => (literal.startsWith('"') ? (JSON.parse(literal) as string) : literal.slice(1, -1));

/** Grafana's variables that stand for a duration; `$job`-style ones only appear inside label matcher strings. */
function substituteGrafanaVariables(expr: string): string {
  return expr.replace(/\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}/g, '5m');
}

/** The metric names an expression selects, and what is wrong with it (syntax errors, selectors without a fixed name). */
function parsePromQL(expr: string): ParsedExpr {
  const metrics: string[] = [];
  const problems: string[] = [];
  const text = (node: SyntaxNode) => expr.slice(node.from, node.to);
  parser.parse(expr).iterate({
    enter: (ref) => {
      if (ref.type.isError) problems.push(`syntax error at ${ref.from}: …${expr.slice(Math.max(0, ref.from - 20), ref.from + 20)}…`);
      if (ref.type.id !== VectorSelector) return;
      const selector = ref.node;
      const named = selector.getChild(Identifier) ?? selector.getChild(MetricName);
      if (named !== null) {
        metrics.push(text(named));
        return;
      }
      // `{"name", ...}` (quoted name) or `{__name__="name", ...}`.
      let found = false;
      for (let m = selector.getChild(LabelMatchers)?.firstChild; m; m = m.nextSibling) {
        if (m.type.id === QuotedLabelName) {
          metrics.push(unquote(text(m)));
          found = true;
        } else if (m.type.id === UnquotedLabelMatcher || m.type.id === QuotedLabelMatcher) {
          const label = m.getChild(LabelName) ?? m.getChild(QuotedLabelName);
          if (label === null || (label.type.id === LabelName ? text(label) : unquote(text(label))) !== '__name__') continue;
          const value = m.getChild(StringLiteral);
          if (m.getChild(MatchOp)?.getChild(EqlSingle) && value !== null) {
            metrics.push(unquote(text(value)));
            found = true;
          } else problems.push(`a __name__ matcher other than = cannot be checked: ${text(m)}`);
        }
      }
      if (!found) problems.push(`selector without a metric name: ${text(selector)}`);
    },
  });
  return { metrics, problems };
}

// ---- the files -----------------------------------------------------------------------------------

interface Panel {
  readonly id?: number;
  readonly type?: string;
  readonly title?: string;
  readonly targets?: readonly { readonly expr?: string }[];
  readonly panels?: readonly Panel[];
}
interface Dashboard {
  readonly schemaVersion: number;
  readonly panels: readonly Panel[];
  readonly templating: { readonly list: readonly { readonly name: string; readonly type: string; readonly query?: unknown }[] };
}
interface Rule {
  readonly alert?: string;
  readonly record?: string;
  readonly expr?: unknown;
  readonly for?: unknown;
  readonly labels?: Record<string, unknown>;
  readonly annotations?: Record<string, unknown>;
}
interface RuleFile {
  readonly groups: readonly { readonly name: string; readonly rules: readonly Rule[] }[];
}

const allPanels = (panels: readonly Panel[]): Panel[] => panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);

/** Every PromQL expression of a dashboard (panel targets and query variables), with where it is. */
function dashboardExprs(dashboard: Dashboard): { where: string; expr: string }[] {
  const found: { where: string; expr: string }[] = [];
  for (const panel of allPanels(dashboard.panels)) {
    for (const [i, target] of (panel.targets ?? []).entries()) {
      if (target.expr !== undefined) found.push({ where: `panel ${panel.id} "${panel.title}" target ${i}`, expr: substituteGrafanaVariables(target.expr) });
    }
  }
  for (const variable of dashboard.templating.list) {
    if (variable.type !== 'query') continue;
    const query = typeof variable.query === 'string' ? variable.query : (variable.query as { query?: string } | undefined)?.query;
    if (query === undefined) continue;
    // Grafana's `label_values(<selector>, <label>)` wraps a PromQL selector; anything else is PromQL itself.
    const inner = /^\s*label_values\(\s*(.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$/s.exec(query)?.[1] ?? query;
    found.push({ where: `variable ${variable.name}`, expr: substituteGrafanaVariables(inner) });
  }
  return found;
}

const ruleExprs = (rules: RuleFile) =>
  rules.groups.flatMap((g) => g.rules.map((r) => ({ where: `rule ${g.name}/${r.alert ?? r.record}`, expr: String(r.expr) })));

/** `where: problem` for every expression that does not parse or selects a metric not in `known`. */
function checkExprs(exprs: readonly { where: string; expr: string }[], known: ReadonlySet<string>): string[] {
  const problems: string[] = [];
  for (const { where, expr } of exprs) {
    const parsed = parsePromQL(expr);
    for (const p of parsed.problems) problems.push(`${where}: ${p}`);
    for (const m of parsed.metrics) if (!known.has(m) && !SYNTHETIC.has(m)) problems.push(`${where}: unknown metric ${m}`);
    if (parsed.metrics.length === 0) problems.push(`${where}: uses no metric`);
  }
  return problems;
}

/** Metric names a Prometheus text exposition offers: each family (TYPE line), plus a histogram's and a summary's series. */
function exposedNames(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const [, name, type] of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    if (name === undefined) continue;
    names.add(name);
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(name + suffix);
    if (type === 'summary') for (const suffix of ['_sum', '_count']) names.add(name + suffix);
  }
  return names;
}

// ---- a live gateway ------------------------------------------------------------------------------

const logger = pino({ level: 'silent' });
let gateway: Gateway;
let scrape: string;
let known: Set<string>;
const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')) as Dashboard;
const rules = parseYaml(readFileSync(RULES_FILE, 'utf8')) as RuleFile;

beforeAll(async () => {
  const definition = builtinRegistry().get('sts', 'loopback');
  if (definition === undefined) throw new Error('loopback provider missing from the registry');
  const adapter = definition.fromEnv({}, { logger });
  gateway = await buildGateway(gatewayConfig(), { sts: { id: 'loopback', adapter }, logger, collectProcessMetrics: true });
  await gateway.app.listen({ host: '127.0.0.1', port: 0 });
  const port = (gateway.app.server.address() as AddressInfo).port;
  // One short call, so the labelled series (calls by outcome, response latency, provider connect) exist too.
  const report = await simulateCall({ url: `ws://127.0.0.1:${port}/`, input: concatPcm(readWavAs8k(fixturePath('greeting')), silence(200)), tailMs: 2500 });
  expect(report.errors).toEqual([]);
  const response = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(response.status).toBe(200);
  scrape = await response.text();
  known = exposedNames(scrape);
}, 30_000);

afterAll(async () => {
  await gateway?.app.close();
});

describe('ops/ dashboards and alerts against a live /metrics', () => {
  it('the scrape has the gateway, cascade and process metric families and the call left labelled series', () => {
    for (const name of ['stsgate_active_calls', 'stsgate_turn_llm_first_token_seconds_bucket', 'stsgate_process_cpu_seconds_total', 'stsgate_nodejs_eventloop_lag_p99_seconds']) {
      expect(known).toContain(name);
    }
    expect(scrape).toMatch(/^stsgate_calls_total\{provider="loopback",outcome="[a-z_]+"\} 1$/m);
    expect(scrape).toMatch(/^stsgate_response_latency_seconds_count\{provider="loopback"\} [1-9]/m);
  });

  it('every metric of the dashboard exists and every expression parses', () => {
    const exprs = dashboardExprs(dashboard);
    expect(exprs.length).toBeGreaterThan(20);
    expect(checkExprs(exprs, known)).toEqual([]);
  });

  it('every metric of the alert rules exists and every expression parses', () => {
    const exprs = ruleExprs(rules);
    expect(exprs.length).toBeGreaterThanOrEqual(8);
    expect(checkExprs(exprs, known)).toEqual([]);
  });

  it('flags a misspelled metric, a syntax error and an unsubstituted variable (the check can fail)', () => {
    expect(checkExprs([{ where: 'x', expr: 'sum(rate(stsgate_call_total[5m]))' }], known)).toEqual(['x: unknown metric stsgate_call_total']);
    expect(checkExprs([{ where: 'x', expr: 'histogram_quantile(0.95, sum by (le) (rate(stsgate_response_latency_seconds_bucket[5m]))' }], known)).not.toEqual([]);
    expect(checkExprs([{ where: 'x', expr: 'rate(stsgate_frames_in_total[$__foo])' }], known)).not.toEqual([]);
    expect(parsePromQL('{__name__="stsgate_active_calls", job="a"} + {"stsgate_frames_in_total"}').metrics).toEqual(['stsgate_active_calls', 'stsgate_frames_in_total']);
    expect(parsePromQL('{__name__=~"stsgate_.+"}').problems).not.toEqual([]);
  });

  it('every alert rule has an expression, a for, a severity and a summary', () => {
    const alerts = rules.groups.flatMap((g) => g.rules);
    for (const rule of alerts) {
      expect(rule.alert, JSON.stringify(rule)).toMatch(/^[A-Z][A-Za-z0-9]+$/);
      expect(rule.for, rule.alert).toMatch(/^\d+[smh]$/);
      expect(['critical', 'warning', 'info'], rule.alert).toContain(rule.labels?.severity);
      expect(typeof rule.annotations?.summary, rule.alert).toBe('string');
      expect(typeof rule.annotations?.description, rule.alert).toBe('string');
    }
    expect(new Set(alerts.map((r) => r.alert)).size).toBe(alerts.length);
  });

  it('the dashboard has unique panel ids, a Prometheus datasource variable and job/instance variables', () => {
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(39);
    const ids = allPanels(dashboard.panels).map((p) => p.id);
    expect(ids.every((id) => typeof id === 'number')).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    const variables = new Map(dashboard.templating.list.map((v) => [v.name, v]));
    expect(variables.get('datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    expect(variables.get('job')?.type).toBe('query');
    expect(variables.get('instance')?.type).toBe('query');
    for (const panel of allPanels(dashboard.panels)) if (panel.type !== 'row') expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
  });
});
