import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { processAlive } from '../../src/db/data-dir-lock.js';
import { runningServer, startEmbeddedServer, type EmbeddedServer } from '../../src/db/embedded-server.js';
import { packageRoot } from '../../src/package-root.js';
import { freePort } from './free-port.js';

/**
 * An embedded PostgreSQL for one test or bench run, in a temporary directory. As root its cluster
 * lives under /var/lib/rulebook/clusters/, where nothing would ever remove it: a run removes its own
 * at its end, also when it exits early, and at its start stops and removes what a killed earlier run of
 * this checkout left (each run notes its directories in .rulebook/scratch-servers/ of the checkout).
 */
export interface ScratchServer {
  readonly server: EmbeddedServer;
  /** Stops the server and removes its directories. Safe to call twice. */
  remove(): Promise<void>;
}

interface RunRecord {
  readonly pid: number;
  readonly dir: string;
  /** Known once the server started; until then read from the run's directory. */
  readonly clusterDir?: string;
}

const STOP_TIMEOUT_MS = 30_000;

function recordsDir(): string {
  return path.join(packageRoot(), '.rulebook', 'scratch-servers');
}

/** The run's cluster: where its pointer file says (root's, under <system dir>/clusters/<name>/pgdata), else in it. */
function clusterDirOf(record: RunRecord): string {
  if (record.clusterDir) return record.clusterDir;
  try {
    return fs.readFileSync(path.join(record.dir, 'cluster-location'), 'utf8').trim();
  } catch {
    return path.join(record.dir, 'pgdata');
  }
}

function removeDirs(record: RunRecord): void {
  const clusterDir = clusterDirOf(record);
  fs.rmSync(record.dir, { recursive: true, force: true });
  if (!clusterDir.startsWith(record.dir + path.sep) && path.basename(clusterDir) === 'pgdata') {
    fs.rmSync(path.dirname(clusterDir), { recursive: true, force: true });
  }
}

async function stopLeftover(record: RunRecord): Promise<void> {
  const running = runningServer(clusterDirOf(record));
  if (running) {
    // SIGINT is PostgreSQL's fast shutdown.
    process.kill(running.pid, 'SIGINT');
    const deadline = Date.now() + STOP_TIMEOUT_MS;
    while (processAlive(running.pid) && Date.now() < deadline) await delay(50);
    if (processAlive(running.pid)) process.kill(running.pid, 'SIGKILL');
  }
  removeDirs(record);
}

/** Stops and removes the servers of runs of this checkout whose process is gone; returns their directories. */
export async function removeLeftoverServers(prefix: string): Promise<string[]> {
  let names: string[];
  try {
    names = fs.readdirSync(recordsDir()).filter((name) => name.startsWith(`${prefix}-`));
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const file = path.join(recordsDir(), name);
    let record: RunRecord;
    try {
      record = JSON.parse(fs.readFileSync(file, 'utf8')) as RunRecord;
    } catch {
      fs.rmSync(file, { force: true }); // half-written by a run killed while writing it
      continue;
    }
    if (processAlive(record.pid)) continue; // a run going on now
    const clusterDir = clusterDirOf(record);
    await stopLeftover(record);
    fs.rmSync(file, { force: true });
    removed.push(clusterDir);
  }
  return removed;
}

/**
 * Starts a scratch server named `<prefix>-...` (rulebook-test-pg, rulebook-bench-pg), after removing
 * the leftovers of earlier runs with the same prefix.
 */
export async function startScratchServer(
  prefix: string,
  options: { settings?: Record<string, string>; onLog?: (message: string) => void } = {},
): Promise<ScratchServer> {
  for (const clusterDir of await removeLeftoverServers(prefix)) {
    console.error(`${prefix}: stopped and removed ${clusterDir}, left by an earlier run that was killed`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
  const recordFile = path.join(recordsDir(), `${prefix}-${process.pid}-${path.basename(dir)}.json`);
  let record: RunRecord = { pid: process.pid, dir };
  // Before the start: a run killed during initdb leaves a cluster too.
  fs.mkdirSync(recordsDir(), { recursive: true });
  fs.writeFileSync(recordFile, JSON.stringify(record));
  const removeOnExit = () => {
    // An exit without remove(): the server gets a fast shutdown; its files are the next run's to remove.
    const running = runningServer(clusterDirOf(record));
    if (running) {
      try {
        process.kill(running.pid, 'SIGINT');
      } catch {
        // already gone
      }
      return;
    }
    removeDirs(record);
    fs.rmSync(recordFile, { force: true });
  };
  let server: EmbeddedServer;
  try {
    server = await startEmbeddedServer({ dir, port: await freePort(), ...options });
  } catch (error) {
    await stopLeftover(record).catch(() => {});
    fs.rmSync(recordFile, { force: true });
    throw error;
  }
  record = { ...record, clusterDir: server.clusterDir };
  fs.writeFileSync(recordFile, JSON.stringify(record));
  process.once('exit', removeOnExit);
  let removed: Promise<void> | undefined;
  return {
    server,
    remove: () =>
      (removed ??= (async () => {
        try {
          await server.stop();
        } finally {
          removeDirs(record);
          fs.rmSync(recordFile, { force: true });
          process.removeListener('exit', removeOnExit);
        }
      })()),
  };
}
