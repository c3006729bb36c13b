import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/engine/engine.js';
import type { HttpServer } from '../src/http/server.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { startEngine } from './support/engine.js';
import { createRule } from './support/rules.js';
import { createStaffUser, openSse, startHttp, type StaffUser } from './support/staff.js';
import { waitFor } from './support/wait.js';

// Alerts wake open pages with a NOTIFY on rulebook_alerts, which holds the cluster's notify lock
// through each commit's WAL flush: writers send it only while an alert stream listens.

let db: TestDatabase;
let engine: Engine;
let server: HttpServer;
let base: string;
let ann: StaffUser;
/** What a plain LISTEN on rulebook_alerts hears, the way the stream would. */
let listener: pg.Client;
const heard: string[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  await db.query(`create schema sales`);
  await db.query(
    `create table sales.orders (id uuid primary key default gen_random_uuid(), status text not null)`,
  );
  ann = await createStaffUser(db, 'ann@example.com', { name: 'Ann' });
  const alertAnn = (title: string, extra: Record<string, unknown> = {}) => ({
    action_type: 'create_alert',
    title,
    message: 'order {{id}}',
    recipients: { users: [ann.id] },
    ...extra,
  });
  await createRule(db, {
    name: 'Order needs review',
    entity: 'sales.orders',
    trigger: 'on_update',
    conditions: [{ field_name: 'status', operator: 'changed_to', value: 'review' }],
    actions: [{ name: 'alert', config: alertAnn('Review {{id}}') }],
  });
  // resolve_prior runs its own statement rather than the batch's: both must hold back the NOTIFY.
  await createRule(db, {
    name: 'Order is urgent',
    entity: 'sales.orders',
    trigger: 'on_update',
    conditions: [{ field_name: 'status', operator: 'changed_to', value: 'urgent' }],
    actions: [{ name: 'alert', config: alertAnn('Urgent {{id}}', { resolve_prior: true }) }],
  });
  engine = await startEngine(db);
  ({ server, base } = await startHttp(db));
  listener = new pg.Client({ connectionString: db.url });
  await listener.connect();
  listener.on('notification', (message) => heard.push(message.payload ?? ''));
  await listener.query('listen rulebook_alerts');
});

afterAll(async () => {
  await listener?.end();
  await server?.stop();
  await engine?.stop();
  await db?.drop();
});

/**
 * The alert ids heard so far. Notifications reach a listener in commit order, so once a marker
 * sent now arrives, every notification of an earlier commit has arrived too.
 */
async function heardSoFar(): Promise<string[]> {
  const marker = `marker ${randomUUID()}`;
  await db.query(`select pg_notify('rulebook_alerts', $1)`, [marker]);
  await waitFor('the marker notification', () => heard.includes(marker));
  return heard.filter((payload) => !payload.startsWith('marker '));
}

async function listening(): Promise<boolean> {
  const [row] = await db.query<{ listening: boolean }>(
    'select workflow.alert_stream_listening() as listening',
  );
  return row!.listening;
}

/** Sets a new order's status, and returns the id of the alert the engine created for it. */
async function alertFor(status: 'review' | 'urgent'): Promise<string> {
  const [order] = await db.query<{ id: string }>(
    `insert into sales.orders (status) values ('new') returning id`,
  );
  await db.query(`update sales.orders set status = $2 where id = $1`, [order!.id, status]);
  const alert = await waitFor(`the ${status} alert`, async () => {
    const [row] = await db.query<{ id: string }>(
      `select id from workflow.alerts where source_entity_id = $1`,
      [order!.id],
    );
    return row;
  });
  return alert.id;
}

describe('alert NOTIFYs', () => {
  it('are not sent while no alert stream is open', async () => {
    expect(await listening()).toBe(false);
    const batched = await alertFor('review');
    const resolving = await alertFor('urgent');
    const ids = await heardSoFar();
    expect(ids).not.toContain(batched);
    expect(ids).not.toContain(resolving);
  });

  it('reach a stream while one is open, and stop when it closes', async () => {
    const stream = await openSse(`${base}/api/alerts/stream`, { authorization: `Bearer ${ann.token}` });
    try {
      expect(stream.status).toBe(200);
      // Registered before the stream was answered.
      expect(await listening()).toBe(true);
      for (const status of ['review', 'urgent'] as const) {
        const id = await alertFor(status);
        await stream.next((e) => e.event === 'alert' && (JSON.parse(e.data) as { id: string }).id === id);
        expect(await heardSoFar()).toContain(id);
      }
    } finally {
      stream.close();
    }
    await waitFor('the registration to go with the last stream', async () => !(await listening()));
    const after = await alertFor('review');
    expect(await heardSoFar()).not.toContain(after);
  });

  it('are not sent for a registration whose listener is gone, which the next stream deletes', async () => {
    // What a server that died leaves behind: its row, without its connection.
    await db.query(`insert into workflow.alert_listeners (listener) values ('rulebook-alert-stream dead')`);
    expect(await listening()).toBe(false);
    const id = await alertFor('review');
    expect(await heardSoFar()).not.toContain(id);

    const stream = await openSse(`${base}/api/alerts/stream?access_token=${ann.token}`);
    try {
      expect(stream.status).toBe(200);
      const rows = await db.query<{ listener: string }>('select listener from workflow.alert_listeners');
      expect(rows).toHaveLength(1);
      expect(rows[0]!.listener).toMatch(/^rulebook-alert-stream [0-9a-f-]{36}$/);
    } finally {
      stream.close();
    }
  });

  it('resume after the stream\u2019s listener reconnects', async () => {
    const stream = await openSse(`${base}/api/alerts/stream`, { authorization: `Bearer ${ann.token}` });
    try {
      // A database restart empties the unlogged table: the stream registers again on reconnecting.
      await db.query('delete from workflow.alert_listeners');
      await db.query(
        `select pg_terminate_backend(pid) from pg_stat_activity
          where datname = current_database() and application_name like 'rulebook-alert-stream %'`,
      );
      await stream.next((e) => e.event === 'resync', 30_000);
      await waitFor('the stream to register again', () => listening());
      const id = await alertFor('review');
      await stream.next((e) => e.event === 'alert' && (JSON.parse(e.data) as { id: string }).id === id);
    } finally {
      stream.close();
    }
  });
});
