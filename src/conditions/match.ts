import { compareToOperand, equalsOperand, toOperand, type Operand } from './compare.js';
import type { Clock } from '../clock.js';
import { systemClock } from '../clock.js';
import { parseInstantText } from './instant.js';
import { parseConditions, type FieldCondition } from './parse.js';
import { parseTimeInterval, shiftInstant } from './time-interval.js';
import { anyFieldChanged, fieldChanged, fieldValue, subjectRow, type RowChange } from './row-change.js';

export { parseConditions, OPERATORS, type FieldCondition, type Operator } from './parse.js';
export { fieldsChanged, type RowChange } from './row-change.js';

export type ConditionMatcher = (event: RowChange) => boolean;

type ConditionTest = (event: RowChange) => boolean;

/**
 * Compiles a rule's `trigger_conditions` once into a matcher: values are classified up front so each
 * event only parses its own fields. Conditions are ANDed; an empty list matches everything.
 *
 * For on_update events a rule reacts only when a field its conditions name changed, and a rule without
 * conditions only when any field changed, so that an update touching nothing the rule watches never
 * fires it. Throws like {@link parseConditions} for malformed conditions. The time-relative
 * operators read `clock` when an event is matched.
 */
export function compileConditions(conditions: unknown, clock: Clock = systemClock): ConditionMatcher {
  const list = parseConditions(conditions);
  const tests = list.map((condition) => compileCondition(condition, clock));
  const watchedFields = [...new Set(list.map((condition) => condition.field_name))];
  return (event) => {
    if (event.operation === 'on_update' && !watchedFieldChanged(event, watchedFields)) return false;
    for (const test of tests) {
      if (!test(event)) return false;
    }
    return true;
  };
}

const matcherByConditions = new WeakMap<object, ConditionMatcher>();
const matchUnconditionally = compileConditions(null);

/**
 * Whether `event` satisfies `conditions`. Compiled matchers are cached per conditions object, so the
 * object must not be mutated after its first use.
 */
export function conditionsMatch(conditions: unknown, event: RowChange): boolean {
  if (conditions === null || conditions === undefined) return matchUnconditionally(event);
  if (typeof conditions !== 'object') return compileConditions(conditions)(event);
  let matcher = matcherByConditions.get(conditions);
  if (matcher === undefined) {
    matcher = compileConditions(conditions);
    matcherByConditions.set(conditions, matcher);
  }
  return matcher(event);
}

function watchedFieldChanged(event: RowChange, watchedFields: readonly string[]): boolean {
  if (watchedFields.length === 0) return anyFieldChanged(event);
  for (const field of watchedFields) {
    if (fieldChanged(event, field)) return true;
  }
  return false;
}

function compileCondition(condition: FieldCondition, clock: Clock): ConditionTest {
  const field = condition.field_name;
  const operand = toOperand(condition.value);
  const subject = (event: RowChange): unknown => fieldValue(subjectRow(event), field);
  switch (condition.operator) {
    case 'equals':
      return (event) => equalsOperand(subject(event), operand);
    case 'not_equals':
      return (event) => !equalsOperand(subject(event), operand);
    case 'greater_than':
      return orderTest(subject, operand, (order) => order > 0);
    case 'less_than':
      return orderTest(subject, operand, (order) => order < 0);
    case 'greater_or_equal':
      return orderTest(subject, operand, (order) => order >= 0);
    case 'less_or_equal':
      return orderTest(subject, operand, (order) => order <= 0);
    case 'contains':
      return containsTest(subject, condition.value, operand);
    case 'in': {
      const members = (condition.value as readonly unknown[]).map(toOperand);
      return (event) => isMember(subject(event), members);
    }
    case 'not_in': {
      const members = (condition.value as readonly unknown[]).map(toOperand);
      return (event) => !isMember(subject(event), members);
    }
    case 'is_null':
      return (event) => isAbsent(subject(event));
    case 'is_not_null':
      return (event) => !isAbsent(subject(event));
    case 'changed':
      return (event) => event.operation === 'on_update' && fieldChanged(event, field);
    case 'older_than':
    case 'newer_than':
    case 'within_next':
      return timeRelativeTest(subject, condition, clock);
    case 'changed_from': {
      const previous = toOperand(condition.previous_value);
      return (event) =>
        event.operation === 'on_update' &&
        equalsOperand(fieldValue(event.oldRow, field), previous) &&
        fieldChanged(event, field);
    }
    case 'changed_to':
      return (event) =>
        event.operation === 'on_update' &&
        equalsOperand(fieldValue(event.newRow, field), operand) &&
        !equalsOperand(fieldValue(event.oldRow, field), operand);
  }
}

/**
 * older_than: the field is before now minus the interval; newer_than: after it; within_next: from
 * now to now plus the interval. A field that is not a date or timestamp never matches.
 */
function timeRelativeTest(
  subject: (event: RowChange) => unknown,
  condition: FieldCondition,
  clock: Clock,
): ConditionTest {
  const interval = parseTimeInterval(condition.value);
  return (event) => {
    const value = subject(event);
    const at =
      typeof value === 'string'
        ? parseInstantText(value) / 1000
        : value instanceof Date
          ? value.getTime()
          : NaN;
    if (Number.isNaN(at)) return false;
    const now = clock.now();
    switch (condition.operator) {
      case 'older_than':
        return at < shiftInstant(now, interval, -1).getTime();
      case 'newer_than':
        return at > shiftInstant(now, interval, -1).getTime();
      default:
        return at >= now.getTime() && at <= shiftInstant(now, interval, 1).getTime();
    }
  };
}

/** An ordering operator; values that cannot be ordered against the operand never match. */
function orderTest(
  subject: (event: RowChange) => unknown,
  operand: Operand,
  accepts: (order: number) => boolean,
): ConditionTest {
  return (event) => {
    const order = compareToOperand(subject(event), operand);
    return order !== undefined && accepts(order);
  };
}

/** Text contains the value as a substring; an array contains an element equal to the value. */
function containsTest(
  subject: (event: RowChange) => unknown,
  value: unknown,
  operand: Operand,
): ConditionTest {
  const needle =
    typeof value === 'string'
      ? value
      : typeof value === 'number' || typeof value === 'boolean'
        ? String(value)
        : undefined;
  return (event) => {
    const haystack = subject(event);
    if (typeof haystack === 'string') return needle !== undefined && haystack.includes(needle);
    return Array.isArray(haystack) && haystack.some((element) => equalsOperand(element, operand));
  };
}

function isMember(value: unknown, members: readonly Operand[]): boolean {
  for (const member of members) {
    if (equalsOperand(value, member)) return true;
  }
  return false;
}

function isAbsent(value: unknown): boolean {
  return value === null || value === undefined;
}
