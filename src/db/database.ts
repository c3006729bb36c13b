import pg from 'pg';
import { sqlState } from '../sql-state.js';
import { startEmbeddedServer, type EmbeddedServer } from './embedded-server.js';

export interface Database {
  readonly url: string;
  /** True when the database is rulebook's embedded PostgreSQL (started here or by another rulebook process). */
  readonly embedded: boolean;
  /** The embedded server, when `embedded`. */
  readonly server?: Pick<EmbeddedServer, 'clusterDir' | 'logFile' | 'started'>;
  close(): Promise<void>;
}

const EMBEDDED_DATABASE = 'rulebook';

/** The part of the configuration that says where the database is (the configuration is one). */
export interface DatabaseLocation {
  readonly databaseUrl: string | undefined;
  readonly dataDir: string;
  readonly embeddedPort: number;
  readonly embeddedSystemDir: string;
  /** WAL capture needs the embedded server to run with wal_level=logical. */
  readonly capture?: { readonly mode: string };
}

/**
 * The database rulebook works in: DATABASE_URL when set, otherwise the `rulebook` database of the
 * embedded PostgreSQL of the configured data directory, which is used when a rulebook process runs
 * it already and started otherwise.
 */
export async function openDatabase(
  config: DatabaseLocation,
  onLog?: (message: string) => void,
): Promise<Database> {
  if (config.databaseUrl) {
    return { url: config.databaseUrl, embedded: false, close: async () => {} };
  }
  const server = await startEmbeddedServer({
    dir: config.dataDir,
    port: config.embeddedPort,
    systemDir: config.embeddedSystemDir,
    // WAL capture reads a logical replication slot, which needs wal_level=logical.
    settings: config.capture?.mode === 'wal' ? { wal_level: 'logical' } : undefined,
    onLog,
  });
  try {
    const admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
    try {
      const { rowCount } = await admin.query('select 1 from pg_database where datname = $1', [
        EMBEDDED_DATABASE,
      ]);
      // Two commands may both find it missing; the loser's duplicate_database (42P04) is no failure.
      if (!rowCount) {
        await admin.query(`create database ${EMBEDDED_DATABASE}`).catch((error: unknown) => {
          if (sqlState(error) !== '42P04') throw error;
        });
      }
    } finally {
      await admin.end();
    }
  } catch (error) {
    await server.stop();
    throw error;
  }
  const url = new URL(server.url);
  url.pathname = `/${EMBEDDED_DATABASE}`;
  return { url: url.toString(), embedded: true, server, close: () => server.stop() };
}

/** A database URL fit for a log line: the password replaced by ***. */
export function maskedUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return url.replace(/:[^:@/]*@/, ':***@');
  }
}
