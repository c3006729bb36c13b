import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import { createPool } from './db/pool.js';
import type { Logger } from './logger.js';
import { packageRoot } from './package-root.js';
import { PeriodicTask } from './periodic-task.js';

export interface HeartbeatOptions {
  readonly databaseUrl: string;
  readonly logger: Logger;
  /** The engine's daemon id, so that logs, idle_daemons and workflow.daemons name the same thing. */
  readonly daemonId: string;
  /** RULEBOOK_HEARTBEAT_INTERVAL_MS. */
  readonly intervalMs: number;
}

// One statement for the first beat and every later one: a row deleted while the daemon runs (by
// hand, or pruned after a long network partition) comes back with the next beat, with the start
// time the first beat recorded rather than that moment.
const BEAT = `
insert into workflow.daemons (id, host, pid, version, heartbeat_interval_ms, started_at)
values ($1, $2, $3, $4, $5, coalesce($6::timestamptz, now()))
on conflict (id) do update set last_heartbeat_at = now(), stopped_at = null
returning started_at`;

const STOP = 'update workflow.daemons set last_heartbeat_at = now(), stopped_at = now() where id = $1';

const PRUNE = 'select workflow.prune_daemons() as count';

// Rows of daemons gone for a day are deleted at start and then hourly, so that a fleet whose daemons
// never restart does not keep them either. The table holds one row per daemon process: cheap.
const PRUNE_EVERY_MS = 3_600_000;

function packageVersion(): string {
  try {
    const manifest = JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as {
      version?: string;
    };
    return manifest.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/**
 * Records the daemon in workflow.daemons: at start, every interval, and at a clean stop. It has a
 * connection of its own and never touches the engine's, so a slow heartbeat cannot slow event
 * handling, and a failed one is only logged: the next one tries again. `rulebook status` shows a
 * daemon as gone once its last heartbeat is older than three of its intervals.
 */
export class Heartbeat {
  readonly #options: HeartbeatOptions;
  readonly #logger: Logger;
  readonly #pool: pg.Pool;
  readonly #row: unknown[];
  #startedAt: Date | null = null;
  readonly #task: PeriodicTask;
  #stopped = false;
  #prunedAt = 0;

  constructor(options: HeartbeatOptions) {
    this.#options = options;
    this.#logger = options.logger.child({ component: 'heartbeat' });
    this.#pool = createPool({
      databaseUrl: options.databaseUrl,
      max: 1,
      applicationName: 'rulebook-heartbeat',
      logger: this.#logger,
    });
    this.#row = [options.daemonId, os.hostname(), process.pid, packageVersion(), options.intervalMs];
    // #beat logs its own failures, so there is nothing left for onError.
    this.#task = new PeriodicTask(
      () => this.#beat(),
      options.intervalMs,
      () => {},
    );
  }

  /** Records the daemon (an error here fails start-up), forgets long-gone daemons, then beats. */
  async start(): Promise<void> {
    this.#stopped = false;
    try {
      await this.#record();
    } catch (error) {
      await this.#pool.end().catch(() => {});
      throw error;
    }
    await this.#prune();
    this.#task.start(this.#options.intervalMs);
  }

  /** Records a clean stop. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await this.#task.stop();
    try {
      await this.#pool.query(STOP, [this.#options.daemonId]);
    } catch (error) {
      this.#logger.warn({ err: error }, 'could not record the stop in workflow.daemons');
    }
    await this.#pool.end();
  }

  async #record(): Promise<void> {
    const { rows } = await this.#pool.query<{ started_at: Date }>(BEAT, [...this.#row, this.#startedAt]);
    this.#startedAt ??= rows[0]?.started_at ?? null;
  }

  async #beat(): Promise<void> {
    try {
      await this.#record();
    } catch (error) {
      this.#logger.warn({ err: error }, 'heartbeat failed');
    }
    if (Date.now() - this.#prunedAt >= PRUNE_EVERY_MS) await this.#prune();
  }

  async #prune(): Promise<void> {
    this.#prunedAt = Date.now();
    try {
      const { rows } = await this.#pool.query<{ count: string }>(PRUNE);
      const pruned = Number(rows[0]?.count ?? 0);
      if (pruned > 0) this.#logger.info({ pruned }, 'forgot daemons gone for more than a day');
    } catch (error) {
      this.#logger.warn({ err: error }, 'could not prune workflow.daemons');
    }
  }
}
