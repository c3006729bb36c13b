import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const CANDIDATES = ['/usr/bin/pgbench', '/usr/lib/postgresql/15/bin/pgbench'];

/** The pgbench binary: $PGBENCH, then the usual Debian locations, then any /usr/lib/postgresql/<v>. */
export function findPgbench(): string {
  const candidates = [...(process.env.PGBENCH ? [process.env.PGBENCH] : []), ...CANDIDATES];
  try {
    for (const version of fs.readdirSync('/usr/lib/postgresql').sort().reverse()) {
      candidates.push(path.join('/usr/lib/postgresql', version, 'bin', 'pgbench'));
    }
  } catch {
    // no /usr/lib/postgresql
  }
  for (const candidate of candidates) {
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // try the next one
    }
  }
  throw new Error(
    `pgbench not found (looked at ${candidates.join(', ')}). The benchmarks drive load with pgbench: ` +
      'install it (Debian/Ubuntu: apt-get install postgresql-client or postgresql-contrib) or set PGBENCH=/path/to/pgbench.',
  );
}

export interface PgbenchOptions {
  readonly pgbench: string;
  /** postgres://user:password@host:port/database */
  readonly url: string;
  readonly scriptPath: string;
  readonly clients: number;
  readonly seconds: number;
}

export interface PgbenchResult {
  /** Transactions per second, without initial connection time. */
  readonly tps: number;
  /** Transactions actually processed. */
  readonly transactions: number;
}

const running = new Set<ChildProcess>();

/** Kills the pgbench processes this module started (used when the run is interrupted). */
export function killPgbench(): void {
  for (const child of running) child.kill('SIGTERM');
}

export function parsePgbenchOutput(output: string): PgbenchResult {
  const tps = /^tps = ([\d.]+)/m.exec(output);
  const transactions = /^number of transactions actually processed: (\d+)/m.exec(output);
  if (!tps?.[1] || !transactions?.[1])
    throw new Error(`cannot find "tps = " in pgbench's output:\n${output}`);
  return { tps: Number(tps[1]), transactions: Number(transactions[1]) };
}

/** `pgbench -n -f script -c N -j min(2, N) -T secs`. */
export async function runPgbench(options: PgbenchOptions): Promise<PgbenchResult> {
  const url = new URL(options.url);
  const args = [
    '-n',
    '-f',
    options.scriptPath,
    '-c',
    String(options.clients),
    '-j',
    String(Math.min(2, options.clients)),
    '-T',
    String(options.seconds),
    '-h',
    url.hostname,
    '-p',
    url.port || '5432',
    '-U',
    decodeURIComponent(url.username),
    decodeURIComponent(url.pathname.slice(1)),
  ];
  const child = spawn(options.pgbench, args, {
    env: { ...process.env, PGPASSWORD: decodeURIComponent(url.password) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (exitCode, exitSignal) => resolve([exitCode, exitSignal]));
  }).finally(() => running.delete(child));
  if (signal) throw new Error(`pgbench was stopped by ${signal}`);
  if (code !== 0) {
    throw new Error(
      `pgbench ${args.join(' ')} exited with ${code}:\n${stderr.slice(-2000)}${stdout.slice(-2000)}`,
    );
  }
  return parsePgbenchOutput(stdout);
}
