import type pg from 'pg';
import type { CapturedEvent } from '../model/types.js';
import type { LeftOutRows } from './row-owners.js';

// One statement: reads the head of the ready queue (locked or not), drops the events of rows whose
// earlier event waits for a retry, locks consecutive events of each row there (skipping events
// other daemons hold), keeps of each row only the run that starts at its first event in the head,
// removes those in the caller's transaction (so that a rollback puts them back), and reads the
// rule set version in the same snapshot.
//
// A row belongs to the claim that locks its first event in the head; only then are its later
// events locked (locking them first would hold events that another daemon, owning the row, needs
// next). A row's run is cut at the first of its events this claim did not lock, so a claim never
// takes an event of a row while an earlier one is still held elsewhere: that keeps each row's
// events in commit order across any number of daemons, and a busy row (a stock counter) hands a
// whole run of its events to one transaction instead of one event each. The batch takes the first
// $3 events of every row before the rest, so that a busy row at the head shares the batch with the
// rows behind it, and says how many it took beyond those shares (beyond_share): then the head held
// too few rows, and the loop widens its window to reach the rows behind the busy one. (Rows locked
// but left out of the batch wait for the next claim.)
//
// The head leaves out the rows that other claim loops of the daemon own (RowOwners: a busy row
// whose runs one loop takes): their first events are held or about to be, so none of their events
// could be claimed here, and reading them in every claim cost the other loops three times a base
// claim (3,000 events of one row ahead of 3,000 other rows). Leaving a row out takes nothing of it
// and still reads every other row's events in id order, so no row's order depends on it.
//
// Only a run's first $2 followers are locked (place < $2): a batch takes no more, and locking all
// of a busy row's followers in a wide head cost more than the rest of the claim.
//
// Events waiting for a retry are not in the head (they would fill it and stall every other row);
// workflow.waiting_rows() finds them through the partial index events_waiting, and they hold back
// only the later events of their own row. Dead events hold back nothing, as before.
//
// The row key is jsonb, whose hashing and comparison cost about a microsecond an event: so it is
// hashed once per head event where it can be (grouping into row_runs), the anti join against the
// waiting rows runs only when some row waits, and only the rows with more than one event in the
// head (runs_wanted, usually none or a few busy rows) are joined back to the head for their
// followers, which are then told apart by their row's first event id, a bigint.
//
// The head must come from the primary key in id order, not from a scan of the whole table and a
// sort: the statement is planned for each call (not prepared), so that the plan follows the size of
// the queue, and the state tests are written as CASEs, whose selectivity the planner takes as a half
// rather than from statistics that may say no event is pending (gathered when the queue was empty).
// The outer select returns one row even when nothing is claimed, to report whether the head filled
// the window (then more may lie beyond it). It also sets rulebook.depth (CLAIM_DEPTH).
//
// And it turns sequential scans off for the rest of the transaction, for the plans that the
// statements after it make and keep for the life of the connection: above all those of the foreign
// key checks (alert_recipients -> alerts, delivery payloads -> deliveries, ...), which PostgreSQL
// plans at their first use in a session and then reuses. Made while a table is tiny (emptied and
// vacuumed, as retention or a fresh install leaves it), that plan is a sequential scan, and each
// check then reads the whole table as it grows: measured, 100 alerts written in 7 ms at first and
// in 1.8 s after 40,000 (50,000 matched events: 0.75x graphile-worker at concurrency 10 in the same
// run; with index plans, 2.5x). A batch's statements look up rows by key; none wants a sequential scan of a queue or an
// effects table, and where no index serves a query, PostgreSQL still scans.
/**
 * The depth the claim sets for the rest of its transaction (rulebook.depth, which the capture
 * trigger stamps on the changes that actions make): that of actions run for an application's own
 * changes, the common case, which then costs no statement of its own.
 */
export const CLAIM_DEPTH = 1;

const claimEventsSql = (leaving: 'none' | 'one' | 'several') => `
with ${leaving === 'several' ? LEFT_OUT : ''} head as (
  select e.id, e.entity_id, e.row_key
    from workflow.events e
   where case when e.state = 'pending' and (e.run_after is null or e.run_after <= now()) then true end
     ${{ none: '', one: LEAVE_OUT_ONE, several: LEAVE_OUT }[leaving]}
   order by e.id
   limit $1
), waiting as (
  select entity_id, row_key, id from workflow.waiting_rows()
), ready as (
  select h.id, h.entity_id, h.row_key
    from head h
   where not exists (select 1 from waiting)
  union all
  select h.id, h.entity_id, h.row_key
    from head h
   where exists (select 1 from waiting)
     and not exists (select 1 from waiting w
                      where w.entity_id = h.entity_id and w.row_key = h.row_key and w.id < h.id)
), row_runs as (
  select min(id) as first_id, count(*) as events from ready group by entity_id, row_key
), firsts as (
  select e.id, e.entity_id, e.operation, e.row_key, e.old_row, e.new_row, e.txid, e.actor_id, e.depth,
         e.created_at, e.attempts, e.rule_id
    from workflow.events e
   where e.id = any (array(select first_id from row_runs))
     and case when e.state = 'pending' and (e.run_after is null or e.run_after <= now()) then true end
   order by e.id
     for update of e skip locked
   limit $2
), runs_wanted as materialized (
  select f.id, f.entity_id, f.row_key
    from firsts f
   where f.id = any (array(select first_id from row_runs where events > 1))
), followers as (
  select id, first_id
    from (select r.id, f.id as first_id, row_number() over (partition by f.id order by r.id) as place
            from ready r
            join runs_wanted f on f.entity_id = r.entity_id and f.row_key = r.row_key and r.id > f.id) n
   where place < $2
), runs as (
  select e.id, e.entity_id, e.operation, e.row_key, e.old_row, e.new_row, e.txid, e.actor_id, e.depth,
         e.created_at, e.attempts, e.rule_id
    from workflow.events e
   where e.id = any (array(select id from followers))
     and case when e.state = 'pending' and (e.run_after is null or e.run_after <= now()) then true end
   order by e.id
     for update of e skip locked
   limit $2
), gaps as (
  select fo.id, r.id is not null as locked,
         1 + row_number() over (partition by fo.first_id order by fo.id) as rank,
         min(fo.id) filter (where r.id is null) over (partition by fo.first_id) as gap
    from followers fo
    left join runs r on r.id = fo.id
   where fo.id <= (select max(id) from runs)
), claimed_ids as (
  select id, rank from (select id, 1::bigint as rank from firsts
                        union all
                        select id, rank from gaps where locked and (gap is null or id < gap)) l
   order by rank > $3, id
   limit $2
), claimed as (
  select f.* from firsts f where f.id = any (array(select id from claimed_ids))
  union all
  select r.* from runs r where r.id = any (array(select id from claimed_ids))
), removed as (
  delete from workflow.events e using claimed where e.id = claimed.id
), window_state as (
  select (select count(*) from head)::int as head_size,
         (select count(*) from claimed_ids where rank > $3)::int as beyond_share,
         (select count(*) from head where id <= (select max(id) from claimed_ids))::int as head_used,
         (select version from workflow.rule_set_version)::text as rules_version,
         set_config('rulebook.depth', '${CLAIM_DEPTH}', true) as depth,
         set_config('enable_seqscan', 'off', true) as no_seqscan
)
select c.id, c.entity_id, c.operation, c.row_key, c.old_row, c.new_row, c.txid::text as txid, c.actor_id,
       c.depth, c.created_at, c.attempts, c.rule_id, s.rules_version, s.head_size, s.beyond_share,
       s.head_used
  from window_state s
  left join claimed c on true
 order by c.id`;

// One row left out, the usual case, is a filter of the scan; several, an anti join against the
// rows read once (measured with one row: 0.5 ms less a claim than the anti join).
const LEAVE_OUT_ONE = `and not (e.entity_id = $4::uuid and e.row_key = $5::jsonb)`;
const LEFT_OUT = `left_out as materialized (
  select entity_id, row_key from unnest($4::uuid[], $5::jsonb[]) o (entity_id, row_key)
),`;
const LEAVE_OUT = `and not exists (select 1 from left_out o where o.entity_id = e.entity_id and o.row_key = e.row_key)`;

/** The claim as most claims run it (leaving no row out), leaving out one row, and several. */
const CLAIM_EVENTS = claimEventsSql('none');
const CLAIM_EVENTS_LEAVING_OUT_ONE = claimEventsSql('one');
const CLAIM_EVENTS_LEAVING_OUT = claimEventsSql('several');

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
  id: string | null;
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
  head_size: number;
  beyond_share: number;
  head_used: number;
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
  /** The rule set version in the snapshot that saw the events. */
  readonly rulesVersion: string | undefined;
  /** The head filled the window: ready events lie beyond what this claim looked at. */
  readonly headFull: boolean;
  /**
   * Events the claim took beyond a row's share of the batch (its first quarter): the head held too
   * few rows to fill the batch with, so rows further back may be waiting behind a busy one.
   */
  readonly beyondShare: number;
  /** How much of the head the claim used: its events up to the last one claimed. */
  readonly headUsed: number;
}

/** The events of a row a batch takes before those of any row behind it: a quarter of the batch. */
export function claimShare(limit: number): number {
  return Math.max(1, Math.floor(limit / 4));
}

/**
 * Claims up to `limit` ready events inside the caller's transaction and removes them there: they
 * stay locked until it ends, and are back in the queue if it rolls back. It looks at the first
 * `window` ready events; of each row there it takes a run of consecutive events starting at the
 * row's first, and none while an earlier event of the row is still in the table (handled by
 * another daemon, or waiting for a retry). That keeps each row's events in commit order across any
 * number of daemons. (The events of one row get increasing ids in commit order: a writer must wait
 * for the row lock of the previous writer to commit before its trigger runs.) Deciding this from
 * the head, rather than with an index on the row, keeps the capture trigger's insert down to one
 * index. The head leaves out the `leftOut` rows (owned by other loops of the daemon), and nothing
 * of them is claimed.
 */
export async function claimEvents(
  client: pg.ClientBase,
  limit: number,
  window: number,
  leftOut: LeftOutRows = { entityIds: [], rowKeys: [] },
): Promise<Claim> {
  const perRowFirst = claimShare(limit);
  const values: unknown[] = [Math.max(window, limit), limit, perRowFirst];
  let text = CLAIM_EVENTS;
  if (leftOut.entityIds.length === 1) {
    text = CLAIM_EVENTS_LEAVING_OUT_ONE;
    values.push(leftOut.entityIds[0], leftOut.rowKeys[0]);
  } else if (leftOut.entityIds.length > 1) {
    text = CLAIM_EVENTS_LEAVING_OUT;
    values.push(leftOut.entityIds, leftOut.rowKeys);
  }
  const { rows } = await client.query<EventRow>(text, values);
  const events: CapturedEvent[] = [];
  for (const row of rows) {
    if (row.id === null) continue;
    events.push({
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
    });
  }
  return {
    events,
    rulesVersion: rows[0]?.rules_version ?? undefined,
    headFull: (rows[0]?.head_size ?? 0) >= Math.max(window, limit),
    beyondShare: rows[0]?.beyond_share ?? 0,
    headUsed: rows[0]?.head_used ?? 0,
  };
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
