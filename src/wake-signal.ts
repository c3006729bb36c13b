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

  /** Resolves when woken, after `timeoutMs`, or once `until` settles, whichever comes first. */
  wait(timeoutMs: number, until?: Promise<unknown>): Promise<void> {
    if (this.#pending) {
      this.#pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      // A waiter that left (timeout, `until`) must not stay listed: it would swallow the next wake.
      const done = () => {
        clearTimeout(timer);
        this.#waiters = this.#waiters.filter((waiter) => waiter !== done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.#waiters.push(done);
      void until?.then(done, done);
    });
  }
}
