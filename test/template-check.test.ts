import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { templateHelperNames, templateProblem } from '../src/templating/template-check.js';
import { compileTemplate } from '../src/templating/render.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

// The database refuses a rule action whose template would not compile (workflow.template_problem,
// a PL/pgSQL re-implementation of Handlebars' lexer and grammar). The daemon's Handlebars is the
// reference: every template here must get the same verdict from both.

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await db?.drop();
});

const GOOD = [
  '',
  'plain text, no mustaches',
  'Order {{order_number}} for {{customer.name}}',
  '{{new.amount}}',
  '{{{raw_html}}}',
  '{{&unescaped}}',
  '{{~trimmed~}}',
  '{{~{trimmed}~}}',
  '{{a ~}}',
  '{{../parent}}',
  '{{../../grand}}',
  '{{../this}}',
  '{{./a}}',
  '{{.}}',
  '{{..}}',
  '{{this}}',
  '{{this.a}}',
  '{{this/a}}',
  '{{foo/bar}}',
  '{{@index}}',
  '{{@../index}}',
  '{{@root.new.id}}',
  '{{[a b]}}',
  '{{foo.[a b].c}}',
  '{{12abc}}',
  '{{-1}}',
  '{{1.5}}',
  '{{true.x}}',
  '{{a$b}}',
  '{{a-b:c?}}',
  "{{'x'}}",
  '{{"a"}}',
  '{{as}}',
  '{{a\tb}}'.replace('a\tb', 'new.x'),
  '\\{{not a mustache}}',
  '\\{{{x',
  '\\\\{{new.id}}',
  'a \\{{b}} c {{new.id}}',
  '}}',
  '{ {} }',
  '{{! a comment }}',
  '{{!-- a }} comment --}}',
  '{{!--}}',
  '{{!-- x --~}}',
  '{{~! trimmed comment }}',
  '{{uppercase new.status}}',
  '{{truncate new.note 20 "…"}}',
  "{{default new.name 'nobody'}}",
  '{{currency new.total "EUR" "de-DE"}}',
  '{{formatDate now "yyyy-MM-dd"}}',
  '{{round new.x 2}}',
  '{{join new.tags ", "}}',
  '{{json new}}',
  '{{lookup new "a b"}}',
  '{{default new.a (uppercase new.b)}}',
  '{{default new.a (default new.b (lowercase new.c))}}',
  '{{truncate new.note length=3}}',
  '{{join new.tags sep=", " x=(uppercase "a")}}',
  '{{a "}}"}}'.replace('a ', 'uppercase '),
  "{{uppercase 'it\\'s'}}",
  '{{uppercase "say \\"hi\\""}}',
  '{{eq 1 null}}',
  '{{eq undefined false}}',
  '{{#if new.vip}}VIP{{/if}}',
  '{{#if new.vip}}VIP{{else}}regular{{/if}}',
  '{{#if a}}{{^}}{{/if}}',
  '{{#if a}}{{ else }}{{/if}}',
  '{{#if a}}{{else~}}{{/if}}',
  '{{#if a}}1{{else if b}}2{{else if c}}3{{else}}4{{/if}}',
  '{{#unless a}}x{{/unless}}',
  '{{#each new.lines}}{{sku}}: {{qty}}{{/each}}',
  '{{#each new.lines as |line i|}}{{i}} {{line.sku}}{{/each}}',
  '{{#each a as | x |}}{{x}}{{/each}}',
  '{{#with new.customer}}{{name}}{{/with}}',
  '{{#eq new.status "shipped"}}gone{{else}}here{{/eq}}',
  '{{#if (gt new.total 100)}}big{{/if}}',
  '{{#a}}{{/a }}',
  '{{#a.b}}{{/a.b}}',
  '{{#[a b]}}{{/[a b]}}',
  '{{^missing}}none{{/missing}}',
  '{{^missing}}none{{else}}some{{/missing}}',
  '{{#a}}{{else}}{{/a}}',
  '{{#a}}{{#b}}{{/b}}{{/a}}',
  '{{#if a}}{{#each b}}{{this}}{{/each}}{{/if}}',
  'line one\n{{new.a}}\nline {{new.b}}',
  '{{\n  new.a\n}}',
  '{{uppercase\nnew.a}}',
  '{{@ index}}',
  '{{#if a}}{{elsewhere}}{{/if}}',
  '{{elsewhere}}',
  '{{else_x}}',
];

const BAD = [
  '{{',
  '{{new.id',
  '{{}}',
  '{{ }}',
  '{{new.id}',
  '{{{new.id}}',
  '{{new.id}}}',
  '{{{new.id}}}}',
  '{{a}}}}',
  '{{#if new.vip}}VIP',
  '{{#if a}}{{#each b}}{{/if}}{{/each}}',
  '{{/if}}',
  '{{#if a}}x{{/unless}}',
  '{{#a/b}}{{/a.b}}',
  '{{else}}',
  '{{ else }}',
  '{{^}}',
  '{{#a}}{{else}}{{else}}{{/a}}',
  '{{^a}}{{else b}}{{/a}}',
  '{{#a}}{{else}}{{else b}}{{/a}}',
  '{{a.}}',
  '{{nosuchhelper new.a}}',
  '{{new.a new.b}}',
  '{{foo..bar}}',
  '{{#nosuch a}}{{/nosuch}}',
  '{{uppercase (nosuch a)}}',
  '{{this.uppercase a}}',
  '{{@uppercase a}}',
  '{{"uppercase" a}}',
  '{{uppercase a=1 b}}',
  '{{a=b}}',
  '{{uppercase a=}}',
  '{{uppercase a b=c d}}',
  '{{(uppercase a)}}',
  '{{#(uppercase a)}}{{/a}}',
  '{{uppercase ()}}',
  '{{uppercase (lowercase a}}',
  '{{uppercase a)}}',
  '{{a.this}}',
  '{{a/../b}}',
  '{{a/.}}',
  '{{a.1}}',
  '{{a.-1}}',
  '{{uppercase 1.5.3}}',
  "{{a'b}}",
  '{{a ,}}',
  '{{a|b}}',
  '{{a~ }}',
  '{{@}}',
  '{{uppercase "unterminated}}',
  '{{foo as |x|}}',
  '{{#each a as ||}}{{/each}}',
  '{{#each a as |x}}{{/each}}',
  '{{/if x}}',
  '{{a {{b}}}}',
  '{{!-- never closed }}',
  '{{! never closed',
  '{{> partial}}',
  '{{#> layout}}x{{/layout}}',
  '{{*decorator}}',
  '{{#*inline "x"}}y{{/inline}}',
  '{{{{raw}}}}x{{{{/raw}}}}',
  '\\\\{{',
  'ok {{new.a}} then {{#if}}',
  '{{a.[b]c}}',
  '{{.b}}',
];

async function databaseVerdicts(sources: readonly string[]): Promise<(string | null)[]> {
  const rows = await db.query<{ problem: string | null }>(
    'select workflow.template_problem(s) as problem from unnest($1::text[]) with ordinality as t (s, n) order by n',
    [sources],
  );
  return rows.map((row) => row.problem);
}

describe('template syntax check', () => {
  it('knows the same helpers as the renderer', async () => {
    const [row] = await db.query<{ helpers: string[] }>('select workflow.template_helpers() as helpers');
    expect([...row!.helpers].sort()).toEqual(templateHelperNames());
  });

  it('the reference accepts every good template, which the renderer compiles', () => {
    for (const source of GOOD) {
      expect(templateProblem(source), source).toBeUndefined();
      expect(() => compileTemplate(source, { html: false }), source).not.toThrow();
    }
  });

  it('the reference refuses every bad template', () => {
    for (const source of BAD) expect(templateProblem(source), source).toBeDefined();
  });

  it('the database agrees with the reference on every template of the corpus', async () => {
    const corpus = [...GOOD, ...BAD];
    const verdicts = await databaseVerdicts(corpus);
    const disagreements = corpus.flatMap((source, index) => {
      const reference = templateProblem(source) ?? null;
      const database = verdicts[index] ?? null;
      return (reference === null) === (database === null) ? [] : [{ source, reference, database }];
    });
    expect(disagreements).toEqual([]);
  });

  it('says what is wrong and where', async () => {
    const [unclosed, unknown, mismatch] = await databaseVerdicts([
      'Hi {{#if new.vip}}VIP',
      'x {{shout new.name}}',
      '{{#if a}}{{/each}}',
    ]);
    expect(unclosed).toBe('the block {{#if}} is never closed with {{/if}}');
    expect(unknown).toMatch(
      /^unknown helper "shout" \(known: .*uppercase.*\), in the \{\{…\}\} at character 3$/,
    );
    expect(mismatch).toBe('{{/each}} at character 10 does not close {{#if}}');
  });
});
