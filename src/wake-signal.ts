/** Lets loops sleep until woken or until a timeout, whichever comes first. */
export class WakeSignal {
  #waiters: (() => void)[] = [];
  #pending = false;

  /** Wakes everyone waiting now; if nobody is, the next wait returns at once. */
  wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    if (waiters.length === 0) this.#pending = true;
    for (const resolve of waiters) resolve();
  }

  wait(timeoutMs: number): Promise<void> {
    if (this.#pending) {
      this.#pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((waiter) => waiter !== done);
        resolve();
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.#waiters.push(done);
    });
  }
}
