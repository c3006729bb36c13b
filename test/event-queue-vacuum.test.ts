import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { createRule } from './support/rules.js';

// The event queue empties and fills again all day. VACUUM truncating its empty tail would take an
// ACCESS EXCLUSIVE lock on workflow.events, which every capturing writer waits behind.

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.query(`create schema sales`);
  await db.query(`create table sales.orders (id bigint primary key, status text)`);
  // Without a rule on them, inserts are not captured.
  await createRule(db, { name: 'new order', entity: 'sales.orders', trigger: 'on_create' });
});

afterAll(async () => {
  await db?.drop();
});

describe('the event queue', () => {
  it('keeps its pages when vacuum finds them empty, instead of truncating them under a lock', async () => {
    await db.query(`insert into sales.orders select g, 'new' from generate_series(1, 5000) g`);
    const [queued] = await db.query<{ n: number; pages: number }>(
      `select count(*)::int as n, pg_relation_size('workflow.events')::float8 / current_setting('block_size')::int as pages
         from workflow.events`,
    );
    expect(queued!.n).toBe(5000);
    expect(queued!.pages).toBeGreaterThan(10);
    await db.query('delete from workflow.events');
    await db.query('vacuum workflow.events');
    const [after] = await db.query<{ pages: number }>(
      `select pg_relation_size('workflow.events')::float8 / current_setting('block_size')::int as pages`,
    );
    expect(after!.pages).toBe(queued!.pages);
  });
});
