export interface BackoffOptions {
  /** The delay before the first retry. */
  readonly firstMs?: number;
  /** The longest delay: a loop that lost its database tries again at least this often. */
  readonly maxMs?: number;
}

/**
 * How long to wait before retry number `attempt` (1 for the first): `firstMs`, doubling, at most
 * `maxMs`. The in-process loops (claim loops, the LISTEN client) reconnect with the defaults, 200 ms
 * to 5 s: quick after a blip, and at most one failed connect per loop every 5 s during an outage.
 * (The retries of an event or a delivery are computed in SQL, next to their data.)
 */
export function backoffMs(attempt: number, { firstMs = 200, maxMs = 5_000 }: BackoffOptions = {}): number {
  return Math.min(firstMs * 2 ** (attempt - 1), maxMs);
}
