import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { startDaemon, type RunningDaemon } from '../src/daemon.js';
import type { Engine } from '../src/engine/engine.js';
import { createLogger } from '../src/logger.js';
import { MaintenanceJobs } from '../src/scheduler/maintenance.js';
import { parseSchedule } from '../src/scheduler/schedule.js';
import { Scheduler } from '../src/scheduler/scheduler.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { startEngine, TEST_LOG_TABLE } from './support/engine.js';
import { ensureDba, registerEntity } from './support/rules.js';
import { waitFor } from './support/wait.js';

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');

let db: TestDatabase;
let staffId: string;
const running: { stop(): Promise<void> }[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  await db.query(TEST_LOG_TABLE);
  await db.query(`create schema ops`);
  await db.query(`create table ops.jobs (id int primary key, name text)`);
  await registerEntity(db, 'ops.jobs');
  await ensureDba(db);
  staffId = (
    await db.query<{ id: string }>(
      `insert into core.users (email, name) values ('ops@example.com', 'Ops') returning id`,
    )
  )[0]!.id;
});

afterEach(async () => {
  for (const service of running.splice(0).reverse()) await service.stop();
  await db.query(`update workflow.automation_rules set is_active = false where is_active`);
});

afterAll(async () => {
  await db.drop();
});

interface ScheduledRuleSpec {
  readonly name: string;
  readonly conditions: unknown;
  readonly actions?: readonly { name: string; config: Record<string, unknown> }[];
  /** Written as if the rule had last changed this long ago (the touch trigger only runs on update). */
  readonly updatedSecondsAgo?: number;
}

/** Writes a scheduled rule in plain SQL, as a DBA would. Returns its id. */
async function createScheduledRule(spec: ScheduledRuleSpec): Promise<string> {
  const dba = await ensureDba(db);
  const [rule] = await db.query<{ id: string }>(
    `insert into workflow.automation_rules
       (name, entity_id, entity_type_id, trigger_type_id, trigger_conditions, created_by, updated_by,
        created_date, updated_date)
     select $1, e.id, e.entity_type_id, t.id, $2::jsonb, $3, $3,
            now() - make_interval(secs => $4), now() - make_interval(secs => $4)
       from workflow.entities e, workflow.trigger_types t
      where e.name = 'jobs' and t.name = 'scheduled'
     returning id`,
    [spec.name, JSON.stringify(spec.conditions), dba, spec.updatedSecondsAgo ?? 0],
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

async function startScheduler(options: { catchUpMs?: number } = {}): Promise<Scheduler> {
  const scheduler = new Scheduler({ databaseUrl: db.url, logger, pollIntervalMs: 100, ...options });
  await scheduler.start();
  running.push(scheduler);
  return scheduler;
}

async function engine(): Promise<Engine> {
  const started = await startEngine(db);
  running.push(started);
  return started;
}

/** Waits until the scheduler has loaded the rules as they are now. */
async function caughtUp(scheduler: { version: string | undefined }): Promise<void> {
  const [current] = await db.query<{ version: string }>(
    'select version::text from workflow.rule_set_version',
  );
  await waitFor('the scheduler to load the rules', () => scheduler.version === current!.version);
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

async function runsOf(ruleId: string): Promise<{ scheduled_for: Date; fired_at: Date }[]> {
  return db.query(
    `select scheduled_for, fired_at from workflow.schedule_runs where rule_id = $1 order by scheduled_for`,
    [ruleId],
  );
}

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

  it('is read by the daemon as node-cron reads it', () => {
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

describe('a scheduled rule', () => {
  it('runs its actions on every tick and records an execution per tick', async () => {
    const ruleId = await createScheduledRule(everySecond('Heartbeat'));
    await engine();
    const scheduler = await startScheduler();
    expect(scheduler.ruleIds).toContain(ruleId);

    const executions = await waitFor('two ticks to run', async () => {
      const rows = await executionsOf(ruleId);
      return rows.length >= 2 ? rows : undefined;
    });
    for (const execution of executions) {
      expect(execution.status).toBe('success');
      expect(execution.trigger_data).toMatchObject({
        operation: 'scheduled',
        entity: 'ops.jobs',
        new: { rule_id: ruleId, rule_name: 'Heartbeat', schedule: '* * * * * *', timezone: 'UTC' },
      });
      expect(execution.scheduled_for).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/);
      expect(execution.actions_executed).toEqual([
        expect.objectContaining({
          name: 'Log the tick',
          status: 'success',
          result: { logged: `Heartbeat at ${execution.scheduled_for}` },
        }),
      ]);
    }
    // Ticks one second apart, each recorded once.
    const ticks = executions.map((execution) => Date.parse(execution.scheduled_for));
    expect(new Set(ticks).size).toBe(ticks.length);
    expect(ticks.every((tick) => tick % 1000 === 0)).toBe(true);
    const runs = await runsOf(ruleId);
    expect(runs.map((run) => run.scheduled_for.getTime())).toEqual(expect.arrayContaining(ticks));
  });

  it('stops when it is deactivated', async () => {
    const stoppingId = await createScheduledRule(everySecond('To be switched off'));
    const sentinelId = await createScheduledRule(everySecond('Still running'));
    await engine();
    const scheduler = await startScheduler();
    await waitFor('the rule to run', async () => (await executionsOf(stoppingId)).length > 0);

    await db.query(`update workflow.automation_rules set is_active = false where id = $1`, [stoppingId]);
    // Read after the commit: a fire that started later sees the rule inactive.
    const [off] = await db.query<{ at: Date }>(`select clock_timestamp() as at`);
    await waitFor('the scheduler to drop the rule', () => !scheduler.ruleIds.includes(stoppingId));
    await waitFor('the queue to drain', drained);
    const executionsBefore = (await executionsOf(stoppingId)).length;
    const runsBefore = (await runsOf(stoppingId)).length;

    // Two more ticks of the other rule: time passed, and the scheduler kept firing.
    const sentinelRuns = (await runsOf(sentinelId)).length;
    await waitFor('two more ticks', async () => (await runsOf(sentinelId)).length >= sentinelRuns + 2);
    await waitFor('the queue to drain', drained);

    expect(scheduler.ruleIds).toEqual([sentinelId]);
    expect(await executionsOf(stoppingId)).toHaveLength(executionsBefore);
    const runs = await runsOf(stoppingId);
    expect(runs).toHaveLength(runsBefore);
    expect(runs.every((run) => run.fired_at <= off!.at)).toBe(true);
    // Firing itself refuses an inactive rule, whatever a scheduler's cache says.
    const [fired] = await db.query<{ event_id: string | null }>(
      `select workflow.fire_scheduled_rule($1, date_trunc('second', now()) + interval '1 hour') as event_id`,
      [stoppingId],
    );
    expect(fired!.event_id).toBeNull();
  });

  it('that node-cron cannot parse is logged as a problem, and the others still run', async () => {
    // Five fields, so the database takes it; minute 61 does not exist.
    const badId = await createScheduledRule({ name: 'Minute 61', conditions: { schedule: '61 * * * *' } });
    const goodId = await createScheduledRule(everySecond('Fine'));
    await engine();
    const scheduler = await startScheduler();
    expect(scheduler.problems).toEqual([
      { ruleId: badId, ruleName: 'Minute 61', message: expect.stringMatching(/"61 \* \* \* \*".*61/) },
    ]);
    expect(scheduler.ruleIds).toEqual([goodId]);
    await waitFor('the good rule to run', async () => (await executionsOf(goodId)).length > 0);
    expect(scheduler.running).toBe(true);
  });

  it('fires a tick once when two daemons run it', async () => {
    const ruleId = await createScheduledRule({
      name: 'Shared tick',
      conditions: { schedule: '* * * * * *' },
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
    const daemons: RunningDaemon[] = [];
    for (let i = 0; i < 2; i++) {
      const daemon = await startDaemon(config, logger, { http: false });
      running.push(daemon);
      daemons.push(daemon);
    }
    // Each daemon tries every tick; whichever comes second finds it fired.
    const tried = (daemon: RunningDaemon) =>
      daemon.scheduler.stats.fired + daemon.scheduler.stats.alreadyFired;
    await waitFor('both daemons to try three ticks', () => daemons.every((daemon) => tried(daemon) >= 3));
    await waitFor('four ticks to run', async () => (await executionsOf(ruleId)).length >= 4);

    await db.query(`update workflow.automation_rules set is_active = false where id = $1`, [ruleId]);
    for (const daemon of daemons) {
      await caughtUp(daemon.scheduler);
      expect(daemon.scheduler.ruleIds).not.toContain(ruleId);
    }
    await waitFor('the queue to drain', drained);

    const executions = await executionsOf(ruleId);
    const perTick = new Map<string, number>();
    for (const execution of executions) {
      perTick.set(execution.scheduled_for, (perTick.get(execution.scheduled_for) ?? 0) + 1);
    }
    expect([...perTick.values()].every((count) => count === 1)).toBe(true);
    expect(executions.every((execution) => execution.status === 'success')).toBe(true);
    // Every fired tick ran (none was lost), and produced its one alert.
    const runs = await runsOf(ruleId);
    expect(runs.map((run) => run.scheduled_for.toISOString()).sort()).toEqual([...perTick.keys()].sort());
    const [alerts] = await db.query<{ count: string; titles: string }>(
      `select count(*)::text as count, count(distinct title)::text as titles from workflow.alerts where source_rule_id = $1`,
      [ruleId],
    );
    expect(alerts).toEqual({ count: String(executions.length), titles: String(executions.length) });
    const fired = daemons.reduce((sum, daemon) => sum + daemon.scheduler.stats.fired, 0);
    expect(fired).toBe(runs.length);
    const alreadyFired = daemons.reduce((sum, daemon) => sum + daemon.scheduler.stats.alreadyFired, 0);
    expect(alreadyFired).toBeGreaterThanOrEqual(3);
  });

  it('fires the tick it missed by moments when a daemon starts, once', async () => {
    // Stay clear of a minute boundary, so that "the current minute" is one tick for the whole test.
    await waitFor('a moment early in a minute', () => new Date().getSeconds() < 50, 15_000);
    const ruleId = await createScheduledRule({
      name: 'Every minute',
      conditions: { schedule: '* * * * *' },
      actions: [{ name: 'Log the tick', config: { action_type: 'test_log', label: '{{scheduled_for}}' } }],
      updatedSecondsAgo: 120,
    });
    const minute = new Date();
    minute.setSeconds(0, 0);

    const first = await startScheduler();
    await waitFor('the first daemon to fire the tick of this minute', () => first.stats.fired === 1);
    await first.stop();
    running.splice(running.indexOf(first), 1);

    const second = await startScheduler();
    await waitFor('the second daemon to find it fired', () => second.stats.alreadyFired === 1);
    expect(second.stats.fired).toBe(0);
    expect((await runsOf(ruleId)).map((run) => run.scheduled_for.getTime())).toEqual([minute.getTime()]);

    await engine();
    await waitFor('the tick to run', async () => (await executionsOf(ruleId)).length === 1);
    const [execution] = await executionsOf(ruleId);
    expect(execution!.scheduled_for).toBe(minute.toISOString());
  });

  it('does not fire a tick from before the rule was written', async () => {
    await waitFor('a moment early in a minute', () => new Date().getSeconds() < 50, 15_000);
    const ruleId = await createScheduledRule({ name: 'Just written', conditions: { schedule: '* * * * *' } });
    const scheduler = await startScheduler();
    expect(scheduler.ruleIds).toContain(ruleId);
    await scheduler.refresh();
    expect(scheduler.stats).toEqual({ fired: 0, alreadyFired: 0 });
    expect(await runsOf(ruleId)).toEqual([]);
  });
});

describe('maintenance', () => {
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
