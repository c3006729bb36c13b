/**
 * A renderer for the common template made only of text and `{{dotted.path}}` mustaches, such as
 * `Order {{id}} went to {{new.status}}`. Handlebars sets up every call afresh (it wraps each
 * registered helper for the call), which costs more than such a template's lookups: for a rule
 * engine rendering an alert's title and message per event, a large part of the event's time.
 *
 * It gives Handlebars' output or declines: a lookup that is anything but an own property of an
 * object, or a value that is not text, a number, a boolean or missing (objects print through their
 * toString or toHTML, functions are called), returns undefined, and the caller renders with
 * Handlebars itself.
 */
export type PathOnlyRenderer = (context: object) => string | undefined;

type Part = string | readonly string[];

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;
/** Own properties that Handlebars still refuses to read. */
const GUARDED = new Set([
  'constructor',
  '__proto__',
  '__defineGetter__',
  '__defineSetter__',
  '__lookupGetter__',
  '__lookupSetter__',
]);

/**
 * The renderer for a parsed template, or undefined when the template has anything else (helpers,
 * blocks, comments, partials, whitespace control, escaped mustaches, `this`, `../`, `@data`, `[...]`
 * segments, or a bare name that is also a helper, which Handlebars calls).
 */
export function pathOnlyRenderer(
  ast: hbs.AST.Program,
  options: { readonly html: boolean; readonly helpers: Readonly<Record<string, unknown>> },
): PathOnlyRenderer | undefined {
  const parts: Part[] = [];
  const escaped: boolean[] = [];
  for (const statement of ast.body) {
    if (statement.type === 'ContentStatement') {
      const content = statement as hbs.AST.ContentStatement;
      // A backslash may have escaped a mustache into this text.
      if (
        (content.original as unknown) !== content.value ||
        content.value.includes('\\') ||
        content.value.includes('{{')
      )
        return undefined;
      parts.push(content.value);
      escaped.push(false);
      continue;
    }
    if (statement.type !== 'MustacheStatement') return undefined;
    const mustache = statement as hbs.AST.MustacheStatement;
    if (mustache.params.length > 0 || mustache.hash || mustache.strip.open || mustache.strip.close)
      return undefined;
    if (mustache.path.type !== 'PathExpression') return undefined;
    const path = mustache.path as hbs.AST.PathExpression;
    if (path.data || path.depth !== 0 || path.original !== path.parts.join('.')) return undefined;
    if (!path.parts.every((part) => IDENTIFIER.test(part) && !GUARDED.has(part))) return undefined;
    if (path.parts.length === 1 && Object.hasOwn(options.helpers, path.parts[0]!)) return undefined;
    parts.push(path.parts);
    escaped.push(options.html && mustache.escaped);
  }
  return (context) => {
    let out = '';
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]!;
      if (typeof part === 'string') {
        out += part;
        continue;
      }
      const value = lookup(context, part);
      if (value === DECLINED) return undefined;
      if (value === undefined || value === null) continue;
      const text = String(value);
      out += escaped[i] ? escapeHtml(text) : text;
    }
    return out;
  };
}

const DECLINED = Symbol('declined');

function lookup(
  context: object,
  path: readonly string[],
): string | number | boolean | bigint | null | undefined | typeof DECLINED {
  let current: unknown = context;
  for (const key of path) {
    if (current === null || current === undefined) return current;
    if (typeof current !== 'object' || !Object.hasOwn(current, key)) {
      // Handlebars gives a missing property as missing, and checks inherited ones against its lists.
      return (current as Record<string, unknown>)[key] == null ? undefined : DECLINED;
    }
    current = (current as Record<string, unknown>)[key];
  }
  switch (typeof current) {
    case 'string':
    case 'number':
    case 'boolean':
    case 'bigint':
    case 'undefined':
      return current;
    default:
      return current === null ? null : DECLINED;
  }
}

const HTML_ESCAPES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#x27;',
  '`': '&#x60;',
  '=': '&#x3D;',
};
const HTML_SPECIAL = /[&<>"'`=]/;
const HTML_SPECIALS = /[&<>"'`=]/g;

/** As Handlebars' escapeExpression escapes text. */
function escapeHtml(text: string): string {
  return HTML_SPECIAL.test(text) ? text.replace(HTML_SPECIALS, (char) => HTML_ESCAPES[char]!) : text;
}
