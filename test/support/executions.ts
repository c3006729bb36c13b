import type { TestDatabase } from './database.js';
import { waitFor } from './wait.js';

/** One entry of automation_executions.actions_executed, with the result an action type returns. */
export interface ActionRecord<Result = unknown> {
  name: string;
  status: string;
  error?: string;
  result?: Result;
}

export interface ExecutionRow<Result = unknown> {
  status: string;
  error_message: string | null;
  actions_executed: ActionRecord<Result>[];
}

/** A rule's executions, oldest first. */
export function executionsOf<Result = unknown>(
  db: TestDatabase,
  ruleId: string,
): Promise<ExecutionRow<Result>[]> {
  return db.query<ExecutionRow<Result>>(
    `select status, error_message, actions_executed from workflow.automation_executions
      where automation_rules_id = $1 order by executed_at`,
    [ruleId],
  );
}

/** Waits until a rule has at least `count` executions and returns them. */
export function waitForExecutions<Result = unknown>(
  db: TestDatabase,
  ruleId: string,
  count = 1,
): Promise<ExecutionRow<Result>[]> {
  return waitFor(`${count} execution(s) of rule ${ruleId}`, async () => {
    const rows = await executionsOf<Result>(db, ruleId);
    return rows.length >= count ? rows : undefined;
  });
}
