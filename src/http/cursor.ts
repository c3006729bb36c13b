import { HttpError } from './respond.js';
import { isUuid } from '../is-uuid.js';

/** A keyset position: a row's sort time (UTC, microseconds, as Postgres prints it) and its id. */
export interface Cursor {
  readonly time: string;
  readonly id: string;
}

const TIME_PATTERN = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$/;

/**
 * A time that exists: the pattern alone lets "2026-13-45T25:61:00.000000" through, which Postgres
 * then refuses with an error that became a 500. Date.UTC rolls such fields over, so a time exists
 * when its fields come back unchanged.
 */
function isRealTime(text: string): boolean {
  if (!TIME_PATTERN.test(text)) return false;
  const [year, month, day, hour, minute, second] = text.split(/[-T:.]/).map(Number) as number[];
  if (year! < 1) return false;
  const date = new Date(Date.UTC(2000, month! - 1, day, hour, minute, second));
  date.setUTCFullYear(year!);
  return (
    date.getUTCFullYear() === year &&
    date.getUTCMonth() === month! - 1 &&
    date.getUTCDate() === day &&
    date.getUTCHours() === hour &&
    date.getUTCMinutes() === minute &&
    date.getUTCSeconds() === second
  );
}

/** Opaque to clients: base64url of a small JSON array. */
export function encodeCursor(cursor: Cursor): string {
  return Buffer.from(JSON.stringify([cursor.time, cursor.id])).toString('base64url');
}

export function decodeCursor(text: string | undefined): Cursor | undefined {
  if (text === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    parsed = undefined;
  }
  if (
    !Array.isArray(parsed) ||
    parsed.length !== 2 ||
    typeof parsed[0] !== 'string' ||
    !isRealTime(parsed[0]) ||
    !isUuid(parsed[1])
  ) {
    throw new HttpError(
      400,
      'query parameter "cursor" is not a cursor this server gave out; use next_cursor as is',
    );
  }
  return { time: parsed[0], id: parsed[1] };
}
