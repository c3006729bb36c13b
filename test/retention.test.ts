import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, DEFAULT_RETENTION, loadConfig, type RetentionAges } from '../src/config.js';
import { createLogger } from '../src/logger.js';
import { cleanup, CleanupError } from '../src/operations/cleanup.js';
import { MaintenanceJobs } from '../src/scheduler/maintenance.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { TestRoles, type LoginRole } from './support/roles.js';
import { createRule, ensureDba } from './support/rules.js';
import { createRegisteredTable, createUser } from './support/tables.js';

// Issue 10, "Retention": rows are aged by setting their timestamps back, then the maintenance job
// (as the daemon's role) or cleanup (as a rulebook_admin member) runs once.

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
const DAY = 86_400_000;

let db: TestDatabase;
let roles: TestRoles;
let daemon: LoginRole;
let admin: LoginRole;
let ruleId: string;
let entityId: string;
let staffId: string;

beforeAll(async () => {
  db = await createTestDatabase();
  roles = new TestRoles(db);
  daemon = await roles.login('daemon', 'grant rulebook_daemon to %I');
  admin = await roles.login('admin', 'grant rulebook_admin to %I');
  entityId = await createRegisteredTable(db, 'app.orders', `id int primary key, status text`);
  await ensureDba(db);
  ruleId = await createRule(db, { name: 'Orders', entity: 'app.orders', trigger: 'on_update' });
  staffId = await createUser(db, 'staff@example.com', 'Staff');
});

afterAll(async () => {
  await roles.endPools();
  await db.drop();
  await roles.dropRoles();
});

beforeEach(async () => {
  await db.query(`delete from workflow.notification_reads`);
  await db.query(`delete from workflow.notification_deliveries`);
  await db.query(`delete from workflow.notification_payloads`);
  await db.query(`delete from workflow.automation_executions`);
  await db.query(`delete from workflow.allocation_results`);
  await db.query(`delete from workflow.schedule_runs`);
  await db.query(`delete from workflow.events`);
});

/** An execution of the test rule, `ageDays` old. */
async function execution(ageDays: number): Promise<string> {
  const [row] = await db.query<{ id: string }>(
    `insert into workflow.automation_executions (automation_rules_id, entity_type, status, executed_at)
     values ($1, 'orders', 'success', localtimestamp - $2 * interval '1 day') returning id`,
    [ruleId, ageDays],
  );
  return row!.id;
}

/** A delivery of `notification` (its payload is written when missing), `ageDays` old. */
async function delivery(
  notification: string,
  status: string,
  ageDays: number,
  executionId: string | null = null,
): Promise<string> {
  await db.query(
    `insert into workflow.notification_payloads (id, payload) values ($1, '{"subject": "hi"}')
     on conflict (id) do nothing`,
    [notification],
  );
  const [row] = await db.query<{ id: string }>(
    `insert into workflow.notification_deliveries
       (notification_id, automation_execution_id, rule_id, recipient_id, channel, status, created_date)
     values ($1, $2, $3, $4, 'in_app', $5, localtimestamp - $6 * interval '1 day') returning id`,
    [notification, executionId, ruleId, staffId, status, ageDays],
  );
  return row!.id;
}

async function read(deliveryId: string): Promise<void> {
  await db.query(`insert into workflow.notification_reads (delivery_id, user_id) values ($1, $2)`, [
    deliveryId,
    staffId,
  ]);
}

async function allocation(key: string, data: Record<string, unknown>, ageDays: number): Promise<void> {
  await db.query(
    `insert into workflow.allocation_results (id, idempotency_key, allocation_data, created_date)
     values (gen_random_uuid(), $1, $2, localtimestamp - $3 * interval '1 day')`,
    [key, JSON.stringify(data), ageDays],
  );
}

async function tick(ageDays: number): Promise<void> {
  await db.query(
    `insert into workflow.schedule_runs (rule_id, scheduled_for, fired_at)
     values ($1, now() - $2 * interval '1 day', now() - $2 * interval '1 day')`,
    [ruleId, ageDays],
  );
}

async function event(state: string, ageDays: number): Promise<string> {
  const [row] = await db.query<{ id: string }>(
    `insert into workflow.events (entity_id, operation, row_key, new_row, state, created_at)
     values ($1, 'on_update', jsonb_build_object('id', gen_random_uuid()), '{}', $2, now() - $3 * interval '1 day')
     returning id::text as id`,
    [entityId, state, ageDays],
  );
  return row!.id;
}

async function ids(table: string, column = 'id'): Promise<string[]> {
  return (await db.query<{ id: string }>(`select ${column}::text as id from ${table} order by 1`)).map(
    (row) => row.id,
  );
}

const sorted = (values: string[]) => [...values].sort();

async function maintain(retention: RetentionAges, batchSize?: number) {
  const maintenance = new MaintenanceJobs({
    databaseUrl: daemon.url,
    logger,
    intervalMs: 3_600_000,
    retention,
    pruning: { batchSize, restRatio: 0 },
  });
  try {
    return await maintenance.runOnce();
  } finally {
    await maintenance.stop();
  }
}

const notification = () => crypto.randomUUID();

describe('the maintenance job, as the daemon role', () => {
  it('prunes each table at its own age and keeps what is referenced, failed, unfinished or dead', async () => {
    // Executions: 30 days.
    await execution(40);
    const youngExecution = await execution(20);
    const executionOfFailed = await execution(40);
    const executionOfSent = await execution(40);
    // Deliveries: 10 days. N1 keeps its payload for its failed delivery; N2's goes with its last one.
    const n1 = notification();
    const n2 = notification();
    const n3 = notification();
    const oldSent = await delivery(n1, 'sent', 15, executionOfSent);
    await read(oldSent);
    const oldFailed = await delivery(n1, 'failed', 15, executionOfFailed);
    const oldDelivered = await delivery(n2, 'delivered', 15);
    await read(oldDelivered);
    const kept = [
      oldFailed,
      await delivery(n3, 'delivered', 5),
      await delivery(n3, 'bounced', 15),
      await delivery(n3, 'pending', 15),
      await delivery(n3, 'retrying', 15),
    ];
    // Allocations: 20 days; only those that hold no stock.
    const future = new Date(Date.now() + DAY).toISOString();
    await allocation('failed-old', { status: 'failed', mode: 'allocate' }, 25);
    await allocation('released-old', { status: 'success', mode: 'reserve', released_at: '2026-01-01' }, 25);
    await allocation('fulfilled-old', { status: 'partial', mode: 'reserve', fulfilled_at: '2026-01-01' }, 25);
    await allocation('allocated-old', { status: 'success', mode: 'allocate' }, 25);
    await allocation('reserved-old', { status: 'success', mode: 'reserve', expires_at: future }, 25);
    await allocation('failed-young', { status: 'failed', mode: 'allocate' }, 10);
    // Ticks: 1 day.
    await tick(2);
    await tick(0.5);
    const dead = await event('dead', 400);

    const result = await maintain({
      executionsMs: 30 * DAY,
      deliveriesMs: 10 * DAY,
      allocationsMs: 20 * DAY,
      scheduleTicksMs: DAY,
    });

    expect(result).toMatchObject({
      ran: true,
      failed: [],
      prunedDeliveries: 2,
      prunedExecutions: 2,
      prunedAllocations: 3,
      prunedScheduleRuns: 1,
    });
    expect(await ids('workflow.automation_executions')).toEqual(sorted([youngExecution, executionOfFailed]));
    expect(await ids('workflow.notification_deliveries')).toEqual(sorted(kept));
    expect(await ids('workflow.notification_reads', 'delivery_id')).toEqual([]);
    expect(await ids('workflow.notification_payloads')).toEqual(sorted([n1, n3]));
    expect(await ids('workflow.allocation_results', 'idempotency_key')).toEqual([
      'allocated-old',
      'failed-young',
      'reserved-old',
    ]);
    expect((await db.query(`select 1 from workflow.schedule_runs`)).length).toBe(1);
    expect(await ids('workflow.events')).toEqual([dead]);
  });

  it('keeps everything when the ages are 0, however old', async () => {
    const n = notification();
    await delivery(n, 'sent', 3650, await execution(3650));
    await allocation('failed-ancient', { status: 'failed' }, 3650);
    await tick(3650);

    const result = await maintain({
      executionsMs: null,
      deliveriesMs: null,
      allocationsMs: null,
      scheduleTicksMs: null,
    });

    expect(result).toMatchObject({
      ran: true,
      prunedDeliveries: 0,
      prunedExecutions: 0,
      prunedAllocations: 0,
      prunedScheduleRuns: 0,
    });
    expect(await ids('workflow.automation_executions')).toHaveLength(1);
    expect(await ids('workflow.notification_deliveries')).toHaveLength(1);
    expect(await ids('workflow.notification_payloads')).toEqual([n]);
    expect(await ids('workflow.allocation_results')).toHaveLength(1);
    expect(await ids('workflow.schedule_runs', 'rule_id')).toHaveLength(1);
  });

  it('deletes in small batches and walks past kept executions', async () => {
    const keptIds: string[] = [];
    for (let i = 0; i < 7; i++) {
      const id = await execution(100 - i);
      // Every other one has a failed delivery, so batches of 2 meet kept rows throughout.
      if (i % 2 === 0) {
        await delivery(notification(), 'failed', 1, id);
        keptIds.push(id);
      }
    }
    await execution(1);
    const batches: string[] = [];
    await db.query(`create table public.batch_log (at timestamptz default clock_timestamp(), xid xid8)`);
    await db.query(`grant insert on public.batch_log to ${daemon.name}`);
    await db.query(
      `create function public.log_batch() returns trigger language plpgsql as $$
       begin insert into public.batch_log (xid) values (pg_current_xact_id()); return null; end $$`,
    );
    await db.query(
      `create trigger log_batch after delete on workflow.automation_executions
         for each statement execute function public.log_batch()`,
    );
    try {
      const result = await maintain({ ...DEFAULT_RETENTION, executionsMs: 30 * DAY }, 2);
      expect(result).toMatchObject({ ran: true, prunedExecutions: 3, failed: [] });
      for (const row of await db.query<{ xid: string }>(`select distinct xid::text from public.batch_log`)) {
        batches.push(row.xid);
      }
    } finally {
      await db.query(`drop trigger log_batch on workflow.automation_executions`);
      await db.query(`drop table public.batch_log`);
      await db.query(`drop function public.log_batch()`);
    }
    // 7 old rows in batches of 2: 4 batches, each its own transaction.
    expect(batches.length).toBe(4);
    const left = await ids('workflow.automation_executions');
    expect(left).toHaveLength(keptIds.length + 1);
    expect(left).toEqual(expect.arrayContaining(keptIds));
  });

  it('walks kept executions in timestamp order whatever the DateStyle of its sessions', async () => {
    // With DateStyle 'SQL, DMY' the text of 2020-01-31 sorts after that of 2020-02-01: a cursor
    // taken from the text would step back and read kept rows again.
    for (const date of ['2020-01-31', '2020-02-01', '2020-02-02', '2020-02-03', '2020-02-04']) {
      const [row] = await db.query<{ id: string }>(
        `insert into workflow.automation_executions (automation_rules_id, entity_type, status, executed_at)
         values ($1, 'orders', 'success', $2::timestamp) returning id`,
        [ruleId, date],
      );
      await delivery(notification(), 'failed', 1, row!.id);
    }
    await db.query(`create table public.batch_log (xid xid8)`);
    await db.query(`grant insert on public.batch_log to ${daemon.name}`);
    await db.query(
      `create function public.log_batch() returns trigger language plpgsql as $$
       begin insert into public.batch_log (xid) values (pg_current_xact_id()); return null; end $$`,
    );
    await db.query(
      `create trigger log_batch after delete on workflow.automation_executions
         for each statement execute function public.log_batch()`,
    );
    await db.query(`alter role ${daemon.name} set datestyle = 'SQL, DMY'`);
    try {
      const result = await maintain({ ...DEFAULT_RETENTION, executionsMs: 30 * DAY }, 2);
      expect(result).toMatchObject({ ran: true, prunedExecutions: 0, failed: [] });
      // Five kept rows in batches of 2: [31 Jan, 1 Feb], [2 Feb, 3 Feb], [4 Feb], nothing more.
      expect(await db.query(`select count(distinct xid)::int as batches from public.batch_log`)).toEqual([
        { batches: 3 },
      ]);
    } finally {
      await db.query(`alter role ${daemon.name} reset datestyle`);
      await db.query(`drop trigger log_batch on workflow.automation_executions`);
      await db.query(`drop table public.batch_log`);
      await db.query(`drop function public.log_batch()`);
    }
    expect(await ids('workflow.automation_executions')).toHaveLength(5);
  });

  it('never waits for a row a writer holds: it is skipped and pruned by a later run', async () => {
    const n = notification();
    const held = await delivery(n, 'sent', 100);
    await delivery(notification(), 'sent', 100);
    const writer = await db.pool.connect();
    try {
      await writer.query('begin');
      await writer.query(`select 1 from workflow.notification_deliveries where id = $1 for update`, [held]);
      const started = performance.now();
      const result = await maintain(DEFAULT_RETENTION);
      expect(performance.now() - started).toBeLessThan(5_000);
      expect(result).toMatchObject({ ran: true, prunedDeliveries: 1, failed: [] });
      expect(await ids('workflow.notification_deliveries')).toEqual([held]);
    } finally {
      await writer.query('rollback');
      writer.release();
    }
    expect(await maintain(DEFAULT_RETENTION)).toMatchObject({ prunedDeliveries: 1 });
    expect(await ids('workflow.notification_deliveries')).toEqual([]);
    expect(await ids('workflow.notification_payloads')).toEqual([]);
  });

  it('does nothing while another daemon holds the maintenance lock', async () => {
    await execution(100);
    await db.withClient(async (client) => {
      await client.query(`select pg_advisory_lock(hashtextextended('rulebook.maintenance', 0))`);
      try {
        expect(await maintain(DEFAULT_RETENTION)).toMatchObject({ ran: false, prunedExecutions: 0 });
      } finally {
        await client.query(`select pg_advisory_unlock(hashtextextended('rulebook.maintenance', 0))`);
      }
    });
    expect(await ids('workflow.automation_executions')).toHaveLength(1);
    expect(await maintain(DEFAULT_RETENTION)).toMatchObject({ ran: true, prunedExecutions: 1 });
  });
});

describe('cleanup, as a rulebook_admin member', () => {
  it('deletes dead events and failed deliveries older than asked, with their reads and payloads', async () => {
    await event('dead', 40);
    await event('dead', 31);
    const youngDead = await event('dead', 5);
    const oldPending = await event('pending', 40);
    const n1 = notification();
    const n2 = notification();
    const failedAlone = await delivery(n1, 'failed', 40);
    await read(failedAlone);
    await delivery(n2, 'bounced', 40);
    const sentBeside = await delivery(n2, 'sent', 40);
    const youngFailed = await delivery(notification(), 'failed', 5);

    const progress: number[] = [];
    const result = await cleanup(admin.pool, {
      deadEvents: true,
      failedDeliveries: true,
      olderThanSeconds: 30 * 86_400,
      onProgress: (deleted) => progress.push(deleted),
    });

    expect(result).toEqual({ deadEvents: 2, failedDeliveries: 2 });
    expect(progress.at(-1)).toBe(4);
    expect(await ids('workflow.events')).toEqual(sorted([youngDead, oldPending]));
    expect(await ids('workflow.notification_deliveries')).toEqual(sorted([sentBeside, youngFailed]));
    expect(await ids('workflow.notification_reads', 'delivery_id')).toEqual([]);
    // n2's payload stays for its sent delivery.
    expect(await ids('workflow.notification_payloads')).not.toContain(n1);
    expect(await ids('workflow.notification_payloads')).toContain(n2);
  });

  it('does only what it is asked, and refuses unclear requests', async () => {
    const dead = await event('dead', 40);
    await delivery(notification(), 'failed', 40);
    expect(await cleanup(admin.pool, { failedDeliveries: true, olderThanSeconds: 86_400 })).toEqual({
      deadEvents: 0,
      failedDeliveries: 1,
    });
    expect(await ids('workflow.events')).toEqual([dead]);
    await expect(cleanup(admin.pool, { deadEvents: true, olderThanSeconds: 0 })).rejects.toThrow(
      /olderThanSeconds must be a whole number of seconds of at least 1, got 0/,
    );
    await expect(cleanup(admin.pool, { deadEvents: true, olderThanSeconds: 1.5 })).rejects.toBeInstanceOf(
      CleanupError,
    );
    await expect(cleanup(admin.pool, { olderThanSeconds: 60 })).rejects.toThrow(
      /deadEvents, failedDeliveries/,
    );
    expect(await ids('workflow.events')).toEqual([dead]);
  });

  it('walks through many dead events in batches', async () => {
    await db.query(
      `insert into workflow.events (entity_id, operation, row_key, new_row, state, created_at)
       select $1, 'on_update', jsonb_build_object('id', g), '{}', case when g % 3 = 0 then 'pending' else 'dead' end,
              now() - interval '40 days'
         from generate_series(1, 2500) g`,
      [entityId],
    );
    const progress: number[] = [];
    const result = await cleanup(admin.pool, {
      deadEvents: true,
      olderThanSeconds: 86_400,
      onProgress: (deleted) => progress.push(deleted),
    });
    expect(result.deadEvents).toBe(1667);
    expect(progress.length).toBeGreaterThan(1);
    expect(progress.at(-1)).toBe(1667);
    expect(
      (await db.query(`select count(*)::int as n from workflow.events where state = 'pending'`))[0]!.n,
    ).toBe(833);
  });
});

describe('configuration', () => {
  it('reads ages, 0 as keep forever, and defaults', () => {
    expect(loadConfig({}).retention).toEqual({
      executionsMs: 90 * DAY,
      deliveriesMs: 90 * DAY,
      allocationsMs: 90 * DAY,
      scheduleTicksMs: 7 * DAY,
    });
    expect(
      loadConfig({
        RULEBOOK_RETAIN_EXECUTIONS: '12h',
        RULEBOOK_RETAIN_DELIVERIES: '0',
        RULEBOOK_RETAIN_ALLOCATIONS: '2w',
        RULEBOOK_RETAIN_SCHEDULE_TICKS: ' 30m ',
        RULEBOOK_SCHEDULE_CATCHUP: '10 minutes',
      }).retention,
    ).toEqual({
      executionsMs: 12 * 3_600_000,
      deliveriesMs: null,
      allocationsMs: 14 * DAY,
      scheduleTicksMs: 1_800_000,
    });
  });

  it('refuses to keep ticks for less than the catch-up window, which finds missed ticks through them', () => {
    expect(() => loadConfig({ RULEBOOK_RETAIN_SCHEDULE_TICKS: '1h' })).toThrow(
      'RULEBOOK_RETAIN_SCHEDULE_TICKS (1h) must be longer than RULEBOOK_SCHEDULE_CATCHUP (1 hour)',
    );
    expect(loadConfig({ RULEBOOK_RETAIN_SCHEDULE_TICKS: '0' }).retention.scheduleTicksMs).toBeNull();
  });

  it.each([
    ['RULEBOOK_RETAIN_EXECUTIONS', '90'],
    ['RULEBOOK_RETAIN_DELIVERIES', '-1d'],
    ['RULEBOOK_RETAIN_ALLOCATIONS', '3 days'],
    ['RULEBOOK_RETAIN_SCHEDULE_TICKS', 'never'],
  ])('refuses %s=%s, naming the variable and the value', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(
      new RegExp(
        `^${name} must be an age such as 90d, 12h, 30m or 2w .*or 0 to keep forever, got "${value}"$`,
      ),
    );
  });
});
