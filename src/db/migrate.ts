import path from 'node:path';
import pg from 'pg';
import { migrate } from 'postgres-migrations';
import { packageRoot } from '../package-root.js';

/** Arbitrary but fixed: serialises concurrent `rulebook migrate` runs on one database. */
const MIGRATE_LOCK = 7_283_104_551;

/** A failed migration's database error as PostgreSQL reported it. */
export interface MigrationError extends Error {
  readonly code?: string;
  readonly hint?: string;
}

/**
 * postgres-migrations rethrows a failed migration's error as text only, losing its SQLSTATE and hint
 * (000010 hints at the grant a DBA must give a non-superuser installer): keep the last one a query
 * of `client` threw, so that the failure can carry them.
 */
function recordQueryErrors(client: pg.Client): () => MigrationError | undefined {
  let last: MigrationError | undefined;
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  client.query = ((...args: unknown[]) => {
    const result = query(...args);
    if (result instanceof Promise) {
      result.catch((error: unknown) => {
        if (error instanceof Error) last = error;
      });
    }
    return result;
  }) as typeof client.query;
  return () => last;
}

/** The migration's failure with the database error's code and hint, the hint on its first line. */
function withDatabaseError(error: unknown, database: MigrationError | undefined): unknown {
  if (!(error instanceof Error) || !database || !error.message.includes(database.message)) return error;
  const hint = database.hint ? ` Hint: ${database.hint}` : '';
  return Object.assign(new Error(`${error.message.split('\n')[0]}${hint}`, { cause: database }), {
    code: database.code,
    hint: database.hint,
  });
}

export function migrationsDir(): string {
  return path.join(packageRoot(), 'sql');
}

/**
 * Applies the pending migrations in sql/ and returns the names of those it applied. Safe to run
 * twice and concurrently: runs are serialised by an advisory lock, and applied files are skipped
 * (and checked against their recorded hash, so an edited migration is an error).
 */
export async function migrateDatabase(databaseUrl: string): Promise<string[]> {
  // postgres-migrations keeps its bookkeeping table in the first schema of the search_path;
  // pointing that at workflow keeps it out of the application's public schema.
  const client = new pg.Client({ connectionString: databaseUrl, options: '-c search_path=workflow' });
  await client.connect();
  const lastQueryError = recordQueryErrors(client);
  try {
    await client.query('select pg_advisory_lock($1)', [MIGRATE_LOCK]);
    try {
      await client.query('create schema if not exists workflow');
      const applied = await migrate({ client }, migrationsDir()).catch((error: unknown) => {
        throw withDatabaseError(error, lastQueryError());
      });
      // Functions and tables added by any migration get the privilege model's grants and lose
      // PUBLIC's EXECUTE (sql/000010_privileges.sql explains why this is not a default privilege).
      // On every run, not only when a migration was applied: it is idempotent, and a run that
      // stopped between a migration's commit and this call is healed by the next one.
      await client.query(
        "select workflow.apply_privileges() where to_regprocedure('workflow.apply_privileges()') is not null",
      );
      return applied.filter((migration) => migration.id > 0).map((migration) => migration.fileName);
    } finally {
      await client.query('select pg_advisory_unlock($1)', [MIGRATE_LOCK]);
    }
  } finally {
    await client.end();
  }
}
