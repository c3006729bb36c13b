#!/usr/bin/env node
import { loadConfig, ConfigError } from './config.js';
import { openDatabase } from './db/database.js';
import { migrateDatabase } from './db/migrate.js';
import { startDaemon } from './daemon.js';
import { createLogger } from './logger.js';
import pg from 'pg';

const HELP = `rulebook: a Postgres-native rule engine

Usage:
  rulebook start [--no-http]
                            apply pending migrations, then run the engine and the HTTP server
                            (--no-http: the engine alone)
  rulebook migrate          apply pending sql/ migrations to DATABASE_URL
  rulebook events retry <id>    put a failed or dead event back in the queue
  rulebook events retry --dead  put every dead event back in the queue
  rulebook --help           show this help

Environment:
  DATABASE_URL              the database to use; when unset, an embedded PostgreSQL is started
                            with its data in RULEBOOK_DATA_DIR (default .rulebook/)
  RULEBOOK_EMBEDDED_PG_PORT port of the embedded PostgreSQL (default 54329, 127.0.0.1 only)
  PORT                      HTTP port (default 3000)
  LOG_LEVEL                 fatal, error, warn, info, debug, trace or silent (default info)
  RULEBOOK_CONCURRENCY      claim loops per daemon (default 2)
  RULEBOOK_BATCH_SIZE       events handled per transaction (default 100)
  RULEBOOK_POLL_INTERVAL_MS how often to look for events without a NOTIFY (default 1000)
  RULEBOOK_LEASE_SECONDS    how long a stalled claim holds its events (default 30)
  RULEBOOK_MAX_ATTEMPTS     failed attempts before an event is dead (default 5)
  RULEBOOK_MAX_CHAIN_DEPTH  rule executions that may cause each other in a chain (default 10)
`;

export class UsageError extends Error {
  override name = 'UsageError';
}

async function migrateCommand(): Promise<void> {
  const config = loadConfig();
  const database = await openDatabase(config);
  try {
    const applied = await migrateDatabase(database.url);
    console.log(
      applied.length === 0 ? 'rulebook: database is up to date' : `rulebook: applied ${applied.join(', ')}`,
    );
  } finally {
    await database.close();
  }
}

const STOP_TIMEOUT_MS = 20_000;

async function startCommand(args: string[]): Promise<void> {
  const unknown = args.filter((arg) => arg !== '--no-http');
  if (unknown.length > 0) throw new UsageError(`start does not know ${unknown.join(' ')}`);
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  // Listen for signals before starting, so that one arriving during start-up stops cleanly too.
  let stopRequested: (signal: string) => void = () => {};
  const signalled = new Promise<string>((resolve) => (stopRequested = resolve));
  process.once('SIGTERM', () => stopRequested('SIGTERM'));
  process.once('SIGINT', () => stopRequested('SIGINT'));
  const daemon = await startDaemon(config, logger, { http: !args.includes('--no-http') });
  const signal = await signalled;
  logger.info({ signal }, 'stopping');
  setTimeout(() => {
    logger.error('stop took too long; exiting');
    process.exit(1);
  }, STOP_TIMEOUT_MS).unref();
  await daemon.stop();
}

async function eventsCommand(args: string[]): Promise<void> {
  const [action, target, ...extra] = args;
  if (action !== 'retry' || target === undefined || extra.length > 0) {
    throw new UsageError('usage: rulebook events retry <event id> | rulebook events retry --dead');
  }
  if (target !== '--dead' && !/^\d+$/.test(target)) {
    throw new UsageError(`an event id is a whole number, got "${target}"`);
  }
  const config = loadConfig();
  const database = await openDatabase(config);
  const client = new pg.Client({ connectionString: database.url });
  try {
    await client.connect();
    if (target === '--dead') {
      const { rows } = await client.query<{ count: string }>('select workflow.retry_dead_events() as count');
      console.log(`rulebook: ${rows[0]?.count ?? 0} dead events queued again`);
    } else {
      await client.query('select workflow.retry_event($1)', [target]);
      console.log(`rulebook: event ${target} queued again`);
    }
  } finally {
    await client.end();
    await database.close();
  }
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(HELP);
    return;
  }
  switch (command) {
    case 'start':
      return startCommand(rest);
    case 'events':
      return eventsCommand(rest);
    case 'migrate':
      if (rest.length > 0) throw new UsageError(`migrate takes no arguments, got: ${rest.join(' ')}`);
      return migrateCommand();
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof UsageError) {
    console.error(`rulebook: ${error.message}\n\n${HELP}`);
    process.exitCode = 2;
  } else if (error instanceof ConfigError) {
    console.error(`rulebook: configuration error: ${error.message}`);
    process.exitCode = 2;
  } else {
    console.error(`rulebook: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  }
});
