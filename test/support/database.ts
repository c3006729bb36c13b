import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { recordDatabaseLeak, trackDatabase, untrackDatabase, type DatabaseLeak } from './leaks.js';
import { databaseUrl } from './urls.js';

export interface TestDatabase {
  readonly name: string;
  readonly url: string;
  readonly pool: pg.Pool;
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<R[]>;
  /** Runs `work` on one connection, so that session settings and transactions hold across queries. */
  withClient<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T>;
  drop(): Promise<void>;
}

async function withAdmin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const admin = new pg.Client({ connectionString: inject('pgAdminUrl') });
  await admin.connect();
  try {
    return await work(admin);
  } finally {
    await admin.end();
  }
}

/**
 * Connections to `database` other than the asking one, described for a leak report; null when there are
 * none within `graceMs` (a closed client's server process takes a moment to go away).
 */
async function connectionsTo(database: string, graceMs: number): Promise<DatabaseLeak | null> {
  return withAdmin(async (admin) => {
    const deadline = Date.now() + graceMs;
    for (;;) {
      const { rows } = await admin.query<{ connection: string }>(
        `select format('pid %s, application %L, state %s, last query %L', pid, application_name, state, left(query, 80))
                as connection
           from pg_stat_activity
          where datname = $1 and pid <> pg_backend_pid()`,
        [database],
      );
      if (rows.length === 0) return null;
      if (Date.now() > deadline) return { database, connections: rows.map((row) => row.connection) };
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  });
}

/** A fresh database, copied from the migrated template. */
export async function createTestDatabase(options: { migrated?: boolean } = {}): Promise<TestDatabase> {
  const name = `test_${randomBytes(6).toString('hex')}`;
  const template = options.migrated === false ? 'template0' : inject('templateDatabase');
  await withAdmin((admin) => admin.query(`create database ${name} template ${template}`));
  const url = databaseUrl(inject('pgAdminUrl'), name);
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  trackDatabase(name, () => connectionsTo(name, 0));
  return {
    name,
    url,
    pool,
    async query(text, values) {
      return (await pool.query(text, values)).rows;
    },
    async withClient(work) {
      const client = await pool.connect();
      try {
        return await work(client);
      } finally {
        client.release();
      }
    },
    async drop() {
      await pool.end();
      untrackDatabase(name);
      // Whatever else still talks to the database was left running by the test: report it, then cut it.
      const leak = await connectionsTo(name, 2_000);
      if (leak) recordDatabaseLeak(leak);
      await withAdmin((admin) => admin.query(`drop database if exists ${name} with (force)`));
    },
  };
}
