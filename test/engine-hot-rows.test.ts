import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import { claimEvents } from '../src/engine/event-queue.js';
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

/** A table of `rows` rows whose every change of n is logged by a test_log action labelled `table`. */
async function countedTable(table: string, rows: number): Promise<void> {
  await createTable(db, table, `id int primary key, n int not null default 0`);
  await db.query(`insert into ${table} (id) select g from generate_series(1, $1::int) g`, [rows]);
  await createRule(db, {
    name: `count ${table}`,
    entity: table,
    trigger: 'on_update',
    conditions: [{ field_name: 'n', operator: 'changed' }],
    actions: [{ name: 'log', config: { action_type: 'test_log', label: table } }],
  });
}

async function logged(table: string): Promise<number> {
  const [row] = await db.query<{ count: string }>(`select count(*) from test_log where label = $1`, [table]);
  return Number(row!.count);
}

/** For each row, the values of n its actions saw, in the order they ran, where that is not 1..expected. */
async function outOfOrder(table: string, expected: (rowId: number) => number) {
  const rows = await db.query<{ id: number; seen: number[] }>(
    `select (row_key ->> 'id')::int as id, array_agg(n order by seq) as seen from test_log where label = $1
      group by 1 order by 1`,
    [table],
  );
  return rows.filter(
    (row) => row.seen.join(',') !== Array.from({ length: expected(row.id) }, (_, i) => i + 1).join(','),
  );
}

describe('a hot row', () => {
  it('500 events of one row do not hold back the rows behind them, and run in commit order', async () => {
    const table = 'stock.counters';
    await countedTable(table, 61);
    // Row 1 is a busy counter updated 500 times, then rows 2..61 change once: all queued before any
    // daemon runs, so the head of the queue is the hot row alone, many times over the claim window.
    for (let i = 0; i < 500; i++) await db.query(`update ${table} set n = n + 1 where id = 1`);
    await db.query(`update ${table} set n = n + 1 where id > 1`);

    const engines: Engine[] = [];
    try {
      for (let i = 0; i < 2; i++) engines.push(await startEngine(db, { batchSize: 20, concurrency: 2 }));
      await waitFor('all 560 events to be handled', async () => (await logged(table)) >= 560, 60_000);
    } finally {
      await Promise.all(engines.map((engine) => engine.stop()));
    }
    expect(await logged(table)).toBe(560);
    expect(await outOfOrder(table, (id) => (id === 1 ? 500 : 1))).toEqual([]);
    // The other rows finished while the hot row still had most of its events to go; claiming one
    // event of the hot row per transaction, from a head that holds nothing else, they would come last.
    const [progress] = await db.query<{ hot_before_others_done: string }>(
      `select count(*) as hot_before_others_done from test_log
        where label = $1 and row_key ->> 'id' = '1'
          and seq < (select max(seq) from test_log where label = $1 and row_key ->> 'id' <> '1')`,
      [table],
    );
    expect(Number(progress!.hot_before_others_done)).toBeLessThan(250);
    // Several events of the hot row shared each transaction (executed_at is the transaction's start).
    const [batches] = await db.query<{ transactions: string }>(
      `select count(distinct e.executed_at) as transactions
         from workflow.automation_executions e
         join workflow.automation_rules r on r.id = e.automation_rules_id
        where r.name = $1 and e.trigger_data -> 'row_key' ->> 'id' = '1'`,
      [`count ${table}`],
    );
    expect(Number(batches!.transactions)).toBeLessThanOrEqual(100);
    const [left] = await db.query<{ count: string }>(`select count(*) from workflow.events`);
    expect(left!.count).toBe('0');
  });
});

describe('a hot row and two claim loops of one daemon', () => {
  it('one loop takes the hot row in runs while the other handles the rows behind it, each in order', async () => {
    const table = 'stock.tills';
    await countedTable(table, 101);
    // The hot row's 600 events are 7.5 times the head a loop reads (4 batches of 20), and the 100
    // rows behind them change once each; all queued before the daemon runs.
    for (let i = 0; i < 600; i++) await db.query(`update ${table} set n = n + 1 where id = 1`);
    await db.query(`update ${table} set n = n + 1 where id > 1`);

    const engine = await startEngine(db, { batchSize: 20, concurrency: 2 });
    try {
      await waitFor('all 700 events to be handled', async () => (await logged(table)) >= 700, 60_000);
    } finally {
      await engine.stop();
    }
    expect(await logged(table)).toBe(700);
    expect(await outOfOrder(table, (id) => (id === 1 ? 600 : 1))).toEqual([]);
    // The rows behind were handled alongside the hot row's runs, not after them: handling them
    // after the hot row drained would put all 600 of its events first.
    const [progress] = await db.query<{ hot_before_others_done: string }>(
      `select count(*) as hot_before_others_done from test_log
        where label = $1 and row_key ->> 'id' = '1'
          and seq < (select max(seq) from test_log where label = $1 and row_key ->> 'id' <> '1')`,
      [table],
    );
    expect(Number(progress!.hot_before_others_done)).toBeLessThan(300);
    // The hot row went through in runs: a transaction per event (or per quarter-batch share)
    // would take 600 (or 150) transactions.
    const [batches] = await db.query<{ transactions: string }>(
      `select count(distinct e.executed_at) as transactions
         from workflow.automation_executions e
         join workflow.automation_rules r on r.id = e.automation_rules_id
        where r.name = $1 and e.trigger_data -> 'row_key' ->> 'id' = '1'`,
      [`count ${table}`],
    );
    expect(Number(batches!.transactions)).toBeLessThanOrEqual(60);
    const [left] = await db.query<{ count: string }>(`select count(*) from workflow.events`);
    expect(left!.count).toBe('0');
  });
});

describe('a claim that leaves out a row another loop owns', () => {
  it('reaches the rows behind that row with a base window, and takes nothing of it', async () => {
    const table = 'stock.trays';
    await countedTable(table, 31);
    for (let i = 0; i < 200; i++) await db.query(`update ${table} set n = n + 1 where id = 1`);
    await db.query(`update ${table} set n = n + 1 where id > 1`);
    const [{ entity_id: entityId }] = (await db.query<{ entity_id: string }>(
      `select entity_id from workflow.events limit 1`,
    )) as [{ entity_id: string }];

    const owner = await db.pool.connect();
    try {
      // The owner's claim: the head (4 batches of 10) is the hot row alone, so it takes a run of it.
      await owner.query('begin');
      const owned = await claimEvents(owner, 10, 40);
      expect(owned.events.map((event) => event.rowKey)).toEqual(Array(10).fill({ id: 1 }));

      await db.withClient(async (client) => {
        // Reading the same head, another claim finds nothing it may take...
        await client.query('begin');
        expect((await claimEvents(client, 10, 40)).events).toEqual([]);
        await client.query('rollback');
        // ...and leaving the hot row out, it takes the rows behind it, in order.
        await client.query('begin');
        const behind = await claimEvents(client, 10, 40, { entityIds: [entityId], rowKeys: ['{"id": 1}'] });
        expect(behind.events.map((event) => event.rowKey)).toEqual(
          Array.from({ length: 10 }, (_, i) => ({ id: i + 2 })),
        );
        await client.query('rollback');
      });
      await owner.query('rollback');

      // Nobody holds the hot row now, yet a claim that leaves it out still takes none of it.
      await db.withClient(async (client) => {
        await client.query('begin');
        const claim = await claimEvents(client, 40, 40, { entityIds: [entityId], rowKeys: ['{"id": 1}'] });
        expect(
          claim.events.map((event) => (event.rowKey as { id: number }).id).sort((a, b) => a - b),
        ).toEqual(Array.from({ length: 30 }, (_, i) => i + 2));
        await client.query('rollback');
        // Two rows left out (two loops own one each): nothing of either is taken.
        await client.query('begin');
        const two = await claimEvents(client, 40, 40, {
          entityIds: [entityId, entityId],
          rowKeys: ['{"id": 1}', '{"id": 2}'],
        });
        expect(two.events.map((event) => (event.rowKey as { id: number }).id).sort((a, b) => a - b)).toEqual(
          Array.from({ length: 29 }, (_, i) => i + 3),
        );
        await client.query('rollback');
      });
    } finally {
      owner.release();
    }
    await db.query(`delete from workflow.events`);
  });
});

describe('a hot row and one claim loop', () => {
  it('shares each batch with the rows queued behind it, and keeps its order', async () => {
    const table = 'stock.bins';
    await countedTable(table, 61);
    // The hot row's 500 events are many times the head the loop reads (4 batches of 20): the batches
    // it claims are full, so only taking a share of each for the hot row and looking further back
    // lets the 60 rows behind run before the hot row has drained.
    for (let i = 0; i < 500; i++) await db.query(`update ${table} set n = n + 1 where id = 1`);
    await db.query(`update ${table} set n = n + 1 where id > 1`);

    const engine = await startEngine(db, { batchSize: 20, concurrency: 1 });
    try {
      await waitFor('all 560 events to be handled', async () => (await logged(table)) >= 560, 60_000);
    } finally {
      await engine.stop();
    }
    expect(await logged(table)).toBe(560);
    expect(await outOfOrder(table, (id) => (id === 1 ? 500 : 1))).toEqual([]);
    // Taking the hot row's events first would handle all 500 before any other row.
    const [progress] = await db.query<{ hot_before_others_done: string }>(
      `select count(*) as hot_before_others_done from test_log
        where label = $1 and row_key ->> 'id' = '1'
          and seq < (select max(seq) from test_log where label = $1 and row_key ->> 'id' <> '1')`,
      [table],
    );
    expect(Number(progress!.hot_before_others_done)).toBeLessThan(150);
  });
});

describe('a row waiting for a retry', () => {
  it('at the head of the queue holds back only its own later events', async () => {
    const table = 'stock.shelves';
    await countedTable(table, 60);
    // Rows 1..30 change, and those first events fail (as an outage would make them) and wait an hour
    // for their retry; then rows 1..30 change again, then rows 31..60 change once.
    await db.query(`update ${table} set n = n + 1 where id <= 30`);
    await db.query(
      `update workflow.events set attempts = 1, last_error = 'connection lost', run_after = now() + interval '1 hour'`,
    );
    await db.query(`update ${table} set n = n + 1 where id <= 30`);
    await db.query(`update ${table} set n = n + 1 where id > 30`);

    // A claim window of 20 events: the waiting events alone would fill it.
    const engine = await startEngine(db, { batchSize: 5, concurrency: 2 });
    try {
      await waitFor('rows 31..60 to be handled', async () => (await logged(table)) >= 30);
      const [queue] = await db.query<{ waiting: string; held: string }>(
        `select count(*) filter (where run_after > now()) as waiting,
                count(*) filter (where run_after is null) as held
           from workflow.events where state = 'pending'`,
      );
      expect(queue).toEqual({ waiting: '30', held: '30' });
      const early = await db.query(
        `select 1 from test_log where label = $1 and (row_key ->> 'id')::int <= 30`,
        [table],
      );
      expect(early).toEqual([]);

      // Their retry comes due: each row's two events run, in order.
      await db.query(`update workflow.events set run_after = now() where run_after is not null`);
      engine.poke();
      await waitFor('every event to be handled', async () => (await logged(table)) >= 90);
    } finally {
      await engine.stop();
    }
    expect(await logged(table)).toBe(90);
    expect(await outOfOrder(table, (id) => (id <= 30 ? 2 : 1))).toEqual([]);
  });
});
