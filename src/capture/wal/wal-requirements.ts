import type pg from 'pg';

export class WalCaptureSetupError extends Error {
  override name = 'WalCaptureSetupError';
}

/**
 * What RULEBOOK_CAPTURE=wal needs of the server and the daemon's role, checked at start so that a
 * missing setting is named with what to set, rather than failing later inside the stream.
 */
export async function checkWalRequirements(client: pg.ClientBase): Promise<void> {
  const { rows } = await client.query<{
    wal_level: string;
    max_slots: number;
    max_senders: number;
    role: string;
    can_replicate: boolean;
  }>(
    `select current_setting('wal_level') as wal_level,
            current_setting('max_replication_slots')::int as max_slots,
            current_setting('max_wal_senders')::int as max_senders,
            current_user as role,
            (select rolreplication or rolsuper from pg_roles where rolname = current_user) as can_replicate`,
  );
  const row = rows[0]!;
  const problems: string[] = [];
  if (row.wal_level !== 'logical') {
    problems.push(
      `the server runs with wal_level=${row.wal_level}; WAL capture needs wal_level=logical ` +
        `(ALTER SYSTEM SET wal_level = logical, then restart PostgreSQL)`,
    );
  }
  if (row.max_slots < 1 || row.max_senders < 1) {
    problems.push(
      `max_replication_slots=${row.max_slots} and max_wal_senders=${row.max_senders}; both must be at least 1 ` +
        `(the defaults are 10)`,
    );
  }
  if (!row.can_replicate) {
    problems.push(
      `role ${row.role} may not replicate; WAL capture needs ALTER ROLE ${quoteIdent(row.role)} REPLICATION ` +
        `(or a superuser), and a pg_hba.conf line that lets it connect (docs/privileges.md)`,
    );
  }
  if (problems.length > 0) {
    throw new WalCaptureSetupError(
      `RULEBOOK_CAPTURE=wal cannot start: ${problems.join('; ')}. Or set RULEBOOK_CAPTURE=triggers (the default).`,
    );
  }
}

function quoteIdent(name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}
