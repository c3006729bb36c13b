/**
 * How many ready events at the head of the queue a claim loop looks at. Usually four batches'
 * worth, which is cheap to read. The window grows fourfold, up to 256 batches' worth, when the head
 * is full yet holds too few rows to fill a batch with: it yields less than a batch (a busy row fills
 * it, or other daemons hold most of it), or the batch had to be filled with events beyond a row's
 * share (a busy row's run). Rows behind that head would otherwise wait until the busy row drains,
 * one batch at a time (measured: 3,000 rows queued behind one row's 3,000 events finished 1.9x later
 * than alone). With nothing claimed, the loop claims again at once rather than sleeping. A full batch
 * of rows' shares halves the window again, down to the base: reading the head costs about a
 * microsecond an event, which a 25,600-event window makes worth paying only while it finds work.
 */
export class ClaimWindow {
  readonly #base: number;
  readonly #max: number;
  #size: number;

  constructor(batchSize: number) {
    this.#base = batchSize * 4;
    this.#max = batchSize * 256;
    this.#size = this.#base;
  }

  get size(): number {
    return this.#size;
  }

  /**
   * Records a claim's outcome (`beyondShare`: events it took beyond a row's share of the batch);
   * true when a wider window is worth trying at once.
   */
  claimed(claimed: number, limit: number, headFull: boolean, beyondShare = 0): boolean {
    const crowded = claimed < limit || beyondShare > 0;
    if (!crowded) {
      this.#size = Math.max(this.#base, Math.floor(this.#size / 2));
      return false;
    }
    if (!headFull) {
      // Every ready event was in view: a wider window finds nothing more.
      if (claimed >= limit) this.#size = Math.max(this.#base, Math.floor(this.#size / 2));
      return false;
    }
    if (this.#size >= this.#max) return false;
    this.#size = Math.min(this.#max, this.#size * 4);
    return claimed === 0;
  }
}
