import { parseCron } from './cron.js';

/** A scheduled rule's trigger_conditions: `{"schedule": "<cron>", "timezone": "<IANA zone>"}`. */
export interface Schedule {
  /** The cron expression: 5 fields (minute hour day month weekday), or 6 with seconds first. */
  readonly expression: string;
  /** The IANA time zone the expression is read in; UTC when the rule names none. */
  readonly timezone: string;
}

export type ParsedSchedule =
  { readonly ok: true; readonly schedule: Schedule } | { readonly ok: false; readonly message: string };

/**
 * Reads and checks a scheduled rule's trigger_conditions with the cron reading the scheduler runs
 * (src/scheduler/cron.ts), so that what passes here is what fires. The database
 * already refuses a missing schedule, a wrong field count and an unknown time zone
 * (workflow.check_schedule); this also catches what only a cron parser sees, such as "61 * * * *",
 * and rules written before that check existed.
 */
export function parseSchedule(conditions: unknown): ParsedSchedule {
  if (typeof conditions !== 'object' || conditions === null || Array.isArray(conditions)) {
    return { ok: false, message: 'trigger_conditions must be an object with a "schedule"' };
  }
  const { schedule, timezone } = conditions as { schedule?: unknown; timezone?: unknown };
  if (typeof schedule !== 'string' || schedule.trim() === '') {
    return { ok: false, message: 'trigger_conditions.schedule must be a cron expression' };
  }
  const expression = schedule.trim().split(/\s+/).join(' ');
  const fields = expression.split(' ').length;
  if (fields !== 5 && fields !== 6) {
    return {
      ok: false,
      message: `schedule "${schedule}" has ${fields} fields; a cron expression has 5, or 6 with seconds first`,
    };
  }
  try {
    parseCron(expression);
  } catch (error) {
    return {
      ok: false,
      message: `schedule "${schedule}" is not a valid cron expression: ${(error as Error).message}`,
    };
  }
  let zone = 'UTC';
  if (timezone !== undefined && timezone !== null) {
    if (typeof timezone !== 'string' || !isTimeZone(timezone)) {
      return { ok: false, message: `timezone ${JSON.stringify(timezone)} is not an IANA time zone name` };
    }
    zone = timezone;
  }
  return { ok: true, schedule: { expression, timezone: zone } };
}

function isTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: name });
    return true;
  } catch {
    return false;
  }
}
