import { MAX_JSON_DEPTH, tooDeepMessage } from '../json-depth.js';
import { createTemplateEnvironment } from './helpers.js';
import { errorText } from '../error-text.js';
import { pathOnlyRenderer } from './path-only.js';

export interface TemplateOptions {
  /** HTML output escapes interpolated values; plain-text output (emails' text part, SMS, JSON payloads) must not. */
  readonly html: boolean;
}

export type RenderTemplate = (context: object) => string;

const environment = createTemplateEnvironment();

/** Per output mode; past this many templates the least recently used one is compiled again when next needed. */
const CACHE_LIMIT = 5_000;
const htmlTemplates = new Map<string, RenderTemplate>();
const textTemplates = new Map<string, RenderTemplate>();

/**
 * Compiles a Handlebars template once per (source, html) and returns the cached render function after
 * that. Missing fields render as ''. Syntax errors throw here and render failures when rendering, both
 * as an Error quoting the start of the template.
 */
export function compileTemplate(source: string, options: TemplateOptions): RenderTemplate {
  const cache = options.html ? htmlTemplates : textTemplates;
  const cached = cache.get(source);
  if (cached !== undefined) {
    cache.delete(source);
    cache.set(source, cached);
    return cached;
  }
  const render = compileUncached(source, options);
  cache.set(source, render);
  if (cache.size > CACHE_LIMIT) {
    const leastRecent = cache.keys().next().value;
    if (leastRecent !== undefined) cache.delete(leastRecent);
  }
  return render;
}

function compileUncached(source: string, options: TemplateOptions): RenderTemplate {
  let ast: hbs.AST.Program;
  try {
    // Handlebars only parses on first render; parsing now reports syntax errors where the template is set up.
    ast = environment.parseWithoutProcessing(source);
  } catch (error) {
    throw templateError('could not be compiled', source, error);
  }
  const template = environment.compile(ast, { noEscape: !options.html, strict: false });
  const pathOnly = pathOnlyRenderer(ast, { html: options.html, helpers: environment.helpers });
  return (context) => {
    const fast = pathOnly?.(context);
    if (fast !== undefined) return fast;
    try {
      return template(context);
    } catch (error) {
      throw templateError('failed to render', source, error);
    }
  };
}

const EXCERPT_LENGTH = 60;

function templateError(what: string, source: string, cause: unknown): Error {
  const excerpt = source.length > EXCERPT_LENGTH ? `${source.slice(0, EXCERPT_LENGTH)}…` : source;
  const reason = errorText(cause);
  return new Error(`template ${JSON.stringify(excerpt)} ${what}: ${reason}`, { cause });
}

/** `{{ path }}` alone, where path is a plain dotted name such as `new.amount`. */
const SINGLE_PATH = /^\{\{\s*([A-Za-z_$][\w$]*(?:\.[\w$]+)*)\s*\}\}$/;

/**
 * Renders every string inside a JSON value (objects and arrays recursively; keys are left alone) and
 * returns the new value. A string that is exactly `{{path}}` resolving to a non-string context value
 * (number, boolean, null, object) yields that value itself, so `"{{new.amount}}"` stays a number.
 */
export function renderDeep(value: unknown, context: object, options: TemplateOptions, depth = 0): unknown {
  if (typeof value === 'string') return renderString(value, context, options);
  if (typeof value !== 'object' || value === null) return value;
  // Configs deeper than this are refused when rules load; this keeps any other caller off the stack limit.
  if (depth >= MAX_JSON_DEPTH) throw new Error(tooDeepMessage('the rendered value'));
  if (Array.isArray(value)) return value.map((element) => renderDeep(element, context, options, depth + 1));
  return Object.fromEntries(
    Object.entries(value).map(([key, member]) => [key, renderDeep(member, context, options, depth + 1)]),
  );
}

function renderString(text: string, context: object, options: TemplateOptions): unknown {
  const path = SINGLE_PATH.exec(text)?.[1];
  // A bare `{{name}}` of a helper calls the helper in Handlebars, so it is not a path.
  if (path !== undefined && !Object.hasOwn(environment.helpers, path)) {
    const raw = lookupPath(context, path);
    if (raw !== undefined && typeof raw !== 'string') return raw;
  }
  return text.includes('{{') ? compileTemplate(text, options)(context) : text;
}

/** Follows own properties only, as Handlebars does by default. */
function lookupPath(context: object, path: string): unknown {
  let current: unknown = context;
  for (const key of path.split('.')) {
    if (typeof current !== 'object' || current === null || !Object.hasOwn(current, key)) return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}
