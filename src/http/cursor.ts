import { HttpError } from './respond.js';
import { isUuid } from '../is-uuid.js';

/** A keyset position: a row's sort time (UTC, microseconds, as Postgres prints it) and its id. */
export interface Cursor {
  readonly time: string;
  readonly id: string;
}

const TIME_PATTERN = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$/;

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
    !TIME_PATTERN.test(parsed[0]) ||
    !isUuid(parsed[1])
  ) {
    throw new HttpError(
      400,
      'query parameter "cursor" is not a cursor this server gave out; use next_cursor as is',
    );
  }
  return { time: parsed[0], id: parsed[1] };
}
