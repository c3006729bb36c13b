import Handlebars from 'handlebars';
import { compareValues, valuesEqual } from '../conditions/compare.js';
import { parseNumericText } from '../conditions/numeric.js';
import { formatDate } from './date-format.js';
import { errorText } from '../error-text.js';

type TemplateEnvironment = typeof Handlebars;

/** A fresh Handlebars environment with rulebook's helpers, isolated from the global one. */
export function createTemplateEnvironment(): TemplateEnvironment {
  const environment = Handlebars.create();
  for (const [name, helper] of Object.entries(VALUE_HELPERS)) {
    environment.registerHelper(name, withoutOptions(helper));
  }
  for (const [name, test] of Object.entries(COMPARISONS)) {
    environment.registerHelper(name, comparisonHelper(test));
  }
  return environment;
}

type ValueHelper = (...args: unknown[]) => unknown;

const VALUE_HELPERS: Readonly<Record<string, ValueHelper>> = {
  uppercase: (value) => textOf(value).toUpperCase(),
  lowercase: (value) => textOf(value).toLowerCase(),
  truncate,
  default: (value, fallback) =>
    value === null || value === undefined || value === '' ? (fallback ?? '') : value,
  currency,
  formatDate: (value, format) => formatDate(value, typeof format === 'string' ? format : undefined),
  round,
  join,
  json: (value) => (value === undefined ? '' : JSON.stringify(value)),
};

const COMPARISONS: Readonly<Record<string, (a: unknown, b: unknown) => boolean>> = {
  eq: valuesEqual,
  ne: (a, b) => !valuesEqual(a, b),
  gt: ordered((order) => order > 0),
  gte: ordered((order) => order >= 0),
  lt: ordered((order) => order < 0),
  lte: ordered((order) => order <= 0),
};

/** Values that cannot be ordered (null, objects, 5 and "abc") satisfy no ordering. */
function ordered(accepts: (order: number) => boolean): (a: unknown, b: unknown) => boolean {
  return (a, b) => {
    const order = compareValues(a, b);
    return order !== undefined && accepts(order);
  };
}

// Optional arguments given as null (say, a NULL column) take their defaults like omitted ones.

/** Shortens text to at most `length` characters, the suffix ('…' by default) included. */
function truncate(value: unknown, length: unknown, suffix: unknown): string {
  const text = textOf(value);
  const limit = toNumber(length);
  if (!Number.isInteger(limit) || limit < 0) return text;
  // By code point, so that an emoji is never cut in half.
  const characters = Array.from(text);
  if (characters.length <= limit) return text;
  const tail = Array.from(textOf(suffix ?? '…'));
  if (tail.length >= limit) return characters.slice(0, limit).join('');
  return characters.slice(0, limit - tail.length).join('') + tail.join('');
}

/**
 * Formatters kept, least recently used first out. Code and locale come from row data, so without a
 * bound every distinct pair a writer stores would stay in memory for the life of the daemon.
 */
export const CURRENCY_FORMAT_CACHE_LIMIT = 256;
const currencyFormats = new Map<string, Intl.NumberFormat>();
let knownCurrencies: ReadonlySet<string> | undefined;

/** How many currency formatters are cached now (for tests of the bound). */
export function cachedCurrencyFormats(): number {
  return currencyFormats.size;
}

function currency(amount: unknown, code: unknown, locale: unknown): string {
  const number = toNumber(amount);
  if (Number.isNaN(number)) return '';
  const currencyCode = textOf(code ?? 'USD');
  const localeName = textOf(locale ?? 'en-US');
  const key = `${localeName}|${currencyCode}`;
  let format = currencyFormats.get(key);
  if (format !== undefined) {
    currencyFormats.delete(key);
  } else {
    // Intl formats any three letters ("XYZ 5.00"); only ISO 4217 codes it knows are currencies.
    knownCurrencies ??= new Set(Intl.supportedValuesOf('currency'));
    const problem = knownCurrencies.has(currencyCode.toUpperCase())
      ? undefined
      : 'not an ISO 4217 currency code';
    try {
      if (problem !== undefined) throw new Error(problem);
      format = new Intl.NumberFormat(localeName, { style: 'currency', currency: currencyCode });
    } catch (error) {
      const reason = errorText(error);
      throw new Error(
        `currency: cannot format with currency "${currencyCode}" and locale "${localeName}": ${reason}`,
        {
          cause: error,
        },
      );
    }
    if (currencyFormats.size >= CURRENCY_FORMAT_CACHE_LIMIT) {
      const leastRecent = currencyFormats.keys().next().value;
      if (leastRecent !== undefined) currencyFormats.delete(leastRecent);
    }
  }
  currencyFormats.set(key, format);
  return format.format(number);
}

/** Rounds half away from zero to `places` decimals. */
function round(value: unknown, places: unknown): number | string {
  const number = toNumber(value);
  const digits = toNumber(places ?? 0);
  if (Number.isNaN(number) || !Number.isInteger(digits)) return '';
  const magnitude = Math.abs(number);
  // Shifting by the decimal exponent rather than multiplying avoids binary artefacts (1.005 -> 1.01).
  const shifted = String(magnitude).includes('e')
    ? magnitude * 10 ** digits
    : Number(`${magnitude}e${digits}`);
  const rounded = Number(`${Math.round(shifted)}e${-digits}`);
  if (!Number.isFinite(rounded)) return '';
  return number < 0 ? -rounded : rounded;
}

function join(values: unknown, separator: unknown): string {
  if (!Array.isArray(values)) return textOf(values);
  return values.map(textOf).join(textOf(separator ?? ', '));
}

/** Text for output: '' for null and undefined, JSON for objects and arrays. */
function textOf(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && !(value instanceof Date)) return JSON.stringify(value);
  return String(value);
}

function toNumber(value: unknown): number {
  if (typeof value === 'number') return Number.isFinite(value) ? value : NaN;
  return typeof value === 'string' ? parseNumericText(value.trim()) : NaN;
}

/** Handlebars passes its options object last; value helpers only see the template's own arguments. */
function withoutOptions(helper: ValueHelper): Handlebars.HelperDelegate {
  return (...args: unknown[]) => helper(...args.slice(0, -1));
}

/** Usable as a block (`{{#eq a b}}…{{else}}…{{/eq}}`) or as a value (`{{#if (eq a b)}}`). */
function comparisonHelper(test: (a: unknown, b: unknown) => boolean): Handlebars.HelperDelegate {
  return function (this: unknown, ...args: unknown[]) {
    const options = args[args.length - 1] as Handlebars.HelperOptions;
    const operands = args.slice(0, -1);
    const result = test(operands[0], operands[1]);
    if (typeof options.fn !== 'function') return result;
    return result ? options.fn(this) : options.inverse(this);
  };
}
