import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedServer } from '../src/db/embedded-server.js';
import { migrateDatabase } from '../src/db/migrate.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { ensureCliBuilt, spawnRulebook } from './support/daemon-process.js';
import { startEngine } from './support/engine.js';
import { createRule } from './support/rules.js';
import { freePort } from './support/free-port.js';
import { waitFor } from './support/wait.js';
import { createTable, createUser } from './support/tables.js';

let db: TestDatabase;
let staffId: string;

beforeAll(async () => {
  ensureCliBuilt();
  db = await createTestDatabase();
  await createTable(
    db,
    'sales.orders',
    `id uuid primary key default gen_random_uuid(), status text not null`,
  );
  staffId = await createUser(db, 'ann@example.com', 'Ann');
  await createRule(db, {
    name: 'New order',
    entity: 'sales.orders',
    trigger: 'on_create',
    actions: [
      {
        name: 'alert',
        config: {
          action_type: 'create_alert',
          title: 'New order {{id}}',
          message: 'status {{status}}',
          recipients: { users: [staffId] },
        },
      },
    ],
  });
});

afterAll(async () => {
  await db.drop();
});

const env = () => ({ DATABASE_URL: db.url, RULEBOOK_POLL_INTERVAL_MS: '200', RULEBOOK_BATCH_SIZE: '25' });

async function count(sql: string): Promise<number> {
  const [row] = await db.query<{ count: string }>(sql);
  return Number(row!.count);
}

describe('rulebook start', () => {
  it('exits 0 on SIGTERM after finishing its work', async () => {
    const daemon = spawnRulebook(['start', '--no-http'], env());
    await daemon.waitForLog('engine started');
    await db.query(`insert into sales.orders (status) values ('sigterm')`);
    await waitFor('the alert', () =>
      count(`select count(*) from workflow.alerts where message = 'status sigterm'`),
    );
    daemon.child.kill('SIGTERM');
    const { code } = await daemon.exited();
    expect(code).toBe(0);
    expect(daemon.logs.map((log) => log.msg)).toContain('engine stopped');
  });

  it('loses nothing and doubles nothing when killed with SIGKILL mid-batch and restarted', async () => {
    await db.query(`delete from workflow.alert_recipients; delete from workflow.alerts`);
    await db.query(`delete from workflow.automation_executions`);
    await db.query(`insert into sales.orders (status) select 'bulk' from generate_series(1, 3000)`);
    const first = spawnRulebook(['start', '--no-http'], env());
    await waitFor(
      'some executions',
      async () => (await count(`select count(*) from workflow.automation_executions`)) > 100,
    );
    first.child.kill('SIGKILL');
    await first.exited();
    const handled = await count(`select count(*) from workflow.automation_executions`);
    expect(handled).toBeLessThan(3000);

    const second = spawnRulebook(['start', '--no-http'], env());
    try {
      await waitFor(
        'every order to be handled',
        async () => (await count(`select count(*) from workflow.events`)) === 0,
        60_000,
      );
    } finally {
      second.child.kill('SIGTERM');
      await second.exited();
    }
    expect(await count(`select count(*) from workflow.alerts where message = 'status bulk'`)).toBe(3000);
    expect(await count(`select count(*) from workflow.automation_executions`)).toBe(3000);
    expect(
      await count(`select count(distinct trigger_data->>'event_id') from workflow.automation_executions`),
    ).toBe(3000);
  });

  it('serves /healthz and /metrics over HTTP', async () => {
    const port = await freePort();
    const daemon = spawnRulebook(['start'], { ...env(), PORT: String(port) });
    try {
      await daemon.waitForLog('http server listening');
      const health = await fetch(`http://127.0.0.1:${port}/healthz`);
      expect(health.status).toBe(200);
      expect(await health.json()).toMatchObject({
        status: 'ok',
        database: { ok: true },
        engine: { running: true },
      });
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(metrics).toContain('# TYPE rulebook_events_processed_total counter');
      expect(metrics).toContain('rulebook_outbox_events');
    } finally {
      daemon.child.kill('SIGTERM');
      expect((await daemon.exited()).code).toBe(0);
    }
  });

  it('retries a dead event with `rulebook events retry`', async () => {
    const [{ id }] = (await db.query<{ id: string }>(
      `insert into workflow.events (entity_id, operation, row_key, new_row, state, attempts, last_error)
       select id, 'on_create', '{"id": "x"}', '{"status": "revived"}', 'dead', 5, 'boom'
         from workflow.entities limit 1 returning id`,
    )) as [{ id: string }];
    const retry = spawnRulebook(['events', 'retry', id], { DATABASE_URL: db.url });
    expect((await retry.exited()).code).toBe(0);
    expect(retry.output()).toContain(`event ${id} queued again`);
    const [event] = await db.query(`select state, attempts, last_error from workflow.events where id = $1`, [
      id,
    ]);
    expect(event).toEqual({ state: 'pending', attempts: 0, last_error: null });
    const missing = spawnRulebook(['events', 'retry', '999999999'], { DATABASE_URL: db.url });
    expect((await missing.exited()).code).toBe(1);
    expect(missing.output()).toContain('there is no event 999999999');
    await db.query(`delete from workflow.events where id = $1`, [id]);
  });
});

describe('a database restart under a running daemon', () => {
  it('reconnects with backoff and carries on', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rulebook-restart-'));
    const port = await freePort();
    const settings = { fsync: 'off', synchronous_commit: 'off' };
    let server = await startEmbeddedServer({ dir, port, settings });
    const url = server.url.replace(/\/postgres$/, '/restart');
    const admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
    await admin.query('create database restart');
    await admin.end();
    await migrateDatabase(url);
    const local = {
      url,
      query: async (sql: string) => (await pool.query(sql)).rows,
    } as unknown as TestDatabase;
    const pool = new pg.Pool({ connectionString: url });
    pool.on('error', () => {});
    await pool.query(`create schema sales; create table sales.orders (id serial primary key, status text)`);
    await pool.query(`insert into core.users (email) values ('ann@example.com')`);
    const [user] = (await pool.query<{ id: string }>(`select id from core.users`)).rows;
    await createRule(
      {
        ...local,
        query: async (sql: string, values?: unknown[]) => (await pool.query(sql, values)).rows,
      } as unknown as TestDatabase,
      {
        name: 'created',
        entity: 'sales.orders',
        trigger: 'on_create',
        actions: [
          {
            name: 'a',
            config: {
              action_type: 'create_alert',
              title: 't',
              message: '{{status}}',
              recipients: { users: [user!.id] },
            },
          },
        ],
      },
    );
    const engine = await startEngine({ url } as TestDatabase, { pollIntervalMs: 100 });
    const alerts = async (message: string) =>
      Number(
        (await pool.query(`select count(*) from workflow.alerts where message = $1`, [message])).rows[0]
          .count,
      );
    try {
      await pool.query(`insert into sales.orders (status) values ('before')`);
      await waitFor('the first alert', () => alerts('before'));
      await server.stop();
      server = await startEmbeddedServer({ dir, port, settings });
      await waitFor('the pool to reconnect', async () =>
        pool.query('select 1').then(
          () => true,
          () => false,
        ),
      );
      await pool.query(`insert into sales.orders (status) values ('after')`);
      await waitFor('the alert after the restart', () => alerts('after'), 30_000);
    } finally {
      await engine.stop();
      await pool.end();
      await server.stop();
      fs.rmSync(dir, { recursive: true, force: true });
      // As root the cluster of this 0700 temporary directory lives under /var/lib/rulebook.
      fs.rmSync(path.dirname(server.clusterDir), { recursive: true, force: true });
    }
  });
});
