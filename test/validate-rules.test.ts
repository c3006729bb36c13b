import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateRules } from '../src/operations/validate-rules.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { ensureCliBuilt, spawnRulebook } from './support/daemon-process.js';
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
});
