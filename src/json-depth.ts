/**
 * The deepest nesting of objects and arrays rulebook walks. Matching, templating, config merging and
 * JSON.stringify all recurse; a row holding jsonb nested 5,000 deep made them throw "Maximum call
 * stack size exceeded" for every event of that row. Real rows and configs stay far below 100.
 */
export const MAX_JSON_DEPTH = 100;

/**
 * Where `value` nests deeper than `limit` (a dotted path to the first such place, starting with
 * `name`), or undefined when it does not. Walks with an explicit stack, so that measuring a
 * poisoned value cannot itself overflow the call stack.
 */
export function tooDeep(value: unknown, name: string, limit = MAX_JSON_DEPTH): string | undefined {
  const stack: { value: unknown; depth: number; path: string }[] = [{ value, depth: 0, path: name }];
  while (stack.length > 0) {
    const { value: current, depth, path } = stack.pop()!;
    if (typeof current !== 'object' || current === null || current instanceof Date) continue;
    if (depth >= limit) return path;
    const entries = Array.isArray(current)
      ? current.map((element, index) => [String(index), element] as const)
      : Object.entries(current);
    for (const [key, member] of entries) {
      if (typeof member === 'object' && member !== null) {
        stack.push({ value: member, depth: depth + 1, path: path.length < 200 ? `${path}.${key}` : path });
      }
    }
  }
  return undefined;
}

/** The error text for a value that {@link tooDeep} found too deep. */
export function tooDeepMessage(where: string, limit = MAX_JSON_DEPTH): string {
  return `${where} is nested more than ${limit} levels deep; rulebook does not handle JSON nested deeper`;
}
