import path from 'node:path';
import pg from 'pg';
import { loadMigrationFiles, migrate } from 'postgres-migrations';
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

/** A failure that names the role, what it lacks and who may do it instead, with SQLSTATE 42501. */
function insufficientPrivilege(message: string): MigrationError {
  return Object.assign(new Error(message), { code: '42501' });
}

interface WorkflowSchema {
  readonly role: string;
  readonly database: string;
  readonly owner: string | null;
  readonly mayCreateIn: boolean;
  readonly mayUse: boolean;
  readonly mayCreateSchema: boolean;
}

/**
 * Whether this role installs rulebook (creates or alters \`workflow\`) or only uses it. The daemon's
 * own login role, a member of rulebook_daemon (docs/privileges.md), may create nothing in the
 * database, and \`create schema if not exists\` checks CREATE on the database before it looks for the
 * schema: such a role skips migrating when nothing is pending, and is told who must migrate
 * otherwise, instead of failing with "permission denied for database".
 */
async function mayInstall(client: pg.Client): Promise<boolean> {
  const { rows } = await client.query<WorkflowSchema>(
    `select current_user as role, current_database() as database,
            (select pg_get_userbyid(nspowner) from pg_namespace where oid = workflow) as owner,
            coalesce(has_schema_privilege(workflow, 'create'), false) as "mayCreateIn",
            coalesce(has_schema_privilege(workflow, 'usage'), false) as "mayUse",
            has_database_privilege(current_database(), 'create') as "mayCreateSchema"
       from (select to_regnamespace('workflow')::oid as workflow) as schema`,
  );
  const schema = rows[0]!;
  if (schema.owner === null) {
    if (!schema.mayCreateSchema) {
      throw insufficientPrivilege(
        `${schema.role} may not create the schema workflow in database ${schema.database}: run \`rulebook migrate\` as the database's owner or another role with CREATE on it (docs/privileges.md)`,
      );
    }
    await client.query('create schema workflow');
    return true;
  }
  if (schema.mayCreateIn) return true;
  if (!schema.mayUse) {
    throw insufficientPrivilege(
      `${schema.role} may not use the schema workflow in database ${schema.database}: make it a member of rulebook_daemon (to run \`rulebook start\`) or rulebook_admin (for the other commands), or migrate as ${schema.owner}, its owner (docs/privileges.md)`,
    );
  }
  const pending = await pendingMigrations(client);
  if (pending.length === 0) return false;
  throw insufficientPrivilege(
    `${schema.role} may not change the schema workflow, and ${pending.length === 1 ? 'a migration is' : `${pending.length} migrations are`} pending (${pending.join(', ')}): run \`rulebook migrate\` as ${schema.owner}, the owner of workflow, then start again (docs/privileges.md)`,
  );
}

/** The files in sql/ that workflow.migrations (postgres-migrations' record) does not list. */
async function pendingMigrations(client: pg.Client): Promise<string[]> {
  const files = await loadMigrationFiles(migrationsDir());
  const { rows: tables } = await client.query<{ exists: boolean }>(
    `select to_regclass('workflow.migrations') is not null as exists`,
  );
  const { rows } = tables[0]!.exists
    ? await client.query<{ id: number }>('select id from workflow.migrations')
    : { rows: [] };
  const applied = new Set(rows.map((row) => row.id));
  return files.filter((file) => file.id > 0 && !applied.has(file.id)).map((file) => file.fileName);
}

export function migrationsDir(): string {
  return path.join(packageRoot(), 'sql');
}

export interface MigrateOptions {
  /**
   * Gets rulebook's NOTICEs and WARNINGs from the migrations (their text starts with "rulebook: "):
   * what a non-superuser install could not do and what to do about it (no event triggers, no
   * publication for Debezium, a table whose capture is switched off).
   */
  readonly onNotice?: (message: string) => void;
}

/**
 * Applies the pending migrations in sql/ and returns the names of those it applied. Safe to run
 * twice and concurrently: runs are serialised by an advisory lock, and applied files are skipped
 * (and checked against their recorded hash, so an edited migration is an error).
 */
export async function migrateDatabase(databaseUrl: string, options: MigrateOptions = {}): Promise<string[]> {
  // postgres-migrations keeps its bookkeeping table in the first schema of the search_path;
  // pointing that at workflow keeps it out of the application's public schema.
  const client = new pg.Client({ connectionString: databaseUrl, options: '-c search_path=workflow' });
  const { onNotice } = options;
  // Only rulebook's own messages: PostgreSQL's "already exists, skipping" says nothing to act on.
  if (onNotice) {
    client.on('notice', (notice) => {
      if (notice.message?.startsWith('rulebook: ')) onNotice(notice.message);
    });
  }
  await client.connect();
  const lastQueryError = recordQueryErrors(client);
  try {
    await client.query('select pg_advisory_lock($1)', [MIGRATE_LOCK]);
    try {
      if (!(await mayInstall(client))) return [];
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
