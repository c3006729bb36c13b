import type pg from 'pg';
import type { Clock } from '../clock.js';

/**
 * One batch of a retention delete: at most `limit` rows older than `ageMs`, after `cursor` (where
 * the previous batch of the same run stopped). `next` is where the next batch starts, or null when
 * nothing older is left. Each runs inside a short transaction of its own (see run-batches.ts).
 */
export type BatchStep = (
  client: pg.ClientBase,
  ageMs: number,
  cursor: unknown,
  limit: number,
) => Promise<{ deleted: number; next: unknown }>;

// executed_at and created_date are timestamps without time zone written as now(), so their cutoff
// is localtimestamp, read in the same session time zone.
const EXECUTIONS = `
with candidates as (
  select id, executed_at
    from workflow.automation_executions
   where executed_at < localtimestamp - $1::bigint * interval '1 millisecond'
     and executed_at >= $2::timestamp
     and (executed_at, id) > ($2::timestamp, $3::uuid)
   order by executed_at, id
   limit $4
), deleted as (
  delete from workflow.automation_executions e
   using candidates c
   where e.id = c.id
     and not exists (select from workflow.notification_deliveries d where d.automation_execution_id = e.id)
  returning e.id
), last as (
  -- Output names unlike the columns': ORDER BY would otherwise sort the text, not the timestamp.
  select executed_at::text as at_text, id::text as id_text from candidates order by executed_at desc, id desc limit 1
)
select (select count(*) from deleted)::int as deleted, (select count(*) from candidates)::int as scanned,
       (select at_text from last) as last_at, (select id_text from last) as last_id`;

/**
 * Executions older than ageMs that no delivery points at. An execution whose delivery is kept (a
 * failed one, or a sent one younger than its own retention) is kept with it and passed over: the
 * cursor walks on, so kept rows are not read again by every batch. No FOR UPDATE: nothing locks old
 * executions, and a lock before the delete writes every row twice (the lock, then the delete, each
 * with its WAL record); a row someone does hold makes the batch wait lock_timeout and go again.
 */
export const pruneExecutions: BatchStep = async (client, ageMs, cursor, limit) => {
  const from = (cursor as { at: string; id: string } | undefined) ?? {
    at: '-infinity',
    id: '00000000-0000-0000-0000-000000000000',
  };
  const { rows } = await client.query<{
    deleted: number;
    scanned: number;
    last_at: string | null;
    last_id: string | null;
  }>(EXECUTIONS, [ageMs, from.at, from.id, limit]);
  const row = rows[0]!;
  return {
    deleted: row.deleted,
    next: row.scanned < limit || row.last_at === null ? null : { at: row.last_at, id: row.last_id },
  };
};

// The status lists are written out, not bound, so that the planner matches the partial indexes of
// migration 000013. SKIP LOCKED: a delivery the worker holds is left for the next run.
const FINISHED_DELIVERIES = `
select id, notification_id from workflow.notification_deliveries
 where status in ('sent', 'delivered') and created_date < localtimestamp - $1::bigint * interval '1 millisecond'
 order by created_date, id limit $2
 for update skip locked`;

const FAILED_DELIVERIES = `
select id, notification_id from workflow.notification_deliveries
 where status in ('failed', 'bounced') and created_date < localtimestamp - $1::bigint * interval '1 millisecond'
 order by created_date, id limit $2
 for update skip locked`;

async function deleteDeliveries(
  client: pg.ClientBase,
  select: string,
  ageMs: number,
  limit: number,
): Promise<{ deleted: number; next: unknown }> {
  const { rows } = await client.query<{ id: string; notification_id: string }>(select, [ageMs, limit]);
  if (rows.length === 0) return { deleted: 0, next: null };
  const notifications = [...new Set(rows.map((row) => row.notification_id))];
  // A payload is shared by the deliveries of one notification and goes with the last of them.
  // Locking it first serialises two runs (maintenance and cleanup) that delete the last deliveries
  // of one notification at the same time; otherwise each would still see the other's and both
  // would keep the payload.
  await client.query(
    `select from workflow.notification_payloads where id = any($1::uuid[]) order by id for update`,
    [notifications],
  );
  // Reads go with their delivery (on delete cascade).
  const { rowCount } = await client.query(
    `delete from workflow.notification_deliveries where id = any($1::uuid[])`,
    [rows.map((row) => row.id)],
  );
  await client.query(
    `delete from workflow.notification_payloads p
      where p.id = any($1::uuid[])
        and not exists (select from workflow.notification_deliveries d where d.notification_id = p.id)`,
    [notifications],
  );
  return { deleted: rowCount ?? 0, next: rows.length < limit ? null : true };
}

/** Sent and delivered deliveries older than ageMs, their reads, and payloads no delivery needs any more. */
export const pruneFinishedDeliveries: BatchStep = (client, ageMs, _cursor, limit) =>
  deleteDeliveries(client, FINISHED_DELIVERIES, ageMs, limit);

/** Failed and bounced deliveries older than ageMs (cleanup only: retention keeps them to be retried). */
export const pruneFailedDeliveries: BatchStep = (client, ageMs, _cursor, limit) =>
  deleteDeliveries(client, FAILED_DELIVERIES, ageMs, limit);

// The batches below delete `where key = any (array(select ... limit n for update skip locked))`:
// the array is computed once and the rows are then fetched by their key (or ctid). With
// `key in (select ...)` or `using (select ...)` the planner, which cannot see that the subquery
// returns at most n rows, joins it by a hash over a sequential scan of the whole table: every batch
// would read every row.

/**
 * Allocation results that hold no stock: failed, released or fulfilled. SKIP LOCKED: an allocation
 * being released right now is left for the next run.
 */
export const pruneAllocations: BatchStep = async (client, ageMs, _cursor, limit) => {
  const { rowCount } = await client.query(
    `delete from workflow.allocation_results
      where id = any (array(
        select id from workflow.allocation_results
         where (allocation_data ->> 'status' = 'failed' or allocation_data ? 'released_at' or allocation_data ? 'fulfilled_at')
           and created_date < localtimestamp - $1::bigint * interval '1 millisecond'
         order by created_date, id limit $2
         for update skip locked))`,
    [ageMs, limit],
  );
  const deleted = rowCount ?? 0;
  return { deleted, next: deleted < limit ? null : true };
};

/**
 * Ticks of scheduled rules, by the tick's own time on the scheduler's clock (tests drive it). A tick
 * still selecting rows is kept whatever its age (a daemon finishes it from its last key), and so is
 * each rule's newest tick, from which the scheduler resumes after downtime.
 */
export function pruneScheduleRunsAt(clock: Clock): BatchStep {
  return async (client, ageMs, _cursor, limit) => {
    const { rowCount } = await client.query(
      `delete from workflow.schedule_runs
        where ctid = any (array(
          select ctid from workflow.schedule_runs
           where scheduled_for < $3::timestamptz - $1::bigint * interval '1 millisecond'
             and status <> 'selecting'
             -- The scheduler resumes each rule from its newest tick: that one stays.
             and exists (select 1 from workflow.schedule_runs n
                           where n.rule_id = schedule_runs.rule_id and n.scheduled_for > schedule_runs.scheduled_for)
           order by scheduled_for limit $2
           for update skip locked))`,
      [ageMs, limit, clock.now()],
    );
    const deleted = rowCount ?? 0;
    return { deleted, next: deleted < limit ? null : true };
  };
}

/**
 * Dead events captured longer than ageMs ago. workflow.events has no index but its primary key (every
 * captured write would pay for one), so the batches walk the key from where the last one stopped:
 * one pass over the queue for the whole run. SKIP LOCKED: an event being retried is left alone.
 */
export const pruneDeadEvents: BatchStep = async (client, ageMs, cursor, limit) => {
  const { rows } = await client.query<{ deleted: number; last_id: string | null }>(
    `with deleted as (
       delete from workflow.events
        where id = any (array(
          select id from workflow.events
           where id > $2::bigint and state = 'dead' and created_at < now() - $1::bigint * interval '1 millisecond'
           order by id limit $3
           for update skip locked))
       returning id
     )
     select count(*)::int as deleted, max(id)::text as last_id from deleted`,
    [ageMs, (cursor as string | undefined) ?? '0', limit],
  );
  const row = rows[0]!;
  return { deleted: row.deleted, next: row.deleted < limit || row.last_id === null ? null : row.last_id };
};
