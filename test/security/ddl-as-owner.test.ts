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

async function isSuperuser(role: LoginRole): Promise<boolean> {
  const [row] = await db.query<{ rolsuper: boolean }>('select rolsuper from pg_roles where rolname = $1', [
    role.name,
  ]);
  return row!.rolsuper;
}

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

  it('rename a watched table to a name that ends a dollar quote, which stays a name', async () => {
    // The reviewer's attack: the rename makes the event trigger rewrite the capture function as
    // workflow's owner, and a name spliced into its dollar-quoted body became SQL of its own.
    await app.query(`create table app.victim (id int primary key, v int)`);
    await createRule(db, { name: 'Victim created', entity: 'app.victim', trigger: 'on_create' });
    const hostile = `a$body$;alter role ${app.name} superuser;select $body$`;
    const client = await app.pool.connect();
    try {
      await client.query('set check_function_bodies = off');
      await client.query(`alter table app.victim rename to "${hostile}"`);
      expect(await isSuperuser(app)).toBe(false);
      // Other delimiters and quotes the generated code could trip over.
      await client.query(
        `alter table app."${hostile}" rename to "b$t$'%s$$;alter role ${app.name} superuser;--"`,
      );
      expect(await isSuperuser(app)).toBe(false);
      await client.query(
        `alter table app."b$t$'%s$$;alter role ${app.name} superuser;--" rename to "${hostile}"`,
      );
    } finally {
      client.release();
    }
    expect(await isSuperuser(app)).toBe(false);
    await app.query(`insert into app."${hostile}" values (1, 1)`);
    expect(await eventRows('app.victim')).toEqual([{ id: 1, v: 1 }]);
  });
});

describe('a watched table whose key column is renamed to a name that ends a dollar quote', () => {
  it('stays a name in the capture function, which goes on capturing', async () => {
    // Key columns are written into the capture function too (its row_key expression).
    await app.query(`create table app.keyed (id int primary key, v int)`);
    await createRule(db, { name: 'Keyed created', entity: 'app.keyed', trigger: 'on_create' });
    const hostile = `k$body$;alter role ${app.name} superuser;select $body$`;
    const client = await app.pool.connect();
    try {
      await client.query('set check_function_bodies = off');
      await client.query(`alter table app.keyed rename column id to "${hostile}"`);
    } finally {
      client.release();
    }
    expect(await isSuperuser(app)).toBe(false);
    await app.query(`insert into app.keyed values (1, 1)`);
    const [event] = await db.query<{ row_key: Record<string, unknown> }>(
      `select e.row_key from workflow.events e join workflow.entities en on en.id = e.entity_id
        where en.name = 'keyed'`,
    );
    expect(event!.row_key).toEqual({ [hostile]: 1 });
  });
});

describe('a partitioned table', () => {
  let entityId: string;

  beforeAll(async () => {
    await app.query(
      `create table app.parted (id int, region text, v int, primary key (id, region)) partition by list (region)`,
    );
    await app.query(`create table app.parted_eu partition of app.parted for values in ('eu')`);
    await createRule(db, { name: 'Parted created', entity: 'app.parted', trigger: 'on_create' });
    [{ id: entityId }] = (await db.query<{ id: string }>(
      `select id from workflow.entities where name = 'parted'`,
    )) as [{ id: string }];
  });

  it('is captured through its partitions, which its owner can add, attach and alter', async () => {
    await app.query(`insert into app.parted values (1, 'eu', 1)`);
    await app.query(`create table app.parted_us partition of app.parted for values in ('us')`);
    await app.query(`insert into app.parted values (2, 'us', 2)`);
    await app.query(`create table app.parted_asia (id int not null, region text not null, v int)`);
    await app.query(`alter table app.parted attach partition app.parted_asia for values in ('asia')`);
    await app.query(`insert into app.parted_asia values (3, 'asia', 3)`);
    // ALTER TABLE of a partition refreshes the partitioned table's capture, which stays its own.
    await app.query(`alter table app.parted_eu alter column v set default 0`);
    await app.query(`alter table app.parted add column note text`);
    await app.query(`insert into app.parted_eu (id, region) values (4, 'eu')`);
    await app.query(`insert into app.parted values (5, 'us', 5, 'n')`);
    expect(await eventRows('app.parted')).toEqual([
      { id: 1, region: 'eu', v: 1 },
      { id: 2, region: 'us', v: 2 },
      { id: 3, region: 'asia', v: 3 },
      { id: 4, region: 'eu', v: 0, note: null },
      { id: 5, region: 'us', v: 5, note: 'n' },
    ]);
    const [binding] = await db.query<{ body: string }>(
      `select prosrc as body from pg_proc where proname = workflow.capture_function_name($1)`,
      [entityId],
    );
    expect(binding!.body).toContain(
      `${(await db.query<{ oid: number }>(`select 'app.parted'::regclass::oid as oid`))[0]!.oid}::pg_catalog.oid`,
    );
    // A detached partition is the owner's own table again.
    await app.query(`alter table app.parted detach partition app.parted_asia`);
    await app.query(`insert into app.parted_asia values (6, 'asia', 6)`);
    expect((await eventRows('app.parted')).map((row) => row.id)).toEqual([1, 2, 3, 4, 5]);
  });

  it("lets its owner run the capture function nowhere but in the table's partition tree", async () => {
    // USAGE on workflow, which an owner may hold for other reasons (rulebook_outbox_reader has it).
    await db.query(`grant usage on schema workflow to ${app.name}`);
    await app.query(`create table app.forger (id int primary key, region text, v int)`);
    await app.query(
      `create trigger forge after insert on app.forger for each row execute function workflow.${await captureFunction(entityId)}()`,
    );
    await expect(app.query(`insert into app.forger values (7, 'eu', 7)`)).rejects.toMatchObject({
      code: '42501',
      message: expect.stringMatching(/belongs to app\.parted and refuses to run for app\.forger/),
    });
    expect((await eventRows('app.parted')).map((row) => row.id)).toEqual([1, 2, 3, 4, 5]);
  });

  it('cannot have a partition registered on its own', async () => {
    await expect(db.query(`select workflow.register_entity('app.parted_us')`)).rejects.toMatchObject({
      code: '42809',
      message: expect.stringMatching(/app\.parted_us is a partition of app\.parted/),
    });
  });
});

async function captureFunction(entityId: string): Promise<string> {
  const [row] = await db.query<{ name: string }>(`select workflow.capture_function_name($1) as name`, [
    entityId,
  ]);
  return row!.name;
}
