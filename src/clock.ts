/**
 * Where rulebook's time-driven parts read "now": the scheduler, the maintenance job and the
 * time-relative conditions. Tests inject a {@link ManualClock} and move it, instead of waiting for
 * the wall clock.
 */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = Object.freeze({ now: () => new Date() });

/** A clock that stands still until it is set or advanced. */
export class ManualClock implements Clock {
  #ms: number;

  constructor(start: Date | string) {
    this.#ms = new Date(start).getTime();
    if (Number.isNaN(this.#ms)) throw new Error(`ManualClock: ${String(start)} is not a date`);
  }

  now(): Date {
    return new Date(this.#ms);
  }

  set(to: Date | string): void {
    const ms = new Date(to).getTime();
    if (Number.isNaN(ms)) throw new Error(`ManualClock: ${String(to)} is not a date`);
    this.#ms = ms;
  }

  advance(ms: number): void {
    this.#ms += ms;
  }
}
