import { MAX_JSON_DEPTH, tooDeepMessage } from '../json-depth.js';

type Json = Record<string, unknown>;

/** A JSON object: not null, not an array. */
export function isPlainObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * An action's effective config: the template's default_config overlaid by the action's
 * action_config. Objects merge key by key, recursively; arrays and scalars from action_config
 * replace the template's; a null in action_config removes the template's key.
 */
export function mergeConfig(defaults: unknown, overrides: unknown, depth = 0): Json {
  // The rule cache refuses deeper configs before merging; this keeps any other caller off the stack limit.
  if (depth > MAX_JSON_DEPTH) throw new Error(tooDeepMessage('the merged config'));
  const base: Json = isPlainObject(defaults) ? defaults : {};
  const over: Json = isPlainObject(overrides) ? overrides : {};
  const merged: Json = { ...base };
  for (const [key, value] of Object.entries(over)) {
    if (value === null) delete merged[key];
    else if (isPlainObject(value) && isPlainObject(base[key]))
      merged[key] = mergeConfig(base[key], value, depth + 1);
    else merged[key] = value;
  }
  return merged;
}
