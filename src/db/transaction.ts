import pg from 'pg';

/** What a unit of work runs on: a pool (a connection of its own is taken) or one client. */
export type Queryable = pg.Pool | pg.ClientBase;

/**
 * Runs `work` in one transaction, on a connection of its own when `db` is a pool: commits, or rolls
 * back and rethrows. A pooled connection that cannot even roll back is destroyed, not reused.
 * `begin` may name an isolation level or read-only mode.
 */
export async function inTransaction<T>(
  db: Queryable,
  work: (client: pg.ClientBase) => Promise<T>,
  begin = 'begin',
): Promise<T> {
  const client = db instanceof pg.Pool ? await db.connect() : db;
  let broken: Error | undefined;
  try {
    await client.query(begin);
    const result = await work(client);
    await client.query('commit');
    return result;
  } catch (error) {
    await client.query('rollback').catch((rollbackError: unknown) => {
      broken = rollbackError as Error;
    });
    throw error;
  } finally {
    if (db instanceof pg.Pool) (client as pg.PoolClient).release(broken);
  }
}
