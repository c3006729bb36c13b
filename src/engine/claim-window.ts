/** What a claim found, as the window needs it. */
export interface ClaimOutcome {
  readonly claimed: number;
  readonly limit: number;
  /** The head filled the window: ready events lie beyond it. */
  readonly headFull: boolean;
  /** Events taken beyond a row's share of the batch (the head held too few rows). */
  readonly beyondShare: number;
  /** Head events up to the last one claimed: how much of the window the claim needed. */
  readonly headUsed: number;
  /**
   * Other loops of the daemon claim the rows behind the busy row this loop's batch was a run of
   * (they leave that row to this loop): then its window need not grow to reach those rows.
   */
  readonly othersClaimBehind?: boolean;
}

/** Claims after which a queue found to hold only busy rows is looked past again. */
const CALM_CLAIMS = 4;

/**
 * How many ready events at the head of the queue a claim loop looks at. Usually four batches'
 * worth, which is cheap to read. The window grows fourfold, up to 256 batches' worth, when the head
 * is full yet holds too few rows to fill a batch with: it yields less than a batch (a busy row fills
 * it, or other daemons hold most of it), or the batch had to be filled with events beyond a row's
 * share (a busy row's run). Rows behind that head would otherwise wait until the busy row drains,
 * one batch at a time (measured: 3,000 rows queued behind one row's 3,000 events finished 1.9x later
 * than alone). With nothing claimed, the loop claims again at once rather than sleeping.
 *
 * It does not grow for a busy row that this loop owns while other loops of the daemon leave that
 * row out of their claims (RowOwners): they reach the rows behind it, and this loop's batches are
 * the row's runs, claimed from a base window.
 *
 * The window halves, down to the base, when a full batch used less than half of it: reading the
 * head costs a few microseconds an event (the row key is jsonb), which a wide window is worth only
 * while the batch needs it. When the whole queue was in view and held only busy rows, the window
 * does not grow for their sake for the next few claims: there is nothing behind them to reach.
 */
export class ClaimWindow {
  readonly #base: number;
  readonly #max: number;
  #size: number;
  #calm = 0;

  constructor(batchSize: number) {
    this.#base = batchSize * 4;
    this.#max = batchSize * 256;
    this.#size = this.#base;
  }

  get size(): number {
    return this.#size;
  }

  /** Records a claim's outcome; true when a wider window is worth trying at once. */
  claimed(outcome: ClaimOutcome): boolean {
    const { claimed, limit, headFull, beyondShare, headUsed, othersClaimBehind = false } = outcome;
    if (this.#calm > 0) this.#calm--;
    if (claimed < limit) {
      if (!headFull || this.#size >= this.#max) return false;
      this.#grow();
      return claimed === 0;
    }
    if (beyondShare > 0 && headFull && !othersClaimBehind && this.#calm === 0 && this.#size < this.#max) {
      this.#grow();
      return false;
    }
    if (beyondShare > 0 && !headFull) this.#calm = CALM_CLAIMS;
    if (headUsed * 2 <= this.#size) this.#size = Math.max(this.#base, Math.floor(this.#size / 2));
    return false;
  }

  #grow(): void {
    this.#size = Math.min(this.#max, this.#size * 4);
  }
}
