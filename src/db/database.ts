import pg from 'pg';
import type { Config } from '../config.js';
import { startEmbeddedServer } from './embedded-server.js';

export interface Database {
  readonly url: string;
  /** True when rulebook started the server itself. */
  readonly embedded: boolean;
  close(): Promise<void>;
}

const EMBEDDED_DATABASE = 'rulebook';

/**
 * The database rulebook works in: DATABASE_URL when set, otherwise the `rulebook` database of an
 * embedded PostgreSQL whose data persists in the configured data directory.
 */
export async function openDatabase(config: Config, onLog?: (message: string) => void): Promise<Database> {
  if (config.databaseUrl) {
    return { url: config.databaseUrl, embedded: false, close: async () => {} };
  }
  const server = await startEmbeddedServer({ dir: config.dataDir, port: config.embeddedPort, onLog });
  try {
    const admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
    try {
      const { rowCount } = await admin.query('select 1 from pg_database where datname = $1', [
        EMBEDDED_DATABASE,
      ]);
      if (!rowCount) await admin.query(`create database ${EMBEDDED_DATABASE}`);
    } finally {
      await admin.end();
    }
  } catch (error) {
    await server.stop();
    throw error;
  }
  const url = new URL(server.url);
  url.pathname = `/${EMBEDDED_DATABASE}`;
  return { url: url.toString(), embedded: true, close: () => server.stop() };
}
