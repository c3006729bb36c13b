import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { startEngine, TEST_LOG_TABLE } from './support/engine.js';
import { createRule } from './support/rules.js';
import { waitFor } from './support/wait.js';
import { createTable } from './support/tables.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.query(TEST_LOG_TABLE);
});

afterAll(async () => {
  await db.drop();
});

describe.each([2, 3])('%i daemons on 5,000 events', (daemons) => {
  it('process every event exactly once and keep each row in commit order', async () => {
    const table = `stock.items_${daemons}`;
    await createTable(db, table, `id int primary key, n int not null default 0`);
    await db.query(`insert into ${table} (id) select g from generate_series(1, 100) g`);
    await createRule(db, {
      name: `count ${daemons}`,
      entity: table,
      trigger: 'on_update',
      conditions: [{ field_name: 'n', operator: 'changed' }],
      actions: [{ name: 'log', config: { action_type: 'test_log', label: table } }],
    });
    const engines: Engine[] = [];
    for (let i = 0; i < daemons; i++) engines.push(await startEngine(db, { batchSize: 40, concurrency: 2 }));
    try {
      // 50 statements, each updating all 100 rows: 5,000 events, 50 per row, while the daemons run.
      for (let round = 0; round < 50; round++) await db.query(`update ${table} set n = n + 1`);
      await waitFor(
        'all events to be handled',
        async () => {
          const [row] = await db.query<{ count: string }>(`select count(*) from test_log where label = $1`, [
            table,
          ]);
          return Number(row!.count) >= 5000;
        },
        120_000,
      );
    } finally {
      await Promise.all(engines.map((engine) => engine.stop()));
    }
    const [totals] = await db.query<{ logged: string; events: string; pids: string }>(
      `select count(*) as logged, count(distinct event_id) as events, count(distinct backend_pid) as pids
         from test_log where label = $1`,
      [table],
    );
    expect(totals).toMatchObject({ logged: '5000', events: '5000' });
    expect(Number(totals!.pids)).toBeGreaterThan(1);
    // For every row, the values it went through, in the order the actions ran: 1, 2, ..., 50.
    const outOfOrder = await db.query(
      `select row_key, array_agg(n order by seq) as seen from test_log where label = $1
        group by row_key having array_agg(n order by seq) <> array(select generate_series(1, 50))`,
      [table],
    );
    expect(outOfOrder).toEqual([]);
    const [left] = await db.query<{ count: string }>(`select count(*) from workflow.events`);
    expect(left!.count).toBe('0');
  });
});
