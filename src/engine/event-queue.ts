import type pg from 'pg';
import type { CapturedEvent } from './types.js';

// One statement: reads the head of the queue, locked or not, keeps the first event of each row
// there, locks those that are ready (skipping events other daemons hold), removes them in the
// caller's transaction (so that a rollback puts them back) and reads the rule set version in the
// same snapshot.
//
// The head must come from the primary key in id order, not from a scan of the whole table and a
// sort: the statement is planned for each call (not prepared), so that the plan follows the size of
// the queue, and the state tests are written as CASEs, whose selectivity the planner takes as a half
// rather than from statistics that may say no event is pending (gathered when the queue was empty).
const CLAIM_EVENTS = `
with head as (
  select id, entity_id, row_key
    from workflow.events
   where case when state = 'pending' then true end
   order by id
   limit $1
), claimed as (
  select e.id, e.entity_id, e.operation, e.row_key, e.old_row, e.new_row, e.txid, e.actor_id, e.depth,
         e.created_at, e.attempts, e.rule_id
    from workflow.events e
   where e.id = any (array(select min(id) from head group by entity_id, row_key))
     and case when e.state = 'pending' and (e.run_after is null or e.run_after <= now()) then true end
   order by e.id
     for update of e skip locked
   limit $2
), removed as (
  delete from workflow.events e using claimed where e.id = claimed.id
)
select id, entity_id, operation, row_key, old_row, new_row, txid::text as txid, actor_id, depth, created_at,
       attempts, rule_id, (select version from workflow.rule_set_version)::text as rules_version
  from claimed
 order by id`;

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
  rules_version: string | null;
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

export interface Claim {
  readonly events: CapturedEvent[];
  /** The rule set version in the snapshot that saw the events (undefined when none were claimed). */
  readonly rulesVersion: string | undefined;
}

/**
 * Claims up to `limit` ready events inside the caller's transaction and removes them there: they
 * stay locked until it ends, and are back in the queue if it rolls back. Only the first event of
 * each row in the queue's head can be claimed: a later one waits while an earlier one is still in
 * the table (being handled by another daemon, or waiting for a retry), which keeps each row's events in commit order across any number of daemons. (The events
 * of one row get increasing ids in commit order: a writer must wait for the row lock of the
 * previous writer to commit before its trigger runs.) Deciding this from the head, rather than with
 * an index on the row, keeps the capture trigger's insert down to one index.
 */
export async function claimEvents(client: pg.ClientBase, limit: number, window: number): Promise<Claim> {
  const { rows } = await client.query<EventRow>(CLAIM_EVENTS, [Math.max(window, limit), limit]);
  const events = rows.map((row) => ({
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
  return { events, rulesVersion: rows[0]?.rules_version ?? undefined };
}

/** Records the executions of claimed events, in the transaction that claimed (and removed) them. */
export async function recordExecutions(
  client: pg.ClientBase,
  executions: readonly ExecutionRecord[],
): Promise<void> {
  if (executions.length === 0) return;
  await client.query({
    name: 'rulebook.insert_executions',
    text: INSERT_EXECUTIONS,
    values: [JSON.stringify(executions)],
  });
}

/**
 * Makes a pending event dead at once, for an event no retry can handle (its row nests too deep).
 * Returns false when the event was not pending any more: another daemon got there first.
 */
export async function buryEvent(client: pg.ClientBase, eventId: string, error: string): Promise<boolean> {
  const { rowCount } = await client.query(
    `update workflow.events set attempts = attempts + 1, last_error = $2, state = 'dead'
      where id = $1 and state = 'pending'`,
    [eventId, error],
  );
  return rowCount === 1;
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
