import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countDeliveries } from '../src/operations/delivery-counts.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

// `rulebook status` shows deliveries by status without reading a table that keeps 90 days of
// them: what operators act on is counted, sent and delivered are estimated once the table is large.

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
  const add = (status: string, n: number) =>
    db.query(
      `insert into workflow.notification_deliveries (notification_id, recipient_id, channel, status)
       select $1::uuid, gen_random_uuid(), 'email', $2 from generate_series(1, $3::int)`,
      [randomUUID(), status, n],
    );
  await add('delivered', 600);
  await add('sent', 300);
  await add('failed', 7);
  await add('bounced', 2);
  await add('pending', 3);
  await add('retrying', 1);
});

afterAll(async () => {
  await db?.drop();
});

describe('countDeliveries', () => {
  it('counts every status exactly while the table is small', async () => {
    await db.query('analyze workflow.notification_deliveries');
    expect(await countDeliveries(db.pool)).toEqual({
      counts: { delivered: 600, sent: 300, failed: 7, bounced: 2, pending: 3, retrying: 1 },
      estimated: [],
    });
  });

  it('estimates sent and delivered from the statistics of a large table, and counts the rest', async () => {
    // Past the threshold (lowered here): the 10 rows written since the last ANALYZE are not in
    // the estimate, and are in the counts of the statuses that are counted.
    await db.query(
      `insert into workflow.notification_deliveries (notification_id, recipient_id, channel, status)
       select gen_random_uuid(), gen_random_uuid(), 'email', 'failed' from generate_series(1, 10)`,
    );
    const { counts, estimated } = await countDeliveries(db.pool, 500);
    expect(estimated).toEqual(['delivered', 'sent']);
    expect(counts).toMatchObject({ failed: 17, bounced: 2, pending: 3, retrying: 1 });
    // ANALYZE read all 913 rows: the shares are exact, the table's size is the planner's estimate.
    expect(counts.delivered).toBeGreaterThan(540);
    expect(counts.delivered).toBeLessThan(660);
    expect(counts.sent).toBeGreaterThan(270);
    expect(counts.sent).toBeLessThan(330);
  });

  it('counts everything when the table has no statistics yet', async () => {
    const fresh = await createTestDatabase();
    try {
      await fresh.query(
        `insert into workflow.notification_deliveries (notification_id, recipient_id, channel, status)
         select gen_random_uuid(), gen_random_uuid(), 'email', 'sent' from generate_series(1, 20)`,
      );
      expect(await countDeliveries(fresh.pool, 0)).toEqual({ counts: { sent: 20 }, estimated: [] });
    } finally {
      await fresh.drop();
    }
  });
});
