import { AdminError, explainDatabaseError } from '../admin/errors.js';
import { sqlState } from '../sql-state.js';
import type { Queryable } from '../db/transaction.js';

export interface EventSummary {
  readonly id: number;
  readonly entity: string;
  readonly operation: string;
  readonly rowKey: unknown;
  readonly state: string;
  readonly attempts: number;
  readonly createdAt: Date;
  readonly runAfter: Date | null;
  readonly lastError: string | null;
}

export interface EventDetail extends EventSummary {
  readonly entityId: string;
  readonly ruleId: string | null;
  readonly oldRow: unknown;
  readonly newRow: unknown;
  readonly actorId: string | null;
  readonly depth: number;
  readonly lockedBy: string | null;
  readonly lockedUntil: Date | null;
}

interface EventRow {
  id: string;
  entity: string | null;
  operation: string;
  row_key: unknown;
  state: string;
  attempts: number;
  created_at: Date;
  run_after: Date | null;
  last_error: string | null;
}

const COLUMNS = `ev.id, coalesce(en.schema_name, 'public') || '.' || en.name as entity, ev.operation, ev.row_key,
       ev.state, ev.attempts, ev.created_at, ev.run_after, ev.last_error`;

const NO_DATA_FOUND = 'P0002';

/** How many events one retry statement touches: short transactions, nothing held for long. */
export const RETRY_BATCH_SIZE = 1000;

function summary(row: EventRow): EventSummary {
  return {
    id: Number(row.id),
    entity: row.entity ?? '?',
    operation: row.operation,
    rowKey: row.row_key,
    state: row.state,
    attempts: row.attempts,
    createdAt: row.created_at,
    runAfter: row.run_after,
    lastError: row.last_error,
  };
}

/**
 * Events still in the queue, oldest first: pending ones (with those waiting for a retry), or the dead
 * ones with `dead`. Handled events leave workflow.events; their executions say what happened.
 */
export async function listEvents(
  db: Queryable,
  options: { dead?: boolean; limit?: number } = {},
): Promise<EventSummary[]> {
  try {
    const { rows } = await db.query<EventRow>(
      `select ${COLUMNS}
         from workflow.events ev left join workflow.entities en on en.id = ev.entity_id
        where ev.state = $1
        order by ev.id
        limit $2`,
      [options.dead ? 'dead' : 'pending', options.limit ?? 50],
    );
    return rows.map(summary);
  } catch (error) {
    return explainDatabaseError(error);
  }
}

export async function showEvent(db: Queryable, id: string): Promise<EventDetail> {
  const eventId = parseEventId(id);
  try {
    const { rows } = await db.query<
      EventRow & {
        entity_id: string;
        rule_id: string | null;
        old_row: unknown;
        new_row: unknown;
        actor_id: string | null;
        depth: number;
        locked_by: string | null;
        locked_until: Date | null;
      }
    >(
      `select ${COLUMNS}, ev.entity_id, ev.rule_id, ev.old_row, ev.new_row, ev.actor_id, ev.depth,
              ev.locked_by, ev.locked_until
         from workflow.events ev left join workflow.entities en on en.id = ev.entity_id
        where ev.id = $1`,
      [eventId],
    );
    const row = rows[0];
    if (row === undefined) {
      throw new AdminError(
        `there is no event ${eventId} in the queue: handled events leave workflow.events; ` +
          `\`rulebook executions\` shows what they did (trigger_data.event_id)`,
      );
    }
    return {
      ...summary(row),
      entityId: row.entity_id,
      ruleId: row.rule_id,
      oldRow: row.old_row,
      newRow: row.new_row,
      actorId: row.actor_id,
      depth: row.depth,
      lockedBy: row.locked_by,
      lockedUntil: row.locked_until,
    };
  } catch (error) {
    return explainDatabaseError(error);
  }
}

/** An event id as typed: a whole number. */
export function parseEventId(text: string): string {
  if (!/^\d{1,19}$/.test(text)) throw new AdminError(`an event id is a whole number, got "${text}"`);
  return text;
}

/** Puts one failed or dead event back in the queue (workflow.retry_event). */
export async function retryEvent(db: Queryable, id: string): Promise<void> {
  const eventId = parseEventId(id);
  try {
    await db.query('select workflow.retry_event($1)', [eventId]);
  } catch (error) {
    if (sqlState(error) === NO_DATA_FOUND) {
      throw new AdminError(
        `there is no event ${eventId} in the queue (handled events leave workflow.events)`,
        { cause: error },
      );
    }
    return explainDatabaseError(error);
  }
}

/**
 * Puts every dead event back in the queue, `batchSize` at a time, each batch its own short
 * statement, so that retrying a hundred thousand events never holds them all locked in one
 * transaction. Daemons are woken after each batch. Returns how many were queued again.
 */
export async function retryDeadEvents(
  db: Queryable,
  options: { batchSize?: number; onProgress?: (retried: number) => void } = {},
): Promise<number> {
  const batchSize = options.batchSize ?? RETRY_BATCH_SIZE;
  let retried = 0;
  let after = '0';
  try {
    for (;;) {
      const { rows } = await db.query<{ last: string | null; count: number }>(
        `with batch as (
           select id from workflow.events where state = 'dead' and id > $1 order by id limit $2
           for update skip locked
         ), retried as (
           update workflow.events e set state = 'pending', attempts = 0, run_after = null, last_error = null
             from batch where e.id = batch.id
           returning e.id
         )
         select max(id)::text as last, count(*)::int as count,
                case when count(*) > 0 then pg_notify('rulebook_events', '') end
           from retried`,
        [after, batchSize],
      );
      const { last, count } = rows[0]!;
      if (last === null || count === 0) return retried;
      retried += count;
      after = last;
      options.onProgress?.(retried);
    }
  } catch (error) {
    return explainDatabaseError(error);
  }
}
