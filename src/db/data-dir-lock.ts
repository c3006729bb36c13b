import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { EmbeddedServerError } from './embedded-server-error.js';

/** Whether a process exists; EPERM means it does, under another account. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const LOCK_TIMEOUT_MS = 60_000;
/** A lock directory without its pid file is a process that died between mkdir and write, or is writing. */
const PIDLESS_LOCK_STALE_MS = 5_000;

/**
 * Runs `work` while holding `<dataDir>/lock`: starting, attaching to and stopping the embedded server
 * are decided under it, so that two rulebook commands never both start (or one stop while the other
 * attaches). mkdir is atomic; a lock whose process is gone is taken over.
 */
export async function withDataDirLock<T>(dataDir: string, work: () => Promise<T>): Promise<T> {
  const lock = path.join(dataDir, 'lock');
  const started = Date.now();
  for (;;) {
    try {
      fs.mkdirSync(lock);
      fs.writeFileSync(path.join(lock, 'pid'), String(process.pid));
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = lockHolder(lock);
    if (holder === 'stale') {
      fs.rmSync(lock, { recursive: true, force: true });
      continue;
    }
    if (Date.now() - started > LOCK_TIMEOUT_MS) {
      throw new EmbeddedServerError(
        `another rulebook process (pid ${holder}) has held ${lock} for a minute; if no rulebook runs, delete that directory`,
      );
    }
    // Held for the few seconds a start or stop takes; polling a file has no event to await.
    await delay(50);
  }
  try {
    return await work();
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}

function lockHolder(lock: string): number | 'stale' | 'unknown' {
  try {
    const pid = Number(fs.readFileSync(path.join(lock, 'pid'), 'utf8'));
    return Number.isInteger(pid) && pid > 0 && processAlive(pid) ? pid : 'stale';
  } catch {
    try {
      return Date.now() - fs.statSync(lock).mtimeMs > PIDLESS_LOCK_STALE_MS ? 'stale' : 'unknown';
    } catch {
      return 'unknown';
    }
  }
}

/**
 * Who uses the embedded server: one file per open database, named `<pid>-<random>`. The last one to
 * close stops the server, whoever started it, so that a command beside `rulebook start` leaves the
 * daemon's server running and the daemon does not stop a server under a running command.
 */
export class ServerClients {
  readonly #dir: string;

  constructor(dataDir: string) {
    this.#dir = path.join(dataDir, 'clients');
  }

  register(): string {
    fs.mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
    const file = path.join(this.#dir, `${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
    fs.writeFileSync(file, '');
    return file;
  }

  unregister(file: string): void {
    fs.rmSync(file, { force: true });
  }

  /** Clients whose process still runs; files of killed processes are removed on the way. */
  live(): number {
    let names: string[];
    try {
      names = fs.readdirSync(this.#dir);
    } catch {
      return 0;
    }
    let count = 0;
    for (const name of names) {
      const pid = Number(name.split('-')[0]);
      if (Number.isInteger(pid) && pid > 0 && processAlive(pid)) count++;
      else fs.rmSync(path.join(this.#dir, name), { force: true });
    }
    return count;
  }
}
