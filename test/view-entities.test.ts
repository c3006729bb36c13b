import pg from 'pg';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { createLogger } from '../src/logger.js';
import { pollViews, ViewPoller, type ViewPollResult } from '../src/views/view-poller.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { startEngine } from './support/engine.js';
import { TestRoles, type LoginRole } from './support/roles.js';
import { startHttp } from './support/staff.js';
import { waitFor } from './support/wait.js';

// Issue 12, second half: a view registered with key columns fires on_create / on_update /
// on_delete rules, from snapshot diffs taken by the daemon's poller.

let db: TestDatabase;
let roles: TestRoles;
// The application's owner: owns the tables and the view, and writes to them.
let app: LoginRole;
// A DBA who registers views and writes rules: a member of rulebook_admin.
let dba: LoginRole;
// The daemon's login role: a member of rulebook_daemon.
let daemon: LoginRole;
let dbaUserId: string;
let staffId: string;
let engine: Engine | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
  roles = new TestRoles(db);
  app = await roles.login('app_owner', 'grant create on database ' + db.name + ' to %I');
  dba = await roles.login('dba', 'grant rulebook_admin to %I');
  daemon = await roles.login('daemon', 'grant rulebook_daemon to %I');
  await app.query(`create schema billing`);
  await app.query(
    `create table billing.invoices (
       id int primary key, customer text not null, amount numeric not null, due date not null, paid boolean not null default false)`,
  );
  await app.query(
    `create view billing.overdue_invoices as
       select id as invoice_id, customer, amount, due from billing.invoices where not paid and due < current_date`,
  );
  // Several rows per customer: customer is not a key of the view.
  await app.query(
    `create view billing.overdue_by_customer as select customer, invoice_id from billing.overdue_invoices`,
  );
  await app.query(`grant usage on schema billing to rulebook_admin, rulebook_daemon`);
  await app.query(
    `grant select on billing.overdue_invoices, billing.overdue_by_customer to rulebook_admin, rulebook_daemon`,
  );
  dbaUserId = (
    await dba.query<{ id: string }>(
      `insert into core.users (email, name) values ('dba@example.com', 'DBA') returning id`,
    )
  )[0]!.id;
  staffId = (
    await dba.query<{ id: string }>(
      `insert into core.users (email, name) values ('collections@example.com', 'Collections') returning id`,
    )
  )[0]!.id;
});

afterEach(async () => {
  await engine?.stop();
  engine = undefined;
  await db.query(`update workflow.automation_rules set is_active = false where is_active`);
  await db.query(`delete from workflow.view_entities`);
  await db.query(`delete from workflow.events`);
  await app.query(`delete from billing.invoices`);
});

afterAll(async () => {
  await roles.endPools();
  await db.drop();
  await roles.dropRoles();
});

async function addInvoice(
  id: number,
  amount: number,
  dueDaysAgo: number,
  customer = `c${id}`,
): Promise<void> {
  await app.query(
    `insert into billing.invoices (id, customer, amount, due) values ($1, $2, $3, current_date - $4::int)`,
    [id, customer, amount, dueDaysAgo],
  );
}

/** Writes a rule on the view, with one create_alert action, as the DBA. Returns the rule id. */
async function viewRule(
  name: string,
  trigger: 'on_create' | 'on_update' | 'on_delete',
  alert: { title: string; message: string },
  conditions?: unknown[],
  view = 'overdue_invoices',
): Promise<string> {
  const [rule] = await dba.query<{ id: string }>(
    `insert into workflow.automation_rules
       (name, entity_id, entity_type_id, trigger_type_id, trigger_conditions, created_by, updated_by)
     select $1, e.id, e.entity_type_id, t.id, $2::jsonb, $3, $3
       from workflow.entities e, workflow.trigger_types t
      where e.schema_name = 'billing' and e.name = $5 and t.name = $4
     returning id`,
    [name, conditions ? JSON.stringify({ field_conditions: conditions }) : null, dbaUserId, trigger, view],
  );
  await dba.query(
    `insert into workflow.rule_actions (automation_rules_id, name, action_config, execution_order)
     values ($1, 'alert', $2, 1)`,
    [
      rule!.id,
      JSON.stringify({
        action_type: 'create_alert',
        alert_type: 'overdue_invoice',
        recipients: { users: [staffId] },
        ...alert,
      }),
    ],
  );
  return rule!.id;
}

async function registerOverdueView(interval = '1 minute'): Promise<string> {
  const [row] = await dba.query<{ id: string }>(
    `select workflow.register_view('billing.overdue_invoices', '{invoice_id}', $1::interval) as id`,
    [interval],
  );
  return row!.id;
}

async function poll(): Promise<ViewPollResult> {
  const results = await pollViews(daemon.pool, { force: true });
  expect(results).toHaveLength(1);
  return results[0]!;
}

async function failure(
  role: LoginRole,
  sql: string,
  values: unknown[] = [],
): Promise<{ code: string; message: string }> {
  try {
    await role.query(sql, values);
  } catch (error) {
    const { code, message } = error as { code: string; message: string };
    return { code, message };
  }
  throw new Error(`expected to fail: ${sql}`);
}

async function eventsOf(entityId: string) {
  return db.query<{
    operation: string;
    row_key: unknown;
    old_row: Record<string, unknown> | null;
    new_row: unknown;
  }>(`select operation, row_key, old_row, new_row from workflow.events where entity_id = $1 order by id`, [
    entityId,
  ]);
}

describe('a view registered with key columns', () => {
  it('fires rules on rows that appear in it, change in it and vanish from it, through the engine', async () => {
    await addInvoice(1, 100, 3);
    await addInvoice(2, 200, -5); // due in five days: not overdue yet
    await addInvoice(3, 300, 10);
    await registerOverdueView();
    await viewRule('overdue', 'on_create', {
      title: 'Invoice {{invoice_id}} is overdue',
      message: '{{customer}} owes {{amount}}',
    });
    await viewRule(
      'overdue amount changed',
      'on_update',
      { title: 'Invoice {{invoice_id}} now {{new.amount}}', message: 'was {{old.amount}}' },
      [{ field_name: 'amount', operator: 'changed' }],
    );
    await viewRule('overdue settled', 'on_delete', {
      title: 'Invoice {{invoice_id}} settled',
      message: '{{customer}} is no longer overdue',
    });

    // The first poll takes the snapshot: invoices overdue before the rules existed fire nothing.
    expect(await poll()).toMatchObject({ status: 'snapshot', rows: 2 });

    await app.query(`update billing.invoices set due = current_date - 1 where id = 2`); // appears
    await app.query(`update billing.invoices set amount = 150 where id = 1`); // changes
    await app.query(`update billing.invoices set paid = true where id = 3`); // vanishes
    expect(await poll()).toMatchObject({ status: 'polled', created: 1, updated: 1, deleted: 1, fired: 3 });

    engine = await startEngine(db, { databaseUrl: daemon.url });
    const alerts = await waitFor('three alerts', async () => {
      const rows = await db.query<{ title: string; message: string }>(
        `select title, message from workflow.alerts order by title`,
      );
      return rows.length === 3 ? rows : undefined;
    });
    expect(alerts).toEqual([
      { title: 'Invoice 1 now 150', message: 'was 100' },
      { title: 'Invoice 2 is overdue', message: 'c2 owes 200' },
      { title: 'Invoice 3 settled', message: 'c3 is no longer overdue' },
    ]);

    // Nothing changed: the next poll writes nothing.
    expect(await poll()).toMatchObject({ status: 'polled', created: 0, updated: 0, deleted: 0, fired: 0 });
    await db.query(`delete from workflow.alert_recipients`);
    await db.query(`delete from workflow.alerts`);
  });

  it('writes events only for the kinds of change an active rule watches, with old and new rows', async () => {
    const entityId = await registerOverdueView();
    await viewRule('amount', 'on_update', { title: 't', message: 'm' }, [
      { field_name: 'amount', operator: 'changed' },
    ]);
    await addInvoice(1, 100, 3);
    await addInvoice(2, 200, 3);
    expect(await poll()).toMatchObject({ status: 'snapshot', rows: 2 });
    await app.query(`update billing.invoices set amount = amount + 1`);
    await addInvoice(3, 300, 3);
    await app.query(`delete from billing.invoices where id = 2`);
    expect(await poll()).toMatchObject({ created: 1, updated: 1, deleted: 1, fired: 1 });
    const events = await eventsOf(entityId);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      operation: 'on_update',
      row_key: { invoice_id: 1 },
      old_row: { invoice_id: 1, amount: 100, customer: 'c1' },
      new_row: { invoice_id: 1, amount: 101, customer: 'c1' },
    });
  });

  it('polls once across daemons: concurrent polls write each change once', async () => {
    const entityId = await registerOverdueView();
    await viewRule('any overdue', 'on_create', { title: 't', message: 'm' });
    await viewRule('any change', 'on_update', { title: 't', message: 'm' });
    await viewRule('any settled', 'on_delete', { title: 't', message: 'm' });
    for (let id = 1; id <= 50; id++) await addInvoice(id, id, 3);
    const second = await roles.login('daemon_two', 'grant rulebook_daemon to %I');
    const pollers = [
      new ViewPoller({ databaseUrl: daemon.url, logger: createLogger('silent') }),
      new ViewPoller({ databaseUrl: second.url, logger: createLogger('silent') }),
      new ViewPoller({ databaseUrl: second.url, logger: createLogger('silent') }),
    ];
    try {
      const first = (await Promise.all(pollers.map((p) => p.pollOnce({ force: true })))).flat();
      expect(first.filter((r) => r.status === 'snapshot')).toHaveLength(1);
      let expected = 0;
      for (let round = 0; round < 5; round++) {
        await app.query(`delete from billing.invoices where id = $1`, [50 - round]);
        const updated = await app.pool.query(
          `update billing.invoices set amount = amount + 1 where id % 5 = $1`,
          [round],
        );
        await addInvoice(100 + round, 1, 3);
        expected += updated.rowCount! + 2;
        const results = (await Promise.all(pollers.map((p) => p.pollOnce({ force: true })))).flat();
        expect(results.every((r) => r.status === 'polled' || r.status === 'busy')).toBe(true);
      }
      const events = await eventsOf(entityId);
      // Each (operation, key) once per round at most; each change written exactly once in total.
      expect(events.length).toBe(expected);
      const written = pollers.reduce((sum, p) => sum + p.stats.eventsWritten, 0);
      expect(written).toBe(expected);
      const snapshot = await db.query<{ n: string }>(
        `select count(*) as n from workflow.view_snapshots where entity_id = $1`,
        [entityId],
      );
      const view = await db.query<{ n: string }>(`select count(*) as n from billing.overdue_invoices`);
      expect(snapshot[0]!.n).toBe(view[0]!.n);
    } finally {
      for (const poller of pollers) await poller.stop();
    }
  });

  it('polls a view only when its interval has passed, unless forced', async () => {
    await registerOverdueView('1 hour');
    await viewRule('any overdue', 'on_create', { title: 't', message: 'm' });
    const first = await pollViews(daemon.pool);
    expect(first.map((r) => r.status)).toEqual(['snapshot']);
    expect(await pollViews(daemon.pool)).toEqual([]);
    expect((await db.query(`select * from workflow.due_view_polls()`)).length).toBe(0);
    expect((await pollViews(daemon.pool, { force: true })).map((r) => r.status)).toEqual(['polled']);
  });

  it('drops the snapshot when the entity is deactivated, and takes a new one without firing when reactivated', async () => {
    const entityId = await registerOverdueView();
    await viewRule('any overdue', 'on_create', { title: 't', message: 'm' });
    await addInvoice(1, 100, 3);
    expect(await poll()).toMatchObject({ status: 'snapshot', rows: 1 });
    await dba.query(`update workflow.entities set is_active = false where id = $1`, [entityId]);
    const snapshot = () =>
      db.query(`select row_key from workflow.view_snapshots where entity_id = $1`, [entityId]);
    expect(await snapshot()).toEqual([]);
    expect(await pollViews(daemon.pool, { force: true })).toEqual([]);
    await addInvoice(2, 200, 3);
    await dba.query(`update workflow.entities set is_active = true where id = $1`, [entityId]);
    expect(await poll()).toMatchObject({ status: 'snapshot', rows: 2 });
    expect(await eventsOf(entityId)).toEqual([]);
    expect(await snapshot()).toHaveLength(2);
  });

  it('reads whole rows even when a column is named like the row alias, and deleting the entity drops its snapshot', async () => {
    await app.query(`create view billing.letters as select id, customer as v from billing.invoices`);
    await app.query(`grant select on billing.letters to rulebook_admin, rulebook_daemon`);
    const [row] = await dba.query<{ id: string }>(
      `select workflow.register_view('billing.letters', '{id}', '1 minute') as id`,
    );
    const entityId = row!.id;
    const ruleId = await viewRule('renamed', 'on_update', { title: 't', message: 'm' }, undefined, 'letters');
    await addInvoice(1, 100, 3, 'acme');
    expect(await poll()).toMatchObject({ status: 'snapshot', rows: 1 });
    await app.query(`update billing.invoices set customer = 'acme ltd' where id = 1`);
    expect(await poll()).toMatchObject({ status: 'polled', updated: 1, fired: 1 });
    expect((await eventsOf(entityId))[0]).toMatchObject({
      old_row: { id: 1, v: 'acme' },
      new_row: { id: 1, v: 'acme ltd' },
    });

    await db.query(`delete from workflow.events where entity_id = $1`, [entityId]);
    await dba.query(`delete from workflow.rule_actions where automation_rules_id = $1`, [ruleId]);
    await dba.query(`delete from workflow.automation_rules where id = $1`, [ruleId]);
    await dba.query(`delete from workflow.entities where id = $1`, [entityId]);
    expect(await db.query(`select 1 from workflow.view_snapshots where entity_id = $1`, [entityId])).toEqual(
      [],
    );
    expect(await db.query(`select 1 from workflow.view_entities where entity_id = $1`, [entityId])).toEqual(
      [],
    );
  });

  it('reads the view in the time zone of its snapshot, whatever the polling session uses', async () => {
    await app.query(
      `create view billing.invoice_times as
         select id, due::timestamptz as due_at, (due::timestamptz + interval '20 hours')::date as grace_day
           from billing.invoices`,
    );
    await app.query(`grant select on billing.invoice_times to rulebook_admin, rulebook_daemon`);
    const [row] = await dba.query<{ id: string }>(
      `select workflow.register_view('billing.invoice_times', '{id}', '1 minute') as id`,
    );
    const entityId = row!.id;
    await viewRule('due moved', 'on_update', { title: 't', message: 'm' }, undefined, 'invoice_times');
    await addInvoice(1, 100, 3);
    const inZone = async (zone: string) => {
      const pool = new pg.Pool({ connectionString: daemon.url, max: 1, options: `-c TimeZone=${zone}` });
      try {
        return await pollViews(pool, { force: true });
      } finally {
        await pool.end();
      }
    };
    expect(await inZone('UTC')).toMatchObject([{ status: 'snapshot', rows: 1 }]);
    // Read in Tokyo, every time and the day computed from it would differ: nothing fires.
    expect(await inZone('Asia/Tokyo')).toMatchObject([{ status: 'polled', updated: 0, fired: 0 }]);
    await app.query(`update billing.invoices set due = due - 1 where id = 1`);
    expect(await inZone('Asia/Tokyo')).toMatchObject([{ status: 'polled', updated: 1, fired: 1 }]);
    const [event] = await eventsOf(entityId);
    expect(String(event!.old_row!.due_at)).toMatch(/T00:00:00\+00:00$/);
    // The polling session's own setting is left as it was, within the transaction too.
    const tokyo = new pg.Client({ connectionString: daemon.url, options: '-c TimeZone=Asia/Tokyo' });
    await tokyo.connect();
    try {
      await tokyo.query('begin');
      await tokyo.query(`select workflow.poll_view($1, true)`, [entityId]);
      const { rows } = await tokyo.query<{ tz: string }>(`select current_setting('TimeZone') as tz`);
      await tokyo.query('commit');
      expect(rows[0]!.tz).toBe('Asia/Tokyo');
    } finally {
      await tokyo.end();
    }
  });

  it('drops the snapshot of a view no active change rule watches', async () => {
    const entityId = await registerOverdueView();
    const ruleId = await viewRule('any overdue', 'on_create', { title: 't', message: 'm' });
    await addInvoice(1, 100, 3);
    expect(await poll()).toMatchObject({ status: 'snapshot' });
    await dba.query(`update workflow.automation_rules set is_active = false where id = $1`, [ruleId]);
    expect(await poll()).toMatchObject({ status: 'idle' });
    expect(await db.query(`select 1 from workflow.view_snapshots where entity_id = $1`, [entityId])).toEqual(
      [],
    );
  });
});

describe('registering a view', () => {
  it('refuses key columns that are not columns of the view, naming them (42703)', async () => {
    const error = await failure(
      dba,
      `select workflow.register_view('billing.overdue_invoices', '{invoice_id, number, cust}', '1 minute')`,
    );
    expect(error.code).toBe('42703');
    expect(error.message).toContain('number, cust');
    expect(error.message).toContain('billing.overdue_invoices');
    expect(
      (await failure(dba, `select workflow.register_view('billing.overdue_invoices', '{}', '1 minute')`))
        .code,
    ).toBe('22023');
    expect(
      (await failure(dba, `select workflow.register_view('billing.overdue_invoices', '{invoice_id}', '0 s')`))
        .code,
    ).toBe('22023');
  });

  it('refuses a table: tables are captured, not polled', async () => {
    const error = await failure(dba, `select workflow.register_view('billing.invoices', '{id}')`);
    expect(error.code).toBe('42809');
  });

  it('refuses change rules on a view without key columns, saying to set them', async () => {
    await dba.query(`select workflow.register_entity('billing.overdue_by_customer')`);
    const error = await failure(
      dba,
      `insert into workflow.automation_rules
         (name, entity_id, entity_type_id, trigger_type_id, created_by, updated_by)
       select 'no keys', e.id, e.entity_type_id, t.id, $1, $1
         from workflow.entities e, workflow.trigger_types t
        where e.name = 'overdue_by_customer' and t.name = 'on_create'`,
      [dbaUserId],
    );
    expect(error.code).toBe('22023');
    expect(error.message).toContain('without key_columns');
  });

  it('refuses key columns that are not unique in the view (23505), naming a duplicate key', async () => {
    await addInvoice(1, 100, 3, 'acme');
    await addInvoice(2, 200, 3, 'acme');
    const error = await failure(
      dba,
      `select workflow.register_view('billing.overdue_by_customer', '{customer}', '1 minute')`,
    );
    expect(error.code).toBe('23505');
    expect(error.message).toContain('{"customer": "acme"}');
    expect(await db.query(`select 1 from workflow.view_entities`)).toEqual([]);
  });

  it('refuses to drop the key columns while change rules need them', async () => {
    const entityId = await registerOverdueView();
    await viewRule('any overdue', 'on_create', { title: 't', message: 'm' });
    const error = await failure(dba, `delete from workflow.view_entities where entity_id = $1`, [entityId]);
    expect(error.code).toBe('2BP01');
    expect(error.message).toContain('"any overdue"');
  });
});

describe('a key that stops being unique', () => {
  it('fails the poll with a clear, logged error and leaves the snapshot untouched', async () => {
    await addInvoice(1, 100, 3, 'acme');
    await addInvoice(2, 200, 3, 'globex');
    const [row] = await dba.query<{ id: string }>(
      `select workflow.register_view('billing.overdue_by_customer', '{customer}', '1 minute') as id`,
    );
    const entityId = row!.id;
    await viewRule(
      'new debtor',
      'on_create',
      { title: '{{customer}}', message: 'm' },
      undefined,
      'overdue_by_customer',
    );
    expect(await poll()).toMatchObject({ status: 'snapshot', rows: 2 });
    const before = await db.query(
      `select row_key, row from workflow.view_snapshots where entity_id = $1 order by row_key`,
      [entityId],
    );

    await addInvoice(3, 300, 3, 'acme');
    await addInvoice(4, 400, 3, 'initech');
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(line) });
    const [result] = await pollViews(daemon.pool, { force: true, logger });
    expect(result).toMatchObject({ status: 'duplicate_key', key: { customer: 'acme' } });
    expect(result!.message).toContain(
      'key column(s) customer do not identify the rows of billing.overdue_by_customer',
    );

    const logged = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(logged).toContainEqual(
      expect.objectContaining({
        level: 50,
        entity: 'billing.overdue_by_customer',
        duplicateKey: { customer: 'acme' },
      }),
    );
    expect(
      await db.query(
        `select row_key, row from workflow.view_snapshots where entity_id = $1 order by row_key`,
        [entityId],
      ),
    ).toEqual(before);
    expect(await eventsOf(entityId)).toEqual([]);
    const [state] = await db.query<{ last_error: string }>(
      `select last_error from workflow.view_entities where entity_id = $1`,
      [entityId],
    );
    expect(state!.last_error).toContain('{"customer": "acme"} appears more than once');

    const { server, base } = await startHttp(db);
    try {
      const failing = 'rulebook_view_poll_failing{entity="billing.overdue_by_customer"}';
      expect(await (await fetch(`${base}/metrics`)).text()).toContain(`${failing} 1`);

      // Fixed, the next poll fires what changed since the snapshot and clears the error.
      await app.query(`delete from billing.invoices where id = 3`);
      expect(await poll()).toMatchObject({ status: 'polled', created: 1, fired: 1 });
      expect((await eventsOf(entityId)).map((e) => e.row_key)).toEqual([{ customer: 'initech' }]);
      expect(await (await fetch(`${base}/metrics`)).text()).toContain(`${failing} 0`);
    } finally {
      await server.stop();
    }
  });
});

describe('a view the daemon may not read', () => {
  it('reports the missing grant and keeps polling the other views', async () => {
    await app.query(
      `create view billing.big_invoices as select id, amount from billing.invoices where amount > 1000`,
    );
    await app.query(`grant select on billing.big_invoices to rulebook_admin`);
    await dba.query(`select workflow.register_view('billing.big_invoices', '{id}')`);
    await viewRule('big', 'on_create', { title: 't', message: 'm' }, undefined, 'big_invoices');
    await registerOverdueView();
    await viewRule('any overdue', 'on_create', { title: 't', message: 'm' });
    const results = await pollViews(daemon.pool, { force: true });
    const big = results.find((r) => r.entityName === 'billing.big_invoices');
    expect(big).toMatchObject({ status: 'error', sqlstate: '42501' });
    expect(big!.message).toContain('grant select on billing.big_invoices to rulebook_daemon');
    expect(results.find((r) => r.entityName === 'billing.overdue_invoices')).toMatchObject({
      status: 'snapshot',
    });
  });
});

describe("a view that would run its owner's code as the daemon", () => {
  // The application's owner may write functions and views, and replace a registered view at any
  // time; a poll must never run that code with the daemon's privileges on workflow.
  const SNEAKY = `
    create or replace function billing.sneaky(v int) returns int language plpgsql as $$
    begin
      insert into billing.sneaky_calls values (current_user);
      begin
        update workflow.automation_rules set is_active = false;
      exception when insufficient_privilege then null;
      end;
      return v;
    end $$`;

  beforeAll(async () => {
    await app.query(`create table billing.sneaky_calls (role name)`);
    await app.query(`grant insert on billing.sneaky_calls to public`);
    await app.query(SNEAKY);
  });

  it('is refused at registration, naming the function and its owner (42501)', async () => {
    await app.query(
      `create view billing.sneaky_invoices as select billing.sneaky(id) as id, amount from billing.invoices`,
    );
    await app.query(`grant select on billing.sneaky_invoices to rulebook_admin, rulebook_daemon`);
    const error = await failure(dba, `select workflow.register_view('billing.sneaky_invoices', '{id}')`);
    expect(error.code).toBe('42501');
    expect(error.message).toContain('billing.sneaky(integer)');
    expect(error.message).toContain(app.name);
  });

  it('is refused by the poll when a registered view is replaced by one that calls it; nothing of it runs', async () => {
    await app.query(
      `create view billing.plain_invoices as select id, amount from billing.invoices where amount > 0`,
    );
    await app.query(`grant select on billing.plain_invoices to rulebook_admin, rulebook_daemon`);
    await dba.query(`select workflow.register_view('billing.plain_invoices', '{id}')`);
    const ruleId = await viewRule(
      'plain',
      'on_create',
      { title: 't', message: 'm' },
      undefined,
      'plain_invoices',
    );
    await addInvoice(1, 100, 3);
    expect(await poll()).toMatchObject({ status: 'snapshot', rows: 1 });

    // Through an operator and a view in between, too.
    await app.query(`create function billing.sneaky_gt(a numeric, b numeric) returns boolean language sql
                     as $$ select billing.sneaky(1) = 1 and a > b $$`);
    await app.query(
      `create operator billing.>>> (function = billing.sneaky_gt, leftarg = numeric, rightarg = numeric)`,
    );
    await app.query(`create view billing.inner_invoices as select id, amount from billing.invoices
                     where amount operator(billing.>>>) 0`);
    await app.query(
      `create or replace view billing.plain_invoices as select id, amount from billing.inner_invoices`,
    );
    await addInvoice(2, 200, 3);
    const result = await poll();
    expect(result).toMatchObject({ status: 'error', sqlstate: '42501' });
    expect(result.message).toContain('billing.sneaky_gt(numeric,numeric)');
    expect(result.message).toContain('operator billing.>>>(numeric,numeric)');
    expect(await db.query(`select * from billing.sneaky_calls`)).toEqual([]);
    const [rule] = await db.query<{ is_active: boolean }>(
      `select is_active from workflow.automation_rules where id = $1`,
      [ruleId],
    );
    expect(rule!.is_active).toBe(true);
  });
});

describe('a view replaced while a poll waits to read it', () => {
  it('is checked as replaced: the poll locks the view before checking it', async () => {
    await app.query(`create view billing.swapped_invoices as select id, amount from billing.invoices`);
    await app.query(`grant select on billing.swapped_invoices to rulebook_admin, rulebook_daemon`);
    await dba.query(`select workflow.register_view('billing.swapped_invoices', '{id}')`);
    await viewRule('swapped', 'on_create', { title: 't', message: 'm' }, undefined, 'swapped_invoices');
    await addInvoice(1, 100, 3);
    expect(await poll()).toMatchObject({ status: 'snapshot', rows: 1 });
    await addInvoice(2, 200, 3);

    // The owner replaces the view in a transaction that is still open when the poll starts: the
    // poll must not check the old definition and then read the new one.
    const owner = new pg.Client({ connectionString: app.url });
    await owner.connect();
    try {
      await owner.query('begin');
      await owner.query(`create table billing.swap_calls (role name)`);
      await owner.query(`grant insert on billing.swap_calls to public`);
      await owner.query(`create function billing.swap_fn(v int) returns int language plpgsql as $$
                         begin insert into billing.swap_calls values (current_user); return v; end $$`);
      await owner.query(`create or replace view billing.swapped_invoices as
                           select billing.swap_fn(id) as id, amount from billing.invoices`);
      const polling = poll();
      await waitFor('the poll to wait for the view', async () => {
        const waiting = await db.query(
          `select 1 from pg_catalog.pg_locks l join pg_catalog.pg_class c on c.oid = l.relation
            where c.relname = 'swapped_invoices' and not l.granted`,
        );
        return waiting.length > 0;
      });
      await owner.query('commit');
      const result = await polling;
      expect(result).toMatchObject({ status: 'error', sqlstate: '42501' });
      expect(result.message).toContain('billing.swap_fn(integer)');
    } finally {
      await owner.end();
    }
    expect(await db.query(`select * from billing.swap_calls`)).toEqual([]);
    expect(await db.query(`select 1 from workflow.automation_rules where is_active`)).toHaveLength(1);
  });
});

describe('hazards reached other than through the view query', () => {
  beforeAll(async () => {
    await app.query(`create table billing.hidden_calls (role name)`);
    await app.query(`grant insert on billing.hidden_calls to public`);
    await app.query(`create function billing.hidden(v int) returns boolean language plpgsql as $$
                     begin insert into billing.hidden_calls values (current_user); return true; end $$`);
  });

  it('refuses a view that casts to a domain whose check calls the owner’s function (42501)', async () => {
    await app.query(`create domain billing.checked_id as int check (billing.hidden(value))`);
    await app.query(`create domain billing.checked_id2 as billing.checked_id`);
    await app.query(
      `create view billing.domain_invoices as select id::billing.checked_id2 as id, amount from billing.invoices`,
    );
    await app.query(`grant select on billing.domain_invoices to rulebook_admin, rulebook_daemon`);
    await addInvoice(1, 100, 3);
    const error = await failure(dba, `select workflow.register_view('billing.domain_invoices', '{id}')`);
    expect(error.code).toBe('42501');
    expect(error.message).toContain('billing.hidden(integer)');
    expect(error.message).toContain('domain billing.checked_id');
    expect(await db.query(`select * from billing.hidden_calls`)).toEqual([]);
  });

  it('refuses a view over a table whose row security policy uses the owner’s operator (42501)', async () => {
    await app.query(`create function billing.hidden_gt(a numeric, b numeric) returns boolean language sql
                     as $$ select billing.hidden(1) and a > b $$`);
    await app.query(
      `create operator billing.>>>> (function = billing.hidden_gt, leftarg = numeric, rightarg = numeric)`,
    );
    await app.query(`create table billing.guarded (id int primary key, amount numeric not null)`);
    await app.query(`alter table billing.guarded enable row level security`);
    await app.query(`create policy positive on billing.guarded using (amount operator(billing.>>>>) 0)`);
    await app.query(`create view billing.guarded_view as select id, amount from billing.guarded`);
    await app.query(`grant select on billing.guarded_view to rulebook_admin, rulebook_daemon`);
    const error = await failure(dba, `select workflow.register_view('billing.guarded_view', '{id}')`);
    expect(error.code).toBe('42501');
    expect(error.message).toContain('billing.hidden_gt(numeric,numeric)');
    expect(error.message).toContain('row security policy positive');
  });
});

describe('a poll that PL/pgSQL cannot catch', () => {
  it('is recorded for its view, and the other views are still polled', async () => {
    await app.query(`create view billing.slow_invoices as
                       select id, amount from billing.invoices, lateral (select pg_catalog.pg_sleep(5)) s`);
    await app.query(`grant select on billing.slow_invoices to rulebook_admin, rulebook_daemon`);
    const [row] = await dba.query<{ id: string }>(
      `select workflow.register_view('billing.slow_invoices', '{id}') as id`,
    );
    // After registering, whose uniqueness check reads the view too.
    await addInvoice(1, 100, 3);
    await viewRule('slow', 'on_create', { title: 't', message: 'm' }, undefined, 'slow_invoices');
    await registerOverdueView();
    await viewRule('any overdue', 'on_create', { title: 't', message: 'm' });
    const pool = new pg.Pool({ connectionString: daemon.url, max: 1, options: '-c statement_timeout=1500' });
    try {
      const results = await pollViews(pool, { force: true });
      expect(results.find((r) => r.entityName === 'billing.slow_invoices')).toMatchObject({
        status: 'error',
        sqlstate: '57014',
      });
      expect(results.find((r) => r.entityName === 'billing.overdue_invoices')).toMatchObject({
        status: 'snapshot',
      });
    } finally {
      await pool.end();
    }
    const [state] = await db.query<{ last_error: string | null; last_polled_at: Date | null }>(
      `select last_error, last_polled_at from workflow.view_entities where entity_id = $1`,
      [row!.id],
    );
    expect(state!.last_error).toContain('statement timeout');
    expect(state!.last_polled_at).not.toBeNull();
  });
});

describe('a view its owner keeps locked', () => {
  it('fails its poll after a bounded wait, recorded, and the other views are still polled', async () => {
    // Over a table of its own: LOCK on a view locks the tables it reads too.
    await app.query(`create table billing.held (id int primary key)`);
    await app.query(`create view billing.held_invoices as select id from billing.held`);
    await app.query(`grant select on billing.held_invoices to rulebook_admin, rulebook_daemon`);
    const [row] = await dba.query<{ id: string }>(
      `select workflow.register_view('billing.held_invoices', '{id}') as id`,
    );
    await viewRule('held', 'on_create', { title: 't', message: 'm' }, undefined, 'held_invoices');
    await registerOverdueView();
    await viewRule('any overdue', 'on_create', { title: 't', message: 'm' });
    const owner = new pg.Client({ connectionString: app.url });
    await owner.connect();
    try {
      await owner.query('begin');
      await owner.query(`lock table billing.held_invoices in access exclusive mode`);
      const results = await pollViews(daemon.pool, { force: true });
      expect(results.find((r) => r.entityName === 'billing.held_invoices')).toMatchObject({
        status: 'error',
        sqlstate: '55P03',
      });
      expect(results.find((r) => r.entityName === 'billing.overdue_invoices')).toMatchObject({
        status: 'snapshot',
      });
      await owner.query('rollback');
    } finally {
      await owner.end();
    }
    const [state] = await db.query<{ last_error: string }>(
      `select last_error from workflow.view_entities where entity_id = $1`,
      [row!.id],
    );
    expect(state!.last_error).toContain('another session holds a lock on billing.held_invoices');
    // Released, the view is polled as usual.
    expect(
      (await pollViews(daemon.pool, { force: true })).find((r) => r.entityName === 'billing.held_invoices'),
    ).toMatchObject({ status: 'snapshot' });
  });
});

describe('session settings of the polling daemon', () => {
  it('do not make bytea columns look changed', async () => {
    await app.query(
      `create view billing.invoice_blobs as select id, pg_catalog.convert_to(customer, 'UTF8') as blob from billing.invoices`,
    );
    await app.query(`grant select on billing.invoice_blobs to rulebook_admin, rulebook_daemon`);
    await dba.query(`select workflow.register_view('billing.invoice_blobs', '{id}')`);
    await viewRule('blob', 'on_update', { title: 't', message: 'm' }, undefined, 'invoice_blobs');
    await addInvoice(1, 100, 3, 'acme');
    const inSetting = async (options: string) => {
      const pool = new pg.Pool({ connectionString: daemon.url, max: 1, options });
      try {
        return await pollViews(pool, { force: true });
      } finally {
        await pool.end();
      }
    };
    expect(await inSetting('-c bytea_output=hex')).toMatchObject([{ status: 'snapshot', rows: 1 }]);
    expect(await inSetting('-c bytea_output=escape')).toMatchObject([{ status: 'polled', updated: 0 }]);
    await app.query(`update billing.invoices set customer = 'acme ltd' where id = 1`);
    expect(await inSetting('-c bytea_output=escape')).toMatchObject([{ status: 'polled', updated: 1 }]);
  });
});
