import type pg from 'pg';
import { systemClock, type Clock } from '../clock.js';
import { inTransaction } from '../db/transaction.js';
import type { Logger } from '../logger.js';
import { createPool } from '../db/pool.js';

export interface MaintenanceOptions {
  readonly databaseUrl: string;
  readonly logger: Logger;
  /** MAINTENANCE_INTERVAL_MS: how often the jobs run (in one daemon at a time). */
  readonly intervalMs?: number;
  /** How long fired ticks are kept in workflow.schedule_runs (a PostgreSQL interval). */
  readonly keepScheduleRuns?: string;
  /** What the pruning of fired ticks counts their age from. */
  readonly clock?: Clock;
}

export interface MaintenanceResult {
  /** False when another daemon held the maintenance lock, so nothing ran here. */
  readonly ran: boolean;
  readonly expiredAlerts: number;
  readonly releasedReservations: number;
  readonly prunedScheduleRuns: number;
  /** Jobs that failed (each runs in its own savepoint, so the others still count). */
  readonly failed: readonly string[];
}

/** Arbitrary but fixed key: one daemon at a time runs the maintenance jobs. */
const MAINTENANCE_LOCK = "hashtextextended('rulebook.maintenance', 0)";

interface Job {
  readonly name: keyof Omit<MaintenanceResult, 'ran' | 'failed'>;
  readonly sql: string;
  readonly values?: () => unknown[];
}

/**
 * The daemon's periodic housekeeping: resolves expired alerts (workflow.expire_alerts), gives back
 * the stock of expired reservations (workflow.release_expired_reservations), and prunes old fired
 * ticks (workflow.prune_schedule_runs). Every daemon runs it; pg_try_advisory_xact_lock lets one
 * at a time do the work, and the jobs are idempotent, so a second daemon in the same minute finds
 * nothing to do.
 */
export class MaintenanceJobs {
  readonly #logger: Logger;
  readonly #pool: pg.Pool;
  readonly #intervalMs: number;
  readonly #jobs: readonly Job[];
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<MaintenanceResult | undefined> | undefined;
  #stopping = false;

  constructor(options: MaintenanceOptions) {
    this.#logger = options.logger.child({ component: 'maintenance' });
    this.#intervalMs = options.intervalMs ?? 60_000;
    this.#pool = createPool({
      databaseUrl: options.databaseUrl,
      max: 1,
      applicationName: 'rulebook-maintenance',
      logger: this.#logger,
    });
    // Releasing reservations takes the inventory allocation lock until commit, so it goes last.
    this.#jobs = [
      { name: 'expiredAlerts', sql: 'select workflow.expire_alerts() as count' },
      {
        name: 'prunedScheduleRuns',
        sql: 'select workflow.prune_schedule_runs($1::interval, $2::timestamptz) as count',
        values: () => [options.keepScheduleRuns ?? '7 days', (options.clock ?? systemClock).now()],
      },
      { name: 'releasedReservations', sql: 'select workflow.release_expired_reservations() as count' },
    ];
  }

  /** Runs the jobs now, then every interval. */
  start(): void {
    this.#stopping = false;
    this.#tick(0);
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running;
    await this.#pool.end();
  }

  /** Runs the jobs once, unless another daemon is running them; logs counts that are not zero. */
  async runOnce(): Promise<MaintenanceResult> {
    const counts = { expiredAlerts: 0, releasedReservations: 0, prunedScheduleRuns: 0 };
    const failed: string[] = [];
    const ran = await inTransaction(this.#pool, async (client) => {
      const { rows } = await client.query<{ locked: boolean }>(
        `select pg_try_advisory_xact_lock(${MAINTENANCE_LOCK}) as locked`,
      );
      if (!rows[0]?.locked) return false;
      // A job that skips what it cannot do (a reservation it cannot release) says so in a WARNING.
      const onNotice = (notice: { severity?: string; message?: string }) => {
        if (notice.severity === 'WARNING')
          this.#logger.warn({ notice: notice.message }, 'maintenance warning');
      };
      client.on('notice', onNotice);
      try {
        await this.#runJobs(client, counts, failed);
      } finally {
        client.off('notice', onNotice);
      }
      return true;
    });
    if (!ran) return { ran: false, ...counts, failed };
    if (counts.expiredAlerts + counts.releasedReservations + counts.prunedScheduleRuns > 0) {
      this.#logger.info(counts, 'maintenance done');
    }
    return { ran: true, ...counts, failed };
  }

  async #runJobs(
    client: pg.ClientBase,
    counts: Record<Job['name'], number>,
    failed: string[],
  ): Promise<void> {
    for (const job of this.#jobs) {
      await client.query('savepoint rulebook_maintenance');
      try {
        const result = await client.query<{ count: string | number }>(job.sql, job.values?.());
        counts[job.name] = Number(result.rows[0]?.count ?? 0);
        await client.query('release savepoint rulebook_maintenance');
      } catch (error) {
        await client.query('rollback to savepoint rulebook_maintenance');
        await client.query('release savepoint rulebook_maintenance');
        failed.push(job.name);
        this.#logger.error({ err: error, job: job.name }, 'maintenance job failed');
      }
    }
  }

  #tick(delay: number): void {
    if (this.#stopping) return;
    this.#timer = setTimeout(() => {
      this.#running = this.runOnce()
        .catch((error: unknown) => {
          this.#logger.warn({ err: error }, 'maintenance could not run');
          return undefined;
        })
        .finally(() => {
          this.#running = undefined;
          this.#tick(this.#intervalMs);
        });
    }, delay);
  }
}
