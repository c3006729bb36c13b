import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Heartbeat } from '../src/heartbeat.js';
import { createLogger } from '../src/logger.js';
import { listDaemons } from '../src/operations/status.js';
import { packageRoot } from '../src/package-root.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { type DaemonProcess, ensureCliBuilt, spawnRulebook } from './support/daemon-process.js';
import { TestRoles, type LoginRole } from './support/roles.js';
import { waitFor } from './support/wait.js';

// An operator's question "which daemons run, and which went away?", answered by workflow.daemons:
// each daemon records itself at start, on every heartbeat and at a clean stop, as the daemon role.

let db: TestDatabase;
let roles: TestRoles;
let daemonRole: LoginRole;
let adminRole: LoginRole;
const running: DaemonProcess[] = [];
const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
const version = (
  JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }
).version;

beforeAll(async () => {
  ensureCliBuilt();
  db = await createTestDatabase();
  roles = new TestRoles(db);
  daemonRole = await roles.login('hb_daemon', 'grant rulebook_daemon to %I');
  adminRole = await roles.login('hb_admin', 'grant rulebook_admin to %I');
});

afterAll(async () => {
  for (const daemon of running) {
    if (daemon.child.exitCode === null && daemon.child.signalCode === null) daemon.child.kill('SIGKILL');
    await daemon.exited();
  }
  await roles?.endPools();
  await db?.drop();
  await roles?.dropRoles();
});

interface DaemonRow {
  id: string;
  host: string;
  pid: number;
  version: string;
  started_at: Date;
  last_heartbeat_at: Date;
  heartbeat_interval_ms: number;
  stopped_at: Date | null;
}

async function daemonRow(id: string): Promise<DaemonRow | undefined> {
  const [row] = await db.query<DaemonRow>('select * from workflow.daemons where id = $1', [id]);
  return row;
}

describe('Heartbeat', () => {
  it('records the daemon at start, on every beat and at a clean stop, as the daemon role', async () => {
    const heartbeat = new Heartbeat({
      databaseUrl: daemonRole.url,
      logger,
      daemonId: 'hb-one',
      intervalMs: 50,
    });
    await heartbeat.start();
    try {
      const first = (await daemonRow('hb-one'))!;
      expect(first).toMatchObject({
        host: os.hostname(),
        pid: process.pid,
        version,
        heartbeat_interval_ms: 50,
        stopped_at: null,
      });
      // Each beat is its own transaction, so now() moves on.
      await waitFor('a later heartbeat', async () => {
        const row = await daemonRow('hb-one');
        return row && row.last_heartbeat_at > first.last_heartbeat_at;
      });
      expect((await listDaemons(adminRole.pool)).find((d) => d.id === 'hb-one')?.state).toBe('alive');

      // A row deleted under a running daemon comes back with its next beat.
      await db.query(`delete from workflow.daemons where id = 'hb-one'`);
      const back = await waitFor('the row to come back', () => daemonRow('hb-one'));
      expect(back.started_at).toEqual(first.started_at);
    } finally {
      await heartbeat.stop();
    }
    const stopped = (await daemonRow('hb-one'))!;
    expect(stopped.stopped_at).toBeInstanceOf(Date);
    expect((await listDaemons(adminRole.pool)).find((d) => d.id === 'hb-one')?.state).toBe('stopped');
  });

  it('shows a daemon whose heartbeat is older than three intervals as gone', async () => {
    await db.query(
      `insert into workflow.daemons (id, host, pid, version, started_at, last_heartbeat_at, heartbeat_interval_ms)
       values ('hb-late', 'h', 1, 'v', now() - interval '1 minute', now() - interval '1500 milliseconds', 1000),
              ('hb-gone', 'h', 2, 'v', now() - interval '1 minute', now() - interval '3500 milliseconds', 1000)`,
    );
    const states = Object.fromEntries((await listDaemons(adminRole.pool)).map((d) => [d.id, d.state]));
    expect(states).toMatchObject({ 'hb-late': 'alive', 'hb-gone': 'gone' });
  });

  it('forgets daemons stopped or gone for more than a day when a daemon starts', async () => {
    await db.query(
      `insert into workflow.daemons (id, host, pid, version, started_at, last_heartbeat_at, heartbeat_interval_ms, stopped_at)
       values ('old-stopped', 'h', 1, 'v', now() - interval '3 days', now() - interval '2 days', 5000, now() - interval '2 days'),
              ('old-gone', 'h', 2, 'v', now() - interval '3 days', now() - interval '25 hours', 5000, null),
              ('recent-stopped', 'h', 3, 'v', now() - interval '3 hours', now() - interval '1 hour', 5000, now() - interval '1 hour')`,
    );
    const heartbeat = new Heartbeat({
      databaseUrl: daemonRole.url,
      logger,
      daemonId: 'hb-two',
      intervalMs: 5000,
    });
    await heartbeat.start();
    await heartbeat.stop();
    const ids = (await db.query<{ id: string }>('select id from workflow.daemons order by id')).map(
      (r) => r.id,
    );
    expect(ids).toContain('recent-stopped');
    expect(ids).toContain('hb-two');
    expect(ids).not.toContain('old-stopped');
    expect(ids).not.toContain('old-gone');
  });

  it('prunes with its own operators, whatever schemas the calling daemon searches', async () => {
    // integer * interval is not in pg_catalog (float8 * interval is, after a cast), so an exact
    // match in any schema the caller searches (public, where it is writable) would win over it and
    // run the application owner's code as the daemon.
    const app = await roles.login('hb_app', 'create schema hb_app authorization %I');
    await app.query(
      `create function hb_app.times(integer, interval) returns interval language sql immutable
         as $$ select interval '-1000 years' $$`,
    );
    await app.query(
      `create operator hb_app.* (leftarg = integer, rightarg = interval, function = hb_app.times)`,
    );
    await app.query(`grant usage on schema hb_app to public`);
    await db.query(
      `insert into workflow.daemons (id, host, pid, version, heartbeat_interval_ms)
       values ('hb-live', 'h', 9, 'v', 5000)`,
    );
    const client = await daemonRole.pool.connect();
    try {
      await client.query('begin');
      await client.query('set local search_path = hb_app, public');
      const { rows } = await client.query<{ hijacked: boolean }>(
        `select 3 * interval '1 second' < interval '0' as hijacked`,
      );
      expect(rows[0]!.hijacked).toBe(true);
      await client.query('select workflow.prune_daemons()');
      await client.query('commit');
    } finally {
      client.release();
    }
    expect(await daemonRow('hb-live')).toBeDefined();
    await db.query(`delete from workflow.daemons where id = 'hb-live'`);
  });

  it('lets rulebook_admin read workflow.daemons but not write it', async () => {
    expect((await adminRole.query('select id from workflow.daemons')).length).toBeGreaterThan(0);
    for (const statement of [
      `insert into workflow.daemons (id, host, pid, version, heartbeat_interval_ms) values ('fake', 'h', 1, 'v', 1000)`,
      `update workflow.daemons set last_heartbeat_at = now()`,
      `delete from workflow.daemons`,
    ]) {
      await expect(adminRole.query(statement)).rejects.toMatchObject({ code: '42501' });
    }
  });
});

describe('rulebook start and rulebook status', () => {
  async function statusJson(): Promise<{ daemons: { id: string; state: string; pid: number }[] }> {
    const run = spawnRulebook(['status', '--json'], { DATABASE_URL: adminRole.url, LOG_LEVEL: 'silent' });
    const { code } = await run.exited();
    expect(code, run.output()).toBe(0);
    return JSON.parse(run.output()) as { daemons: { id: string; state: string; pid: number }[] };
  }

  function start(): DaemonProcess {
    const daemon = spawnRulebook(['start', '--no-http'], {
      DATABASE_URL: db.url,
      RULEBOOK_HEARTBEAT_INTERVAL_MS: '200',
    });
    running.push(daemon);
    return daemon;
  }

  it('shows a killed daemon as gone, and one stopped by SIGTERM as stopped', async () => {
    const killed = start();
    await killed.waitForLog('engine started');
    const pid = killed.child.pid!;
    expect((await statusJson()).daemons.find((d) => d.pid === pid)?.state).toBe('alive');
    killed.child.kill('SIGKILL');
    await killed.exited();
    await waitFor('the killed daemon to be shown as gone', async () =>
      (await statusJson()).daemons.some((d) => d.pid === pid && d.state === 'gone'),
    );

    const stopped = start();
    await stopped.waitForLog('engine started');
    stopped.child.kill('SIGTERM');
    expect((await stopped.exited()).code).toBe(0);
    const state = (await statusJson()).daemons.find((d) => d.pid === stopped.child.pid);
    expect(state?.state).toBe('stopped');
  });
});
