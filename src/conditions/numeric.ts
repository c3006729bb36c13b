// A plain decimal or exponent literal: "10", "-3.25", ".5", "1e6". Hex, "Infinity" and blanks are text.
const NUMERIC_TEXT = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** The number a numeric string spells, or NaN when the string is not a plain numeric literal. */
export function parseNumericText(text: string): number {
  return NUMERIC_TEXT.test(text) ? Number(text) : NaN;
}

/**
 * Orders two numeric strings whose values are already known to be `numberA` and `numberB`.
 * Doubles only hold 15-17 significant digits, so when they tie, `bigint` and `numeric` texts such as
 * "9007199254740993" and "9007199254740992" are compared digit by digit instead.
 */
export function compareNumericTexts(textA: string, numberA: number, textB: string, numberB: number): number {
  if (numberA !== numberB) return numberA < numberB ? -1 : 1;
  if (textA === textB) return 0;
  const a = splitPlainDecimal(textA);
  const b = splitPlainDecimal(textB);
  if (!a || !b) return 0;
  if (a.negative !== b.negative) return isZero(a) && isZero(b) ? 0 : a.negative ? -1 : 1;
  const magnitude = compareMagnitudes(a, b);
  return a.negative ? -magnitude : magnitude;
}

interface PlainDecimal {
  negative: boolean;
  integer: string;
  fraction: string;
}

/** Sign, integer digits without leading zeros and fraction digits without trailing zeros; undefined for exponent forms. */
function splitPlainDecimal(text: string): PlainDecimal | undefined {
  if (/[eE]/.test(text)) return undefined;
  const negative = text.startsWith('-');
  const unsigned = text.replace(/^[+-]/, '');
  const dot = unsigned.indexOf('.');
  const integer = (dot === -1 ? unsigned : unsigned.slice(0, dot)).replace(/^0+/, '');
  const fraction = dot === -1 ? '' : unsigned.slice(dot + 1).replace(/0+$/, '');
  return { negative, integer, fraction };
}

function isZero(decimal: PlainDecimal): boolean {
  return decimal.integer === '' && decimal.fraction === '';
}

function compareMagnitudes(a: PlainDecimal, b: PlainDecimal): number {
  if (a.integer.length !== b.integer.length) return a.integer.length < b.integer.length ? -1 : 1;
  if (a.integer !== b.integer) return a.integer < b.integer ? -1 : 1;
  const width = Math.max(a.fraction.length, b.fraction.length);
  const fractionA = a.fraction.padEnd(width, '0');
  const fractionB = b.fraction.padEnd(width, '0');
  return fractionA === fractionB ? 0 : fractionA < fractionB ? -1 : 1;
}
