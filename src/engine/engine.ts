import { systemClock, type Clock } from '../clock.js';
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type pg from 'pg';
import { recordActionTypes } from '../actions/record-action-types.js';
import { defaultActions, type ActionRegistry } from '../actions/registry.js';
import type { Logger } from '../logger.js';
import {
  buryEvent,
  CLAIM_DEPTH,
  claimEvents,
  claimShare,
  failEvent,
  recordExecutions,
  type ExecutionRecord,
} from './event-queue.js';
import { ClaimWindow } from './claim-window.js';
import { RowOwners } from './row-owners.js';
import { EventExecutor, OptimisticRunFailed, type ActionIsolation } from './executor.js';
import { EngineMetrics } from './metrics.js';
import { NotificationListener } from '../db/notification-listener.js';
import { RuleSet } from './rule-cache.js';
import type { CapturedEvent } from '../model/types.js';
import { WakeSignal } from '../wake-signal.js';
import { createPool } from '../db/pool.js';
import { assertDaemonRole } from './daemon-role.js';
import { tooDeep, tooDeepMessage } from '../json-depth.js';
import { sqlState } from '../sql-state.js';
import { errorText } from '../error-text.js';
import { backoffMs } from '../backoff.js';
import { RuleSetWatcher } from '../db/rule-set-watcher.js';

export interface EngineOptions {
  readonly databaseUrl: string;
  readonly logger: Logger;
  /** Claim loops, each on its own connection. */
  readonly concurrency?: number;
  /** Events claimed, handled and completed per transaction. */
  readonly batchSize?: number;
  /** How often to look for work when no NOTIFY arrives. */
  readonly pollIntervalMs?: number;
  /**
   * How long a claim may sit idle before Postgres ends its session and frees its events for other
   * daemons (idle_in_transaction_session_timeout); a crashed daemon's claims are released at once.
   */
  readonly leaseSeconds?: number;
  /** Failed attempts (infrastructure errors, not failing actions) before an event is dead. */
  readonly maxAttempts?: number;
  /** Rule executions that may cause each other in a chain before rulebook stops the chain. */
  readonly maxChainDepth?: number;
  readonly actions?: ActionRegistry;
  readonly daemonId?: string;
  /** RULEBOOK_CAPTURE: in 'wal' the chain depth is also declared in the WAL (executor.ts). */
  readonly captureMode?: 'triggers' | 'wal';
  /** Now, for the time-relative conditions (older_than, newer_than, within_next). */
  readonly clock?: Clock;
}

const STOP_GRACE_MS = 10_000;

// A claim loop says it sleeps (so that writers NOTIFY it) and that it woke, without waiting for the
// WAL flush: the row is visible to writers as soon as the statement returns, and losing it in a
// crash loses only a wake-up, which the poll makes up for. Waiting would cost the loop a flush
// twice per wake-up, before it can take the next event (each was a third of the flushes when events
// come one at a time). The setting is local to the statement's own transaction. A trigger on the
// table keeps the count that writers read (sql/000024_wake_flag.sql); the row names this
// connection's backend, so that a daemon that dies without AWAKE stops being woken.
const SLEEPING = {
  name: 'rulebook.sleeping',
  text: `with no_flush as (select set_config('synchronous_commit', 'off', true))
insert into workflow.idle_daemons (daemon_id) select $1 from no_flush
    on conflict (daemon_id) do update set since = now(), backend_pid = excluded.backend_pid`,
};
const AWAKE = {
  name: 'rulebook.awake',
  text: `with no_flush as (select set_config('synchronous_commit', 'off', true))
delete from workflow.idle_daemons using no_flush where daemon_id = $1`,
};

/** Most batches a claim loop runs with savepoints after optimistic runs keep failing. */
const MAX_SAVEPOINT_BATCHES = 64;

/**
 * A claim loop's choice between optimistic batches (no savepoints) and batches with a savepoint
 * per action. After an optimistic batch fails in an action, the next batch uses savepoints; when
 * that keeps happening (a rule whose action always fails), more batches in a row do, up to
 * MAX_SAVEPOINT_BATCHES, until an optimistic batch succeeds again.
 */
class IsolationChoice {
  #savepointBatches = 0;
  #streak = 0;

  get next(): ActionIsolation {
    return this.#savepointBatches > 0 ? 'savepoints' : 'optimistic';
  }

  committed(isolation: ActionIsolation): void {
    if (isolation === 'savepoints') this.#savepointBatches = Math.max(0, this.#savepointBatches - 1);
    else this.#streak = 0;
  }

  optimisticFailed(): void {
    this.#streak = Math.min(Math.max(1, this.#streak * 2), MAX_SAVEPOINT_BATCHES);
    this.#savepointBatches = this.#streak;
  }
}

/**
 * The daemon's core: claims captured events, matches them against the cached rules, runs the
 * actions and records executions, all in the transaction that removes the events.
 */
export class Engine {
  readonly metrics = new EngineMetrics();
  readonly daemonId: string;
  readonly #options: Required<Omit<EngineOptions, 'daemonId' | 'clock'>>;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #pool: pg.Pool;
  readonly #wake = new WakeSignal();
  readonly #rowOwners = new RowOwners();
  readonly #listener: NotificationListener;
  /** Also serves the scheduler of the same daemon (daemon.ts hands it over). */
  readonly ruleSetWatcher: RuleSetWatcher;
  #rules: RuleSet | undefined;
  #reloading: Promise<RuleSet> | undefined;
  #stopping = false;
  #loops: Promise<void>[] = [];
  #isolate = 0;
  #lastBatchAt: Date | undefined;
  #running = false;

  constructor(options: EngineOptions) {
    this.daemonId = options.daemonId ?? `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.#clock = options.clock ?? systemClock;
    this.#options = {
      concurrency: 2,
      batchSize: 100,
      pollIntervalMs: 1_000,
      leaseSeconds: 30,
      maxAttempts: 5,
      maxChainDepth: 10,
      actions: defaultActions(),
      captureMode: 'triggers',
      ...options,
    };
    this.#logger = options.logger.child({ daemonId: this.daemonId });
    this.#pool = createPool({
      databaseUrl: options.databaseUrl,
      max: this.#options.concurrency + 2,
      applicationName: 'rulebook',
      options: `-c idle_in_transaction_session_timeout=${this.#options.leaseSeconds * 1000}`,
      logger: this.#logger,
    });
    this.ruleSetWatcher = new RuleSetWatcher({
      pool: this.#pool,
      logger: this.#logger,
      // NOTIFY rulebook_rules makes it look at once; the poll only catches a lost NOTIFY.
      pollIntervalMs: this.#options.pollIntervalMs * 5,
    });
    this.ruleSetWatcher.subscribe(async (version) => {
      if (version !== this.#rules?.version) await this.#reloadRules();
    });
    this.#listener = new NotificationListener({
      databaseUrl: options.databaseUrl,
      channels: ['rulebook_events', 'rulebook_rules'],
      logger: this.#logger,
      onNotification: (channel) =>
        channel === 'rulebook_rules' ? this.ruleSetWatcher.wake() : this.#wake.wake(),
      onConnected: () => {
        this.#wake.wake();
        this.ruleSetWatcher.wake();
      },
    });
  }

  get running(): boolean {
    return this.#running;
  }

  get rules(): RuleSet | undefined {
    return this.#rules;
  }

  get lastBatchAt(): Date | undefined {
    return this.#lastBatchAt;
  }

  async start(): Promise<void> {
    this.#stopping = false;
    await assertDaemonRole(this.#pool);
    await recordActionTypes(this.#pool, this.#options.actions, this.daemonId).catch((error: unknown) =>
      this.#logger.warn({ err: error }, 'could not record the action types this daemon runs'),
    );
    await this.#reloadRules();
    await this.#listener.start();
    this.#running = true;
    this.ruleSetWatcher.start();
    this.#loops = [];
    for (let worker = 0; worker < this.#options.concurrency; worker++)
      this.#loops.push(this.#workLoop(worker));
    this.#logger.info(
      {
        concurrency: this.#options.concurrency,
        batchSize: this.#options.batchSize,
        rules: this.#rules?.size,
      },
      'engine started',
    );
  }

  /** Finishes the batches in hand, releases the rest and closes every connection. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    for (let i = 0; i < this.#options.concurrency; i++) this.#wake.wake();
    const finished = Promise.all([...this.#loops, this.ruleSetWatcher.stop()]);
    const timedOut = await Promise.race([
      finished.then(() => false),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(true), STOP_GRACE_MS).unref()),
    ]);
    if (timedOut) this.#logger.warn('engine stop timed out; unfinished batches roll back');
    await this.#listener.stop();
    await this.#pool
      .query('delete from workflow.idle_daemons where daemon_id like $1', [`${this.daemonId}/%`])
      .catch(() => {});
    await this.#pool.end();
    this.#running = false;
    this.#logger.info('engine stopped');
  }

  /** Wakes the claim loops now, instead of at the next poll. */
  poke(): void {
    this.#wake.wake();
  }

  async #reloadRules(): Promise<RuleSet> {
    this.#reloading ??= (async () => {
      const client = await this.#pool.connect();
      try {
        const rules = await RuleSet.load(client, this.#clock);
        for (const problem of rules.problems) {
          this.#logger.error(problem, 'rule could not be loaded; it fails wherever it would have run');
        }
        this.metrics.ruleLoadProblems = rules.problems.length;
        if (this.#rules?.version !== rules.version) {
          this.#logger.info({ version: rules.version, rules: rules.size }, 'rules loaded');
        }
        this.#rules = rules;
        return rules;
      } finally {
        client.release();
        this.#reloading = undefined;
      }
    })();
    return this.#reloading;
  }

  /**
   * A reload already under way may have read the rules before `wanted` committed; joining it is
   * not enough, so reload until the cache has caught up.
   */
  async #rulesAtLeast(rules: RuleSet, wanted: string | undefined): Promise<RuleSet> {
    if (wanted === undefined) return rules;
    let current = rules;
    for (let attempt = 0; BigInt(current.version) < BigInt(wanted); attempt++) {
      if (attempt === 3) throw new Error(`rule cache could not reach rule set version ${wanted}`);
      current = await this.#reloadRules();
    }
    return current;
  }

  async #workLoop(worker: number): Promise<void> {
    const idleId = `${this.daemonId}/${worker}`;
    const executor = new EventExecutor({
      actions: this.#options.actions,
      maxChainDepth: this.#options.maxChainDepth,
      logger: this.#logger,
      metrics: this.metrics,
      declareDepthInWal: this.#options.captureMode === 'wal',
    });
    const isolation = new IsolationChoice();
    const window = new ClaimWindow(this.#options.batchSize);
    const loop = this.#rowOwners.join();
    const transaction = { open: false };
    let idle = false;
    let failures = 0;
    while (!this.#stopping) {
      let client: pg.PoolClient | undefined;
      // A held connection that dies between queries emits 'error'; the next query then fails and
      // the loop reconnects, so the event only needs to be noted.
      const onConnectionError = (error: Error) =>
        this.#logger.warn({ err: error, worker }, 'connection lost');
      try {
        client = await this.#pool.connect();
        client.on('error', onConnectionError);
        while (!this.#stopping) {
          // While busy, a batch's COMMIT also begins the next batch's transaction: one round trip less.
          const handled = await this.#runBatch(client, executor, isolation, window, loop, transaction, !idle);
          failures = 0;
          if (handled !== 0) {
            if (idle) {
              await client.query({ ...AWAKE, values: [idleId] });
              idle = false;
            }
            continue;
          }
          if (!idle) {
            // Announce the sleep first, then look once more: a writer that committed in between
            // either is seen by that look or sees this row and sends a NOTIFY.
            await client.query({ ...SLEEPING, values: [idleId] });
            idle = true;
            continue;
          }
          await this.#wake.wait(this.#options.pollIntervalMs);
        }
      } catch (error) {
        failures++;
        this.#rowOwners.release(loop);
        const delay = backoffMs(failures);
        this.#logger.error({ err: error, worker, retryInMs: delay }, 'claim loop failed; retrying');
        client?.off('error', onConnectionError);
        client?.release(error as Error);
        client = undefined;
        transaction.open = false;
        idle = false;
        await new Promise((resolve) => setTimeout(resolve, delay));
        continue;
      }
      if (transaction.open) {
        transaction.open = false;
        await client?.query('rollback').catch(() => {});
      }
      client?.off('error', onConnectionError);
      client?.release();
    }
    this.#rowOwners.release(loop);
  }

  /**
   * One transaction: claim, handle, record, remove. Returns how many events it handled. A batch
   * runs optimistically (no savepoints) unless the loop is isolating a failing event or recovering
   * from a failed optimistic batch; an action failing in an optimistic batch rolls the batch back
   * and the events are handled again, in the same call, with a savepoint per action.
   *
   * `transaction.open` says whether the previous batch left the next transaction begun; with
   * `chain`, a full batch commits and begins the next transaction in one round trip. Returns -1
   * when it claimed nothing but a wider window may find work: the loop claims again at once.
   */
  async #runBatch(
    client: pg.PoolClient,
    executor: EventExecutor,
    choice: IsolationChoice,
    window: ClaimWindow,
    loop: number,
    transaction: { open: boolean },
    chain: boolean,
  ): Promise<number> {
    const isolating = this.#isolate > 0;
    const isolation: ActionIsolation = isolating ? 'savepoints' : choice.next;
    const limit = isolating ? 1 : this.#options.batchSize;
    if (!transaction.open) await client.query('begin');
    transaction.open = true;
    executor.beginTransaction();
    let events: CapturedEvent[] = [];
    try {
      const claim = await claimEvents(client, limit, window.size, this.#rowOwners.leftOutBy(loop));
      executor.depthIsSet(CLAIM_DEPTH);
      events = claim.events;
      this.#rowOwners.claimed(loop, events, claimShare(limit));
      const widen = window.claimed({
        claimed: events.length,
        limit,
        headFull: claim.headFull,
        beyondShare: claim.beyondShare,
        headUsed: claim.headUsed,
        othersClaimBehind: this.#rowOwners.othersClaimBehind(loop),
      });
      if (events.length === 0) {
        transaction.open = false;
        await client.query('commit');
        return widen ? -1 : 0;
      }
      const poisoned = events.flatMap((event) => {
        const where = poisonIn(event);
        return where === undefined ? [] : [{ event, message: tooDeepMessage(where) }];
      });
      if (poisoned.length > 0) {
        // Before any rule sees them: such an event can never be handled, so it goes dead at once,
        // alone, and the rest of the batch is claimed again at once.
        transaction.open = false;
        await client.query('rollback');
        await client.query('begin');
        const buried: typeof poisoned = [];
        for (const item of poisoned) {
          if (await buryEvent(client, item.event.id, item.message)) buried.push(item);
        }
        await client.query('commit');
        for (const { event, message } of buried) {
          this.metrics.eventsFailed.inc('dead');
          this.#logger.error(
            { eventId: event.id, entityId: event.entityId, reason: message },
            'event failed',
          );
        }
        return poisoned.length;
      }
      // The claim saw these events committed; a rule change committed before them must be in the
      // cache before they are matched.
      const rules = await this.#rulesAtLeast(this.#rules ?? (await this.#reloadRules()), claim.rulesVersion);
      const now = Date.now();
      const records: ExecutionRecord[] = [];
      for (const event of events) {
        const handled = await executor.execute(client, rules, event, isolation);
        for (const record of handled) records.push(record);
      }
      await executor.flush(client);
      await recordExecutions(client, records);
      const next = chain && events.length === limit && !this.#stopping;
      transaction.open = false;
      await client.query(next ? 'commit; begin' : 'commit');
      transaction.open = next;
      executor.commitTransaction();
      choice.committed(isolation);
      for (const event of events) {
        const lag = (now - event.createdAt.getTime()) / 1000;
        this.metrics.eventLag.observe('', lag);
        this.metrics.lastLagSeconds = lag;
      }
      this.metrics.eventsProcessed.inc('', events.length);
      this.#lastBatchAt = new Date();
      if (isolating) this.#isolate = Math.max(0, this.#isolate - 1);
      return events.length;
    } catch (error) {
      transaction.open = false;
      await client.query('rollback').catch(() => {});
      if (error instanceof OptimisticRunFailed) {
        // Nothing of the batch is left; handle its events again, each action in a savepoint.
        this.#logger.debug(
          { err: error.cause, actionType: error.actionType, events: events.length },
          'an action failed in an optimistic batch; handling the batch again with savepoints',
        );
        choice.optimisticFailed();
        return this.#runBatch(client, executor, choice, window, loop, transaction, chain);
      }
      if (events.length > 1) {
        // Find the event that fails by handling the same events one at a time.
        this.#logger.warn(
          { err: error, events: events.length },
          'batch failed; retrying its events one by one',
        );
        this.#isolate = events.length;
        return events.length;
      }
      const event = events[0];
      if (!event || !isEventError(error)) throw error;
      await client.query('begin');
      const state = await failEvent(client, event.id, errorText(error), this.#options.maxAttempts);
      await client.query('commit');
      this.metrics.eventsFailed.inc(state);
      this.#logger.error({ err: error, eventId: event.id, state }, 'event failed');
      return 1;
    }
  }
}

/** Where an event's row data nests too deep for matching and templating, if it does. */
function poisonIn(event: CapturedEvent): string | undefined {
  return (
    tooDeep(event.newRow, 'new_row') ?? tooDeep(event.oldRow, 'old_row') ?? tooDeep(event.rowKey, 'row_key')
  );
}

/**
 * Errors that belong to one event (bad data, a constraint, a bug hit by that event) as opposed to
 * the connection or server going away, which must not count against the event.
 */
function isEventError(error: unknown): boolean {
  const code = sqlState(error);
  if (code === undefined)
    return !(error instanceof Error && /connection|terminat|ECONN/i.test(error.message));
  // Class 08: connection exceptions; 57: operator intervention (shutdown); 53: resources.
  return !/^(08|57|53)/.test(code);
}
