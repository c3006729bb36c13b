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
/** A lock directory without its pid file (older rulebooks) is a process that died between mkdir and write, or is writing. */
const PIDLESS_LOCK_STALE_MS = 5_000;

/**
 * Runs `work` while holding `<dataDir>/lock`: starting, attaching to and stopping the embedded server
 * are decided under it, so that two rulebook commands never both start (or one stop while the other
 * attaches). The lock appears by renaming a directory that already holds the pid, which is atomic and
 * never shows a lock without its owner; a lock whose process is gone is taken over.
 */
export async function withDataDirLock<T>(dataDir: string, work: () => Promise<T>): Promise<T> {
  const lock = path.join(dataDir, 'lock');
  const started = Date.now();
  for (;;) {
    if (acquire(lock)) break;
    const holder = lockHolder(lock);
    if (typeof holder === 'object') {
      takeOver(lock, holder);
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
    // Only our own: had the lock been taken from us as stale, removing it would free another's.
    if (lockPid(lock) === process.pid) fs.rmSync(lock, { recursive: true, force: true });
  }
}

function acquire(lock: string): boolean {
  const fresh = fs.mkdtempSync(`${lock}.new-`);
  try {
    fs.writeFileSync(path.join(fresh, 'pid'), String(process.pid));
    // Fails when the lock exists: it is never empty, so rename cannot replace it.
    fs.renameSync(fresh, lock);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EEXIST' && code !== 'ENOTEMPTY') throw error;
    return false;
  } finally {
    fs.rmSync(fresh, { recursive: true, force: true });
  }
}

/**
 * Moves the stale lock aside, atomically, so that of two processes taking it over only one moves it;
 * the other then moves whatever lock replaced it meanwhile, finds that it is not the stale one, and
 * puts it back.
 */
function takeOver(lock: string, seen: Stale): void {
  const aside = `${lock}.stale-${crypto.randomBytes(4).toString('hex')}`;
  try {
    fs.renameSync(lock, aside);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  const moved = lockPid(aside);
  if (moved !== seen.pid) {
    try {
      fs.renameSync(aside, lock);
      return;
    } catch {
      // a third process took the free lock meanwhile; the one moved aside is lost either way
    }
  }
  fs.rmSync(aside, { recursive: true, force: true });
}

/** A lock to take over: the dead pid it names, undefined when it names none. */
interface Stale {
  readonly pid: number | undefined;
}

function lockPid(lock: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(path.join(lock, 'pid'), 'utf8'));
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function lockHolder(lock: string): number | Stale | 'unknown' {
  const pid = lockPid(lock);
  if (pid !== undefined) return processAlive(pid) ? pid : { pid };
  try {
    // Without a pid: left by an older rulebook that died between mkdir and writing it, or is writing it.
    return Date.now() - fs.statSync(lock).mtimeMs > PIDLESS_LOCK_STALE_MS ? { pid: undefined } : 'unknown';
  } catch {
    return 'unknown';
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
