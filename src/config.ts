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
  readonly engine: {
    readonly concurrency: number;
    readonly batchSize: number;
    readonly pollIntervalMs: number;
    readonly leaseSeconds: number;
    readonly maxAttempts: number;
    readonly maxChainDepth: number;
  };
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

function parsePositiveInt(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined || value.trim() === '') return fallback;
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1) {
    throw new ConfigError(`${name} must be a whole number of at least 1, got "${value}"`);
  }
  return number;
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
    engine: Object.freeze({
      concurrency: parsePositiveInt('RULEBOOK_CONCURRENCY', env.RULEBOOK_CONCURRENCY, 2),
      batchSize: parsePositiveInt('RULEBOOK_BATCH_SIZE', env.RULEBOOK_BATCH_SIZE, 100),
      pollIntervalMs: parsePositiveInt('RULEBOOK_POLL_INTERVAL_MS', env.RULEBOOK_POLL_INTERVAL_MS, 1000),
      leaseSeconds: parsePositiveInt('RULEBOOK_LEASE_SECONDS', env.RULEBOOK_LEASE_SECONDS, 30),
      maxAttempts: parsePositiveInt('RULEBOOK_MAX_ATTEMPTS', env.RULEBOOK_MAX_ATTEMPTS, 5),
      maxChainDepth: parsePositiveInt('RULEBOOK_MAX_CHAIN_DEPTH', env.RULEBOOK_MAX_CHAIN_DEPTH, 10),
    }),
  });
}
