import { parseCron, ticksBetween } from './cron.js';
import type { Schedule } from './schedule.js';

const HOUR_MS = 3_600_000;
/** Far enough for any expression that fires at all (29 February falls within four years). */
const HORIZON_MS = 5 * 366 * 24 * HOUR_MS;

/**
 * The next `count` ticks of a schedule after `now`, computed as the scheduler computes them (the
 * same cron reading, wall times in the rule's time zone), so that `rulebook status` shows what will
 * run, daylight-saving changes included. Looks ahead in widening windows so that an every-second
 * schedule stays cheap and a yearly one is still found.
 */
export function nextTicks(schedule: Schedule, count: number, now = new Date()): Date[] {
  const cron = parseCron(schedule.expression);
  let window = HOUR_MS;
  for (;;) {
    const until = new Date(now.getTime() + window);
    const ticks = ticksBetween(cron, schedule.timezone, now, until);
    if (ticks.length >= count || window >= HORIZON_MS) return ticks.slice(0, count);
    window = Math.min(window * 8, HORIZON_MS);
  }
}
