import path from 'node:path';

/** Everything rulebook reads from its environment, validated once at start-up. */
export interface Config {
  /** A user's DATABASE_URL always wins; without one rulebook runs an embedded PostgreSQL. */
  readonly databaseUrl: string | undefined;
  /** Where the embedded PostgreSQL keeps its data. */
  readonly dataDir: string;
  /** The port the embedded PostgreSQL listens on (127.0.0.1 only). */
  readonly embeddedPort: number;
  /** The HTTP server's port. */
  readonly port: number;
  readonly logLevel: string;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

function parsePort(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(`${name} must be a port number from 0 to 65535, got "${value}"`);
  }
  return port;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Readonly<Config> {
  const databaseUrl = env.DATABASE_URL?.trim() || undefined;
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError(
      `DATABASE_URL must be a postgres:// or postgresql:// URL, got "${databaseUrl.replace(/:[^:@/]*@/, ':***@')}"`,
    );
  }
  const logLevel = env.LOG_LEVEL?.trim() || 'info';
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got "${logLevel}"`);
  }
  return Object.freeze({
    databaseUrl,
    dataDir: path.resolve(env.RULEBOOK_DATA_DIR?.trim() || '.rulebook'),
    embeddedPort: parsePort('RULEBOOK_EMBEDDED_PG_PORT', env.RULEBOOK_EMBEDDED_PG_PORT, 54329),
    port: parsePort('PORT', env.PORT, 3000),
    logLevel,
  });
}
