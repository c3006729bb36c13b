/**
 * Counts failures per key (a client address) in a sliding window, in memory. A key with `max`
 * failures inside the window is blocked until the oldest of them leaves it. Per process: several
 * servers behind a balancer each count their own.
 */
export class FailureLimiter {
  readonly #failures = new Map<string, number[]>();

  constructor(
    readonly max: number,
    readonly windowMs: number,
    /** Keys kept at most, so that a flood of addresses cannot grow the map without end. */
    private readonly maxKeys = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Milliseconds until `key` may try again; 0 when it is not blocked. */
  retryAfterMs(key: string): number {
    const times = this.#recent(key);
    if (times.length < this.max) return 0;
    return Math.max(1, times[times.length - this.max]! + this.windowMs - this.now());
  }

  recordFailure(key: string): void {
    const times = this.#recent(key);
    times.push(this.now());
    // Re-inserting keeps the map in order of last failure, so the stalest key goes first.
    this.#failures.delete(key);
    this.#failures.set(key, times.slice(-this.max));
    if (this.#failures.size > this.maxKeys) this.#prune();
  }

  #recent(key: string): number[] {
    const since = this.now() - this.windowMs;
    const times = (this.#failures.get(key) ?? []).filter((time) => time > since);
    if (times.length === 0) this.#failures.delete(key);
    return times;
  }

  #prune(): void {
    for (const key of this.#failures.keys()) {
      if (this.#recent(key).length === 0) this.#failures.delete(key);
    }
    for (const key of this.#failures.keys()) {
      if (this.#failures.size <= this.maxKeys) break;
      this.#failures.delete(key);
    }
  }
}
