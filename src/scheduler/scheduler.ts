import type pg from 'pg';
import { systemClock, type Clock } from '../clock.js';
import { parseConditions, type FieldCondition } from '../conditions/parse.js';
import { inTransaction } from '../db/transaction.js';
import type { Logger } from '../logger.js';
import { parseCron, ticksBetween, type CronExpression } from './cron.js';
import {
  loadRowSource,
  MissingRelationError,
  runBatch,
  type RowSource,
  type RowTickRule,
} from './row-tick.js';
import { parseSchedule, type Schedule } from './schedule.js';
import { createPool } from '../db/pool.js';
import { RuleSetWatcher } from '../db/rule-set-watcher.js';

export interface SchedulerOptions {
  readonly databaseUrl: string;
  readonly logger: Logger;
  /**
   * The engine's poll interval: how often the scheduler's own watcher (without ruleSetWatcher)
   * looks at workflow.rule_set_version, and the longest it sleeps between looks for due ticks.
   */
  readonly pollIntervalMs?: number;
  /**
   * The daemon's one watcher of workflow.rule_set_version (the engine's), which the scheduler
   * subscribes to; without it the scheduler runs its own, polling every pollIntervalMs.
   */
  readonly ruleSetWatcher?: RuleSetWatcher;
  /**
   * RULEBOOK_SCHEDULE_CATCHUP: ticks that passed while no daemon ran are run when one starts, once
   * each and in order, if they are at most this old; older ones are recorded as missed.
   */
  readonly catchUpMs?: number;
  /** Where "now" comes from; tests move a ManualClock instead of waiting. */
  readonly clock?: Clock;
  /** Rows queued per transaction by a tick over rows. */
  readonly batchSize?: number;
  /** Runs inside each batch's transaction before it commits: tests kill the connection there. */
  readonly beforeBatchCommit?: (client: pg.ClientBase) => Promise<void>;
}

/** A scheduled rule that will never fire: its schedule or conditions cannot be read. */
export interface ScheduleProblem {
  readonly ruleId: string;
  readonly ruleName: string;
  readonly message: string;
}

export interface SchedulerStats {
  /** Ticks this scheduler fired (or started, for a rule over rows). */
  readonly fired: number;
  /** Ticks it found fired by another daemon. */
  readonly alreadyFired: number;
  /** Ticks it recorded as missed. */
  readonly missed: number;
  /** Rows it queued for rules over rows. */
  readonly rowsQueued: number;
}

interface ScheduledRuleRow {
  id: string;
  name: string;
  trigger_conditions: unknown;
  updated_date: Date;
  entity_id: string;
  schema_name: string;
  entity_name: string;
  last_tick: Date | null;
}

interface ActiveRule {
  readonly ruleId: string;
  readonly ruleName: string;
  readonly entityId: string;
  readonly schemaName: string;
  readonly entityName: string;
  readonly schedule: Schedule;
  readonly cron: CronExpression;
  /** The rule's updated_date: a tick before it belongs to an older version of the rule. */
  readonly since: Date;
  /** Run once per matching row (trigger_conditions.for_each_row, by default when it has conditions). */
  readonly forEachRow: boolean;
  readonly conditions: readonly FieldCondition[];
  /** Every tick up to here is fired, started, found fired or recorded missed. */
  checkedUntil: Date;
}

// One snapshot: the version read is the one the rules belong to.
const LOAD_SCHEDULED_RULES = `
select r.id, r.name, r.trigger_conditions, r.updated_date,
       e.id as entity_id, coalesce(e.schema_name, 'public') as schema_name, e.name as entity_name,
       (select max(s.scheduled_for) from workflow.schedule_runs s where s.rule_id = r.id) as last_tick
  from workflow.automation_rules r
  join workflow.trigger_types t on t.id = r.trigger_type_id
  join workflow.entities e on e.id = r.entity_id
 where r.is_active and t.name = 'scheduled' and e.is_active is not false
 order by r.id`;

const FIRE = 'select workflow.fire_scheduled_rule($1, $2) as event_id';

// As fire_scheduled_rule: only an active scheduled rule of an active entity, unchanged since the tick.
const START_ROW_TICK = `
insert into workflow.schedule_runs (rule_id, scheduled_for, status)
select r.id, $2, 'selecting'
  from workflow.automation_rules r
  join workflow.trigger_types t on t.id = r.trigger_type_id
  join workflow.entities e on e.id = r.entity_id
 where r.id = $1 and r.is_active and t.name = 'scheduled' and e.is_active is not false
on conflict (rule_id, scheduled_for) do nothing
returning rule_id`;

const RECORD_MISSED = `
insert into workflow.schedule_runs (rule_id, scheduled_for, status, finished_at)
select $1, tick, 'missed', now() from unnest($2::timestamptz[]) tick
on conflict (rule_id, scheduled_for) do nothing
returning scheduled_for`;

// A tick whose rule was switched off or changed before its rows were all queued is not finished.
const CANCEL_ORPHANED = `
update workflow.schedule_runs s set status = 'cancelled', finished_at = now()
 where s.status = 'selecting'
   and not exists (select 1 from workflow.automation_rules a
                    where a.id = s.rule_id and a.is_active and a.updated_date <= s.scheduled_for)`;

const CANCEL_TICK = `
update workflow.schedule_runs set status = 'cancelled', finished_at = now()
 where rule_id = $1 and scheduled_for = $2 and status = 'selecting'`;

const UNFINISHED = `
select rule_id, scheduled_for from workflow.schedule_runs
 where status = 'selecting' order by scheduled_for limit 100`;

/** How far back missed ticks are looked for: as long as maintenance keeps schedule_runs. */
const MISSED_LOOKBACK_MS = 7 * 86_400_000;
/** Missed ticks recorded one by one per gap (the latest); the log line counts them all. */
const MISSED_RECORDED = 100;

/**
 * Runs scheduled rules. Every daemon runs one; each tick fires exactly once across all of them,
 * because firing inserts the tick into workflow.schedule_runs (whose key is rule and tick) in the
 * statement that queues its work, and a daemon that finds the tick there already does nothing. A
 * rule without rows queues one event per tick (workflow.fire_scheduled_rule); a rule over rows
 * queues one per matching row, in batches (row-tick.ts). The engine runs each event for that rule
 * only. Time comes from the clock: on each wake the scheduler runs every tick from the last it
 * handled up to now, so ticks missed while no daemon ran are caught up in order.
 */
export class Scheduler {
  readonly #logger: Logger;
  readonly #pool: pg.Pool;
  readonly #pollIntervalMs: number;
  readonly #catchUpMs: number;
  readonly #clock: Clock;
  readonly #batchSize: number;
  readonly #beforeBatchCommit: ((client: pg.ClientBase) => Promise<void>) | undefined;
  readonly #ruleSetWatcher: RuleSetWatcher;
  /** Whether the watcher is this scheduler's own, to start and stop with it. */
  readonly #ownsWatcher: boolean;
  #unsubscribe: (() => void) | undefined;
  readonly #rules = new Map<string, ActiveRule>();
  #problems: ScheduleProblem[] = [];
  #version: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #looping: Promise<void> | undefined;
  #reloading: Promise<void> | undefined;
  #due: Promise<void> = Promise.resolve();
  #finishing: Promise<void> | undefined;
  #ticksStarted = false;
  #stopping = false;
  #running = false;
  #stats = { fired: 0, alreadyFired: 0, missed: 0, rowsQueued: 0 };

  constructor(options: SchedulerOptions) {
    this.#logger = options.logger.child({ component: 'scheduler' });
    this.#pollIntervalMs = options.pollIntervalMs ?? 1_000;
    this.#catchUpMs = options.catchUpMs ?? 3_600_000;
    this.#clock = options.clock ?? systemClock;
    this.#batchSize = options.batchSize ?? 1_000;
    this.#beforeBatchCommit = options.beforeBatchCommit;
    this.#pool = createPool({
      databaseUrl: options.databaseUrl,
      max: 2,
      applicationName: 'rulebook-scheduler',
      logger: this.#logger,
    });
    this.#ownsWatcher = options.ruleSetWatcher === undefined;
    this.#ruleSetWatcher =
      options.ruleSetWatcher ??
      new RuleSetWatcher({ pool: this.#pool, logger: this.#logger, pollIntervalMs: this.#pollIntervalMs });
  }

  get running(): boolean {
    return this.#running;
  }

  /** The rule set version the schedules were last loaded from. */
  get version(): string | undefined {
    return this.#version;
  }

  /** The ids of the rules being scheduled now. */
  get ruleIds(): string[] {
    return [...this.#rules.keys()];
  }

  /** Active scheduled rules whose schedule could not be parsed at the last load. */
  get problems(): readonly ScheduleProblem[] {
    return this.#problems;
  }

  get stats(): SchedulerStats {
    return { ...this.#stats };
  }

  async start(): Promise<void> {
    this.#stopping = false;
    try {
      await this.#reload();
    } catch (error) {
      await this.#pool.end().catch(() => {});
      throw error;
    }
    this.#running = true;
    this.#unsubscribe = this.#ruleSetWatcher.subscribe(async (version) => {
      if (version !== this.#version && !this.#stopping) await this.#reload();
    });
    if (this.#ownsWatcher) this.#ruleSetWatcher.start();
    this.#logger.info({ rules: this.#rules.size }, 'scheduler started');
    this.#loop(0);
  }

  /** Stops the timer, lets the ticks under way finish, and closes the connections. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#unsubscribe?.();
    if (this.#ownsWatcher) await this.#ruleSetWatcher.stop();
    await this.#looping;
    await this.#reloading?.catch(() => {});
    await this.#due;
    await this.#finishing;
    this.#rules.clear();
    await this.#pool.end();
    this.#running = false;
    this.#logger.info('scheduler stopped');
  }

  /** Looks for rule changes now, instead of at the next poll. Resolves once they are applied. */
  async refresh(): Promise<void> {
    // A reload under way may have read the rules before the change the caller wants applied.
    await this.#reloading?.catch(() => {});
    if (!this.#stopping) await this.#reload();
  }

  /**
   * Runs every tick due by the clock's now that this scheduler has not handled yet, then finishes
   * ticks over rows that any daemon left unfinished. Calls run one after the other; the timer calls
   * it on every wake, tests after moving the clock.
   */
  runDue(): Promise<void> {
    // Rows are queued apart from firing, so that a tick over a million rows delays no other tick.
    return this.#fireDue().then(() => this.#finishRows());
  }

  #fireDue(): Promise<void> {
    const run = this.#due.then(() => this.#runDue());
    this.#due = run.catch((error: unknown) =>
      this.#logger.warn({ err: error }, 'scheduled ticks could not run'),
    );
    return run;
  }

  /** Joins the queueing of rows under way, or starts it; it goes on while ticks keep starting. */
  #finishRows(): Promise<void> {
    this.#finishing ??= (async () => {
      do {
        this.#ticksStarted = false;
        await this.#finishUnfinished();
      } while (this.#ticksStarted && !this.#stopping);
    })().finally(() => (this.#finishing = undefined));
    return this.#finishing;
  }

  #loop(delay: number): void {
    if (this.#stopping) return;
    this.#timer = setTimeout(() => {
      this.#looping = (async () => {
        await this.#fireDue().catch(() => {});
        void this.#finishRows().catch(() => {});
      })().finally(() => {
        this.#looping = undefined;
        // Wake at the next whole second (the finest a schedule has), or at the poll interval.
        this.#loop(Math.min(this.#pollIntervalMs, 1_005 - (Date.now() % 1_000)));
      });
    }, delay);
  }

  /** Joins a reload under way, or starts one. */
  #reload(): Promise<void> {
    this.#reloading ??= this.#load().finally(() => (this.#reloading = undefined));
    return this.#reloading;
  }

  async #load(): Promise<void> {
    // One snapshot for the version and the rules, so that the version describes what was read.
    const { version, rows } = await inTransaction(
      this.#pool,
      async (client) => ({
        version: (await client.query<{ version: string }>('select version from workflow.rule_set_version'))
          .rows[0]?.version,
        rows: (await client.query<ScheduledRuleRow>(LOAD_SCHEDULED_RULES)).rows,
      }),
      'begin isolation level repeatable read read only',
    );
    if (this.#stopping) return;
    this.#apply(rows);
    this.#version = version;
  }

  /** Keeps the progress of unchanged rules, starts changed and new ones after their last tick. */
  #apply(rows: readonly ScheduledRuleRow[]): void {
    const problems: ScheduleProblem[] = [];
    const wanted = new Set<string>();
    let changed = false;
    for (const row of rows) {
      const read = readRule(row);
      if ('message' in read) {
        problems.push({ ruleId: row.id, ruleName: row.name, message: read.message });
        continue;
      }
      wanted.add(row.id);
      const current = this.#rules.get(row.id);
      if (current && sameRule(current, read)) continue;
      const start = Math.max(row.updated_date.getTime(), row.last_tick?.getTime() ?? -Infinity);
      this.#rules.set(row.id, { ...read, checkedUntil: new Date(start) });
      changed = true;
    }
    for (const ruleId of this.#rules.keys()) {
      if (wanted.has(ruleId)) continue;
      this.#rules.delete(ruleId);
      changed = true;
    }
    const known = new Set(this.#problems.map((problem) => `${problem.ruleId}:${problem.message}`));
    for (const problem of problems) {
      if (known.has(`${problem.ruleId}:${problem.message}`)) continue;
      this.#logger.error(problem, 'scheduled rule has a schedule that cannot run; it will not fire');
    }
    this.#problems = problems;
    if (changed) this.#logger.info({ rules: this.#rules.size }, 'schedules loaded');
  }

  async #runDue(): Promise<void> {
    if (this.#stopping) return;
    const now = this.#clock.now();
    for (const rule of [...this.#rules.values()]) {
      if (this.#stopping) return;
      await this.#runRule(rule, now);
    }
  }

  async #runRule(rule: ActiveRule, now: Date): Promise<void> {
    if (now <= rule.checkedUntil) return;
    const windowStart = new Date(now.getTime() - this.#catchUpMs);
    let from = rule.checkedUntil;
    if (from < windowStart) {
      await this.#recordMissed(rule, from, windowStart);
      from = windowStart;
      rule.checkedUntil = windowStart;
    }
    for (const tick of ticksBetween(rule.cron, rule.schedule.timezone, from, now)) {
      if (this.#stopping || this.#rules.get(rule.ruleId) !== rule) return;
      if (!(await this.#fire(rule, tick))) return;
      rule.checkedUntil = tick;
    }
    rule.checkedUntil = now;
  }

  async #recordMissed(rule: ActiveRule, from: Date, until: Date): Promise<void> {
    const lookFrom = new Date(Math.max(from.getTime(), until.getTime() - MISSED_LOOKBACK_MS));
    const missed = ticksBetween(rule.cron, rule.schedule.timezone, lookFrom, until);
    if (missed.length === 0) return;
    try {
      const { rows } = await this.#pool.query(RECORD_MISSED, [rule.ruleId, missed.slice(-MISSED_RECORDED)]);
      if (rows.length === 0) return; // another daemon recorded them, or ran them
      this.#stats.missed += rows.length;
      this.#logger.warn(
        {
          ruleId: rule.ruleId,
          ruleName: rule.ruleName,
          missed: missed.length,
          recorded: rows.length,
          first: missed[0],
          last: missed.at(-1),
          catchUpMs: this.#catchUpMs,
        },
        'scheduled rule missed ticks while no daemon ran; they are older than RULEBOOK_SCHEDULE_CATCHUP and will not run',
      );
    } catch (error) {
      this.#logger.warn({ err: error, ruleId: rule.ruleId }, 'could not record missed ticks');
    }
  }

  /**
   * Fires one tick. False when it could not: the rule stops there until the next wake, which tries
   * the tick again (and records it missed once it is older than the catch-up window), so a failing
   * rule holds up neither the others nor the scheduler.
   */
  async #fire(rule: ActiveRule, tick: Date): Promise<boolean> {
    let fired: boolean;
    try {
      if (rule.forEachRow) {
        fired = (await this.#pool.query(START_ROW_TICK, [rule.ruleId, tick])).rowCount === 1;
      } else {
        const { rows } = await this.#pool.query<{ event_id: string | null }>(FIRE, [rule.ruleId, tick]);
        fired = rows[0]?.event_id != null;
      }
    } catch (error) {
      this.#logger.warn(
        { err: error, ruleId: rule.ruleId, ruleName: rule.ruleName, scheduledFor: tick },
        'could not fire scheduled rule; trying again at the next wake',
      );
      return false;
    }
    this.#count(rule, tick, fired);
    // Its rows are queued by #finishRows, here or in any daemon.
    if (fired && rule.forEachRow) this.#ticksStarted = true;
    return true;
  }

  #tickFailed(rule: ActiveRule, tick: Date, error: unknown): void {
    this.#logger.warn(
      { err: error, ruleId: rule.ruleId, ruleName: rule.ruleName, scheduledFor: tick },
      'could not queue the rows of a scheduled tick; they are queued at a later wake',
    );
  }

  #count(rule: ActiveRule, tick: Date, fired: boolean): void {
    if (fired) {
      this.#stats.fired++;
      this.#logger.debug({ ruleId: rule.ruleId, scheduledFor: tick }, 'scheduled rule fired');
    } else {
      this.#stats.alreadyFired++;
    }
  }

  /** Queues the rest of a tick's rows, batch by batch, unless another daemon is at it. */
  async #finishTick(rule: ActiveRule, tick: Date): Promise<void> {
    let source: RowSource;
    try {
      source = await loadRowSource(this.#pool, rule.schemaName, rule.entityName);
    } catch (error) {
      if (!(error instanceof MissingRelationError)) throw error;
      await this.#pool.query(CANCEL_TICK, [rule.ruleId, tick]);
      this.#logger.error(
        { ruleId: rule.ruleId, ruleName: rule.ruleName, scheduledFor: tick, err: error },
        'the table or view of a scheduled rule over rows does not exist; its tick is cancelled',
      );
      return;
    }
    const { rows: hazards } = await this.#pool.query<{ hazard: string; function_owner: string }>(
      'select hazard, function_owner from workflow.row_selection_hazards($1::regclass, $2::text[])',
      [source.relation, rule.conditions.map((condition) => condition.field_name)],
    );
    if (hazards.length > 0) {
      await this.#pool.query(CANCEL_TICK, [rule.ruleId, tick]);
      this.#logger.error(
        {
          ruleId: rule.ruleId,
          ruleName: rule.ruleName,
          scheduledFor: tick,
          relation: source.relation,
          hazards,
        },
        'reading the rows of this scheduled rule would run code of a role that is not a superuser as the daemon; its tick is cancelled',
      );
      return;
    }
    const tickRule: RowTickRule = {
      ruleId: rule.ruleId,
      entityId: rule.entityId,
      source,
      conditions: rule.conditions,
    };
    let queued = 0;
    const client = await this.#pool.connect();
    let broken: Error | undefined;
    // A connection lost mid-batch also emits 'error' on the client; the failed query reports it.
    const onError = (error: Error) => (broken = error);
    client.on('error', onError);
    try {
      while (!this.#stopping) {
        const outcome = await runBatch(client, tickRule, tick, this.#batchSize, this.#beforeBatchCommit);
        if (outcome.state !== 'queued') break;
        queued += outcome.queued;
        this.#stats.rowsQueued += outcome.queued;
        if (outcome.done) break;
      }
    } catch (error) {
      broken = error as Error;
      throw error;
    } finally {
      if (!broken) client.off('error', onError);
      client.release(broken);
      if (queued > 0) this.#logger.debug({ ruleId: rule.ruleId, scheduledFor: tick, queued }, 'rows queued');
    }
  }

  /** Ticks over rows that a daemon started and did not finish (it died, or is still at it). */
  async #finishUnfinished(): Promise<void> {
    try {
      await this.#pool.query(CANCEL_ORPHANED);
      const { rows } = await this.#pool.query<{ rule_id: string; scheduled_for: Date }>(UNFINISHED);
      for (const row of rows) {
        const rule = this.#rules.get(row.rule_id);
        if (this.#stopping) return;
        if (rule?.forEachRow) {
          await this.#finishTick(rule, row.scheduled_for).catch((error: unknown) =>
            this.#tickFailed(rule, row.scheduled_for, error),
          );
        }
      }
    } catch (error) {
      this.#logger.warn({ err: error }, 'could not finish the rows of unfinished ticks');
    }
  }
}

function readRule(row: ScheduledRuleRow): Omit<ActiveRule, 'checkedUntil'> | { message: string } {
  const parsed = parseSchedule(row.trigger_conditions);
  if (!parsed.ok) return { message: parsed.message };
  let cron: CronExpression;
  let conditions: FieldCondition[];
  try {
    cron = parseCron(parsed.schedule.expression);
    conditions = parseConditions(row.trigger_conditions);
  } catch (error) {
    return { message: (error as Error).message };
  }
  const forEachRow = (row.trigger_conditions as { for_each_row?: unknown }).for_each_row;
  return {
    ruleId: row.id,
    ruleName: row.name,
    entityId: row.entity_id,
    schemaName: row.schema_name,
    entityName: row.entity_name,
    schedule: parsed.schedule,
    cron,
    since: row.updated_date,
    forEachRow: typeof forEachRow === 'boolean' ? forEachRow : conditions.length > 0,
    conditions,
  };
}

function sameRule(current: ActiveRule, read: Omit<ActiveRule, 'checkedUntil'>): boolean {
  return (
    current.ruleName === read.ruleName &&
    current.since.getTime() === read.since.getTime() &&
    current.schedule.expression === read.schedule.expression &&
    current.schedule.timezone === read.schedule.timezone &&
    current.entityName === read.entityName &&
    current.schemaName === read.schemaName
  );
}
