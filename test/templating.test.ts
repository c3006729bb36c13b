import { describe, expect, it } from 'vitest';
import { buildTemplateContext, type TemplateContextInput } from '../src/templating/context.js';
import { MAX_JSON_DEPTH } from '../src/json-depth.js';
import { CURRENCY_FORMAT_CACHE_LIMIT, cachedCurrencyFormats } from '../src/templating/helpers.js';
import { compileTemplate, renderDeep } from '../src/templating/render.js';

const text = { html: false } as const;
const html = { html: true } as const;

function render(source: string, context: object = {}): string {
  return compileTemplate(source, text)(context);
}

describe('helpers', () => {
  it('uppercase and lowercase', () => {
    expect(render('{{uppercase name}}/{{lowercase name}}', { name: 'Ada L' })).toBe('ADA L/ada l');
    expect(render('[{{uppercase missing}}][{{lowercase null}}]', { null: null })).toBe('[][]');
    expect(render('{{uppercase 12}}')).toBe('12');
  });

  it('truncate keeps the suffix within the length', () => {
    expect(render('{{truncate s 8}}', { s: 'Hello wonderful world' })).toBe('Hello w…');
    expect(render('{{truncate s 8 "..."}}', { s: 'Hello wonderful world' })).toBe('Hello...');
    expect(render('{{truncate s 50}}', { s: 'short' })).toBe('short');
    expect(render('{{truncate s 3}}', { s: '😀😀😀😀' })).toBe('😀😀…');
    expect(render('[{{truncate s 3}}]', {})).toBe('[]');
  });

  it('default falls back for null, missing and empty values only', () => {
    expect(render('{{default a "n/a"}}|{{default b "n/a"}}|{{default c "n/a"}}', { a: null, c: '' })).toBe(
      'n/a|n/a|n/a',
    );
    expect(render('{{default a "n/a"}}|{{default b "n/a"}}', { a: 0, b: 'set' })).toBe('0|set');
    expect(render('[{{default a}}]')).toBe('[]');
  });

  it('currency formats numbers and numeric text', () => {
    expect(render('{{currency a}}', { a: 1234.5 })).toBe('$1,234.50');
    expect(render('{{currency a "EUR" "de-DE"}}', { a: '1234.5' })).toBe('1.234,50\u00a0€');
    expect(render('{{currency a "JPY"}}', { a: 1234 })).toBe('¥1,234');
    expect(render('[{{currency a}}][{{currency b}}]', { b: 'abc' })).toBe('[][]');
    expect(render('{{currency a code locale}}', { a: 5, code: null, locale: null })).toBe('$5.00');
  });

  it('currency reports a malformed currency code', () => {
    expect(() => render('{{currency 1 "US"}}')).toThrow(/currency "US"/);
    expect(() => render('{{currency 1 "XYZ"}}')).toThrow(/currency "XYZ" .*not an ISO 4217 currency code/);
  });

  it('currency keeps a bounded number of formatters, whatever codes and locales rows hold', () => {
    for (let i = 0; i < CURRENCY_FORMAT_CACHE_LIMIT + 50; i++) {
      expect(render('{{currency 1 "EUR" locale}}', { locale: `en-US-x-r${i}` })).toBe('€1.00');
    }
    expect(cachedCurrencyFormats()).toBe(CURRENCY_FORMAT_CACHE_LIMIT);
  });

  it('formatDate accepts ISO text, Dates and epoch milliseconds', () => {
    const at = '2026-11-22T03:04:05.123456+00:00';
    expect(render('{{formatDate at}}', { at })).toBe('2026-11-22 03:04 UTC');
    expect(render('{{formatDate at "date"}}', { at })).toBe('2026-11-22');
    expect(render('{{formatDate at "iso"}}', { at })).toBe('2026-11-22T03:04:05.123Z');
    expect(render('{{formatDate at "DD/MM/YYYY HH:mm:ss"}}', { at: '2026-11-22T05:04:05+02:00' })).toBe(
      '22/11/2026 03:04:05',
    );
    expect(render('{{formatDate at "date"}}', { at: new Date(Date.UTC(2026, 0, 2)) })).toBe('2026-01-02');
    expect(render('{{formatDate at "iso"}}', { at: 0 })).toBe('1970-01-01T00:00:00.000Z');
    expect(render('[{{formatDate at}}][{{formatDate bad}}]', { bad: 'soon' })).toBe('[][]');
  });

  it('round rounds half away from zero', () => {
    expect(
      render('{{round a}} {{round a 2}} {{round b 2}} {{round c}}', { a: 2.5, b: '1.005', c: -2.5 }),
    ).toBe('3 2.5 1.01 -3');
    expect(render('[{{round a}}]')).toBe('[]');
    expect(render('{{round a places}}', { a: 1234.5, places: null })).toBe('1235');
    expect(render('{{round a -2}}', { a: 1250 })).toBe('1300');
  });

  it('join joins arrays', () => {
    expect(render('{{join tags}}|{{join tags " / "}}', { tags: ['a', 'b', null] })).toBe('a, b, |a / b / ');
    expect(render('[{{join missing}}]')).toBe('[]');
  });

  it('json stringifies', () => {
    expect(render('{{json v}}', { v: { a: [1, 'x'] } })).toBe('{"a":[1,"x"]}');
    expect(render('[{{json missing}}]')).toBe('[]');
  });

  it('eq works as a block and as a value, with type-aware equality', () => {
    expect(render('{{#eq status "paid"}}yes{{else}}no{{/eq}}', { status: 'paid' })).toBe('yes');
    expect(render('{{#eq status "paid"}}yes{{else}}no{{/eq}}', { status: 'open' })).toBe('no');
    expect(render('{{#if (eq total 10)}}ten{{/if}}', { total: '10.00' })).toBe('ten');
    expect(render('{{#eq status "paid"}}{{status}}{{/eq}}', { status: 'paid' })).toBe('paid');
    expect(render('{{#gt total 100}}big{{else}}small{{/gt}}', { total: '150' })).toBe('big');
    expect(render('{{#ne a b}}differ{{/ne}}', { a: 1, b: 2 })).toBe('differ');
  });
});

describe('compileTemplate', () => {
  it('does not escape plain-text output', () => {
    expect(render('Hi {{name}}', { name: '<b>Tom & Jerry</b>' })).toBe('Hi <b>Tom & Jerry</b>');
  });

  it('escapes HTML output', () => {
    expect(compileTemplate('Hi {{name}}', html)({ name: '<b>Tom & Jerry</b>' })).toBe(
      'Hi &lt;b&gt;Tom &amp; Jerry&lt;/b&gt;',
    );
  });

  it('renders missing fields as empty', () => {
    expect(render('[{{missing}}][{{new.missing.deeper}}]', { new: {} })).toBe('[][]');
  });

  it('compiles each (source, mode) once', () => {
    const source = 'Order {{order_number}} (compile once)';
    expect(compileTemplate(source, text)).toBe(compileTemplate(source, text));
    expect(compileTemplate(source, html)).toBe(compileTemplate(source, html));
    expect(compileTemplate(source, html)).not.toBe(compileTemplate(source, text));
  });

  it('throws a clear error for an unclosed block', () => {
    expect(() => compileTemplate('Hello {{#if paid}}paid', text)).toThrow(
      /template "Hello \{\{#if paid\}\}paid" could not be compiled: Parse error on line 1/,
    );
    expect(() => compileTemplate('{{#if a}}x{{/each}}', text)).toThrow(
      /could not be compiled: if doesn't match each/,
    );
  });

  it('wraps render errors with the template excerpt', () => {
    const long = `{{#if}}x{{/if}}${'-'.repeat(100)}`;
    expect(() => compileTemplate(long, text)({})).toThrow(
      /template "\{\{#if\}\}x\{\{\/if\}\}-+…" failed to render: #if requires/,
    );
  });
});

describe('renderDeep', () => {
  const context = {
    new: { amount: 12.5, paid: true, tags: ['a'], name: 'Ada', note: null },
    order_number: 'A-1',
  };

  it('renders strings in nested objects and arrays, leaving keys and other values alone', () => {
    const value = {
      subject: 'Order {{order_number}}',
      to: ['{{new.name}}', 'ops'],
      meta: { count: 3, '{{k}}': 'x' },
    };
    expect(renderDeep(value, context, text)).toEqual({
      subject: 'Order A-1',
      to: ['Ada', 'ops'],
      meta: { count: 3, '{{k}}': 'x' },
    });
  });

  it('keeps the raw type of a lone simple expression', () => {
    const value = {
      amount: '{{new.amount}}',
      paid: '{{ new.paid }}',
      tags: '{{new.tags}}',
      note: '{{new.note}}',
    };
    expect(renderDeep(value, context, text)).toEqual({ amount: 12.5, paid: true, tags: ['a'], note: null });
  });

  it('renders everything else to text', () => {
    const value = [
      '{{new.name}}',
      'Total {{new.amount}}',
      '{{uppercase new.name}}',
      '{{new.missing}}',
      '{{json}}',
    ];
    expect(renderDeep(value, context, text)).toEqual(['Ada', 'Total 12.5', 'ADA', '', '']);
  });

  it('does not change its input', () => {
    const value = { a: ['{{order_number}}'] };
    renderDeep(value, context, text);
    expect(value).toEqual({ a: ['{{order_number}}'] });
  });

  it('refuses values nested deeper than rulebook handles, with a clear error instead of a stack overflow', () => {
    const nested = (depth: number) => {
      let value: unknown = '{{order_number}}';
      for (let level = 0; level < depth; level++) value = { a: value };
      return value;
    };
    expect(() => renderDeep(nested(MAX_JSON_DEPTH), context, text)).not.toThrow();
    expect(() => renderDeep(nested(5_000), context, text)).toThrow(/nested more than 100 levels deep/);
  });
});

describe('buildTemplateContext', () => {
  const input: TemplateContextInput = {
    event: {
      id: '42',
      operation: 'on_update',
      rowKey: { id: 7 },
      actorId: 'user-1',
      createdAt: new Date(Date.UTC(2026, 0, 2, 3, 4, 5)),
      oldRow: { id: 7, order_number: 'A-7', status: 'open', rule: 'row rule', now: 'row now' },
      newRow: { id: 7, order_number: 'A-7', status: 'paid', rule: 'row rule', now: 'row now' },
    },
    rule: { id: 'rule-1', name: 'Order paid' },
    entity: { id: 'entity-1', name: 'orders', schemaName: 'shop' },
    now: new Date(Date.UTC(2026, 0, 2, 3, 4, 6)),
  };

  it('exposes the row, the change and its surroundings', () => {
    const context = buildTemplateContext(input);
    expect(context).toMatchObject({
      order_number: 'A-7',
      status: 'paid',
      new: input.event.newRow,
      old: input.event.oldRow,
      changed_fields: ['status'],
      entity: { id: 'entity-1', name: 'orders', schema_name: 'shop' },
      event: {
        id: '42',
        operation: 'on_update',
        row_key: { id: 7 },
        actor_id: 'user-1',
        created_at: '2026-01-02T03:04:05.000Z',
      },
      rule: { id: 'rule-1', name: 'Order paid' },
      now: '2026-01-02T03:04:06.000Z',
    });
    expect(render('{{order_number}} is {{status}} (was {{old.status}}) by {{rule.name}}', context)).toBe(
      'A-7 is paid (was open) by Order paid',
    );
  });

  it('lets the named keys win over row columns', () => {
    const context = buildTemplateContext(input);
    expect(context.rule).toEqual({ id: 'rule-1', name: 'Order paid' });
    expect(context.now).toBe('2026-01-02T03:04:06.000Z');
  });

  it('spreads the old row of a delete', () => {
    const event = { ...input.event, operation: 'on_delete' as const, newRow: null };
    const context = buildTemplateContext({ ...input, event });
    expect(context).toMatchObject({ status: 'open', new: null, changed_fields: [] });
    expect(context.entity).toEqual({ id: 'entity-1', name: 'orders', schema_name: 'shop' });
  });
});
