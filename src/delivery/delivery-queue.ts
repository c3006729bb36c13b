import type pg from 'pg';
import type { ClaimedDelivery, DeliveryPayload } from './types.js';

// The delivery queue's statements: claim due deliveries, record an attempt's outcome, renew a
// lease, fail what has no attempt left, and say when the next one is due. The worker
// (delivery-worker.ts) runs the loop around them; enqueue.ts writes the rows they read.

export interface ClaimOptions {
  readonly limit: number;
  readonly maxAttempts: number;
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
  readonly leaseMs: number;
  readonly workerId: string;
}

const DUE = `workflow.delivery_due_at(d.status, d.attempts, d.updated_date, d.provider_response, $3, $4) <= now()`;

// Claim and mark in flight in one statement (one short transaction): status retrying, the attempt
// counted, and a lease in provider_response.not_before that keeps other workers off the row while
// it is being sent, and lets them take it over if this worker dies before recording the outcome.
const CLAIM = `
with due as (
  select d.id
    from workflow.notification_deliveries d
   where d.status in ('pending', 'retrying')
     and coalesce(d.attempts, 0) < $2
     and ${DUE}
   order by d.updated_date, d.id
   limit $1
   for update skip locked
), claimed as (
  update workflow.notification_deliveries d
     set status = 'retrying',
         attempts = coalesce(d.attempts, 0) + 1,
         provider_response = case when jsonb_typeof(d.provider_response) = 'object' then d.provider_response else '{}' end
           || jsonb_build_object('not_before', now() + $5 * interval '1 millisecond',
                                 'claimed_by', $6::text, 'claimed_at', now())
    from due
   where d.id = due.id
  returning d.id, d.notification_id, d.recipient_id, d.channel, d.attempts, d.rule_id, d.action_id,
            d.automation_execution_id
)
select c.id::text, c.notification_id::text, c.recipient_id::text, c.channel, c.attempts,
       c.rule_id::text, c.action_id::text, c.automation_execution_id::text, p.payload
  from claimed c
  left join workflow.notification_payloads p on p.id = c.notification_id`;

// Deliveries that are due but have no attempt left: a worker died while sending the last one, or
// DELIVERY_MAX_ATTEMPTS was lowered.
const EXPIRE = `
update workflow.notification_deliveries d
   set status = 'failed',
       failed_at = now(),
       error_message = case
         when d.provider_response ? 'claimed_by' then
           format('attempt %s never reported back (its worker stopped while sending), so its outcome is unknown; '
                  'no attempts are left (DELIVERY_MAX_ATTEMPTS is %s)', d.attempts, $2::int)
         else concat_ws('; ', d.error_message, format('no attempts are left (DELIVERY_MAX_ATTEMPTS is %s)', $2::int))
       end
 where d.status in ('pending', 'retrying')
   and coalesce(d.attempts, 0) >= $2
   and workflow.delivery_due_at(d.status, d.attempts, d.updated_date, d.provider_response, $1, $3) <= now()`;

// How long until the next delivery is due, by the database's clock.
const NEXT_DUE = `
select extract(epoch from greatest(min(workflow.delivery_due_at(d.status, d.attempts, d.updated_date,
                                                                  d.provider_response, $1, $2)),
                                   clock_timestamp()) - clock_timestamp()) * 1000 as ms
  from workflow.notification_deliveries d
 where d.status in ('pending', 'retrying')`;

// Records an attempt's outcome, unless the row has been claimed again since (a lease that ran out).
const RECORD = `
update workflow.notification_deliveries
   set status = $3::text,
       sent_at = case when $3::text in ('sent', 'delivered') then now() else sent_at end,
       delivered_at = case when $3::text = 'delivered' then now() else delivered_at end,
       failed_at = case when $3::text in ('failed', 'bounced') then now() else failed_at end,
       error_message = $4::text,
       provider_response = nullif(coalesce($5::jsonb, '{}')
         || case when $6::double precision is null then '{}'::jsonb
                 else jsonb_build_object('not_before', now() + $6 * interval '1 millisecond') end, '{}')
 where id = $1 and attempts = $2 and status = 'retrying'`;

// Pushes the lease of a delivery this worker is still sending; nothing once its outcome is recorded
// (which drops claimed_by) or another worker has claimed it (which counts another attempt).
const RENEW = `
update workflow.notification_deliveries
   set provider_response = provider_response
         || jsonb_build_object('not_before', now() + $4 * interval '1 millisecond')
 where id = $1 and attempts = $2 and status = 'retrying' and provider_response ->> 'claimed_by' = $3`;

// A webhook action's own secret, as the action runs with it now (template defaults merged).
const ACTION_SECRET = `
select workflow.merge_action_config(t.default_config, a.action_config) ->> 'secret' as secret
  from workflow.rule_actions a
  left join workflow.action_templates t on t.id = a.template_id
 where a.id = $1`;

export async function readActionSecret(
  pool: pg.Pool,
  actionId: string,
): Promise<{ found: boolean; secret?: string | undefined }> {
  const { rows } = await pool.query<{ secret: string | null }>(ACTION_SECRET, [actionId]);
  const row = rows[0];
  if (!row) return { found: false };
  return { found: true, secret: row.secret ?? undefined };
}

interface ClaimRow {
  id: string;
  notification_id: string;
  recipient_id: string;
  channel: string;
  attempts: number;
  rule_id: string | null;
  action_id: string | null;
  automation_execution_id: string | null;
  payload: unknown;
}

function asPayload(value: unknown): DeliveryPayload | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
  const kind = (value as { kind?: unknown }).kind;
  return kind === 'email' || kind === 'notification' || kind === 'webhook'
    ? (value as DeliveryPayload)
    : null;
}

/**
 * Claims due deliveries and marks them in flight, in one committed statement. Exported so that the
 * claim can be examined on its own; the worker is its only production caller.
 */
export async function claimDeliveries(
  client: pg.ClientBase | pg.Pool,
  options: ClaimOptions,
): Promise<ClaimedDelivery[]> {
  const { rows } = await client.query<ClaimRow>(CLAIM, [
    options.limit,
    options.maxAttempts,
    options.retryBaseMs,
    options.retryMaxMs,
    options.leaseMs,
    options.workerId,
  ]);
  return rows.map((row) => ({
    id: row.id,
    notificationId: row.notification_id,
    recipientId: row.recipient_id,
    channel: row.channel,
    attempts: row.attempts,
    ruleId: row.rule_id,
    actionId: row.action_id,
    automationExecutionId: row.automation_execution_id,
    payload: asPayload(row.payload),
  }));
}

/** Fails the deliveries that are due but have no attempt left; returns how many. */
export async function expireDeliveries(
  db: pg.Pool | pg.ClientBase,
  options: Pick<ClaimOptions, 'maxAttempts' | 'retryBaseMs' | 'retryMaxMs'>,
): Promise<number> {
  const { rowCount } = await db.query(EXPIRE, [options.retryBaseMs, options.maxAttempts, options.retryMaxMs]);
  return rowCount ?? 0;
}

/** Milliseconds until the next delivery is due (0 when one is due now), or null when none waits. */
export async function nextDueMs(
  db: pg.Pool | pg.ClientBase,
  options: Pick<ClaimOptions, 'retryBaseMs' | 'retryMaxMs'>,
): Promise<number | null> {
  const { rows } = await db.query<{ ms: string | number | null }>(NEXT_DUE, [
    options.retryBaseMs,
    options.retryMaxMs,
  ]);
  const raw = rows[0]?.ms;
  return raw === null || raw === undefined ? null : Number(raw);
}

/** Pushes the lease of a delivery being sent; false when another worker has claimed it since. */
export async function renewLease(
  db: pg.Pool | pg.ClientBase,
  delivery: Pick<ClaimedDelivery, 'id' | 'attempts'>,
  workerId: string,
  leaseMs: number,
): Promise<boolean> {
  const { rowCount } = await db.query(RENEW, [delivery.id, delivery.attempts, workerId, leaseMs]);
  return rowCount !== 0;
}

/** An attempt's outcome as it is stored. */
export interface RecordedOutcome {
  readonly status: string;
  readonly error: string | null;
  readonly response: unknown;
  /** When a retry may come sooner or later than the backoff (a provider's Retry-After). */
  readonly retryAfterMs: number | null;
}

/** Records an attempt's outcome; false when the row was claimed again meanwhile (its lease ran out). */
export async function recordOutcome(
  db: pg.Pool | pg.ClientBase,
  delivery: Pick<ClaimedDelivery, 'id' | 'attempts'>,
  outcome: RecordedOutcome,
): Promise<boolean> {
  const { rowCount } = await db.query(RECORD, [
    delivery.id,
    delivery.attempts,
    outcome.status,
    outcome.error,
    outcome.response === null ? null : JSON.stringify(outcome.response),
    outcome.retryAfterMs,
  ]);
  return rowCount !== 0;
}
