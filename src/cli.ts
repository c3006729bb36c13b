#!/usr/bin/env node
import {
  DEFAULT_EXPIRY,
  createToken,
  formatDate,
  isTokenReference,
  listTokens,
  parseDuration,
  revokeToken,
  tokenTable,
} from './admin/tokens.js';
import { addRole, addUser } from './admin/users.js';
import { loadConfig, ConfigError } from './config.js';
import { openDatabase } from './db/database.js';
import { describeError } from './describe-error.js';
import { runPsql } from './psql.js';
import { parsePsqlCommands, runPsqlCommands } from './psql-fallback.js';
import { migrateDatabase } from './db/migrate.js';
import { startDaemon } from './daemon.js';
import { runDemo } from './demo/demo-command.js';
import { createLogger } from './logger.js';
import pg from 'pg';

const HELP = `rulebook: a Postgres-native rule engine

Usage:
  rulebook start [--no-http]
                            apply pending migrations, then run the engine, the scheduler of
                            scheduled rules, the delivery worker, the maintenance job and the HTTP
                            server (--no-http: all but the HTTP server)
  rulebook migrate          apply pending sql/ migrations to DATABASE_URL
  rulebook events retry <id>    put a failed or dead event back in the queue
  rulebook events retry --dead  put every dead event back in the queue
  rulebook role add <name>  add a role (core.roles)
  rulebook user add --email <address> --name <name> [--role <role>]...
                            add a person (core.users) and their role memberships; each role must
                            exist already
  rulebook token create --user <email> [--name <label>] [--expires <30d|12h|2w|never>]
                            issue an API token for the staff page and API (default expiry ${DEFAULT_EXPIRY});
                            the token is printed once, as the last line, and only its hash is kept
  rulebook token list [--user <email>]
                            tokens with their state (active, expired, revoked); never the secrets
  rulebook token revoke <token id | token>
                            revoke a token at once
  rulebook db url           print the database URL, with its password, for any PostgreSQL client
  rulebook psql [args]      run psql on the database (args go to psql, e.g. -c 'select 1'); without
                            the PostgreSQL client installed, -c statements (with -t, -A, -q) still
                            run through rulebook's own client; interactive psql needs the client
                            (Debian/Ubuntu: apt-get install postgresql-client)
  rulebook demo [--drop | --sql]
                            load a small shop (demo_sales, demo_inventory), five example rules and a
                            staff user with a token, and print what to try; --drop removes it all,
                            --sql prints the demo's SQL
  rulebook --help           show this help

  Every command uses the embedded PostgreSQL that \`rulebook start\` runs, when it runs; otherwise
  it starts it for the command's duration.

Embedded PostgreSQL (when DATABASE_URL is unset):
  database rulebook, user rulebook, on 127.0.0.1; the password is generated once per data directory
  and kept in RULEBOOK_DATA_DIR/password (mode 0600). RULEBOOK_DATA_DIR also holds the server's
  log (postgres.log) and its cluster (pgdata/). As root, the server runs as the "postgres" account;
  where that account cannot enter RULEBOOK_DATA_DIR (a clone under /root), the cluster lives in
  RULEBOOK_SYSTEM_DIR/clusters/ and RULEBOOK_DATA_DIR/cluster-location says where.

Environment:
  DATABASE_URL              the database to use; when unset, the embedded PostgreSQL (above)
  RULEBOOK_DATA_DIR         data directory of the embedded PostgreSQL (default .rulebook/)
  RULEBOOK_SYSTEM_DIR       as root, where the embedded PostgreSQL's binaries and clusters go that
                            the "postgres" account cannot reach elsewhere (default /var/lib/rulebook)
  RULEBOOK_DB_WAIT_SECONDS  how long start waits for DATABASE_URL's server to accept connections
                            (default 60; 0 tries once)
  RULEBOOK_EMBEDDED_PG_PORT port of the embedded PostgreSQL when rulebook starts it (default 54329,
                            127.0.0.1 only); a running one is found on its own port
  PORT                      HTTP port (default 3000)
  RULEBOOK_SSE_MAX_STREAMS  open alert event streams per server; more get 503 (default 1000)
  RULEBOOK_SSE_MAX_STREAMS_PER_USER
                            open alert event streams per person; more get 429 (default 20)
  LOG_LEVEL                 fatal, error, warn, info, debug, trace or silent (default info)
  RULEBOOK_CONCURRENCY      claim loops per daemon (default 2)
  RULEBOOK_BATCH_SIZE       events handled per transaction (default 100)
  RULEBOOK_POLL_INTERVAL_MS how often to look for events without a NOTIFY (default 1000)
  RULEBOOK_LEASE_SECONDS    how long a stalled claim holds its events (default 30)
  RULEBOOK_MAX_ATTEMPTS     failed attempts before an event is dead (default 5)
  RULEBOOK_MAX_CHAIN_DEPTH  rule executions that may cause each other in a chain (default 10)
  RULEBOOK_HEALTH_MAX_PENDING_AGE_SECONDS
                            /healthz answers 503 when the oldest pending event is older (default 300)
  SMTP_URL                  smtp:// or smtps:// server for e-mail deliveries (unset: e-mail fails)
  SMTP_FROM                 sender address of e-mail (default rulebook@localhost)
  SMS_PROVIDER_URL          http(s) endpoint that receives sms deliveries (unset: sms fails)
  PUSH_PROVIDER_URL         http(s) endpoint that receives push deliveries (unset: push fails)
  WEBHOOK_SECRET            default HMAC-SHA256 secret for webhooks and provider requests
  RULEBOOK_WEBHOOK_ALLOW    non-public webhook destinations allowed anyway: comma-separated hosts,
                            host:port or CIDR blocks (default none: webhooks reach public addresses only)
  DELIVERY_MAX_ATTEMPTS     attempts before a delivery is failed (default 5)
  DELIVERY_POLL_INTERVAL_MS how often the delivery worker looks for due deliveries (default 1000)
  MAINTENANCE_INTERVAL_MS   how often alerts expire and reservations lapse (default 60000)
`;

export class UsageError extends Error {
  override name = 'UsageError';
}

/** A failure with its own exit code, such as psql's. */
class ExitError extends Error {
  override name = 'ExitError';

  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

async function dbCommand(args: string[]): Promise<void> {
  if (args[0] !== 'url' || args.length > 1) throw new UsageError('usage: rulebook db url');
  const config = loadConfig();
  if (config.databaseUrl) {
    console.log(config.databaseUrl);
    return;
  }
  const database = await openDatabase(config);
  try {
    console.log(database.url);
    if (database.server?.started) {
      console.error(
        'rulebook: the embedded PostgreSQL runs only while a rulebook command does, e.g. `rulebook start`',
      );
    }
  } finally {
    await database.close();
  }
}

async function psqlCommand(args: string[]): Promise<void> {
  const database = await openDatabase(loadConfig());
  try {
    const result = await runPsql(database.url, args);
    if (result === 'not installed') {
      const commands = parsePsqlCommands(args);
      if (commands) {
        process.exitCode = await runPsqlCommands(database.url, commands, process.stdout, process.stderr);
        return;
      }
      throw new ExitError(
        'psql is not installed, and only -c statements run without it: install the PostgreSQL client (Debian/Ubuntu: apt-get install postgresql-client; ' +
          'macOS: brew install libpq), or connect any PostgreSQL client to the URL that `rulebook db url` prints',
        127,
      );
    }
    process.exitCode = result;
  } finally {
    await database.close();
  }
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
  // A signal while start-up waits for the database ends the wait.
  const startUp = new AbortController();
  const onSignal = (name: string) => {
    startUp.abort();
    stopRequested(name);
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
  const daemon = await startDaemon(config, logger, {
    http: !args.includes('--no-http'),
    signal: startUp.signal,
  });
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
  await withDatabase(async (client) => {
    if (target === '--dead') {
      const { rows } = await client.query<{ count: string }>('select workflow.retry_dead_events() as count');
      console.log(`rulebook: ${rows[0]?.count ?? 0} dead events queued again`);
    } else {
      await client.query('select workflow.retry_event($1)', [target]);
      console.log(`rulebook: event ${target} queued again`);
    }
  });
}

/** `--name value` or `--name=value` options and positional arguments; every option takes a value. */
function parseArgs(
  command: string,
  args: string[],
  known: readonly string[],
  repeatable: readonly string[] = [],
): { options: Map<string, string[]>; positional: string[] } {
  const options = new Map<string, string[]>();
  const positional: string[] = [];
  for (let index = 0; index < args.length; index++) {
    const arg = args[index]!;
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const equals = arg.indexOf('=');
    const name = equals < 0 ? arg : arg.slice(0, equals);
    if (!known.includes(name)) throw new UsageError(`${command} does not know ${name}`);
    const value = equals < 0 ? args[++index] : arg.slice(equals + 1);
    if (value === undefined || value === '' || (equals < 0 && value.startsWith('--'))) {
      throw new UsageError(`${command}: ${name} needs a value`);
    }
    const values = options.get(name) ?? [];
    if (values.length > 0 && !repeatable.includes(name))
      throw new UsageError(`${command}: ${name} is given twice`);
    options.set(name, [...values, value]);
  }
  return { options, positional };
}

/** Runs `work` on a connection to the configured database. */
async function withDatabase<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const database = await openDatabase(loadConfig());
  const client = new pg.Client({ connectionString: database.url });
  try {
    await client.connect();
    return await work(client);
  } finally {
    await client.end().catch(() => {});
    await database.close();
  }
}

async function roleCommand(args: string[]): Promise<void> {
  const [action, name, ...extra] = args;
  if (action !== 'add' || name === undefined || name.startsWith('--') || extra.length > 0) {
    throw new UsageError('usage: rulebook role add <name>');
  }
  const role = await withDatabase((client) => addRole(client, name));
  console.log(`rulebook: added role "${role.name}" (${role.id})`);
}

async function userCommand(args: string[]): Promise<void> {
  const [action, ...rest] = args;
  const usage = 'usage: rulebook user add --email <address> --name <name> [--role <role>]...';
  if (action !== 'add') throw new UsageError(usage);
  const { options, positional } = parseArgs('user add', rest, ['--email', '--name', '--role'], ['--role']);
  const email = options.get('--email')?.[0];
  const name = options.get('--name')?.[0];
  if (positional.length > 0) throw new UsageError(`user add does not take ${positional.join(' ')}; ${usage}`);
  if (email === undefined || name === undefined)
    throw new UsageError(`user add needs --email and --name; ${usage}`);
  const user = await withDatabase((client) =>
    addUser(client, { email, name, roles: options.get('--role') ?? [] }),
  );
  const roles =
    user.roles.length > 0
      ? ` with ${user.roles.length === 1 ? 'role' : 'roles'} ${user.roles.join(', ')}`
      : '';
  console.log(`rulebook: added user ${user.email} (${user.id})${roles}`);
}

async function tokenCommand(args: string[]): Promise<void> {
  const [action, ...rest] = args;
  switch (action) {
    case 'create': {
      const { options, positional } = parseArgs('token create', rest, ['--user', '--name', '--expires']);
      const email = options.get('--user')?.[0];
      if (email === undefined || positional.length > 0) {
        throw new UsageError(
          'usage: rulebook token create --user <email> [--name <label>] [--expires <30d|never>]',
        );
      }
      const expires = options.get('--expires')?.[0] ?? DEFAULT_EXPIRY;
      const expiresInMs = parseDuration(expires);
      if (expiresInMs === undefined) {
        throw new UsageError(
          `--expires takes a number and a unit (m, h, d or w), such as 30d or 12h, or "never"; got "${expires}"`,
        );
      }
      const name = options.get('--name')?.[0];
      const created = await withDatabase((client) => createToken(client, { email, name, expiresInMs }));
      console.log(
        `rulebook: token ${created.id}${created.name ? ` "${created.name}"` : ''} for ${created.userEmail}, ` +
          (created.expiresAt ? `expires ${formatDate(created.expiresAt)}` : 'never expires'),
      );
      console.log('rulebook: copy it now; it is not stored and cannot be shown again:');
      console.log(created.token);
      return;
    }
    case 'list': {
      const { options, positional } = parseArgs('token list', rest, ['--user']);
      if (positional.length > 0) throw new UsageError('usage: rulebook token list [--user <email>]');
      const email = options.get('--user')?.[0];
      const tokens = await withDatabase((client) => listTokens(client, { email }));
      if (tokens.length === 0) {
        console.log(`rulebook: no tokens${email ? ` for ${email}` : ''}`);
        return;
      }
      for (const line of tokenTable(tokens)) console.log(line);
      return;
    }
    case 'revoke': {
      const [reference, ...extra] = rest;
      if (reference === undefined || extra.length > 0)
        throw new UsageError('usage: rulebook token revoke <token id | token>');
      if (!isTokenReference(reference)) {
        throw new UsageError(`"${reference}" is neither a token id (a uuid) nor a token (rbk_...)`);
      }
      const revoked = await withDatabase((client) => revokeToken(client, reference));
      const label = `token ${revoked.id}${revoked.name ? ` "${revoked.name}"` : ''} of ${revoked.userEmail}`;
      console.log(
        revoked.alreadyRevokedAt
          ? `rulebook: ${label} was already revoked on ${formatDate(revoked.alreadyRevokedAt)}`
          : `rulebook: revoked ${label}`,
      );
      return;
    }
    default:
      throw new UsageError(
        'usage: rulebook token create --user <email> [--name N] [--expires 30d] | token list [--user <email>] | token revoke <id | token>',
      );
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
    case 'role':
      return roleCommand(rest);
    case 'user':
      return userCommand(rest);
    case 'token':
      return tokenCommand(rest);
    case 'db':
      return dbCommand(rest);
    case 'psql':
      return psqlCommand(rest);
    case 'demo': {
      const [flag, ...extra] = rest;
      if (extra.length > 0 || (flag !== undefined && flag !== '--drop' && flag !== '--sql')) {
        throw new UsageError('usage: rulebook demo [--drop | --sql]');
      }
      const options = { drop: flag === '--drop', printSql: flag === '--sql' };
      return runDemo(options, loadConfig(), (line) => console.log(line));
    }
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
    console.error(`rulebook: ${describeError(error)}`);
    process.exitCode = error instanceof ExitError ? error.exitCode : 1;
  }
});
