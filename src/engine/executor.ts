import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { fieldsChanged } from '../conditions/match.js';
import { ActionError, type ActionContext } from '../actions/types.js';
import type { ActionRegistry } from '../actions/registry.js';
import type { Logger } from '../logger.js';
import { buildTemplateContext } from '../templating/context.js';
import { compileTemplate, renderDeep } from '../templating/render.js';
import type { ExecutionRecord } from './event-queue.js';
import { orderByDependencies } from './rule-order.js';
import type { RuleSet } from './rule-cache.js';
import type { ActionDefinition, CapturedEvent, RuleDefinition } from '../model/types.js';
import type { EngineMetrics } from './metrics.js';
import { WriteBatch } from '../db/write-batch.js';
import { errorText } from '../error-text.js';
import { DECLARE_DEPTH_SQL } from '../capture/wal/wal-context.js';

export interface ExecutorOptions {
  readonly actions: ActionRegistry;
  readonly maxChainDepth: number;
  readonly logger: Logger;
  readonly metrics: EngineMetrics;
  /**
   * RULEBOOK_CAPTURE=wal: the WAL holds no session settings, so the depth is also declared in a
   * logical decoding message, which the WAL reader applies to the changes after it
   * (src/capture/wal/wal-context.ts).
   */
  readonly declareDepthInWal?: boolean;
}

interface ActionOutcome {
  action_id: string;
  name: string;
  type: string;
  execution_order: number;
  status: 'success' | 'failed' | 'skipped';
  started_at: string;
  finished_at: string;
  duration_ms: number;
  result?: unknown;
  error?: string;
}

type RuleStatus = ExecutionRecord['status'];

function changedFields(event: CapturedEvent): string[] {
  return event.operation === 'on_update' ? fieldsChanged({ ...event, operation: 'on_update' }) : [];
}

function triggerData(
  event: CapturedEvent,
  rule: RuleDefinition,
  changed: readonly string[],
): Record<string, unknown> {
  return {
    event_id: event.id,
    entity: `${rule.entity.schemaName}.${rule.entity.name}`,
    entity_id: event.entityId,
    operation: event.operation,
    row_key: event.rowKey,
    old: event.oldRow,
    new: event.newRow,
    changed_fields: changed,
    actor_id: event.actorId,
    txid: event.txid,
    depth: event.depth,
    captured_at: event.createdAt,
  };
}

/**
 * Thrown by an optimistic run (no savepoints) when an action fails after it may have written: the
 * transaction may hold part of the action's work or be aborted, so the caller must roll the whole
 * batch back and handle it again with savepoints.
 */
export class OptimisticRunFailed extends Error {
  override name = 'OptimisticRunFailed';
  constructor(
    readonly actionType: string,
    cause: unknown,
  ) {
    super(`action ${actionType} failed in an optimistic run: ${errorText(cause)}`, { cause });
  }
}

/** How actions are protected from each other within the transaction. */
export type ActionIsolation = 'optimistic' | 'savepoints';

/**
 * The client an action sees, counting the statements the action sends and sending the writes that
 * earlier actions handed over first, so that the action's statement sees them.
 */
function countingClient(
  client: pg.ClientBase,
  counter: { queries: number },
  batch: WriteBatch,
): pg.ClientBase {
  const send = (args: unknown[]) => (client.query as (...a: unknown[]) => unknown)(...args);
  const query = (...args: unknown[]) => {
    counter.queries++;
    return batch.empty ? send(args) : batch.flush(client).then(() => send(args));
  };
  return new Proxy(client, {
    get(target, property) {
      if (property === 'query') return query;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/**
 * Runs the rules an event matches inside the caller's transaction; the execution rows are returned
 * for the caller to write in the same transaction that removes the event.
 *
 * A failing action is rolled back alone and recorded. With `savepoints`, each action runs in its
 * own savepoint, which costs two round trips per action. An `optimistic` run uses none: an action
 * that fails without having sent a statement is recorded as failed at once, and one that fails
 * after sending any (or leaves the transaction aborted) throws OptimisticRunFailed, after which the
 * caller rolls the transaction back and handles its events again with savepoints. Every effect of
 * an action is in the transaction (deliveries are queued rows), so that second run is safe.
 *
 * Metrics are held back until the caller reports the transaction committed (commitTransaction), so
 * that a rolled-back and repeated run is counted once.
 */
export class EventExecutor {
  #depthSetting: number | undefined;
  #walDepth: number | undefined;
  #client: pg.ClientBase | undefined;
  #actionClient: pg.ClientBase | undefined;
  readonly #counter = { queries: 0 };
  readonly #batch = new WriteBatch();
  readonly #pendingExecutions: RuleStatus[] = [];
  readonly #pendingDurations: [type: string, seconds: number][] = [];

  constructor(private readonly options: ExecutorOptions) {}

  /** Call at the start of every transaction: session-local settings do not outlive it. */
  beginTransaction(): void {
    this.#depthSetting = undefined;
    this.#walDepth = undefined;
    this.#batch.clear();
    this.#pendingExecutions.length = 0;
    this.#pendingDurations.length = 0;
  }

  /** Says that the transaction has set rulebook.depth to `depth` already (the claim does). */
  depthIsSet(depth: number): void {
    this.#depthSetting = depth;
  }

  /** Call once the transaction has committed: counts what it did. */
  commitTransaction(): void {
    const { metrics } = this.options;
    for (const status of this.#pendingExecutions) metrics.executions.inc(status);
    for (const [type, seconds] of this.#pendingDurations) metrics.actionDuration.observe(type, seconds);
    this.#pendingExecutions.length = 0;
    this.#pendingDurations.length = 0;
  }

  /**
   * Sends the writes that actions handed over (optimistic runs only). Call before writing the
   * execution rows. A failure throws OptimisticRunFailed: the caller handles the batch again with
   * savepoints, where every action writes at once and a failing one is recorded alone.
   */
  async flush(client: pg.ClientBase): Promise<void> {
    if (this.#batch.empty) return;
    try {
      await this.#batch.flush(client);
    } catch (error) {
      throw new OptimisticRunFailed('batched writes', error);
    }
  }

  async execute(
    client: pg.ClientBase,
    rules: RuleSet,
    event: CapturedEvent,
    isolation: ActionIsolation = 'savepoints',
  ): Promise<ExecutionRecord[]> {
    const matched = rules.rulesFor(event);
    if (matched.length === 0) {
      if (event.ruleId) {
        this.options.logger.warn(
          { eventId: event.id, ruleId: event.ruleId },
          'run_rule names no active rule',
        );
      }
      return [];
    }
    const records: ExecutionRecord[] = [];
    const statusByRule = new Map<string, RuleStatus>();
    for (const rule of orderByDependencies(matched)) {
      const record = await this.#runRule(client, event, rule, statusByRule, isolation);
      statusByRule.set(rule.id, record.status);
      records.push(record);
    }
    return records;
  }

  async #runRule(
    client: pg.ClientBase,
    event: CapturedEvent,
    rule: RuleDefinition,
    statusByRule: ReadonlyMap<string, RuleStatus>,
    isolation: ActionIsolation,
  ): Promise<ExecutionRecord> {
    const started = performance.now();
    const id = randomUUID();
    // Compared column by column, so worked out once for the execution row and the templates.
    const changed = changedFields(event);
    const base = {
      id,
      rule_id: rule.id,
      entity_type: rule.entity.name,
      trigger_data: triggerData(event, rule, changed),
    };
    const finish = (status: RuleStatus, actions: ActionOutcome[], error: string | null): ExecutionRecord => {
      this.#pendingExecutions.push(status);
      return {
        ...base,
        actions_executed: actions,
        status,
        error_message: error,
        execution_time_ms: Math.round(performance.now() - started),
      };
    };

    if (event.depth > this.options.maxChainDepth) {
      const message =
        `chain depth ${event.depth} exceeds the limit of ${this.options.maxChainDepth}: this change was caused by ` +
        `a chain of ${event.depth} rule executions, so rule "${rule.name}" did not run (RULEBOOK_MAX_CHAIN_DEPTH)`;
      return finish('failed', [], message);
    }
    if (rule.problem !== undefined) {
      return finish('failed', [], `rule "${rule.name}" could not be loaded: ${rule.problem}`);
    }
    const blocking = rule.parentIds
      .filter((parentId) => statusByRule.has(parentId) && statusByRule.get(parentId) !== 'success')
      .map((parentId) => `parent rule ${parentId} ${statusByRule.get(parentId)}`);
    if (blocking.length > 0) {
      return finish('skipped', [], `skipped: ${blocking.join('; ')}`);
    }

    await this.#setDepth(client, event.depth + 1);
    const templateContext = buildTemplateContext({
      event,
      rule: { id: rule.id, name: rule.name },
      entity: { id: rule.entity.id, name: rule.entity.name, schemaName: rule.entity.schemaName },
      now: new Date(),
      changedFields: changed,
    });
    const outcomes: ActionOutcome[] = [];
    let stopped = false;
    for (const action of rule.actions) {
      if (stopped) {
        outcomes.push(this.#skipped(action, 'an earlier action failed with on_error "stop"'));
        continue;
      }
      const outcome = await this.#runAction(client, event, rule, action, id, templateContext, isolation);
      outcomes.push(outcome);
      if (outcome.status === 'failed' && action.config.on_error === 'stop') stopped = true;
    }
    const failed = outcomes.filter((outcome) => outcome.status === 'failed');
    const succeeded = outcomes.filter((outcome) => outcome.status === 'success');
    const status: RuleStatus =
      failed.length === 0 ? 'success' : succeeded.length === 0 ? 'failed' : 'partial';
    const error =
      failed.length === 0
        ? null
        : failed.map((outcome) => `action "${outcome.name}": ${outcome.error}`).join('; ');
    return finish(status, outcomes, error);
  }

  #skipped(action: ActionDefinition, reason: string): ActionOutcome {
    const now = new Date().toISOString();
    return {
      action_id: action.id,
      name: action.name,
      type: action.actionType,
      execution_order: action.executionOrder,
      status: 'skipped',
      started_at: now,
      finished_at: now,
      duration_ms: 0,
      error: reason,
    };
  }

  async #runAction(
    client: pg.ClientBase,
    event: CapturedEvent,
    rule: RuleDefinition,
    action: ActionDefinition,
    executionId: string,
    templateContext: Record<string, unknown>,
    isolation: ActionIsolation,
  ): Promise<ActionOutcome> {
    const startedAt = new Date();
    const started = performance.now();
    const outcome = (
      status: 'success' | 'failed',
      extra: { result?: unknown; error?: string },
    ): ActionOutcome => {
      const duration = performance.now() - started;
      this.#pendingDurations.push([action.actionType || 'unknown', duration / 1000]);
      return {
        action_id: action.id,
        name: action.name,
        type: action.actionType,
        execution_order: action.executionOrder,
        status,
        started_at: startedAt.toISOString(),
        finished_at: new Date().toISOString(),
        duration_ms: Math.round(duration * 1000) / 1000,
        ...extra,
      };
    };
    if (action.problem) return outcome('failed', { error: action.problem });
    const handler = this.options.actions.get(action.actionType);
    if (!handler) {
      const known = this.options.actions.types().join(', ');
      const error = action.actionType
        ? `unknown action type "${action.actionType}" (known: ${known})`
        : `no action type: set action_config.action_type or template_id (known types: ${known})`;
      return outcome('failed', { error });
    }
    const optimistic = isolation === 'optimistic';
    // A child logger costs more than the rest of a simple action's setup: made when first used.
    let logger: Logger | undefined;
    const parentLogger = this.options.logger;
    const context: ActionContext = {
      client: optimistic ? this.#countingClient(client) : client,
      ...(optimistic ? { batch: this.#batch } : {}),
      event,
      rule,
      action,
      executionId,
      templateContext,
      render: (source, options) => compileTemplate(source, { html: options?.html ?? false })(templateContext),
      renderValue: (value) => renderDeep(value, templateContext, { html: false }),
      get logger() {
        logger ??= parentLogger.child({
          eventId: event.id,
          ruleId: rule.id,
          executionId,
          actionId: action.id,
        });
        return logger;
      },
    };
    if (optimistic) {
      this.#counter.queries = 0;
      let result: unknown;
      try {
        result = await handler.execute(context);
      } catch (error) {
        // Nothing sent, nothing written: the failure is recorded and the transaction goes on.
        if (this.#counter.queries > 0) throw new OptimisticRunFailed(action.actionType, error);
        if (!(error instanceof ActionError)) context.logger.warn({ err: error }, 'action failed');
        return outcome('failed', { error: errorText(error) });
      }
      // An action that caught a database error of its own has left the transaction aborted.
      if (client.getTransactionStatus() === 'E') {
        throw new OptimisticRunFailed(
          action.actionType,
          new Error('the action returned, but left the transaction aborted'),
        );
      }
      return outcome('success', { result: result ?? null });
    }
    await client.query('savepoint rulebook_action');
    try {
      const result = await handler.execute(context);
      await client.query('release savepoint rulebook_action');
      return outcome('success', { result: result ?? null });
    } catch (error) {
      await client.query('rollback to savepoint rulebook_action');
      await client.query('release savepoint rulebook_action');
      if (!(error instanceof ActionError)) {
        context.logger.warn({ err: error }, 'action failed');
      }
      return outcome('failed', { error: errorText(error) });
    }
  }

  #countingClient(client: pg.ClientBase): pg.ClientBase {
    if (this.#client !== client || !this.#actionClient) {
      this.#client = client;
      this.#actionClient = countingClient(client, this.#counter, this.#batch);
    }
    return this.#actionClient;
  }

  async #setDepth(client: pg.ClientBase, depth: number): Promise<void> {
    const declare = this.options.declareDepthInWal === true;
    if (this.#depthSetting === depth && (!declare || this.#walDepth === depth)) return;
    // Writes handed over ran at the depth they were made at: captured, they say how deep they are.
    await this.flush(client);
    if (declare) {
      // Signed with the daemon's secret, bound to this transaction (wal-context.ts).
      await client.query(DECLARE_DEPTH_SQL, [String(depth)]);
      this.#walDepth = depth;
    } else {
      await client.query("select set_config('rulebook.depth', $1, true)", [String(depth)]);
    }
    this.#depthSetting = depth;
  }
}
