import Handlebars from 'handlebars';
import { createTemplateEnvironment } from './helpers.js';
import { errorText } from '../error-text.js';

/*
 * URL templates: every value a `{{…}}` puts into a URL is percent-encoded as a URI component, so
 * that row data stays inside the path segment or query component it was placed in. A value of
 * `../../admin?x=` becomes `..%2F..%2Fadmin%3Fx%3D`: one segment, no new query.
 *
 * One encoding (encodeURIComponent) serves both places: it leaves only A-Z a-z 0-9 - _ . ! ~ * ' ( )
 * unencoded, which are literal in a path segment, a query component and a fragment alike, and it
 * encodes / ? # & = % and spaces, which would otherwise move the value somewhere else.
 */

const ENCODE_HELPER = 'rulebookUrlComponent';

const environment = createTemplateEnvironment();
environment.registerHelper(ENCODE_HELPER, (value: unknown) => encodeURIComponent(textOf(value)));

function textOf(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (value instanceof Handlebars.SafeString) return value.toString();
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

type Node = hbs.AST.Node;

function helperPath(loc: hbs.AST.SourceLocation): hbs.AST.PathExpression {
  return {
    type: 'PathExpression',
    data: false,
    depth: 0,
    parts: [ENCODE_HELPER],
    original: ENCODE_HELPER,
    loc,
  };
}

function isHelperCall(mustache: hbs.AST.MustacheStatement): boolean {
  if (mustache.params.length > 0 || mustache.hash !== undefined) return true;
  const path = mustache.path as Node;
  if (path.type !== 'PathExpression') return false;
  const { parts, data } = path as hbs.AST.PathExpression;
  return !data && parts.length === 1 && Object.hasOwn(environment.helpers, parts[0]!);
}

/** Routes every mustache's output through the encoding helper; literal text is left as written. */
function encodeMustaches(program: hbs.AST.Program): void {
  for (const statement of program.body) {
    const node = statement as Node;
    if (node.type === 'MustacheStatement') {
      const mustache = node as hbs.AST.MustacheStatement;
      const inner: hbs.AST.Expression = isHelperCall(mustache)
        ? ({
            type: 'SubExpression',
            path: mustache.path as hbs.AST.PathExpression,
            params: mustache.params,
            hash: mustache.hash,
            loc: mustache.loc,
          } as hbs.AST.SubExpression)
        : mustache.path;
      Object.assign(mustache, {
        path: helperPath(mustache.loc),
        params: [inner],
        hash: undefined,
        escaped: false,
      });
    } else if (node.type === 'BlockStatement') {
      const block = node as hbs.AST.BlockStatement;
      encodeMustaches(block.program);
      if (block.inverse) encodeMustaches(block.inverse);
    } else if (node.type === 'PartialStatement' || node.type === 'PartialBlockStatement') {
      throw new Error('partials cannot be used in a URL template');
    }
  }
}

const cache = new Map<string, (context: object) => string>();
/** Past this many templates the least recently used one is compiled again when next needed. */
const CACHE_LIMIT = 1_000;

/**
 * Renders a URL template with every interpolated value percent-encoded (see above). Throws an Error
 * quoting the template when it does not compile or render.
 */
export function renderUrlTemplate(source: string, context: object): string {
  let render = cache.get(source);
  if (render === undefined) {
    let template: Handlebars.TemplateDelegate;
    try {
      const ast = environment.parse(source);
      encodeMustaches(ast);
      template = environment.compile(ast, { noEscape: true, strict: false });
    } catch (error) {
      throw new Error(`URL template ${JSON.stringify(source)} could not be compiled: ${errorText(error)}`, {
        cause: error,
      });
    }
    render = (data) => template(data);
    cache.set(source, render);
    if (cache.size > CACHE_LIMIT) cache.delete(cache.keys().next().value!);
  } else {
    cache.delete(source);
    cache.set(source, render);
  }
  try {
    return render(context);
  } catch (error) {
    throw new Error(`URL template ${JSON.stringify(source)} failed to render: ${errorText(error)}`, {
      cause: error,
    });
  }
}
