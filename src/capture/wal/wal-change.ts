import type { WalChange } from './append-changes.js';
import type { WalMessage } from './pgoutput-decoder.js';

/** The transaction whose changes are being read: what each of its changes carries. */
export interface OpenTransaction {
  readonly commitLsn: string;
  readonly xid: number;
  readonly time: string;
  /** Changes of this transaction read so far. */
  seq: number;
  depth?: number;
  actor?: string;
  /** The transaction changed the rules (capture-prefilter.ts): none of its later changes is dropped. */
  rulesChanged?: boolean;
}

export function openTransaction(begin: Extract<WalMessage, { tag: 'begin' }>): OpenTransaction {
  return { commitLsn: begin.commitLsn, xid: begin.xid, time: begin.commitTime.toISOString(), seq: 0 };
}

/**
 * One row change as workflow.append_wal_changes reads it; counts it in its transaction. Shared by
 * the streaming reader and the drain when leaving WAL mode, so both append the same events.
 */
export function toWalChange(
  transaction: OpenTransaction,
  message: Extract<WalMessage, { tag: 'insert' | 'update' | 'delete' }>,
): WalChange {
  transaction.seq += 1;
  // Assigned one by one rather than spread: this runs for every change the stream sends.
  const change: { -readonly [K in keyof WalChange]: WalChange[K] } = {
    l: transaction.commitLsn,
    s: transaction.seq,
    x: transaction.xid,
    t: transaction.time,
    r: message.relation.id,
    o: message.tag === 'insert' ? 'I' : message.tag === 'update' ? 'U' : 'D',
  };
  if (message.tag !== 'delete') change.n = message.new;
  if (message.tag !== 'insert' && message.old) change.d = message.old;
  if (transaction.depth !== undefined) change.p = transaction.depth;
  if (transaction.actor !== undefined) change.a = transaction.actor;
  return change;
}
