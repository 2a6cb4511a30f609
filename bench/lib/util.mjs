// Small helpers shared by the bench parts (no dependencies beyond Node).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Sorted-copy percentile (nearest rank, p in [0, 100]); NaN for an empty sample. */
export function percentile(sorted, p) {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** p50/p90/p99/max/mean of a numeric sample (sorted in place when it is a typed array copy). */
export function summarize(values, digits = 2) {
  const sorted = Float64Array.from(values).sort();
  const n = sorted.length;
  let sum = 0;
  for (const v of sorted) sum += v;
  const r = (v) => (Number.isFinite(v) ? round(v, digits) : null);
  return {
    n,
    mean: r(n === 0 ? Number.NaN : sum / n),
    min: r(n === 0 ? Number.NaN : sorted[0]),
    p50: r(percentile(sorted, 50)),
    p90: r(percentile(sorted, 90)),
    p99: r(percentile(sorted, 99)),
    max: r(n === 0 ? Number.NaN : sorted[n - 1]),
  };
}

export function median(values) {
  return percentile(Float64Array.from(values).sort(), 50);
}

export function round(value, digits = 2) {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Absolute path of an executable on PATH, or undefined. */
export function which(name) {
  try {
    return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

let clockTicks;
/** Clock ticks per second for /proc/<pid>/stat times (USER_HZ). */
export function clockTicksPerSecond() {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** utime and stime of a process (all its threads), in ms, from /proc/<pid>/stat: { userMs, systemMs }. */
export function procCpuSplitMs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may contain spaces: parse after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); utime is field 14, stime field 15.
  const ticks = clockTicksPerSecond();
  return { userMs: (Number(fields[11]) * 1000) / ticks, systemMs: (Number(fields[12]) * 1000) / ticks };
}

/** utime + stime of a process (all its threads), in ms, from /proc/<pid>/stat. */
export function procCpuMs(pid) {
  const { userMs, systemMs } = procCpuSplitMs(pid);
  return userMs + systemMs;
}

/** Resident set size of a process in KiB (VmRSS from /proc/<pid>/status). */
export function procRssKb(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  return match ? Number(match[1]) : Number.NaN;
}

/** The CPU affinity list of a process as printed by taskset (e.g. "0,1" or "0-1"), or undefined. */
export function affinityOf(pid) {
  if (which('taskset') === undefined) return undefined;
  try {
    const out = execFileSync('taskset', ['-c', '-p', String(pid)], { encoding: 'utf8' });
    return out.slice(out.lastIndexOf(':') + 1).trim();
  } catch {
    return undefined;
  }
}

/** Set the CPU affinity of every thread of a process; returns false if taskset is missing or fails. */
export function setAffinity(pid, cpuList) {
  if (which('taskset') === undefined) return false;
  try {
    execFileSync('taskset', ['-a', '-c', '-p', cpuList, String(pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Per-CPU jiffies from /proc/stat: { cpu0: { busy, idle, softirq, steal, total }, ... } (busy excludes idle/iowait). */
export function cpuTimes() {
  const out = {};
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const match = /^(cpu\d+)\s+(.*)$/.exec(line);
    if (!match) continue;
    const [user, nice, system, idle, iowait, irq, softirq, steal] = match[2].split(/\s+/).map(Number);
    const total = user + nice + system + idle + iowait + irq + softirq + (steal ?? 0);
    out[match[1]] = { busy: total - idle - iowait, idle: idle + iowait, softirq: softirq + irq, steal: steal ?? 0, total };
  }
  return out;
}

/** Per-CPU percentages between two cpuTimes() snapshots. */
export function cpuPercentBetween(before, after) {
  const out = {};
  for (const [cpu, a] of Object.entries(after)) {
    const b = before[cpu];
    if (b === undefined) continue;
    const total = a.total - b.total;
    if (total <= 0) continue;
    out[cpu] = {
      busy: round(((a.busy - b.busy) / total) * 100, 1),
      irq: round(((a.softirq - b.softirq) / total) * 100, 1),
      steal: round(((a.steal - b.steal) / total) * 100, 1),
    };
  }
  return out;
}

/**
 * Busy % per core over a step's window (on the gateway's core, `otherThanGateway` is the work that disturbs its
 * numbers), and the bench process's own CPU and event-loop delay.
 */
export function windowLoad({ machine, gatewayPinned, gatewayCpuMs, benchCpu, loopDelay, windowMs }) {
  return {
    machineCpuPercent: Object.fromEntries(
      Object.entries(machine).map(([cpu, m]) => [cpu, cpu === 'cpu1' && gatewayPinned ? { ...m, otherThanGateway: round(m.busy - (gatewayCpuMs / windowMs) * 100, 1) } : m]),
    ),
    benchProcess: {
      cpuPercentOfOneCore: round(((benchCpu.user + benchCpu.system) / 1000 / windowMs) * 100, 1),
      eventLoopDelayP99Ms: round(loopDelay.percentile(99) / 1e6, 2),
      eventLoopDelayMaxMs: round(loopDelay.max / 1e6, 2),
    },
  };
}
