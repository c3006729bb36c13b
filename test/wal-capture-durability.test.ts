import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leaveWalMode } from '../src/capture/wal/capture-mode.js';
import { WalCapture } from '../src/capture/wal/wal-capture.js';
import { startEmbeddedServer } from '../src/db/embedded-server.js';
import { migrateDatabase } from '../src/db/migrate.js';
import { createLogger } from '../src/logger.js';
import { packageRoot } from '../src/package-root.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { spawnRulebook, type DaemonProcess } from './support/daemon-process.js';
import { TemporaryDirs } from './support/embedded-dirs.js';
import { freePort } from './support/free-port.js';
import { createRule } from './support/rules.js';
import { waitFor } from './support/wait.js';

// RULEBOOK_CAPTURE=wal loses nothing and doubles nothing when the reading daemon is killed with
// SIGKILL (another daemon takes over), or when PostgreSQL restarts under the reader.

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');

beforeAll(() => {
  // The spawned daemons run the built CLI; it must include WAL capture.
  if (!fs.existsSync(path.join(packageRoot(), 'dist/src/capture/wal/wal-capture.js'))) {
    execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: packageRoot() });
  }
});

async function insertBatches(url: string, from: number, batches: number, perBatch: number): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    for (let batch = 0; batch < batches; batch++) {
      const start = from + batch * perBatch;
      await client.query(
        `insert into sales.orders (id, status) select g, 'new' from generate_series($1::int, $2::int) g`,
        [start, start + perBatch - 1],
      );
    }
  } finally {
    await client.end();
  }
  return from + batches * perBatch;
}

describe('a daemon killed with SIGKILL', () => {
  let db: TestDatabase;
  const daemons: DaemonProcess[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    await db.query(
      `create schema sales; create table sales.orders (id int primary key, status text not null)`,
    );
    const [staff] = await db.query<{ id: string }>(
      `insert into core.users (email, name) values ('ann@example.com', 'Ann') returning id`,
    );
    await createRule(db, {
      name: 'New order',
      entity: 'sales.orders',
      trigger: 'on_create',
      actions: [
        {
          name: 'alert',
          config: {
            action_type: 'create_alert',
            title: 'order {{id}}',
            message: 'order {{id}}',
            recipients: { users: [staff!.id] },
          },
        },
      ],
    });
  });

  afterAll(async () => {
    for (const daemon of daemons) daemon.child.kill('SIGKILL');
    await Promise.all(daemons.map((daemon) => daemon.exited()));
    if (db) {
      // A killed reader's walsender may hold its slot for a moment after the process is gone.
      await waitFor('the slot to be released', async () => {
        const rows = await db.query(
          `select 1 from pg_replication_slots where database = current_database() and active`,
        );
        return rows.length === 0;
      });
      await db.withClient((client) => leaveWalMode(client, logger));
      await db.query(
        `select pg_drop_replication_slot(slot_name) from pg_replication_slots where database = current_database()`,
      );
      await db.drop();
    }
  });

  const env = () => ({
    DATABASE_URL: db.url,
    RULEBOOK_CAPTURE: 'wal',
    RULEBOOK_WAL_RETRY_MS: '200',
    RULEBOOK_WAL_BATCH_SIZE: '50',
    RULEBOOK_POLL_INTERVAL_MS: '200',
  });

  it('loses no change and doubles none: the other daemon takes over the slot', async () => {
    const first = spawnRulebook(['start', '--no-http'], env());
    daemons.push(first);
    await first.waitForLog('WAL capture: this daemon reads the slot');
    const second = spawnRulebook(['start', '--no-http'], env());
    daemons.push(second);
    await second.waitForLog('engine started');
    expect(second.logs.some((log) => log.msg === 'WAL capture: this daemon reads the slot')).toBe(false);

    let next = await insertBatches(db.url, 1, 10, 50);
    // Killed while changes are being appended: some batches committed, perhaps not confirmed.
    await waitFor('some alerts', async () => {
      const [row] = await db.query<{ n: number }>('select count(*)::int as n from workflow.alerts');
      return row!.n > 0;
    });
    const writing = insertBatches(db.url, next, 10, 50);
    first.child.kill('SIGKILL');
    next = await writing;
    await first.exited();
    await second.waitForLog('WAL capture: this daemon reads the slot', 30_000);
    next = await insertBatches(db.url, next, 4, 50);

    const total = next - 1;
    await waitFor(
      `${total} alerts`,
      async () => {
        const [row] = await db.query<{ n: number }>('select count(*)::int as n from workflow.alerts');
        return row!.n >= total;
      },
      60_000,
    );
    const [summary] = await db.query<{ alerts: number; orders: number }>(
      `select count(*)::int as alerts, count(distinct message)::int as orders from workflow.alerts`,
    );
    expect(summary).toEqual({ alerts: total, orders: total });
  });

  it('a daemon started in trigger mode appends what the slot held unread, once, and drops the slot', async () => {
    for (const daemon of daemons.splice(0)) {
      daemon.child.kill('SIGKILL');
      await daemon.exited();
    }
    await waitFor('the slot to be released', async () => {
      const rows = await db.query(
        `select 1 from pg_replication_slots where database = current_database() and active`,
      );
      return rows.length === 0;
    });
    const [before] = await db.query<{ n: number; last: number }>(
      `select count(*)::int as n, coalesce(max(id), 0)::int as last from sales.orders`,
    );
    // Written in WAL mode with no reader running: only the slot has them.
    let next = await insertBatches(db.url, before!.last + 1, 6, 50);
    const triggers = spawnRulebook(['start', '--no-http'], { ...env(), RULEBOOK_CAPTURE: 'triggers' });
    daemons.push(triggers);
    await triggers.waitForLog('WAL capture is off: dropped its replication slot');
    // After the switch: captured by the triggers.
    next = await insertBatches(db.url, next, 2, 50);
    const total = next - 1;
    await waitFor(
      `${total} alerts`,
      async () => {
        const [row] = await db.query<{ n: number }>('select count(*)::int as n from workflow.alerts');
        return row!.n >= total;
      },
      60_000,
    );
    // Order is checked on the events in wal-capture.test.ts; here the engine consumes them.
    const [summary] = await db.query<{ alerts: number; orders: number; slots: number }>(
      `select count(*)::int as alerts, count(distinct message)::int as orders,
              (select count(*)::int from pg_replication_slots where database = current_database()) as slots
         from workflow.alerts`,
    );
    expect(summary).toEqual({ alerts: total, orders: total, slots: 0 });
  });
});

describe('PostgreSQL restarting under the reader', () => {
  const temporary = new TemporaryDirs();

  afterAll(() => temporary.removeAll());

  it('loses no change and doubles none', async () => {
    const dir = temporary.make('rulebook-wal-restart-');
    const port = await freePort();
    const options = { dir, port, systemDir: temporary.system(), settings: { wal_level: 'logical' } };
    let server = await startEmbeddedServer(options);
    const url = server.url;
    let capture: WalCapture | undefined;
    try {
      await migrateDatabase(url);
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      await admin.query(
        `create schema sales; create table sales.orders (id int primary key, status text not null)`,
      );
      await admin.query(`select workflow.register_entity('sales.orders')`);
      const [user] = (
        await admin.query<{ id: string }>(
          `insert into core.users (email, name) values ('dba@example.com', 'DBA') returning id`,
        )
      ).rows;
      await admin.query(
        `insert into workflow.automation_rules
           (name, entity_id, entity_type_id, trigger_type_id, is_active, created_by, updated_by)
         select 'created', e.id, e.entity_type_id, t.id, true, $1, $1
           from workflow.entities e, workflow.trigger_types t where t.name = 'on_create'`,
        [user!.id],
      );
      await admin.end();

      capture = new WalCapture({ databaseUrl: url, logger, batchSize: 50, retryMs: 200 });
      await capture.start();
      const reading = capture;
      await waitFor('a reader', () => reading.isReader);
      let next = await insertBatches(url, 1, 10, 50);
      await waitFor('some events appended', () => reading.appendedEvents > 0);

      await server.stop();
      server = await startEmbeddedServer(options);
      next = await insertBatches(url, next, 10, 50);
      const total = next - 1;

      const count = async () => {
        const client = new pg.Client({ connectionString: url });
        await client.connect();
        try {
          const { rows } = await client.query<{ events: number; rows: number }>(
            `select count(*)::int as events, count(distinct row_key)::int as rows from workflow.events`,
          );
          return rows[0]!;
        } finally {
          await client.end();
        }
      };
      await waitFor(`${total} events`, async () => (await count()).events >= total, 60_000);
      expect(await count()).toEqual({ events: total, rows: total });
    } finally {
      await capture?.stop();
      await server.stop();
    }
  });
});
