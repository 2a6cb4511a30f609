// The top of a V8 CPU profile (.cpuprofile: `--cpu-prof`, or the scale bench's `--profile`) as text: the functions
// with the most self time and the most total (inclusive) time, with file:line, and self time per module (a package,
// a Node.js internal area, GC), as percentages of the busy samples (all but `(idle)`): the flame graph's top frames.
//
// Run: node bench/lib/profile-summary.mjs <file.cpuprofile> [--top=25]
import { readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** A readable location: a path relative to the repository, a pnpm package path shortened, node: URLs as they are. */
function location(callFrame) {
  const { url, lineNumber } = callFrame;
  if (url === '') return '';
  let path = url.startsWith('file://') ? fileURLToPath(url) : url;
  if (path.startsWith(ROOT)) path = path.slice(ROOT.length);
  path = path.replace(/^node_modules\/\.pnpm\/[^/]+\/node_modules\//, '');
  return lineNumber >= 0 ? `${path}:${lineNumber + 1}` : path;
}

/** The module a frame's self time is charged to. */
function moduleOf(callFrame) {
  const { url, functionName } = callFrame;
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  if (url.startsWith('node:')) {
    const parts = url.slice('node:'.length).split('/');
    return `node:${parts[0] === 'internal' ? parts.slice(0, 2).join('/') : parts[0]}`;
  }
  const path = url.startsWith('file://') ? fileURLToPath(url) : url;
  const pnpm = /node_modules\/\.pnpm\/[^/]+\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(path);
  if (pnpm !== null) return pnpm[1];
  const own = /\/(packages|apps)\/([^/]+)\//.exec(path.startsWith(ROOT) ? `/${path.slice(ROOT.length)}` : path);
  if (own !== null) return `@stsgate/${own[2]}`;
  return path;
}

function frameKey(callFrame) {
  return `${callFrame.functionName}\u0000${callFrame.url}\u0000${callFrame.lineNumber}\u0000${callFrame.columnNumber}`;
}

/** Self and total samples per function, self samples per module; percentages of the busy samples. */
export function summarizeProfile(profile, { top = 25 } = {}) {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfSamples = new Map();
  for (const id of profile.samples) selfSamples.set(id, (selfSamples.get(id) ?? 0) + 1);
  const totalSamples = profile.samples.length;
  let idleSamples = 0;
  for (const node of profile.nodes) if (node.callFrame.functionName === '(idle)') idleSamples += selfSamples.get(node.id) ?? 0;
  const busy = Math.max(1, totalSamples - idleSamples);

  // Subtree sample counts (children before parents), then each function's total counted once per stack (recursion).
  const rootId = profile.nodes[0].id;
  const order = [];
  const stack = [rootId];
  while (stack.length > 0) {
    const id = stack.pop();
    order.push(id);
    for (const child of nodes.get(id).children ?? []) stack.push(child);
  }
  const subtree = new Map();
  for (let i = order.length - 1; i >= 0; i--) {
    const node = nodes.get(order[i]);
    let sum = selfSamples.get(node.id) ?? 0;
    for (const child of node.children ?? []) sum += subtree.get(child);
    subtree.set(node.id, sum);
  }
  const functions = new Map();
  const entry = (callFrame) => {
    const key = frameKey(callFrame);
    let f = functions.get(key);
    if (f === undefined) {
      f = { name: callFrame.functionName || '(anonymous)', location: location(callFrame), module: moduleOf(callFrame), self: 0, total: 0 };
      functions.set(key, f);
    }
    return f;
  };
  const onStack = new Map();
  const walk = [{ id: rootId, enter: true }];
  while (walk.length > 0) {
    const { id, enter } = walk.pop();
    const node = nodes.get(id);
    const key = frameKey(node.callFrame);
    if (!enter) {
      onStack.set(key, onStack.get(key) - 1);
      continue;
    }
    const f = entry(node.callFrame);
    f.self += selfSamples.get(id) ?? 0;
    if ((onStack.get(key) ?? 0) === 0) f.total += subtree.get(id);
    onStack.set(key, (onStack.get(key) ?? 0) + 1);
    walk.push({ id, enter: false });
    for (const child of node.children ?? []) walk.push({ id: child, enter: true });
  }
  const modules = new Map();
  for (const f of functions.values()) if (f.name !== '(idle)' && f.name !== '(root)') modules.set(f.module, (modules.get(f.module) ?? 0) + f.self);

  const pct = (samples) => Math.round((samples / busy) * 1000) / 10;
  const candidates = [...functions.values()].filter((f) => f.name !== '(idle)' && f.name !== '(root)');
  const row = (f) => ({ selfPercent: pct(f.self), totalPercent: pct(f.total), function: f.name, location: f.location, module: f.module });
  const durationMs = (profile.endTime - profile.startTime) / 1000;
  return {
    durationMs: Math.round(durationMs),
    samples: totalSamples,
    busyPercentOfWall: Math.round((busy / Math.max(1, totalSamples)) * 1000) / 10,
    bySelf: [...candidates].sort((a, b) => b.self - a.self).slice(0, top).map(row),
    byTotal: [...candidates].sort((a, b) => b.total - a.total).slice(0, top).map(row),
    byModule: [...modules.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 15)
      .map(([module, samples]) => ({ module, selfPercent: pct(samples) })),
  };
}

/** The summary as a text report. */
export function formatProfileSummary(summary, title = 'profile') {
  const lines = [
    `${title}: ${(summary.durationMs / 1000).toFixed(1)} s, ${summary.samples} samples, busy ${summary.busyPercentOfWall}% of them; percentages are of the busy samples`,
  ];
  const table = (heading, rows) => {
    lines.push('', heading, '  self%  total%  function  (location) [module]');
    for (const r of rows) lines.push(`${r.selfPercent.toFixed(1).padStart(7)} ${r.totalPercent.toFixed(1).padStart(7)}  ${r.function}  (${r.location}) [${r.module}]`);
  };
  table(`top ${summary.bySelf.length} by self time`, summary.bySelf);
  table(`top ${summary.byTotal.length} by total time`, summary.byTotal);
  lines.push('', 'self time by module', ...summary.byModule.map((m) => `${m.selfPercent.toFixed(1).padStart(7)}  ${m.module}`));
  return `${lines.join('\n')}\n`;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const file = process.argv[2];
  if (file === undefined) throw new Error('usage: node bench/lib/profile-summary.mjs <file.cpuprofile> [--top=25]');
  const top = Number(process.argv.find((arg) => arg.startsWith('--top='))?.slice('--top='.length) ?? 25);
  process.stdout.write(formatProfileSummary(summarizeProfile(JSON.parse(readFileSync(file, 'utf8')), { top }), file));
}
