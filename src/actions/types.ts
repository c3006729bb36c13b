import type pg from 'pg';
import type { Logger } from '../logger.js';
import type { ActionDefinition, CapturedEvent, RuleDefinition } from '../model/types.js';
import type { WriteBatch } from '../db/write-batch.js';

/**
 * What an action sees while it runs: it runs inside the event's transaction, and if it fails, its
 * writes are rolled back alone (the engine runs it again in a savepoint when it must).
 */
export interface ActionContext {
  readonly client: pg.ClientBase;
  readonly event: CapturedEvent;
  readonly rule: RuleDefinition;
  readonly action: ActionDefinition;
  /** The automation_executions row this run will be recorded in (written at the end of the batch). */
  readonly executionId: string;
  /** The Handlebars context: new, old, changed_fields, entity, event, rule, now and the row's fields. */
  readonly templateContext: Readonly<Record<string, unknown>>;
  render(source: string, options?: { html?: boolean }): string;
  /** Renders every string inside a JSON value. */
  renderValue(value: unknown): unknown;
  readonly logger: Logger;
  /**
   * Present when the action may hand a write over instead of sending it: the engine sends it with
   * the same kind of writes of the batch's other events, in one statement, before any other
   * statement of the transaction. The action's result is completed when that statement has run.
   */
  readonly batch?: WriteBatch;
}

export interface ActionHandler {
  readonly type: string;
  /** Returns a JSON-serialisable result, recorded in actions_executed; throws to fail the action. */
  execute(context: ActionContext): Promise<unknown>;
}

/** A failure an action reports about its own input or outcome, as opposed to a bug or an outage. */
export class ActionError extends Error {
  override name = 'ActionError';
  constructor(
    message: string,
    readonly details?: Readonly<Record<string, unknown>>,
  ) {
    super(message);
  }
}
