import { AdminError, explainDatabaseError } from '../admin/errors.js';
import type { Queryable } from '../db/transaction.js';
import { isUuid } from '../is-uuid.js';

export interface RuleSummary {
  readonly id: string;
  readonly name: string;
  readonly entity: string;
  readonly trigger: string;
  readonly active: boolean;
  readonly actions: number;
  readonly lastRunAt: Date | null;
  readonly lastStatus: string | null;
}

export interface RuleAction {
  readonly id: string;
  readonly order: number;
  readonly name: string;
  readonly type: string | null;
  readonly active: boolean;
  readonly template: string | null;
  readonly config: unknown;
}

export interface RuleRun {
  readonly id: string;
  readonly executedAt: Date;
  readonly status: string;
  readonly executionTimeMs: number | null;
  readonly errorMessage: string | null;
}

export interface RuleDetail {
  readonly id: string;
  readonly name: string;
  readonly description: string | null;
  readonly entity: string;
  readonly trigger: string;
  readonly active: boolean;
  readonly conditions: unknown;
  readonly createdDate: Date;
  readonly updatedDate: Date;
  readonly actions: readonly RuleAction[];
  /** Rules this one runs after (its parents) and rules that run after it (its children). */
  readonly dependsOn: readonly { readonly id: string; readonly name: string }[];
  readonly dependents: readonly { readonly id: string; readonly name: string }[];
  readonly lastRuns: readonly RuleRun[];
}

/** Every rule with its entity, trigger, number of actions and last run, by name. */
export async function listRules(db: Queryable): Promise<RuleSummary[]> {
  try {
    const { rows } = await db.query<{
      id: string;
      name: string;
      entity: string;
      trigger: string;
      active: boolean;
      actions: number;
      last_run_at: Date | null;
      last_status: string | null;
    }>(
      `select r.id, r.name, coalesce(e.schema_name, 'public') || '.' || e.name as entity, t.name as trigger,
              r.is_active as active,
              (select count(*)::int from workflow.rule_actions a where a.automation_rules_id = r.id) as actions,
              last.executed_at as last_run_at, last.status as last_status
         from workflow.automation_rules r
         join workflow.entities e on e.id = r.entity_id
         join workflow.trigger_types t on t.id = r.trigger_type_id
         left join lateral (
           select x.executed_at::timestamptz as executed_at, x.status
             from workflow.automation_executions x
            where x.automation_rules_id = r.id
            order by x.executed_at desc limit 1
         ) last on true
        order by r.name, r.id`,
    );
    return rows.map((row) => ({
      id: row.id,
      name: row.name,
      entity: row.entity,
      trigger: row.trigger,
      active: row.active,
      actions: row.actions,
      lastRunAt: row.last_run_at,
      lastStatus: row.last_status,
    }));
  } catch (error) {
    return explainDatabaseError(error);
  }
}

/**
 * The id of the rule a person named by id or by name. A name that two rules share is refused, with
 * their ids, rather than picking one.
 */
export async function resolveRule(db: Queryable, reference: string): Promise<{ id: string; name: string }> {
  try {
    const { rows } = await db.query<{ id: string; name: string }>(
      `select id, name from workflow.automation_rules
        where id = $2::uuid or name = $1
        order by (name = $1) desc, id`,
      [reference, isUuid(reference) ? reference : null],
    );
    const byId = rows.find((row) => row.id === reference.toLowerCase());
    if (byId) return byId;
    if (rows.length === 0) throw new AdminError(`there is no rule with id or name "${reference}"`);
    if (rows.length > 1) {
      throw new AdminError(
        `${rows.length} rules are named "${reference}"; name one by its id: ${rows.map((row) => row.id).join(', ')}`,
      );
    }
    return rows[0]!;
  } catch (error) {
    return explainDatabaseError(error);
  }
}

/** One rule in full: conditions, actions in the order they run, dependencies and its last runs. */
export async function showRule(
  db: Queryable,
  reference: string,
  options: { runs?: number } = {},
): Promise<RuleDetail> {
  const { id } = await resolveRule(db, reference);
  try {
    const { rows } = await db.query<{
      id: string;
      name: string;
      description: string | null;
      entity: string;
      trigger: string;
      active: boolean;
      conditions: unknown;
      created_date: Date;
      updated_date: Date;
    }>(
      `select r.id, r.name, r.description, coalesce(e.schema_name, 'public') || '.' || e.name as entity,
              t.name as trigger, r.is_active as active, r.trigger_conditions as conditions,
              r.created_date, r.updated_date
         from workflow.automation_rules r
         join workflow.entities e on e.id = r.entity_id
         join workflow.trigger_types t on t.id = r.trigger_type_id
        where r.id = $1`,
      [id],
    );
    const rule = rows[0];
    if (rule === undefined) throw new AdminError(`rule ${id} was deleted just now`);
    const actions = await db.query<{
      id: string;
      execution_order: number;
      name: string;
      type: string | null;
      active: boolean | null;
      template: string | null;
      config: unknown;
    }>(
      `select a.id, a.execution_order, a.name,
              case when a.template_id is not null and t.action_type is not null then t.action_type
                   else a.action_config ->> 'action_type' end as type,
              a.is_active as active, t.name as template, a.action_config as config
         from workflow.rule_actions a
         left join workflow.action_templates t on t.id = a.template_id
        where a.automation_rules_id = $1
        order by a.execution_order, a.id`,
      [id],
    );
    const dependencies = await db.query<{ id: string; name: string; kind: 'parent' | 'child' }>(
      `select r.id, r.name, 'parent' as kind from workflow.rule_dependencies d
         join workflow.automation_rules r on r.id = d.parent_rule_id where d.child_rule_id = $1
       union all
       select r.id, r.name, 'child' from workflow.rule_dependencies d
         join workflow.automation_rules r on r.id = d.child_rule_id where d.parent_rule_id = $1
       order by 3, 2, 1`,
      [id],
    );
    const runs = await db.query<{
      id: string;
      executed_at: Date;
      status: string;
      execution_time_ms: number | null;
      error_message: string | null;
    }>(
      `select id, executed_at::timestamptz as executed_at, status, execution_time_ms, error_message
         from workflow.automation_executions where automation_rules_id = $1
        order by executed_at desc, id limit $2`,
      [id, options.runs ?? 5],
    );
    const related = (kind: 'parent' | 'child') =>
      dependencies.rows.filter((row) => row.kind === kind).map((row) => ({ id: row.id, name: row.name }));
    return {
      id: rule.id,
      name: rule.name,
      description: rule.description,
      entity: rule.entity,
      trigger: rule.trigger,
      active: rule.active,
      conditions: rule.conditions,
      createdDate: rule.created_date,
      updatedDate: rule.updated_date,
      actions: actions.rows.map((row) => ({
        id: row.id,
        order: row.execution_order,
        name: row.name,
        type: row.type,
        active: row.active !== false,
        template: row.template,
        config: row.config,
      })),
      dependsOn: related('parent'),
      dependents: related('child'),
      lastRuns: runs.rows.map((row) => ({
        id: row.id,
        executedAt: row.executed_at,
        status: row.status,
        executionTimeMs: row.execution_time_ms,
        errorMessage: row.error_message,
      })),
    };
  } catch (error) {
    return explainDatabaseError(error);
  }
}
