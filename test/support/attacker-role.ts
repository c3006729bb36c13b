import { randomBytes } from 'node:crypto';
import type { TestDatabase } from './database.js';

/**
 * A NOLOGIN role of the test database's cluster with a unique name (roles are cluster-wide), for
 * attacks made as the role that would make them. `grants` is SQL run as superuser with the role's
 * name in place of %I. Returns the role name and a drop function for afterAll.
 */
export async function createTestRole(
  db: TestDatabase,
  prefix: string,
  grants: readonly string[],
): Promise<{ name: string; drop: () => Promise<void> }> {
  const name = `${prefix}_${randomBytes(4).toString('hex')}`;
  await db.query(`create role ${name} nologin`);
  for (const grant of grants) await db.query(grant.replaceAll('%I', name));
  return {
    name,
    async drop() {
      await db.query(`drop owned by ${name}`);
      await db.query(`drop role ${name}`);
    },
  };
}

/** What a DBA who writes rules needs: the workflow and core tables and functions. */
export const RULE_WRITER_GRANTS = [
  'grant usage on schema workflow, core to %I',
  'grant select, insert, update, delete on all tables in schema workflow to %I',
  'grant select on all tables in schema core to %I',
  'grant usage on all sequences in schema workflow to %I',
  'grant execute on all functions in schema workflow to %I',
];

/** Runs `work` as `role` (SET ROLE on one superuser connection), then goes back to the superuser. */
export async function asRole<T>(
  db: TestDatabase,
  role: string,
  work: (query: (text: string, values?: unknown[]) => Promise<Record<string, unknown>[]>) => Promise<T>,
): Promise<T> {
  return db.withClient(async (client) => {
    await client.query(`set role ${role}`);
    try {
      return await work(async (text, values) => (await client.query(text, values)).rows);
    } finally {
      await client.query('reset role');
    }
  });
}
