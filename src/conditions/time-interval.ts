/**
 * The intervals of the time-relative operators (older_than, newer_than, within_next): ISO 8601
 * durations of whole numbers ("P2D", "PT36H") or whole numbers with units ("2 days",
 * "1 hour 30 minutes"), longer than zero. workflow.time_interval_problem refuses the same texts
 * when a rule is written; the daemon computes the instants here, for event rules at match time and
 * for scheduled rules at the tick, so that both read an interval alike.
 */
export interface TimeInterval {
  readonly text: string;
  readonly years: number;
  readonly months: number;
  /** Weeks are counted as 7 days. */
  readonly days: number;
  readonly milliseconds: number;
}

const ISO =
  /^P(?=\d|T\d)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$/;
const UNIT = 'years?|months?|weeks?|days?|hours?|minutes?|mins?|seconds?|secs?';
const WORDS = new RegExp(`^(\\d+ *(?:${UNIT}))(?: +\\d+ *(?:${UNIT}))*$`);
const WORD = new RegExp(`(\\d+) *(${UNIT})`, 'g');

/** Reads an interval; throws an Error saying what is wrong (the rule check says the same). */
export function parseTimeInterval(value: unknown): TimeInterval {
  if (typeof value !== 'string') {
    throw new Error(
      `needs "value" to be an interval such as "2 days" or "PT36H", got ${JSON.stringify(value) ?? 'nothing'}`,
    );
  }
  const text = value.trim();
  let years = 0;
  let months = 0;
  let days = 0;
  let milliseconds = 0;
  const iso = ISO.exec(text.toUpperCase());
  if (iso) {
    const [, y, mo, w, d, h, mi, s] = iso.map((part) => Number(part ?? 0));
    years = y!;
    months = mo!;
    days = w! * 7 + d!;
    milliseconds = ((h! * 60 + mi!) * 60 + s!) * 1_000;
  } else if (WORDS.test(text.toLowerCase())) {
    for (const [, amountText, unit] of text.toLowerCase().matchAll(WORD)) {
      const amount = Number(amountText);
      if (unit!.startsWith('y')) years += amount;
      else if (unit!.startsWith('mo')) months += amount;
      else if (unit!.startsWith('w')) days += amount * 7;
      else if (unit!.startsWith('d')) days += amount;
      else if (unit!.startsWith('h')) milliseconds += amount * 3_600_000;
      else if (unit!.startsWith('mi')) milliseconds += amount * 60_000;
      else milliseconds += amount * 1_000;
    }
  } else {
    throw new Error(
      `needs "value" to be an interval such as "2 days", "1 hour 30 minutes" or "PT36H" (whole numbers), got ${JSON.stringify(value)}`,
    );
  }
  if (years + months + days + milliseconds === 0) {
    throw new Error(`needs an interval longer than zero, got ${JSON.stringify(value)}`);
  }
  return { text, years, months, days, milliseconds };
}

/**
 * `instant` moved by `interval` (back when `sign` is -1), on the UTC calendar as PostgreSQL does
 * with its session in UTC: months first (the 31st of a shorter month becomes its last day), then
 * days of 24 hours, then the rest.
 */
export function shiftInstant(instant: Date, interval: TimeInterval, sign: 1 | -1): Date {
  const date = new Date(instant.getTime());
  const months = sign * (interval.years * 12 + interval.months);
  if (months !== 0) {
    const day = date.getUTCDate();
    date.setUTCDate(1);
    date.setUTCMonth(date.getUTCMonth() + months);
    const last = new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 0)).getUTCDate();
    date.setUTCDate(Math.min(day, last));
  }
  return new Date(date.getTime() + sign * (interval.days * 86_400_000 + interval.milliseconds));
}

/** The interval's length, or undefined when it has months or years, whose length depends on the date. */
export function fixedMilliseconds(interval: TimeInterval): number | undefined {
  if (interval.years !== 0 || interval.months !== 0) return undefined;
  return interval.days * 86_400_000 + interval.milliseconds;
}
