import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import type pg from 'pg';

/**
 * Where the CPU goes during a run, read from /proc (Linux only; elsewhere every figure is NaN):
 * this Node process, the PostgreSQL backends serving the database under test, and the machine.
 */

let ticksPerSecond: number | undefined;

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/**
 * CPU seconds a backend has run, from /proc/<pid>/schedstat (nanoseconds, which waiting for a CPU
 * does not inflate); NaN elsewhere than Linux.
 */
export function backendCpu(pid: number): number {
  try {
    return Number(fs.readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1e9;
  } catch {
    return Number.NaN;
  }
}

/** User + system CPU milliseconds of a process, or undefined if it is gone (or not Linux). */
export function processCpuMs(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm) ": state is field 3, utime 14 and stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicks();
  } catch {
    return undefined;
  }
}

/** Busy and total CPU milliseconds of the whole machine, summed over all CPUs. */
function machineCpuMs(): { busy: number; total: number } {
  try {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const values = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    const total = values.slice(0, 8).reduce((sum, value) => sum + value, 0);
    const idle = (values[3] ?? 0) + (values[4] ?? 0);
    const scale = 1000 / clockTicks();
    return { busy: (total - idle) * scale, total: total * scale };
  } catch {
    return { busy: Number.NaN, total: Number.NaN };
  }
}

export interface CpuSnapshot {
  readonly node: number;
  readonly backends: ReadonlyMap<number, number>;
  readonly machine: { busy: number; total: number };
}

/** CPU used between two snapshots, in milliseconds (machine: the busy fraction of all CPUs). */
export interface CpuUsage {
  readonly node: number;
  readonly postgres: number;
  readonly machineBusy: number;
}

/**
 * Takes a snapshot: this process, and the client backends connected to `control`'s database other
 * than those in `exclude` (the benchmark's own connections).
 */
export async function cpuSnapshot(control: pg.ClientBase, exclude: readonly number[]): Promise<CpuSnapshot> {
  const { rows } = await control.query<{ pid: number }>(
    `select pid from pg_catalog.pg_stat_activity
      where datname = current_database() and backend_type = 'client backend'
        and pid <> pg_backend_pid() and pid <> all($1::int[])`,
    [exclude],
  );
  const backends = new Map<number, number>();
  for (const { pid } of rows) {
    const ms = processCpuMs(pid);
    if (ms !== undefined) backends.set(pid, ms);
  }
  const usage = process.cpuUsage();
  return { node: (usage.user + usage.system) / 1000, backends, machine: machineCpuMs() };
}

export function cpuUsed(before: CpuSnapshot, after: CpuSnapshot): CpuUsage {
  let postgres = 0;
  for (const [pid, ms] of after.backends) postgres += ms - (before.backends.get(pid) ?? 0);
  const total = after.machine.total - before.machine.total;
  return {
    node: after.node - before.node,
    postgres,
    machineBusy: total > 0 ? (after.machine.busy - before.machine.busy) / total : Number.NaN,
  };
}
