import pg from 'pg';
import type { Logger } from '../logger.js';
import { errorText } from '../error-text.js';
import { backoffMs } from '../backoff.js';

/**
 * Errors that mean "the server is not there yet", as when docker-compose starts rulebook and
 * PostgreSQL together: worth waiting for. Anything else (a wrong password 28P01, an unknown
 * database 3D000, a TLS misconfiguration) will not fix itself and fails at once.
 */
const NOT_UP_YET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  // cannot_connect_now: the server is starting up, shutting down or in recovery.
  '57P03',
]);

/*
 * pg's own client-side errors carry no code. The official postgres image runs a temporary server
 * during initialisation and then restarts it, which a client sees as its connection being dropped
 * at start-up; a connect that hangs past connectionTimeoutMillis is the same situation.
 */
const NOT_UP_YET_MESSAGES = new Set([
  'Connection terminated unexpectedly',
  'Connection terminated due to connection timeout',
  'timeout expired',
]);

const FIRST_DELAY_MS = 250;
const MAX_DELAY_MS = 5_000;
const CONNECT_TIMEOUT_MS = 5_000;

export interface WaitForDatabaseOptions {
  /** RULEBOOK_DB_WAIT_SECONDS: how long to keep trying; 0 tries once. */
  readonly waitSeconds: number;
  readonly logger: Logger;
  /** Stops waiting (SIGTERM during start-up). */
  readonly signal?: AbortSignal | undefined;
}

export class DatabaseWaitError extends Error {
  override name = 'DatabaseWaitError';
}

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Whether a failed connect means the server is not reachable yet, rather than refusing us. */
export function isNotUpYet(error: unknown): boolean {
  const code = codeOf(error);
  if (code !== undefined) return NOT_UP_YET_CODES.has(code);
  // An AggregateError (one per address tried) carries the codes of its parts.
  const errors = (error as { errors?: unknown } | null)?.errors;
  if (Array.isArray(errors) && errors.length > 0) return errors.every(isNotUpYet);
  return error instanceof Error && NOT_UP_YET_MESSAGES.has(error.message);
}

function reasonOf(error: unknown): string {
  const code = codeOf(error);
  const message = errorText(error);
  return code !== undefined && !message.includes(code)
    ? `${code}: ${message}`
    : message || (code ?? 'unknown');
}

/** host:port/database, without the credentials, for messages. */
function where(databaseUrl: string): string {
  try {
    const url = new URL(databaseUrl);
    return `${url.hostname}:${url.port || '5432'}${url.pathname}`;
  } catch {
    return 'DATABASE_URL';
  }
}

/**
 * Connects to the database once, retrying with exponential backoff (250 ms doubling, at most 5 s
 * apart) while the server is not reachable yet, for at most `waitSeconds`. Each wait is one log
 * line with the reason; giving up throws a DatabaseWaitError whose message is one line.
 */
export async function waitForDatabase(databaseUrl: string, options: WaitForDatabaseOptions): Promise<void> {
  const started = Date.now();
  const deadline = started + options.waitSeconds * 1000;
  const target = where(databaseUrl);
  for (let attempt = 1; ; attempt++) {
    if (options.signal?.aborted) {
      throw new DatabaseWaitError(`stopped while waiting for the database at ${target}`);
    }
    const client = new pg.Client({
      connectionString: databaseUrl,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    });
    // A connection that fails later emits 'error'; without a listener that would crash the process.
    client.on('error', () => {});
    try {
      await client.connect();
      await client.end().catch(() => {});
      if (attempt > 1) {
        options.logger.info({ database: target, attempts: attempt }, 'database reachable');
      }
      return;
    } catch (error) {
      await client.end().catch(() => {});
      if (!isNotUpYet(error)) throw error;
      const now = Date.now();
      if (now >= deadline) {
        throw new DatabaseWaitError(
          `the database at ${target} was not reachable within ${options.waitSeconds} s ` +
            `(RULEBOOK_DB_WAIT_SECONDS; ${attempt} attempts), last error: ${reasonOf(error)}; ` +
            'start PostgreSQL there, or correct the host and port in DATABASE_URL',
          { cause: error },
        );
      }
      const delayMs = Math.min(
        backoffMs(attempt, { firstMs: FIRST_DELAY_MS, maxMs: MAX_DELAY_MS }),
        deadline - now,
      );
      options.logger.warn(
        {
          database: target,
          reason: reasonOf(error),
          attempt,
          retryInMs: delayMs,
          waitedSeconds: Math.round((now - started) / 100) / 10,
          waitSeconds: options.waitSeconds,
        },
        'database not reachable yet; waiting',
      );
      await sleep(delayMs, options.signal);
    }
  }
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
