import type pg from 'pg';
import { pruneDeadEvents, pruneFailedDeliveries } from '../retention/batches.js';
import { runBatches } from '../retention/run-batches.js';

export interface CleanupOptions {
  /** Delete dead events (workflow.events, state 'dead') captured longer ago than olderThanSeconds. */
  readonly deadEvents?: boolean;
  /** Delete failed and bounced deliveries created longer ago, with their reads and unneeded payloads. */
  readonly failedDeliveries?: boolean;
  /** Only rows older than this; at least 1. */
  readonly olderThanSeconds: number;
  /** After each batch: the rows deleted so far by this call (both kinds together). */
  readonly onProgress?: (deleted: number) => void;
}

export class CleanupError extends Error {
  override name = 'CleanupError';
}

/**
 * Removes what retention keeps on purpose: dead events and failed deliveries, which wait for an
 * operator to retry them. In batches of one short transaction each, like retention; rows someone is
 * retrying at that moment are skipped. Returns how many of each were deleted.
 */
export async function cleanup(
  pool: pg.Pool,
  options: CleanupOptions,
): Promise<{ deadEvents: number; failedDeliveries: number }> {
  const { olderThanSeconds } = options;
  if (!Number.isSafeInteger(olderThanSeconds) || olderThanSeconds < 1) {
    throw new CleanupError(
      `cleanup: olderThanSeconds must be a whole number of seconds of at least 1, got ${String(olderThanSeconds)}`,
    );
  }
  if (!options.deadEvents && !options.failedDeliveries) {
    throw new CleanupError('cleanup: say what to delete: deadEvents, failedDeliveries or both');
  }
  const ageMs = olderThanSeconds * 1000;
  let before = 0;
  const progress = (deleted: number) => options.onProgress?.(before + deleted);
  const deadEvents = options.deadEvents
    ? await runBatches(pool, pruneDeadEvents, ageMs, { onProgress: progress })
    : 0;
  before = deadEvents;
  const failedDeliveries = options.failedDeliveries
    ? await runBatches(pool, pruneFailedDeliveries, ageMs, { onProgress: progress })
    : 0;
  return { deadEvents, failedDeliveries };
}
