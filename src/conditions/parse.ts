import { parseTimeInterval } from './time-interval.js';

export const OPERATORS = [
  'equals',
  'not_equals',
  'changed_from',
  'changed_to',
  'changed',
  'greater_than',
  'less_than',
  'greater_or_equal',
  'less_or_equal',
  'contains',
  'in',
  'not_in',
  'is_null',
  'is_not_null',
  'older_than',
  'newer_than',
  'within_next',
] as const;

export type Operator = (typeof OPERATORS)[number];

/** One entry of `trigger_conditions.field_conditions`, validated. */
export interface FieldCondition {
  readonly field_name: string;
  readonly operator: Operator;
  /** Absent for the operators that need none (changed, changed_from, is_null, is_not_null). */
  readonly value?: unknown;
  readonly previous_value?: unknown;
}

const NEEDS_VALUE: ReadonlySet<Operator> = new Set([
  'equals',
  'not_equals',
  'changed_to',
  'greater_than',
  'less_than',
  'greater_or_equal',
  'less_or_equal',
  'contains',
  'in',
  'not_in',
  'older_than',
  'newer_than',
  'within_next',
]);

/** The operators whose value is an interval from now (see time-interval.ts). */
export const TIME_RELATIVE: ReadonlySet<Operator> = new Set(['older_than', 'newer_than', 'within_next']);

/**
 * Validates a rule's `trigger_conditions` (`{ field_conditions: [...] }`, null, or the bare list) into
 * field conditions. The database checks the same on write; this guards against rows that bypassed it.
 * Throws an Error naming the offending index and problem.
 */
export function parseConditions(conditions: unknown): FieldCondition[] {
  const list = fieldConditionList(conditions);
  return list.map((entry, index) =>
    parseFieldCondition(entry, `trigger_conditions.field_conditions[${index}]`),
  );
}

function fieldConditionList(conditions: unknown): readonly unknown[] {
  if (conditions === null || conditions === undefined) return [];
  if (Array.isArray(conditions)) return conditions;
  if (typeof conditions !== 'object') {
    throw new Error(`trigger_conditions must be a JSON object, got ${describe(conditions)}`);
  }
  const list = (conditions as { field_conditions?: unknown }).field_conditions;
  if (list === null || list === undefined) return [];
  if (!Array.isArray(list)) {
    throw new Error(`trigger_conditions.field_conditions must be an array, got ${describe(list)}`);
  }
  return list;
}

function parseFieldCondition(entry: unknown, where: string): FieldCondition {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
    throw new Error(`${where}: each condition must be a JSON object, got ${describe(entry)}`);
  }
  const raw = entry as Record<string, unknown>;
  const fieldName = raw.field_name;
  if (typeof fieldName !== 'string' || fieldName === '') {
    throw new Error(`${where}: field_name is missing or not a non-empty string`);
  }
  const operator = raw.operator;
  if (typeof operator !== 'string') throw new Error(`${where}: operator is missing or not a string`);
  if (!isOperator(operator)) {
    throw new Error(`${where}: unknown operator "${operator}" (known: ${OPERATORS.join(', ')})`);
  }
  const hasValue = Object.hasOwn(raw, 'value');
  if (NEEDS_VALUE.has(operator) && !hasValue) {
    throw new Error(`${where}: operator "${operator}" needs a "value"`);
  }
  if ((operator === 'in' || operator === 'not_in') && !Array.isArray(raw.value)) {
    throw new Error(
      `${where}: operator "${operator}" needs "value" to be an array, got ${describe(raw.value)}`,
    );
  }
  if (TIME_RELATIVE.has(operator)) {
    try {
      parseTimeInterval(raw.value);
    } catch (error) {
      throw new Error(`${where}: operator "${operator}" ${(error as Error).message}`, { cause: error });
    }
  }
  if (operator === 'changed_from' && !Object.hasOwn(raw, 'previous_value')) {
    throw new Error(`${where}: operator "changed_from" needs a "previous_value"`);
  }
  const condition: { -readonly [K in keyof FieldCondition]: FieldCondition[K] } = {
    field_name: fieldName,
    operator,
  };
  if (hasValue) condition.value = raw.value;
  if (Object.hasOwn(raw, 'previous_value')) condition.previous_value = raw.previous_value;
  return condition;
}

function isOperator(name: string): name is Operator {
  return (OPERATORS as readonly string[]).includes(name);
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `${typeof value} ${JSON.stringify(value)}`;
}
