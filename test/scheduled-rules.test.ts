import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { parseTimeInterval } from '../src/conditions/time-interval.js';
import { loadConfig } from '../src/config.js';
import { startDaemon, type RunningDaemon } from '../src/daemon.js';
import type { Engine } from '../src/engine/engine.js';
import { createLogger } from '../src/logger.js';
import { MaintenanceJobs } from '../src/scheduler/maintenance.js';
import { parseSchedule } from '../src/scheduler/schedule.js';
import { Scheduler, type SchedulerOptions } from '../src/scheduler/scheduler.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { startEngine, TEST_LOG_TABLE } from './support/engine.js';
import { TestRoles, type LoginRole } from './support/roles.js';
import { createRule, ensureDba, registerEntity } from './support/rules.js';
import { waitFor } from './support/wait.js';
import { createRegisteredTable, createUser } from './support/tables.js';

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');

let db: TestDatabase;
let roles: TestRoles;
let ruleWriter: LoginRole;
let staffId: string;
const running: { stop(): Promise<void> }[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  await db.query(TEST_LOG_TABLE);
  await createRegisteredTable(db, 'ops.jobs', `id int primary key, name text`);
  await db.query(
    `create table ops.orders (id int primary key, status text not null, created_at timestamptz not null, due date)`,
  );
  await registerEntity(db, 'ops.orders');
  await db.query(
    `create view ops.pending_orders as select id, created_at from ops.orders where status = 'pending'`,
  );
  await registerEntity(db, 'ops.pending_orders');
  await db.query(`create table ops.deliveries (id int primary key, shipped_at timestamptz)`);
  await registerEntity(db, 'ops.deliveries');
  await ensureDba(db);
  roles = new TestRoles(db);
  ruleWriter = await roles.login(
    'rule_writer',
    'grant rulebook_admin to %I',
    'grant usage on schema ops to %I',
  );
  staffId = await createUser(db, 'ops@example.com', 'Ops');
});

afterEach(async () => {
  for (const service of running.splice(0).reverse()) await service.stop();
  await db.query(`update workflow.automation_rules set is_active = false where is_active`);
  // Ticks a test left queued without an engine belong to no later test.
  await db.query(`delete from workflow.events where state = 'pending'`);
});

afterAll(async () => {
  await roles.endPools();
  await db.drop();
  await roles.dropRoles();
});

interface ScheduledRuleSpec {
  readonly name: string;
  readonly conditions: unknown;
  readonly actions?: readonly { name: string; config: Record<string, unknown> }[];
  /** Written as if the rule had last changed then (the touch trigger only runs on update). */
  readonly updatedAt?: Date;
  readonly entity?: string;
}

/** Writes a scheduled rule in plain SQL, as a DBA would. Returns its id. */
async function createScheduledRule(spec: ScheduledRuleSpec): Promise<string> {
  const dba = await ensureDba(db);
  const [rule] = await db.query<{ id: string }>(
    `insert into workflow.automation_rules
       (name, entity_id, entity_type_id, trigger_type_id, trigger_conditions, created_by, updated_by,
        created_date, updated_date)
     select $1, e.id, e.entity_type_id, t.id, $2::jsonb, $3, $3,
            coalesce($4, now()), coalesce($4, now())
       from workflow.entities e, workflow.trigger_types t
      where e.name = $5 and t.name = 'scheduled'
     returning id`,
    [spec.name, JSON.stringify(spec.conditions), dba, spec.updatedAt ?? null, spec.entity ?? 'jobs'],
  );
  let order = 1;
  for (const action of spec.actions ?? []) {
    await db.query(
      `insert into workflow.rule_actions (automation_rules_id, name, action_config, execution_order)
       values ($1, $2, $3, $4)`,
      [rule!.id, action.name, JSON.stringify(action.config), order++],
    );
  }
  return rule!.id;
}

async function startScheduler(
  clock: ManualClock,
  options: Omit<SchedulerOptions, 'databaseUrl' | 'logger' | 'clock'> = {},
): Promise<Scheduler> {
  const scheduler = new Scheduler({ databaseUrl: db.url, logger, pollIntervalMs: 100, clock, ...options });
  await scheduler.start();
  running.push(scheduler);
  return scheduler;
}

async function engine(): Promise<Engine> {
  const started = await startEngine(db);
  running.push(started);
  return started;
}

async function drained(): Promise<boolean> {
  const [row] = await db.query<{ count: string }>(
    `select count(*) from workflow.events where state = 'pending'`,
  );
  return row!.count === '0';
}

interface ExecutionRow {
  status: string;
  scheduled_for: string;
  trigger_data: Record<string, unknown>;
  actions_executed: { name: string; status: string; result?: unknown }[];
}

async function executionsOf(ruleId: string): Promise<ExecutionRow[]> {
  return db.query<ExecutionRow>(
    `select status, trigger_data -> 'new' ->> 'scheduled_for' as scheduled_for, trigger_data, actions_executed
       from workflow.automation_executions where automation_rules_id = $1
      order by trigger_data -> 'new' ->> 'scheduled_for'`,
    [ruleId],
  );
}

interface RunRow {
  scheduled_for: Date;
  fired_at: Date;
  status: string;
  rows_queued: number;
}

async function runsOf(ruleId: string): Promise<RunRow[]> {
  return db.query(
    `select scheduled_for, fired_at, status, rows_queued::int as rows_queued
       from workflow.schedule_runs where rule_id = $1 order by scheduled_for`,
    [ruleId],
  );
}

const iso = (dates: readonly { scheduled_for: Date }[]) =>
  dates.map((run) => run.scheduled_for.toISOString());

function everySecond(name: string, label = '{{rule_name}} at {{scheduled_for}}'): ScheduledRuleSpec {
  return {
    name,
    conditions: { schedule: '* * * * * *' },
    actions: [{ name: 'Log the tick', config: { action_type: 'test_log', label } }],
  };
}

describe('writing a scheduled rule', () => {
  async function rejection(
    conditions: unknown,
    name = 'Nightly report',
  ): Promise<{ code?: string; message: string }> {
    const error = await createScheduledRule({ name, conditions }).then(
      () => undefined,
      (caught: unknown) => caught as { code?: string; message: string },
    );
    expect(error, `${JSON.stringify(conditions)} should be refused`).toBeDefined();
    return error!;
  }

  it('is refused without a schedule, naming the rule', async () => {
    for (const conditions of [null, {}, { schedule: '' }, { schedule: 7 }, { field_conditions: [] }]) {
      const error = await rejection(conditions);
      expect(error.code).toBe('22023');
      expect(error.message).toContain('automation rule "Nightly report"');
      expect(error.message).toMatch(/schedule/);
    }
  });

  it('is refused when the expression does not have 5 or 6 fields', async () => {
    const error = await rejection({ schedule: '0 7 * *' });
    expect(error.code).toBe('22023');
    expect(error.message).toBe(
      'automation rule "Nightly report": schedule "0 7 * *" has 4 fields; a cron expression has 5 (minute hour day month weekday) or 6 (second first)',
    );
    expect((await rejection({ schedule: '0 0 7 * * * 2026' })).message).toContain('has 7 fields');
  });

  it('is refused with a time zone PostgreSQL does not know', async () => {
    const error = await rejection({ schedule: '0 7 * * *', timezone: 'Mars/Olympus_Mons' });
    expect(error.code).toBe('22023');
    expect(error.message).toBe(
      'automation rule "Nightly report": timezone "Mars/Olympus_Mons" is not a time zone name',
    );
  });

  it('is accepted with 5 or 6 fields and an IANA zone, and an update is checked too', async () => {
    const ruleId = await createScheduledRule({
      name: 'Weekday mornings',
      conditions: { schedule: '0 7 * * 1-5', timezone: 'Europe/Berlin' },
    });
    await createScheduledRule({ name: 'Every ten seconds', conditions: { schedule: '*/10 * * * * *' } });
    const error = await db
      .query(
        `update workflow.automation_rules set trigger_conditions = '{"schedule": "daily"}' where id = $1`,
        [ruleId],
      )
      .catch((caught: unknown) => caught as { code: string; message: string });
    expect(error).toMatchObject({ code: '22023' });
    expect((error as { message: string }).message).toContain('automation rule "Weekday mornings"');
  });

  it('is read by the daemon as its scheduler reads it', () => {
    expect(parseSchedule({ schedule: ' 0  7 * * 1-5 ', timezone: 'America/New_York' })).toEqual({
      ok: true,
      schedule: { expression: '0 7 * * 1-5', timezone: 'America/New_York' },
    });
    expect(parseSchedule({ schedule: '*/5 * * * * *' })).toEqual({
      ok: true,
      schedule: { expression: '*/5 * * * * *', timezone: 'UTC' },
    });
    expect(parseSchedule({ schedule: '61 * * * *' })).toMatchObject({ ok: false, message: /61/ });
    expect(parseSchedule({ schedule: '0 7 * * *', timezone: 'Nowhere/Town' })).toMatchObject({ ok: false });
    expect(parseSchedule(null)).toMatchObject({ ok: false });
  });
});

/** Minutes, hours and days as milliseconds, for moving the clock. */
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** Moves `clock` in steps to `until`, letting every scheduler run what is due at each step. */
async function travel(clock: ManualClock, until: Date, step: number, schedulers: readonly Scheduler[]) {
  while (clock.now() < until) {
    clock.set(new Date(Math.min(clock.now().getTime() + step, until.getTime())));
    await Promise.all(schedulers.map((scheduler) => scheduler.runDue()));
  }
}

describe('a scheduled rule', () => {
  it('runs its actions on every tick and records an execution per tick', async () => {
    const start = new Date('2030-01-01T00:00:00Z');
    const ruleId = await createScheduledRule({ ...everySecond('Heartbeat'), updatedAt: start });
    await engine();
    const clock = new ManualClock(start);
    const scheduler = await startScheduler(clock);
    expect(scheduler.ruleIds).toContain(ruleId);

    await travel(clock, new Date(start.getTime() + 3_000), 1_000, [scheduler]);
    await waitFor('three ticks to run', async () => (await executionsOf(ruleId)).length === 3);
    const executions = await executionsOf(ruleId);
    expect(executions.map((execution) => execution.scheduled_for)).toEqual([
      '2030-01-01T00:00:01.000Z',
      '2030-01-01T00:00:02.000Z',
      '2030-01-01T00:00:03.000Z',
    ]);
    for (const execution of executions) {
      expect(execution.status).toBe('success');
      expect(execution.trigger_data).toMatchObject({
        operation: 'scheduled',
        entity: 'ops.jobs',
        new: { rule_id: ruleId, rule_name: 'Heartbeat', schedule: '* * * * * *', timezone: 'UTC' },
      });
      expect(execution.actions_executed).toEqual([
        expect.objectContaining({
          name: 'Log the tick',
          status: 'success',
          result: { logged: `Heartbeat at ${execution.scheduled_for}` },
        }),
      ]);
    }
    expect((await runsOf(ruleId)).map((run) => run.status)).toEqual(['fired', 'fired', 'fired']);
  });

  it('stops when it is deactivated', async () => {
    const start = new Date('2030-01-02T00:00:00Z');
    const stoppingId = await createScheduledRule({ ...everySecond('To be switched off'), updatedAt: start });
    const sentinelId = await createScheduledRule({ ...everySecond('Still running'), updatedAt: start });
    const clock = new ManualClock(start);
    const scheduler = await startScheduler(clock);
    await travel(clock, new Date(start.getTime() + 2_000), 1_000, [scheduler]);
    expect(await runsOf(stoppingId)).toHaveLength(2);

    await db.query(`update workflow.automation_rules set is_active = false where id = $1`, [stoppingId]);
    await scheduler.refresh();
    expect(scheduler.ruleIds).toEqual([sentinelId]);
    await travel(clock, new Date(start.getTime() + 4_000), 1_000, [scheduler]);
    expect(await runsOf(stoppingId)).toHaveLength(2);
    expect(await runsOf(sentinelId)).toHaveLength(4);
    // Firing itself refuses an inactive rule, whatever a scheduler's cache says.
    const [fired] = await db.query<{ event_id: string | null }>(
      `select workflow.fire_scheduled_rule($1, '2030-01-02T00:00:05Z') as event_id`,
      [stoppingId],
    );
    expect(fired!.event_id).toBeNull();
  });

  it('that cannot be parsed is logged as a problem, and the others still run', async () => {
    const start = new Date('2030-01-03T00:00:00Z');
    // Five fields, so the database takes it; minute 61 does not exist.
    const badId = await createScheduledRule({ name: 'Minute 61', conditions: { schedule: '61 * * * *' } });
    const goodId = await createScheduledRule({ ...everySecond('Fine'), updatedAt: start });
    const clock = new ManualClock(start);
    const scheduler = await startScheduler(clock);
    expect(scheduler.problems).toEqual([
      { ruleId: badId, ruleName: 'Minute 61', message: expect.stringMatching(/"61 \* \* \* \*".*61/) },
    ]);
    expect(scheduler.ruleIds).toEqual([goodId]);
    await travel(clock, new Date(start.getTime() + 1_000), 1_000, [scheduler]);
    expect(await runsOf(goodId)).toHaveLength(1);
    expect(scheduler.running).toBe(true);
  });

  it('fires every tick once when three daemons run it', async () => {
    const start = new Date('2030-01-04T00:00:00Z');
    const ruleId = await createScheduledRule({
      name: 'Shared tick',
      conditions: { schedule: '*/10 * * * * *' },
      updatedAt: start,
      actions: [
        {
          name: 'Alert ops',
          config: {
            action_type: 'create_alert',
            alert_type: 'tick',
            title: 'Tick {{scheduled_for}}',
            message: '{{rule_name}} ran for {{scheduled_for}}',
            recipients: { users: [staffId] },
          },
        },
      ],
    });
    const config = loadConfig({
      DATABASE_URL: db.url,
      RULEBOOK_POLL_INTERVAL_MS: '100',
      DELIVERY_POLL_INTERVAL_MS: '100',
    });
    const clock = new ManualClock(start);
    const daemons: RunningDaemon[] = [];
    for (let i = 0; i < 3; i++) {
      const daemon = await startDaemon(config, logger, { http: false, clock });
      running.push(daemon);
      daemons.push(daemon);
    }
    await travel(
      clock,
      new Date(start.getTime() + 2 * MINUTE),
      3_000,
      daemons.map((daemon) => daemon.scheduler),
    );
    await waitFor('the queue to drain', drained);

    const runs = await runsOf(ruleId);
    expect(runs).toHaveLength(12);
    const executions = await executionsOf(ruleId);
    expect(executions.map((execution) => execution.scheduled_for)).toEqual(iso(runs));
    expect(executions.every((execution) => execution.status === 'success')).toBe(true);
    const [alerts] = await db.query<{ count: string; titles: string }>(
      `select count(*)::text as count, count(distinct title)::text as titles from workflow.alerts where source_rule_id = $1`,
      [ruleId],
    );
    expect(alerts).toEqual({ count: '12', titles: '12' });
    const stats = daemons.map((daemon) => daemon.scheduler.stats);
    expect(stats.reduce((sum, stat) => sum + stat.fired, 0)).toBe(12);
    // Each daemon tried each tick: the other two found it fired.
    expect(stats.reduce((sum, stat) => sum + stat.alreadyFired, 0)).toBe(24);
  });

  it('does not fire a tick from before the rule was written', async () => {
    const written = new Date('2030-01-05T00:00:30Z');
    const ruleId = await createScheduledRule({
      name: 'Just written',
      conditions: { schedule: '* * * * *' },
      updatedAt: written,
    });
    const clock = new ManualClock(new Date('2030-01-05T00:00:59Z'));
    const scheduler = await startScheduler(clock);
    await scheduler.runDue();
    expect(scheduler.stats).toMatchObject({ fired: 0, alreadyFired: 0, missed: 0 });
    expect(await runsOf(ruleId)).toEqual([]);
    await travel(clock, new Date('2030-01-05T00:01:00Z'), 1_000, [scheduler]);
    expect(iso(await runsOf(ruleId))).toEqual(['2030-01-05T00:01:00.000Z']);
  });
});

describe('missed ticks', () => {
  it('are caught up within RULEBOOK_SCHEDULE_CATCHUP, an interval as rules write them', () => {
    const catchUp = (value?: string) =>
      loadConfig(value === undefined ? {} : { RULEBOOK_SCHEDULE_CATCHUP: value }).scheduler.catchUpMs;
    expect(catchUp()).toBe(HOUR);
    expect(catchUp('90 minutes')).toBe(90 * MINUTE);
    expect(catchUp('PT2H')).toBe(2 * HOUR);
    expect(catchUp('0')).toBe(0);
    for (const bad of ['1 month', 'an hour', '-5 minutes']) {
      expect(() => catchUp(bad)).toThrow(`RULEBOOK_SCHEDULE_CATCHUP must be an interval`);
    }
  });

  it('run once each and in order after downtime within RULEBOOK_SCHEDULE_CATCHUP; older ones are recorded as missed', async () => {
    const start = new Date('2030-02-01T00:00:00Z');
    const ruleId = await createScheduledRule({
      name: 'Every minute',
      conditions: { schedule: '* * * * *' },
      updatedAt: start,
      actions: [{ name: 'Log the tick', config: { action_type: 'test_log', label: '{{scheduled_for}}' } }],
    });
    const clock = new ManualClock(start);
    const first = await startScheduler(clock, { catchUpMs: 10 * MINUTE });
    await travel(clock, new Date(start.getTime() + MINUTE), MINUTE, [first]);
    await first.stop();
    running.splice(running.indexOf(first), 1);

    // Half an hour without any daemon.
    clock.set(new Date(start.getTime() + 31 * MINUTE));
    const second = await startScheduler(clock, { catchUpMs: 10 * MINUTE });
    await second.runDue();
    expect(second.stats).toMatchObject({ fired: 10, missed: 20 });

    const runs = await runsOf(ruleId);
    expect(runs).toHaveLength(31);
    const minute = (n: number) => new Date(start.getTime() + n * MINUTE).toISOString();
    expect(iso(runs.filter((run) => run.status === 'missed'))).toEqual(
      Array.from({ length: 20 }, (_, i) => minute(i + 2)),
    );
    const fired = runs.filter((run) => run.status === 'fired');
    expect(iso(fired)).toEqual([minute(1), ...Array.from({ length: 10 }, (_, i) => minute(i + 22))]);
    // Caught up in order: each tick queued after the one before it.
    const caughtUp = fired.slice(1).map((run) => run.fired_at.getTime());
    expect(caughtUp).toEqual([...caughtUp].sort((a, b) => a - b));

    // The engine runs each once; a restart finds nothing more to do.
    await engine();
    await waitFor('the ticks to run', async () => (await executionsOf(ruleId)).length === 11);
    const third = await startScheduler(clock, { catchUpMs: 10 * MINUTE });
    await third.runDue();
    expect(third.stats).toEqual({ fired: 0, alreadyFired: 0, missed: 0, rowsQueued: 0 });
  });

  it('neither skip nor double a run when clocks change in Europe/Berlin', async () => {
    // 28 March 2027: 02:00 CET becomes 03:00 CEST, so 02:30 does not exist and runs at 03:30 CEST.
    // 31 October 2027: 03:00 CEST becomes 02:00 CET, so 02:30 happens twice and runs at the first.
    const spring = await createScheduledRule({
      name: 'Half past two in Berlin (spring)',
      conditions: { schedule: '30 2 * * *', timezone: 'Europe/Berlin' },
      updatedAt: new Date('2027-03-27T12:00:00Z'),
    });
    const autumn = await createScheduledRule({
      name: 'Half past two in Berlin (autumn)',
      conditions: { schedule: '30 2 * * *', timezone: 'Europe/Berlin' },
      updatedAt: new Date('2027-10-30T12:00:00Z'),
    });
    const springClock = new ManualClock('2027-03-27T12:00:00Z');
    const autumnClock = new ManualClock('2027-10-30T12:00:00Z');
    const springDaemons = [await startScheduler(springClock), await startScheduler(springClock)];
    const autumnDaemons = [await startScheduler(autumnClock), await startScheduler(autumnClock)];
    // Every half hour of three days, as running daemons would see time pass.
    await travel(springClock, new Date('2027-03-30T12:00:00Z'), 30 * MINUTE, springDaemons);
    await travel(autumnClock, new Date('2027-11-02T12:00:00Z'), 30 * MINUTE, autumnDaemons);

    const springRuns = (await runsOf(spring)).filter((run) => run.scheduled_for < new Date('2027-04-01'));
    expect(iso(springRuns)).toEqual([
      '2027-03-28T01:30:00.000Z', // 03:30 CEST: the 02:30 that does not exist
      '2027-03-29T00:30:00.000Z', // 02:30 CEST
      '2027-03-30T00:30:00.000Z',
    ]);
    const autumnRuns = (await runsOf(autumn)).filter((run) => run.scheduled_for < new Date('2027-11-03'));
    expect(iso(autumnRuns)).toEqual([
      '2027-10-31T00:30:00.000Z', // the first 02:30 (CEST); the second (CET) does not run again
      '2027-11-01T01:30:00.000Z', // 02:30 CET
      '2027-11-02T01:30:00.000Z',
    ]);
    expect([...springRuns, ...autumnRuns].every((run) => run.status === 'fired')).toBe(true);
  });
});

describe('a scheduled rule over rows', () => {
  const tick = new Date('2030-03-01T06:00:00Z');

  /** 300 orders: every third pending and 3 days old (100), the rest recent or done. */
  async function seedOrders(): Promise<number[]> {
    await db.query(`truncate ops.orders`);
    await db.query(
      `insert into ops.orders (id, status, created_at, due)
       select i, case when i % 3 = 0 or i % 3 = 1 then 'pending' else 'done' end,
              case when i % 3 = 0 then $1::timestamptz - interval '3 days' else $1::timestamptz - interval '25 hours' end,
              ($1::timestamptz + make_interval(days => i % 5))::date
         from generate_series(1, 300) i`,
      [tick],
    );
    return Array.from({ length: 100 }, (_, i) => (i + 1) * 3);
  }

  async function rowExecutions(ruleId: string) {
    return db.query<{ id: number; scheduled_for: string; logged: string; status: string }>(
      `select (trigger_data -> 'new' ->> 'id')::int as id, trigger_data -> 'row_key' ->> 'scheduled_for' as scheduled_for,
              actions_executed -> 0 -> 'result' ->> 'logged' as logged, status
         from workflow.automation_executions where automation_rules_id = $1 order by 1`,
      [ruleId],
    );
  }

  it('runs once per matching row per tick, each row once, and a daemon killed mid-tick leaves the rest to the others', async () => {
    const expected = await seedOrders();
    const ruleId = await createScheduledRule({
      name: 'Stale orders',
      entity: 'orders',
      updatedAt: new Date(tick.getTime() - HOUR),
      conditions: {
        schedule: '0 6 * * *',
        field_conditions: [
          { field_name: 'status', operator: 'equals', value: 'pending' },
          { field_name: 'created_at', operator: 'older_than', value: '2 days' },
        ],
      },
      actions: [
        {
          name: 'Log the row',
          config: { action_type: 'test_log', label: 'order {{id}} ({{status}}) at {{scheduled_for}}' },
        },
      ],
    });
    const clock = new ManualClock(new Date(tick.getTime() - MINUTE));
    let batches = 0;
    let doomed: Scheduler | undefined = undefined;
    // The first daemon dies in the middle of its third batch: its events are written, not committed.
    const dies = async (client: pg.ClientBase) => {
      if (++batches !== 3) return;
      void doomed!.stop();
      await client.query('select pg_terminate_backend(pg_backend_pid())');
    };
    doomed = await startScheduler(clock, { batchSize: 15, beforeBatchCommit: dies });
    clock.set(tick);
    await doomed.runDue().catch(() => {});
    await waitFor('the first daemon to stop', () => !doomed.running);
    running.splice(running.indexOf(doomed), 1);
    const [halfway] = await runsOf(ruleId);
    expect(halfway).toMatchObject({ status: 'selecting', rows_queued: 30 });

    const others = [
      await startScheduler(clock, { batchSize: 15 }),
      await startScheduler(clock, { batchSize: 15 }),
    ];
    await Promise.all(others.map((scheduler) => scheduler.runDue()));
    // A daemon that finds another at the tick's rows leaves them to it (its timer may be the one).
    await waitFor('the tick to be finished', async () => (await runsOf(ruleId))[0]!.status === 'done');
    const [finished] = await runsOf(ruleId);
    expect(finished).toMatchObject({ status: 'done', rows_queued: 100 });
    expect(others.reduce((sum, scheduler) => sum + scheduler.stats.rowsQueued, 0)).toBe(70);
    expect(others.reduce((sum, scheduler) => sum + scheduler.stats.fired, 0)).toBe(0);

    await engine();
    await waitFor('the rows to run', async () => (await rowExecutions(ruleId)).length === 100);
    await waitFor('the queue to drain', drained);
    const executions = await rowExecutions(ruleId);
    expect(executions.map((execution) => execution.id)).toEqual(expected);
    expect(executions[0]).toEqual({
      id: 3,
      scheduled_for: tick.toISOString(),
      logged: `order 3 (pending) at ${tick.toISOString()}`,
      status: 'success',
    });

    // The next tick selects again: rows that have aged in the meantime too.
    await travel(clock, new Date(tick.getTime() + DAY), HOUR, others);
    await waitFor('the next tick to be finished', async () => (await runsOf(ruleId))[1]?.status === 'done');
    const runs = await runsOf(ruleId);
    expect(runs.map((run) => [run.status, run.rows_queued])).toEqual([
      ['done', 100],
      ['done', 200],
    ]);
  });

  it('acts on each matching row itself: update_field without where sets that row', async () => {
    const expected = await seedOrders();
    await db.query(`update workflow.automation_rules set is_active = false`);
    const at = new Date('2030-03-05T07:00:00Z');
    const ruleId = await createScheduledRule({
      name: 'Mark stale orders',
      entity: 'orders',
      updatedAt: new Date(at.getTime() - HOUR),
      conditions: {
        schedule: '0 7 * * *',
        field_conditions: [
          { field_name: 'status', operator: 'equals', value: 'pending' },
          { field_name: 'created_at', operator: 'older_than', value: '6 days' },
        ],
      },
      actions: [
        { name: 'Mark it', config: { action_type: 'update_field', field: 'status', value: 'stale' } },
      ],
    });
    const clock = new ManualClock(new Date(at.getTime() - MINUTE));
    const scheduler = await startScheduler(clock);
    clock.set(at);
    await scheduler.runDue();
    await waitFor('the tick to be finished', async () => (await runsOf(ruleId))[0]?.status === 'done');
    await engine();
    await waitFor('the rows to run', async () => (await rowExecutions(ruleId)).length === 100);
    expect(new Set((await rowExecutions(ruleId)).map((execution) => execution.status))).toEqual(
      new Set(['success']),
    );
    const stale = await db.query<{ id: number }>(
      `select id from ops.orders where status = 'stale' order by id`,
    );
    expect(stale.map((row) => row.id)).toEqual(expected);
    const [others] = await db.query<{ count: string }>(
      `select count(*) from ops.orders where status = 'stale' and id % 3 <> 0`,
    );
    expect(others!.count).toBe('0');
  });

  it('without field conditions runs once per tick unless it says for_each_row, and walks a view by its rows', async () => {
    await seedOrders();
    const everyRow = await createScheduledRule({
      name: 'Every pending order',
      entity: 'pending_orders',
      updatedAt: new Date(tick.getTime() - HOUR),
      conditions: { schedule: '0 6 * * *', for_each_row: true },
    });
    const soonDue = await createScheduledRule({
      name: 'Due within two days',
      entity: 'orders',
      updatedAt: new Date(tick.getTime() - HOUR),
      conditions: {
        schedule: '0 6 * * *',
        field_conditions: [{ field_name: 'due', operator: 'within_next', value: 'P2D' }],
      },
    });
    const once = await createScheduledRule({
      name: 'Once',
      entity: 'orders',
      updatedAt: new Date(tick.getTime() - HOUR),
      conditions: { schedule: '0 6 * * *' },
    });
    const clock = new ManualClock(tick);
    const scheduler = await startScheduler(clock, { batchSize: 7 });
    await scheduler.runDue();
    expect((await runsOf(everyRow))[0]).toMatchObject({ status: 'done', rows_queued: 200 });
    // due is the tick's day plus i % 5 days; a date is midnight UTC, so days 1 and 2 are within 48 hours.
    expect((await runsOf(soonDue))[0]).toMatchObject({ status: 'done', rows_queued: 120 });
    expect((await runsOf(once))[0]).toMatchObject({ status: 'fired', rows_queued: 0 });
    const [keys] = await db.query<{ keys: string; rows: string }>(
      `select count(distinct row_key -> 'key')::text as keys, count(*)::text as rows
         from workflow.events where rule_id = $1`,
      [everyRow],
    );
    expect(keys).toEqual({ keys: '200', rows: '200' });
  });
});

describe('a long tick over rows', () => {
  it('delays no other rule: ticks keep firing while its rows are queued', async () => {
    const tick = new Date('2030-03-07T06:00:00Z');
    await db.query(`truncate ops.orders`);
    await db.query(
      `insert into ops.orders (id, status, created_at) select i, 'pending', $1 from generate_series(1, 30) i`,
      [tick],
    );
    const slowId = await createScheduledRule({
      name: 'Every order, slowly',
      entity: 'orders',
      updatedAt: new Date(tick.getTime() - HOUR),
      conditions: { schedule: '0 6 * * *', for_each_row: true },
    });
    const heartbeatId = await createScheduledRule({ ...everySecond('Heartbeat'), updatedAt: tick });
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const clock = new ManualClock(tick);
    const scheduler = await startScheduler(clock, { batchSize: 10, beforeBatchCommit: () => gate });
    const ticked = scheduler.runDue();
    await waitFor('the slow tick to start', async () => (await runsOf(slowId)).length === 1);
    // Its first batch waits at the gate; the scheduler's own timer fires the next second meanwhile.
    clock.advance(1_000);
    await waitFor('the heartbeat to fire', async () => (await runsOf(heartbeatId)).length === 1);
    expect((await runsOf(slowId))[0]).toMatchObject({ status: 'selecting', rows_queued: 0 });
    open();
    await ticked;
    await waitFor('the slow tick to finish', async () => (await runsOf(slowId))[0]!.status === 'done');
    expect((await runsOf(slowId))[0]).toMatchObject({ rows_queued: 30 });
  });
});

describe('a scheduled rule over rows of a table that is gone', () => {
  it('cancels its tick with an error in the log, and goes on with the next', async () => {
    const tick = new Date('2030-03-05T06:00:00Z');
    await db.query(`create table ops.scratch (id int primary key)`);
    await db.query(`insert into ops.scratch select generate_series(1, 5)`);
    await registerEntity(db, 'ops.scratch');
    const ruleId = await createScheduledRule({
      name: 'Every scratch row',
      entity: 'scratch',
      updatedAt: new Date(tick.getTime() - HOUR),
      conditions: { schedule: '0 6 * * *', for_each_row: true },
    });
    await db.query(`drop table ops.scratch`);
    const clock = new ManualClock(tick);
    const scheduler = await startScheduler(clock);
    await scheduler.runDue();
    expect((await runsOf(ruleId)).map((run) => run.status)).toEqual(['cancelled']);
    await travel(clock, new Date(tick.getTime() + DAY), 6 * HOUR, [scheduler]);
    expect((await runsOf(ruleId)).map((run) => run.status)).toEqual(['cancelled', 'cancelled']);
  });
});

describe('a scheduled rule over rows of a view that calls code of its owner', () => {
  it('does not run that code as the daemon: the tick is cancelled', async () => {
    const tick = new Date('2030-03-06T06:00:00Z');
    await db.query(`create table ops.calls (at timestamptz default now())`);
    await db.query(`insert into ops.jobs values (1, 'one'), (2, 'two') on conflict do nothing`);
    const owner = await roles.login(
      'app_owner',
      'grant usage, create on schema ops to %I',
      'grant select on ops.jobs to %I',
      'grant insert on ops.calls to %I',
    );
    // Whoever calls it (the daemon, here a superuser) would write with their own privileges.
    await owner.query(
      `create function ops.noisy() returns int language sql as 'insert into ops.calls default values returning 1'`,
    );
    await owner.query(`create view ops.noisy_jobs as select id, name, ops.noisy() as n from ops.jobs`);
    await db.query(`grant select on ops.noisy_jobs to public`);
    await registerEntity(db, 'ops.noisy_jobs');
    const ruleId = await createScheduledRule({
      name: 'Every noisy job',
      entity: 'noisy_jobs',
      updatedAt: new Date(tick.getTime() - HOUR),
      conditions: { schedule: '0 6 * * *', for_each_row: true },
    });
    const scheduler = await startScheduler(new ManualClock(tick));
    await scheduler.runDue();
    expect((await runsOf(ruleId)).map((run) => run.status)).toEqual(['cancelled']);
    expect(await db.query(`select * from ops.calls`)).toEqual([]);
    const hazards = await db.query<{ hazard: string; function_owner: string }>(
      `select hazard, function_owner from workflow.row_selection_hazards('ops.noisy_jobs', '{}')`,
    );
    expect(hazards).toEqual([{ hazard: 'the view calls ops.noisy()', function_owner: owner.name }]);
  });
});

describe('time-relative conditions', () => {
  it('older_than in an event rule is read against the engine clock when the event is matched', async () => {
    const ruleId = await createRule(db, {
      name: 'Shipped late',
      entity: 'ops.deliveries',
      trigger: 'on_create',
      conditions: [{ field_name: 'shipped_at', operator: 'older_than', value: 'PT36H' }],
      actions: [{ name: 'Log', config: { action_type: 'test_log', label: 'late {{id}}' } }],
    });
    const clock = new ManualClock('2030-04-10T12:00:00Z');
    running.push(await startEngine(db, { clock }));
    await db.query(
      `insert into ops.deliveries (id, shipped_at) values
         (1, '2030-04-08T23:59:59Z'), (2, '2030-04-09T00:00:01Z'), (3, null), (4, '2030-04-01T00:00:00Z')`,
    );
    await waitFor('the queue to drain', drained);
    const rows = await db.query<{ logged: string }>(
      `select actions_executed -> 0 -> 'result' ->> 'logged' as logged from workflow.automation_executions
        where automation_rules_id = $1 order by 1`,
      [ruleId],
    );
    expect(rows.map((row) => row.logged)).toEqual(['late 1', 'late 4']);
  });

  it('are refused with a bad interval when written by a rulebook_admin member, naming the rule and condition', async () => {
    const dba = await ensureDba(db);
    const write = (operator: string, value: unknown, field = 'created_at') =>
      ruleWriter
        .query(
          `insert into workflow.automation_rules
             (name, entity_id, entity_type_id, trigger_type_id, trigger_conditions, created_by, updated_by)
           select 'Stale orders', e.id, e.entity_type_id, t.id, $1::jsonb, $2, $2
             from workflow.entities e, workflow.trigger_types t
            where e.name = 'orders' and t.name = 'scheduled'
           returning id`,
          [
            JSON.stringify({
              schedule: '0 6 * * *',
              field_conditions: [
                { field_name: 'status', operator: 'equals', value: 'pending' },
                { field_name: field, operator, value },
              ],
            }),
            dba,
          ],
        )
        .then(
          () => undefined,
          (error: unknown) => error as { code: string; message: string },
        );
    for (const bad of [
      'two days',
      '2 fortnights',
      'P',
      'PT',
      '1.5 hours',
      '0 days',
      'P0D',
      '-2 days',
      42,
      null,
    ]) {
      const error = await write('older_than', bad);
      expect(error, `${JSON.stringify(bad)} should be refused`).toBeDefined();
      expect(error!.code, error!.message).toBe('22023');
      expect(error!.message).toMatch(
        /^automation rule "Stale orders": trigger_conditions\.field_conditions\[1\]: operator "older_than" needs /,
      );
    }
    expect((await write('within_next', 'soon'))!.message).toContain(
      'operator "within_next" needs "value" to be an interval',
    );
    const notTime = await write('newer_than', '2 days', 'status');
    expect(notTime).toMatchObject({ code: '22023' });
    expect(notTime!.message).toContain(
      'operator "newer_than" needs a date or timestamp column, and "status" is text',
    );
    for (const good of ['2 days', 'PT36H', 'p1w', '1 hour 30 minutes', 'P1Y2M3W4DT5H6M7S', '90 secs']) {
      expect(await write('older_than', good), `${good} should be accepted`).toBeUndefined();
    }
  });

  it('read intervals as the database check does', async () => {
    const texts = [
      '2 days',
      'PT36H',
      'P2D',
      '1 hour 30 minutes',
      '2days',
      'P1M',
      'PT',
      'P',
      'T1H',
      '0 seconds',
      '1.5 hours',
      'two days',
      '  3 weeks ',
      '1 year 2 months',
      'P1DT',
      '5',
      '',
    ];
    const [row] = await db.query<{ problems: (string | null)[] }>(
      `select array_agg(workflow.time_interval_problem(to_jsonb(t)) order by n) as problems
         from unnest($1::text[]) with ordinality as x (t, n)`,
      [texts],
    );
    const accepted = texts.map((text) => {
      try {
        parseTimeInterval(text);
        return true;
      } catch {
        return false;
      }
    });
    expect(row!.problems.map((problem) => problem === null)).toEqual(accepted);
    expect(accepted.filter(Boolean)).toHaveLength(8);
  });

  it('for_each_row false with field conditions, and operators of old and new values, are refused in a scheduled rule', async () => {
    const refused = async (conditions: unknown) =>
      createScheduledRule({ name: 'Confused', entity: 'orders', conditions }).then(
        () => undefined,
        (error: unknown) => error as { code: string; message: string },
      );
    const both = await refused({
      schedule: '0 6 * * *',
      for_each_row: false,
      field_conditions: [{ field_name: 'status', operator: 'equals', value: 'pending' }],
    });
    expect(both).toMatchObject({ code: '22023' });
    expect(both!.message).toContain('for_each_row cannot be false');
    const changed = await refused({
      schedule: '0 6 * * *',
      field_conditions: [{ field_name: 'status', operator: 'changed_to', value: 'pending' }],
    });
    expect(changed!.message).toContain('only applies to on_update rules, not scheduled');
    const badValue = await refused({
      schedule: '0 6 * * *',
      field_conditions: [{ field_name: 'id', operator: 'in', value: [1, 'abc'] }],
    });
    expect(badValue!.message).toContain('value "abc" is not a valid integer for column "id"');
  });
});

describe('maintenance', () => {
  it('prunes ticks by its clock, counting from the tick', async () => {
    const ruleId = await createScheduledRule({ name: 'Future ticks', conditions: { schedule: '0 0 1 1 *' } });
    await db.query(
      `insert into workflow.schedule_runs (rule_id, scheduled_for, status)
       values ($1, '2031-01-01T00:00:00Z', 'fired'), ($1, '2031-01-10T00:00:00Z', 'fired'),
              ($1, '2031-01-02T00:00:00Z', 'selecting')`,
      [ruleId],
    );
    const clock = new ManualClock('2031-01-12T00:00:00Z');
    const maintenance = new MaintenanceJobs({ databaseUrl: db.url, logger, intervalMs: 3_600_000, clock });
    running.push(maintenance);
    // Earlier tests' ticks, before 2031, go too.
    expect((await maintenance.runOnce()).prunedScheduleRuns).toBeGreaterThanOrEqual(1);
    // A tick still selecting rows stays, whatever its age: a daemon finishes it.
    expect((await runsOf(ruleId)).map((run) => run.status)).toEqual(['selecting', 'fired']);
  });

  it('resolves alerts whose expires_date has passed, prunes old ticks, and logs only when it did something', async () => {
    const [expired, current] = await db.query<{ id: string }>(
      `insert into workflow.alerts (alert_type, title, message, expires_date)
       values ('test', 'Expired', 'gone', now() - interval '1 minute'),
              ('test', 'Current', 'here', now() + interval '1 hour')
       returning id`,
    );
    const ruleId = await createScheduledRule({ name: 'Old ticks', conditions: { schedule: '0 0 1 1 *' } });
    await db.query(
      `insert into workflow.schedule_runs (rule_id, scheduled_for, fired_at)
       values ($1, now() - interval '8 days', now() - interval '8 days'), ($1, now() - interval '1 day', now() - interval '1 day')`,
      [ruleId],
    );

    const maintenance = new MaintenanceJobs({ databaseUrl: db.url, logger, intervalMs: 3_600_000 });
    maintenance.start();
    running.push(maintenance);
    await waitFor('the expired alert to be resolved', async () => {
      const [row] = await db.query<{ status: string }>('select status from workflow.alerts where id = $1', [
        expired!.id,
      ]);
      return row!.status === 'resolved';
    });
    const [row] = await db.query<{ status: string }>('select status from workflow.alerts where id = $1', [
      current!.id,
    ]);
    expect(row!.status).toBe('active');
    await waitFor('old ticks to be pruned', async () => (await runsOf(ruleId)).length === 1);

    // Another daemon holding the lock runs them instead; this one does nothing.
    await db.withClient(async (client) => {
      await client.query('begin');
      await client.query(`select pg_advisory_xact_lock(hashtextextended('rulebook.maintenance', 0))`);
      try {
        expect(await maintenance.runOnce()).toMatchObject({ ran: false });
      } finally {
        await client.query('rollback');
      }
    });
    expect(await maintenance.runOnce()).toEqual({
      ran: true,
      expiredAlerts: 0,
      releasedReservations: 0,
      prunedScheduleRuns: 0,
      prunedExecutions: 0,
      prunedDeliveries: 0,
      prunedAllocations: 0,
      failed: [],
    });
  });
});
