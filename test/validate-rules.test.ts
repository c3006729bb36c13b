import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultActions } from '../src/actions/registry.js';
import { validateRules } from '../src/operations/validate-rules.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { ensureCliBuilt, spawnRulebook } from './support/daemon-process.js';
import { startEngine } from './support/engine.js';
import { createRule } from './support/rules.js';
import { createTable } from './support/tables.js';

// After an ALTER TABLE, rules and actions that were good when written may no longer be: an
// operator runs `rulebook rules validate`, which lists what would now fail, and changes nothing.

let db: TestDatabase;

beforeAll(async () => {
  ensureCliBuilt();
  db = await createTestDatabase();
  await createTable(
    db,
    'crm.deals',
    `id bigint generated always as identity primary key, stage text, amount numeric, owner_note text`,
  );
});

afterAll(async () => {
  await db?.drop();
});

describe('validateRules', () => {
  it('reports nothing while every rule and action still fits the tables', async () => {
    await createRule(db, {
      name: 'big deals',
      entity: 'crm.deals',
      trigger: 'on_update',
      conditions: [{ field_name: 'amount', operator: 'greater_than', value: 1000 }],
      actions: [{ name: 'flag', config: { action_type: 'update_field', field: 'owner_note', value: 'big' } }],
    });
    expect(await validateRules(db.pool)).toEqual([]);
    const run = spawnRulebook(['rules', 'validate', '--json'], { DATABASE_URL: db.url, LOG_LEVEL: 'silent' });
    let stdout = '';
    run.child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    expect((await run.exited()).code).toBe(0);
    expect(JSON.parse(stdout)).toEqual([]);
  });

  it('reports the condition and the action that name a dropped column, and changes nothing', async () => {
    const [rule] = await db.query<{ id: string }>(
      `select id from workflow.automation_rules where name = 'big deals'`,
    );
    const [action] = await db.query<{ id: string; action_config: unknown }>(
      `select id, action_config from workflow.rule_actions where automation_rules_id = $1`,
      [rule!.id],
    );
    await db.query(`alter table crm.deals drop column amount, drop column owner_note`);

    const problems = await validateRules(db.pool);
    expect(problems).toHaveLength(2);
    expect(problems[0]).toEqual({
      ruleId: rule!.id,
      ruleName: 'big deals',
      actionId: null,
      problem:
        'automation rule "big deals": trigger_conditions.field_conditions[0]: field_name "amount" is not a column of crm.deals',
    });
    expect(problems[1]).toEqual({
      ruleId: rule!.id,
      ruleName: 'big deals',
      actionId: action!.id,
      problem: `rule "big deals" (${rule!.id}), action #1 "flag" (${action!.id}, update_field): update_field config.field "owner_note" is not a column of crm.deals`,
    });

    const [after] = await db.query<{ action_config: unknown; is_active: boolean }>(
      `select a.action_config, r.is_active from workflow.rule_actions a
         join workflow.automation_rules r on r.id = a.automation_rules_id where a.id = $1`,
      [action!.id],
    );
    expect(after).toEqual({ action_config: action!.action_config, is_active: true });

    // The command prints one problem per line and exits 1, for a check after a migration.
    const run = spawnRulebook(['rules', 'validate'], { DATABASE_URL: db.url, LOG_LEVEL: 'silent' });
    let stdout = '';
    run.child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const { code } = await run.exited();
    expect(code).toBe(1);
    expect(stdout).toBe(`${problems[0]!.problem}\n${problems[1]!.problem}\n`);
    expect(run.output()).toContain('rulebook: 2 problems found');
  });

  it('reports a rule whose table is gone', async () => {
    await db.query(`drop table crm.deals`);
    const problems = await validateRules(db.pool);
    expect(problems.map((problem) => problem.problem)).toContain(
      'automation rule "big deals": entity "crm.deals" names no existing table or view',
    );
  });

  it('reports an action whose type no daemon runs, until a daemon that runs it has started', async () => {
    await db.query(`create table crm.leads (id bigint generated always as identity primary key, stage text)`);
    const ruleId = await createRule(db, {
      name: 'new lead',
      entity: 'crm.leads',
      trigger: 'on_create',
      actions: [
        // Misspelt: create_alert is the type. Written, since a custom handler could have this name.
        { name: 'typo', config: { action_type: 'create_alerts', title: 't', message: 'm' } },
        { name: 'custom', config: { action_type: 'crm_sync' } },
      ],
    });
    const actionIds = await db.query<{ id: string; name: string }>(
      `select id, name from workflow.rule_actions where automation_rules_id = $1 order by execution_order`,
      [ruleId],
    );
    const forLeads = async () =>
      (await validateRules(db.pool)).filter((problem) => problem.ruleId === ruleId).map((p) => p.problem);
    const problems = await forLeads();
    expect(problems).toHaveLength(2);
    expect(problems[0]).toBe(
      `rule "new lead" (${ruleId}), action #1 "typo" (${actionIds[0]!.id}): unknown action type "create_alerts": ` +
        'no daemon runs it (known: allocate_inventory, create_alert, send_email, send_notification, update_field, ' +
        'webhook); a daemon records the types its ActionRegistry runs when it starts',
    );
    expect(problems[1]).toMatch(/action #2 "custom" .*unknown action type "crm_sync"/);

    // A daemon whose registry has a crm_sync handler starts (and stops): the custom type is known.
    const registry = defaultActions();
    registry.register({ type: 'crm_sync', execute: () => Promise.resolve({}) });
    const engine = await startEngine(db, { actions: registry });
    await engine.stop();
    const [recorded] = await db.query<{ registered_by: string }>(
      `select registered_by from workflow.action_types where action_type = 'crm_sync'`,
    );
    expect(recorded!.registered_by).toBe(engine.daemonId);
    expect(await forLeads()).toEqual([expect.stringContaining('unknown action type "create_alerts"')]);
  });

  it('reports the rules of a view whose registration no longer passes its checks', async () => {
    await db.query(`
      create table crm.invoices (id bigint primary key, due date);
      create view crm.overdue as select id, due from crm.invoices where due < current_date;
      select workflow.register_view('crm.overdue', '{id}', '1 minute');
    `);
    const ruleId = await createRule(db, {
      name: 'overdue invoice',
      entity: 'crm.overdue',
      trigger: 'on_create',
    });
    const forView = async () =>
      (await validateRules(db.pool)).filter((problem) => problem.ruleId === ruleId).map((p) => p.problem);
    expect(await forView()).toEqual([]);

    // Replaced by a view whose key column is no longer unique (one row per reminder).
    await db.query(`
      create table crm.reminders (invoice_id bigint, sent date);
      insert into crm.invoices values (1, '2020-01-01');
      insert into crm.reminders values (1, '2020-02-01'), (1, '2020-03-01');
      create or replace view crm.overdue as
        select i.id, i.due from crm.invoices i join crm.reminders r on r.invoice_id = i.id where i.due < current_date;
    `);
    expect(await forView()).toEqual([
      `rule "overdue invoice" (${ruleId}): workflow.view_entities "overdue": key column(s) id do not identify the rows ` +
        'of crm.overdue: the key {"id": 1} appears more than once',
    ]);

    // Replaced by one without the key column.
    await db.query(`drop view crm.overdue; create view crm.overdue as select due from crm.invoices`);
    expect(await forView()).toEqual([
      `rule "overdue invoice" (${ruleId}): workflow.view_entities "overdue": key column(s) id are not columns of crm.overdue`,
    ]);
  });
});
