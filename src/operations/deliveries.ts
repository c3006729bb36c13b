import { AdminError, explainDatabaseError } from '../admin/errors.js';
import type { Queryable } from '../db/transaction.js';
import { isUuid } from '../is-uuid.js';

export interface DeliverySummary {
  readonly id: string;
  readonly channel: string;
  readonly recipientId: string;
  readonly status: string;
  readonly attempts: number | null;
  readonly ruleId: string | null;
  readonly ruleName: string | null;
  readonly createdDate: Date;
  readonly updatedDate: Date;
  readonly errorMessage: string | null;
  /** How many times an operator has put it back to pending (workflow.delivery_retries). */
  readonly retries: number;
}

export type RetryableStatus = 'failed' | 'bounced';

export interface DeliveryFilter {
  /** Only deliveries in these statuses; all when empty or absent. */
  readonly statuses?: readonly string[];
  /** Only deliveries created (for failed or bounced: that failed) this many seconds ago or later. */
  readonly sinceSeconds?: number;
  readonly limit?: number;
}

/** How many deliveries one retry statement touches. */
export const RETRY_BATCH_SIZE = 1000;

// The delivery timestamps are timestamps without time zone written as now(): they are read in the
// session's time zone, and compared with localtimestamp.
const SINCE = `($2::double precision is null
                or coalesce(d.failed_at, d.created_date) >= localtimestamp - $2 * interval '1 second')`;

/** Deliveries, newest first. */
export async function listDeliveries(db: Queryable, filter: DeliveryFilter = {}): Promise<DeliverySummary[]> {
  try {
    const { rows } = await db.query<{
      id: string;
      channel: string;
      recipient_id: string;
      status: string;
      attempts: number | null;
      rule_id: string | null;
      rule_name: string | null;
      created_date: Date;
      updated_date: Date;
      error_message: string | null;
      retries: number;
    }>(
      `select d.id, d.channel, d.recipient_id, d.status, d.attempts, d.rule_id, r.name as rule_name,
              d.created_date::timestamptz as created_date, d.updated_date::timestamptz as updated_date,
              d.error_message,
              (select count(*)::int from workflow.delivery_retries h where h.delivery_id = d.id) as retries
         from workflow.notification_deliveries d
         left join workflow.automation_rules r on r.id = d.rule_id
        where (cardinality($1::text[]) = 0 or d.status = any($1::text[]))
          and ${SINCE}
        order by d.created_date desc, d.id
        limit $3`,
      [filter.statuses ?? [], filter.sinceSeconds ?? null, filter.limit ?? 50],
    );
    return rows.map((row) => ({
      id: row.id,
      channel: row.channel,
      recipientId: row.recipient_id,
      status: row.status,
      attempts: row.attempts,
      ruleId: row.rule_id,
      ruleName: row.rule_name,
      createdDate: row.created_date,
      updatedDate: row.updated_date,
      errorMessage: row.error_message,
      retries: row.retries,
    }));
  } catch (error) {
    return explainDatabaseError(error);
  }
}

/**
 * Puts one failed or bounced delivery back to pending (workflow.retry_deliveries): what it had been
 * through is kept in workflow.delivery_retries, and it keeps its id, so it is sent with the same
 * Message-ID or Idempotency-Key as before and a receiver can still drop a repeat.
 */
export async function retryDelivery(db: Queryable, id: string): Promise<void> {
  if (!isUuid(id)) throw new AdminError(`a delivery id is a uuid, got "${id}"`);
  try {
    const { rows } = await db.query<{ id: string }>(
      'select workflow.retry_deliveries(array[$1::uuid]) as id',
      [id],
    );
    if (rows.length > 0) return;
    const found = await db.query<{ status: string }>(
      'select status from workflow.notification_deliveries where id = $1',
      [id],
    );
    const status = found.rows[0]?.status;
    if (status === undefined) throw new AdminError(`there is no delivery ${id}`);
    throw new AdminError(`delivery ${id} is ${status}; only failed or bounced deliveries are retried`);
  } catch (error) {
    return explainDatabaseError(error);
  }
}

/**
 * Puts every delivery in `statuses` (failed, bounced) back to pending, `batchSize` at a time, each
 * batch its own short statement. Returns how many.
 */
export async function retryDeliveries(
  db: Queryable,
  options: {
    statuses: readonly RetryableStatus[];
    sinceSeconds?: number;
    batchSize?: number;
    onProgress?: (retried: number) => void;
  },
): Promise<number> {
  const batchSize = options.batchSize ?? RETRY_BATCH_SIZE;
  let retried = 0;
  let after = '00000000-0000-0000-0000-000000000000';
  try {
    for (;;) {
      const { rows } = await db.query<{ count: number; last: string | null }>(
        `with batch as (
           select d.id from workflow.notification_deliveries d
            where d.status = any($1::text[]) and ${SINCE} and d.id > $3::uuid
            order by d.id limit $4
         ), retried as (
           select workflow.retry_deliveries(array(select id from batch)) as id
         )
         select (select count(*)::int from retried) as count,
                (select id::text from batch order by id desc limit 1) as last`,
        [options.statuses, options.sinceSeconds ?? null, after, batchSize],
      );
      const { count, last } = rows[0]!;
      if (last === null) return retried;
      retried += count;
      after = last;
      options.onProgress?.(retried);
    }
  } catch (error) {
    return explainDatabaseError(error);
  }
}
