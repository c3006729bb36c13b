import type pg from 'pg';
import type { WalMessage } from './pgoutput-decoder.js';

/** The logical decoding message a transaction that changed the rules carries (sql/000025). */
export const RULES_PREFIX = 'rulebook.rules';

/** What the capture filters let through for one relation (workflow.wal_capture_prefilter). */
interface RelationFilter {
  readonly inserts: boolean;
  readonly deletes: boolean;
  /** Columns whose change makes an update captured; null: any column. */
  readonly updateColumns: readonly string[] | null;
}

type RowChange = Extract<WalMessage, { tag: 'insert' | 'update' | 'delete' }>;

const LOAD_PREFILTER = 'select workflow.wal_capture_prefilter($1::bigint) as prefilter';

/**
 * Drops, before the append, the changes that the relation's capture filters would drop at append
 * time: an insert or delete no active rule of its kind watches, and an update that changed none of
 * the columns active on_update rules watch (the same text before and after, which is no change for
 * the filters' `is distinct from`). Anything else, and every change of a relation it does not know,
 * is kept for the append's filters to decide: this only saves the append the work.
 *
 * The rules it knows are as of its last load. A transaction that changes them says so in the WAL
 * (RULES_PREFIX); from that message on the reader keeps every change of that transaction, and after
 * its commit loads the rules again (in a snapshot that sees that transaction) before it drops
 * anything more. A relation message (a table's columns changed) makes it load again too.
 */
export class CapturePrefilter {
  readonly #pool: pg.Pool;
  #filters: Map<number, RelationFilter> | undefined;
  /** The transaction whose rule change the next load must see (32-bit xid), if any. */
  #waitFor: number | undefined;
  #disabled = false;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  /** The rules changed with the transaction `xid` (committed): load them again before dropping. */
  invalidate(xid?: number): void {
    this.#filters = undefined;
    if (xid !== undefined) this.#waitFor = xid;
  }

  /**
   * Stops dropping for good: the role may not read the prefilter, or loading it failed. Returns
   * whether this call disabled it (to log once).
   */
  disable(): boolean {
    const was = this.#disabled;
    this.#disabled = true;
    this.#filters = undefined;
    return !was;
  }

  /** Whether `change` may be dropped; loads the rules first when they are stale. */
  async drops(change: RowChange): Promise<boolean> {
    if (this.#disabled) return false;
    this.#filters ??= await this.#load();
    const filter = this.#filters.get(change.relation.id);
    if (!filter) return false;
    switch (change.tag) {
      case 'insert':
        return !filter.inserts;
      case 'delete':
        return !filter.deletes;
      case 'update': {
        const columns = filter.updateColumns;
        // Without the whole old row (REPLICA IDENTITY not FULL: none, or only the key's columns),
        // or with a watched column the table no longer has (renamed), nothing is known to be
        // unchanged.
        if (columns === null || !change.old || change.relation.replicaIdentity !== 'f') return false;
        return columns.every(
          (column) =>
            column in change.new && column in change.old! && change.new[column] === change.old![column],
        );
      }
    }
  }

  async #load(): Promise<Map<number, RelationFilter>> {
    for (;;) {
      const { rows } = await this.#pool.query<{
        prefilter: {
          pending: boolean;
          relations: { r: number; i: boolean; d: boolean; u: string[] | null }[];
        };
      }>({ name: 'rulebook-wal-prefilter', text: LOAD_PREFILTER, values: [this.#waitFor ?? null] });
      const { pending, relations } = rows[0]!.prefilter;
      // The rule change's commit is in the WAL but not yet visible to new snapshots (it leaves the
      // server's list of running transactions just after): a moment later it is.
      if (pending) {
        await new Promise((resolve) => setTimeout(resolve, 5));
        continue;
      }
      this.#waitFor = undefined;
      return new Map(
        relations.map((r) => [r.r, { inserts: r.i, deletes: r.d, updateColumns: r.u }] as const),
      );
    }
  }
}
