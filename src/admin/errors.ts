import { sqlState } from '../sql-state.js';

/** A problem an operator can fix: a missing user or role, a duplicate, an unmigrated database. */
export class AdminError extends Error {
  override name = 'AdminError';
}

/** Postgres SQLSTATE codes the admin commands turn into plain messages. */
const UNDEFINED_TABLE = '42P01';
const UNIQUE_VIOLATION = '23505';

/** Rethrows database errors that mean "run the migrations" or "already there" as AdminErrors. */
export function explainDatabaseError(error: unknown, duplicate?: string): never {
  const code = sqlState(error);
  if (code === UNDEFINED_TABLE) {
    throw new AdminError(
      `the database is missing rulebook's tables (${(error as Error).message}); run \`rulebook migrate\` first`,
      { cause: error },
    );
  }
  if (code === UNIQUE_VIOLATION && duplicate !== undefined) throw new AdminError(duplicate, { cause: error });
  throw error;
}
