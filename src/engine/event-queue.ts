import type pg from 'pg';
import type { CapturedEvent } from './types.js';

// The oldest ready events, at most one per row: an event waits while an earlier event of the same
// row is still in the table (being handled by someone, or waiting for a retry), which keeps each
// row's events in commit order across any number of daemons. Dead events do not hold a row up.
const CLAIM_EVENTS = `
select e.id, e.entity_id, e.operation, e.row_key, e.old_row, e.new_row, e.txid::text as txid, e.actor_id,
       e.depth, e.created_at, e.attempts, e.rule_id
  from workflow.events e
 where e.state = 'pending'
   and (e.run_after is null or e.run_after <= now())
   and not exists (
     select 1 from workflow.events p
      where p.row_hash = e.row_hash and p.id < e.id and p.state = 'pending'
   )
 order by e.id
 limit $1
   for update of e skip locked`;

const DELETE_EVENTS = `delete from workflow.events where id = any($1::bigint[])`;

// Backoff is computed next to the data: 2^attempts seconds, capped at five minutes.
const FAIL_EVENT = `
update workflow.events
   set attempts = attempts + 1,
       last_error = $2,
       state = case when attempts + 1 >= $3 then 'dead' else 'pending' end,
       run_after = now() + least(power(2, attempts + 1), 300) * interval '1 second'
 where id = $1
returning state`;

const INSERT_EXECUTIONS = `
insert into workflow.automation_executions
  (id, automation_rules_id, entity_type, trigger_data, actions_executed, status, error_message, execution_time_ms)
select x.id, x.rule_id, left(x.entity_type, 50), x.trigger_data, x.actions_executed, x.status, x.error_message,
       x.execution_time_ms
  from jsonb_to_recordset($1::jsonb) as x (id uuid, rule_id uuid, entity_type text, trigger_data jsonb,
                                            actions_executed jsonb, status text, error_message text,
                                            execution_time_ms int)`;

interface EventRow {
  id: string;
  entity_id: string;
  operation: CapturedEvent['operation'];
  row_key: Record<string, unknown>;
  old_row: Record<string, unknown> | null;
  new_row: Record<string, unknown> | null;
  txid: string;
  actor_id: string | null;
  depth: number;
  created_at: Date;
  attempts: number;
  rule_id: string | null;
}

export interface ExecutionRecord {
  readonly id: string;
  readonly rule_id: string;
  readonly entity_type: string;
  readonly trigger_data: unknown;
  readonly actions_executed: unknown;
  readonly status: 'success' | 'failed' | 'partial' | 'skipped';
  readonly error_message: string | null;
  readonly execution_time_ms: number;
}

/** Claims ready events inside the caller's transaction; they stay locked until it ends. */
export async function claimEvents(client: pg.ClientBase, limit: number): Promise<CapturedEvent[]> {
  const { rows } = await client.query<EventRow>({
    name: 'rulebook.claim_events',
    text: CLAIM_EVENTS,
    values: [limit],
  });
  return rows.map((row) => ({
    id: row.id,
    entityId: row.entity_id,
    operation: row.operation,
    rowKey: row.row_key,
    oldRow: row.old_row,
    newRow: row.new_row,
    txid: row.txid,
    actorId: row.actor_id,
    depth: row.depth,
    createdAt: row.created_at,
    attempts: row.attempts,
    ruleId: row.rule_id,
  }));
}

export async function completeEvents(
  client: pg.ClientBase,
  eventIds: readonly string[],
  executions: readonly ExecutionRecord[],
): Promise<void> {
  if (executions.length > 0) {
    await client.query({
      name: 'rulebook.insert_executions',
      text: INSERT_EXECUTIONS,
      values: [JSON.stringify(executions)],
    });
  }
  await client.query({ name: 'rulebook.delete_events', text: DELETE_EVENTS, values: [eventIds] });
}

/** Records a failed attempt; returns the event's new state ('pending' to retry later, or 'dead'). */
export async function failEvent(
  client: pg.ClientBase,
  eventId: string,
  error: string,
  maxAttempts: number,
): Promise<'pending' | 'dead'> {
  const { rows } = await client.query<{ state: 'pending' | 'dead' }>({
    name: 'rulebook.fail_event',
    text: FAIL_EVENT,
    values: [eventId, error, maxAttempts],
  });
  return rows[0]?.state ?? 'dead';
}
