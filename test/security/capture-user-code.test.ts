import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { TestRoles, type LoginRole } from '../support/roles.js';

// Issue 9, item 1: an application owner `app` who writes a cast to json for its own enum must not
// get that cast run by capture with more privileges than its own. Capture functions belong to
// rulebook_capture, and tables whose types carry code of a non-superuser are refused or, when that
// code arrives later, have their capture switched off.

let db: TestDatabase;
let roles: TestRoles;
let app: LoginRole;
let writer: LoginRole;
let dba: LoginRole;

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

const FORGED_ENTITY = '00000000-0000-4000-8000-00000000f00d';

/**
 * app's cast to json for its type, doing what app's code would do if capture ran it as
 * rulebook_capture: write a forged event (which rulebook_capture may do) and note who it ran as in
 * a table app owns and everyone may write. Run as app itself, the forged insert fails quietly.
 */
async function createHostileCast(type: string): Promise<void> {
  await app.query(`
    create function app.hostile(app.status) returns json language plpgsql as $$
    begin
      insert into app.ran_as values (current_user);
      begin
        insert into workflow.events (entity_id, operation, row_key)
        values ('${FORGED_ENTITY}', 'on_create', '{"forged": true}');
      exception when insufficient_privilege then
        null;
      end;
      return to_json($1::text);
    end
    $$`);
  await app.query(`create cast (${type} as json) with function app.hostile(app.status)`);
}

async function dropHostileCast(type: string): Promise<void> {
  await app.query(`drop cast if exists (${type} as json)`);
  await app.query(`drop function if exists app.hostile(app.status)`);
}

/** Whether app's code ever ran as rulebook_capture, or left a forged event. */
async function hostileCodeRan(): Promise<{ asCapture: boolean; forged: boolean }> {
  const [row] = await db.query<{ as_capture: boolean; forged: boolean }>(
    `select exists (select 1 from app.ran_as where role = 'rulebook_capture') as as_capture,
            exists (select 1 from workflow.events where entity_id = $1) as forged`,
    [FORGED_ENTITY],
  );
  return { asCapture: row!.as_capture, forged: row!.forged };
}

async function eventsOf(table: string): Promise<{ operation: string; new_row: Record<string, unknown> }[]> {
  return db.query(
    `select e.operation, e.new_row from workflow.events e join workflow.entities en on en.id = e.entity_id
      where en.schema_name || '.' || en.name = $1 order by e.id`,
    [table],
  );
}

/** Registers `table` as the DBA would: a member of rulebook_admin, given TRIGGER by the table's owner. */
async function register(table: string): Promise<string> {
  await app.query(`grant trigger on ${table} to rulebook_admin`);
  const [row] = await dba.query<{ id: string }>('select workflow.register_entity($1) as id', [table]);
  return row!.id;
}

/** A rule on every insert, so that capture has something to capture. */
async function watchInserts(table: string): Promise<string> {
  const entityId = await register(table);
  await dba.query(
    `insert into core.users (email, name) values ('dba@example.com', 'DBA') on conflict (email) do nothing`,
  );
  await dba.query(
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
  dba = await roles.login('dba', 'grant rulebook_admin to %I');
  await app.query(`grant usage on schema app to rulebook_admin`);
  await app.query(`create type app.status as enum ('new', 'paid')`);
  // Where app's code notes who ran it; anyone may write it, rulebook_capture included.
  await app.query(`create table app.ran_as (role text)`);
  await app.query(`grant usage on schema app to public`);
  await app.query(`grant insert on app.ran_as to public`);
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
  it('belong to rulebook_capture, which may only insert events and read how many daemons are idle', async () => {
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
              has_sequence_privilege('rulebook_capture', 'workflow.idle_daemons_count', 'select') as read_idle_count,
              has_sequence_privilege('rulebook_capture', 'workflow.idle_daemons_count', 'update') as set_idle_count,
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
      read_idle: false,
      read_idle_count: true,
      set_idle_count: false,
      member_of_any: false,
    });
  });
});

describe("app's hostile cast", () => {
  it('forges an event when run as rulebook_capture, so the checks below can fail', async () => {
    await app.query(`create table app.control (id int primary key, status app.status)`);
    await createHostileCast('app.status');
    try {
      await db.withClient(async (client) => {
        await client.query('begin');
        try {
          await client.query('set local role rulebook_capture');
          await client.query(`select to_jsonb(row(1, 'new')::app.control)`);
          await client.query('reset role');
          const { rows } = await client.query<{ as_capture: boolean; forged: boolean }>(
            `select exists (select 1 from app.ran_as where role = 'rulebook_capture') as as_capture,
                    exists (select 1 from workflow.events where entity_id = $1) as forged`,
            [FORGED_ENTITY],
          );
          expect(rows).toEqual([{ as_capture: true, forged: true }]);
        } finally {
          await client.query('rollback');
        }
      });
    } finally {
      await dropHostileCast('app.status');
    }
    expect(await hostileCodeRan()).toEqual({ asCapture: false, forged: false });
  });
});

describe('a table whose type has a cast to json written by its owner', () => {
  it('is refused at registration, naming the column, type, cast function and owner; app stays a normal role', async () => {
    await app.query(`create table app.orders (id int primary key, status app.status not null default 'new')`);
    await createHostileCast('app.status');
    try {
      const error = await expectPgError(
        register('app.orders'),
        '42501',
        new RegExp(
          `column status of app\\.orders has type app\\.status, whose cast to json is app\\.hostile\\(app\\.status\\), owned by ${app.name}`,
        ),
      );
      expect(error.hint).toMatch(/docs\/privileges\.md/);
      expect(await db.query(`select 1 from workflow.entities where name = 'orders'`)).toEqual([]);
      // The repro of the issue: a write by app to the table must not run the cast as anyone else.
      await app.query(`insert into app.orders (id) values (1)`);
      expect(await hostileCodeRan()).toEqual({ asCapture: false, forged: false });
      // Nothing else broke: another table's writes are still captured.
      await writer.query(`insert into app.customers values (1, 'Ann')`);
      expect(await eventsOf('app.customers')).toEqual([
        { operation: 'on_create', new_row: { id: 1, name: 'Ann' } },
      ]);
    } finally {
      await dropHostileCast('app.status');
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
    await createHostileCast('app.status');
    try {
      for (const [table, column, type] of [
        ['arrays', 'history', 'app\\.status\\[\\]'],
        ['domains', 'pair', 'app\\.checked_pair'],
        ['composites', 'pairs', 'app\\.pair\\[\\]'],
        ['ranges', 'span', 'app\\.status_range'],
      ] as const) {
        await expectPgError(
          register(`app.${table}`),
          '42501',
          new RegExp(
            `column ${column} of app\\.${table} has type ${type} \\(containing app\\.status\\), whose cast to json is app\\.hostile`,
          ),
        );
      }
    } finally {
      await dropHostileCast('app.status');
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
      await createHostileCast('app.status');
      expect(await isActive(entityId)).toBe(false);
      await app.query(`insert into app.late_cast values (2, 'paid')`);
      expect(await hostileCodeRan()).toEqual({ asCapture: false, forged: false });
      expect(await eventsOf('app.late_cast')).toEqual([
        { operation: 'on_create', new_row: { id: 1, status: 'new' } },
      ]);
      // Switching it back on is checked like a registration.
      await expectPgError(
        dba.query(`update workflow.entities set is_active = true where id = $1`, [entityId]),
        '42501',
        /column status of app\.late_cast has type app\.status, whose cast to json/,
      );
    } finally {
      await dropHostileCast('app.status');
    }
    await dba.query(`update workflow.entities set is_active = true where id = $1`, [entityId]);
    await app.query(`insert into app.late_cast values (3, 'paid')`);
    expect((await eventsOf('app.late_cast')).map((event) => event.new_row.id)).toEqual([1, 3]);
  });

  it('a new column of an unsafe type switches capture off, without failing the ALTER TABLE', async () => {
    await app.query(`create table app.late_column (id int primary key, note text)`);
    const entityId = await watchInserts('app.late_column');
    await createHostileCast('app.status');
    try {
      await app.query(`alter table app.late_column add column status app.status`);
      expect(await isActive(entityId)).toBe(false);
      await app.query(`insert into app.late_column values (1, 'x', 'new')`);
      expect(await hostileCodeRan()).toEqual({ asCapture: false, forged: false });
      expect(await eventsOf('app.late_column')).toEqual([]);
    } finally {
      await dropHostileCast('app.status');
    }
    // Meanwhile other tables were captured as before.
    await writer.query(`insert into app.customers values (2, 'Bob')`);
    expect((await eventsOf('app.customers')).map((event) => event.new_row.name)).toContain('Bob');
  });

  it("a column added to another table whose row type a captured table's column holds switches capture off", async () => {
    await app.query(`create table app.other3 (id int)`);
    await app.query(`create table app.nests (id int primary key, part app.other3)`);
    await app.query(`create table app.nests_array (id int primary key, parts app.other3[])`);
    const direct = await watchInserts('app.nests');
    const viaArray = await watchInserts('app.nests_array');
    await app.query(`insert into app.nests values (1, row(1)::app.other3)`);
    await createHostileCast('app.status');
    try {
      // other3 is not registered: only its row type is inside registered tables.
      await app.query(`alter table app.other3 add column s app.status`);
      expect(await isActive(direct)).toBe(false);
      expect(await isActive(viaArray)).toBe(false);
      await app.query(`insert into app.nests values (2, row(2, 'new')::app.other3)`);
      await app.query(`insert into app.nests_array values (1, array[row(3, 'paid')::app.other3])`);
      expect(await hostileCodeRan()).toEqual({ asCapture: false, forged: false });
      expect(await eventsOf('app.nests')).toEqual([
        { operation: 'on_create', new_row: { id: 1, part: { id: 1 } } },
      ]);
      expect(await eventsOf('app.nests_array')).toEqual([]);
    } finally {
      await dropHostileCast('app.status');
    }
  });
});
