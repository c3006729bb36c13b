import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { startEngine } from './support/engine.js';
import { createRule, ensureDba } from './support/rules.js';
import { waitForExecutions as waitForExecutionsIn } from './support/executions.js';
import { createTable, createUser } from './support/tables.js';

let db: TestDatabase;
let engine: Engine | undefined;
let dbaId: string;
let annId: string;
let warehouseRoleId: string;

type Result = Record<string, unknown>;

beforeAll(async () => {
  db = await createTestDatabase();
  await createTable(
    db,
    'sales.orders',
    `
    id uuid primary key default gen_random_uuid(),
    order_number text not null,
    status text not null default 'new',
    amount numeric(12,2),
    scenario text
  `,
  );
  dbaId = await ensureDba(db);
  annId = await createUser(db, 'ann@example.com', 'Ann');
  warehouseRoleId = (
    await db.query<{ id: string }>(`insert into core.roles (name) values ('warehouse') returning id`)
  )[0]!.id;
  await db.query(`insert into core.user_roles (user_id, role_id) values ($1, $2)`, [annId, warehouseRoleId]);
});

afterEach(async () => {
  await engine?.stop();
  engine = undefined;
  await db.query(`update workflow.automation_rules set is_active = false`);
});

afterAll(async () => {
  await db.drop();
});

function waitForExecutions(ruleId: string, count = 1) {
  return waitForExecutionsIn<Result>(db, ruleId, count);
}

function alertRule(scenario: string, config: Record<string, unknown>) {
  return createRule(db, {
    name: `alert ${scenario}`,
    entity: 'sales.orders',
    trigger: 'on_create',
    conditions: [{ field_name: 'scenario', operator: 'equals', value: scenario }],
    actions: [{ name: 'alert', config: { action_type: 'create_alert', ...config } }],
  });
}

/** The SQLSTATE and message of a statement that must fail. */
async function failure(sql: string, values: unknown[]): Promise<{ code: string; message: string }> {
  try {
    await db.query(sql, values);
  } catch (error) {
    return { code: (error as { code: string }).code, message: (error as Error).message };
  }
  throw new Error(`expected the statement to fail: ${sql}`);
}

async function newRule(name: string): Promise<string> {
  return createRule(db, { name, entity: 'sales.orders', trigger: 'on_create', active: false });
}

const INSERT_ACTION = `insert into workflow.rule_actions (id, automation_rules_id, name, action_config, execution_order, template_id)
  values ($1, $2, $3, $4, 1, $5)`;

describe('create_alert', () => {
  it('addresses roles, renders the context as JSON and records the alert', async () => {
    const ruleId = await alertRule('roles', {
      alert_type: 'big_order',
      severity: 'critical',
      title: 'Big order {{order_number}}',
      message: 'Order {{order_number}} is worth {{amount}}',
      recipients: { roles: [warehouseRoleId], users: [annId] },
      context: {
        order: '{{order_number}}',
        amount: '{{new.amount}}',
        nested: { status: '{{status}}', note: 'order {{order_number}} by {{rule.name}}' },
        list: ['{{status}}', 3],
      },
    });
    engine = await startEngine(db);
    const [order] = await db.query<{ id: string }>(
      `insert into sales.orders (order_number, amount, scenario) values ('SO-1', 1500.5, 'roles') returning id`,
    );
    const [execution] = await waitForExecutions(ruleId);
    expect(execution!.status).toBe('success');
    const result = execution!.actions_executed[0]!.result!;
    expect(result).toMatchObject({
      alert_type: 'big_order',
      severity: 'critical',
      recipients: 2,
      resolved_prior: 0,
      expires_date: null,
    });
    const [alert] = await db.query(
      `select id, alert_type, severity, title, message, context, source_entity_name, source_entity_id, source_rule_id,
              status, expires_date
         from workflow.alerts where id = $1`,
      [result.alert_id],
    );
    expect(alert).toMatchObject({
      alert_type: 'big_order',
      severity: 'critical',
      title: 'Big order SO-1',
      message: 'Order SO-1 is worth 1500.5',
      context: {
        order: 'SO-1',
        amount: 1500.5,
        nested: { status: 'new', note: 'order SO-1 by alert roles' },
        list: ['new', 3],
      },
      source_entity_name: 'sales.orders',
      source_entity_id: order!.id,
      source_rule_id: ruleId,
      status: 'active',
      expires_date: null,
    });
    const recipients = await db.query(
      `select recipient_type, recipient_id from workflow.alert_recipients where alert_id = $1 order by recipient_type`,
      [result.alert_id],
    );
    expect(recipients).toEqual([
      { recipient_type: 'role', recipient_id: warehouseRoleId },
      { recipient_type: 'user', recipient_id: annId },
    ]);
  });

  it('resolve_prior resolves earlier active and acknowledged alerts of the same type and row only', async () => {
    const ruleId = await createRule(db, {
      name: 'status alert',
      entity: 'sales.orders',
      trigger: 'on_update',
      conditions: [
        { field_name: 'status', operator: 'changed' },
        { field_name: 'scenario', operator: 'equals', value: 'resolve' },
      ],
      actions: [
        {
          name: 'alert',
          config: {
            action_type: 'create_alert',
            alert_type: 'order_status',
            title: '{{order_number}} is {{status}}',
            message: 'from {{old.status}} to {{new.status}}',
            recipients: { users: [annId] },
            resolve_prior: true,
          },
        },
      ],
    });
    engine = await startEngine(db);
    const [first, second] = await db.query<{ id: string }>(
      `insert into sales.orders (order_number, scenario) values ('R-1', 'resolve'), ('R-2', 'resolve') returning id`,
    );
    await db.query(`update sales.orders set status = 'packed' where id = any($1)`, [[first!.id, second!.id]]);
    await waitForExecutions(ruleId, 2);
    // Someone acknowledges R-1's alert; it is still open, so the next change resolves it too.
    await db.query(`update workflow.alerts set status = 'acknowledged' where source_entity_id = $1`, [
      first!.id,
    ]);
    await db.query(`update sales.orders set status = 'shipped' where id = $1`, [first!.id]);
    const executions = await waitForExecutions(ruleId, 3);
    expect(executions[2]!.actions_executed[0]!.result).toMatchObject({ resolved_prior: 1 });
    const alerts = await db.query(
      `select o.order_number, a.title, a.status from workflow.alerts a join sales.orders o on o.id = a.source_entity_id
        where a.alert_type = 'order_status' order by o.order_number, a.created_date`,
    );
    expect(alerts).toEqual([
      { order_number: 'R-1', title: 'R-1 is packed', status: 'resolved' },
      { order_number: 'R-1', title: 'R-1 is shipped', status: 'active' },
      { order_number: 'R-2', title: 'R-2 is packed', status: 'active' },
    ]);
  });

  it('expires_in sets expires_date; expired alerts leave workflow.active_alerts and expire_alerts resolves them', async () => {
    const ruleId = await alertRule('expiry', {
      alert_type: 'short_lived',
      title: 'Order {{order_number}}',
      message: 'm',
      recipients: { users: [annId] },
      expires_in: '2 hours',
    });
    engine = await startEngine(db);
    await db.query(
      `insert into sales.orders (order_number, scenario) values ('E-1', 'expiry'), ('E-2', 'expiry')`,
    );
    const executions = await waitForExecutions(ruleId, 2);
    const ids = executions.map((execution) => execution.actions_executed[0]!.result!.alert_id as string);
    const [times] = await db.query<{ min_hours: number; max_hours: number }>(
      `select min(extract(epoch from expires_date - created_date) / 3600)::float8 as min_hours,
              max(extract(epoch from expires_date - created_date) / 3600)::float8 as max_hours
         from workflow.alerts where id = any($1)`,
      [ids],
    );
    expect(times!.min_hours).toBeCloseTo(2, 2);
    expect(times!.max_hours).toBeCloseTo(2, 2);
    const active = async () =>
      (
        await db.query<{ title: string }>(
          `select title from workflow.active_alerts where alert_type = 'short_lived' order by title`,
        )
      ).map((row) => row.title);
    expect(await active()).toEqual(['Order E-1', 'Order E-2']);

    // E-1's time runs out.
    await db.query(
      `update workflow.alerts set expires_date = now() - interval '1 minute' where title = 'Order E-1' and alert_type = 'short_lived'`,
    );
    expect(await active()).toEqual(['Order E-2']);
    const [expired] = await db.query<{ count: string }>(`select workflow.expire_alerts() as count`);
    expect(expired!.count).toBe('1');
    const statuses = await db.query(
      `select title, status from workflow.alerts where alert_type = 'short_lived' order by title`,
    );
    expect(statuses).toEqual([
      { title: 'Order E-1', status: 'resolved' },
      { title: 'Order E-2', status: 'active' },
    ]);
    const [again] = await db.query<{ count: string }>(`select workflow.expire_alerts() as count`);
    expect(again!.count).toBe('0');
  });
});

describe('create_alert configs are checked when the rule is written', () => {
  const ghost = '00000000-0000-4000-8000-000000000001';

  it('rejects an unknown user or role with 23503, naming the rule action and the id', async () => {
    const ruleId = await newRule('checked rule');
    const actionId = '11111111-1111-4111-8111-111111111111';
    const config = (recipients: unknown) =>
      JSON.stringify({ action_type: 'create_alert', title: 't', message: 'm', recipients });

    const user = await failure(INSERT_ACTION, [
      actionId,
      ruleId,
      'tell ghost',
      config({ users: [annId, ghost] }),
      null,
    ]);
    expect(user.code).toBe('23503');
    expect(user.message).toBe(
      `rule "checked rule" (${ruleId}), action #1 "tell ghost" (${actionId}, create_alert): create_alert recipient user ${ghost} does not exist in core.users`,
    );
    const role = await failure(INSERT_ACTION, [
      actionId,
      ruleId,
      'tell ghosts',
      config({ roles: [ghost] }),
      null,
    ]);
    expect(role.code).toBe('23503');
    expect(role.message).toContain(`create_alert recipient role ${ghost} does not exist in core.roles`);
    expect(role.message).toContain(`action #1 "tell ghosts" (${actionId}, create_alert)`);

    // Updating a good action to a bad recipient is refused as well.
    await db.query(INSERT_ACTION, [actionId, ruleId, 'tell ann', config({ users: [annId] }), null]);
    const update = await failure(`update workflow.rule_actions set action_config = $2 where id = $1`, [
      actionId,
      config({ users: [ghost] }),
    ]);
    expect(update.code).toBe('23503');
  });

  it('rejects a bad severity, expires_in or recipient list and a missing title with 22023', async () => {
    const ruleId = await newRule('checked values');
    const base = { action_type: 'create_alert', title: 't', message: 'm', recipients: { users: [annId] } };
    const cases: [Record<string, unknown>, string][] = [
      [
        { ...base, severity: 'urgent' },
        'create_alert severity "urgent" is not one of low, medium, high, critical',
      ],
      [{ ...base, expires_in: 'soonish' }, 'create_alert expires_in "soonish" is not an interval'],
      [
        { ...base, recipients: { users: ['ann'] } },
        'create_alert recipients.users contains "ann", which is not a uuid',
      ],
      [{ ...base, recipients: { users: [] } }, 'create_alert needs at least one recipient'],
      [{ ...base, title: undefined }, 'create_alert needs a non-empty title template'],
      [{ ...base, message: '' }, 'create_alert message must be a non-empty string'],
    ];
    for (const [config, message] of cases) {
      const error = await failure(INSERT_ACTION, [
        '22222222-2222-4222-8222-222222222222',
        ruleId,
        'bad',
        JSON.stringify(config),
        null,
      ]);
      expect(error, message).toMatchObject({ code: '22023' });
      expect(error.message).toContain(
        `rule "checked values" (${ruleId}), action #1 "bad" (22222222-2222-4222-8222-222222222222, create_alert): ${message}`,
      );
    }
    // A library user's own action types are not checked by the database.
    await db.query(INSERT_ACTION, [
      '33333333-3333-4333-8333-333333333333',
      ruleId,
      'other',
      JSON.stringify({ action_type: 'test_log', recipients: { users: [ghost] } }),
      null,
    ]);
  });

  it('checks the config an action gets through its template', async () => {
    const ruleId = await newRule('templated alerts');
    const bad = await failure(
      `insert into workflow.action_templates (name, action_type, default_config, created_by) values ($1, 'create_alert', $2, $3)`,
      ['ghost template', JSON.stringify({ recipients: { roles: [ghost] } }), dbaId],
    );
    expect(bad).toMatchObject({ code: '23503' });
    expect(bad.message).toMatch(
      /^action template "ghost template" \(.+\): create_alert recipient role .+ does not exist/,
    );

    // A template may leave the title and message to its actions.
    const [template] = await db.query<{ id: string }>(
      `insert into workflow.action_templates (name, action_type, default_config, created_by)
       values ('warehouse alert', 'create_alert', $1, $2) returning id`,
      [JSON.stringify({ severity: 'high', recipients: { roles: [warehouseRoleId] } }), dbaId],
    );
    const actionId = '44444444-4444-4444-8444-444444444444';
    const incomplete = await failure(INSERT_ACTION, [
      actionId,
      ruleId,
      'no title',
      JSON.stringify({ message: 'm' }),
      template!.id,
    ]);
    expect(incomplete.code).toBe('22023');
    expect(incomplete.message).toContain('create_alert needs a non-empty title template');
    const unknown = await failure(INSERT_ACTION, [
      actionId,
      ruleId,
      'ghost user',
      JSON.stringify({ title: 't', message: 'm', recipients: { users: [ghost] } }),
      template!.id,
    ]);
    expect(unknown.code).toBe('23503');
    await db.query(INSERT_ACTION, [
      actionId,
      ruleId,
      'good',
      JSON.stringify({ title: 't', message: 'm' }),
      template!.id,
    ]);
    // The template cannot then drop what its action relies on.
    const broken = await failure(
      `update workflow.action_templates set default_config = '{"severity": "low"}' where id = $1`,
      [template!.id],
    );
    expect(broken.code).toBe('22023');
    expect(broken.message).toContain(
      `action template "warehouse alert" (${template!.id}): this change would break rule "templated alerts" (${ruleId}), action #1 "good" (${actionId}, create_alert)`,
    );
  });

  it('a recipient deleted after the rule was written fails the action when it runs, writing nothing', async () => {
    const [bob] = await db.query<{ id: string }>(
      `insert into core.users (email, name) values ('bob@example.com', 'Bob') returning id`,
    );
    const ruleId = await alertRule('deleted', {
      alert_type: 'for_bob',
      title: 't',
      message: 'm',
      recipients: { users: [bob!.id, annId] },
    });
    await db.query(`delete from core.users where id = $1`, [bob!.id]);
    engine = await startEngine(db);
    await db.query(`insert into sales.orders (order_number, scenario) values ('D-1', 'deleted')`);
    const [execution] = await waitForExecutions(ruleId);
    expect(execution!.status).toBe('failed');
    expect(execution!.actions_executed[0]).toMatchObject({
      status: 'failed',
      error: `create_alert: unknown recipients: user ${bob!.id}`,
    });
    const [count] = await db.query<{ count: string }>(
      `select count(*) from workflow.alerts where alert_type = 'for_bob'`,
    );
    expect(count!.count).toBe('0');
    // The action can still be switched off: only config changes are checked.
    await db.query(`update workflow.rule_actions set is_active = false where automation_rules_id = $1`, [
      ruleId,
    ]);
  });
});
