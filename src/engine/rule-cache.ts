import type pg from 'pg';
import { systemClock, type Clock } from '../clock.js';
import { compileConditions } from '../conditions/match.js';
import { inTransaction } from '../db/transaction.js';
import { tooDeep, tooDeepMessage } from '../json-depth.js';
import { isPlainObject, mergeConfig } from './merge-config.js';
import type { ActionDefinition, CapturedEvent, EntityDefinition, RuleDefinition } from '../model/types.js';

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
  action_config: unknown;
  template_id: string | null;
  template_action_type: string | null;
  default_config: unknown;
  template_active: boolean;
}

/**
 * A rule or action the cache could not load (conditions that do not compile, a config that is not
 * a JSON object). Only that rule fails: it is recorded as a failed execution whenever it would have
 * run, logged at each load, and listed on /healthz and counted on /metrics.
 */
export interface RuleLoadProblem {
  readonly ruleId: string;
  readonly ruleName: string;
  readonly actionId?: string;
  readonly actionName?: string;
  readonly message: string;
}

function describeJson(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`;
}

/** Why an action's stored config cannot be run, or undefined when it can. */
function configProblem(row: ActionRow): string | undefined {
  if (!isPlainObject(row.action_config)) {
    return `action_config must be a JSON object, got ${describeJson(row.action_config)}`;
  }
  if (row.template_id && !isPlainObject(row.default_config)) {
    return `default_config of action template ${row.template_id} must be a JSON object, got ${describeJson(row.default_config)}`;
  }
  const deep = tooDeep(row.action_config, 'action_config') ?? tooDeep(row.default_config, 'default_config');
  return deep === undefined ? undefined : tooDeepMessage(deep);
}

/** Actions whose stored config could not be loaded, as opposed to an inactive template. */
const unloadable = new WeakSet<ActionDefinition>();

function actionFrom(row: ActionRow): ActionDefinition {
  const broken = (problem: string): ActionDefinition => {
    const action = {
      id: row.id,
      name: row.name,
      executionOrder: row.execution_order,
      actionType: row.template_action_type ?? '',
      config: {},
      templateId: row.template_id,
      problem,
    };
    unloadable.add(action);
    return action;
  };
  const problem = configProblem(row);
  if (problem !== undefined) return broken(problem);
  try {
    const config = row.template_id
      ? mergeConfig(row.default_config, row.action_config)
      : (row.action_config as Record<string, unknown>);
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
  } catch (error) {
    return broken(`its config could not be loaded: ${(error as Error).message}`);
  }
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

  static async load(client: pg.ClientBase, clock: Clock = systemClock): Promise<RuleSet> {
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
    return RuleSet.build(rules, actions, dependencies, version ?? '0', clock);
  }

  private static build(
    rules: RuleRow[],
    actions: ActionRow[],
    dependencies: { parent_rule_id: string; child_rule_id: string }[],
    version: string,
    clock: Clock,
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
      // Events queued by run_rule or a schedule name their rule and are never matched.
      const matchable = (event: CapturedEvent) =>
        event.operation !== 'manual' && event.operation !== 'scheduled';
      let matches: (event: CapturedEvent) => boolean;
      let problem: string | undefined;
      try {
        const deep = tooDeep(row.trigger_conditions, 'trigger_conditions');
        if (deep !== undefined) throw new Error(tooDeepMessage(deep));
        const matcher = compileConditions(row.trigger_conditions, clock);
        matches = (event) => matchable(event) && matcher(event as typeof event & { operation: 'on_create' });
      } catch (error) {
        // Whether the rule would have matched is unknown: it fails for every event of its entity
        // and operation, which records the problem where its executions are looked at.
        problem = `its trigger_conditions could not be loaded: ${(error as Error).message}`;
        problems.push({ ruleId: row.id, ruleName: row.name, message: problem });
        matches = matchable;
      }
      for (const action of actionsByRule.get(row.id) ?? []) {
        if (action.problem === undefined || !unloadable.has(action)) continue;
        problems.push({
          ruleId: row.id,
          ruleName: row.name,
          actionId: action.id,
          actionName: action.name,
          message: action.problem,
        });
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
        ...(problem !== undefined ? { problem } : {}),
      });
    }
    return new RuleSet(definitions, version, problems);
  }
}
