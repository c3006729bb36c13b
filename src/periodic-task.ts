/**
 * Runs `work` after a first delay and then `intervalMs` after each run has ended (runs never
 * overlap), until stopped. `stop()` waits for a run in progress. A run's failure goes to `onError`
 * and the next run still comes. The daemon's background jobs (maintenance, view polls, the
 * heartbeat) share it.
 */
export class PeriodicTask {
  readonly #work: () => Promise<unknown>;
  readonly #intervalMs: number;
  readonly #onError: (error: unknown) => void;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopping = false;

  constructor(work: () => Promise<unknown>, intervalMs: number, onError: (error: unknown) => void) {
    this.#work = work;
    this.#intervalMs = intervalMs;
    this.#onError = onError;
  }

  /** True once stop() was called: long runs check it to end early. */
  get stopping(): boolean {
    return this.#stopping;
  }

  start(firstDelayMs = 0): void {
    this.#stopping = false;
    this.#schedule(firstDelayMs);
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  #schedule(delay: number): void {
    if (this.#stopping) return;
    this.#timer = setTimeout(() => {
      this.#running = this.#work()
        .then(
          () => undefined,
          (error: unknown) => this.#onError(error),
        )
        .finally(() => {
          this.#running = undefined;
          this.#schedule(this.#intervalMs);
        });
    }, delay);
  }
}
