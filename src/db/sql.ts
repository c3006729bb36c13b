import databasesSql, { type FormatConfig, type SQLQuery } from '@databases/sql';
import pg from 'pg';

// A CommonJS module: under NodeNext its default import is the whole module, which also sets .default.
export const sql = databasesSql.default;
export type { SQLQuery };

/** PostgreSQL's dialect for @databases/sql: quoted identifiers, `$n` placeholders. */
const POSTGRES: FormatConfig = {
  escapeIdentifier: (name) => pg.escapeIdentifier(name),
  formatValue: (value, index) => ({ placeholder: `$${index + 1}`, value }),
};

/**
 * A statement composed with `sql` as text and values for pg's `query`. Identifiers (`sql.ident`)
 * are quoted and values (`${value}` or `sql.value`) become parameters, so neither can reach the text.
 * `name` makes it a named prepared statement, for statements whose text is the same each time.
 */
export function compile(query: SQLQuery, name?: string): pg.QueryConfig {
  const { text, values } = query.format(POSTGRES);
  return name === undefined ? { text, values } : { name, text, values };
}

/** A type name as format_type() gives it, read from the catalog (never from a rule's config). */
export function catalogType(type: string): SQLQuery {
  return sql.__dangerous__rawValue(type);
}
