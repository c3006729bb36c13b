import type pg from 'pg';

/**
 * Capture takes the chain depth (rulebook.depth) only from the writes of rulebook_daemon's
 * members (sql/000010_privileges.sql). A daemon whose login role is not one would see every
 * change it causes as an application's own write, so a self-updating rule would never hit the
 * chain limit: refuse to start instead.
 */
export async function assertDaemonRole(pool: pg.Pool): Promise<void> {
  const { rows } = await pool.query<{ login: string; member: boolean }>(
    `select session_user as login, pg_has_role(session_user, oid, 'member') as member
       from pg_roles where rolname = 'rulebook_daemon'`,
  );
  const row = rows[0];
  // No such role: the database predates the privilege model, whose migration is still to run.
  if (row && !row.member) {
    throw new Error(
      `the daemon's database role "${row.login}" is not a member of rulebook_daemon, so the changes its ` +
        `rules make would not count towards RULEBOOK_MAX_CHAIN_DEPTH: run "grant rulebook_daemon to ` +
        `${row.login}" (see docs/privileges.md)`,
    );
  }
}
