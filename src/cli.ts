#!/usr/bin/env node
import { loadConfig, ConfigError } from './config.js';
import { openDatabase } from './db/database.js';
import { migrateDatabase } from './db/migrate.js';

const HELP = `rulebook: a Postgres-native rule engine

Usage:
  rulebook migrate          apply pending sql/ migrations to DATABASE_URL
  rulebook --help           show this help

Environment:
  DATABASE_URL              the database to use; when unset, an embedded PostgreSQL is started
                            with its data in RULEBOOK_DATA_DIR (default .rulebook/)
  RULEBOOK_EMBEDDED_PG_PORT port of the embedded PostgreSQL (default 54329, 127.0.0.1 only)
  PORT                      HTTP port (default 3000)
  LOG_LEVEL                 fatal, error, warn, info, debug, trace or silent (default info)
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

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(HELP);
    return;
  }
  switch (command) {
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
