import { isUuid } from '../is-uuid.js';
import { HttpError } from './respond.js';

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

function invalid(message: string): HttpError {
  return new HttpError(400, message);
}

/** A JSON object with only the `allowed` fields; `undefined` (no body) counts as `{}` when `optional`. */
export function bodyObject(
  value: unknown,
  allowed: readonly string[],
  options: { optional?: boolean } = {},
): Record<string, unknown> {
  if (value === undefined && options.optional) return {};
  if (value === undefined) throw invalid(`the request needs a JSON object body with ${allowed.join(' or ')}`);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid(`the request body must be a JSON object, got ${describe(value)}`);
  }
  const unknown = Object.keys(value).filter((key) => !allowed.includes(key));
  if (unknown.length > 0) {
    throw invalid(
      `unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `"${k}"`).join(', ')}; ` +
        `this request takes ${allowed.map((k) => `"${k}"`).join(', ')}`,
    );
  }
  return value as Record<string, unknown>;
}

export function optionalString(
  body: Record<string, unknown>,
  field: string,
  maxLength: number,
): string | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw invalid(`"${field}" must be a string, got ${describe(value)}`);
  if (value.length > maxLength) {
    throw invalid(`"${field}" is ${value.length} characters long; at most ${maxLength} are allowed`);
  }
  return value;
}

/** Either `{ "ids": [uuid, ...] }` or `{ "all": true }`: the target of a bulk action. */
export function bulkTarget(body: Record<string, unknown>, maxIds: number): { ids: string[] } | { all: true } {
  const { ids, all } = body;
  if (ids !== undefined && all !== undefined) throw invalid('give either "ids" or "all", not both');
  if (all !== undefined) {
    if (all !== true) throw invalid(`"all" must be true, got ${JSON.stringify(all)}`);
    return { all: true };
  }
  if (ids === undefined) throw invalid('give "ids" (an array of alert ids) or "all": true');
  if (!Array.isArray(ids)) throw invalid(`"ids" must be an array of alert ids, got ${describe(ids)}`);
  if (ids.length === 0) throw invalid('"ids" is empty; give at least one alert id');
  if (ids.length > maxIds) throw invalid(`"ids" has ${ids.length} entries; at most ${maxIds} are allowed`);
  ids.forEach((id, index) => {
    if (!isUuid(id)) throw invalid(`"ids[${index}]" is not an alert id (a uuid): ${JSON.stringify(id)}`);
  });
  return { ids: [...new Set((ids as string[]).map((id) => id.toLowerCase()))] };
}

/** Query parameters, checked against what a route takes. */
export class QueryParams {
  constructor(
    private readonly url: URL,
    allowed: readonly string[],
  ) {
    for (const name of new Set(url.searchParams.keys())) {
      if (!allowed.includes(name)) {
        throw invalid(
          `unknown query parameter "${name}"; ${url.pathname} takes ${allowed.map((a) => `"${a}"`).join(', ')}`,
        );
      }
      if (url.searchParams.getAll(name).length > 1) throw invalid(`query parameter "${name}" is given twice`);
    }
  }

  string(name: string): string | undefined {
    const value = this.url.searchParams.get(name);
    return value === null || value === '' ? undefined : value;
  }

  integer(name: string, options: { min: number; max: number; fallback: number }): number {
    const text = this.string(name);
    if (text === undefined) return options.fallback;
    const value = Number(text);
    if (!/^\d+$/.test(text) || value < options.min || value > options.max) {
      throw invalid(
        `query parameter "${name}" must be a whole number from ${options.min} to ${options.max}, got "${text}"`,
      );
    }
    return value;
  }

  boolean(name: string): boolean | undefined {
    const text = this.string(name);
    if (text === undefined) return undefined;
    if (text !== 'true' && text !== 'false') {
      throw invalid(`query parameter "${name}" must be true or false, got "${text}"`);
    }
    return text === 'true';
  }

  /** A comma-separated list of known values; `fallback` when absent. */
  list<T extends string>(name: string, known: readonly T[], fallback: readonly T[]): T[] {
    const text = this.string(name);
    if (text === undefined) return [...fallback];
    const values = text.split(',').map((v) => v.trim());
    for (const value of values) {
      if (!(known as readonly string[]).includes(value)) {
        throw invalid(`query parameter "${name}" has an unknown value "${value}"; use ${known.join(', ')}`);
      }
    }
    return [...new Set(values as T[])];
  }
}
