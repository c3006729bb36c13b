import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { startEngine, TEST_LOG_TABLE } from './support/engine.js';
import { createRule, ensureDba } from './support/rules.js';
import { waitFor } from './support/wait.js';
import { createTable, createUser } from './support/tables.js';

let db: TestDatabase;
let engine: Engine | undefined;
let staffId: string;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.query(TEST_LOG_TABLE);
  await createTable(
    db,
    'sales.orders',
    `
    id uuid primary key default gen_random_uuid(),
    order_number text not null,
    status text not null default 'new',
    amount numeric(12,2),
    ship_by timestamptz,
    n int not null default 0
  `,
  );
  await ensureDba(db);
  staffId = await createUser(db, 'ann@example.com', 'Ann');
});

afterEach(async () => {
  await engine?.stop();
  engine = undefined;
  await db.query(`update workflow.automation_rules set is_active = false`);
});

afterAll(async () => {
  await db.drop();
});

async function drained(): Promise<boolean> {
  const rows = await db.query<{ count: string }>(
    `select count(*) from workflow.events where state = 'pending'`,
  );
  return rows[0]!.count === '0';
}

async function executionsOf(ruleId: string) {
  return db.query<{
    status: string;
    error_message: string | null;
    actions_executed: { name: string; status: string; error?: string; result?: unknown }[];
    trigger_data: Record<string, unknown>;
    entity_type: string;
    execution_time_ms: number;
  }>(`select * from workflow.automation_executions where automation_rules_id = $1 order by executed_at`, [
    ruleId,
  ]);
}

describe('a shipped order', () => {
  it('raises the rule actions once, with the order in the alert', async () => {
    const ruleId = await createRule(db, {
      name: 'Order shipped',
      entity: 'sales.orders',
      trigger: 'on_update',
      conditions: [{ field_name: 'status', operator: 'changed_to', value: 'shipped' }],
      actions: [
        {
          name: 'Tell Ann',
          config: {
            action_type: 'create_alert',
            alert_type: 'order_shipped',
            severity: 'high',
            title: 'Order {{order_number}} shipped',
            message: 'Order {{new.order_number}} went from {{old.status}} to {{new.status}} <fast>',
            recipients: { users: [staffId] },
          },
        },
      ],
    });
    engine = await startEngine(db);
    const [order] = await db.query<{ id: string }>(
      `insert into sales.orders (order_number, amount) values ('SO-1001', 250) returning id`,
    );
    await db.query(`update sales.orders set status = 'packed' where id = $1`, [order!.id]);
    await db.query(`update sales.orders set status = 'shipped' where id = $1`, [order!.id]);
    await db.query(`update sales.orders set amount = 260 where id = $1`, [order!.id]);

    const executions = await waitFor('the execution', async () => {
      const rows = await executionsOf(ruleId);
      return rows.length > 0 && (await drained()) ? rows : undefined;
    });
    expect(executions).toHaveLength(1);
    expect(executions[0]).toMatchObject({ status: 'success', error_message: null, entity_type: 'orders' });
    expect(executions[0]!.trigger_data).toMatchObject({
      operation: 'on_update',
      entity: 'sales.orders',
      row_key: { id: order!.id },
      old: { status: 'packed' },
      new: { status: 'shipped', order_number: 'SO-1001' },
      changed_fields: ['status'],
    });
    expect(executions[0]!.actions_executed).toEqual([
      expect.objectContaining({ name: 'Tell Ann', type: 'create_alert', status: 'success' }),
    ]);
    const alerts = await db.query(
      `select a.title, a.message, a.severity, a.alert_type, a.source_entity_name, a.source_entity_id, a.source_rule_id,
              r.recipient_type, r.recipient_id
         from workflow.alerts a join workflow.alert_recipients r on r.alert_id = a.id`,
    );
    expect(alerts).toEqual([
      {
        title: 'Order SO-1001 shipped',
        message: 'Order SO-1001 went from packed to shipped <fast>',
        severity: 'high',
        alert_type: 'order_shipped',
        source_entity_name: 'sales.orders',
        source_entity_id: order!.id,
        source_rule_id: ruleId,
        recipient_type: 'user',
        recipient_id: staffId,
      },
    ]);
  });

  it('a non-matching update raises nothing', async () => {
    const ruleId = await createRule(db, {
      name: 'Big cancelled order',
      entity: 'sales.orders',
      trigger: 'on_update',
      conditions: [
        { field_name: 'status', operator: 'changed_to', value: 'cancelled' },
        { field_name: 'amount', operator: 'greater_than', value: 1000 },
      ],
      actions: [{ name: 'log', config: { action_type: 'test_log', label: 'cancelled' } }],
    });
    engine = await startEngine(db);
    await db.query(
      `insert into sales.orders (order_number, amount) values ('SO-2', 999.99), ('SO-3', 1000.01)`,
    );
    await db.query(`update sales.orders set status = 'cancelled' where order_number in ('SO-2', 'SO-3')`);
    await waitFor('the events to be handled', drained);
    const executions = await executionsOf(ruleId);
    expect(executions.map((e) => (e.trigger_data.new as { order_number: string }).order_number)).toEqual([
      'SO-3',
    ]);
  });
});

describe('operators through the daemon', () => {
  it('compare numbers as numbers, timestamps as instants and handle nulls', async () => {
    // Each rule reacts to the status change and then tests one more field of the row.
    const statusHeld = { field_name: 'status', operator: 'changed_to', value: 'held' };
    const cases: [string, unknown][] = [
      ['amount > 9 (numeric column)', { field_name: 'amount', operator: 'greater_than', value: 9 }],
      [
        'amount >= "100.5" (string value)',
        { field_name: 'amount', operator: 'greater_or_equal', value: '100.5' },
      ],
      [
        'ship_by before',
        { field_name: 'ship_by', operator: 'less_than', value: '2026-01-01T12:00:00+02:00' },
      ],
      ['ship_by is null', { field_name: 'ship_by', operator: 'is_null' }],
      ['status in', { field_name: 'status', operator: 'in', value: ['held', 'review'] }],
      ['number contains', { field_name: 'order_number', operator: 'contains', value: 'VIP' }],
      ['changed_from new', { field_name: 'status', operator: 'changed_from', previous_value: 'new' }],
    ];
    for (const [name, condition] of cases) {
      await createRule(db, {
        name,
        entity: 'sales.orders',
        trigger: 'on_update',
        conditions: [statusHeld, condition],
        actions: [{ name: 'log', config: { action_type: 'test_log', label: name } }],
      });
    }
    engine = await startEngine(db);
    await db.query(`delete from test_log`);
    // 10 > 9 (as text, "10" < "9"); ship_by 09:59Z is before 12:00+02:00 (10:00Z); null is not before anything.
    await db.query(
      `insert into sales.orders (order_number, amount, ship_by, status)
       values ('OP-VIP-1', 10, null, 'new'), ('OP-2', 100.5, '2026-01-01T09:59:00Z', 'new')`,
    );
    await db.query(`update sales.orders set status = 'held' where order_number like 'OP-%'`);
    await waitFor('the events to be handled', drained);
    const log = await db.query<{ label: string; order_number: string }>(
      `select t.label, o.order_number from test_log t join sales.orders o on o.id = (t.row_key->>'id')::uuid`,
    );
    expect(log.map((row) => `${row.label}: ${row.order_number}`).sort()).toEqual(
      [
        'amount > 9 (numeric column): OP-2',
        'amount > 9 (numeric column): OP-VIP-1',
        'amount >= "100.5" (string value): OP-2',
        'changed_from new: OP-2',
        'changed_from new: OP-VIP-1',
        'number contains: OP-VIP-1',
        'ship_by before: OP-2',
        'ship_by is null: OP-VIP-1',
        'status in: OP-2',
        'status in: OP-VIP-1',
      ].sort(),
    );
  });
});

describe('ordered actions', () => {
  it('run in execution_order; one failing makes the execution partial and the rest still run', async () => {
    await db.query(`delete from test_log`);
    const ruleId = await createRule(db, {
      name: 'Three steps',
      entity: 'sales.orders',
      trigger: 'on_create',
      actions: [
        { name: 'third', order: 3, config: { action_type: 'test_log', label: 'third' } },
        { name: 'first', order: 1, config: { action_type: 'test_log', label: 'first {{order_number}}' } },
        { name: 'second', order: 2, config: { action_type: 'test_log', label: 'second', fail: true } },
      ],
    });
    engine = await startEngine(db);
    await db.query(`insert into sales.orders (order_number) values ('ORD-A')`);
    const [execution] = await waitFor('the execution', async () => {
      const rows = await executionsOf(ruleId);
      return rows.length > 0 ? rows : undefined;
    });
    expect(execution!.status).toBe('partial');
    expect(execution!.error_message).toContain('action "second": test_log: asked to fail');
    expect(execution!.actions_executed.map((a) => [a.name, a.status])).toEqual([
      ['first', 'success'],
      ['second', 'failed'],
      ['third', 'success'],
    ]);
    const log = await db.query<{ label: string }>(`select label from test_log order by seq`);
    expect(log.map((row) => row.label)).toEqual(['first ORD-A', 'third']);
  });

  it('stop at a failing action whose config says on_error: stop', async () => {
    await db.query(`delete from test_log`);
    const ruleId = await createRule(db, {
      name: 'Stop on error',
      entity: 'sales.orders',
      trigger: 'on_create',
      actions: [
        { name: 'first', config: { action_type: 'test_log', label: 'first', fail: true, on_error: 'stop' } },
        { name: 'second', config: { action_type: 'test_log', label: 'second' } },
      ],
    });
    engine = await startEngine(db);
    await db.query(`insert into sales.orders (order_number) values ('ORD-B')`);
    const [execution] = await waitFor('the execution', async () => {
      const rows = await executionsOf(ruleId);
      return rows.length > 0 ? rows : undefined;
    });
    expect(execution!.status).toBe('failed');
    expect(execution!.actions_executed.map((a) => [a.name, a.status])).toEqual([
      ['first', 'failed'],
      ['second', 'skipped'],
    ]);
    expect(await db.query(`select label from test_log`)).toEqual([]);
  });

  it('roll back only the action that fails with a database error; the rest of its batch commits once', async () => {
    await db.query(`delete from test_log`);
    await db.query(`alter table test_log add column if not exists txid bigint default txid_current()`);
    const continuing = await createRule(db, {
      name: 'Price from the order number',
      entity: 'sales.orders',
      trigger: 'on_update',
      conditions: [{ field_name: 'status', operator: 'changed_to', value: 'priced' }],
      actions: [
        { name: 'before', order: 1, config: { action_type: 'test_log', label: 'before {{order_number}}' } },
        {
          name: 'price',
          order: 2,
          config: { action_type: 'update_field', field: 'amount', value: '{{order_number}}' },
        },
        { name: 'after', order: 3, config: { action_type: 'test_log', label: 'after {{order_number}}' } },
      ],
    });
    const stopping = await createRule(db, {
      name: 'Count from the order number',
      entity: 'sales.orders',
      trigger: 'on_update',
      conditions: [{ field_name: 'status', operator: 'changed_to', value: 'priced' }],
      actions: [
        {
          name: 'count',
          order: 1,
          config: { action_type: 'update_field', field: 'n', value: '{{order_number}}', on_error: 'stop' },
        },
        { name: 'counted', order: 2, config: { action_type: 'test_log', label: 'counted {{order_number}}' } },
      ],
    });
    // Six events committed together, so that one claim takes them all; the fourth one's order
    // number is not a number, so its update_field actions fail in the database (22P02).
    const numbers = ['701', '702', '703', 'BAD-704', '705', '706'];
    await db.query(`insert into sales.orders (order_number) select unnest($1::text[])`, [numbers]);
    await db.query(`update sales.orders set status = 'priced' where order_number = any($1)`, [numbers]);
    engine = await startEngine(db, { concurrency: 1 });

    const [priced, counted] = await waitFor('both rules to run for every event', async () => {
      const [a, b] = [await executionsOf(continuing), await executionsOf(stopping)];
      return a.length >= 6 && b.length >= 6 && (await drained()) ? [a, b] : undefined;
    });
    const byOrder = (rows: typeof priced) =>
      new Map(rows.map((row) => [(row.trigger_data.new as { order_number: string }).order_number, row]));
    expect(priced).toHaveLength(6);
    expect(counted).toHaveLength(6);
    for (const [number, execution] of byOrder(priced)) {
      const statuses = execution.actions_executed.map((a) => [a.name, a.status]);
      if (number === 'BAD-704') {
        expect(execution.status).toBe('partial');
        expect(execution.error_message).toMatch(
          /action "price": update_field: could not set sales\.orders\.amount/,
        );
        expect(statuses).toEqual([
          ['before', 'success'],
          ['price', 'failed'],
          ['after', 'success'],
        ]);
      } else {
        expect(execution.status).toBe('success');
        expect(statuses).toEqual([
          ['before', 'success'],
          ['price', 'success'],
          ['after', 'success'],
        ]);
      }
    }
    for (const [number, execution] of byOrder(counted)) {
      expect(execution.status).toBe(number === 'BAD-704' ? 'failed' : 'success');
      expect(execution.actions_executed.map((a) => [a.name, a.status])).toEqual(
        number === 'BAD-704'
          ? [
              ['count', 'failed'],
              ['counted', 'skipped'],
            ]
          : [
              ['count', 'success'],
              ['counted', 'success'],
            ],
      );
    }

    const orders = await db.query<{ order_number: string; amount: string | null; n: number }>(
      `select order_number, amount, n from sales.orders where order_number = any($1) order by order_number`,
      [numbers],
    );
    expect(orders).toEqual(
      [...numbers]
        .sort()
        .map((number) =>
          number === 'BAD-704'
            ? { order_number: number, amount: null, n: 0 }
            : { order_number: number, amount: `${number}.00`, n: Number(number) },
        ),
    );
    // Each action's row once: the failing action's neighbours kept, nothing doubled by the rerun.
    const log = await db.query<{ label: string; txid: string }>(`select label, txid from test_log`);
    expect(log.map((row) => row.label).sort()).toEqual(
      numbers
        .flatMap((number) =>
          number === 'BAD-704'
            ? [`before ${number}`, `after ${number}`]
            : [`before ${number}`, `after ${number}`, `counted ${number}`],
        )
        .sort(),
    );
    // One batch, one transaction: the failure did not split the batch into one transaction per event.
    expect(new Set(log.map((row) => row.txid)).size).toBe(1);
    // Counted once, for the committed run only.
    expect(engine.metrics.eventsProcessed.value()).toBe(6);
    expect(engine.metrics.eventsFailed.value('pending') + engine.metrics.eventsFailed.value('dead')).toBe(0);
    expect(engine.metrics.executions.value('success')).toBe(10);
    expect(engine.metrics.executions.value('partial')).toBe(1);
    expect(engine.metrics.executions.value('failed')).toBe(1);
  });

  it('records an unknown action type as a failed action, naming the known ones', async () => {
    const ruleId = await createRule(db, {
      name: 'Typo',
      entity: 'sales.orders',
      trigger: 'on_create',
      actions: [{ name: 'oops', config: { action_type: 'send_emial' } }],
    });
    engine = await startEngine(db);
    await db.query(`insert into sales.orders (order_number) values ('ORD-C')`);
    const [execution] = await waitFor('the execution', async () => {
      const rows = await executionsOf(ruleId);
      return rows.length > 0 ? rows : undefined;
    });
    expect(execution!.status).toBe('failed');
    expect(execution!.actions_executed[0]!.error).toMatch(
      /unknown action type "send_emial" \(known: .*create_alert/,
    );
  });

  it('takes the type and defaults from a template, overlaid by action_config', async () => {
    await db.query(`delete from test_log`);
    const [template] = await db.query<{ id: string }>(
      `insert into workflow.action_templates (name, action_type, default_config, created_by)
       values ('log template', 'test_log', '{"label": "from template", "extra": {"a": 1}}',
               (select id from core.users where email = 'dba@example.com')) returning id`,
    );
    const ruleId = await createRule(db, { name: 'Templated', entity: 'sales.orders', trigger: 'on_create' });
    await db.query(
      `insert into workflow.rule_actions (automation_rules_id, name, action_config, execution_order, template_id)
       values ($1, 'a', '{}', 1, $2), ($1, 'b', '{"label": "overridden {{order_number}}"}', 2, $2)`,
      [ruleId, template!.id],
    );
    engine = await startEngine(db);
    await db.query(`insert into sales.orders (order_number) values ('ORD-T')`);
    await waitFor('the execution', async () => (await executionsOf(ruleId)).length > 0);
    const log = await db.query<{ label: string }>(`select label from test_log order by seq`);
    expect(log.map((row) => row.label)).toEqual(['from template', 'overridden ORD-T']);
  });
});

describe('rule dependencies', () => {
  it('run a child after its parent, and skip it with the reason when the parent fails', async () => {
    await db.query(`delete from test_log`);
    const parentOk = await createRule(db, {
      name: 'Parent ok',
      entity: 'sales.orders',
      trigger: 'on_create',
      actions: [{ name: 'p', config: { action_type: 'test_log', label: 'parent ok' } }],
    });
    const parentFails = await createRule(db, {
      name: 'Parent fails',
      entity: 'sales.orders',
      trigger: 'on_create',
      actions: [{ name: 'p', config: { action_type: 'test_log', label: 'x', fail: true } }],
    });
    // Created first, so only the dependency can put it after its parent.
    const childOfOk = await createRule(db, {
      name: 'Child of ok',
      entity: 'sales.orders',
      trigger: 'on_create',
      actions: [{ name: 'c', config: { action_type: 'test_log', label: 'child of ok' } }],
    });
    const childOfFailed = await createRule(db, {
      name: 'Child of failed',
      entity: 'sales.orders',
      trigger: 'on_create',
      actions: [{ name: 'c', config: { action_type: 'test_log', label: 'child of failed' } }],
    });
    await db.query(
      `insert into workflow.rule_dependencies (parent_rule_id, child_rule_id) values ($1, $2), ($3, $4)`,
      [parentOk, childOfOk, parentFails, childOfFailed],
    );
    engine = await startEngine(db);
    await db.query(`insert into sales.orders (order_number) values ('DEP-1')`);
    await waitFor('the executions', async () => (await executionsOf(childOfFailed)).length > 0);
    const log = await db.query<{ label: string }>(`select label from test_log order by seq`);
    expect(log.map((row) => row.label)).toEqual(['parent ok', 'child of ok']);
    const [skipped] = await executionsOf(childOfFailed);
    expect(skipped!.status).toBe('skipped');
    expect(skipped!.error_message).toContain(`parent rule ${parentFails} failed`);
    expect((await executionsOf(childOfOk))[0]!.status).toBe('success');
  });
});

describe('chains and manual runs', () => {
  it('stops a rule that keeps triggering itself at the configured depth, with a clear failure', async () => {
    await db.query(`create table sales.counters (id int primary key, n int not null default 0)`);
    await db.query(`insert into sales.counters values (1, 0)`);
    const bump = {
      type: 'bump',
      async execute(context: { client: { query: (sql: string) => Promise<unknown> } }) {
        await context.client.query(`update sales.counters set n = n + 1 where id = 1`);
        return null;
      },
    };
    const ruleId = await createRule(db, {
      name: 'Loop',
      entity: 'sales.counters',
      trigger: 'on_update',
      conditions: [{ field_name: 'n', operator: 'changed' }],
      actions: [{ name: 'bump', config: { action_type: 'bump' } }],
    });
    const { testActions } = await import('./support/engine.js');
    const actions = testActions();
    actions.register(bump as never);
    engine = await startEngine(db, { maxChainDepth: 3, actions });
    await db.query(`update sales.counters set n = 1 where id = 1`);
    const failed = await waitFor('the chain to be stopped', async () => {
      const rows = await executionsOf(ruleId);
      return rows.find((row) => row.status === 'failed');
    });
    expect(failed.error_message).toMatch(/chain depth 4 exceeds the limit of 3/);
    const [counter] = await db.query<{ n: number }>(`select n from sales.counters`);
    expect(counter!.n).toBe(5); // the update at depth 0, then bumps at depths 1, 2, 3 and... 4 refused
    expect((await executionsOf(ruleId)).filter((row) => row.status === 'success')).toHaveLength(4);
  });

  it('runs a rule by hand with workflow.run_rule', async () => {
    await db.query(`delete from test_log`);
    const ruleId = await createRule(db, {
      name: 'Manual',
      entity: 'sales.orders',
      trigger: 'on_update',
      conditions: [{ field_name: 'status', operator: 'equals', value: 'never' }],
      actions: [{ name: 'log', config: { action_type: 'test_log', label: 'manual {{order_number}}' } }],
    });
    engine = await startEngine(db);
    const [{ event_id }] = (await db.query<{ event_id: string }>(
      `select workflow.run_rule($1, '{"id": "6a0e1f5e-1111-4c4c-9d9d-000000000001", "order_number": "HAND-1"}') as event_id`,
      [ruleId],
    )) as [{ event_id: string }];
    const [execution] = await waitFor('the manual execution', async () => {
      const rows = await executionsOf(ruleId);
      return rows.length > 0 ? rows : undefined;
    });
    expect(execution!.trigger_data).toMatchObject({ event_id, operation: 'manual' });
    expect((await db.query<{ label: string }>(`select label from test_log`)).map((r) => r.label)).toEqual([
      'manual HAND-1',
    ]);
  });

  it('reports bad run_rule input as SQL errors', async () => {
    await expect(db.query(`select workflow.run_rule(gen_random_uuid(), '{}')`)).rejects.toMatchObject({
      code: 'P0002',
      message: expect.stringMatching(/no automation rule/),
    });
  });
});
