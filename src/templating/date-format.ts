import { parseInstantText } from '../conditions/instant.js';
import { parseNumericText } from '../conditions/numeric.js';

const NAMED_FORMATS: Readonly<Record<string, string>> = {
  date: 'YYYY-MM-DD',
  datetime: 'YYYY-MM-DD HH:mm UTC',
};

const TOKENS = /YYYY|MM|DD|HH|mm|ss/g;

/**
 * Formats a date in UTC. `format` is 'iso', 'date' (YYYY-MM-DD), 'datetime' (YYYY-MM-DD HH:mm UTC) or a
 * pattern of the tokens YYYY MM DD HH mm ss; anything else in a pattern is copied as is. Returns '' for a
 * value that is not a date.
 */
export function formatDate(value: unknown, format = 'datetime'): string {
  const date = toDate(value);
  if (date === undefined) return '';
  if (format === 'iso') return date.toISOString();
  const pattern = NAMED_FORMATS[format] ?? format;
  return pattern.replace(TOKENS, (token) => formatToken(date, token));
}

/** A Date from a Date, epoch milliseconds (number or numeric text) or date/timestamp text. */
export function toDate(value: unknown): Date | undefined {
  let millis = NaN;
  if (value instanceof Date) millis = value.getTime();
  else if (typeof value === 'number') millis = value;
  else if (typeof value === 'string') {
    const micros = parseInstantText(value);
    millis = Number.isNaN(micros) ? parseNumericText(value) : Math.floor(micros / 1000);
  }
  const date = new Date(millis);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

function formatToken(date: Date, token: string): string {
  switch (token) {
    case 'YYYY':
      return String(date.getUTCFullYear()).padStart(4, '0');
    case 'MM':
      return pad2(date.getUTCMonth() + 1);
    case 'DD':
      return pad2(date.getUTCDate());
    case 'HH':
      return pad2(date.getUTCHours());
    case 'mm':
      return pad2(date.getUTCMinutes());
    default:
      return pad2(date.getUTCSeconds());
  }
}

function pad2(value: number): string {
  return String(value).padStart(2, '0');
}
