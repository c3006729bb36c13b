import type pg from 'pg';

/**
 * One kind of write that the actions of a batch's events can send together: a prepared statement
 * (one plan per connection) that takes every item as one jsonb array ($1, read with
 * `jsonb_array_elements ... with ordinality`) and returns one row per item with its 1-based
 * position in `ord`.
 */
export interface BatchedWriteKind {
  readonly name: string;
  readonly text: string;
}

/**
 * Called with an item's row once its statement has run, to complete the result its action
 * returned. Throwing fails the batch, which the engine then handles again with each action writing
 * at once in its own savepoint, so that the failing action is found and recorded alone.
 */
export type WrittenCallback = (row: Record<string, unknown>) => void;

interface Pending {
  readonly data: unknown[];
  readonly written: WrittenCallback[];
}

/**
 * Writes that actions handed over instead of sending them, one list per kind, in the order they
 * came. They are sent before any other statement of the transaction (so that every statement sees
 * the writes of the actions that ran before it, as if they had been sent at once) and before the
 * batch's execution rows: one round trip per kind per batch instead of one per action.
 */
export class WriteBatch {
  readonly #pending = new Map<BatchedWriteKind, Pending>();

  get empty(): boolean {
    return this.#pending.size === 0;
  }

  add(kind: BatchedWriteKind, data: unknown, written: WrittenCallback): void {
    let pending = this.#pending.get(kind);
    if (!pending) this.#pending.set(kind, (pending = { data: [], written: [] }));
    pending.data.push(data);
    pending.written.push(written);
  }

  /** Forgets what was handed over (the transaction rolled back). */
  clear(): void {
    this.#pending.clear();
  }

  /** Sends every pending kind, one statement each. */
  async flush(client: pg.ClientBase): Promise<void> {
    for (const [kind, pending] of this.#pending) {
      this.#pending.delete(kind);
      const { rows } = await client.query<Record<string, unknown>>({
        name: kind.name,
        text: kind.text,
        values: [JSON.stringify(pending.data)],
      });
      const byOrd = new Map(rows.map((row) => [Number(row.ord), row]));
      pending.written.forEach((written, index) => {
        const row = byOrd.get(index + 1);
        if (!row)
          throw new Error(`${kind.name}: no row came back for item ${index + 1} of ${pending.data.length}`);
        written(row);
      });
    }
  }
}
