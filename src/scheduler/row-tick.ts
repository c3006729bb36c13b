import pg from 'pg';
import { inTransaction, type Queryable } from '../db/transaction.js';
import type { FieldCondition } from '../conditions/parse.js';
import { parseTimeInterval, shiftInstant } from '../conditions/time-interval.js';

/**
 * One tick of a scheduled rule over rows: the rows of its entity that satisfy its field conditions,
 * evaluated in SQL, are queued as one event each (aimed at the rule, like run_rule's), in keyset
 * batches. Each batch is one short transaction that locks the tick's row in workflow.schedule_runs
 * (FOR UPDATE SKIP LOCKED: a daemon already on it is left to it), queues the batch's events and
 * moves last_key on; so a row is queued once per tick, a batch cut short by a crash is rolled back
 * whole, and whichever daemon comes next goes on from last_key. Rows never sit in memory beyond a
 * batch, and no transaction lasts longer than one batch.
 */

/** What the SQL of a rule's row selection needs to know about its relation. */
export interface RowSource {
  /** Schema-qualified and quoted. */
  readonly relation: string;
  readonly columns: ReadonlyMap<string, ColumnInfo>;
  /**
   * The primary key's columns, in key order: rows are walked in key order, by index. A relation
   * without one (a view) is walked in the order of its rows' text, each row its own key.
   */
  readonly key: readonly string[];
}

interface ColumnInfo {
  /** format_type of the column: what values are cast to. */
  readonly type: string;
  /** format_type of an array column's elements, else null. */
  readonly elementType: string | null;
}

const LOAD_SOURCE = `
select format('%I.%I', n.nspname, c.relname) as relation,
       coalesce((select jsonb_object_agg(a.attname, jsonb_build_object(
                   'type', format_type(a.atttypid, a.atttypmod),
                   'elementType', case when t.typcategory = 'A' then format_type(t.typelem, null) end))
                   from pg_catalog.pg_attribute a join pg_catalog.pg_type t on t.oid = a.atttypid
                  where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped), '{}') as columns,
       coalesce((select array_agg(a.attname::text order by k.ord)
                   from pg_catalog.pg_index i
                  cross join lateral unnest(i.indkey) with ordinality as k (attnum, ord)
                   join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
                  where i.indrelid = c.oid and i.indisprimary), '{}') as key
  from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
 where c.oid = to_regclass(format('%I.%I', $1::text, $2::text))`;

export async function loadRowSource(client: Queryable, schemaName: string, name: string): Promise<RowSource> {
  const { rows } = await client.query<{
    relation: string;
    columns: Record<string, ColumnInfo>;
    key: string[];
  }>(LOAD_SOURCE, [schemaName, name]);
  const row = rows[0];
  if (!row) throw new MissingRelationError(`${schemaName}.${name} does not exist`);
  return { relation: row.relation, columns: new Map(Object.entries(row.columns)), key: row.key };
}

/** The entity's table or view is gone: its ticks cannot be finished by waiting. */
export class MissingRelationError extends Error {
  override name = 'MissingRelationError';
}

export interface RowBatchQuery {
  readonly text: string;
  readonly values: unknown[];
}

const ident = (name: string) => pg.escapeIdentifier(name);

/** The operand text a JSON value is cast from. */
function operandText(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/**
 * The WHERE clause of a rule's conditions at `tick`, with its values as parameters from `$first`.
 * The time-relative operators compare with instants computed from the tick here (time-interval.ts),
 * so that event rules and scheduled rules read an interval alike.
 */
export function conditionsSql(
  source: RowSource,
  conditions: readonly FieldCondition[],
  tick: Date,
  first: number,
): { sql: string; values: unknown[] } {
  const values: unknown[] = [];
  const param = (value: unknown, cast: string) => {
    values.push(value);
    return `$${first + values.length - 1}::${cast}`;
  };
  const clauses = conditions.map((condition) => {
    const column = source.columns.get(condition.field_name);
    if (!column)
      throw new Error(`field_name "${condition.field_name}" is not a column of ${source.relation}`);
    const field = `t.${ident(condition.field_name)}`;
    const typed = (value: unknown) => param(operandText(value), column.type);
    const list = () =>
      `array(select jsonb_array_elements_text(${param(JSON.stringify(condition.value ?? []), 'jsonb')}))::${column.type}[]`;
    switch (condition.operator) {
      case 'equals':
        return condition.value === null ? `${field} is null` : `${field} = ${typed(condition.value)}`;
      case 'not_equals':
        return `${field} is distinct from ${typed(condition.value)}`;
      case 'greater_than':
        return `${field} > ${typed(condition.value)}`;
      case 'less_than':
        return `${field} < ${typed(condition.value)}`;
      case 'greater_or_equal':
        return `${field} >= ${typed(condition.value)}`;
      case 'less_or_equal':
        return `${field} <= ${typed(condition.value)}`;
      case 'in':
        return `${field} = any (${list()})`;
      case 'not_in':
        return `not coalesce(${field} = any (${list()}), false)`;
      case 'contains':
        return column.elementType !== null
          ? `${param(operandText(condition.value), column.elementType)} = any (${field})`
          : `strpos(${field}::text, ${param(operandText(condition.value), 'text')}) > 0`;
      case 'is_null':
        return `${field} is null`;
      case 'is_not_null':
        return `${field} is not null`;
      case 'older_than':
      case 'newer_than':
      case 'within_next': {
        const interval = parseTimeInterval(condition.value);
        if (condition.operator === 'older_than') {
          return `${field} < ${param(shiftInstant(tick, interval, -1), 'timestamptz')}`;
        }
        if (condition.operator === 'newer_than') {
          return `${field} > ${param(shiftInstant(tick, interval, -1), 'timestamptz')}`;
        }
        return `${field} between ${param(tick, 'timestamptz')} and ${param(shiftInstant(tick, interval, 1), 'timestamptz')}`;
      }
      default:
        throw new Error(
          `operator "${condition.operator}" compares old and new values; a scheduled rule looks at rows as they are`,
        );
    }
  });
  return { sql: clauses.length === 0 ? 'true' : clauses.join(' and '), values };
}

/**
 * The next batch of a tick: rows after `lastKey` (null for the first batch) in key order, queued
 * as events aimed at the rule. Returns one row: how many were queued, and the key of the last.
 */
export function batchQuery(
  rule: RowTickRule,
  tick: Date,
  batchSize: number,
  lastKey: unknown,
): RowBatchQuery {
  const { source } = rule;
  const values: unknown[] = [rule.ruleId, tick, rule.entityId, batchSize];
  const byPrimaryKey = source.key.length > 0;
  const keyColumns = byPrimaryKey
    ? source.key.map((column) => `t.${ident(column)}`)
    : ['t::text collate "C"'];
  const keyJson = byPrimaryKey
    ? `jsonb_build_object(${source.key.map((column) => `${pg.escapeLiteral(column)}, t.${ident(column)}`).join(', ')})`
    : 'to_jsonb(t::text)';
  let after = '';
  if (lastKey !== null && lastKey !== undefined) {
    values.push(JSON.stringify(lastKey));
    const at = `$${values.length}::jsonb`;
    const bound = byPrimaryKey
      ? source.key.map(
          (column) => `(${at} ->> ${pg.escapeLiteral(column)})::${source.columns.get(column)!.type}`,
        )
      : [`(${at} #>> '{}') collate "C"`];
    after = ` and (${keyColumns.join(', ')}) > (${bound.join(', ')})`;
  }
  const where = conditionsSql(source, rule.conditions, tick, values.length + 1);
  values.push(...where.values);
  const ordinals = keyColumns.map((_, index) => `b.k${index} desc`);
  const text = `
with batch as (
  select to_jsonb(t) as row, ${keyJson} as key, ${keyColumns.map((column, index) => `${column} as k${index}`).join(', ')}
    from ${source.relation} t
   where (${where.sql})${after}
   order by ${keyColumns.join(', ')}
   limit $4
), queued as (
  insert into workflow.events (entity_id, operation, row_key, new_row, actor_id, rule_id, aggregate_type)
  select $3::uuid, 'scheduled',
         jsonb_build_object('rule_id', $1::uuid,
                            'scheduled_for', to_char($2::timestamptz at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                            'key', b.key),
         b.row, nullif(current_setting('workflow.actor_id', true), ''), $1::uuid,
         -- Once per batch, rather than the outbox trigger's lookup per row (sql/000015).
         (select workflow.outbox_aggregate_type(e.schema_name, e.name) from workflow.entities e where e.id = $3::uuid)
    from batch b
  returning 1
)
select (select count(*) from queued)::int as queued,
       (select b.key from batch b order by ${ordinals.join(', ')} limit 1) as last_key`;
  return { text, values };
}

export interface RowTickRule {
  readonly ruleId: string;
  readonly entityId: string;
  readonly source: RowSource;
  readonly conditions: readonly FieldCondition[];
}

export type BatchOutcome =
  | { readonly state: 'queued'; readonly queued: number; readonly done: boolean }
  | { readonly state: 'busy' | 'finished' | 'gone' };

const LOCK_RUN = `
select r.status, r.last_key, (a.id is not null) as rule_active
  from workflow.schedule_runs r
  left join workflow.automation_rules a on a.id = r.rule_id and a.is_active and a.updated_date <= r.scheduled_for
 where r.rule_id = $1 and r.scheduled_for = $2
   for update of r skip locked`;

/**
 * Queues the next batch of a tick. `beforeCommit` runs inside the batch's transaction, after its
 * events are written: tests use it to kill the connection there, as a crash would.
 */
export async function runBatch(
  client: pg.ClientBase,
  rule: RowTickRule,
  tick: Date,
  batchSize: number,
  beforeCommit?: (client: pg.ClientBase) => Promise<void>,
): Promise<BatchOutcome> {
  return inTransaction(client, async (c) => {
    const { rows } = await c.query<{ status: string; last_key: unknown; rule_active: boolean }>(LOCK_RUN, [
      rule.ruleId,
      tick,
    ]);
    const run = rows[0];
    if (!run) {
      // Locked by a daemon working on it, or pruned.
      const exists = await c.query(
        'select 1 from workflow.schedule_runs where rule_id = $1 and scheduled_for = $2',
        [rule.ruleId, tick],
      );
      return { state: exists.rowCount ? 'busy' : 'gone' };
    }
    if (run.status !== 'selecting') return { state: 'finished' };
    if (!run.rule_active) {
      await c.query(
        `update workflow.schedule_runs set status = 'cancelled', finished_at = now() where rule_id = $1 and scheduled_for = $2`,
        [rule.ruleId, tick],
      );
      return { state: 'gone' };
    }
    // Timestamps without a zone are read as UTC, as the daemon reads them in event rules.
    await c.query(`set local timezone = 'UTC'`);
    const query = batchQuery(rule, tick, batchSize, run.last_key);
    const result = await c.query<{ queued: number; last_key: unknown }>(query.text, query.values);
    const queued = result.rows[0]?.queued ?? 0;
    const done = queued < batchSize;
    await c.query(
      `update workflow.schedule_runs
          set last_key = coalesce($3::jsonb, last_key), rows_queued = coalesce(rows_queued, 0) + $4,
              status = case when $5 then 'done' else 'selecting' end,
              finished_at = case when $5 then now() end
        where rule_id = $1 and scheduled_for = $2`,
      [rule.ruleId, tick, queued > 0 ? JSON.stringify(result.rows[0]!.last_key) : null, queued, done],
    );
    if (queued > 0) await c.query('select workflow.wake_daemons()');
    await beforeCommit?.(c);
    return { state: 'queued', queued, done };
  });
}
