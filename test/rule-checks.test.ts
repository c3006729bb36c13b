import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { waitFor } from './support/wait.js';

// A DBA writes rules in plain SQL. These stories check that the database itself refuses every bad
// rule at once, with a SQLSTATE a script can match on and a message that names the rule and field.

let db: TestDatabase;
let userId: string;

/** Runs a statement that must fail and returns the server's error. */
async function rejection(statement: Promise<unknown>): Promise<pg.DatabaseError> {
  try {
    await statement;
  } catch (error) {
    if (error instanceof pg.DatabaseError) return error;
    throw error;
  }
  throw new Error('expected the statement to be rejected, but it succeeded');
}

interface RuleSpec {
  name: string;
  entity?: string;
  trigger?: string;
  conditions?: unknown;
  /** Overrides the entity's own entity type. */
  entityType?: string;
}

const INSERT_RULE = `
  insert into workflow.automation_rules
    (name, entity_id, entity_type_id, trigger_type_id, trigger_conditions, created_by, updated_by)
  select $1, e.id, coalesce((select id from workflow.entity_types where name = $5), e.entity_type_id),
         t.id, $4::jsonb, $6, $6
    from workflow.entities e, workflow.trigger_types t
   where e.name = $2 and t.name = $3
  returning id`;

function ruleParams(spec: RuleSpec): unknown[] {
  return [
    spec.name,
    spec.entity ?? 'orders',
    spec.trigger ?? 'on_update',
    spec.conditions === undefined ? null : JSON.stringify(spec.conditions),
    spec.entityType ?? null,
    userId,
  ];
}

async function insertRule(spec: RuleSpec): Promise<string> {
  const rows = await db.query<{ id: string }>(INSERT_RULE, ruleParams(spec));
  if (rows.length !== 1) throw new Error(`rule "${spec.name}" was not inserted`);
  return rows[0]!.id;
}

function conditions(...fieldConditions: unknown[]): unknown {
  return { field_conditions: fieldConditions };
}

beforeAll(async () => {
  db = await createTestDatabase();
  await db.query(`
    create schema sales;
    create table sales.orders (
      id bigint generated always as identity primary key,
      status text not null default 'new',
      amount numeric,
      note text,
      tags text[]
    );
    create view sales.open_orders as select * from sales.orders where status <> 'closed';
  `);
  await db.query(
    `select workflow.register_entity('sales.orders'), workflow.register_entity('sales.open_orders')`,
  );
  const users = await db.query<{ id: string }>(
    `insert into core.users (email, name) values ('dba@example.com', 'DBA') returning id`,
  );
  userId = users[0]!.id;
});

afterAll(async () => {
  await db?.drop();
});

describe('status and type columns accept only their documented values', () => {
  let ruleId: string;
  beforeAll(async () => {
    ruleId = await insertRule({ name: 'status values rule', trigger: 'on_create' });
  });

  it('alerts.severity and alerts.status', async () => {
    for (const severity of ['low', 'medium', 'high', 'critical']) {
      await db.query(
        `insert into workflow.alerts (alert_type, severity, title, message) values ('t', $1, 'title', 'message')`,
        [severity],
      );
    }
    const severity = await rejection(
      db.query(
        `insert into workflow.alerts (alert_type, severity, title, message) values ('t', 'urgent', 'title', 'message')`,
      ),
    );
    expect(severity).toMatchObject({ code: '23514', table: 'alerts', constraint: 'alerts_severity_check' });
    expect(severity.message).toContain('alerts_severity_check');

    const [alert] = await db.query<{ id: string }>(
      `insert into workflow.alerts (alert_type, title, message) values ('t', 'title', 'message') returning id`,
    );
    for (const status of ['acknowledged', 'dismissed', 'resolved', 'active']) {
      await db.query('update workflow.alerts set status = $1 where id = $2', [status, alert!.id]);
    }
    const status = await rejection(
      db.query(`update workflow.alerts set status = 'open' where id = $1`, [alert!.id]),
    );
    expect(status).toMatchObject({ code: '23514', table: 'alerts', constraint: 'alerts_status_check' });
    expect(status.message).toContain('alerts_status_check');
  });

  it('alert_recipients.recipient_type', async () => {
    const [alert] = await db.query<{ id: string }>(
      `insert into workflow.alerts (alert_type, title, message) values ('t', 'title', 'message') returning id`,
    );
    for (const type of ['user', 'role']) {
      await db.query(
        `insert into workflow.alert_recipients (alert_id, recipient_type, recipient_id) values ($1, $2, $3)`,
        [alert!.id, type, userId],
      );
    }
    const error = await rejection(
      db.query(
        `insert into workflow.alert_recipients (alert_id, recipient_type, recipient_id) values ($1, 'group', $2)`,
        [alert!.id, userId],
      ),
    );
    expect(error).toMatchObject({
      code: '23514',
      table: 'alert_recipients',
      constraint: 'alert_recipients_recipient_type_check',
    });
    expect(error.message).toContain('alert_recipients_recipient_type_check');
  });

  it('automation_executions.status', async () => {
    const insert = (status: string) =>
      db.query(
        `insert into workflow.automation_executions (automation_rules_id, entity_type, status)
         values ($1, 'orders', $2)`,
        [ruleId, status],
      );
    for (const status of ['success', 'failed', 'partial', 'skipped']) await insert(status);
    const error = await rejection(insert('done'));
    expect(error).toMatchObject({
      code: '23514',
      table: 'automation_executions',
      constraint: 'automation_executions_status_check',
    });
    expect(error.message).toContain('automation_executions_status_check');
  });

  it('notification_deliveries.status', async () => {
    const insert = (status: string) =>
      db.query(
        `insert into workflow.notification_deliveries (notification_id, rule_id, recipient_id, channel, status)
         values (gen_random_uuid(), $1, $2, 'email', $3)`,
        [ruleId, userId, status],
      );
    for (const status of ['pending', 'sent', 'delivered', 'failed', 'bounced', 'retrying'])
      await insert(status);
    const error = await rejection(insert('queued'));
    expect(error).toMatchObject({
      code: '23514',
      table: 'notification_deliveries',
      constraint: 'notification_deliveries_status_check',
    });
    expect(error.message).toContain('notification_deliveries_status_check');
  });
});

describe('rule actions', () => {
  let ruleId: string;
  let otherRuleId: string;
  const insertAction = (rule: string, name: string, order: number) =>
    db.query<{ id: string }>(
      `insert into workflow.rule_actions (automation_rules_id, name, action_config, execution_order)
       values ($1, $2, '{}', $3) returning id`,
      [rule, name, order],
    );

  beforeAll(async () => {
    ruleId = await insertRule({ name: 'actions rule', trigger: 'on_create' });
    otherRuleId = await insertRule({ name: 'other actions rule', trigger: 'on_create' });
  });

  it('execution_order starts at 1', async () => {
    for (const order of [0, -1]) {
      const error = await rejection(insertAction(ruleId, 'zeroth', order));
      expect(error).toMatchObject({
        code: '23514',
        table: 'rule_actions',
        constraint: 'rule_actions_execution_order_check',
      });
      expect(error.message).toContain('rule_actions_execution_order_check');
    }
  });

  it('execution_order is unique per rule, not across rules', async () => {
    await insertAction(ruleId, 'first', 1);
    await insertAction(ruleId, 'second', 2);
    await insertAction(otherRuleId, 'first elsewhere', 1);
    const error = await rejection(insertAction(ruleId, 'another first', 1));
    expect(error).toMatchObject({
      code: '23505',
      table: 'rule_actions',
      constraint: 'rule_actions_execution_order_unique',
    });
    expect(error.detail).toContain('execution_order');
  });

  it('a single UPDATE can swap two actions', async () => {
    const rows = await db.query<{ name: string; execution_order: number }>(
      `update workflow.rule_actions set execution_order = 3 - execution_order
        where automation_rules_id = $1 returning name, execution_order`,
      [ruleId],
    );
    expect(rows.sort((a, b) => a.execution_order - b.execution_order)).toEqual([
      { name: 'second', execution_order: 1 },
      { name: 'first', execution_order: 2 },
    ]);
    // Moving one action onto another's place one row at a time is still refused.
    const error = await rejection(
      db.query(
        `update workflow.rule_actions set execution_order = 1 where automation_rules_id = $1 and name = 'first'`,
        [ruleId],
      ),
    );
    expect(error.code).toBe('23505');
  });
});

describe('automation rules', () => {
  it('entity_type_id must be the entity’s own', async () => {
    const error = await rejection(insertRule({ name: 'Mistyped rule', entityType: 'view' }));
    expect(error.code).toBe('23514');
    expect(error.message).toContain('automation rule "Mistyped rule"');
    expect(error.message).toContain('entity_type_id');
    expect(error.message).toContain('entity "orders"');
  });

  it('an UPDATE that changes entity_type_id away from the entity’s is refused too', async () => {
    const id = await insertRule({ name: 'Retyped rule' });
    const error = await rejection(
      db.query(
        `update workflow.automation_rules set entity_type_id = (select id from workflow.entity_types where name = 'view')
          where id = $1`,
        [id],
      ),
    );
    expect(error.code).toBe('23514');
    expect(error.message).toContain('automation rule "Retyped rule"');
  });

  it('accepts every operator used the way it is documented', async () => {
    await insertRule({
      name: 'All operators',
      conditions: conditions(
        { field_name: 'status', operator: 'equals', value: 'shipped' },
        { field_name: 'status', operator: 'not_equals', value: 'new' },
        { field_name: 'status', operator: 'changed_from', previous_value: 'new' },
        { field_name: 'status', operator: 'changed_to', value: 'shipped' },
        { field_name: 'status', operator: 'changed' },
        { field_name: 'amount', operator: 'greater_than', value: 10 },
        { field_name: 'amount', operator: 'less_than', value: 1000 },
        { field_name: 'amount', operator: 'greater_or_equal', value: 10 },
        { field_name: 'amount', operator: 'less_or_equal', value: 1000 },
        { field_name: 'note', operator: 'contains', value: 'rush' },
        { field_name: 'status', operator: 'in', value: ['shipped', 'delivered'] },
        { field_name: 'status', operator: 'not_in', value: ['cancelled'] },
        { field_name: 'note', operator: 'is_null' },
        { field_name: 'tags', operator: 'is_not_null' },
      ),
    });
    await insertRule({ name: 'No conditions' });
    await insertRule({ name: 'Empty conditions', conditions: {} });
    await insertRule({ name: 'Empty list', conditions: conditions() });
  });

  it('trigger_conditions must be a JSON object', async () => {
    for (const [value, type] of [
      [[], 'array'],
      ['status', 'string'],
      [42, 'number'],
    ] as const) {
      const error = await rejection(insertRule({ name: 'Not an object', conditions: value }));
      expect(error.code).toBe('22023');
      expect(error.message).toBe(
        `automation rule "Not an object": trigger_conditions must be a JSON object, got ${type}`,
      );
    }
  });

  it('field_conditions must be an array', async () => {
    const error = await rejection(
      insertRule({
        name: 'Not a list',
        conditions: { field_conditions: { field_name: 'status', operator: 'changed' } },
      }),
    );
    expect(error.code).toBe('22023');
    expect(error.message).toBe(
      'automation rule "Not a list": trigger_conditions.field_conditions must be an array, got object',
    );
  });

  it('an unknown operator is named, and the hint lists the known ones', async () => {
    const error = await rejection(
      insertRule({
        name: 'Fuzzy rule',
        conditions: conditions(
          { field_name: 'status', operator: 'changed' },
          { field_name: 'status', operator: 'matches', value: 'ship.*' },
        ),
      }),
    );
    expect(error.code).toBe('22023');
    expect(error.message).toBe(
      'automation rule "Fuzzy rule": trigger_conditions.field_conditions[1]: unknown operator "matches"',
    );
    expect(error.hint).toMatch(
      /^Known operators: equals, not_equals, .*is_not_null, older_than, newer_than, within_next\.$/,
    );
    for (const operator of ['changed_from', 'changed_to', 'in', 'not_in', 'contains', 'is_null']) {
      expect(error.hint).toContain(operator);
    }
  });

  it('field_name must be a column of the entity’s table', async () => {
    const error = await rejection(
      insertRule({
        name: 'Colour rule',
        conditions: conditions({ field_name: 'colour', operator: 'changed' }),
      }),
    );
    expect(error.code).toBe('42703');
    expect(error.message).toContain('automation rule "Colour rule"');
    expect(error.message).toContain('field_name "colour" is not a column of sales.orders');
  });

  it('field_name is matched exactly, as the column is spelled', async () => {
    const error = await rejection(
      insertRule({
        name: 'Shouting rule',
        conditions: conditions({ field_name: 'Status', operator: 'changed' }),
      }),
    );
    expect(error.code).toBe('42703');
    expect(error.message).toContain('field_name "Status"');
  });

  it('in and not_in need an array value', async () => {
    for (const operator of ['in', 'not_in']) {
      const error = await rejection(
        insertRule({
          name: 'Scalar in',
          conditions: conditions({ field_name: 'status', operator, value: 'shipped' }),
        }),
      );
      expect(error.code).toBe('22023');
      expect(error.message).toContain('automation rule "Scalar in"');
      expect(error.message).toContain(`operator "${operator}" needs "value" to be an array, got string`);
    }
    const missing = await rejection(
      insertRule({ name: 'Empty in', conditions: conditions({ field_name: 'status', operator: 'in' }) }),
    );
    expect(missing.code).toBe('22023');
    expect(missing.message).toContain('got nothing');
  });

  it('comparisons need a value, and changed_from needs a previous_value', async () => {
    for (const operator of [
      'equals',
      'not_equals',
      'changed_to',
      'greater_than',
      'less_or_equal',
      'contains',
    ]) {
      const error = await rejection(
        insertRule({ name: 'Valueless', conditions: conditions({ field_name: 'status', operator }) }),
      );
      expect(error.code, operator).toBe('22023');
      expect(error.message).toBe(
        `automation rule "Valueless": trigger_conditions.field_conditions[0]: operator "${operator}" needs a "value"`,
      );
    }
    const error = await rejection(
      insertRule({
        name: 'No previous',
        conditions: conditions({ field_name: 'status', operator: 'changed_from', value: 'new' }),
      }),
    );
    expect(error.code).toBe('22023');
    expect(error.message).toContain('automation rule "No previous"');
    expect(error.message).toContain('operator "changed_from" needs a "previous_value"');
  });

  it('a value the column cannot hold is refused in event rules too, naming the condition and column', async () => {
    // The daemon compares a number only with a number: "abc" against sales.orders.amount (numeric)
    // could never hold, and was stored without a word before migration 000026.
    const cases: { trigger: string; condition: Record<string, unknown>; value: string }[] = [
      { trigger: 'on_create', condition: { operator: 'greater_than', value: 'abc' }, value: '"abc"' },
      { trigger: 'on_update', condition: { operator: 'changed_to', value: '12 EUR' }, value: '"12 EUR"' },
      { trigger: 'on_delete', condition: { operator: 'in', value: [1, 'two'] }, value: '"two"' },
      {
        trigger: 'on_update',
        condition: { operator: 'changed_from', previous_value: 'x', value: 1 },
        value: '"x"',
      },
    ];
    for (const { trigger, condition, value } of cases) {
      const error = await rejection(
        insertRule({
          name: 'Uncomparable',
          trigger,
          conditions: conditions(
            { field_name: 'note', operator: 'is_not_null' },
            { field_name: 'amount', ...condition },
          ),
        }),
      );
      expect(error.code, JSON.stringify(condition)).toBe('22023');
      expect(error.message).toBe(
        `automation rule "Uncomparable": trigger_conditions.field_conditions[1]: value ${value} is not a valid numeric for column "amount"`,
      );
    }
    expect(await db.query(`select id from workflow.automation_rules where name = 'Uncomparable'`)).toEqual(
      [],
    );

    // Values the column can hold still pass, numbers written as text and nulls included.
    await insertRule({
      name: 'Comparable',
      trigger: 'on_update',
      conditions: conditions(
        { field_name: 'amount', operator: 'greater_than', value: '10.5' },
        { field_name: 'amount', operator: 'changed_from', previous_value: null },
        { field_name: 'status', operator: 'in', value: ['new', 'shipped'] },
      ),
    });
  });

  it('changed_* operators only apply to on_update rules', async () => {
    for (const trigger of ['on_create', 'on_delete']) {
      const error = await rejection(
        insertRule({
          name: 'Created changed',
          trigger,
          conditions: conditions({ field_name: 'status', operator: 'changed_to', value: 'shipped' }),
        }),
      );
      expect(error.code).toBe('22023');
      expect(error.message).toContain('automation rule "Created changed"');
      expect(error.message).toContain(`operator "changed_to" compares old and new values`);
      expect(error.message).toContain(`not ${trigger}`);
    }
    // The same condition without changed_* is fine on create.
    await insertRule({
      name: 'Created shipped',
      trigger: 'on_create',
      conditions: conditions({ field_name: 'status', operator: 'equals', value: 'shipped' }),
    });
  });

  it('a view entity takes only scheduled rules', async () => {
    for (const trigger of ['on_create', 'on_update', 'on_delete']) {
      const error = await rejection(insertRule({ name: 'View watcher', entity: 'open_orders', trigger }));
      expect(error.code).toBe('22023');
      expect(error.message).toContain('automation rule "View watcher"');
      expect(error.message).toContain('entity "open_orders" is a view');
    }
    await insertRule({
      name: 'Nightly open orders',
      entity: 'open_orders',
      trigger: 'scheduled',
      conditions: {
        schedule: '0 2 * * *',
        field_conditions: [{ field_name: 'status', operator: 'equals', value: 'new' }],
      },
    });
  });

  it('a rejected statement leaves the rules already stored intact', async () => {
    const id = await insertRule({
      name: 'Keeper',
      conditions: conditions({ field_name: 'status', operator: 'changed_to', value: 'shipped' }),
    });
    const snapshot = async () => ({
      rules: await db.query('select * from workflow.automation_rules order by id'),
      filter: await db.query<{ def: string }>(
        `select pg_get_functiondef(p.oid) as def from pg_proc p
          where p.proname = workflow.capture_filter_name((select id from workflow.entities where name = 'orders'), 'update')`,
      ),
    });
    const before = await snapshot();
    expect(before.filter[0]!.def).toContain('o.status is distinct from n.status');

    // A multi-row INSERT with one bad rule stores none of them.
    const error = await rejection(
      db.query(
        `insert into workflow.automation_rules
           (name, entity_id, entity_type_id, trigger_type_id, trigger_conditions, created_by, updated_by)
         select v.name, e.id, e.entity_type_id, t.id, v.conditions, $1, $1
           from (values ('Good one', '{"field_conditions": [{"field_name": "note", "operator": "changed"}]}'::jsonb),
                        ('Bad one', '{"field_conditions": [{"field_name": "nope", "operator": "changed"}]}'::jsonb))
                  as v (name, conditions),
                workflow.entities e, workflow.trigger_types t
          where e.name = 'orders' and t.name = 'on_update'`,
        [userId],
      ),
    );
    expect(error.code).toBe('42703');
    expect(error.message).toContain('automation rule "Bad one"');

    // A bad UPDATE of a stored rule leaves it as it was.
    const update = await rejection(
      db.query(
        `update workflow.automation_rules
            set trigger_conditions = '{"field_conditions": [{"field_name": "status", "operator": "resembles"}]}'
          where id = $1`,
        [id],
      ),
    );
    expect(update.code).toBe('22023');

    // A transaction that stores a good rule and then a bad one keeps neither.
    await db.withClient(async (client) => {
      await client.query('begin');
      await client.query(INSERT_RULE, ruleParams({ name: 'First of two' }));
      const failed = await rejection(
        client.query(INSERT_RULE, ruleParams({ name: 'Second of two', conditions: [] })),
      );
      expect(failed.code).toBe('22023');
      await client.query('rollback');
    });

    expect(await snapshot()).toEqual(before);
  });
});

describe('rule dependencies', () => {
  const rules = new Map<string, string>();
  const rule = async (name: string) => {
    const id = await insertRule({ name, trigger: 'on_create' });
    rules.set(name, id);
    return id;
  };
  const depend = (parent: string, child: string) =>
    db.query<{ id: string }>(
      'insert into workflow.rule_dependencies (parent_rule_id, child_rule_id) values ($1, $2) returning id',
      [rules.get(parent), rules.get(child)],
    );

  beforeAll(async () => {
    for (const name of ['A', 'B', 'C', 'D', 'P', 'Q', 'X', 'Y', 'Z', 'Self']) await rule(name);
  });

  it('a rule cannot depend on itself', async () => {
    const error = await rejection(depend('Self', 'Self'));
    expect(error).toMatchObject({
      code: '23514',
      table: 'rule_dependencies',
      constraint: 'rule_dependencies_not_self',
    });
    expect(error.message).toContain('rule_dependencies_not_self');
  });

  it('a 2-cycle is refused, naming the rules in cycle order', async () => {
    await depend('P', 'Q');
    const error = await rejection(depend('Q', 'P'));
    expect(error.code).toBe('23514');
    expect(error.message).toBe('rule dependency would close a cycle: "Q" -> "P" -> "Q"');
    expect(error.hint).toContain('directed acyclic graph');
  });

  it('a 3-cycle is refused, naming the rules in cycle order', async () => {
    await depend('Y', 'Z');
    await depend('Z', 'X');
    const error = await rejection(depend('X', 'Y'));
    expect(error.code).toBe('23514');
    expect(error.message).toBe('rule dependency would close a cycle: "X" -> "Y" -> "Z" -> "X"');
  });

  it('a diamond is accepted, and closing it into a cycle is not', async () => {
    await depend('A', 'B');
    await depend('A', 'C');
    await depend('B', 'D');
    await depend('C', 'D');
    const edges = await db.query<{ parent: string; child: string }>(
      `select p.name as parent, c.name as child from workflow.rule_dependencies d
         join workflow.automation_rules p on p.id = d.parent_rule_id
         join workflow.automation_rules c on c.id = d.child_rule_id
        where p.name in ('A', 'B', 'C', 'D') order by 1, 2`,
    );
    expect(edges).toEqual([
      { parent: 'A', child: 'B' },
      { parent: 'A', child: 'C' },
      { parent: 'B', child: 'D' },
      { parent: 'C', child: 'D' },
    ]);
    const error = await rejection(depend('D', 'A'));
    expect(error.code).toBe('23514');
    expect(error.message).toMatch(/^rule dependency would close a cycle: "D" -> "A" -> "(B|C)" -> "D"$/);
  });

  it('an UPDATE that closes a cycle is refused; reversing an edge in place is not', async () => {
    // P -> Q exists: retargeting another edge of Q's onto P closes a cycle.
    const [edge] = await depend('Q', 'Z');
    const error = await rejection(
      db.query('update workflow.rule_dependencies set child_rule_id = $1 where id = $2', [
        rules.get('P'),
        edge!.id,
      ]),
    );
    expect(error.code).toBe('23514');
    expect(error.message).toBe('rule dependency would close a cycle: "Q" -> "P" -> "Q"');
    // Turning P -> Q itself into Q -> P is no cycle: the old edge goes with the update.
    const reversed = await db.query(
      `update workflow.rule_dependencies set parent_rule_id = $2, child_rule_id = $1
        where parent_rule_id = $1 and child_rule_id = $2 returning id`,
      [rules.get('P'), rules.get('Q')],
    );
    expect(reversed).toHaveLength(1);
  });
});

describe('updated_date maintains itself', () => {
  /** Waits until now() of a new transaction is past `since`, so that two transactions differ. */
  async function nextTransactionTime(since: string): Promise<void> {
    await waitFor(
      `now() to move past ${since}`,
      async () =>
        (await db.query<{ later: boolean }>('select now() > $1::timestamptz as later', [since]))[0]!.later,
      5_000,
    );
  }

  it('on automation_rules', async () => {
    const id = await insertRule({ name: 'Touched rule' });
    const [before] = await db.query<{ created: string; updated: string }>(
      'select created_date::text as created, updated_date::text as updated from workflow.automation_rules where id = $1',
      [id],
    );
    expect(before!.updated).toBe(before!.created);
    await nextTransactionTime(before!.updated);
    const [after] = await db.query<{ is_now: boolean; moved: boolean; created: string }>(
      `update workflow.automation_rules set description = 'now described' where id = $1
       returning updated_date = now() as is_now, updated_date > $2::timestamptz as moved, created_date::text as created`,
      [id, before!.updated],
    );
    expect(after).toEqual({ is_now: true, moved: true, created: before!.created });
  });

  it('on alerts', async () => {
    const [alert] = await db.query<{ id: string; updated: string }>(
      `insert into workflow.alerts (alert_type, title, message) values ('t', 'title', 'message')
       returning id, updated_date::text as updated`,
    );
    await nextTransactionTime(alert!.updated);
    const [after] = await db.query<{ is_now: boolean; moved: boolean }>(
      `update workflow.alerts set status = 'acknowledged' where id = $1
       returning updated_date = now() as is_now, updated_date > $2::timestamptz as moved`,
      [alert!.id, alert!.updated],
    );
    expect(after).toEqual({ is_now: true, moved: true });
  });

  it('even when the UPDATE sets updated_date itself', async () => {
    const id = await insertRule({ name: 'Backdated rule' });
    const [row] = await db.query<{ is_now: boolean }>(
      `update workflow.automation_rules set updated_date = '2000-01-01' where id = $1
       returning updated_date = now() as is_now`,
      [id],
    );
    expect(row!.is_now).toBe(true);
  });
});
