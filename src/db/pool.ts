import pg from 'pg';
import type { Logger } from '../logger.js';

export interface PoolSettings {
  readonly databaseUrl: string;
  /** Shown in pg_stat_activity, so that an operator can tell rulebook's connections apart. */
  readonly applicationName: string;
  readonly max: number;
  readonly logger: Logger;
  /** Server settings for every connection, as `-c name=value` options. */
  readonly options?: string;
}

/**
 * A pool of one part of the daemon. TCP keepalive notices a server that went away while a
 * connection sat idle; such a failure is logged, where pg would otherwise throw it from the pool.
 */
export function createPool(settings: PoolSettings): pg.Pool {
  const pool = new pg.Pool({
    connectionString: settings.databaseUrl,
    max: settings.max,
    application_name: settings.applicationName,
    keepAlive: true,
    ...(settings.options === undefined ? {} : { options: settings.options }),
  });
  pool.on('error', (error) =>
    settings.logger.warn({ err: error, pool: settings.applicationName }, 'idle database connection failed'),
  );
  return pool;
}
