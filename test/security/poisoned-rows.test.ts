import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import type { Engine } from '../../src/engine/engine.js';
import { HttpServer } from '../../src/http/server.js';
import { createLogger } from '../../src/logger.js';
import { MaintenanceJobs } from '../../src/scheduler/maintenance.js';
import { CURRENCY_FORMAT_CACHE_LIMIT, cachedCurrencyFormats } from '../../src/templating/helpers.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { TestRoles, type LoginRole } from '../support/roles.js';
import { startEngine, TEST_LOG_TABLE } from '../support/engine.js';
import { executionsOf } from '../support/executions.js';
import { createRule, ensureDba } from '../support/rules.js';
import { waitFor } from '../support/wait.js';
import { createTable } from '../support/tables.js';

// Issue 9, items 6 and 9: a poisoned row fails alone; a stalled queue makes /healthz unhealthy; one
// broken reservation does not keep the others from being released.

let db: TestDatabase;
let engine: Engine | undefined;
let http: HttpServer | undefined;
let roles: TestRoles;
let writer: LoginRole;

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');

beforeAll(async () => {
  db = await createTestDatabase();
  await db.query(TEST_LOG_TABLE);
  await createTable(db, 'app.docs', `id serial primary key, n int not null default 0, body jsonb`);
  await ensureDba(db);
  // An application writer: INSERT and UPDATE on its table, nothing on workflow.
  roles = new TestRoles(db);
  writer = await roles.login(
    'app_writer',
    'grant usage on schema app to %I',
    'grant select, insert, update on app.docs to %I',
    'grant usage on all sequences in schema app to %I',
  );
});

afterEach(async () => {
  await http?.stop();
  http = undefined;
  await engine?.stop();
  engine = undefined;
  await db.query(`update workflow.automation_rules set is_active = false`);
});

afterAll(async () => {
  await roles.endPools();
  await db.drop();
  await roles.dropRoles();
});

function nested(depth: number): string {
  return `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
}

async function startHealth(maxPendingAgeSeconds: number): Promise<string> {
  http = new HttpServer({ port: 0, host: '127.0.0.1', pool: db.pool, engine, logger, maxPendingAgeSeconds });
  await http.start();
  return `http://127.0.0.1:${http.port}/healthz`;
}

describe('a row holding jsonb nested 5,000 deep', () => {
  it('fails its own events, recorded, while the other rows go on', async () => {
    const created = await createRule(db, {
      name: 'Doc created',
      entity: 'app.docs',
      trigger: 'on_create',
      actions: [{ name: 'log', config: { action_type: 'test_log', label: 'created {{id}} {{json body}}' } }],
    });
    const updated = await createRule(db, {
      name: 'Doc updated',
      entity: 'app.docs',
      trigger: 'on_update',
      actions: [{ name: 'log', config: { action_type: 'test_log', label: 'updated {{id}}' } }],
    });
    engine = await startEngine(db);
    const health = await startHealth(300);

    const [poisoned] = await writer.query<{ id: number }>(
      `insert into app.docs (body) values ($1::jsonb) returning id`,
      [nested(5000)],
    );
    for (let n = 1; n <= 20; n++) {
      await writer.query(`update app.docs set n = $2 where id = $1`, [poisoned!.id, n]);
    }
    const poisonedId = poisoned!.id as number;
    // A row nested as deep as real data gets is handled, templates included.
    const [fine] = await writer.query(`insert into app.docs (body) values ($1::jsonb) returning id`, [
      nested(40),
    ]);
    const [canary] = await writer.query(`insert into app.docs (n) values (7) returning id`);

    await waitFor('the canary and the fine row to be handled', async () => {
      const rows = await db.query<{ label: string }>('select label from test_log');
      return rows.some((row) => row.label.startsWith(`created ${String(canary!.id)} `)) &&
        rows.some((row) => row.label === `created ${String(fine!.id)} ${nested(40)}`)
        ? rows
        : undefined;
    });
    const dead = await waitFor('the poisoned row events to be dead', async () => {
      const rows = await db.query<{ state: string; attempts: number; last_error: string }>(
        `select state, attempts, last_error from workflow.events where row_key ->> 'id' = $1 order by id`,
        [String(poisonedId)],
      );
      return rows.length === 21 && rows.every((row) => row.state === 'dead') ? rows : undefined;
    });
    expect(dead[0]!.attempts).toBe(1);
    expect(dead[0]!.last_error).toMatch(/^new_row\.body\.a\.a.* is nested more than 100 levels deep/);
    expect(dead[1]!.last_error).toMatch(/^(new|old)_row\.body\.a/);
    expect(
      (await db.query(`select 1 from test_log where label like $1`, [`% ${String(poisonedId)}%`])).length,
    ).toBe(0);
    expect(engine.running).toBe(true);
    expect(engine.metrics.eventsFailed.render()).toContain('rulebook_events_failed_total{state="dead"} 21');

    // The queue is not stuck: later changes of other rows and of the same row still run.
    await writer.query(`update app.docs set n = 8 where id = $1`, [canary!.id]);
    await waitFor('the canary update', async () => (await executionsOf(db, updated)).length === 1);
    expect((await executionsOf(db, created)).map((row) => row.status)).toEqual(['success', 'success']);

    const response = await fetch(health);
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ status: 'ok', events: { pending: 0, dead: 21 } });
  });
});

describe('rows that pick currency codes and locales', () => {
  it('keep the formatter cache bounded and an unknown code fails only its action', async () => {
    await db.query(`create table app.prices (id serial primary key, amount numeric, code text, locale text)`);
    const ruleId = await createRule(db, {
      name: 'Price shown',
      entity: 'app.prices',
      trigger: 'on_create',
      actions: [
        { name: 'show', config: { action_type: 'test_log', label: 'price {{currency amount code locale}}' } },
      ],
    });
    await db.query('grant select, insert on app.prices to ' + writer.name);
    await db.query('grant usage on all sequences in schema app to ' + writer.name);
    engine = await startEngine(db);
    const rows = CURRENCY_FORMAT_CACHE_LIMIT + 100;
    await writer.query(
      `insert into app.prices (amount, code, locale)
         select 5, 'EUR', 'en-US-x-p' || i from generate_series(1, $1::int) as i`,
      [rows],
    );
    await writer.query(`insert into app.prices (amount, code, locale) values (5, 'XYZ', 'en-US')`);
    const executions = await waitFor('every price row handled', async () => {
      const found = await executionsOf(db, ruleId);
      return found.length === rows + 1 ? found : undefined;
    });
    expect(executions.filter((row) => row.status === 'success')).toHaveLength(rows);
    expect(executions.filter((row) => row.status === 'failed')).toEqual([
      expect.objectContaining({
        error_message: expect.stringMatching(/currency "XYZ" .*not an ISO 4217 currency code/),
      }),
    ]);
    expect(cachedCurrencyFormats()).toBeLessThanOrEqual(CURRENCY_FORMAT_CACHE_LIMIT);
  });
});

describe('/healthz and a queue that does not move', () => {
  it('answers 503 with a reason when the oldest pending event is older than the limit', async () => {
    await createRule(db, {
      name: 'Doc created, watched',
      entity: 'app.docs',
      trigger: 'on_create',
      actions: [{ name: 'log', config: { action_type: 'test_log', label: 'watched {{id}}' } }],
    });
    const health = await startHealth(60);
    expect((await fetch(health)).status).toBe(200);
    await writer.query(`insert into app.docs (n) values (100)`);
    // Captured two minutes ago, and no daemon handling events.
    await db.query(
      `update workflow.events set created_at = now() - interval '2 minutes' where state = 'pending'`,
    );
    const stalled = await fetch(health);
    expect(stalled.status).toBe(503);
    expect(await stalled.json()).toMatchObject({
      status: 'unhealthy',
      reasons: [expect.stringMatching(/^the oldest pending event is 12\d s old, more than 60 s/)],
      events: { pending: 1, max_pending_age_seconds: 60 },
    });

    await http!.stop();
    engine = await startEngine(db);
    const fresh = await startHealth(60);
    await waitFor('the queue to drain', async () => (await fetch(fresh)).status === 200);
  });

  it('reads the limit from RULEBOOK_HEALTH_MAX_PENDING_AGE_SECONDS', () => {
    expect(loadConfig({}).health.maxPendingAgeSeconds).toBe(300);
    expect(loadConfig({ RULEBOOK_HEALTH_MAX_PENDING_AGE_SECONDS: '45' }).health.maxPendingAgeSeconds).toBe(
      45,
    );
    expect(() => loadConfig({ RULEBOOK_HEALTH_MAX_PENDING_AGE_SECONDS: '0' })).toThrow(ConfigError);
  });
});

describe('one broken reservation', () => {
  it('is skipped and recorded while the other expired reservations are released', async () => {
    await createTable(db, 'stock.lots', `id int primary key, reserved int not null`);
    await db.query(`create table stock.dropped (id int primary key, reserved int not null)`);
    await db.query(`insert into stock.lots values (1, 5), (2, 4)`);
    const reservation = (id: string, table: string, lot: number, expiresAt: string) =>
      db.query(
        `insert into workflow.allocation_results (id, idempotency_key, allocation_data, created_date)
         values ($1::uuid, $1::text, $2, now()::timestamp)`,
        [
          id,
          JSON.stringify({
            mode: 'reserve',
            status: 'success',
            expires_at: expiresAt,
            inventory: { schema: 'stock', name: table, table: `stock.${table}`, quantity_column: 'reserved' },
            allocated_items: [{ lot_key: { id: lot }, quantity: 2 }],
          }),
        ],
      );
    const past = new Date(Date.now() - 60_000).toISOString();
    const brokenTable = '00000000-0000-4000-8000-000000000001';
    const brokenTime = '00000000-0000-4000-8000-000000000002';
    const good = '00000000-0000-4000-8000-000000000003';
    const alsoGood = '00000000-0000-4000-8000-000000000004';
    await reservation(brokenTable, 'dropped', 1, past);
    await reservation(brokenTime, 'lots', 1, '2026-13-45T99:00:00Z');
    await reservation(good, 'lots', 1, past);
    await reservation(alsoGood, 'lots', 2, past);
    await db.query(`drop table stock.dropped`);

    const maintenance = new MaintenanceJobs({ databaseUrl: db.url, logger, intervalMs: 3_600_000 });
    try {
      expect(await maintenance.runOnce()).toMatchObject({ ran: true, releasedReservations: 2, failed: [] });
    } finally {
      await maintenance.stop();
    }
    expect(await db.query(`select id, reserved from stock.lots order by id`)).toEqual([
      { id: 1, reserved: 3 },
      { id: 2, reserved: 2 },
    ]);
    const rows = await db.query<{ id: string; data: Record<string, unknown> }>(
      `select id, allocation_data as data from workflow.allocation_results order by id`,
    );
    const byId = new Map(rows.map((row) => [row.id, row.data]));
    expect(byId.get(brokenTable)).toMatchObject({
      release_error: { sqlstate: '42P01', message: expect.stringContaining('stock.dropped') },
    });
    expect(byId.get(brokenTable)).not.toHaveProperty('released_at');
    // Never visited by the release loop: only expired reservations are, and this one's expires_at
    // is not a time. It is marked once, and stays reserved.
    expect(byId.get(brokenTime)).toMatchObject({
      release_error: { sqlstate: '22007', message: expect.stringContaining('is not a time') },
    });
    expect(byId.get(brokenTime)).not.toHaveProperty('released_at');
    expect(byId.get(good)).toHaveProperty('released_at');
    expect(byId.get(alsoGood)).toMatchObject({ release_reason: 'reservation expired' });
  });
});
