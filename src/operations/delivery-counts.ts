import type { Queryable } from '../db/transaction.js';

/**
 * Below this many rows (the planner's estimate) every status is counted: a sequential scan of
 * 100,000 deliveries takes tens of milliseconds. Above it, sent and delivered are estimated.
 */
export const EXACT_DELIVERY_COUNT_BELOW = 100_000;

export interface DeliveryCounts {
  /** Deliveries by status; only statuses that have some. */
  readonly counts: Readonly<Record<string, number>>;
  /** The statuses whose count is an estimate from the table's statistics (sent, delivered). */
  readonly estimated: readonly string[];
}

// What operators act on (waiting, failed, bounced) is counted through the partial indexes that the
// worker and the retention job use (idx_notification_deliveries_due and _failed), so it costs what
// those rows cost, however many deliveries are kept.
const ACTIONABLE = `
select status, count(*)::int as n from workflow.notification_deliveries
 where status in ('pending', 'retrying') group by status
union all
select status, count(*)::int as n from workflow.notification_deliveries
 where status in ('failed', 'bounced') group by status`;

// The planner's row count for the table now: reltuples scaled to its current size, as the planner
// does; null before the first VACUUM or ANALYZE (reltuples -1).
const TABLE_ROWS = `
select case when c.reltuples < 0 then null
            else (c.reltuples / greatest(c.relpages, 1)
                  * (pg_catalog.pg_relation_size(c.oid) / current_setting('block_size')::int))::float8
       end as rows
  from pg_catalog.pg_class c where c.oid = 'workflow.notification_deliveries'::regclass`;

const FINISHED = `
select status, count(*)::int as n from workflow.notification_deliveries
 where status in ('sent', 'delivered') group by status`;

// sent and delivered are nearly every row of a table kept for 90 days: their share of the rows
// from the status column's most common values (ANALYZE keeps all six statuses there).
const FINISHED_ESTIMATE = `
select v.status, round(v.freq * $1::float8)::int as n
  from pg_catalog.pg_stats s,
       unnest(s.most_common_vals::text::text[], s.most_common_freqs) as v (status, freq)
 where s.schemaname = 'workflow' and s.tablename = 'notification_deliveries' and s.attname = 'status'
   and v.status in ('sent', 'delivered') and round(v.freq * $1::float8) > 0`;

/**
 * Deliveries by status for `rulebook status`, without reading every delivery of a large table:
 * waiting and failed ones are counted, sent and delivered ones too while the table is small, and
 * estimated from the table's statistics once it is not (marked as such).
 */
export async function countDeliveries(
  db: Queryable,
  exactBelow: number = EXACT_DELIVERY_COUNT_BELOW,
): Promise<DeliveryCounts> {
  const counts: Record<string, number> = {};
  for (const row of (await db.query<{ status: string; n: number }>(ACTIONABLE)).rows)
    counts[row.status] = row.n;
  const rows = (await db.query<{ rows: number | null }>(TABLE_ROWS)).rows[0]?.rows ?? null;
  if (rows === null || rows < exactBelow) {
    for (const row of (await db.query<{ status: string; n: number }>(FINISHED)).rows)
      counts[row.status] = row.n;
    return { counts, estimated: [] };
  }
  const estimated: string[] = [];
  const { rows: estimates } = await db.query<{ status: string; n: number }>(FINISHED_ESTIMATE, [rows]);
  if (estimates.length === 0) {
    // No statistics yet (never analyzed), or no finished deliveries at all: count them.
    for (const row of (await db.query<{ status: string; n: number }>(FINISHED)).rows)
      counts[row.status] = row.n;
    return { counts, estimated: [] };
  }
  for (const row of estimates) {
    counts[row.status] = row.n;
    estimated.push(row.status);
  }
  return { counts, estimated: estimated.sort() };
}
