import type pg from 'pg';
import { compileConditions } from '../conditions/match.js';
import { inTransaction } from '../db/transaction.js';
import { mergeConfig } from './merge-config.js';
import type { ActionDefinition, CapturedEvent, EntityDefinition, RuleDefinition } from './types.js';

const LOAD_RULES = `
select r.id, r.name, r.trigger_conditions, t.name as trigger_type,
       e.id as entity_id, e.name as entity_name, coalesce(e.schema_name, 'public') as schema_name,
       e.is_active is not false as entity_active
  from workflow.automation_rules r
  join workflow.trigger_types t on t.id = r.trigger_type_id
  join workflow.entities e on e.id = r.entity_id
 where r.is_active`;

const LOAD_ACTIONS = `
select a.id, a.automation_rules_id as rule_id, a.name, a.execution_order, a.action_config, a.template_id,
       tp.action_type as template_action_type, tp.default_config, tp.is_active is not false as template_active
  from workflow.rule_actions a
  left join workflow.action_templates tp on tp.id = a.template_id
 where a.is_active is not false
 order by a.automation_rules_id, a.execution_order`;

const LOAD_DEPENDENCIES = `select parent_rule_id, child_rule_id from workflow.rule_dependencies`;

interface RuleRow {
  id: string;
  name: string;
  trigger_conditions: unknown;
  trigger_type: string;
  entity_id: string;
  entity_name: string;
  schema_name: string;
  entity_active: boolean;
}

interface ActionRow {
  id: string;
  rule_id: string;
  name: string;
  execution_order: number;
  action_config: Record<string, unknown>;
  template_id: string | null;
  template_action_type: string | null;
  default_config: unknown;
  template_active: boolean;
}

/** A rule whose conditions cannot be compiled never matches; its error is kept for operators. */
export interface RuleLoadProblem {
  readonly ruleId: string;
  readonly ruleName: string;
  readonly message: string;
}

function actionFrom(row: ActionRow): ActionDefinition {
  const config = row.template_id ? mergeConfig(row.default_config, row.action_config) : row.action_config;
  const configuredType = typeof config.action_type === 'string' ? config.action_type : '';
  return {
    id: row.id,
    name: row.name,
    executionOrder: row.execution_order,
    actionType: row.template_id && row.template_action_type ? row.template_action_type : configuredType,
    config,
    templateId: row.template_id,
    ...(row.template_id && !row.template_active
      ? { problem: `action template ${row.template_id} is inactive` }
      : {}),
  };
}

/**
 * The active rules in memory, indexed by entity and trigger type so that matching an event looks
 * only at the rules of its own entity and operation.
 */
export class RuleSet {
  readonly #byEntityAndTrigger = new Map<string, RuleDefinition[]>();
  readonly #byId = new Map<string, RuleDefinition>();

  constructor(
    rules: readonly RuleDefinition[],
    readonly version: string,
    readonly problems: readonly RuleLoadProblem[] = [],
  ) {
    for (const rule of rules) {
      this.#byId.set(rule.id, rule);
      if (!rule.entity.isActive) continue;
      const key = `${rule.entity.id}:${rule.triggerType}`;
      const list = this.#byEntityAndTrigger.get(key);
      if (list) list.push(rule);
      else this.#byEntityAndTrigger.set(key, [rule]);
    }
  }

  get size(): number {
    return this.#byId.size;
  }

  rule(id: string): RuleDefinition | undefined {
    return this.#byId.get(id);
  }

  /** The rules an event runs: the one it names (run_rule), or every active rule that matches it. */
  rulesFor(event: CapturedEvent): RuleDefinition[] {
    if (event.ruleId) {
      const rule = this.#byId.get(event.ruleId);
      return rule ? [rule] : [];
    }
    const candidates = this.#byEntityAndTrigger.get(`${event.entityId}:${event.operation}`);
    if (!candidates) return [];
    return candidates.filter((rule) => rule.matches(event));
  }

  static async load(client: pg.ClientBase): Promise<RuleSet> {
    // One snapshot for all three reads, so that a rule and its actions are seen together.
    const { version, rules, actions, dependencies } = await inTransaction(
      client,
      async (c) => ({
        version: (await c.query<{ version: string }>('select version from workflow.rule_set_version')).rows[0]
          ?.version,
        rules: (await c.query<RuleRow>(LOAD_RULES)).rows,
        actions: (await c.query<ActionRow>(LOAD_ACTIONS)).rows,
        dependencies: (await c.query<{ parent_rule_id: string; child_rule_id: string }>(LOAD_DEPENDENCIES))
          .rows,
      }),
      'begin isolation level repeatable read read only',
    );
    return RuleSet.build(rules, actions, dependencies, version ?? '0');
  }

  private static build(
    rules: RuleRow[],
    actions: ActionRow[],
    dependencies: { parent_rule_id: string; child_rule_id: string }[],
    version: string,
  ): RuleSet {
    const actionsByRule = new Map<string, ActionDefinition[]>();
    for (const row of actions) {
      const list = actionsByRule.get(row.rule_id) ?? [];
      list.push(actionFrom(row));
      actionsByRule.set(row.rule_id, list);
    }
    const parentsByRule = new Map<string, string[]>();
    for (const dependency of dependencies) {
      const list = parentsByRule.get(dependency.child_rule_id) ?? [];
      list.push(dependency.parent_rule_id);
      parentsByRule.set(dependency.child_rule_id, list);
    }
    const entities = new Map<string, EntityDefinition>();
    const problems: RuleLoadProblem[] = [];
    const definitions: RuleDefinition[] = [];
    for (const row of rules) {
      let entity = entities.get(row.entity_id);
      if (!entity) {
        entity = {
          id: row.entity_id,
          name: row.entity_name,
          schemaName: row.schema_name,
          isActive: row.entity_active,
        };
        entities.set(row.entity_id, entity);
      }
      let matches: (event: CapturedEvent) => boolean;
      try {
        const matcher = compileConditions(row.trigger_conditions);
        // Events queued by run_rule or a schedule name their rule and are never matched.
        matches = (event) =>
          event.operation !== 'manual' &&
          event.operation !== 'scheduled' &&
          matcher(event as typeof event & { operation: 'on_create' });
      } catch (error) {
        problems.push({ ruleId: row.id, ruleName: row.name, message: (error as Error).message });
        matches = () => false;
      }
      definitions.push({
        id: row.id,
        name: row.name,
        entity,
        triggerType: row.trigger_type,
        conditions: row.trigger_conditions,
        matches,
        actions: actionsByRule.get(row.id) ?? [],
        parentIds: parentsByRule.get(row.id) ?? [],
      });
    }
    return new RuleSet(definitions, version, problems);
  }
}
