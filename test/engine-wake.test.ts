import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { startEngine, TEST_LOG_TABLE } from './support/engine.js';
import { createRule } from './support/rules.js';
import { waitFor } from './support/wait.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.query(TEST_LOG_TABLE);
  await db.query(`create schema sales`);
  await db.query(`create table sales.orders (id int primary key, status text not null default 'new')`);
  await db.query(`insert into sales.orders (id) select g from generate_series(1, 3) g`);
  await createRule(db, {
    name: 'log orders',
    entity: 'sales.orders',
    trigger: 'on_update',
    conditions: [{ field_name: 'status', operator: 'changed' }],
    actions: [{ name: 'log', config: { action_type: 'test_log', label: 'order' } }],
  });
});

afterAll(async () => {
  await db.drop();
});

async function sleeping(daemonId: string): Promise<number> {
  const [row] = await db.query<{ n: string }>(
    `select count(*) as n from workflow.idle_daemons where daemon_id like $1`,
    [`${daemonId}/%`],
  );
  return Number(row!.n);
}

describe('a sleeping claim loop', () => {
  it('says so in workflow.idle_daemons, is woken by each write long before its poll, and sleeps again', async () => {
    // A poll far longer than the test: only the wake-up can bring the events in time.
    const engine = await startEngine(db, { concurrency: 1, pollIntervalMs: 120_000 });
    try {
      await waitFor('the loop to sleep', async () => (await sleeping(engine.daemonId)) === 1);
      for (let id = 1; id <= 3; id++) {
        await db.query(`update sales.orders set status = 'paid' where id = $1`, [id]);
        await waitFor(
          `order ${id} to be handled`,
          async () => (await db.query(`select 1 from test_log`)).length === id,
          10_000,
        );
        await waitFor('the loop to sleep again', async () => (await sleeping(engine.daemonId)) === 1);
      }
    } finally {
      await engine.stop();
    }
    expect(await sleeping(engine.daemonId)).toBe(0);
  });
});
