import { setTimeout as sleep } from 'node:timers/promises';
import { inTransaction, type Queryable } from '../db/transaction.js';
import type { BatchStep } from './batches.js';
import { sqlState } from '../sql-state.js';

export interface BatchRunOptions {
  /** Rows per batch; each batch is one short transaction. */
  readonly batchSize?: number;
  /**
   * How long a batch waits for a lock before it gives up and is tried again. Retention only
   * deletes rows nobody else is using, so a wait means someone else is busy: they go first.
   */
  readonly lockTimeoutMs?: number;
  /**
   * After each batch, rest this many times the batch's own duration, so that pruning a large
   * backlog leaves the CPU and disks to the engine (0: no rest).
   */
  readonly restRatio?: number;
  /** Called after each batch with the rows deleted so far by this run. */
  readonly onProgress?: (deleted: number) => void;
  /** Checked between batches: true stops the run where it is (the next run goes on from there). */
  readonly shouldStop?: () => boolean;
}

export const DEFAULT_BATCH_SIZE = 1_000;
const DEFAULT_LOCK_TIMEOUT_MS = 200;
/** Lock timeouts and deadlocks in a row before the run gives up with the last one. */
const MAX_CONFLICTS = 5;
const RETRYABLE = new Set(['55P03', '40P01']);

/**
 * Deletes with `step` in batches until nothing older than `ageMs` is left (or `shouldStop`); each
 * batch commits on its own, so no lock is held longer than one batch. Returns how many rows went.
 */
export async function runBatches(
  db: Queryable,
  step: BatchStep,
  ageMs: number,
  options: BatchRunOptions = {},
): Promise<number> {
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  const lockTimeout = `${options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS}ms`;
  let cursor: unknown = undefined;
  let total = 0;
  let conflicts = 0;
  while (!options.shouldStop?.()) {
    const started = performance.now();
    let result: { deleted: number; next: unknown };
    try {
      result = await inTransaction(db, async (client) => {
        await client.query(`select set_config('lock_timeout', $1, true)`, [lockTimeout]);
        return step(client, ageMs, cursor, batchSize);
      });
    } catch (error) {
      const code = sqlState(error);
      if (code === undefined || !RETRYABLE.has(code) || ++conflicts >= MAX_CONFLICTS) throw error;
      // Someone holds a row this batch wanted: let them finish first.
      await sleep(50 * conflicts);
      continue;
    }
    conflicts = 0;
    total += result.deleted;
    options.onProgress?.(total);
    if (result.next === null) break;
    cursor = result.next;
    const rest = (performance.now() - started) * (options.restRatio ?? 0);
    if (rest >= 1) await sleep(rest);
  }
  return total;
}
