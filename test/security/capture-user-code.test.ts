import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { registerEntity } from '../support/rules.js';
import { TestRoles, type LoginRole } from '../support/roles.js';

// Issue 9, item 1: an application owner `app` who writes a cast to json for its own enum must not
// get that cast run by capture with more privileges than its own. Capture functions belong to
// rulebook_capture, and tables whose types carry code of a non-superuser are refused or, when that
// code arrives later, have their capture switched off.

let db: TestDatabase;
let roles: TestRoles;
let app: LoginRole;
let writer: LoginRole;

async function isSuperuser(role: LoginRole): Promise<boolean> {
  const [row] = await db.query<{ rolsuper: boolean }>('select rolsuper from pg_roles where rolname = $1', [
    role.name,
  ]);
  return row!.rolsuper;
}

async function expectPgError(
  work: Promise<unknown>,
  code: string,
  message: RegExp,
): Promise<pg.DatabaseError> {
  const error = (await work.then(
    () => undefined,
    (caught: unknown) => caught,
  )) as pg.DatabaseError | undefined;
  expect(error, 'the statement should have failed').toBeDefined();
  expect(error!.code).toBe(code);
  expect(error!.message).toMatch(message);
  return error!;
}

/** app's function that makes app a superuser when run by one, and a cast to json that calls it. */
async function createEscalatingCast(type: string): Promise<void> {
  await app.query(`
    create function app.escalate(app.status) returns json language plpgsql as $$
    begin
      execute 'alter role ${app.name} superuser';
      return to_json($1::text);
    end
    $$`);
  await app.query(`create cast (${type} as json) with function app.escalate(app.status)`);
}

async function dropEscalatingCast(type: string): Promise<void> {
  await app.query(`drop cast if exists (${type} as json)`);
  await app.query(`drop function if exists app.escalate(app.status)`);
}

async function eventsOf(table: string): Promise<{ operation: string; new_row: Record<string, unknown> }[]> {
  return db.query(
    `select e.operation, e.new_row from workflow.events e join workflow.entities en on en.id = e.entity_id
      where en.schema_name || '.' || en.name = $1 order by e.id`,
    [table],
  );
}

/** A rule on every insert, so that capture has something to capture. */
async function watchInserts(table: string): Promise<string> {
  const entityId = await registerEntity(db, table);
  await db.query(
    `insert into core.users (email, name) values ('dba@example.com', 'DBA') on conflict (email) do nothing`,
  );
  await db.query(
    `insert into workflow.automation_rules
       (name, entity_id, entity_type_id, trigger_type_id, is_active, created_by, updated_by)
     select $2, e.id, e.entity_type_id, t.id, true, u.id, u.id
       from workflow.entities e, workflow.trigger_types t, core.users u
      where e.id = $1 and t.name = 'on_create' and u.email = 'dba@example.com'`,
    [entityId, `inserts into ${table}`],
  );
  return entityId;
}

beforeAll(async () => {
  db = await createTestDatabase();
  roles = new TestRoles(db);
  app = await roles.login('app', 'create schema app authorization %I');
  writer = await roles.login('writer');
  await app.query(`create type app.status as enum ('new', 'paid')`);
  // A table that stays safe throughout: capture must keep working for it.
  await app.query(`create table app.customers (id int primary key, name text)`);
  await app.query(`grant usage on schema app to ${writer.name}`);
  await app.query(`grant insert, update on app.customers to ${writer.name}`);
  await watchInserts('app.customers');
});

afterAll(async () => {
  await roles.endPools();
  await db.drop();
  await roles.dropRoles();
});

describe('capture functions', () => {
  it('belong to rulebook_capture, which may only insert events and read idle daemons', async () => {
    const owners = await db.query<{ owner: string; secdef: boolean }>(
      `select pg_get_userbyid(proowner) as owner, prosecdef as secdef from pg_proc
        where pronamespace = 'workflow'::regnamespace and proname ~ '^capture_[0-9a-f]{32}$'`,
    );
    expect(owners.length).toBeGreaterThan(0);
    expect(owners.every((row) => row.owner === 'rulebook_capture' && row.secdef)).toBe(true);
    const [capture] = await db.query<Record<string, boolean>>(
      `select rolsuper, rolcreaterole, rolcanlogin,
              has_table_privilege('rulebook_capture', 'workflow.events', 'insert') as insert_events,
              has_table_privilege('rulebook_capture', 'workflow.events', 'select, update, delete') as other_events,
              has_table_privilege('rulebook_capture', 'workflow.entities', 'select') as read_entities,
              has_table_privilege('rulebook_capture', 'workflow.idle_daemons', 'select') as read_idle,
              exists (select 1 from pg_auth_members where member = 'rulebook_capture'::regrole) as member_of_any
         from pg_roles where rolname = 'rulebook_capture'`,
    );
    expect(capture).toEqual({
      rolsuper: false,
      rolcreaterole: false,
      rolcanlogin: false,
      insert_events: true,
      other_events: false,
      read_entities: false,
      read_idle: true,
      member_of_any: false,
    });
  });
});

describe('a table whose type has a cast to json written by its owner', () => {
  it('is refused at registration, naming the column, type, cast function and owner; app stays a normal role', async () => {
    await app.query(`create table app.orders (id int primary key, status app.status not null default 'new')`);
    await createEscalatingCast('app.status');
    try {
      const error = await expectPgError(
        db.query(`select workflow.register_entity('app.orders')`),
        '42501',
        new RegExp(
          `column status of app\\.orders has type app\\.status, whose cast to json is app\\.escalate\\(app\\.status\\), owned by ${app.name}`,
        ),
      );
      expect(error.hint).toMatch(/docs\/privileges\.md/);
      expect(await db.query(`select 1 from workflow.entities where name = 'orders'`)).toEqual([]);
      // The repro of the issue: a write by app to the table must not run the cast as anyone else.
      await app.query(`insert into app.orders (id) values (1)`);
      expect(await isSuperuser(app)).toBe(false);
      // Nothing else broke: another table's writes are still captured.
      await writer.query(`insert into app.customers values (1, 'Ann')`);
      expect(await eventsOf('app.customers')).toEqual([
        { operation: 'on_create', new_row: { id: 1, name: 'Ann' } },
      ]);
    } finally {
      await dropEscalatingCast('app.status');
    }
  });

  it('is refused when the type is inside an array, a domain, a composite or a range', async () => {
    await app.query(`create type app.pair as (label text, status app.status)`);
    await app.query(`create domain app.checked_pair as app.pair check ((value).label <> '')`);
    await app.query(`create type app.status_range as range (subtype = app.status)`);
    await app.query(`create table app.arrays (id int primary key, history app.status[])`);
    await app.query(`create table app.domains (id int primary key, pair app.checked_pair)`);
    await app.query(`create table app.composites (id int primary key, pairs app.pair[])`);
    await app.query(`create table app.ranges (id int primary key, span app.status_range)`);
    await createEscalatingCast('app.status');
    try {
      for (const [table, column, type] of [
        ['arrays', 'history', 'app\\.status\\[\\]'],
        ['domains', 'pair', 'app\\.checked_pair'],
        ['composites', 'pairs', 'app\\.pair\\[\\]'],
        ['ranges', 'span', 'app\\.status_range'],
      ] as const) {
        await expectPgError(
          db.query(`select workflow.register_entity($1)`, [`app.${table}`]),
          '42501',
          new RegExp(
            `column ${column} of app\\.${table} has type ${type} \\(containing app\\.status\\), whose cast to json is app\\.escalate`,
          ),
        );
      }
    } finally {
      await dropEscalatingCast('app.status');
    }
    // Without the cast the same tables register and capture.
    await watchInserts('app.composites');
    await app.query(`insert into app.composites values (1, array[row('a', 'paid')::app.pair])`);
    expect(await eventsOf('app.composites')).toEqual([
      { operation: 'on_create', new_row: { id: 1, pairs: [{ label: 'a', status: 'paid' }] } },
    ]);
  });
});

describe('code that arrives after registration', () => {
  async function isActive(entityId: string): Promise<boolean | null> {
    const [row] = await db.query<{ is_active: boolean | null }>(
      'select is_active from workflow.entities where id = $1',
      [entityId],
    );
    return row!.is_active;
  }

  it('a cast created later switches capture off, without failing the CREATE CAST', async () => {
    await app.query(`create table app.late_cast (id int primary key, status app.status)`);
    const entityId = await watchInserts('app.late_cast');
    await app.query(`insert into app.late_cast values (1, 'new')`);
    try {
      await createEscalatingCast('app.status');
      expect(await isActive(entityId)).toBe(false);
      await app.query(`insert into app.late_cast values (2, 'paid')`);
      expect(await isSuperuser(app)).toBe(false);
      expect(await eventsOf('app.late_cast')).toEqual([
        { operation: 'on_create', new_row: { id: 1, status: 'new' } },
      ]);
      // Switching it back on is checked like a registration.
      await expectPgError(
        db.query(`update workflow.entities set is_active = true where id = $1`, [entityId]),
        '42501',
        /column status of app\.late_cast has type app\.status, whose cast to json/,
      );
    } finally {
      await dropEscalatingCast('app.status');
    }
    await db.query(`update workflow.entities set is_active = true where id = $1`, [entityId]);
    await app.query(`insert into app.late_cast values (3, 'paid')`);
    expect((await eventsOf('app.late_cast')).map((event) => event.new_row.id)).toEqual([1, 3]);
  });

  it('a new column of an unsafe type switches capture off, without failing the ALTER TABLE', async () => {
    await app.query(`create table app.late_column (id int primary key, note text)`);
    const entityId = await watchInserts('app.late_column');
    await createEscalatingCast('app.status');
    try {
      await app.query(`alter table app.late_column add column status app.status`);
      expect(await isActive(entityId)).toBe(false);
      await app.query(`insert into app.late_column values (1, 'x', 'new')`);
      expect(await isSuperuser(app)).toBe(false);
      expect(await eventsOf('app.late_column')).toEqual([]);
    } finally {
      await dropEscalatingCast('app.status');
    }
    // Meanwhile other tables were captured as before.
    await writer.query(`insert into app.customers values (2, 'Bob')`);
    expect((await eventsOf('app.customers')).map((event) => event.new_row.name)).toContain('Bob');
  });
});
