/**
 * Cron expressions read in a time zone, and the ticks they make between two instants.
 *
 * Why not node-cron's timers: they run on the wall clock (no injected clock), and they fire by
 * matching UTC instants against local time, so a time that does not exist on the day clocks go
 * forward never fires and one that happens twice when they go back fires twice. Here a schedule
 * is a list of local wall times; each becomes one instant as Temporal's "compatible"
 * disambiguation does: a wall time that happens twice means the first of them, one that does not
 * exist is moved forward by the length of the gap (02:30 on the spring-forward day in Berlin is
 * 03:30). A tick moved onto another tick's instant is that tick: the schedule runs once there.
 */

export interface CronExpression {
  readonly hasSeconds: boolean;
  readonly seconds: readonly boolean[];
  readonly minutes: readonly boolean[];
  readonly hours: readonly boolean[];
  readonly days: readonly boolean[];
  readonly months: readonly boolean[];
  readonly weekdays: readonly boolean[];
  /** Both day fields restricted: a day matches when either does (as in Vixie cron). */
  readonly eitherDay: boolean;
}

const MONTH_NAMES = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

interface FieldSpec {
  readonly name: string;
  readonly min: number;
  readonly max: number;
  readonly names?: readonly string[];
  /** Where names[0] counts from. */
  readonly nameBase?: number;
}

const FIELDS: Record<string, FieldSpec> = {
  second: { name: 'second', min: 0, max: 59 },
  minute: { name: 'minute', min: 0, max: 59 },
  hour: { name: 'hour', min: 0, max: 23 },
  day: { name: 'day of month', min: 1, max: 31 },
  month: { name: 'month', min: 1, max: 12, names: MONTH_NAMES, nameBase: 1 },
  weekday: { name: 'day of week', min: 0, max: 7, names: DAY_NAMES, nameBase: 0 },
};

/** Parses 5 fields (minute hour day month weekday) or 6 (second first). Throws naming the bad field. */
export function parseCron(expression: string): CronExpression {
  const parts = expression.trim().split(/\s+/);
  if (parts.length !== 5 && parts.length !== 6) {
    throw new Error(
      `"${expression}" has ${parts.length} fields; a cron expression has 5, or 6 with seconds first`,
    );
  }
  const hasSeconds = parts.length === 6;
  const [second, minute, hour, day, month, weekday] = hasSeconds ? parts : ['0', ...parts];
  const weekdays = parseField(weekday!, FIELDS.weekday!);
  if (weekdays[7]) weekdays[0] = true;
  return {
    hasSeconds,
    seconds: parseField(second!, FIELDS.second!),
    minutes: parseField(minute!, FIELDS.minute!),
    hours: parseField(hour!, FIELDS.hour!),
    days: parseField(day!, FIELDS.day!),
    months: parseField(month!, FIELDS.month!),
    weekdays,
    eitherDay: !isStar(day!) && !isStar(weekday!),
  };
}

function isStar(field: string): boolean {
  return field === '*' || field === '?';
}

function parseField(text: string, spec: FieldSpec): boolean[] {
  const allowed = new Array<boolean>(spec.max + 1).fill(false);
  for (const item of text.split(',')) {
    const [range, stepText, extra] = item.split('/');
    if (extra !== undefined || range === undefined) throw fieldError(text, spec);
    const step = stepText === undefined ? 1 : Number(stepText);
    if (!Number.isInteger(step) || step < 1 || stepText === '') throw fieldError(text, spec);
    let low: number;
    let high: number;
    if (isStar(range)) {
      low = spec.min;
      high = spec.name === 'day of week' ? 6 : spec.max;
    } else {
      const [from, to, more] = range.split('-');
      if (more !== undefined) throw fieldError(text, spec);
      low = value(from!, spec, text);
      high = to === undefined ? (stepText === undefined ? low : spec.max) : value(to, spec, text);
    }
    if (low > high) throw fieldError(text, spec);
    for (let at = low; at <= high; at += step) allowed[at] = true;
  }
  return allowed;
}

function value(text: string, spec: FieldSpec, field: string): number {
  const named = spec.names?.indexOf(text.toLowerCase()) ?? -1;
  const number = named >= 0 ? named + (spec.nameBase ?? 0) : /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(number >= spec.min && number <= spec.max)) throw fieldError(field, spec);
  return number;
}

function fieldError(text: string, spec: FieldSpec): Error {
  return new Error(`${spec.name} field "${text}" is not valid (${spec.min}-${spec.max})`);
}

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
/** Wider than any offset change: wall times this far either side of a range cover its folds. */
const MARGIN = 3 * HOUR;

/**
 * The ticks of `cron` in `zone` after `after` and not after `until`, in order, each once. `limit`
 * keeps the latest ones only, for a long stretch that is only being counted.
 */
export function ticksBetween(cron: CronExpression, zone: string, after: Date, until: Date): Date[] {
  const from = after.getTime();
  const to = until.getTime();
  if (to <= from) return [];
  const offsets = new ZoneOffsets(zone);
  const step = cron.hasSeconds ? SECOND : MINUTE;
  // Within a day there is at most one offset change. The wall times of (from, to] then lie
  // between from and to shifted by the smaller and the larger offset in force from a gap's length
  // before `from` (a time in a gap just before `from` is moved past it, into the range) to `to`.
  // Longer stretches take a margin wider than any change, rather than finding every change.
  const short = to - from <= DAY;
  const margin = short ? 0 : MARGIN;
  const ends = [offsets.at(from - MARGIN), offsets.at(from), offsets.at(to)];
  const wallEnd = to + Math.max(...ends) + margin;
  let wall = Math.floor((from + Math.min(...ends) - margin) / step) * step;
  const found = new Set<number>();
  while (wall <= wallEnd) {
    const date = new Date(wall);
    if (!cron.months[date.getUTCMonth() + 1] || !dayMatches(cron, date)) {
      wall = Math.floor(wall / DAY) * DAY + DAY;
      continue;
    }
    if (!cron.hours[date.getUTCHours()]) {
      wall = Math.floor(wall / HOUR) * HOUR + HOUR;
      continue;
    }
    if (!cron.minutes[date.getUTCMinutes()]) {
      wall = Math.floor(wall / MINUTE) * MINUTE + MINUTE;
      continue;
    }
    if (cron.seconds[date.getUTCSeconds()]) {
      const instant = offsets.instantOf(wall);
      if (instant > from && instant <= to) found.add(instant);
    }
    wall += step;
  }
  return [...found].sort((a, b) => a - b).map((ms) => new Date(ms));
}

function dayMatches(cron: CronExpression, date: Date): boolean {
  const day = cron.days[date.getUTCDate()] === true;
  const weekday = cron.weekdays[date.getUTCDay()] === true;
  return cron.eitherDay ? day || weekday : day && weekday;
}

/** Formats are costly to make, and the scheduler reads the same few zones every second. */
const formats = new Map<string, Intl.DateTimeFormat>();

function newFormat(zone: string): Intl.DateTimeFormat {
  const format = new Intl.DateTimeFormat('en-US', {
    timeZone: zone,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
  });
  formats.set(zone, format);
  return format;
}

/** A zone's UTC offsets, looked up once per minute of time. */
class ZoneOffsets {
  readonly #format: Intl.DateTimeFormat;
  readonly #cache = new Map<number, number>();

  constructor(zone: string) {
    this.#format = formats.get(zone) ?? newFormat(zone);
  }

  /** Milliseconds the zone's wall clock is ahead of UTC at `instant`. */
  at(instant: number): number {
    const minute = Math.floor(instant / MINUTE) * MINUTE;
    let offset = this.#cache.get(minute);
    if (offset === undefined) {
      const parts: Record<string, number> = {};
      for (const part of this.#format.formatToParts(minute)) parts[part.type] = Number(part.value);
      const wall = Date.UTC(parts.year!, parts.month! - 1, parts.day, parts.hour, parts.minute, parts.second);
      offset = wall - minute;
      this.#cache.set(minute, offset);
    }
    return offset;
  }

  /** The instant of a wall time (ms as if UTC), disambiguated as Temporal's "compatible" does. */
  instantOf(wall: number): number {
    const before = this.at(wall - 12 * HOUR);
    const after = this.at(wall + 12 * HOUR);
    const candidates = [wall - before, wall - after].filter((instant) => instant + this.at(instant) === wall);
    if (candidates.length > 0) return Math.min(...candidates);
    // In a gap: the offset before it carries the wall time past the gap.
    return wall - before;
  }
}
