import { createTemplateEnvironment } from './helpers.js';

/*
 * Whether a template compiles for rulebook's renderer: Handlebars parses it, and it uses only what
 * renders without failing whatever the row holds. This is the reference for the database's own
 * check (workflow.template_problem, sql/000014_action_checks.sql), which refuses bad templates when
 * a rule action is written; test/template-check.test.ts asserts that the two agree.
 *
 * Beyond Handlebars' grammar: a helper called with arguments must be one rulebook registers (any
 * other fails every render with "Missing helper"), and partials, decorators and raw blocks are
 * refused (none are registered, so they could only fail or pass text through unchanged).
 */

const environment = createTemplateEnvironment();

/** Handlebars' built-in helpers and rulebook's, as createTemplateEnvironment registers them. */
export function templateHelperNames(): string[] {
  return Object.keys(environment.helpers).sort();
}

type Node = hbs.AST.Node;

/** A helper's name when Handlebars would call the helper by that name (its "simple id"). */
function simpleName(path: hbs.AST.Expression): string | undefined {
  if (path.type !== 'PathExpression') return undefined;
  const { parts, data, depth, original } = path as hbs.AST.PathExpression;
  if (data || depth > 0 || parts.length !== 1 || /^\.|this\b/.test(original)) return undefined;
  return parts[0];
}

function checkCall(
  what: string,
  path: hbs.AST.Expression,
  params: hbs.AST.Expression[],
  hash: hbs.AST.Hash | undefined,
): string | undefined {
  if (params.length > 0 || (hash !== undefined && hash.pairs.length > 0)) {
    const name = simpleName(path);
    if (name === undefined || !Object.hasOwn(environment.helpers, name)) {
      const original = (path as { original?: unknown }).original;
      return `unknown helper ${JSON.stringify(String(original))} in ${what}`;
    }
  }
  for (const expression of [...params, ...(hash?.pairs.map((pair) => pair.value) ?? [])]) {
    const problem = checkExpression(expression);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

function checkExpression(expression: hbs.AST.Expression): string | undefined {
  if (expression.type !== 'SubExpression') return undefined;
  const sub = expression as hbs.AST.SubExpression;
  return checkCall('a (sub expression)', sub.path, sub.params, sub.hash);
}

function checkProgram(program: hbs.AST.Program | undefined): string | undefined {
  for (const statement of program?.body ?? []) {
    const problem = checkStatement(statement);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

function checkStatement(node: Node): string | undefined {
  switch (node.type) {
    case 'MustacheStatement': {
      const mustache = node as hbs.AST.MustacheStatement;
      return checkCall('a {{…}}', mustache.path, mustache.params, mustache.hash);
    }
    case 'BlockStatement': {
      const block = node as hbs.AST.BlockStatement;
      // A raw block ({{{{name}}}}…{{{{/name}}}}) is the only block without strip flags.
      if (!Object.hasOwn(block.openStrip ?? {}, 'open')) return 'raw blocks ({{{{…}}}}) are not supported';
      return (
        checkCall('a block', block.path, block.params, block.hash) ??
        checkProgram(block.program) ??
        checkProgram(block.inverse)
      );
    }
    case 'PartialStatement':
    case 'PartialBlockStatement':
      return 'partials ({{>…}}) are not supported';
    case 'Decorator':
    case 'DecoratorBlock':
      return 'decorators ({{*…}}) are not supported';
    default:
      return undefined;
  }
}

/** Why `source` does not compile as a rulebook template, or undefined when it does. */
export function templateProblem(source: string): string | undefined {
  let ast: hbs.AST.Program;
  try {
    ast = environment.parseWithoutProcessing(source);
  } catch (error) {
    return error instanceof Error ? error.message.split('\n')[0] : String(error);
  }
  return checkProgram(ast);
}
