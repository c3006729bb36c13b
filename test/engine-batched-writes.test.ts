import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { startEngine } from './support/engine.js';
import { executionsOf } from './support/executions.js';
import { createRule } from './support/rules.js';
import { waitFor } from './support/wait.js';
import { createTable, createUser } from './support/tables.js';

let db: TestDatabase;
let engine: Engine | undefined;
let annId: string;

beforeAll(async () => {
  db = await createTestDatabase();
  await createTable(db, 'sales.orders', `id int primary key, status text not null default 'new'`);
  await db.query(`insert into sales.orders (id) select g from generate_series(1, 100) g`);
  annId = await createUser(db, 'ann@example.com', 'Ann');
  // How many INSERT statements wrote alerts and recipients, and how many rows each.
  await db.query(`create table public.insert_statements (tbl text not null, rows int not null)`);
  await db.query(`create function public.count_insert() returns trigger language plpgsql as $$
    begin
      insert into public.insert_statements select tg_table_name, count(*) from added;
      return null;
    end $$`);
  for (const table of ['alerts', 'alert_recipients', 'notification_payloads', 'notification_deliveries']) {
    await db.query(`create trigger count_insert after insert on workflow.${table}
      referencing new table as added for each statement execute function public.count_insert()`);
  }
});

afterEach(async () => {
  await engine?.stop();
  engine = undefined;
  await db.query(`update workflow.automation_rules set is_active = false`);
  await db.query(`delete from public.insert_statements`);
});

afterAll(async () => {
  await db.drop();
});

function alertRule(name: string, status: string, recipients: string[], extra: Record<string, unknown> = {}) {
  return createRule(db, {
    name,
    entity: 'sales.orders',
    trigger: 'on_update',
    conditions: [{ field_name: 'status', operator: 'changed_to', value: status }],
    actions: [
      {
        name: 'alert',
        config: {
          action_type: 'create_alert',
          alert_type: name,
          title: 'Order {{id}} {{status}}',
          message: 'm',
          recipients: { users: recipients },
          ...extra,
        },
      },
    ],
  });
}

async function statements(table: string): Promise<{ count: number; rows: number }> {
  const [row] = await db.query<{ count: string; rows: string | null }>(
    `select count(*), sum(rows) as rows from public.insert_statements where tbl = $1`,
    [table],
  );
  return { count: Number(row!.count), rows: Number(row!.rows ?? 0) };
}

describe("a batch's alerts", () => {
  it('are written together: 100 matched events, one statement for the alerts and one for the recipients', async () => {
    const ruleId = await alertRule('shipped', 'shipped', [annId], { expires_in: '2 days' });
    await db.query(`update sales.orders set status = 'shipped'`);
    engine = await startEngine(db, { batchSize: 100, concurrency: 1 });
    await waitFor('100 executions', async () => (await executionsOf(db, ruleId)).length >= 100);

    expect(await statements('alerts')).toEqual({ count: 1, rows: 100 });
    expect(await statements('alert_recipients')).toEqual({ count: 1, rows: 100 });
    // Each execution names its own alert, as when alerts were written one at a time.
    const executions = await executionsOf<{ alert_id: string; recipients: number; expires_date: string }>(
      db,
      ruleId,
    );
    expect(executions.every((execution) => execution.status === 'success')).toBe(true);
    const named = await db.query<{ title: string; days: number; recipients: string }>(
      `select a.title, extract(day from a.expires_date - a.created_date)::int as days,
              (select count(*) from workflow.alert_recipients r where r.alert_id = a.id) as recipients
         from workflow.alerts a where a.id = any ($1::uuid[]) order by a.title`,
      [executions.map((execution) => execution.actions_executed[0]!.result!.alert_id)],
    );
    expect(named).toHaveLength(100);
    expect(named.every((alert) => alert.days === 2 && alert.recipients === '1')).toBe(true);
    const result = executions[0]!.actions_executed[0]!.result!;
    expect(result.recipients).toBe(1);
    expect(new Date(result.expires_date).getTime()).toBeGreaterThan(Date.now() + 47 * 3600_000);
  });

  it("keep an action's failure to itself: the batch's other alerts are written once", async () => {
    await db.query(`update sales.orders set status = 'new'`);
    const [bob] = await db.query<{ id: string }>(
      `insert into core.users (email, name) values ('bob@example.com', 'Bob') returning id`,
    );
    const good = await alertRule('packed for Ann', 'packed', [annId]);
    const bad = await alertRule('packed for Bob', 'packed', [bob!.id]);
    await db.query(`delete from core.users where id = $1`, [bob!.id]);
    await db.query(`update sales.orders set status = 'packed'`);
    engine = await startEngine(db, { batchSize: 100, concurrency: 1 });
    await waitFor('200 executions', async () => {
      return (await executionsOf(db, good)).length + (await executionsOf(db, bad)).length >= 200;
    });

    const goodRuns = await executionsOf(db, good);
    const badRuns = await executionsOf(db, bad);
    expect(goodRuns.map((run) => run.status)).toEqual(Array(100).fill('success'));
    expect(badRuns.map((run) => run.status)).toEqual(Array(100).fill('failed'));
    expect(badRuns[0]!.actions_executed[0]!.error).toBe(`create_alert: unknown recipients: user ${bob!.id}`);
    const [alerts] = await db.query<{ good: string; bad: string }>(
      `select count(*) filter (where alert_type = 'packed for Ann') as good,
              count(*) filter (where alert_type = 'packed for Bob') as bad
         from workflow.alerts`,
    );
    expect(alerts).toEqual({ good: '100', bad: '0' });
    await db.query(`update workflow.automation_rules set is_active = false where id = $1`, [bad]);
  });

  it('resolve_prior still sees the alerts written earlier in the same batch', async () => {
    await db.query(`update sales.orders set status = 'new'`);
    await db.query(`create table sales.counters (id uuid primary key, n int not null default 0)`);
    const [row] = await db.query<{ id: string }>(
      `insert into sales.counters (id) values (gen_random_uuid()) returning id`,
    );
    const ruleId = await createRule(db, {
      name: 'latest count',
      entity: 'sales.counters',
      trigger: 'on_update',
      conditions: [{ field_name: 'n', operator: 'changed' }],
      actions: [
        {
          name: 'alert',
          config: {
            action_type: 'create_alert',
            alert_type: 'latest count',
            title: 'n = {{n}}',
            message: 'm',
            recipients: { users: [annId] },
            resolve_prior: true,
          },
        },
      ],
    });
    // Ten updates of one row, queued before the daemon runs: one batch handles them in order.
    for (let i = 0; i < 10; i++)
      await db.query(`update sales.counters set n = n + 1 where id = $1`, [row!.id]);
    engine = await startEngine(db, { batchSize: 100, concurrency: 1 });
    await waitFor('10 executions', async () => (await executionsOf(db, ruleId)).length >= 10);
    const alerts = await db.query<{ title: string; status: string }>(
      `select title, status from workflow.alerts where alert_type = 'latest count' order by title`,
    );
    expect(alerts.filter((alert) => alert.status === 'active')).toEqual([
      { title: 'n = 10', status: 'active' },
    ]);
    expect(alerts).toHaveLength(10);
  });
});

describe("a batch's webhooks", () => {
  it('are queued together: one statement for the payloads and one for the deliveries', async () => {
    await db.query(`update sales.orders set status = 'new'`);
    const ruleId = await createRule(db, {
      name: 'tell the shop',
      entity: 'sales.orders',
      trigger: 'on_update',
      conditions: [{ field_name: 'status', operator: 'changed_to', value: 'paid' }],
      actions: [
        {
          name: 'hook',
          config: {
            action_type: 'webhook',
            url: 'https://shop.example.com/orders/{{id}}',
            body: { id: '{{id}}' },
          },
        },
      ],
    });
    await db.query(`update sales.orders set status = 'paid'`);
    engine = await startEngine(db, { batchSize: 100, concurrency: 1 });
    await waitFor('100 executions', async () => (await executionsOf(db, ruleId)).length >= 100);

    expect(await statements('notification_payloads')).toEqual({ count: 1, rows: 100 });
    expect(await statements('notification_deliveries')).toEqual({ count: 1, rows: 100 });
    const executions = await executionsOf<{ notification_id: string; url: string }>(db, ruleId);
    const queued = await db.query<{ url: string; status: string; execution: string }>(
      `select p.payload ->> 'url' as url, d.status, d.automation_execution_id::text as execution
         from workflow.notification_deliveries d join workflow.notification_payloads p on p.id = d.notification_id
        where d.notification_id = any ($1::uuid[])`,
      [executions.map((execution) => execution.actions_executed[0]!.result!.notification_id)],
    );
    expect(queued).toHaveLength(100);
    expect(new Set(queued.map((row) => row.url)).size).toBe(100);
    expect(queued.every((row) => row.status === 'pending')).toBe(true);
  });
});
