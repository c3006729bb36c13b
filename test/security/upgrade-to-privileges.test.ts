import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { migrate } from 'postgres-migrations';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateDatabase, migrationsDir } from '../../src/db/migrate.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { createRule } from '../support/rules.js';
import { TestRoles, type LoginRole } from '../support/roles.js';

// An installation that registered tables before migration 000010 gets the new capture for them:
// functions owned by rulebook_capture, filters that no longer block DROP TABLE, and a table whose
// types carry a non-superuser's cast switched off (with its capture removed) instead of a failed
// upgrade.

let db: TestDatabase;
let roles: TestRoles;
let app: LoginRole;
let dir: string;

async function triggersOn(table: string): Promise<number> {
  const [row] = await db.query<{ count: number }>(
    `select count(*)::int as count from pg_trigger where tgrelid = $1::regclass and tgname like 'rulebook_capture_%'`,
    [table],
  );
  return row!.count;
}

beforeAll(async () => {
  db = await createTestDatabase({ migrated: false });
  roles = new TestRoles(db);
  app = await roles.login('app', 'create schema app authorization %I');
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rulebook-migrations-'));
  for (const file of fs.readdirSync(migrationsDir()).filter((name) => name < '000010')) {
    fs.copyFileSync(path.join(migrationsDir(), file), path.join(dir, file));
  }
  const client = new pg.Client({ connectionString: db.url, options: '-c search_path=workflow' });
  await client.connect();
  try {
    await client.query('create schema workflow');
    await migrate({ client }, dir);
  } finally {
    await client.end();
  }
  await app.query(`create type app.status as enum ('new', 'paid')`);
  await app.query(`create table app.safe (id int primary key, name text)`);
  await app.query(`create table app.unsafe (id int primary key, status app.status)`);
  await createRule(db, { name: 'Safe created', entity: 'app.safe', trigger: 'on_create' });
  await createRule(db, { name: 'Unsafe created', entity: 'app.unsafe', trigger: 'on_create' });
  await app.query(
    `create function app.to_json(app.status) returns json language sql as $$ select to_json($1::text) $$`,
  );
  await app.query(`create cast (app.status as json) with function app.to_json(app.status)`);
});

afterAll(async () => {
  fs.rmSync(dir, { recursive: true, force: true });
  await roles.endPools();
  await db.drop();
  await roles.dropRoles();
});

describe('migration 000010 on an installation with registered tables', () => {
  it("fails, changing nothing, when a table's lock is not granted within lock_timeout", async () => {
    // A writer's open transaction on a registered table: the upgrade must neither wait for it
    // without end nor switch its capture off.
    const holder = await app.pool.connect();
    try {
      await holder.query('begin');
      await holder.query('lock table app.safe in row exclusive mode');
      const error = (await migrateDatabase(db.url).then(
        () => undefined,
        (caught: unknown) => caught,
      )) as Error | undefined;
      expect(error, 'the migration should have failed').toBeDefined();
      expect(String(error)).toMatch(/app\.safe is busy; its lock was not granted within lock_timeout/);
    } finally {
      await holder.query('rollback');
      holder.release();
    }
    expect(await db.query(`select name from workflow.migrations where name like '000010%'`)).toEqual([]);
    expect(await db.query(`select name, is_active from workflow.entities order by name`)).toEqual([
      { name: 'safe', is_active: true },
      { name: 'unsafe', is_active: true },
    ]);
    expect(await triggersOn('app.safe')).toBe(3);
    expect(await triggersOn('app.unsafe')).toBe(3);
  });

  it('rewrites their capture, and switches off a table unsafe to capture', async () => {
    expect(await migrateDatabase(db.url)).toContain('000010_privileges.sql');

    const functions = await db.query<{ fn: string; owner: string }>(
      `select oid::regprocedure::text as fn, pg_get_userbyid(proowner) as owner from pg_proc
        where pronamespace = 'workflow'::regnamespace and proname ~ '^capture_[0-9a-f]{32}$|^capture_filter_'
        order by 1`,
    );
    expect(
      functions.filter((row) => /capture_[0-9a-f]{32}\(\)/.test(row.fn)).map((row) => row.owner),
    ).toEqual(['rulebook_capture']);
    expect(
      functions.filter((row) => /capture_filter_[0-9a-f]{32}_/.test(row.fn) && !row.fn.includes('(record')),
    ).toEqual([]);
    expect(functions.filter((row) => /capture_filter_[0-9a-f]{32}_\w+\(record/.test(row.fn))).toHaveLength(6);

    await app.query(`insert into app.safe values (1, 'kept')`);
    await app.query(`insert into app.unsafe values (1, 'new')`);
    expect(
      await db.query(`select new_row from workflow.events where operation = 'on_create' order by id`),
    ).toEqual([{ new_row: { id: 1, name: 'kept' } }]);
    expect(await db.query(`select name, is_active from workflow.entities order by name`)).toEqual([
      { name: 'safe', is_active: true },
      { name: 'unsafe', is_active: false },
    ]);
    expect(await triggersOn('app.unsafe')).toBe(0);
  });

  it('switching the unsafe table on again, once its cast is gone, installs its capture', async () => {
    await expect(
      db.query(`update workflow.entities set is_active = true where name = 'unsafe'`),
    ).rejects.toMatchObject({ code: '42501' });
    await app.query(`drop cast (app.status as json)`);
    await db.query(`update workflow.entities set is_active = true where name = 'unsafe'`);
    expect(await triggersOn('app.unsafe')).toBe(3);
    await app.query(`insert into app.unsafe values (2, 'paid')`);
    expect(await db.query(`select new_row from workflow.events where new_row ->> 'status' = 'paid'`)).toEqual(
      [{ new_row: { id: 2, status: 'paid' } }],
    );
  });

  it('grants again on a run that applies nothing (a run stopped between commit and grants)', async () => {
    // What a crash after 000010's commit and before apply_privileges() leaves: PUBLIC's EXECUTE.
    await db.query(`grant execute on function workflow.register_entity(text) to public`);
    const canRegister = async () =>
      (
        await db.query<{ may: boolean }>(
          `select has_function_privilege($1, 'workflow.register_entity(text)', 'execute') as may`,
          [app.name],
        )
      )[0]!.may;
    expect(await canRegister()).toBe(true);
    expect(await migrateDatabase(db.url)).toEqual([]);
    expect(await canRegister()).toBe(false);
  });

  it('lets the owner drop a table registered before the upgrade', async () => {
    await app.query(`drop table app.safe`);
  });
});
