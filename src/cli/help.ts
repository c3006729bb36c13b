import { COMMANDS } from './commands.js';
import type { Command } from './command.js';

const ENVIRONMENT = `  Every command uses the embedded PostgreSQL that \`rulebook start\` runs, when it runs; otherwise
  it starts it for the command's duration. \`rulebook <command> --help\` (or \`rulebook help
  <command>\`) says more about one command. Usage errors exit 2, other failures 1.

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
  RULEBOOK_HEARTBEAT_INTERVAL_MS
                            how often a daemon records itself in workflow.daemons; \`rulebook
                            status\` shows it as gone after 3 intervals without one (default 5000)
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

const INDENT = ' '.repeat(28);

function usageLine(command: Command): string {
  return `rulebook ${command.name}${command.usage ? ` ${command.usage}` : ''}`;
}

/** `usage: rulebook x ...` for one command, or one line per subcommand of a group. */
export function usageLines(commands: readonly Command[]): string {
  return commands
    .map((command, index) => `${index === 0 ? 'usage: ' : '       '}${usageLine(command)}\n`)
    .join('');
}

function indented(text: string, indent: string): string {
  return text
    .split('\n')
    .map((line) => (line === '' ? '' : `${indent}${line}`))
    .join('\n');
}

/** `rulebook --help`: every command with its summary, then the settings. */
export function overallHelp(): string {
  const commands = COMMANDS.map((command) => {
    const line = `  ${usageLine(command)}`;
    const summary = command.summary.split('\n');
    // A short usage line keeps the summary's first line beside it, as the columns of this help do.
    if (line.length < INDENT.length - 1) {
      const [first, ...rest] = summary;
      return [`${line.padEnd(INDENT.length)}${first}`, ...rest.map((s) => `${INDENT}${s}`)].join('\n');
    }
    return [line, ...summary.map((s) => `${INDENT}${s}`)].join('\n');
  });
  return `rulebook: a Postgres-native rule engine

Usage:
${commands.join('\n')}
  rulebook help <command>   the help of one command (also: rulebook <command> --help)
  rulebook --help           show this help

${ENVIRONMENT}`;
}

/** `rulebook <command> --help`. */
export function commandHelp(command: Command): string {
  const options = Object.entries(command.options).map(([name, spec]) => {
    const left = `  ${spec.short ? `-${spec.short}, ` : ''}--${name}${spec.value ? ` ${spec.value}` : ''}`;
    const help = spec.help.split('\n');
    return left.length < INDENT.length - 1
      ? [`${left.padEnd(INDENT.length)}${help[0]}`, ...help.slice(1).map((h) => `${INDENT}${h}`)].join('\n')
      : [left, ...help.map((h) => `${INDENT}${h}`)].join('\n');
  });
  options.push(`${'  -h, --help'.padEnd(INDENT.length)}show this help`);
  const details = command.details ? `\n${indented(command.details, '  ')}\n` : '';
  return `Usage: ${usageLine(command)}

${indented(command.summary, '  ')}
${details}
Options:
${options.join('\n')}
`;
}
