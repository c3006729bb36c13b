import { describe, expect, it } from 'vitest';
import { createTemplateEnvironment } from '../src/templating/helpers.js';
import { pathOnlyRenderer } from '../src/templating/path-only.js';
import { compileTemplate } from '../src/templating/render.js';

// The reference: Handlebars itself, in the same environment and with the options render.ts uses.
const environment = createTemplateEnvironment();

function handlebars(source: string, html: boolean, context: object): string {
  return environment.compile(source, { noEscape: !html, strict: false })(context);
}

function fast(source: string, html: boolean) {
  return pathOnlyRenderer(environment.parseWithoutProcessing(source), { html, helpers: environment.helpers });
}

class Money {
  toString() {
    return '12.50 EUR';
  }
}

const contexts: object[] = [
  {},
  { id: 42, status: 'shipped', name: 'Ada <Lovelace> & "co" `x` = \'y\'', flag: false, zero: 0, none: null },
  { id: '7', new: { status: 'paid', amount: 12.5, nested: { deep: 'yes' } }, old: null, list: [1, 2, 3] },
  { id: 1n, new: { status: undefined, amount: Number.NaN }, old: { status: 'new' }, text: 'abc' },
  { id: () => 'called', new: new Money(), old: { status: { toHTML: () => '<b>html</b>' } } },
  { id: { toString: () => 'object' }, new: Object.create({ status: 'inherited' }), text: 'abc' },
];

const templates = [
  'Order {{id}} {{status}}',
  'Order {{ id }} of {{entity.name}} went from {{old.status}} to {{new.status}}',
  '{{new.amount}}|{{new.nested.deep}}|{{new.missing.deeper}}|{{old.status.length}}',
  '{{name}}/{{{name}}}/{{&name}}',
  '{{flag}} {{zero}} {{none}} {{list}} {{text.length}}',
  'no mustache at all',
  '',
];

describe('path-only templates', () => {
  it('render as Handlebars renders them, or decline', () => {
    let answered = 0;
    for (const source of templates) {
      for (const html of [false, true]) {
        const renderer = fast(source, html);
        expect(renderer, source).toBeDefined();
        for (const context of contexts) {
          const reference = handlebars(source, html, context);
          const result = renderer!(context);
          if (result !== undefined) {
            answered++;
            expect(result, `${source} (html ${html}) with ${Object.keys(context).join(',')}`).toBe(reference);
          }
          // Whatever the path, compileTemplate gives Handlebars' output.
          expect(compileTemplate(source, { html })(context)).toBe(reference);
        }
      }
    }
    // Most of these are answered without Handlebars: the test cannot pass by declining everything.
    expect(answered).toBeGreaterThan(templates.length * 2 * 3);
  });

  it('declines values Handlebars prints in its own way', () => {
    const render = fast('{{id}}', false)!;
    expect(render({ id: () => 'called' })).toBeUndefined();
    expect(render({ id: { toString: () => 'object' } })).toBeUndefined();
    expect(render({ id: [1, 2] })).toBeUndefined();
    expect(fast('{{new.status}}', false)!({ new: Object.create({ status: 'inherited' }) })).toBeUndefined();
    expect(fast('{{text.length}}', false)!({ text: 'abc' })).toBeUndefined();
  });

  it('leaves helpers, blocks and other syntax to Handlebars', () => {
    for (const source of [
      '{{uppercase name}}',
      '{{#if a}}x{{/if}}',
      '{{! a comment }}x',
      '{{~name}} x',
      '\\{{name}} {{id}}',
      '{{this.name}}',
      '{{../name}}',
      '{{@root.name}}',
      '{{[a b]}}',
      '{{list.[0]}}',
      '{{lookup}}',
      '{{constructor}}',
      '{{a.__proto__}}',
    ]) {
      expect(fast(source, false), source).toBeUndefined();
    }
  });
});
