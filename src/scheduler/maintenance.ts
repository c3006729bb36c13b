import type pg from 'pg';
import { DEFAULT_RETENTION, type RetentionAges } from '../config.js';
import { systemClock, type Clock } from '../clock.js';
import { inTransaction } from '../db/transaction.js';
import type { Logger } from '../logger.js';
import { createPool } from '../db/pool.js';
import {
  pruneAllocations,
  pruneExecutions,
  pruneFinishedDeliveries,
  pruneScheduleRunsAt,
  type BatchStep,
} from '../retention/batches.js';
import { runBatches, type BatchRunOptions } from '../retention/run-batches.js';
import { PeriodicTask } from '../periodic-task.js';

export interface MaintenanceOptions {
  readonly databaseUrl: string;
  readonly logger: Logger;
  /** MAINTENANCE_INTERVAL_MS: how often the jobs run (in one daemon at a time). */
  readonly intervalMs?: number;
  /** RULEBOOK_RETAIN_*: how long old rows are kept; null keeps them forever. */
  readonly retention?: RetentionAges;
  /** How pruning batches (see src/retention/run-batches.ts); the defaults suit a running engine. */
  readonly pruning?: Pick<BatchRunOptions, 'batchSize' | 'restRatio' | 'lockTimeoutMs'>;
  /** What the pruning of fired ticks counts their age from (tests inject a manual clock). */
  readonly clock?: Clock;
}

export interface MaintenanceResult {
  /** False when another daemon held the maintenance lock, so nothing ran here. */
  readonly ran: boolean;
  readonly expiredAlerts: number;
  readonly releasedReservations: number;
  readonly prunedScheduleRuns: number;
  readonly prunedExecutions: number;
  /** Sent and delivered deliveries (their reads and payloads go with them). */
  readonly prunedDeliveries: number;
  readonly prunedAllocations: number;
  /** Jobs that failed (each runs in its own savepoint, so the others still count). */
  readonly failed: readonly string[];
}

/** Arbitrary but fixed key: one daemon at a time runs the maintenance jobs. */
const MAINTENANCE_LOCK = "hashtextextended('rulebook.maintenance', 0)";

type Count = keyof Omit<MaintenanceResult, 'ran' | 'failed'>;

interface Job {
  readonly name: Count;
  readonly sql: string;
  readonly values?: () => unknown[];
}

interface PruneJob {
  readonly name: Count;
  readonly step: BatchStep;
  readonly ageMs: number | null;
}

/**
 * Batches rest as long again as they took: pruning a large backlog then takes about half of one
 * connection's time, and bench/retention.ts measured what it leaves the engine.
 */
export const PRUNING_DEFAULTS: Pick<BatchRunOptions, 'batchSize' | 'restRatio' | 'lockTimeoutMs'> =
  Object.freeze({
    batchSize: 1_000,
    restRatio: 1,
    lockTimeoutMs: 200,
  });

/** A run prunes for at most this long (or the interval, when longer); the next run goes on. */
const MIN_PRUNE_BUDGET_MS = 60_000;

/**
 * The daemon's periodic housekeeping: resolves expired alerts (workflow.expire_alerts), gives back
 * the stock of expired reservations (workflow.release_expired_reservations), then deletes what is
 * older than its retention age: finished deliveries, executions, finished allocation results and
 * fired ticks. Every daemon runs it; a session advisory lock lets one at a time do the work, and
 * the jobs are idempotent, so a second daemon in the same minute finds nothing to do. Deletes go
 * in small batches, each its own transaction (src/retention/run-batches.ts), so that no writer or
 * engine transaction waits on them for longer than one batch.
 */
export class MaintenanceJobs {
  readonly #logger: Logger;
  readonly #pool: pg.Pool;
  readonly #intervalMs: number;
  readonly #jobs: readonly Job[];
  readonly #pruneJobs: readonly PruneJob[];
  readonly #pruning: BatchRunOptions;
  readonly #task: PeriodicTask;

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
      { name: 'releasedReservations', sql: 'select workflow.release_expired_reservations() as count' },
    ];
    const retention = options.retention ?? DEFAULT_RETENTION;
    // Deliveries before executions: an execution is kept while a delivery points at it.
    this.#pruneJobs = [
      { name: 'prunedDeliveries', step: pruneFinishedDeliveries, ageMs: retention.deliveriesMs },
      { name: 'prunedExecutions', step: pruneExecutions, ageMs: retention.executionsMs },
      { name: 'prunedAllocations', step: pruneAllocations, ageMs: retention.allocationsMs },
      {
        name: 'prunedScheduleRuns',
        step: pruneScheduleRunsAt(options.clock ?? systemClock),
        ageMs: retention.scheduleTicksMs,
      },
    ];
    this.#pruning = { ...PRUNING_DEFAULTS, ...options.pruning };
    this.#task = new PeriodicTask(
      () => this.runOnce(),
      this.#intervalMs,
      (error) => this.#logger.warn({ err: error }, 'maintenance could not run'),
    );
  }

  /** Runs the jobs now, then every interval. */
  start(): void {
    this.#task.start();
  }

  async stop(): Promise<void> {
    await this.#task.stop();
    await this.#pool.end();
  }

  /** Runs the jobs once, unless another daemon is running them; logs counts that are not zero. */
  async runOnce(): Promise<MaintenanceResult> {
    const counts: Record<Count, number> = {
      expiredAlerts: 0,
      releasedReservations: 0,
      prunedScheduleRuns: 0,
      prunedExecutions: 0,
      prunedDeliveries: 0,
      prunedAllocations: 0,
    };
    const failed: string[] = [];
    // A session lock, not a transaction's: pruning commits batch by batch and holds it throughout.
    const client = await this.#pool.connect();
    let broken: Error | undefined;
    try {
      const { rows } = await client.query<{ locked: boolean }>(
        `select pg_try_advisory_lock(${MAINTENANCE_LOCK}) as locked`,
      );
      if (!rows[0]?.locked) return { ran: false, ...counts, failed };
      try {
        await inTransaction(client, (tx) => this.#withWarnings(tx, () => this.#runJobs(tx, counts, failed)));
        await this.#prune(client, counts, failed);
      } finally {
        await client.query(`select pg_advisory_unlock(${MAINTENANCE_LOCK})`);
      }
    } catch (error) {
      // The session lock goes with the connection.
      broken = error as Error;
      throw error;
    } finally {
      client.release(broken);
    }
    if (Object.values(counts).some((count) => count > 0)) {
      this.#logger.info(counts, 'maintenance done');
    }
    return { ran: true, ...counts, failed };
  }

  /** A job that skips what it cannot do (a reservation it cannot release) says so in a WARNING. */
  async #withWarnings<T>(client: pg.ClientBase, work: () => Promise<T>): Promise<T> {
    const onNotice = (notice: { severity?: string; message?: string }) => {
      if (notice.severity === 'WARNING') this.#logger.warn({ notice: notice.message }, 'maintenance warning');
    };
    client.on('notice', onNotice);
    try {
      return await work();
    } finally {
      client.off('notice', onNotice);
    }
  }

  async #prune(client: pg.ClientBase, counts: Record<Count, number>, failed: string[]): Promise<void> {
    const deadline = performance.now() + Math.max(this.#intervalMs, MIN_PRUNE_BUDGET_MS);
    const shouldStop = () => this.#task.stopping || performance.now() > deadline;
    for (const job of this.#pruneJobs) {
      if (job.ageMs === null || shouldStop()) continue;
      try {
        counts[job.name] = await runBatches(client, job.step, job.ageMs, {
          ...this.#pruning,
          shouldStop,
          onProgress: (deleted) => {
            counts[job.name] = deleted;
          },
        });
      } catch (error) {
        failed.push(job.name);
        this.#logger.error(
          { err: error, job: job.name, deleted: counts[job.name] },
          'maintenance job failed',
        );
      }
    }
  }

  async #runJobs(client: pg.ClientBase, counts: Record<Count, number>, failed: string[]): Promise<void> {
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
}
