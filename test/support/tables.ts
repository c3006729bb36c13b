import pg from 'pg';
import type { TestDatabase } from './database.js';
import { registerEntity } from './rules.js';

/**
 * The application side of a test: its table (and the table's schema, when missing), as the
 * application's own migration would create them. `columns` is the body of `create table`.
 */
export async function createTable(db: TestDatabase, table: string, columns: string): Promise<void> {
  const [schema, name] = table.split('.');
  if (!schema || !name) throw new Error(`createTable: "${table}" is not schema.table`);
  const qualified = `${pg.escapeIdentifier(schema)}.${pg.escapeIdentifier(name)}`;
  await db.query(`create schema if not exists ${pg.escapeIdentifier(schema)}`);
  await db.query(`create table ${qualified} (${columns})`);
}

/** createTable, then registered with rulebook as a DBA would; returns the entity id. */
export async function createRegisteredTable(
  db: TestDatabase,
  table: string,
  columns: string,
): Promise<string> {
  await createTable(db, table, columns);
  return registerEntity(db, table);
}

/** A person in core.users, as the application's sign-up would add them; returns the id. */
export async function createUser(db: TestDatabase, email: string, name: string): Promise<string> {
  const [row] = await db.query<{ id: string }>(
    `insert into core.users (email, name) values ($1, $2) returning id`,
    [email, name],
  );
  return row!.id;
}
