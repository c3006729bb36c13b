import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leaveWalMode } from '../src/capture/wal/capture-mode.js';
import { WalCapture } from '../src/capture/wal/wal-capture.js';
import { createLogger } from '../src/logger.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { createRule } from './support/rules.js';
import { createTable } from './support/tables.js';
import { waitFor } from './support/wait.js';

// Two daemons started together with RULEBOOK_CAPTURE=wal on a database in trigger mode switch it
// one at a time (docs/capture-wal.md): while a writer commits all along, every row it writes
// becomes exactly one event, whether the triggers or the slot captured it.

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
let db: TestDatabase;
const captures: WalCapture[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  await createTable(db, 'sales.orders', 'id bigint primary key, status text');
  await createRule(db, { name: 'new order', entity: 'sales.orders', trigger: 'on_create' });
});

afterAll(async () => {
  for (const capture of captures.splice(0)) await capture.stop();
  if (db) {
    await db.withClient((client) => leaveWalMode(client, logger));
    await db.query(
      `select pg_drop_replication_slot(slot_name) from pg_replication_slots where database = current_database()`,
    );
    await db.drop();
  }
});

describe('switching to WAL capture', () => {
  it('loses and doubles no write committed while two daemons switch at once', async () => {
    let written = 0;
    let writing = true;
    const writer = db.withClient(async (client) => {
      while (writing) {
        written += 1;
        await client.query(`insert into sales.orders (id, status) values ($1, 'new')`, [written]);
      }
    });
    await waitFor('the writer to be under way', () => written > 20);
    const both = [0, 1].map(
      () => new WalCapture({ databaseUrl: db.url, logger, batchSize: 100, retryMs: 100 }),
    );
    captures.push(...both);
    await Promise.all(both.map((capture) => capture.start()));
    await waitFor('a reader', () => both.some((capture) => capture.isReader));
    const switchedAt = written;
    await waitFor('more writes after the switch', () => written > switchedAt + 20);
    writing = false;
    await writer;
    await waitFor(
      'every write to be captured',
      async () => {
        const [row] = await db.query<{ n: number }>('select count(*)::int as n from workflow.events');
        return row!.n >= written;
      },
      20_000,
    );
    const keys = await db.query<{ id: number; n: number }>(
      `select (row_key->>'id')::int as id, count(*)::int as n from workflow.events group by 1 order by 1`,
    );
    expect(keys.length).toBe(written);
    expect(keys.filter((key) => key.n !== 1)).toEqual([]);
    expect(keys[0]!.id).toBe(1);
    expect(keys.at(-1)!.id).toBe(written);
  });
});
