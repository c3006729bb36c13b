import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { createRule } from '../support/rules.js';
import { TestRoles, type LoginRole } from '../support/roles.js';

// Issue 9, item 2: rulebook's event trigger runs for every DDL statement in the database, as the
// role that issues it. The application's own migrations, run by the application owner `app` with
// no privilege on workflow, must never fail because rulebook is installed.

let db: TestDatabase;
let roles: TestRoles;
let app: LoginRole;

async function eventRows(table: string): Promise<Record<string, unknown>[]> {
  const rows = await db.query<{ new_row: Record<string, unknown> }>(
    `select e.new_row from workflow.events e join workflow.entities en on en.id = e.entity_id
      where en.schema_name || '.' || en.name = $1 order by e.id`,
    [table],
  );
  return rows.map((row) => row.new_row);
}

beforeAll(async () => {
  db = await createTestDatabase();
  roles = new TestRoles(db);
  app = await roles.login('app', 'create schema app authorization %I');
  await app.query(`create table app.orders (id int primary key, status text, amount numeric)`);
  await createRule(db, {
    name: 'Order status changed',
    entity: 'app.orders',
    trigger: 'on_update',
    conditions: [{ field_name: 'status', operator: 'changed' }],
  });
  await createRule(db, { name: 'Order created', entity: 'app.orders', trigger: 'on_create' });
});

afterAll(async () => {
  await roles.endPools();
  await db.drop();
  await roles.dropRoles();
});

describe("the application owner's migrations", () => {
  it('alter, index and drop tables that rulebook does not watch', async () => {
    expect(
      await db.query(`select 1 from pg_event_trigger where evtname = 'rulebook_refresh_capture'`),
    ).toHaveLength(1);
    await app.query(`create table app.unrelated (id int primary key)`);
    await app.query(`alter table app.unrelated add column y int`);
    await app.query(`alter table app.unrelated rename column y to z`);
    await app.query(`create index on app.unrelated (z)`);
    await app.query(`alter table app.unrelated alter column z type bigint`);
    await app.query(`create type app.mood as enum ('calm')`);
    await app.query(`alter type app.mood add value 'busy'`);
    await app.query(`create view app.unrelated_view as select id from app.unrelated`);
    await app.query(`drop table app.unrelated cascade`);
  });

  it('alter a watched table, whose capture follows the new columns', async () => {
    await app.query(`alter table app.orders add column note text`);
    await app.query(`alter table app.orders rename column amount to total`);
    await app.query(`create index on app.orders (status)`);
    await app.query(`alter table app.orders alter column total type numeric(12, 2)`);
    await app.query(`insert into app.orders (id, status, total, note) values (1, 'new', 10, 'first')`);
    await app.query(`update app.orders set status = 'paid' where id = 1`);
    await app.query(`update app.orders set note = 'unwatched column' where id = 1`);
    expect(await eventRows('app.orders')).toEqual([
      { id: 1, status: 'new', total: 10.0, note: 'first' },
      { id: 1, status: 'paid', total: 10, note: 'first' },
    ]);
  });

  it('rename a watched table, which keeps being captured', async () => {
    await app.query(`create table app.renamed (id int primary key, v int)`);
    await createRule(db, { name: 'Renamed created', entity: 'app.renamed', trigger: 'on_create' });
    await app.query(`alter table app.renamed rename to renamed_again`);
    await app.query(`insert into app.renamed_again values (1, 1)`);
    expect(await eventRows('app.renamed')).toEqual([{ id: 1, v: 1 }]);
  });

  it('drop a watched table', async () => {
    await app.query(`create table app.doomed (id int primary key)`);
    await createRule(db, { name: 'Doomed created', entity: 'app.doomed', trigger: 'on_create' });
    await app.query(`alter table app.doomed add column y int`);
    await app.query(`drop table app.doomed`);
    // rulebook goes on for the other tables.
    await app.query(`insert into app.orders (id, status) values (2, 'new')`);
    expect((await eventRows('app.orders')).map((row) => row.id)).toEqual([1, 1, 2]);
  });
});
