import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import type { TestDatabase } from './database.js';

/** A login role of the test cluster and a pool connected as it to one test database. */
export interface LoginRole {
  readonly name: string;
  /** The test database's URL with this role's name and password. */
  readonly url: string;
  readonly pool: pg.Pool;
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<R[]>;
}

/**
 * Login roles for attack tests. Roles are cluster-wide and test files run in parallel, so each
 * name carries a random suffix; `dropAll` removes them after the test database is gone.
 */
export class TestRoles {
  readonly #db: TestDatabase;
  readonly #suffix = randomBytes(4).toString('hex');
  readonly #roles: LoginRole[] = [];

  constructor(db: TestDatabase) {
    this.#db = db;
  }

  /** Creates `<base>_<suffix>` with LOGIN and a password, runs `setup` (with %I for its name), connects. */
  async login(base: string, ...setup: string[]): Promise<LoginRole> {
    const name = `${base}_${this.#suffix}`;
    const password = randomBytes(12).toString('hex');
    await this.#db.withClient(async (client) => {
      await client.query(
        `create role ${pg.escapeIdentifier(name)} login password ${pg.escapeLiteral(password)}`,
      );
      for (const statement of setup) {
        await client.query(statement.replaceAll('%I', pg.escapeIdentifier(name)));
      }
    });
    const url = new URL(this.#db.url);
    url.username = name;
    url.password = password;
    const pool = new pg.Pool({ connectionString: url.toString(), max: 3 });
    const role: LoginRole = {
      name,
      url: url.toString(),
      pool,
      async query(text, values) {
        return (await pool.query(text, values)).rows;
      },
    };
    this.#roles.push(role);
    return role;
  }

  /** Ends the pools; call before dropping the database, then `dropRoles`. */
  async endPools(): Promise<void> {
    await Promise.all(this.#roles.map((role) => role.pool.end()));
  }

  /** Drops the roles (their database must be dropped first: that is where their objects were). */
  async dropRoles(): Promise<void> {
    const admin = new pg.Client({ connectionString: inject('pgAdminUrl') });
    await admin.connect();
    try {
      for (const role of this.#roles) {
        await admin.query(`drop role if exists ${pg.escapeIdentifier(role.name)}`);
      }
    } finally {
      await admin.end();
    }
  }
}
