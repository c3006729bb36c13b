import type pg from 'pg';
import type { TextRow } from './pgoutput-decoder.js';

/** One decoded change as workflow.append_wal_changes reads it (short keys: a batch is one jsonb). */
export interface WalChange {
  /** The commit LSN of the change's transaction. */
  readonly l: string;
  /** The change's position in its transaction, from 1. */
  readonly s: number;
  /** The transaction's xid (32 bits; the function adds the epoch). */
  readonly x: number;
  /** Commit time, ISO 8601: the event's created_at. */
  readonly t: string;
  /** The relation's OID (the partitioned table's, for a partition: publish_via_partition_root). */
  readonly r: number;
  readonly o: 'I' | 'U' | 'D';
  readonly n?: TextRow;
  readonly d?: TextRow;
  /** The chain depth the transaction declared (wal-context.ts); 0 without one. */
  readonly p?: number;
  /** The actor the transaction declared; null without one. */
  readonly a?: string;
}

export const APPEND_WAL_CHANGES = 'select workflow.append_wal_changes($1, $2::jsonb) as events';

/**
 * Appends a batch in one transaction with the slot's progress row, so that a batch is either
 * appended and recorded, or neither. Returns the number of events written.
 */
export async function appendChanges(
  pool: pg.Pool,
  slot: string,
  changes: readonly WalChange[],
): Promise<number> {
  const client = await pool.connect();
  // A connection ended by the server while checked out (PostgreSQL shutting down) emits 'error'
  // besides failing the query; the failed query is what the reader acts on.
  const ignore = () => undefined;
  client.on('error', ignore);
  try {
    // One statement is its own transaction: the function writes the events and the progress row.
    const { rows } = await client.query<{ events: number }>({
      name: 'rulebook-append-wal-changes',
      text: APPEND_WAL_CHANGES,
      values: [slot, JSON.stringify(changes)],
    });
    return rows[0]!.events;
  } finally {
    client.removeListener('error', ignore);
    client.release();
  }
}
