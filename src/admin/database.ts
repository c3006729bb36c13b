import pg from 'pg';

/** What the admin functions run on: a pool (tests, the server) or one client (the CLI). */
export type Queryable = pg.Pool | pg.ClientBase;

/** Runs `work` in one transaction, on a connection of its own when `db` is a pool. */
export async function inTransaction<T>(
  db: Queryable,
  work: (client: pg.ClientBase) => Promise<T>,
): Promise<T> {
  const client = db instanceof pg.Pool ? await db.connect() : db;
  try {
    await client.query('begin');
    try {
      const result = await work(client);
      await client.query('commit');
      return result;
    } catch (error) {
      await client.query('rollback').catch(() => {});
      throw error;
    }
  } finally {
    if (db instanceof pg.Pool) (client as pg.PoolClient).release();
  }
}
