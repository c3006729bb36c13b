/**
 * How many ready events at the head of the queue a claim loop looks at. Usually four batches'
 * worth, which is cheap to read. When that head is full yet yields less than a batch (a busy row
 * fills it, or other daemons hold most of it), the rows behind it would wait until it drains, so
 * the window grows fourfold, up to 256 batches' worth, and the loop claims again at once rather than
 * sleeping. Each full batch halves it again, down to the base: reading the head costs about a
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

  /** Records a claim's outcome; true when a wider window is worth trying at once. */
  claimed(claimed: number, limit: number, headFull: boolean): boolean {
    if (claimed >= limit) {
      this.#size = Math.max(this.#base, Math.floor(this.#size / 2));
      return false;
    }
    if (!headFull || this.#size >= this.#max) return false;
    this.#size = Math.min(this.#max, this.#size * 4);
    return claimed === 0;
  }
}
