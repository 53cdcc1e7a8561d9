// Resident memory and CPU time of the Chromium processes a benchmark launched, from /proc (Linux).
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

interface ProcInfo {
  pid: number;
  ppid: number;
  cmdline: string;
}

function procs(): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      // pid (comm) state ppid ...: comm may hold spaces and parentheses; ppid follows the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const cmdline = readFileSync(`/proc/${d}/cmdline`, 'utf8').replace(/\0/g, ' ');
      out.push({ pid: Number(d), ppid, cmdline });
    } catch {
      // The process ended while we looked.
    }
  }
  return out;
}

/** Processes descending from `root` (default: this process). */
function descendants(root = process.pid): ProcInfo[] {
  const all = procs();
  const children = new Map<number, ProcInfo[]>();
  for (const p of all) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p]);
  const found: ProcInfo[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    for (const c of children.get(pid) ?? []) {
      found.push(c);
      stack.push(c.pid);
    }
  }
  return found;
}

/** Renderer processes (`--type=renderer`) descending from `root` (default: this process). */
export function rendererPids(root = process.pid): number[] {
  return descendants(root)
    .filter((c) => c.cmdline.includes('--type=renderer'))
    .map((c) => c.pid)
    .sort((a, b) => a - b);
}

/** Clock ticks per second of /proc's CPU times. */
const TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;

/**
 * CPU time, user and system, of every process descending from `root` (the browser this benchmark
 * launched: its own process, renderers, GPU and utility processes), in milliseconds: the CPU a
 * merge or a floor costs is the difference across it.
 */
export function treeCpuMs(root = process.pid): number {
  return (descendants(root).reduce((n, p) => n + cpuTicks(p.pid), 0) * 1000) / TICKS;
}

/** User + system CPU time of a process, in clock ticks (0 once it is gone). */
function cpuTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15 of stat)
  } catch {
    return 0;
  }
}

/**
 * The renderer process of a page: the one whose CPU time grows most while `busy` keeps the page's
 * main thread spinning. (Playwright does not expose renderer pids; with site isolation a page
 * without iframes has one renderer, which also hosts its dedicated workers.)
 */
export async function pageRenderer(busy: () => Promise<unknown>): Promise<number> {
  const pids = rendererPids();
  const before = new Map(pids.map((p) => [p, cpuTicks(p)]));
  await busy();
  let best = -1;
  let bestDelta = -1;
  for (const p of pids) {
    const d = cpuTicks(p) - before.get(p)!;
    if (d > bestDelta) [best, bestDelta] = [p, d];
  }
  if (best < 0) throw new Error('no renderer process found under this process');
  return best;
}

export function statusKB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

export interface MemorySample {
  /** Highest VmRSS sampled, in MB (2^20 bytes). */
  peakMB: number;
  /** VmRSS when sampling started, in MB. */
  startMB: number;
  samples: number;
}

/** Samples the VmRSS of process `pid` every `everyMs` until stop() is called. */
export function sampleRss(pid: number, everyMs = 50): { stop(): MemorySample } {
  const startKB = statusKB(pid, 'VmRSS');
  let peakKB = startKB;
  let samples = 1;
  const timer = setInterval(() => {
    peakKB = Math.max(peakKB, statusKB(pid, 'VmRSS'));
    samples++;
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      peakKB = Math.max(peakKB, statusKB(pid, 'VmRSS'));
      return { peakMB: peakKB / 1024, startMB: startKB / 1024, samples };
    },
  };
}
