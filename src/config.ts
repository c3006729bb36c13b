import { fixedMilliseconds, parseTimeInterval } from './conditions/time-interval.js';
import path from 'node:path';
import { AllowListError, WebhookAllowList } from './delivery/destination-guard.js';
import { parseDurationMs } from './duration.js';

/** Everything rulebook reads from its environment, validated once at start-up. */
export interface Config {
  /** A user's DATABASE_URL always wins; without one rulebook runs an embedded PostgreSQL. */
  readonly databaseUrl: string | undefined;
  /** RULEBOOK_DB_WAIT_SECONDS: how long `start` waits for DATABASE_URL's server to come up. */
  readonly databaseWaitSeconds: number;
  /** RULEBOOK_SSE_MAX_STREAMS and RULEBOOK_SSE_MAX_STREAMS_PER_USER: caps on open alert streams. */
  readonly alertStreams: { readonly maxStreams: number; readonly maxStreamsPerUser: number };
  /** Where the embedded PostgreSQL keeps its data. */
  readonly dataDir: string;
  /** As root: where the embedded PostgreSQL's binaries and clusters go that its account cannot reach elsewhere. */
  readonly embeddedSystemDir: string;
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
  /** The delivery worker: e-mail, SMS, push and webhook deliveries. */
  readonly delivery: {
    /** SMTP_URL (smtp:// or smtps://); without it e-mail deliveries fail. */
    readonly smtpUrl: string | undefined;
    readonly smtpFrom: string;
    readonly smsProviderUrl: string | undefined;
    readonly pushProviderUrl: string | undefined;
    /** Signs webhooks without a secret of their own, and SMS and push provider requests. */
    readonly webhookSecret: string | undefined;
    /** RULEBOOK_WEBHOOK_ALLOW: non-public webhook destinations allowed anyway (see destination-guard.ts). */
    readonly webhookAllow: readonly string[];
    readonly maxAttempts: number;
    readonly pollIntervalMs: number;
  };
  readonly health: {
    /** RULEBOOK_HEALTH_MAX_PENDING_AGE_SECONDS: /healthz is 503 once the oldest pending event is older. */
    readonly maxPendingAgeSeconds: number;
  };
  /** RULEBOOK_HEARTBEAT_INTERVAL_MS: how often a daemon records itself in workflow.daemons. */
  readonly heartbeatIntervalMs: number;
  /** Scheduled rules run in every daemon; their rule changes are checked at engine.pollIntervalMs. */
  readonly scheduler: {
    /** MAINTENANCE_INTERVAL_MS: how often a daemon expires alerts, releases reservations, prunes ticks. */
    readonly maintenanceIntervalMs: number;
    /** RULEBOOK_SCHEDULE_CATCHUP: how old a tick missed while no daemon ran may be and still run. */
    readonly catchUpMs: number;
  };
  /** RULEBOOK_RETAIN_*: how long the maintenance job keeps rows, in milliseconds; null keeps them forever. */
  readonly retention: RetentionAges;
  /** How changes reach workflow.events (docs/capture-wal.md). */
  readonly capture: CaptureConfig;
}

export interface CaptureConfig {
  /** RULEBOOK_CAPTURE: 'triggers' (row triggers, the default) or 'wal' (a logical replication slot). */
  readonly mode: 'triggers' | 'wal';
  /** RULEBOOK_WAL_SLOT: the slot WAL mode reads; by default rulebook_<database>. */
  readonly walSlot: string | undefined;
  /** RULEBOOK_WAL_BATCH_SIZE: changes appended to workflow.events per transaction. */
  readonly walBatchSize: number;
  /** RULEBOOK_WAL_BATCH_WAIT_MS: least time between two appends that are not full. */
  readonly walBatchWaitMs: number;
  /** RULEBOOK_WAL_RETRY_MS: how often a daemon tries to become the reader, or restarts a failed stream. */
  readonly walRetryMs: number;
}

export interface RetentionAges {
  readonly executionsMs: number | null;
  /** Sent and delivered ones; failed and bounced deliveries are kept until retried or cleaned up. */
  readonly deliveriesMs: number | null;
  /** Failed, released or fulfilled ones; an allocation still holding stock is kept. */
  readonly allocationsMs: number | null;
  readonly scheduleTicksMs: number | null;
}

/**
 * One environment variable: what `rulebook --help` and docs/configuration.md say about it. The
 * variables, their defaults and these texts are checked against loadConfig by
 * test/public-surfaces.test.ts, which also writes the docs' table (`npm run docs:config`).
 */
export interface Setting {
  readonly name: string;
  /** The default as an operator would write it, or undefined when unset means something else. */
  readonly default: string | undefined;
  /** What an unset variable means when there is no default (docs: "embedded", "none"). */
  readonly unset?: string;
  /** The short text of `rulebook --help` (the default is added to it). */
  readonly help: string;
  /** The meaning column of docs/configuration.md, in Markdown. */
  readonly doc: string;
}

/** Every variable loadConfig reads, in the order the help and the docs list them. */
export const SETTINGS: readonly Setting[] = Object.freeze([
  {
    name: 'DATABASE_URL',
    default: undefined,
    unset: 'embedded',
    help: 'the database to use; when unset, the embedded PostgreSQL (above)',
    doc: 'the database; without it an embedded PostgreSQL runs with data in `RULEBOOK_DATA_DIR`',
  },
  {
    name: 'RULEBOOK_DATA_DIR',
    default: '.rulebook',
    help: 'data directory of the embedded PostgreSQL',
    doc: 'where the embedded PostgreSQL keeps its data',
  },
  {
    name: 'RULEBOOK_SYSTEM_DIR',
    default: '/var/lib/rulebook',
    help: 'as root, where the embedded PostgreSQL\'s binaries and clusters go that the "postgres" account cannot reach elsewhere',
    doc: "as root, where the embedded PostgreSQL's binaries and clusters go when the `postgres` account cannot reach `RULEBOOK_DATA_DIR` ([cli.md](cli.md))",
  },
  {
    name: 'RULEBOOK_EMBEDDED_PG_PORT',
    default: '54329',
    help: 'port of the embedded PostgreSQL when rulebook starts it (127.0.0.1 only); a running one is found on its own port',
    doc: "the embedded PostgreSQL's port (127.0.0.1 only)",
  },
  {
    name: 'RULEBOOK_DB_WAIT_SECONDS',
    default: '60',
    help: "how long start waits for DATABASE_URL's server to accept connections; 0 tries once",
    doc: "how long `rulebook start` waits, with backoff, for `DATABASE_URL`'s server to accept connections (connection errors only; `0` tries once)",
  },
  {
    name: 'PORT',
    default: '3000',
    help: 'HTTP port',
    doc: 'HTTP port',
  },
  {
    name: 'LOG_LEVEL',
    default: 'info',
    help: 'fatal, error, warn, info, debug, trace or silent',
    doc: 'pino level; logs are JSON lines with daemon, event, rule and execution ids (on a terminal, one readable line each with the same fields)',
  },
  {
    name: 'RULEBOOK_CONCURRENCY',
    default: '2',
    help: 'claim loops per daemon',
    doc: 'claim loops per daemon, each on its own connection',
  },
  {
    name: 'RULEBOOK_BATCH_SIZE',
    default: '100',
    help: 'events handled per transaction',
    doc: 'events claimed, handled and completed per transaction',
  },
  {
    name: 'RULEBOOK_POLL_INTERVAL_MS',
    default: '1000',
    help: 'how often to look for events without a NOTIFY, and for views due for a poll',
    doc: 'how often to look for events when no NOTIFY arrives, and for views due for a poll ([views.md](views.md))',
  },
  {
    name: 'RULEBOOK_LEASE_SECONDS',
    default: '30',
    help: 'how long a stalled claim holds its events',
    doc: "how long a stalled daemon's claim may hold its events",
  },
  {
    name: 'RULEBOOK_MAX_ATTEMPTS',
    default: '5',
    help: 'failed attempts before an event is dead',
    doc: 'failed attempts (infrastructure errors) before an event is dead',
  },
  {
    name: 'RULEBOOK_MAX_CHAIN_DEPTH',
    default: '10',
    help: 'rule executions that may cause each other in a chain',
    doc: 'rule executions that may cause each other in a chain',
  },
  {
    name: 'MAINTENANCE_INTERVAL_MS',
    default: '60000',
    help: 'how often alerts expire, reservations lapse and old rows are pruned',
    doc: 'how often a daemon expires alerts, releases expired reservations and prunes old rows ([retention](operations.md#retention))',
  },
  {
    name: 'RULEBOOK_SCHEDULE_CATCHUP',
    default: '1 hour',
    help: 'how old a scheduled tick missed while no daemon ran may be and still run; an interval such as "30 minutes" or "PT2H", or 0',
    doc: 'how old a scheduled tick missed while no daemon ran may be and still run (once, in order) when a daemon starts; older ones are recorded as `missed`. An interval as rules write them (`"30 minutes"`, `"PT2H"`; no months or years), or `0`',
  },
  {
    name: 'RULEBOOK_RETAIN_EXECUTIONS',
    default: '90d',
    help: 'how long executions are kept: an age such as 30m, 12h, 90d or 2w, or 0 to keep forever',
    doc: 'how long `workflow.automation_executions` rows are kept (an age: `30m`, `12h`, `90d`, `2w`; `0` keeps forever)',
  },
  {
    name: 'RULEBOOK_RETAIN_DELIVERIES',
    default: '90d',
    help: 'how long sent and delivered deliveries are kept',
    doc: 'how long `sent` and `delivered` deliveries are kept, with their reads and payloads; `failed` and `bounced` ones are kept until retried or cleaned up',
  },
  {
    name: 'RULEBOOK_RETAIN_ALLOCATIONS',
    default: '90d',
    help: 'how long allocations that hold no stock are kept',
    doc: 'how long allocation results that hold no stock (failed, released or fulfilled) are kept',
  },
  {
    name: 'RULEBOOK_RETAIN_SCHEDULE_TICKS',
    default: '7d',
    help: 'how long ticks of scheduled rules are kept; longer than RULEBOOK_SCHEDULE_CATCHUP',
    doc: "how long ticks of scheduled rules (`workflow.schedule_runs`) are kept, except each rule's newest and those still selecting rows; must be longer than `RULEBOOK_SCHEDULE_CATCHUP`; `0` keeps forever",
  },
  {
    name: 'SMTP_URL',
    default: undefined,
    help: 'smtp:// or smtps:// server for e-mail deliveries (unset: e-mail fails)',
    doc: '`smtp://` or `smtps://` URL (with credentials if needed); without it e-mail fails',
  },
  {
    name: 'SMTP_FROM',
    default: 'rulebook@localhost',
    help: 'sender address of e-mail',
    doc: 'From of every e-mail: an address or `Name <address>`',
  },
  {
    name: 'SMS_PROVIDER_URL',
    default: undefined,
    help: 'http(s) endpoint that receives sms deliveries (unset: sms fails)',
    doc: '`http(s)://` endpoint that `sms` deliveries are POSTed to; without it they fail',
  },
  {
    name: 'PUSH_PROVIDER_URL',
    default: undefined,
    help: 'http(s) endpoint that receives push deliveries (unset: push fails)',
    doc: '`http(s)://` endpoint that `push` deliveries are POSTed to; without it they fail',
  },
  {
    name: 'WEBHOOK_SECRET',
    default: undefined,
    help: 'default HMAC-SHA256 secret for webhooks and provider requests',
    doc: 'signs webhooks that have no `secret` of their own, and SMS and push requests',
  },
  {
    name: 'DELIVERY_MAX_ATTEMPTS',
    default: '5',
    help: 'attempts before a delivery is failed',
    doc: 'attempts per delivery before it is `failed`',
  },
  {
    name: 'DELIVERY_POLL_INTERVAL_MS',
    default: '1000',
    help: 'how often the delivery worker looks for due deliveries',
    doc: 'how often the delivery worker looks for due deliveries when no NOTIFY arrives',
  },
  {
    name: 'RULEBOOK_WEBHOOK_ALLOW',
    default: undefined,
    help: 'non-public webhook destinations allowed anyway: comma-separated hosts, host:port or CIDR blocks (unset: webhooks reach public addresses only)',
    doc: 'non-public webhook destinations allowed anyway: comma-separated `host`, `host:port` (`[v6]:port`) or CIDR `addr/bits`; without it loopback, private and link-local addresses are refused after DNS resolution',
  },
  {
    name: 'RULEBOOK_HEALTH_MAX_PENDING_AGE_SECONDS',
    default: '300',
    help: '/healthz answers 503 when the oldest pending event is older',
    doc: '`/healthz` answers 503 when the oldest pending event is older than this',
  },
  {
    name: 'RULEBOOK_SSE_MAX_STREAMS',
    default: '1000',
    help: 'open alert event streams per server; more get 503',
    doc: 'open alert streams per server; one more gets 503',
  },
  {
    name: 'RULEBOOK_SSE_MAX_STREAMS_PER_USER',
    default: '20',
    help: 'open alert event streams per person; more get 429',
    doc: 'open alert streams per person; one more gets 429',
  },
  {
    name: 'RULEBOOK_HEARTBEAT_INTERVAL_MS',
    default: '5000',
    help: 'how often a daemon records itself in workflow.daemons; `rulebook status` shows it as gone after 3 intervals without one',
    doc: 'how often a daemon records itself in `workflow.daemons`; `rulebook status` shows it as gone after 3 intervals without a heartbeat',
  },
  {
    name: 'RULEBOOK_CAPTURE',
    default: 'triggers',
    help: 'how changes are captured: `triggers` (row triggers) or `wal` (a logical replication slot; needs wal_level=logical and a role that may replicate)',
    doc: "`triggers` (row triggers) or `wal` (one daemon reads a logical replication slot; needs `wal_level=logical` and a role that may replicate: [capture-wal.md](capture-wal.md)); trigger mode drops a former WAL mode's slot",
  },
  {
    name: 'RULEBOOK_WAL_SLOT',
    default: undefined,
    unset: '`rulebook_<database>`',
    help: 'the replication slot WAL mode reads (unset: rulebook_<database>)',
    doc: 'the replication slot WAL mode reads',
  },
  {
    name: 'RULEBOOK_WAL_BATCH_SIZE',
    default: '2000',
    help: 'WAL mode: changes appended to workflow.events per transaction',
    doc: 'WAL mode: changes appended to `workflow.events` per transaction',
  },
  {
    name: 'RULEBOOK_WAL_BATCH_WAIT_MS',
    default: '20',
    help: 'WAL mode: least time between two appends that are not full (a busy stream appends once per wait, not once per commit; 0: at every pause)',
    doc: 'WAL mode: least time between two appends that are not full: a busy stream of small transactions is appended once per wait, not once per commit; a quiet one at once. `0`: at every pause of the stream',
  },
  {
    name: 'RULEBOOK_WAL_RETRY_MS',
    default: '2000',
    help: "WAL mode: how often a daemon tries to become the slot's reader, and how soon a failed stream starts again",
    doc: "WAL mode: how often a daemon tries to become the slot's reader, and how soon a failed stream starts again",
  },
] satisfies Setting[]);

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
  return parseWholeNumber(name, value, fallback, 1, 'of at least 1');
}

function parseNonNegativeInt(name: string, value: string | undefined, fallback: number): number {
  return parseWholeNumber(name, value, fallback, 0, 'of 0 or more');
}

function parseWholeNumber(
  name: string,
  value: string | undefined,
  fallback: number,
  least: number,
  bound: string,
): number {
  if (value === undefined || value.trim() === '') return fallback;
  const number = Number(value);
  if (!Number.isInteger(number) || number < least) {
    throw new ConfigError(`${name} must be a whole number ${bound}, got "${value}"`);
  }
  return number;
}

/** An optional URL whose scheme is one of `protocols`; credentials are masked in the error. */
function parseUrl(name: string, value: string | undefined, protocols: readonly string[]): string | undefined {
  const text = value?.trim();
  if (!text) return undefined;
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  if (!url || !protocols.includes(url.protocol)) {
    const shown = text.replace(/\/\/[^@/]*@/, '//***@');
    throw new ConfigError(
      `${name} must be a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')}, got "${shown}"`,
    );
  }
  return text;
}

function parseFrom(name: string, value: string | undefined, fallback: string): string {
  const text = value?.trim();
  if (!text) return fallback;
  if (!/^[^\s@<>]+@[^\s@<>]+$/.test(text) && !/<[^\s@<>]+@[^\s@<>]+>$/.test(text)) {
    throw new ConfigError(`${name} must be an e-mail address or "Name <address>", got "${text}"`);
  }
  return text;
}

function parseWebhookAllow(value: string | undefined): readonly string[] {
  try {
    return new WebhookAllowList(value).entries;
  } catch (error) {
    if (error instanceof AllowListError) throw new ConfigError(error.message);
    throw error;
  }
}

function parseWaitSeconds(value: string | undefined): number {
  if (value === undefined || value.trim() === '') return 60;
  const seconds = Number(value);
  if (!/^\s*\d+\s*$/.test(value) || seconds > 86_400) {
    throw new ConfigError(
      `RULEBOOK_DB_WAIT_SECONDS must be a whole number of seconds from 0 to 86400, got "${value}"`,
    );
  }
  return seconds;
}

const DAY_MS = 86_400_000;

/** Executions, deliveries and allocations are kept 90 days, fired ticks 7. */
export const DEFAULT_RETENTION: RetentionAges = Object.freeze({
  executionsMs: 90 * DAY_MS,
  deliveriesMs: 90 * DAY_MS,
  allocationsMs: 90 * DAY_MS,
  scheduleTicksMs: 7 * DAY_MS,
});

/** A retention age: "90d", "12h", "30m", "2w", or 0 to keep forever. */
function parseRetention(name: string, value: string | undefined, fallbackMs: number): number | null {
  const text = value?.trim();
  if (!text) return fallbackMs;
  if (/^0+$/.test(text)) return null;
  const ms = parseDurationMs(text);
  if (ms === undefined) {
    throw new ConfigError(
      `${name} must be an age such as 90d, 12h, 30m or 2w (minutes, hours, days, weeks), or 0 to keep forever, got "${text}"`,
    );
  }
  return ms;
}

function parseCapture(env: NodeJS.ProcessEnv): CaptureConfig {
  const mode = env.RULEBOOK_CAPTURE?.trim() || 'triggers';
  if (mode !== 'triggers' && mode !== 'wal') {
    throw new ConfigError(`RULEBOOK_CAPTURE must be "triggers" (the default) or "wal", got "${mode}"`);
  }
  const walSlot = env.RULEBOOK_WAL_SLOT?.trim() || undefined;
  if (walSlot !== undefined && !/^[a-z0-9_]{1,63}$/.test(walSlot)) {
    throw new ConfigError(
      `RULEBOOK_WAL_SLOT must be 1 to 63 lower-case letters, digits and underscores (a replication slot name), got "${walSlot}"`,
    );
  }
  return Object.freeze({
    mode,
    walSlot,
    walBatchSize: parsePositiveInt('RULEBOOK_WAL_BATCH_SIZE', env.RULEBOOK_WAL_BATCH_SIZE, 2000),
    walBatchWaitMs: parseNonNegativeInt('RULEBOOK_WAL_BATCH_WAIT_MS', env.RULEBOOK_WAL_BATCH_WAIT_MS, 20),
    walRetryMs: parsePositiveInt('RULEBOOK_WAL_RETRY_MS', env.RULEBOOK_WAL_RETRY_MS, 2000),
  });
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** RULEBOOK_SCHEDULE_CATCHUP: an interval as rules write them ("1 hour", "PT30M"), or 0 for none. */
function parseCatchUp(value: string | undefined): number {
  const text = value?.trim();
  if (text === undefined || text === '') return 3_600_000;
  if (text === '0') return 0;
  let interval;
  try {
    interval = parseTimeInterval(text);
  } catch {
    interval = undefined;
  }
  const ms = interval && fixedMilliseconds(interval);
  if (ms === undefined) {
    throw new ConfigError(
      `RULEBOOK_SCHEDULE_CATCHUP must be an interval of weeks, days, hours, minutes or seconds such as "1 hour", "90 minutes" or "PT2H", or 0; got "${value}"`,
    );
  }
  return ms;
}

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
  const catchUpMs = parseCatchUp(env.RULEBOOK_SCHEDULE_CATCHUP);
  const scheduleTicksMs = parseRetention(
    'RULEBOOK_RETAIN_SCHEDULE_TICKS',
    env.RULEBOOK_RETAIN_SCHEDULE_TICKS,
    DEFAULT_RETENTION.scheduleTicksMs!,
  );
  // The scheduler catches up from the ticks it recorded: a tick pruned inside the catch-up window
  // would run a second time.
  if (scheduleTicksMs !== null && scheduleTicksMs <= catchUpMs) {
    throw new ConfigError(
      `RULEBOOK_RETAIN_SCHEDULE_TICKS (${env.RULEBOOK_RETAIN_SCHEDULE_TICKS?.trim() || '7d'}) must be longer than RULEBOOK_SCHEDULE_CATCHUP (${env.RULEBOOK_SCHEDULE_CATCHUP?.trim() || '1 hour'}): ticks missed within the catch-up window are found through the ticks kept`,
    );
  }
  return Object.freeze({
    databaseUrl,
    databaseWaitSeconds: parseWaitSeconds(env.RULEBOOK_DB_WAIT_SECONDS),
    alertStreams: Object.freeze({
      maxStreams: parsePositiveInt('RULEBOOK_SSE_MAX_STREAMS', env.RULEBOOK_SSE_MAX_STREAMS, 1000),
      maxStreamsPerUser: parsePositiveInt(
        'RULEBOOK_SSE_MAX_STREAMS_PER_USER',
        env.RULEBOOK_SSE_MAX_STREAMS_PER_USER,
        20,
      ),
    }),
    dataDir: path.resolve(env.RULEBOOK_DATA_DIR?.trim() || '.rulebook'),
    embeddedSystemDir: path.resolve(env.RULEBOOK_SYSTEM_DIR?.trim() || '/var/lib/rulebook'),
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
    delivery: Object.freeze({
      smtpUrl: parseUrl('SMTP_URL', env.SMTP_URL, ['smtp:', 'smtps:']),
      smtpFrom: parseFrom('SMTP_FROM', env.SMTP_FROM, 'rulebook@localhost'),
      smsProviderUrl: parseUrl('SMS_PROVIDER_URL', env.SMS_PROVIDER_URL, ['http:', 'https:']),
      pushProviderUrl: parseUrl('PUSH_PROVIDER_URL', env.PUSH_PROVIDER_URL, ['http:', 'https:']),
      webhookSecret: env.WEBHOOK_SECRET || undefined,
      webhookAllow: parseWebhookAllow(env.RULEBOOK_WEBHOOK_ALLOW),
      maxAttempts: parsePositiveInt('DELIVERY_MAX_ATTEMPTS', env.DELIVERY_MAX_ATTEMPTS, 5),
      pollIntervalMs: parsePositiveInt('DELIVERY_POLL_INTERVAL_MS', env.DELIVERY_POLL_INTERVAL_MS, 1000),
    }),
    health: Object.freeze({
      maxPendingAgeSeconds: parsePositiveInt(
        'RULEBOOK_HEALTH_MAX_PENDING_AGE_SECONDS',
        env.RULEBOOK_HEALTH_MAX_PENDING_AGE_SECONDS,
        300,
      ),
    }),
    heartbeatIntervalMs: parsePositiveInt(
      'RULEBOOK_HEARTBEAT_INTERVAL_MS',
      env.RULEBOOK_HEARTBEAT_INTERVAL_MS,
      5000,
    ),
    scheduler: Object.freeze({
      maintenanceIntervalMs: parsePositiveInt('MAINTENANCE_INTERVAL_MS', env.MAINTENANCE_INTERVAL_MS, 60_000),
      catchUpMs,
    }),
    retention: Object.freeze({
      executionsMs: parseRetention(
        'RULEBOOK_RETAIN_EXECUTIONS',
        env.RULEBOOK_RETAIN_EXECUTIONS,
        DEFAULT_RETENTION.executionsMs!,
      ),
      deliveriesMs: parseRetention(
        'RULEBOOK_RETAIN_DELIVERIES',
        env.RULEBOOK_RETAIN_DELIVERIES,
        DEFAULT_RETENTION.deliveriesMs!,
      ),
      allocationsMs: parseRetention(
        'RULEBOOK_RETAIN_ALLOCATIONS',
        env.RULEBOOK_RETAIN_ALLOCATIONS,
        DEFAULT_RETENTION.allocationsMs!,
      ),
      scheduleTicksMs,
    }),
    capture: parseCapture(env),
  });
}
