import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ActionHandler } from '../src/actions/types.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { startEngine, testActions } from './support/engine.js';
import { createRule } from './support/rules.js';
import { waitFor } from './support/wait.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.query(`create schema sales`);
  await db.query(`create table sales.orders (id int primary key, status text not null default 'new')`);
  await db.query(`insert into sales.orders (id) values (1)`);
  await db.query(`create table public.plans (scan text not null)`);
});

afterAll(async () => {
  await db.drop();
});

/**
 * Plans, in the transaction where actions run, the query PostgreSQL's foreign key check on
 * alert_recipients runs against workflow.alerts, and records the scan it chose.
 */
const planKeyCheck: ActionHandler = {
  type: 'plan_key_check',
  async execute(context) {
    const { rows } = await context.client.query<{ 'QUERY PLAN': [{ Plan: Record<string, unknown> }] }>(
      `explain (format json) select 1 from only workflow.alerts x
        where id = '00000000-0000-0000-0000-000000000000'::uuid for key share of x`,
    );
    let plan = rows[0]!['QUERY PLAN'][0].Plan;
    while (plan['Node Type'] === 'LockRows') plan = (plan.Plans as Record<string, unknown>[])[0]!;
    await context.client.query(`insert into public.plans (scan) values ($1)`, [plan['Node Type']]);
    return null;
  },
};

describe('statements of a batch', () => {
  it('look rows up by key even in a table emptied and vacuumed, as foreign key checks do', async () => {
    // Statistics of an empty table: a plan made now, and kept by the session, would read the whole
    // table on every check as it grows.
    await db.query(`truncate workflow.alert_recipients, workflow.alerts cascade`);
    await db.query(`vacuum analyze workflow.alerts`);
    const outside = await db.query<{ 'QUERY PLAN': [{ Plan: { Plans: { 'Node Type': string }[] } }] }>(
      `explain (format json) select 1 from only workflow.alerts x
        where id = '00000000-0000-0000-0000-000000000000'::uuid for key share of x`,
    );
    expect(outside[0]!['QUERY PLAN'][0].Plan.Plans[0]!['Node Type']).toBe('Seq Scan');

    await createRule(db, {
      name: 'plan the key check',
      entity: 'sales.orders',
      trigger: 'on_update',
      conditions: [{ field_name: 'status', operator: 'changed' }],
      actions: [{ name: 'plan', config: { action_type: 'plan_key_check' } }],
    });
    const actions = testActions();
    actions.register(planKeyCheck);
    const engine = await startEngine(db, { actions });
    try {
      await db.query(`update sales.orders set status = 'paid' where id = 1`);
      await waitFor(
        'the action to run',
        async () => (await db.query(`select 1 from public.plans`)).length > 0,
      );
    } finally {
      await engine.stop();
    }
    expect(await db.query(`select scan from public.plans`)).toEqual([{ scan: 'Index Scan' }]);
  });
});
