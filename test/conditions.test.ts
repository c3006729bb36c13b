import { describe, expect, it } from 'vitest';
import { compareValues, valuesEqual } from '../src/conditions/compare.js';
import { ManualClock } from '../src/clock.js';
import { parseInstantText } from '../src/conditions/instant.js';
import {
  compileConditions,
  conditionsMatch,
  fieldsChanged,
  parseConditions,
  type RowChange,
} from '../src/conditions/match.js';

type Row = Record<string, unknown>;

const created = (newRow: Row): RowChange => ({ operation: 'on_create', oldRow: null, newRow });
const updated = (oldRow: Row, newRow: Row): RowChange => ({ operation: 'on_update', oldRow, newRow });
const deleted = (oldRow: Row): RowChange => ({ operation: 'on_delete', oldRow, newRow: null });

function condition(field_name: string, operator: string, extra: Row = {}) {
  return { field_conditions: [{ field_name, operator, ...extra }] };
}

/** Whether one condition holds for a created row whose `field` is `actual` (absent when undefined). */
function holds(operator: string, actual: unknown, value?: unknown): boolean {
  const row: Row = actual === undefined ? {} : { field: actual };
  const extra = value === undefined ? {} : { value };
  return conditionsMatch(condition('field', operator, extra), created(row));
}

describe('compareValues and valuesEqual', () => {
  it('compares numbers numerically, never as text', () => {
    expect(compareValues(9, 10)).toBe(-1);
    expect(compareValues('9', 10)).toBe(-1);
    expect(compareValues(9, '10')).toBe(-1);
    expect(compareValues('9', '10')).toBe(-1);
    expect(compareValues(100, 9)).toBe(1);
    expect(compareValues('100', '9')).toBe(1);
    expect(compareValues('-2.5', -3)).toBe(1);
    expect(valuesEqual(10.5, '10.50')).toBe(true);
    expect(valuesEqual('1e3', 1000)).toBe(true);
  });

  it('keeps bigint and numeric precision between numeric texts', () => {
    expect(valuesEqual('9007199254740993', '9007199254740992')).toBe(false);
    expect(compareValues('9007199254740993', '9007199254740992')).toBe(1);
    expect(compareValues('-0.10000000000000000001', '-0.1')).toBe(-1);
    expect(compareValues('0012.500', '12.5')).toBe(0);
    expect(valuesEqual(12.5, '0012.500')).toBe(true);
  });

  it('never reads two texts as numbers for equality: they are the same text or they differ', () => {
    expect(valuesEqual('02134', '2134')).toBe(false);
    expect(valuesEqual('0012.500', '12.5')).toBe(false);
    expect(valuesEqual('-0', '0')).toBe(false);
  });

  it('compares timestamps and dates as instants', () => {
    expect(valuesEqual('2026-01-01T10:00:00+02:00', '2026-01-01T08:00:00Z')).toBe(true);
    expect(valuesEqual('2026-01-01 08:00:00+00', '2026-01-01T08:00:00.000000+00:00')).toBe(true);
    expect(valuesEqual('2026-01-01', '2026-01-01T00:00:00Z')).toBe(true);
    expect(compareValues('2026-11-22T03:04:05.123457+00:00', '2026-11-22T03:04:05.123456+00:00')).toBe(1);
    expect(compareValues('2026-01-01T00:30:00+05:30', '2025-12-31T19:00:00Z')).toBe(0);
    expect(compareValues('2026-01-02', '2026-01-01T23:59:59.999999Z')).toBe(1);
  });

  it('compares booleans with their text forms', () => {
    expect(valuesEqual(true, 'true')).toBe(true);
    expect(valuesEqual('false', false)).toBe(true);
    expect(valuesEqual(true, 'yes')).toBe(false);
    expect(valuesEqual(true, 1)).toBe(false);
  });

  it('compares other text exactly and case-sensitively', () => {
    expect(valuesEqual('Shipped', 'shipped')).toBe(false);
    expect(compareValues('apple', 'banana')).toBe(-1);
    expect(compareValues('10', 'abc')).toBe(-1);
  });

  it('treats null and missing as equal to each other only, and unordered', () => {
    expect(valuesEqual(null, undefined)).toBe(true);
    expect(valuesEqual(null, 0)).toBe(false);
    expect(valuesEqual('', null)).toBe(false);
    expect(compareValues(null, 1)).toBeUndefined();
    expect(compareValues(null, null)).toBeUndefined();
  });

  it('compares JSON structurally and never orders it', () => {
    expect(valuesEqual({ a: [1, { b: 'x' }] }, { a: [1, { b: 'x' }] })).toBe(true);
    expect(valuesEqual({ a: 1 }, { a: 1, b: 2 })).toBe(false);
    expect(valuesEqual([1, 2], [2, 1])).toBe(false);
    expect(compareValues({ a: 1 }, 1)).toBeUndefined();
    expect(compareValues([1], [1])).toBeUndefined();
  });

  it('reports incomparable kinds as undefined', () => {
    expect(compareValues(10, 'abc')).toBeUndefined();
    expect(compareValues(10, '2026-01-01')).toBeUndefined();
    expect(compareValues(true, 1)).toBeUndefined();
  });
});

describe('parseInstantText', () => {
  it('reads Postgres and ISO forms to epoch microseconds', () => {
    expect(parseInstantText('1970-01-01')).toBe(0);
    expect(parseInstantText('1970-01-01T00:00:00.000001Z')).toBe(1);
    expect(parseInstantText('2026-11-22T03:04:05.123456+00:00')).toBe(
      Date.UTC(2026, 10, 22, 3, 4, 5, 123) * 1000 + 456,
    );
    expect(parseInstantText('2026-11-22T03:04:05.123456789-0130')).toBe(
      Date.UTC(2026, 10, 22, 4, 34, 5, 123) * 1000 + 456,
    );
    expect(parseInstantText('1900-03-01T00:00')).toBe(Date.UTC(1900, 2, 1) * 1000);
  });

  it('rejects texts that are not dates', () => {
    for (const text of [
      '2026-02-30',
      '2026-13-01',
      '2026-01-01T25:00',
      '2026-01-01T10:00:00+',
      '2026-01-01x',
      'order-2026',
    ]) {
      expect(parseInstantText(text), text).toBeNaN();
    }
  });
});

describe('conditionsMatch operators', () => {
  it('equals and not_equals', () => {
    expect(holds('equals', 'shipped', 'shipped')).toBe(true);
    expect(holds('equals', 'Shipped', 'shipped')).toBe(false);
    expect(holds('equals', '10.50', 10.5)).toBe(true);
    expect(holds('equals', 10, '10')).toBe(true);
    expect(holds('equals', true, 'true')).toBe(true);
    expect(holds('equals', '2026-01-01T10:00:00+02:00', '2026-01-01T08:00:00Z')).toBe(true);
    expect(holds('equals', null, null)).toBe(true);
    expect(holds('equals', undefined, null)).toBe(true);
    expect(holds('equals', undefined, 'x')).toBe(false);
    expect(holds('not_equals', 'pending', 'shipped')).toBe(true);
    expect(holds('not_equals', 10, '10.0')).toBe(false);
    expect(holds('not_equals', null, 'shipped')).toBe(true);
  });

  it('orders numbers, numeric texts and timestamps', () => {
    expect(holds('greater_than', 100, 9)).toBe(true);
    expect(holds('greater_than', '100', '9')).toBe(true);
    expect(holds('greater_than', '9', 10)).toBe(false);
    expect(holds('less_than', '9', 10)).toBe(true);
    expect(holds('greater_or_equal', '10.00', 10)).toBe(true);
    expect(holds('less_or_equal', 10, '10')).toBe(true);
    expect(holds('less_or_equal', 10.01, '10')).toBe(false);
    expect(holds('greater_than', '2026-01-01T10:00:00+02:00', '2026-01-01T07:59:59Z')).toBe(true);
    expect(holds('less_than', '2026-01-01', '2026-01-01T00:00:01Z')).toBe(true);
    expect(holds('greater_or_equal', '2026-01-01T10:00:00+02:00', '2026-01-01T08:00:00Z')).toBe(true);
  });

  it('never matches an ordering it cannot make, and never throws', () => {
    expect(holds('greater_than', { a: 1 }, 1)).toBe(false);
    expect(holds('less_than', { a: 1 }, 1)).toBe(false);
    expect(holds('greater_than', 'abc', 1)).toBe(false);
    expect(holds('less_than', null, 1)).toBe(false);
    expect(holds('greater_or_equal', undefined, 1)).toBe(false);
  });

  it('contains: substrings of text and elements of arrays, case-sensitively', () => {
    expect(holds('contains', 'express delivery', 'express')).toBe(true);
    expect(holds('contains', 'Express delivery', 'express')).toBe(false);
    expect(holds('contains', 'SKU-1502', 150)).toBe(true);
    expect(holds('contains', ['red', 'green'], 'green')).toBe(true);
    expect(holds('contains', ['red', 'green'], 'Green')).toBe(false);
    expect(holds('contains', [1, 2, 3], '2')).toBe(true);
    expect(holds('contains', [{ id: 1 }], { id: 1 })).toBe(true);
    expect(holds('contains', null, 'x')).toBe(false);
    expect(holds('contains', 42, '4')).toBe(false);
  });

  it('in and not_in test membership with type-aware equality', () => {
    expect(holds('in', 'paid', ['paid', 'shipped'])).toBe(true);
    expect(holds('in', 'open', ['paid', 'shipped'])).toBe(false);
    expect(holds('in', '2', [1, 2, 3])).toBe(true);
    expect(holds('in', undefined, [null])).toBe(true);
    expect(holds('not_in', 'open', ['paid', 'shipped'])).toBe(true);
    expect(holds('not_in', 3, ['1', '2', '3.0'])).toBe(false);
    expect(holds('not_in', null, ['paid'])).toBe(true);
  });

  it('is_null and is_not_null count a missing field as null', () => {
    expect(holds('is_null', null)).toBe(true);
    expect(holds('is_null', undefined)).toBe(true);
    expect(holds('is_null', '')).toBe(false);
    expect(holds('is_null', false)).toBe(false);
    expect(holds('is_not_null', 0)).toBe(true);
    expect(holds('is_not_null', undefined)).toBe(false);
  });

  it('never reads inherited properties as fields', () => {
    expect(holds('is_null', undefined, undefined)).toBe(true);
    expect(conditionsMatch(condition('constructor', 'is_null'), created({}))).toBe(true);
  });

  it('changed, changed_from and changed_to compare old and new on updates', () => {
    const shipped = updated({ status: 'paid' }, { status: 'shipped' });
    expect(conditionsMatch(condition('status', 'changed'), shipped)).toBe(true);
    expect(conditionsMatch(condition('status', 'changed_from', { previous_value: 'paid' }), shipped)).toBe(
      true,
    );
    expect(conditionsMatch(condition('status', 'changed_from', { previous_value: 'open' }), shipped)).toBe(
      false,
    );
    expect(conditionsMatch(condition('status', 'changed_to', { value: 'shipped' }), shipped)).toBe(true);
    expect(conditionsMatch(condition('status', 'changed_to', { value: 'paid' }), shipped)).toBe(false);
    const fromNull = updated({ shipped_at: null }, { shipped_at: '2026-01-01T08:00:00Z' });
    expect(conditionsMatch(condition('shipped_at', 'changed_from', { previous_value: null }), fromNull)).toBe(
      true,
    );
  });

  it('changed operators never match creates and deletes', () => {
    expect(conditionsMatch(condition('status', 'changed'), created({ status: 'x' }))).toBe(false);
    expect(conditionsMatch(condition('status', 'changed_to', { value: 'x' }), created({ status: 'x' }))).toBe(
      false,
    );
    expect(
      conditionsMatch(condition('status', 'changed_from', { previous_value: 'x' }), deleted({ status: 'x' })),
    ).toBe(false);
  });

  it('looks at the old row of a delete', () => {
    expect(
      conditionsMatch(
        condition('status', 'equals', { value: 'cancelled' }),
        deleted({ status: 'cancelled' }),
      ),
    ).toBe(true);
  });

  it('requires every condition (AND) and matches an empty or absent list', () => {
    const both = {
      field_conditions: [
        { field_name: 'status', operator: 'equals', value: 'paid' },
        { field_name: 'total', operator: 'greater_than', value: 100 },
      ],
    };
    expect(conditionsMatch(both, created({ status: 'paid', total: '150.00' }))).toBe(true);
    expect(conditionsMatch(both, created({ status: 'paid', total: 50 }))).toBe(false);
    expect(conditionsMatch(null, created({}))).toBe(true);
    expect(conditionsMatch({}, created({}))).toBe(true);
    expect(conditionsMatch({ field_conditions: [] }, deleted({}))).toBe(true);
  });
});

describe('on_update: a named field must have changed', () => {
  const paidRule = condition('status', 'equals', { value: 'paid' });

  it('matches when a named field changed', () => {
    expect(
      conditionsMatch(paidRule, updated({ status: 'open', note: 'a' }, { status: 'paid', note: 'a' })),
    ).toBe(true);
  });

  it('ignores updates that changed only other fields', () => {
    expect(
      conditionsMatch(paidRule, updated({ status: 'paid', note: 'a' }, { status: 'paid', note: 'b' })),
    ).toBe(false);
  });

  it('does not count a type-equal rewrite as a change', () => {
    expect(conditionsMatch(condition('total', 'changed'), updated({ total: 10.5 }, { total: 10.5 }))).toBe(
      false,
    );
    expect(conditionsMatch(condition('zip', 'changed'), updated({ zip: '02134' }, { zip: '2134' }))).toBe(
      true,
    );
    const sameInstant = updated({ at: '2026-01-01T10:00:00+02:00' }, { at: '2026-01-01T08:00:00+00:00' });
    expect(conditionsMatch(condition('at', 'is_not_null'), sameInstant)).toBe(false);
  });

  it('needs one of several named fields to change, then checks all conditions', () => {
    const rule = {
      field_conditions: [
        { field_name: 'status', operator: 'equals', value: 'paid' },
        { field_name: 'total', operator: 'greater_than', value: 100 },
      ],
    };
    expect(
      conditionsMatch(rule, updated({ status: 'paid', total: 90 }, { status: 'paid', total: 120 })),
    ).toBe(true);
    expect(
      conditionsMatch(
        rule,
        updated({ status: 'paid', total: 120, x: 1 }, { status: 'paid', total: 120, x: 2 }),
      ),
    ).toBe(false);
  });

  it('a rule without conditions reacts to any real change only', () => {
    expect(conditionsMatch(null, updated({ a: 1 }, { a: 2 }))).toBe(true);
    expect(conditionsMatch(null, updated({ a: 1 }, { a: 1 }))).toBe(false);
    expect(conditionsMatch(null, updated({ a: 1 }, { a: '1.0' }))).toBe(false);
  });
});

describe('fieldsChanged', () => {
  it('lists keys whose values differ, a missing key reading as null', () => {
    const event = updated(
      { id: 1, status: 'open', total: 10.5, code: '10.5', gone: 'x', empty: null, tags: ['a'] },
      { id: 1, status: 'paid', total: 10.5, code: '10.50', added: 5, tags: ['a', 'b'] },
    );
    expect(fieldsChanged(event).sort()).toEqual(['added', 'code', 'gone', 'status', 'tags']);
  });

  it('compares jsonb nested 20,000 deep without overflowing the stack', () => {
    const nested = (leaf: unknown) => {
      let value = leaf;
      for (let level = 0; level < 20_000; level++) value = level % 2 ? { a: value } : [value];
      return value;
    };
    expect(fieldsChanged(updated({ id: 1, body: nested(1) }, { id: 1, body: nested('1.0') }))).toEqual([]);
    expect(fieldsChanged(updated({ id: 1, body: nested(1) }, { id: 1, body: nested(2) }))).toEqual(['body']);
  });
});

describe('compileConditions', () => {
  it('returns a reusable matcher', () => {
    const matches = compileConditions(condition('total', 'greater_than', { value: '99.99' }));
    expect(matches(created({ total: 100 }))).toBe(true);
    expect(matches(created({ total: '99.98' }))).toBe(false);
  });

  it('gives the same answers as conditionsMatch on the cached path', () => {
    const rule = condition('total', 'less_than', { value: 10 });
    expect(conditionsMatch(rule, created({ total: 9 }))).toBe(true);
    expect(conditionsMatch(rule, created({ total: 11 }))).toBe(false);
  });
});

describe('parseConditions', () => {
  it('returns typed conditions', () => {
    expect(parseConditions({ field_conditions: [{ field_name: 'a', operator: 'changed' }] })).toEqual([
      { field_name: 'a', operator: 'changed' },
    ]);
    expect(parseConditions([{ field_name: 'a', operator: 'equals', value: null }])).toEqual([
      { field_name: 'a', operator: 'equals', value: null },
    ]);
    expect(parseConditions(null)).toEqual([]);
  });

  it.each([
    ['not an object', 'shipped', /trigger_conditions must be a JSON object, got string/],
    ['list not an array', { field_conditions: {} }, /field_conditions must be an array, got an object/],
    [
      'entry not an object',
      { field_conditions: [1] },
      /field_conditions\[0\]: each condition must be a JSON object/,
    ],
    ['no field_name', { field_conditions: [{ operator: 'changed' }] }, /\[0\]: field_name is missing/],
    [
      'unknown operator',
      {
        field_conditions: [
          { field_name: 'a', operator: 'changed' },
          { field_name: 'a', operator: 'like' },
        ],
      },
      /\[1\]: unknown operator "like"/,
    ],
    [
      'missing value',
      { field_conditions: [{ field_name: 'a', operator: 'equals' }] },
      /\[0\]: operator "equals" needs a "value"/,
    ],
    [
      'in without an array',
      { field_conditions: [{ field_name: 'a', operator: 'in', value: 'x' }] },
      /\[0\]: operator "in" needs "value" to be an array, got string "x"/,
    ],
    [
      'changed_from without previous_value',
      { field_conditions: [{ field_name: 'a', operator: 'changed_from' }] },
      /\[0\]: operator "changed_from" needs a "previous_value"/,
    ],
  ])('rejects %s', (_name, conditions, message) => {
    expect(() => parseConditions(conditions)).toThrow(message);
    expect(() => conditionsMatch(conditions, created({}))).toThrow(message);
  });
});

describe('time-relative operators', () => {
  const clock = new ManualClock('2030-03-31T12:00:00Z');
  const at = (operator: string, value: string, field: unknown) =>
    compileConditions(condition('due', operator, { value }), clock)(created({ due: field }));

  it('compare the field with the clock when the event is matched', () => {
    expect(at('older_than', '2 days', '2030-03-29T11:59:59Z')).toBe(true);
    expect(at('older_than', '2 days', '2030-03-29T12:00:00Z')).toBe(false);
    expect(at('newer_than', 'PT36H', '2030-03-30T00:00:01+00:00')).toBe(true);
    expect(at('newer_than', 'PT36H', '2030-03-29T23:59:59Z')).toBe(false);
    expect(at('within_next', '1 day', '2030-04-01')).toBe(true);
    expect(at('within_next', '1 day', '2030-04-01T12:00:01Z')).toBe(false);
    expect(at('within_next', '1 day', '2030-03-31T11:59:59Z')).toBe(false);
    // A month back from 31 March is the last day of February, as PostgreSQL reckons it.
    expect(at('older_than', '1 month', '2030-02-28T11:59:59Z')).toBe(true);
    expect(at('older_than', '1 month', '2030-02-28T12:00:01Z')).toBe(false);
    for (const notATime of [null, 'soon', 42, true]) expect(at('older_than', '1 day', notATime)).toBe(false);
    clock.advance(86_400_000);
    expect(at('older_than', '2 days', '2030-03-29T12:00:00Z')).toBe(true);
    clock.set('2030-03-31T12:00:00Z');
  });

  it('refuse an interval they cannot read, naming the condition', () => {
    expect(() => parseConditions(condition('due', 'older_than', { value: '2 fortnights' }))).toThrow(
      'trigger_conditions.field_conditions[0]: operator "older_than" needs "value" to be an interval',
    );
    expect(() => parseConditions(condition('due', 'within_next', { value: 'P0D' }))).toThrow(
      'needs an interval longer than zero',
    );
    expect(() => parseConditions(condition('due', 'newer_than'))).toThrow('needs a "value"');
  });
});
