import type { CapturedEvent } from '../model/types.js';

/** Rows that a claim leaves out of the head it reads, as the claim's parameters. */
export interface LeftOutRows {
  readonly entityIds: string[];
  /** The row keys as JSON text, one for each entity id. */
  readonly rowKeys: string[];
}

/**
 * The busy rows that the claim loops of one daemon own: a loop whose batch is a run of one row,
 * more than that row's share, owns the row until a batch of it is not. The other loops leave an
 * owned row out of the head they read, so that they reach the rows behind it with a base window
 * instead of reading the busy row's events in every claim (measured: 3,000 events of one row
 * ahead of 3,000 other rows made each such claim cost three times a base one), and the owner keeps
 * taking the row's runs, a batch at a time.
 *
 * Leaving a row out of a claim never breaks a row's order: the claim still reads every event of
 * every other row in id order, and takes nothing of the row left out. It only delays that row, and
 * the owner is claiming it; a loop that stops owning it (its claim got no run of it, it failed, it
 * stopped) gives it back at once.
 */
export class RowOwners {
  readonly #owned = new Map<number, OwnedRow>();
  #loops = 0;

  /** Registers a claim loop; returns its handle. */
  join(): number {
    return ++this.#loops;
  }

  /** Whether other loops of the daemon claim the rows behind the row this loop owns. */
  othersClaimBehind(loop: number): boolean {
    return this.#owned.has(loop) && this.#loops > 1;
  }

  /** The rows other loops own, which this loop's claim leaves out. */
  leftOutBy(loop: number): LeftOutRows {
    const entityIds: string[] = [];
    const rowKeys: string[] = [];
    for (const [owner, owned] of this.#owned) {
      if (owner === loop) continue;
      entityIds.push(owned.entityId);
      rowKeys.push(owned.rowKey);
    }
    return { entityIds, rowKeys };
  }

  /**
   * Records what the loop's batch was: it owns the row whose run in the batch exceeds `share`
   * events, if one does and no other loop owns it, and nothing otherwise.
   */
  claimed(loop: number, events: readonly CapturedEvent[], share: number): void {
    const busy = busiestRun(events, share);
    if (busy === undefined || this.#ownedByOther(loop, busy)) this.#owned.delete(loop);
    else this.#owned.set(loop, busy);
  }

  /** The loop owns nothing (it failed, or stops). */
  release(loop: number): void {
    this.#owned.delete(loop);
  }

  #ownedByOther(loop: number, row: OwnedRow): boolean {
    for (const [owner, owned] of this.#owned) {
      if (owner !== loop && owned.entityId === row.entityId && owned.rowKey === row.rowKey) return true;
    }
    return false;
  }
}

/** An owned row; its key as JSON text, as the claim takes it and as rows are compared here. */
interface OwnedRow {
  readonly entityId: string;
  readonly rowKey: string;
}

/** The row with the most events in the batch, when that is more than `share`. */
function busiestRun(events: readonly CapturedEvent[], share: number): OwnedRow | undefined {
  const counts = new Map<string, { row: OwnedRow; events: number }>();
  let best: { row: OwnedRow; events: number } | undefined;
  for (const event of events) {
    const rowKey = JSON.stringify(event.rowKey);
    const id = `${event.entityId}\u0000${rowKey}`;
    let run = counts.get(id);
    if (run === undefined) {
      run = { row: { entityId: event.entityId, rowKey }, events: 0 };
      counts.set(id, run);
    }
    run.events++;
    if (best === undefined || run.events > best.events) best = run;
  }
  return best !== undefined && best.events > share ? best.row : undefined;
}
