import type pg from 'pg';
import { ActionError } from './types.js';
import { sqlState } from '../sql-state.js';

/** One column as the catalog describes it. */
export interface ColumnInfo {
  readonly name: string;
  /** format_type(atttypid, atttypmod): SQL that names the type, usable in a cast (`$1::numeric(12,2)`). */
  readonly type: string;
  /** pg_type.typcategory: 'N' numeric, 'S' string, 'D' date/time, 'A' array, 'U' user (jsonb, uuid), ... */
  readonly category: string;
  /** format_type of the element type, for array columns. */
  readonly elementType: string | null;
  /** The base type's name for domains, else the type's name: int4, numeric, jsonb, date, ... */
  readonly baseType: string;
  /** Whether the type has an = operator of its own (json, xml and point do not). */
  readonly hasEquality: boolean;
}

/** A table or view, with its columns and primary key, resolved through the catalog. */
export interface RelationInfo {
  readonly oid: string;
  readonly schema: string;
  readonly name: string;
  /** pg_class.relkind: r table, p partitioned table, v view, m materialized view, f foreign table. */
  readonly kind: string;
  readonly columns: ReadonlyMap<string, ColumnInfo>;
  readonly primaryKey: readonly string[];
}

const DESCRIBE = `
select c.oid::int8::text as oid, n.nspname as schema, c.relname as name, c.relkind::text as kind,
       coalesce((
         select jsonb_agg(jsonb_build_object(
                  'name', a.attname,
                  'type', format_type(a.atttypid, a.atttypmod),
                  'category', t.typcategory,
                  'elementType', case when t.typcategory = 'A' and t.typelem <> 0 then format_type(t.typelem, null) end,
                  'baseType', coalesce(bt.typname, t.typname),
                  'hasEquality', exists (select 1 from pg_catalog.pg_operator o
                                          where o.oprname = '=' and o.oprleft = coalesce(bt.oid, t.oid)
                                            and o.oprright = coalesce(bt.oid, t.oid))
                ) order by a.attnum)
           from pg_catalog.pg_attribute a
           join pg_catalog.pg_type t on t.oid = a.atttypid
           left join pg_catalog.pg_type bt on t.typtype = 'd' and bt.oid = t.typbasetype
          where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped), '[]') as columns,
       coalesce((
         select jsonb_agg(a.attname order by k.ord)
           from pg_catalog.pg_index i
          cross join lateral unnest(i.indkey) with ordinality as k (attnum, ord)
           join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
          where i.indrelid = c.oid and i.indisprimary), '[]') as primary_key
  from pg_catalog.pg_class c
  join pg_catalog.pg_namespace n on n.oid = c.relnamespace
 where c.oid = $1::regclass`;

interface DescribeRow {
  oid: string;
  schema: string;
  name: string;
  kind: string;
  columns: ColumnInfo[];
  primary_key: string[];
}

/**
 * Resolves a relation named as in SQL (`sales.orders`, `sales."Order Lines"`, or a bare name found
 * through the search_path). Undefined when there is no such relation or the name is not valid SQL.
 */
export async function describeRelation(
  client: pg.ClientBase,
  sqlName: string,
): Promise<RelationInfo | undefined> {
  // to_regclass returns null for a missing relation; a malformed name is an error on older servers.
  let oid: string | null;
  try {
    const { rows } = await client.query<{ oid: string | null }>(
      'select to_regclass($1)::oid::int8::text as oid',
      [sqlName],
    );
    oid = rows[0]?.oid ?? null;
  } catch (error) {
    // invalid_name, syntax_error (improper qualified name), feature_not_supported (a.b.c.d).
    const code = sqlState(error);
    if (code === '42602' || code === '42601' || code === '0A000') return undefined;
    throw error;
  }
  if (oid === null) return undefined;
  return describeOid(client, oid);
}

async function describeOid(client: pg.ClientBase, oid: string): Promise<RelationInfo | undefined> {
  const { rows } = await client.query<DescribeRow>({
    name: 'rulebook.describe_relation',
    text: DESCRIBE,
    values: [oid],
  });
  const row = rows[0];
  if (!row) return undefined;
  return {
    oid: row.oid,
    schema: row.schema,
    name: row.name,
    kind: row.kind,
    columns: new Map(row.columns.map((column) => [column.name, column])),
    primaryKey: row.primary_key,
  };
}

/** A registered entity (a row of workflow.entities) and the relation it names. */
export interface EntityRelation {
  readonly entityId: string;
  readonly isActive: boolean;
  readonly relation: RelationInfo | undefined;
}

/**
 * Looks up a registered entity by `schema.name` or by its bare name (entity names are unique), and
 * resolves its relation. Undefined when no entity is registered under that name.
 */
export async function findEntity(client: pg.ClientBase, name: string): Promise<EntityRelation | undefined> {
  const dot = name.indexOf('.');
  const schema = dot >= 0 ? name.slice(0, dot) : null;
  const bare = dot >= 0 ? name.slice(dot + 1) : name;
  const { rows } = await client.query<{ id: string; is_active: boolean; oid: string | null }>({
    name: 'rulebook.find_entity',
    text: `select e.id, e.is_active is not false as is_active,
                  workflow.entity_relation(e.schema_name, e.name)::oid::int8::text as oid
             from workflow.entities e
            where e.name = $1 and ($2::text is null or coalesce(e.schema_name, 'public') = $2)`,
    values: [bare, schema],
  });
  const row = rows[0];
  if (!row) return undefined;
  return {
    entityId: row.id,
    isActive: row.is_active,
    relation: row.oid === null ? undefined : await describeOid(client, row.oid),
  };
}

/** The column, or an ActionError naming the action, the config field and the relation. */
export function requireColumn(
  relation: RelationInfo,
  column: unknown,
  what: string,
  actionType: string,
): ColumnInfo {
  if (typeof column !== 'string' || column === '') {
    throw new ActionError(`${actionType}: ${what} must be a column name`);
  }
  const info = relation.columns.get(column);
  if (!info) {
    const known = [...relation.columns.keys()].join(', ');
    throw new ActionError(
      `${actionType}: ${what} "${column}" is not a column of ${relation.schema}.${relation.name} (columns: ${known})`,
    );
  }
  return info;
}

const INTEGER_TYPES = new Set(['int2', 'int4', 'int8']);

export function isIntegerColumn(column: ColumnInfo): boolean {
  return INTEGER_TYPES.has(column.baseType);
}

export function isNumericColumn(column: ColumnInfo): boolean {
  return column.category === 'N';
}

/**
 * A JSON value as the text of a bound parameter: strings as they are, objects and arrays as JSON,
 * null and undefined as SQL null. The statement casts it to the column's type; for json and jsonb
 * columns every value is JSON text, so that the string "x" is stored as the JSON string "x".
 */
export function parameterText(value: unknown, column?: ColumnInfo): string | null {
  if (value === null || value === undefined) return null;
  if (column && (column.baseType === 'json' || column.baseType === 'jsonb')) return JSON.stringify(value);
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint')
    return String(value);
  if (value instanceof Date) return value.toISOString();
  return JSON.stringify(value);
}
