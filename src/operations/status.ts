import { explainDatabaseError } from '../admin/errors.js';
import type { Queryable } from '../db/transaction.js';
import { countDeliveries } from './delivery-counts.js';
import { nextTicks } from '../scheduler/next-ticks.js';
import { parseSchedule } from '../scheduler/schedule.js';

/** A daemon counts as gone once its last heartbeat is older than this many of its intervals. */
export const GONE_AFTER_INTERVALS = 3;

export interface DaemonState {
  readonly id: string;
  readonly host: string;
  readonly pid: number;
  readonly version: string;
  readonly startedAt: Date;
  readonly lastHeartbeatAt: Date;
  readonly stoppedAt: Date | null;
  /** alive: heartbeating; stopped: stopped cleanly; gone: stopped heartbeating without a clean stop. */
  readonly state: 'alive' | 'stopped' | 'gone';
}

export interface ScheduledRuleTicks {
  readonly ruleId: string;
  readonly ruleName: string;
  readonly schedule: string;
  readonly timezone: string;
  readonly nextTicks: readonly Date[];
  readonly lastFiredFor: Date | null;
  /** Why it will never fire (a schedule the scheduler cannot parse). */
  readonly problem: string | null;
}

export interface Status {
  readonly at: Date;
  readonly events: {
    readonly pending: number;
    readonly dead: number;
    readonly oldestPendingAgeSeconds: number | null;
    readonly oldestDeadAgeSeconds: number | null;
    /** How long the oldest event that is due (not waiting for a retry) has waited: the engine's lag. */
    readonly lagSeconds: number | null;
  };
  /** Executions of the last hour, by status. */
  readonly executionsLastHour: Readonly<Record<string, number>>;
  /** Deliveries by status: sent and delivered are estimated in a large table (countDeliveries). */
  readonly deliveries: Readonly<Record<string, number>>;
  /** The statuses in `deliveries` whose count is an estimate. */
  readonly deliveriesEstimated: readonly string[];
  readonly daemons: readonly DaemonState[];
  readonly schedules: readonly ScheduledRuleTicks[];
}

export async function listDaemons(db: Queryable): Promise<DaemonState[]> {
  try {
    const { rows } = await db.query<{
      id: string;
      host: string;
      pid: number;
      version: string;
      started_at: Date;
      last_heartbeat_at: Date;
      stopped_at: Date | null;
      state: DaemonState['state'];
    }>(
      `select id, host, pid, version, started_at, last_heartbeat_at, stopped_at,
              case when stopped_at is not null then 'stopped'
                   when last_heartbeat_at < now() - $1 * heartbeat_interval_ms * interval '1 millisecond' then 'gone'
                   else 'alive' end as state
         from workflow.daemons
        order by (stopped_at is null) desc, started_at desc, id`,
      [GONE_AFTER_INTERVALS],
    );
    return rows.map((row) => ({
      id: row.id,
      host: row.host,
      pid: row.pid,
      version: row.version,
      startedAt: row.started_at,
      lastHeartbeatAt: row.last_heartbeat_at,
      stoppedAt: row.stopped_at,
      state: row.state,
    }));
  } catch (error) {
    return explainDatabaseError(error);
  }
}

/** Active scheduled rules with their next ticks (as the scheduler computes them) and last fired tick. */
export async function scheduledRuleTicks(db: Queryable, count = 3): Promise<ScheduledRuleTicks[]> {
  try {
    const { rows } = await db.query<{
      id: string;
      name: string;
      trigger_conditions: unknown;
      last_fired_for: Date | null;
    }>(
      `select r.id, r.name, r.trigger_conditions,
              (select max(s.scheduled_for) from workflow.schedule_runs s
                where s.rule_id = r.id and s.status in ('fired', 'selecting', 'done')) as last_fired_for
         from workflow.automation_rules r
         join workflow.trigger_types t on t.id = r.trigger_type_id
         join workflow.entities e on e.id = r.entity_id
        where r.is_active and t.name = 'scheduled' and e.is_active is not false
        order by r.name, r.id`,
    );
    const result: ScheduledRuleTicks[] = [];
    for (const row of rows) {
      const parsed = parseSchedule(row.trigger_conditions);
      const conditions = (row.trigger_conditions ?? {}) as { schedule?: unknown; timezone?: unknown };
      result.push({
        ruleId: row.id,
        ruleName: row.name,
        schedule: parsed.ok ? parsed.schedule.expression : String(conditions.schedule ?? ''),
        timezone: parsed.ok ? parsed.schedule.timezone : String(conditions.timezone ?? 'UTC'),
        nextTicks: parsed.ok ? nextTicks(parsed.schedule, count) : [],
        lastFiredFor: row.last_fired_for,
        problem: parsed.ok ? null : parsed.message,
      });
    }
    return result;
  } catch (error) {
    return explainDatabaseError(error);
  }
}

/**
 * What the engine, the delivery worker, the daemons and the scheduler are doing: the queue and the
 * counts in one query, then the deliveries, the daemons and the schedules (several reads, not one
 * snapshot).
 */
export async function getStatus(db: Queryable): Promise<Status> {
  try {
    const { rows } = await db.query<{
      at: Date;
      pending: number;
      dead: number;
      oldest_pending: number | null;
      oldest_dead: number | null;
      lag: number | null;
      executions: Record<string, number> | null;
    }>(
      `select now() as at,
              count(*) filter (where e.state = 'pending')::int as pending,
              count(*) filter (where e.state = 'dead')::int as dead,
              extract(epoch from now() - min(e.created_at) filter (where e.state = 'pending'))::float8 as oldest_pending,
              extract(epoch from now() - min(e.created_at) filter (where e.state = 'dead'))::float8 as oldest_dead,
              extract(epoch from now() - min(e.created_at)
                filter (where e.state = 'pending' and (e.run_after is null or e.run_after <= now())))::float8 as lag,
              (select jsonb_object_agg(status, n) from (
                 select status, count(*)::int as n from workflow.automation_executions
                  where executed_at >= localtimestamp - interval '1 hour' group by status) x) as executions
         from workflow.events e`,
    );
    const row = rows[0]!;
    const deliveries = await countDeliveries(db);
    return {
      at: row.at,
      events: {
        pending: row.pending,
        dead: row.dead,
        oldestPendingAgeSeconds: row.oldest_pending,
        oldestDeadAgeSeconds: row.oldest_dead,
        lagSeconds: row.lag,
      },
      executionsLastHour: row.executions ?? {},
      deliveries: deliveries.counts,
      deliveriesEstimated: deliveries.estimated,
      daemons: await listDaemons(db),
      schedules: await scheduledRuleTicks(db),
    };
  } catch (error) {
    return explainDatabaseError(error);
  }
}
