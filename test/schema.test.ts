import fs from 'node:fs';
import path from 'node:path';
import prettier from 'prettier';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../src/package-root.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

/**
 * docs/schema-contract.json is the schema rulebook promises: the tables of the schema document it
 * implements, column for column, and the tables it adds beside them. This file holds the live
 * catalog to it, and docs/schema.md to it (`npm run docs:schema` rewrites that page).
 */

interface ContractColumn {
  readonly name: string;
  /** As format_type() spells it. */
  readonly type: string;
  readonly nullable: boolean;
  /** As pg_get_expr() spells it; null for none. */
  readonly default: string | null;
  readonly description: string;
  /** Every value a CHECK constraint allows, when there is one. */
  readonly values?: readonly string[];
}

interface ContractTable {
  readonly name: string;
  readonly description: string;
  readonly columns: readonly ContractColumn[];
  readonly foreign_keys: readonly {
    column: string;
    references: string;
    on_delete: 'cascade' | 'no action';
  }[];
  readonly indexes?: readonly { name: string; columns: readonly string[]; unique: boolean }[];
  /** Rows every installation has. */
  readonly rows?: readonly { name: string }[];
}

interface Contract {
  readonly tables: readonly ContractTable[];
  readonly rulebook_tables: readonly { name: string; description: string }[];
}

const CONTRACT_FILE = path.join(packageRoot(), 'docs/schema-contract.json');
const SCHEMA_DOC = path.join(packageRoot(), 'docs/schema.md');

function readContract(): Contract {
  return JSON.parse(fs.readFileSync(CONTRACT_FILE, 'utf8')) as Contract;
}

const cell = (text: string) => text.replace(/\|/g, '\\|');

/** docs/schema.md, before prettier formats it. */
function schemaReference(contract: Contract): string {
  const sections = contract.tables.map((table) => {
    const references = new Map(table.foreign_keys.map((fk) => [fk.column, fk]));
    const rows = table.columns.map((column) => {
      const fk = references.get(column.name);
      const target = fk ? `${fk.references}${fk.on_delete === 'cascade' ? ', on delete cascade' : ''}` : '';
      const values = column.values ? `: one of ${column.values.map((v) => `\`${v}\``).join(', ')}` : '';
      return `| \`${column.name}\` | ${column.type} | ${column.nullable ? 'yes' : 'no'} | ${
        column.default === null ? '' : `\`${cell(column.default)}\``
      } | ${cell(target)} | ${cell(column.description)}${values} |`;
    });
    const indexes = (table.indexes ?? []).map(
      (index) => `- \`${index.name}\`${index.unique ? ' (unique)' : ''} on ${index.columns.join(', ')}`,
    );
    return [
      `### ${table.name}`,
      '',
      table.description,
      '',
      '| column | type | null | default | references | meaning |',
      '| --- | --- | --- | --- | --- | --- |',
      ...rows,
      ...(indexes.length ? ['', 'Indexes:', '', ...indexes] : []),
      ...(table.rows
        ? ['', `Rows every installation has: ${table.rows.map((row) => `\`${row.name}\``).join(', ')}.`]
        : []),
    ].join('\n');
  });
  return `# The schema rulebook keeps

<!-- Generated from docs/schema-contract.json by test/schema.test.ts (npm run docs:schema): edit the JSON. -->

These are the tables of the schema document rulebook implements, as the database has them.
[schema-contract.json](schema-contract.json) holds the same facts for programs, and the schema test
compares it with the live catalog, column for column: a migration that changes one of these tables fails
the test until the contract says so. Types and defaults are written as PostgreSQL shows them. Rules are
written into these tables with plain SQL ([rules.md](rules.md)); what rulebook records lands in them too.

${sections.join('\n\n')}

## Tables rulebook adds

rulebook keeps its own state in tables beside these; no contract table gains a column for it. They may
change from one version to the next (each by a migration), so read them through rulebook's commands and
views rather than relying on their columns.

| table | what it holds |
| --- | --- |
${contract.rulebook_tables.map((table) => `| \`${table.name}\` | ${cell(table.description)} |`).join('\n')}
`;
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
  const tableNames = contract.tables.map((table) => table.name);

  it('reads the whole contract document', () => {
    expect([...tableNames].sort()).toEqual(
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
      ]
        .map((name) => `workflow.${name}`)
        .sort(),
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
      `select format('%s.%s', c.table_schema, c.table_name) as table_name, c.column_name,
              format_type(a.atttypid, a.atttypmod) as type, c.is_nullable, c.column_default
         from information_schema.columns c
         join pg_attribute a on a.attrelid = format('%I.%I', c.table_schema, c.table_name)::regclass
                            and a.attname = c.column_name
        where format('%s.%s', c.table_schema, c.table_name) = any($1)
        order by c.table_name, c.ordinal_position`,
      [tableNames],
    );
    const expected = contract.tables.flatMap((table) =>
      table.columns.map((column) => ({
        table_name: table.name,
        column_name: column.name,
        type: column.type,
        is_nullable: column.nullable ? 'YES' : 'NO',
        column_default: column.default,
      })),
    );
    const key = (row: { table_name: string; column_name: string }) => `${row.table_name}.${row.column_name}`;
    expect(actual.map(key).sort()).toEqual(expected.map(key).sort());
    for (const column of expected) {
      expect(
        actual.find((row) => key(row) === key(column)),
        key(column),
      ).toEqual(column);
    }
  });

  it('has exactly the foreign keys the contract lists on its tables, cascading where it says so', async () => {
    const listed = contract.tables.flatMap((table) =>
      table.foreign_keys.map((fk) => ({
        table_name: table.name,
        column_name: fk.column,
        target: fk.references,
        cascade: fk.on_delete === 'cascade',
      })),
    );
    // The 17 of the schema document, and the deactivated_by, acknowledged_by and delivery references
    // its column descriptions name.
    expect(listed.length).toBe(25);
    const actual = await db.query<{
      table_name: string;
      column_name: string;
      target: string;
      cascade: boolean;
    }>(
      `select c.conrelid::regclass::text as table_name, a.attname as column_name,
              format('%s(%s)', c.confrelid::regclass::text, fa.attname) as target,
              c.confdeltype = 'c' as cascade
         from pg_constraint c
         join pg_attribute a on a.attrelid = c.conrelid and a.attnum = c.conkey[1]
         join pg_attribute fa on fa.attrelid = c.confrelid and fa.attnum = c.confkey[1]
        where c.contype = 'f' and c.conrelid::regclass::text = any($1)`,
      [tableNames],
    );
    const key = (fk: { table_name: string; column_name: string }) => `${fk.table_name}.${fk.column_name}`;
    expect(actual.sort((a, b) => key(a).localeCompare(key(b)))).toEqual(
      listed.sort((a, b) => key(a).localeCompare(key(b))),
    );
  });

  it('indexes the real columns the index list means', async () => {
    const indexes = await db.query<{ name: string; columns: string[]; unique: boolean }>(
      `select i.indexrelid::regclass::text as name, i.indisunique as unique,
              array(select a.attname from unnest(i.indkey) with ordinality k (attnum, n)
                      join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
                     order by k.n)::text[] as columns
         from pg_index i
        where i.indrelid::regclass::text = any($1)`,
      [tableNames],
    );
    const listed = contract.tables.flatMap((table) =>
      (table.indexes ?? []).map((index) => ({ ...index, name: `workflow.${index.name}` })),
    );
    expect(listed.length).toBe(13);
    for (const index of listed) expect(indexes, index.name).toContainEqual(index);
  });

  it('allows exactly the values the contract lists where a CHECK constraint limits a column', async () => {
    const checks = await db.query<{ table_name: string; definition: string }>(
      `select conrelid::regclass::text as table_name, pg_get_constraintdef(oid) as definition
         from pg_constraint where contype = 'c' and conrelid::regclass::text = any($1)`,
      [tableNames],
    );
    const limited = contract.tables.flatMap((table) =>
      table.columns.filter((column) => column.values).map((column) => ({ table, column })),
    );
    expect(limited.map(({ table, column }) => `${table.name}.${column.name}`)).toEqual([
      'workflow.automation_executions.status',
      'workflow.notification_deliveries.status',
      'workflow.alerts.severity',
      'workflow.alerts.status',
    ]);
    for (const { table, column } of limited) {
      const check = checks.find(
        (c) =>
          c.table_name === table.name && new RegExp(`^CHECK \\(+\\(?${column.name}\\b`).test(c.definition),
      );
      expect(check, `${table.name}.${column.name}`).toBeDefined();
      const allowed = [...check!.definition.matchAll(/'([^']*)'::/g)].map((m) => m[1]);
      expect(allowed, `${table.name}.${column.name}`).toEqual(column.values);
    }
  });

  it('lists every table and view of core and workflow: the contract and the ones rulebook adds', async () => {
    const names = [
      ...contract.tables.map((table) => table.name),
      ...contract.rulebook_tables.map((table) => table.name),
    ];
    const found = await db.query<{ name: string }>(
      `select format('%s.%s', n.nspname, c.relname) as name
         from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname in ('core', 'workflow') and c.relkind in ('r', 'v', 'p') and not c.relispartition`,
    );
    expect(found.map((row) => row.name).sort()).toEqual([...names].sort());
  });

  it('seeds the standard trigger and entity types', async () => {
    const triggers = await db.query<{ name: string }>(
      'select name from workflow.trigger_types order by name',
    );
    expect(triggers.map((row) => row.name)).toEqual(['on_create', 'on_delete', 'on_update', 'scheduled']);
    const types = await db.query<{ name: string }>('select name from workflow.entity_types order by name');
    expect(types.map((row) => row.name)).toEqual(['table', 'view']);
    for (const table of contract.tables.filter((t) => t.rows)) {
      const rows = await db.query<{ name: string }>(`select name from ${table.name} order by name`);
      expect(rows, table.name).toEqual([...table.rows!].sort((a, b) => a.name.localeCompare(b.name)));
    }
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

  it('is described in docs/schema.md as the contract says (npm run docs:schema rewrites it)', async () => {
    const options = await prettier.resolveConfig(SCHEMA_DOC);
    const generated = await prettier.format(schemaReference(contract), { ...options, filepath: SCHEMA_DOC });
    if (process.env.UPDATE_DOCS) fs.writeFileSync(SCHEMA_DOC, generated);
    expect(fs.readFileSync(SCHEMA_DOC, 'utf8')).toBe(generated);
  });
});
