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

/**
 * Re-runs the checks that every rule and action passed when it was written, against today's
 * tables, columns, users and templates (workflow.rule_problems, sql/000014): after an ALTER TABLE
 * or a deleted user, this lists what would now fail. Nothing is changed; the transaction is
 * read-only. An empty array means every rule and action is still good.
 */
export async function validateRules(pool: pg.Pool): Promise<RuleProblem[]> {
  const client = await pool.connect();
  try {
    await client.query('begin transaction read only');
    const { rows } = await client.query<ProblemRow>(
      'select rule_id::text, rule_name, action_id::text, problem from workflow.rule_problems()',
    );
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
