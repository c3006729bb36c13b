import { parseInstantText } from './instant.js';
import { compareNumericTexts, parseNumericText } from './numeric.js';

/**
 * A value classified once, so that comparing many values against it (a rule's condition value against
 * every event) does not parse it again each time.
 */
export interface Operand {
  /** The value itself; a missing value (undefined) is null. */
  readonly value: unknown;
  /** The number it stands for (a JSON number or numeric text), else NaN. */
  readonly number: number;
  /** The epoch microseconds it stands for (date or timestamp text, or a Date), else NaN. */
  readonly micros: number;
  /** The boolean it stands for (true/false or "true"/"false"), else undefined. */
  readonly bool: boolean | undefined;
}

export function toOperand(value: unknown): Operand {
  switch (typeof value) {
    case 'number':
      return { value, number: Number.isFinite(value) ? value : NaN, micros: NaN, bool: undefined };
    case 'boolean':
      return { value, number: NaN, micros: NaN, bool: value };
    case 'string':
      return {
        value,
        number: parseNumericText(value),
        micros: parseInstantText(value),
        bool: parseBooleanText(value),
      };
    case 'undefined':
      return { value: null, number: NaN, micros: NaN, bool: undefined };
    default:
      return { value, number: NaN, micros: dateMicros(value), bool: undefined };
  }
}

/**
 * Orders `value` against `operand`: negative, zero or positive, or undefined when the two cannot be
 * ordered (null on either side, an object, or kinds that do not meet such as a number and "abc").
 *
 * A number meets a number or numeric text numerically, so 9 < "10". Two texts that both look numeric
 * compare as numbers, two that are both dates or timestamps compare as instants, and any other two texts
 * compare exactly, code unit by code unit. Booleans meet booleans and "true"/"false", with false < true.
 */
export function compareToOperand(value: unknown, operand: Operand): number | undefined {
  switch (typeof value) {
    case 'number':
      return Number.isFinite(value) ? orderNumbers(value, operand.number) : undefined;
    case 'string':
      return compareTextToOperand(value, operand);
    case 'boolean':
      return operand.bool === undefined ? undefined : orderBooleans(value, operand.bool);
    case 'object':
      return orderNumbers(dateMicros(value), operand.micros);
    default:
      return undefined;
  }
}

/** Whether `value` equals `operand` by the rules of {@link compareToOperand}; null (or missing) equals only null. */
export function equalsOperand(value: unknown, operand: Operand): boolean {
  const other = operand.value;
  if (value === other) return true;
  if (value === null || value === undefined) return other === null;
  if (other === null) return false;
  if (typeof value === 'string' && typeof other === 'string') return textsEqual(value, operand.micros);
  if (isStructured(value) || isStructured(other)) return structurallyEqual(value, other);
  return compareToOperand(value, operand) === 0;
}

/**
 * Two texts are equal when they are the same text, or the same instant written two ways. Unlike
 * ordering, equality never reads texts as numbers: "02134" and "2134" are different zip codes.
 */
function textsEqual(text: string, otherMicros: number): boolean {
  if (Number.isNaN(otherMicros)) return false;
  return parseInstantText(text) === otherMicros;
}

/** Type-aware equality: 10 equals "10.0", "2026-01-01T10:00:00+02:00" equals "2026-01-01T08:00:00Z". */
export function valuesEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === null || a === undefined || b === null || b === undefined) return isAbsent(a) && isAbsent(b);
  if (isStructured(a) || isStructured(b)) return structurallyEqual(a, b);
  if (typeof a === 'string' && typeof b === 'string') return textsEqual(a, parseInstantText(b));
  return compareToOperand(a, toOperand(b)) === 0;
}

/** Type-aware ordering of two values; see {@link compareToOperand}. */
export function compareValues(a: unknown, b: unknown): number | undefined {
  return compareToOperand(a, toOperand(b));
}

function compareTextToOperand(text: string, operand: Operand): number | undefined {
  const other = operand.value;
  switch (typeof other) {
    case 'string':
      return compareTexts(text, other, operand);
    case 'number':
      return orderNumbers(parseNumericText(text), operand.number);
    case 'boolean': {
      const bool = parseBooleanText(text);
      return bool === undefined ? undefined : orderBooleans(bool, other);
    }
    case 'object':
      return orderNumbers(parseInstantText(text), operand.micros);
    default:
      return undefined;
  }
}

function compareTexts(text: string, other: string, operand: Operand): number {
  if (text === other) return 0;
  if (!Number.isNaN(operand.number)) {
    const number = parseNumericText(text);
    if (!Number.isNaN(number)) return compareNumericTexts(text, number, other, operand.number);
  } else if (!Number.isNaN(operand.micros)) {
    const micros = parseInstantText(text);
    if (!Number.isNaN(micros)) return micros < operand.micros ? -1 : micros > operand.micros ? 1 : 0;
  }
  return text < other ? -1 : 1;
}

function orderNumbers(a: number, b: number): number | undefined {
  if (Number.isNaN(a) || Number.isNaN(b)) return undefined;
  return a < b ? -1 : a > b ? 1 : 0;
}

function orderBooleans(a: boolean, b: boolean): number {
  return a === b ? 0 : a ? 1 : -1;
}

function parseBooleanText(text: string): boolean | undefined {
  return text === 'true' ? true : text === 'false' ? false : undefined;
}

function dateMicros(value: unknown): number {
  return value instanceof Date ? value.getTime() * 1000 : NaN;
}

function isAbsent(value: unknown): boolean {
  return value === null || value === undefined;
}

/** Arrays and plain JSON objects: compared member by member, never ordered. */
function isStructured(value: unknown): value is object {
  return typeof value === 'object' && value !== null && !(value instanceof Date);
}

/**
 * Member by member, with an explicit stack rather than recursion: row values are jsonb of any depth,
 * and a deep one must not overflow the call stack.
 */
function structurallyEqual(a: unknown, b: unknown): boolean {
  const pending: [unknown, unknown][] = [[a, b]];
  while (pending.length > 0) {
    const [left, right] = pending.pop()!;
    if (left === right) continue;
    const leftStructured = isStructured(left);
    const rightStructured = isStructured(right);
    if (!leftStructured && !rightStructured) {
      if (!valuesEqual(left, right)) return false;
      continue;
    }
    if (!leftStructured || !rightStructured || Array.isArray(left) !== Array.isArray(right)) return false;
    if (Array.isArray(left) && Array.isArray(right)) {
      if (left.length !== right.length) return false;
      for (let index = 0; index < left.length; index++) pending.push([left[index], right[index]]);
      continue;
    }
    const keys = Object.keys(left);
    if (keys.length !== Object.keys(right).length) return false;
    for (const key of keys) {
      if (!Object.hasOwn(right, key)) return false;
      pending.push([(left as Record<string, unknown>)[key], (right as Record<string, unknown>)[key]]);
    }
  }
  return true;
}
