import type pg from 'pg';
import type { CapturedEvent } from './types.js';

// The head of the queue, locked or not: which events come first for each row.
const READ_HEAD = `
select id, entity_id::text || ':' || row_key::text as row_identity,
       (run_after is null or run_after <= now()) as ready
  from workflow.events
 where state = 'pending'
 order by id
 limit $1`;

const LOCK_EVENTS = `
select id, entity_id, operation, row_key, old_row, new_row, txid::text as txid, actor_id, depth, created_at,
       attempts, rule_id
  from workflow.events
 where id = any($1::bigint[]) and state = 'pending'
 order by id
   for update skip locked
 limit $2`;

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

/**
 * Claims up to `limit` ready events inside the caller's transaction; they stay locked until it
 * ends. Only the first event of each row in the queue's head can be claimed: a later one waits
 * while an earlier one is still in the table (being handled by another daemon, or waiting for a
 * retry), which keeps each row's events in commit order across any number of daemons. (The events
 * of one row get increasing ids in commit order: a writer must wait for the row lock of the
 * previous writer to commit before its trigger runs.) Deciding this from the head, rather than with
 * an index on the row, keeps the capture trigger's insert down to one index.
 */
export async function claimEvents(
  client: pg.ClientBase,
  limit: number,
  window: number,
): Promise<CapturedEvent[]> {
  const head = await client.query<{ id: string; row_identity: string; ready: boolean }>({
    name: 'rulebook.read_head',
    text: READ_HEAD,
    values: [Math.max(window, limit)],
  });
  const firstOfRow = new Set<string>();
  const eligible: string[] = [];
  for (const event of head.rows) {
    if (firstOfRow.has(event.row_identity)) continue;
    firstOfRow.add(event.row_identity);
    if (event.ready) eligible.push(event.id);
  }
  if (eligible.length === 0) return [];
  const { rows } = await client.query<EventRow>({
    name: 'rulebook.lock_events',
    text: LOCK_EVENTS,
    values: [eligible, limit],
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
