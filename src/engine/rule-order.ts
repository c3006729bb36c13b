import type { RuleDefinition } from '../model/types.js';

/**
 * Orders the rules that matched one event so that every rule comes after the matched rules it
 * depends on. The database forbids cycles; ties keep the given order.
 */
export function orderByDependencies(rules: readonly RuleDefinition[]): RuleDefinition[] {
  if (rules.length < 2 || rules.every((rule) => rule.parentIds.length === 0)) return [...rules];
  const matched = new Map(rules.map((rule) => [rule.id, rule]));
  const ordered: RuleDefinition[] = [];
  const placed = new Set<string>();
  const visiting = new Set<string>();
  const visit = (rule: RuleDefinition): void => {
    if (placed.has(rule.id) || visiting.has(rule.id)) return;
    visiting.add(rule.id);
    for (const parentId of rule.parentIds) {
      const parent = matched.get(parentId);
      if (parent) visit(parent);
    }
    visiting.delete(rule.id);
    placed.add(rule.id);
    ordered.push(rule);
  };
  for (const rule of rules) visit(rule);
  return ordered;
}
