import type pg from 'pg';

/** One thing wrong with a rule or one of its actions, as the write-time checks would report it. */
export interface RuleProblem {
  readonly ruleId: string;
  readonly ruleName: string;
  /** null when the problem is the rule's own (its entity or its conditions). */
  readonly actionId: string | null;
  readonly problem: string;
}

interface ProblemRow {
  rule_id: string;
  rule_name: string;
  action_id: string | null;
  problem: string;
}

// Actions whose type no daemon runs (workflow.action_types, sql/000019): a misspelt action_type,
// or a custom handler whose daemon has never started. Not refused when written (000019 says why).
const UNKNOWN_ACTION_TYPES = `
select r.id::text as rule_id, r.name as rule_name, a.id::text as action_id,
       format('rule "%s" (%s), action #%s "%s" (%s): %s', r.name, r.id, a.execution_order, a.name, a.id,
              case when x.action_type is null
                   then 'no action_type: set action_config.action_type or template_id'
                   else format('unknown action type "%s": no daemon runs it (known: %s); a daemon records the types '
                               'its ActionRegistry runs when it starts', x.action_type,
                               (select string_agg(action_type, ', ' order by action_type) from workflow.action_types))
              end) as problem
  from workflow.rule_actions a
  join workflow.automation_rules r on r.id = a.automation_rules_id
  left join workflow.action_templates t on t.id = a.template_id
  cross join lateral (select coalesce(t.action_type,
                                      case when jsonb_typeof(a.action_config -> 'action_type') = 'string'
                                           then a.action_config ->> 'action_type' end) as action_type) x
 where a.is_active is not false
   and not exists (select 1 from workflow.action_types k where k.action_type = x.action_type)
 order by r.name, r.id, a.execution_order, a.id`;

// Rules on a view whose registration no longer passes its checks: such a view is not polled, and
// its rules do not fire.
const VIEW_PROBLEMS = `
select r.id::text as rule_id, r.name as rule_name, null::text as action_id,
       format('rule "%s" (%s): %s', r.name, r.id, p.problem) as problem
  from workflow.view_registration_problems() p
  join workflow.automation_rules r on r.entity_id = p.entity_id
 order by r.name, r.id`;

/**
 * Re-runs the checks that every rule and action passed when it was written, against today's
 * tables, columns, users and templates (workflow.rule_problems, sql/000014), and the checks of the
 * views that rules watch (workflow.view_registration_problems); and reports actions whose type no
 * daemon runs. After an ALTER TABLE, a replaced view or a deleted user, this lists what would now
 * fail. Nothing is changed; the transaction is read-only. An empty array means every rule and
 * action is still good.
 */
export async function validateRules(pool: pg.Pool): Promise<RuleProblem[]> {
  const client = await pool.connect();
  try {
    await client.query('begin transaction read only');
    const rows: ProblemRow[] = [];
    for (const text of [
      'select rule_id::text, rule_name, action_id::text, problem from workflow.rule_problems()',
      UNKNOWN_ACTION_TYPES,
      VIEW_PROBLEMS,
    ]) {
      rows.push(...(await client.query<ProblemRow>(text)).rows);
    }
    await client.query('commit');
    return rows.map((row) => ({
      ruleId: row.rule_id,
      ruleName: row.rule_name,
      actionId: row.action_id,
      problem: row.problem,
    }));
  } catch (error) {
    await client.query('rollback').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}
