import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { withDataDirLock } from '../src/db/data-dir-lock.js';
import { startEmbeddedServer, type EmbeddedServer } from '../src/db/embedded-server.js';
import { makeEnterable, serverAccount, type ServerAccount } from '../src/db/postgres-binaries.js';
import { TemporaryDirs, queryOne } from './support/embedded-dirs.js';
import { freePort } from './support/free-port.js';

// What the embedded PostgreSQL's launcher must not do after an unclean stop, a lost data directory,
// or with directories it did not make: attach to or signal a stranger, lose the cluster, chmod or
// delete what is not its own.

const isRoot = process.getuid?.() === 0;
const temporary = new TemporaryDirs();
const strangers: ChildProcess[] = [];

/** Under a 0700 directory, so that as root the cluster goes to the system directory. */
function dataDirectory(): string {
  return path.join(temporary.make('rulebook-embedded-'), 'data');
}

/** The account the server runs as, or this process's own one. */
function account(): ServerAccount {
  return serverAccount() ?? { name: os.userInfo().username, uid: process.getuid!(), gid: process.getgid!() };
}

function passwordOf(server: EmbeddedServer): string {
  return decodeURIComponent(new URL(server.url).password);
}

afterAll(() => {
  for (const child of strangers) child.kill('SIGKILL');
  temporary.removeAll();
});

describe('starting the embedded server', () => {
  it('logs no failed login, refused connection nor unreachable directory', async () => {
    const server = await startEmbeddedServer({
      dir: dataDirectory(),
      port: await freePort(),
      systemDir: temporary.system(),
    });
    await server.stop();
    const log = fs.readFileSync(server.logFile, 'utf8');
    expect(log).toMatch(/database system is ready to accept connections/);
    expect(log).not.toMatch(/password authentication failed|FATAL|could not change directory/);
  });

  it('after an unclean stop, ignores (and never signals) the pid of postmaster.pid when another process has it now', async () => {
    const dir = dataDirectory();
    const systemDir = temporary.system();
    const first = await startEmbeddedServer({ dir, port: await freePort(), systemDir });
    const pidFile = path.join(first.clusterDir, 'postmaster.pid');
    const lines = fs.readFileSync(pidFile, 'utf8').split('\n');
    const owner = fs.statSync(pidFile);
    await first.stop();

    // The pid of a crashed postmaster, since given to a process of the server's own account.
    const { uid, gid } = account();
    const stranger = spawn('sleep', ['300'], { uid, gid, stdio: 'ignore' });
    strangers.push(stranger);
    await new Promise((resolve) => stranger.once('spawn', resolve));
    fs.writeFileSync(pidFile, [String(stranger.pid), ...lines.slice(1)].join('\n'));
    fs.chownSync(pidFile, owner.uid, owner.gid);

    const port = await freePort();
    const second = await startEmbeddedServer({ dir, port, systemDir });
    try {
      expect(second.started).toBe(true);
      expect(new URL(second.url).port).toBe(String(port));
      expect(await queryOne(second.url, 'select 1')).toBe(1);
    } finally {
      await second.stop();
    }
    expect(stranger.exitCode).toBeNull();
    expect(stranger.signalCode).toBeNull();
  }, 120_000);

  it("recovers the password of a relocated cluster from root's copy; with no password anywhere it fails in one line and writes none", async () => {
    const dir = dataDirectory();
    const systemDir = temporary.system();
    const first = await startEmbeddedServer({ dir, port: await freePort(), systemDir });
    const password = passwordOf(first);
    await first.stop();
    const copy = path.join(path.dirname(first.clusterDir), 'password');

    if (isRoot) {
      expect(path.dirname(path.dirname(first.clusterDir))).toBe(path.join(systemDir, 'clusters'));
      const stat = fs.statSync(copy);
      expect([stat.uid, stat.mode & 0o777]).toEqual([0, 0o600]);
      expect(fs.readFileSync(copy, 'utf8').trim()).toBe(password);
      // git clean -fdx in the checkout: the data directory goes, the cluster under systemDir stays.
      fs.rmSync(dir, { recursive: true });
      const again = await startEmbeddedServer({ dir, port: await freePort(), systemDir });
      try {
        expect(again.clusterDir).toBe(first.clusterDir);
        expect(passwordOf(again)).toBe(password);
        expect(await queryOne(again.url, 'select 1')).toBe(1);
      } finally {
        await again.stop();
      }
      expect(fs.readFileSync(path.join(dir, 'password'), 'utf8').trim()).toBe(password);
      fs.rmSync(copy);
    }

    fs.rmSync(path.join(dir, 'password'));
    const lost = startEmbeddedServer({ dir, port: await freePort(), systemDir });
    await expect(lost).rejects.toThrow(
      new RegExp(
        `^the embedded PostgreSQL cannot start: the cluster in ${first.clusterDir} exists but its password is lost \\(no ${dir}/password.*\\); put its password in ${dir}/password, or delete ${first.clusterDir} to start over with an empty database\\. Set DATABASE_URL`,
      ),
    );
    await expect(lost.catch((error: Error) => error.message.includes('\n'))).resolves.toBe(false);
    expect(fs.existsSync(path.join(dir, 'password'))).toBe(false);
    expect(fs.existsSync(copy)).toBe(false);
    expect(fs.existsSync(path.join(first.clusterDir, 'PG_VERSION'))).toBe(true);
  }, 120_000);
});

describe('directories the launcher did not make', () => {
  it('keeps the mode of directories that existed and makes only the missing ones enterable', () => {
    const sticky = temporary.make('rulebook-sticky-');
    fs.chmodSync(sticky, 0o1777);
    const existing = path.join(sticky, 'clusters');
    fs.mkdirSync(existing);
    fs.chmodSync(existing, 0o711);
    const target = path.join(existing, 'made', 'here');
    makeEnterable(account(), sticky, target);
    expect(fs.statSync(sticky).mode & 0o7777).toBe(0o1777);
    expect(fs.statSync(existing).mode & 0o7777).toBe(0o711);
    expect(fs.statSync(path.dirname(target)).mode & 0o7777).toBe(0o755);
    expect(fs.statSync(target).mode & 0o7777).toBe(0o755);
  });

  it('refuses a cluster-location that names a directory outside the system directory, and deletes nothing', async () => {
    const dir = dataDirectory();
    const precious = temporary.make('rulebook-precious-');
    fs.writeFileSync(path.join(precious, 'keep'), 'data');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'cluster-location'), `${precious}\n`);
    const systemDir = temporary.system();
    await expect(startEmbeddedServer({ dir, port: await freePort(), systemDir })).rejects.toThrow(
      `${dir}/cluster-location names "${precious}" as the cluster, which is not ${systemDir}/clusters/<name>/pgdata`,
    );
    expect(fs.readdirSync(precious)).toEqual(['keep']);
  });

  it.runIf(isRoot)(
    'as root, leaves a directory without PG_VERSION that a failed initdb cannot have left',
    async () => {
      const dir = dataDirectory();
      const systemDir = temporary.system();
      const clusterDir = path.join(systemDir, 'clusters', 'other', 'pgdata');
      fs.mkdirSync(clusterDir, { recursive: true });
      fs.writeFileSync(path.join(clusterDir, 'keep'), 'data');
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, 'cluster-location'), `${clusterDir}\n`);
      await expect(startEmbeddedServer({ dir, port: await freePort(), systemDir })).rejects.toThrow(
        `${clusterDir} is no cluster (no PG_VERSION) and not what a failed initdb leaves`,
      );
      expect(fs.readdirSync(clusterDir)).toEqual(['keep']);
    },
    60_000,
  );
});

describe('the data directory lock', () => {
  it('is removed only while it is still ours', async () => {
    const dir = temporary.make('rulebook-lock-');
    const lock = path.join(dir, 'lock');
    const stranger = spawn('sleep', ['300'], { stdio: 'ignore' });
    strangers.push(stranger);
    await new Promise((resolve) => stranger.once('spawn', resolve));
    await withDataDirLock(dir, async () => {
      expect(fs.readFileSync(path.join(lock, 'pid'), 'utf8')).toBe(String(process.pid));
      // Taken over meanwhile (as stale, say): the new holder's lock must survive our finally.
      fs.writeFileSync(path.join(lock, 'pid'), String(stranger.pid));
    });
    expect(fs.readFileSync(path.join(lock, 'pid'), 'utf8')).toBe(String(stranger.pid));
  });

  it('takes over a lock whose process is gone', async () => {
    const dir = temporary.make('rulebook-lock-');
    const gone = spawn('true', { stdio: 'ignore' });
    await new Promise((resolve) => gone.once('exit', resolve));
    fs.mkdirSync(path.join(dir, 'lock'));
    fs.writeFileSync(path.join(dir, 'lock', 'pid'), String(gone.pid));
    expect(
      await withDataDirLock(dir, async () => fs.readFileSync(path.join(dir, 'lock', 'pid'), 'utf8')),
    ).toBe(String(process.pid));
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});
