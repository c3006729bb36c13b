import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { ensureCliBuilt, runRulebook, spawnRulebook, type DaemonProcess } from '../support/daemon-process.js';
import { TestRoles, type LoginRole } from '../support/roles.js';

// docs/privileges.md tells a DBA to run the daemon as a login role of its own, a member of
// rulebook_daemon, which may create nothing in the database. `rulebook start` migrates first, and
// that failed for such a role with "permission denied for database" before the daemon ever ran.

let db: TestDatabase;
let roles: TestRoles;
let worker: LoginRole;
let stranger: LoginRole;
const running: DaemonProcess[] = [];

beforeAll(async () => {
  ensureCliBuilt();
  db = await createTestDatabase();
  roles = new TestRoles(db);
  worker = await roles.login('worker', 'grant rulebook_daemon to %I');
  stranger = await roles.login('stranger');
});

afterAll(async () => {
  for (const daemon of running) {
    if (daemon.child.exitCode === null && daemon.child.signalCode === null) {
      daemon.child.kill('SIGKILL');
      await daemon.exited();
    }
  }
  await roles.endPools();
  await db.drop();
  await roles.dropRoles();
});

describe("the daemon's own login role, a member of rulebook_daemon", () => {
  it('is refused CREATE on the database, as the docs set it up', async () => {
    const [privileges] = await worker.query<{ database: boolean; workflow: boolean }>(
      `select has_database_privilege(current_database(), 'create') as database,
              has_schema_privilege('workflow', 'create') as workflow`,
    );
    expect(privileges).toEqual({ database: false, workflow: false });
  });

  it('starts the daemon on a database whose migrations are all applied, and stops on SIGTERM', async () => {
    const daemon = spawnRulebook(['start', '--no-http'], { DATABASE_URL: worker.url });
    running.push(daemon);
    await daemon.waitForLog('engine started');
    daemon.child.kill('SIGTERM');
    expect(await daemon.exited()).toEqual({ code: 0, signal: null });
    expect(daemon.stderr()).toBe('');
  });

  it('runs `rulebook migrate` as a no-op that changes nothing', async () => {
    const run = await runRulebook(['migrate'], { DATABASE_URL: worker.url });
    expect(run).toMatchObject({ code: 0, stdout: 'rulebook: database is up to date\n', stderr: '' });
  });

  it('is told which migrations are pending and who must apply them, and applies nothing', async () => {
    // As if sql/ held a migration newer than the database: the latest one is forgotten.
    const [latest] = await db.query<{ id: number; name: string; hash: string; executed_at: Date }>(
      `delete from workflow.migrations where id = (select max(id) from workflow.migrations) returning *`,
    );
    try {
      const [{ owner }] = (await db.query<{ owner: string }>(
        `select pg_get_userbyid(nspowner) as owner from pg_namespace where nspname = 'workflow'`,
      )) as [{ owner: string }];
      const run = await runRulebook(['start', '--no-http'], { DATABASE_URL: worker.url });
      expect(run.code).toBe(1);
      const fileName = `${String(latest!.id).padStart(6, '0')}_${latest!.name}.sql`;
      expect(run.stderr).toBe(
        `rulebook: ${worker.name} may not change the schema workflow, and a migration is pending (${fileName}): run \`rulebook migrate\` as ${owner}, the owner of workflow, then start again (docs/privileges.md)\n`,
      );
      expect(
        await db.query(`select count(*)::int as n from workflow.migrations where id = $1`, [latest!.id]),
      ).toEqual([{ n: 0 }]);
    } finally {
      await db.query(
        `insert into workflow.migrations (id, name, hash, executed_at) values ($1, $2, $3, $4)`,
        [latest!.id, latest!.name, latest!.hash, latest!.executed_at],
      );
    }
  });
});

describe('a login role in none of the rulebook roles', () => {
  it('is told to join rulebook_daemon or rulebook_admin', async () => {
    const run = await runRulebook(['start', '--no-http'], { DATABASE_URL: stranger.url });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(
      `rulebook: ${stranger.name} may not use the schema workflow in database ${db.name}: make it a member of rulebook_daemon (to run \`rulebook start\`) or rulebook_admin`,
    );
  });

  it('is told which role the operator commands need', async () => {
    const run = await runRulebook(['status'], { DATABASE_URL: stranger.url });
    expect(run).toMatchObject({
      code: 1,
      stdout: '',
      stderr:
        "rulebook: permission denied for schema workflow: the role in DATABASE_URL lacks a privilege; rulebook's commands need a member of rulebook_admin (docs/privileges.md)\n",
    });
  });

  it('is told to migrate as the database owner when rulebook is not installed', async () => {
    const empty = await createTestDatabase({ migrated: false });
    try {
      const url = new URL(empty.url);
      url.username = stranger.name;
      url.password = new URL(stranger.url).password;
      const run = await runRulebook(['migrate'], { DATABASE_URL: url.toString() });
      expect(run.code).toBe(1);
      expect(run.stderr).toBe(
        `rulebook: ${stranger.name} may not create the schema workflow in database ${empty.name}: run \`rulebook migrate\` as the database's owner or another role with CREATE on it (docs/privileges.md)\n`,
      );
      expect(
        await empty.query(`select count(*)::int as n from pg_namespace where nspname = 'workflow'`),
      ).toEqual([{ n: 0 }]);
    } finally {
      await empty.drop();
    }
  });
});

describe('a DBA in rulebook_admin registering a table of another owner', () => {
  it('needs USAGE on its schema besides TRIGGER on it, the two grants docs/privileges.md lists', async () => {
    const owner = await roles.login('owner', 'create schema shop authorization %I');
    const dba = await roles.login('dba', 'grant rulebook_admin to %I');
    await owner.query(`create table shop.orders (id int primary key, status text)`);
    await owner.query(`grant trigger on shop.orders to rulebook_admin`);
    await expect(dba.query(`select workflow.register_entity('shop.orders')`)).rejects.toMatchObject({
      code: '42501',
      message: 'permission denied for schema shop',
    });
    await owner.query(`grant usage on schema shop to rulebook_admin`);
    await dba.query(`select workflow.register_entity('shop.orders')`);
    await owner.query(`insert into shop.orders values (1, 'new')`);
    expect(
      await db.query(`select tgname from pg_trigger where tgrelid = 'shop.orders'::regclass order by 1`),
    ).toHaveLength(3);
    await db.query(`delete from workflow.entities where schema_name = 'shop'`);
    await owner.query(`drop schema shop cascade`);
  });
});
