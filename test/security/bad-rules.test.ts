import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../src/engine/engine.js';
import type { HttpServer } from '../../src/http/server.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { startEngine, TEST_LOG_TABLE } from '../support/engine.js';
import { executionsOf, waitForExecutions } from '../support/executions.js';
import { TestRoles, type LoginRole } from '../support/roles.js';
import { createRule, ensureDba } from '../support/rules.js';
import { startHttp } from '../support/staff.js';
import { waitFor } from '../support/wait.js';
import { createTable } from '../support/tables.js';

// Issue 9, item 3: one malformed rule action must fail alone, never stop every rule of every entity.

let db: TestDatabase;
let engine: Engine | undefined;
let http: HttpServer | undefined;
let roles: TestRoles;
// A DBA who writes rules: a member of rulebook_admin, as docs/privileges.md sets one up.
let admin: LoginRole;
let dbaId: string;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.query(TEST_LOG_TABLE);
  await createTable(db, 'shop.orders', `id serial primary key, n int not null default 0`);
  await db.query(`create table shop.invoices (id serial primary key, n int not null default 0)`);
  dbaId = await ensureDba(db);
  roles = new TestRoles(db);
  admin = await roles.login('rule_writer', 'grant rulebook_admin to %I');
});

afterEach(async () => {
  await http?.stop();
  http = undefined;
  await engine?.stop();
  engine = undefined;
  // Past the rule check: a rule stored with conditions it refuses cannot be updated otherwise.
  await db.withClient(async (client) => {
    await client.query('begin');
    await client.query('alter table workflow.automation_rules disable trigger check_automation_rule');
    await client.query(`update workflow.automation_rules set is_active = false`);
    await client.query('alter table workflow.automation_rules enable trigger check_automation_rule');
    await client.query('commit');
  });
});

afterAll(async () => {
  await roles.endPools();
  await db.drop();
  await roles.dropRoles();
});

/** Stores a config that the SQL checks would refuse, as only a superuser bypassing them could. */
async function forceActionConfig(ruleId: string, config: string): Promise<void> {
  await db.withClient(async (client) => {
    await client.query('begin');
    await client.query('alter table workflow.rule_actions disable trigger check_rule_action');
    await client.query(
      'update workflow.rule_actions set action_config = $2::jsonb where automation_rules_id = $1',
      [ruleId, config],
    );
    await client.query('alter table workflow.rule_actions enable trigger check_rule_action');
    await client.query('commit');
  });
}

function logRule(name: string, entity: string, label: string) {
  return createRule(db, {
    name,
    entity,
    trigger: 'on_create',
    actions: [{ name: `log ${label}`, config: { action_type: 'test_log', label } }],
  });
}

async function logged(label: string): Promise<number> {
  const [row] = await db.query<{ count: string }>('select count(*) from test_log where label = $1', [label]);
  return Number(row!.count);
}

describe('a rule writer storing a config that is not a JSON object', () => {
  it('is refused with 22023, naming the rule and the action', async () => {
    const ruleId = await logRule('Null config target', 'shop.orders', 'target');
    for (const bad of ['null', '[]', '5', '"text"']) {
      const error = await admin
        .query(
          `insert into workflow.rule_actions (automation_rules_id, name, action_config, execution_order)
           values ($1, 'bad action', $2::jsonb, 2)`,
          [ruleId, bad],
        )
        .catch((caught: unknown) => caught as { code?: string; message: string });
      expect(error).toMatchObject({
        code: '22023',
        message: expect.stringMatching(
          /rule "Null config target" \(.*\), action #2 "bad action" \(.*\): action_config must be a JSON object/,
        ),
      });
    }
    const update = await admin
      .query(
        `update workflow.rule_actions set action_config = 'null'::jsonb where automation_rules_id = $1`,
        [ruleId],
      )
      .catch((caught: unknown) => caught as { code?: string; message: string });
    expect(update).toMatchObject({ code: '22023', message: expect.stringContaining('"log target"') });
    const [stored] = await db.query<{ action_config: unknown }>(
      'select action_config from workflow.rule_actions where automation_rules_id = $1',
      [ruleId],
    );
    expect(stored!.action_config).toEqual({ action_type: 'test_log', label: 'target' });
  });

  it('is refused for an action template default_config too', async () => {
    const error = await admin
      .query(
        `insert into workflow.action_templates (name, action_type, default_config, created_by)
         values ('null template', 'test_log', 'null'::jsonb, $1)`,
        [dbaId],
      )
      .catch((caught: unknown) => caught as { code?: string; message: string });
    expect(error).toMatchObject({
      code: '22023',
      message: expect.stringMatching(
        /action template "null template" .*default_config must be a JSON object/,
      ),
    });
  });
});

describe('a rule the engine cannot load', () => {
  it('fails alone, is recorded, logged and shown, and a restart still starts', async () => {
    const good = await logRule('Good orders rule', 'shop.orders', 'good');
    const invoices = await logRule('Invoices rule', 'shop.invoices', 'invoice');
    const nullConfig = await logRule('Null config rule', 'shop.orders', 'never');
    await forceActionConfig(nullConfig, 'null');
    // Passes the SQL check (an object) but nests deeper than the loader takes.
    let deep: unknown = 1;
    for (let level = 0; level < 300; level++) deep = { a: deep };
    const deepConfig = await createRule(db, {
      name: 'Deep config rule',
      entity: 'shop.orders',
      trigger: 'on_create',
      actions: [{ name: 'deep action', config: { action_type: 'test_log', label: 'deep', extra: deep } }],
    });
    // Conditions that do not compile, stored past the rule check.
    const badConditions = await logRule('Bad conditions rule', 'shop.orders', 'conditional');
    await db.withClient(async (client) => {
      await client.query('begin');
      await client.query('alter table workflow.automation_rules disable trigger check_automation_rule');
      await client.query(
        `update workflow.automation_rules set trigger_conditions = '{"field_conditions": 7}' where id = $1`,
        [badConditions],
      );
      await client.query('alter table workflow.automation_rules enable trigger check_automation_rule');
      await client.query('commit');
    });

    engine = await startEngine(db);
    ({ server: http } = await startHttp(db, { engine }));
    await db.query('insert into shop.orders (n) values (1), (2)');
    await db.query('insert into shop.invoices (n) values (1)');

    await waitFor(
      'the good rules ran',
      async () => (await logged('good')) === 2 && (await logged('invoice')) === 1,
    );
    expect(await waitForExecutions(db, invoices, 1)).toMatchObject([{ status: 'success' }]);
    expect((await executionsOf(db, good)).map((row) => row.status)).toEqual(['success', 'success']);

    const nullRuns = await waitForExecutions(db, nullConfig, 2);
    expect(nullRuns[0]).toMatchObject({
      status: 'failed',
      error_message: 'action "log never": action_config must be a JSON object, got null',
    });
    const deepRuns = await waitForExecutions(db, deepConfig, 2);
    expect(deepRuns[0]!.error_message).toMatch(
      /action "deep action": action_config\.extra\.a.* is nested more than 100 levels deep/,
    );
    const conditionRuns = await waitForExecutions(db, badConditions, 2);
    expect(conditionRuns[0]).toMatchObject({
      status: 'failed',
      error_message: expect.stringMatching(
        /^rule "Bad conditions rule" could not be loaded: its trigger_conditions/,
      ),
    });
    expect(await logged('never')).toBe(0);
    const [queue] = await db.query<{ dead: string; pending: string }>(
      `select count(*) filter (where state = 'dead') as dead, count(*) filter (where state = 'pending') as pending
         from workflow.events`,
    );
    expect(queue).toEqual({ dead: '0', pending: '0' });

    const health = await fetch(`http://127.0.0.1:${http.port}/healthz`);
    expect(health.status).toBe(200);
    const body = (await health.json()) as { engine: { rule_problems: unknown[] } };
    expect(body.engine.rule_problems).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ rule_id: nullConfig, action_name: 'log never' }),
        expect.objectContaining({ rule_id: deepConfig, action_name: 'deep action' }),
        expect.objectContaining({ rule_id: badConditions, rule_name: 'Bad conditions rule' }),
      ]),
    );
    expect(body.engine.rule_problems).toHaveLength(3);
    const metrics = await (await fetch(`http://127.0.0.1:${http.port}/metrics`)).text();
    expect(metrics).toContain('rulebook_rule_load_problems 3');

    // A restart with the bad rules still in place starts and goes on handling events.
    await http.stop();
    http = undefined;
    await engine.stop();
    engine = await startEngine(db);
    expect(engine.running).toBe(true);
    await db.query('insert into shop.orders (n) values (3)');
    await waitFor('the good rule ran after the restart', async () => (await logged('good')) === 3);
    expect(await waitForExecutions(db, nullConfig, 3)).toHaveLength(3);
  });
});
