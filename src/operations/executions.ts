import { AdminError, explainDatabaseError } from '../admin/errors.js';
import type { Queryable } from '../db/transaction.js';
import { isUuid } from '../is-uuid.js';
import { resolveRule } from './rules.js';

export interface ExecutionSummary {
  readonly id: string;
  readonly ruleId: string;
  readonly ruleName: string;
  readonly executedAt: Date;
  readonly status: string;
  readonly executionTimeMs: number | null;
  readonly eventId: number | null;
  readonly errorMessage: string | null;
}

export interface ExecutionDetail extends ExecutionSummary {
  readonly entityType: string;
  readonly triggerData: unknown;
  readonly actionsExecuted: unknown;
  /** Deliveries the execution's actions queued, with where each stands. */
  readonly deliveries: readonly {
    readonly id: string;
    readonly channel: string;
    readonly status: string;
    readonly attempts: number | null;
  }[];
}

export interface ExecutionFilter {
  readonly failed?: boolean;
  /** A rule's id or name. */
  readonly rule?: string;
  readonly sinceSeconds?: number;
  readonly limit?: number;
}

interface ExecutionRow {
  id: string;
  rule_id: string;
  rule_name: string;
  executed_at: Date;
  status: string;
  execution_time_ms: number | null;
  event_id: string | null;
  error_message: string | null;
}

// executed_at is a timestamp without time zone written as now(): read in the session's time zone.
const COLUMNS = `x.id, x.automation_rules_id as rule_id, r.name as rule_name, x.executed_at::timestamptz as executed_at,
       x.status, x.execution_time_ms, x.trigger_data ->> 'event_id' as event_id, x.error_message`;

function summary(row: ExecutionRow): ExecutionSummary {
  return {
    id: row.id,
    ruleId: row.rule_id,
    ruleName: row.rule_name,
    executedAt: row.executed_at,
    status: row.status,
    executionTimeMs: row.execution_time_ms,
    eventId: row.event_id === null ? null : Number(row.event_id),
    errorMessage: row.error_message,
  };
}

/** Executions, newest first: failed ones only, of one rule, since a time ago, at most `limit` (50). */
export async function listExecutions(
  db: Queryable,
  filter: ExecutionFilter = {},
): Promise<ExecutionSummary[]> {
  const rule = filter.rule === undefined ? undefined : await resolveRule(db, filter.rule);
  try {
    const { rows } = await db.query<ExecutionRow>(
      `select ${COLUMNS}
         from workflow.automation_executions x
         join workflow.automation_rules r on r.id = x.automation_rules_id
        where ($1::uuid is null or x.automation_rules_id = $1)
          and (not $2 or x.status in ('failed', 'partial'))
          and ($3::double precision is null or x.executed_at >= localtimestamp - $3 * interval '1 second')
        order by x.executed_at desc, x.id
        limit $4`,
      [rule?.id ?? null, filter.failed === true, filter.sinceSeconds ?? null, filter.limit ?? 50],
    );
    return rows.map(summary);
  } catch (error) {
    return explainDatabaseError(error);
  }
}

/** One execution with what triggered it, what each action did, and the deliveries it queued. */
export async function showExecution(db: Queryable, id: string): Promise<ExecutionDetail> {
  if (!isUuid(id)) throw new AdminError(`an execution id is a uuid, got "${id}"`);
  try {
    const { rows } = await db.query<
      ExecutionRow & { entity_type: string; trigger_data: unknown; actions_executed: unknown }
    >(
      `select ${COLUMNS}, x.entity_type, x.trigger_data, x.actions_executed
         from workflow.automation_executions x
         join workflow.automation_rules r on r.id = x.automation_rules_id
        where x.id = $1`,
      [id],
    );
    const row = rows[0];
    if (row === undefined) throw new AdminError(`there is no execution ${id}`);
    const deliveries = await db.query<{
      id: string;
      channel: string;
      status: string;
      attempts: number | null;
    }>(
      `select id, channel, status, attempts from workflow.notification_deliveries
        where automation_execution_id = $1 order by created_date, id`,
      [id],
    );
    return {
      ...summary(row),
      entityType: row.entity_type,
      triggerData: row.trigger_data,
      actionsExecuted: row.actions_executed,
      deliveries: deliveries.rows,
    };
  } catch (error) {
    return explainDatabaseError(error);
  }
}
