// bench/baseline.json: the summary numbers of one commit on one hardware class, committed, so that a run shows each
// number as a ratio to it (a regression is visible as a ratio, not an absolute time that depends on the machine).
// bench/run.mjs adds `ratioToBaseline` to its document and prints the table on stderr.
//
// Write it from a run's document (only on the hardware class the targets name: 2 cores, nothing else busy):
//   node bench/lib/baseline.mjs write [bench/results/latest.json] [--keys=scale,gatewayPath]
// It keeps every number of the chosen summary sections (default: all of that run's), arrays left out.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const BASELINE_FILE = fileURLToPath(new URL('../baseline.json', import.meta.url));

/** `{ 'a.b.c': number }` for every finite number in `value` (arrays and booleans are not compared). */
export function flattenNumbers(value, prefix = '', out = {}) {
  if (typeof value === 'number') {
    if (Number.isFinite(value)) out[prefix] = value;
  } else if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [key, child] of Object.entries(value)) flattenNumbers(child, prefix === '' ? key : `${prefix}.${key}`, out);
  }
  return out;
}

export function readBaseline(file = BASELINE_FILE) {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * Each baseline number this run also has: `{ value, baseline, ratio }` (ratio = value / baseline; null when the baseline
 * is 0). `machineDiffers`: the CPU model or count is not the baseline's, so ratios compare hardware too.
 */
export function compareToBaseline(summary, machine, baseline) {
  const now = flattenNumbers(summary);
  const values = {};
  const missing = [];
  for (const [path, base] of Object.entries(baseline.values)) {
    const value = now[path];
    if (value === undefined) {
      missing.push(path);
      continue;
    }
    values[path] = { value, baseline: base, ratio: base === 0 ? null : Math.round((value / base) * 1000) / 1000 };
  }
  const machineDiffers = baseline.machine?.cpus?.model !== machine.cpus.model || baseline.machine?.cpus?.count !== machine.cpus.count;
  return { baselineCommit: baseline.commit, baselineCreatedAt: baseline.createdAt, machineDiffers, values, notInThisRun: missing.length };
}

/**
 * The comparison as a short text table (only numbers this run has): one row per number name (a path's last segment),
 * one column per section (the rest of the path, e.g. `scale.steps.pcmu_500`), each cell `now (ratio)`.
 */
export function formatRatioTable(comparison) {
  const entries = Object.entries(comparison.values);
  if (entries.length === 0) return '';
  const columns = [];
  const rows = new Map();
  for (const [path, r] of entries) {
    const cut = path.lastIndexOf('.');
    const column = path.slice(0, cut);
    if (!columns.includes(column)) columns.push(column);
    const name = path.slice(cut + 1);
    if (!rows.has(name)) rows.set(name, new Map());
    rows.get(name).set(column, r);
  }
  // Column labels without the path all columns share.
  const shared = columns.reduce((prefix, column) => {
    while (!`${column}.`.startsWith(prefix)) prefix = prefix.slice(0, prefix.lastIndexOf('.', prefix.length - 2) + 1);
    return prefix;
  }, `${columns[0]}.`);
  const labels = columns.map((column) => `${column}.`.slice(shared.length, -1) || column);
  const num = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2));
  const cell = (r) => (r === undefined ? '' : `${num(r.value)} (${r.ratio === null ? '-' : r.ratio.toFixed(2)})`);
  const nameWidth = Math.max(...[...rows.keys()].map((name) => name.length));
  const widths = columns.map((column, i) => Math.max(labels[i].length, ...[...rows.values()].map((row) => cell(row.get(column)).length)));
  const line = (first, cells) => `${first.padEnd(nameWidth)}  ${cells.map((c, i) => c.padStart(widths[i])).join('  ')}`.trimEnd();
  return `${[
    `${shared}*: now (ratio to bench/baseline.json: commit ${String(comparison.baselineCommit).slice(0, 10)}, ${comparison.baselineCreatedAt}; > 1 = more)${comparison.machineDiffers ? ' -- DIFFERENT CPU: ratios compare hardware too' : ''}`,
    line('', labels),
    ...[...rows.entries()].map(([name, row]) => line(name, columns.map((column) => cell(row.get(column))))),
  ].join('\n')}\n`;
}

function writeBaseline(resultsFile, keys) {
  const document = JSON.parse(readFileSync(resultsFile, 'utf8'));
  const sections = keys ?? Object.keys(document.summary);
  const values = {};
  for (const key of sections) {
    if (document.summary[key] === undefined) throw new Error(`summary.${key} is not in ${resultsFile}`);
    Object.assign(values, flattenNumbers(document.summary[key], key));
  }
  const baseline = {
    note: 'Summary numbers of one bench run on the hardware class of the targets; bench/run.mjs prints each run as a ratio to them (see bench/README.md). Rewrite with: node bench/lib/baseline.mjs write <results.json>',
    commit: document.git?.commit ?? null,
    dirty: document.git?.dirty ?? null,
    createdAt: document.timestamp,
    machine: { cpus: document.machine.cpus, node: document.machine.node, cpuBusyPercentBeforeStart: document.machine.cpuBusyPercentBeforeStart },
    quick: document.quick,
    values,
  };
  writeFileSync(BASELINE_FILE, `${JSON.stringify(baseline, null, 2)}\n`);
  process.stderr.write(`wrote ${BASELINE_FILE}: ${Object.keys(values).length} numbers from ${resultsFile}\n`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [command, file] = process.argv.slice(2).filter((arg) => !arg.startsWith('--'));
  if (command !== 'write') throw new Error('usage: node bench/lib/baseline.mjs write [results.json] [--keys=scale,gatewayPath]');
  const keys = process.argv.find((arg) => arg.startsWith('--keys='))?.slice('--keys='.length).split(',');
  writeBaseline(file ?? fileURLToPath(new URL('../results/latest.json', import.meta.url)), keys);
}
