const DIGIT_0 = 48;
const DASH = 45;
const COLON = 58;
const DOT = 46;
const PLUS = 43;

/**
 * Epoch microseconds of a date or timestamp text, or NaN when the text is not one.
 *
 * Accepts what Postgres emits for `date`, `timestamp` and `timestamptz` (to_jsonb or text output) and
 * ISO 8601: "2026-11-22", "2026-11-22T03:04:05.123456+00:00", "2026-11-22 03:04:05+05:30",
 * "2026-11-22T03:04:05Z". Texts without an offset (`date`, `timestamp`) are read as UTC, the only
 * reading that does not depend on the server's zone. Hand-written rather than a regex or Date.parse
 * because it runs per event field and Date.parse drops microseconds. Integer microseconds are exact up
 * to year 2255; later instants stay well within a millisecond.
 */
export function parseInstantText(text: string): number {
  const length = text.length;
  if (length < 10 || text.charCodeAt(4) !== DASH || text.charCodeAt(7) !== DASH) return NaN;
  const year = readDigits(text, 0, 4);
  const month = readDigits(text, 5, 2);
  const day = readDigits(text, 8, 2);
  if (year < 0 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return NaN;
  const midnight = daysFromCivil(year, month, day) * 86_400;
  if (length === 10) return midnight * 1_000_000;

  const separator = text[10];
  if (separator !== 'T' && separator !== 't' && separator !== ' ') return NaN;
  const hour = readDigits(text, 11, 2);
  const minute = readDigits(text, 14, 2);
  if (text.charCodeAt(13) !== COLON || hour < 0 || hour > 23 || minute < 0 || minute > 59) return NaN;
  let second = 0;
  let micros = 0;
  let index = 16;
  if (text.charCodeAt(index) === COLON) {
    second = readDigits(text, index + 1, 2);
    if (second < 0 || second > 59) return NaN;
    index += 3;
    if (text.charCodeAt(index) === DOT) {
      const fractionStart = ++index;
      // Digits past the sixth are below a microsecond and only need to be digits.
      for (let scale = 100_000; index < length && isDigit(text.charCodeAt(index)); index++, scale /= 10) {
        if (scale >= 1) micros += (text.charCodeAt(index) - DIGIT_0) * scale;
      }
      if (index === fractionStart) return NaN;
    }
  }
  const offsetSeconds = index === length ? 0 : parseOffsetSeconds(text, index);
  if (Number.isNaN(offsetSeconds)) return NaN;
  return (midnight + hour * 3_600 + minute * 60 + second - offsetSeconds) * 1_000_000 + micros;
}

/** Seconds east of UTC of an offset that runs to the end of `text`: "Z", "+05", "+0530", "-05:30", "+05:53:28". */
function parseOffsetSeconds(text: string, start: number): number {
  const length = text.length;
  const sign = text.charCodeAt(start);
  if (start === length - 1 && (text[start] === 'Z' || text[start] === 'z')) return 0;
  if (sign !== PLUS && sign !== DASH) return NaN;
  const hours = readDigits(text, start + 1, 2);
  if (hours < 0 || hours > 15) return NaN;
  let total = hours * 3_600;
  let index = start + 3;
  for (let unit = 60; index < length && unit >= 1; unit /= 60) {
    if (text.charCodeAt(index) === COLON) index++;
    const value = readDigits(text, index, 2);
    if (value < 0 || value > 59) return NaN;
    total += value * unit;
    index += 2;
  }
  if (index !== length) return NaN;
  return sign === DASH ? -total : total;
}

/** The unsigned integer spelled by `count` digits at `start`, or -1 when any of them is not a digit. */
function readDigits(text: string, start: number, count: number): number {
  let value = 0;
  for (let index = start; index < start + count; index++) {
    const code = text.charCodeAt(index);
    if (!isDigit(code)) return -1;
    value = value * 10 + (code - DIGIT_0);
  }
  return value;
}

function isDigit(code: number): boolean {
  return code >= DIGIT_0 && code <= DIGIT_0 + 9;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

/** Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
function daysFromCivil(year: number, month: number, day: number): number {
  const shiftedYear = month <= 2 ? year - 1 : year;
  const era = Math.floor(shiftedYear / 400);
  const yearOfEra = shiftedYear - era * 400;
  const monthFromMarch = (month + 9) % 12;
  const dayOfYear = Math.floor((153 * monthFromMarch + 2) / 5) + day - 1;
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear;
  return era * 146_097 + dayOfEra - 719_468;
}
