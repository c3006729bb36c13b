import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../src/package-root.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

interface ContractColumn {
  table: string;
  column: string;
  type: string;
  nullable: boolean;
  default: string;
}

/** Reads the column tables of docs/schema-contract.md, the schema document rulebook implements. */
function readContract(): ContractColumn[] {
  const text = fs.readFileSync(path.join(packageRoot(), 'docs/schema-contract.md'), 'utf8');
  const columns: ContractColumn[] = [];
  let table: string | undefined;
  for (const line of text.split('\n')) {
    const heading = /^### workflow\.(\w+)/.exec(line);
    if (heading) table = heading[1];
    const row = /^\| `(\w+)` \| ([^|]+) \| (YES|NO) \| ([^|]+) \|/.exec(line);
    if (table && row) {
      columns.push({
        table,
        column: row[1]!,
        type: row[2]!.trim(),
        nullable: row[3] === 'YES',
        default: row[4]!.trim().replace(/^`|`$/g, ''),
      });
    }
  }
  return columns;
}

function expectedType(documented: string): string {
  const varchar = /^VARCHAR\((\d+)\)$/.exec(documented);
  if (varchar) return `character varying(${varchar[1]})`;
  const types: Record<string, string> = {
    UUID: 'uuid',
    TEXT: 'text',
    BOOLEAN: 'boolean',
    TIMESTAMPTZ: 'timestamp with time zone',
    TIMESTAMP: 'timestamp without time zone',
    JSONB: 'jsonb',
    INT: 'integer',
    INTEGER: 'integer',
  };
  const type = types[documented];
  if (!type) throw new Error(`the contract uses a type this test does not know: ${documented}`);
  return type;
}

function expectedDefault(documented: string, type: string): string | null {
  if (documented === '-') return null;
  if (/^'.*'$/.test(documented)) return `${documented}::${type === 'jsonb' ? 'jsonb' : 'text'}`;
  return documented;
}

describe('the workflow schema', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db.drop();
  });

  const contract = readContract();

  it('reads the whole contract document', () => {
    const tables = new Set(contract.map((column) => column.table));
    expect([...tables].sort()).toEqual(
      [
        'action_templates',
        'alert_acknowledgments',
        'alert_recipients',
        'alerts',
        'allocation_results',
        'automation_executions',
        'automation_rules',
        'entities',
        'entity_types',
        'notification_deliveries',
        'rule_actions',
        'rule_dependencies',
        'trigger_types',
      ].sort(),
    );
  });

  it('matches the contract column for column: names, types, nullability and defaults', async () => {
    const actual = await db.query<{
      table_name: string;
      column_name: string;
      type: string;
      is_nullable: string;
      column_default: string | null;
    }>(
      `select c.table_name, c.column_name, format_type(a.atttypid, a.atttypmod) as type,
              c.is_nullable, c.column_default
         from information_schema.columns c
         join pg_attribute a on a.attrelid = format('%I.%I', c.table_schema, c.table_name)::regclass
                            and a.attname = c.column_name
        where c.table_schema = 'workflow' and c.table_name = any($1)
        order by c.table_name, c.ordinal_position`,
      [[...new Set(contract.map((column) => column.table))]],
    );
    const expected = contract.map((column) => ({
      table_name: column.table,
      column_name: column.column,
      type: expectedType(column.type),
      is_nullable: column.nullable ? 'YES' : 'NO',
      column_default: expectedDefault(column.default, expectedType(column.type)),
    }));
    const key = (row: { table_name: string; column_name: string }) => `${row.table_name}.${row.column_name}`;
    expect(actual.map(key).sort()).toEqual(expected.map(key).sort());
    for (const column of expected) {
      expect(
        actual.find((row) => key(row) === key(column)),
        key(column),
      ).toEqual(column);
    }
  });

  it('has every foreign key the contract lists, cascading where it says so', async () => {
    const text = fs.readFileSync(path.join(packageRoot(), 'docs/schema-contract.md'), 'utf8');
    const section = text.slice(text.indexOf('## Foreign Keys'));
    const listed = [...section.matchAll(/^\| (\w+) \| (\w+) \| ([\w.]+)\((\w+)\)( CASCADE)? \|$/gm)].map(
      (m) => ({
        table: m[1]!,
        column: m[2]!,
        references: m[3]!.includes('.') ? m[3]! : `workflow.${m[3]}`,
        cascade: Boolean(m[5]),
      }),
    );
    expect(listed.length).toBe(17);
    const actual = await db.query<{
      table_name: string;
      column_name: string;
      target: string;
      cascade: boolean;
    }>(
      `select c.conrelid::regclass::text as table_name, a.attname as column_name,
              c.confrelid::regclass::text as target, c.confdeltype = 'c' as cascade
         from pg_constraint c
         join pg_attribute a on a.attrelid = c.conrelid and a.attnum = c.conkey[1]
        where c.contype = 'f' and c.connamespace = 'workflow'::regnamespace`,
    );
    for (const fk of listed) {
      expect(actual, `${fk.table}.${fk.column}`).toContainEqual({
        table_name: `workflow.${fk.table}`,
        column_name: fk.column,
        target: fk.references,
        cascade: fk.cascade,
      });
    }
  });

  it('indexes the real columns the index list means', async () => {
    const indexes = await db.query<{ indexname: string; indexdef: string }>(
      `select indexname, indexdef from pg_indexes where schemaname = 'workflow'`,
    );
    const def = (name: string) => indexes.find((index) => index.indexname === name)?.indexdef;
    expect(def('idx_rule_actions_rule')).toMatch(/\(automation_rules_id\)/);
    expect(def('idx_automation_executions_rule')).toMatch(/\(automation_rules_id\)/);
    expect(def('idx_alert_recipients_recipient')).toMatch(/\(recipient_type, recipient_id\)/);
    expect(def('idx_allocation_idempotency')).toMatch(/UNIQUE INDEX .*\(idempotency_key\)/);
  });

  it('seeds the standard trigger and entity types', async () => {
    const triggers = await db.query<{ name: string }>(
      'select name from workflow.trigger_types order by name',
    );
    expect(triggers.map((row) => row.name)).toEqual(['on_create', 'on_delete', 'on_update', 'scheduled']);
    const types = await db.query<{ name: string }>('select name from workflow.entity_types order by name');
    expect(types.map((row) => row.name)).toEqual(['table', 'view']);
  });

  it('creates core.users, core.roles and core.user_roles', async () => {
    const rows = await db.query<{ table_name: string; column_name: string }>(
      `select table_name, column_name from information_schema.columns
        where table_schema = 'core' and table_name in ('users', 'roles', 'user_roles')
        order by table_name, ordinal_position`,
    );
    expect(rows.map((row) => `${row.table_name}.${row.column_name}`)).toEqual([
      'roles.id',
      'roles.name',
      'user_roles.user_id',
      'user_roles.role_id',
      'users.id',
      'users.email',
      'users.name',
      'users.is_active',
    ]);
  });
});
