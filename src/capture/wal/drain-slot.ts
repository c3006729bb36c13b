import type pg from 'pg';
import { APPEND_WAL_CHANGES, type WalChange } from './append-changes.js';
import { CAPTURE_PUBLICATION } from './capture-slot.js';
import { PgOutputDecoder } from './pgoutput-decoder.js';
import { loadContextSecret, readContextMessage } from './wal-context.js';
import { openTransaction, toWalChange, type OpenTransaction } from './wal-change.js';

// Peeked, not consumed: the slot moves (pg_replication_slot_advance) only after the batch is
// appended, so a crash between the two reads the batch again and the progress row skips it.
const PEEK = `select data from pg_logical_slot_peek_binary_changes($1, $2::pg_lsn, $3,
  'proto_version', '1', 'publication_names', $4, 'messages', 'true')`;
const ADVANCE = 'select pg_replication_slot_advance($1, $2::pg_lsn)';

/**
 * Appends the changes the slot holds that committed up to `until` (the switch back to triggers),
 * a batch of whole transactions at a time (at least `batchSize` changes, unless fewer remain; one
 * transaction is never split, so a huge one is read at once). The caller holds the reader lock,
 * so no daemon streams the slot meanwhile. Returns the changes read and the events written.
 */
export async function drainSlot(
  client: pg.ClientBase,
  slot: string,
  until: string,
  batchSize: number,
): Promise<{ changes: number; events: number }> {
  let changes = 0;
  let events = 0;
  let previousEnd: string | undefined;
  await waitForFlush(client, until);
  // Depth messages are checked as the streaming reader checks them: a writer cannot forge one.
  const secret = await loadContextSecret(client);
  for (;;) {
    const { rows } = await client.query<{ data: Buffer }>(PEEK, [
      slot,
      until,
      batchSize,
      CAPTURE_PUBLICATION,
    ]);
    // Each peek starts a new decoding session, which sends the relations again.
    const decoder = new PgOutputDecoder();
    const batch: WalChange[] = [];
    let transaction: OpenTransaction | undefined;
    let lastEnd: string | undefined;
    for (const row of rows) {
      const message = decoder.decode(row.data);
      switch (message.tag) {
        case 'begin':
          transaction = openTransaction(message);
          break;
        case 'insert':
        case 'update':
        case 'delete':
          if (!transaction) throw new Error(`pgoutput: a ${message.tag} outside a transaction`);
          batch.push(toWalChange(transaction, message));
          break;
        case 'message': {
          const context =
            transaction && message.transactional
              ? readContextMessage(message, transaction.xid, secret)
              : undefined;
          // A rejected depth is ignored here too: the writes keep depth 0.
          if (context && !('rejected' in context)) Object.assign(transaction!, context);
          break;
        }
        case 'commit':
          transaction = undefined;
          lastEnd = message.endLsn;
          break;
        default:
          break;
      }
    }
    if (lastEnd === undefined) return { changes, events };
    if (lastEnd === previousEnd)
      throw new Error(`slot ${slot} sent the transaction ending at ${lastEnd} again`);
    previousEnd = lastEnd;
    if (batch.length > 0) {
      const appended = await client.query<{ events: number }>(APPEND_WAL_CHANGES, [
        slot,
        JSON.stringify(batch),
      ]);
      events += appended.rows[0]!.events;
      changes += batch.length;
    }
    // Past the last commit read: the next peek starts with the transaction after it.
    await client.query(ADVANCE, [slot, lastEnd]);
  }
}

/**
 * Logical decoding from SQL reads only WAL already flushed. The switch commits synchronously
 * (000021), so this returns at once but for a drain resumed right after a crash with
 * synchronous_commit off, when the WAL writer flushes within wal_writer_delay.
 */
async function waitForFlush(client: pg.ClientBase, until: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { rows } = await client.query<{ flushed: boolean }>(
      'select pg_current_wal_flush_lsn() >= $1::pg_lsn as flushed',
      [until],
    );
    if (rows[0]!.flushed) return;
    if (Date.now() > deadline) throw new Error(`the WAL was not flushed up to ${until} within 10 s`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
