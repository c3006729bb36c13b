import { createTask, type Logger as CronLogger, type ScheduledTask } from 'node-cron';
import type pg from 'pg';
import { inTransaction } from '../db/transaction.js';
import type { Logger } from '../logger.js';
import { parseSchedule, type Schedule } from './schedule.js';
import { createPool } from '../db/pool.js';

export interface SchedulerOptions {
  readonly databaseUrl: string;
  readonly logger: Logger;
  /** How often to look at workflow.rule_set_version for rule changes (the engine's poll interval). */
  readonly pollIntervalMs?: number;
  /**
   * How late a tick may still be fired: one that passed while this daemon was starting, reloading
   * its rules, busy, or retrying a failed fire. Older ticks are never fired (there is no replay of
   * time when no daemon ran). A tick that another daemon fired is never fired again.
   */
  readonly catchUpMs?: number;
}

/** A scheduled rule that will never fire: its schedule cannot be parsed. */
export interface ScheduleProblem {
  readonly ruleId: string;
  readonly ruleName: string;
  readonly message: string;
}

interface ScheduledRuleRow {
  id: string;
  name: string;
  trigger_conditions: unknown;
  updated_date: Date;
}

interface ActiveSchedule {
  readonly ruleId: string;
  readonly ruleName: string;
  readonly schedule: Schedule;
  /** The rule's updated_date: a tick before it belongs to an older version of the rule. */
  readonly since: Date;
  readonly task: ScheduledTask;
}

// One snapshot: the version read is the one the rules belong to.
const LOAD_SCHEDULED_RULES = `
select r.id, r.name, r.trigger_conditions, r.updated_date
  from workflow.automation_rules r
  join workflow.trigger_types t on t.id = r.trigger_type_id
  join workflow.entities e on e.id = r.entity_id
 where r.is_active and t.name = 'scheduled' and e.is_active is not false
 order by r.id`;

const FIRE = 'select workflow.fire_scheduled_rule($1, $2) as event_id';

const MAX_RETRY_DELAY_MS = 5_000;

/**
 * Runs scheduled rules. Every daemon runs one; each tick fires exactly once across all of them,
 * because firing inserts the tick into workflow.schedule_runs (whose key is rule and tick) and
 * queues the rule's event in the same statement, and a daemon that finds the tick there already
 * does nothing. The engine then runs the event like a run_rule event: that rule only.
 */
export class Scheduler {
  readonly #logger: Logger;
  readonly #pool: pg.Pool;
  readonly #pollIntervalMs: number;
  readonly #catchUpMs: number;
  readonly #cronLogger: CronLogger;
  readonly #schedules = new Map<string, ActiveSchedule>();
  readonly #inFlight = new Set<Promise<void>>();
  #problems: ScheduleProblem[] = [];
  #version: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #polling: Promise<void> | undefined;
  #reloading: Promise<void> | undefined;
  #stopping = false;
  #running = false;
  #fired = 0;
  #alreadyFired = 0;

  constructor(options: SchedulerOptions) {
    this.#logger = options.logger.child({ component: 'scheduler' });
    this.#pollIntervalMs = options.pollIntervalMs ?? 1_000;
    this.#catchUpMs = options.catchUpMs ?? 60_000;
    this.#pool = createPool({
      databaseUrl: options.databaseUrl,
      max: 2,
      applicationName: 'rulebook-scheduler',
      logger: this.#logger,
    });
    const cronLog = this.#logger.child({ component: 'node-cron' });
    this.#cronLogger = {
      info: (message) => cronLog.debug(message),
      warn: (message) => cronLog.debug(message),
      error: (message, err) => cronLog.warn({ err: err ?? message }, 'node-cron error'),
      debug: (message) => cronLog.debug(message),
    };
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
    return [...this.#schedules.keys()];
  }

  /** Active scheduled rules whose schedule could not be parsed at the last load. */
  get problems(): readonly ScheduleProblem[] {
    return this.#problems;
  }

  /** Ticks this scheduler fired, and ticks it found already fired by another daemon. */
  get stats(): { readonly fired: number; readonly alreadyFired: number } {
    return { fired: this.#fired, alreadyFired: this.#alreadyFired };
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
    this.#schedulePoll();
    this.#logger.info({ rules: this.#schedules.size }, 'scheduler started');
  }

  /** Stops every timer, lets fires under way finish, and closes the connections. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#polling;
    await this.#reloading?.catch(() => {});
    for (const active of this.#schedules.values()) await active.task.destroy();
    this.#schedules.clear();
    await Promise.all(this.#inFlight);
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

  #schedulePoll(): void {
    if (this.#stopping) return;
    this.#timer = setTimeout(() => {
      this.#polling = this.#poll().finally(() => {
        this.#polling = undefined;
        this.#schedulePoll();
      });
    }, this.#pollIntervalMs);
  }

  async #poll(): Promise<void> {
    try {
      const { rows } = await this.#pool.query<{ version: string }>(
        'select version from workflow.rule_set_version',
      );
      if (rows[0]?.version !== this.#version) await this.#reload();
    } catch (error) {
      this.#logger.warn({ err: error }, 'could not check for rule changes');
    }
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

  /** Keeps the timers of unchanged rules, replaces those of changed ones, drops the rest. */
  #apply(rows: readonly ScheduledRuleRow[]): void {
    const problems: ScheduleProblem[] = [];
    const wanted = new Set<string>();
    let changed = false;
    for (const row of rows) {
      const parsed = parseSchedule(row.trigger_conditions);
      if (!parsed.ok) {
        problems.push({ ruleId: row.id, ruleName: row.name, message: parsed.message });
        continue;
      }
      wanted.add(row.id);
      const current = this.#schedules.get(row.id);
      if (
        current &&
        current.ruleName === row.name &&
        current.schedule.expression === parsed.schedule.expression &&
        current.schedule.timezone === parsed.schedule.timezone &&
        current.since.getTime() === row.updated_date.getTime()
      ) {
        continue;
      }
      if (current) void current.task.destroy();
      this.#schedules.delete(row.id);
      const active = this.#schedule(row, parsed.schedule);
      if (active) this.#schedules.set(row.id, active);
      else problems.push({ ruleId: row.id, ruleName: row.name, message: 'node-cron could not schedule it' });
      changed = true;
    }
    for (const [ruleId, active] of this.#schedules) {
      if (wanted.has(ruleId)) continue;
      void active.task.destroy();
      this.#schedules.delete(ruleId);
      changed = true;
    }
    const known = new Set(this.#problems.map((problem) => `${problem.ruleId}:${problem.message}`));
    for (const problem of problems) {
      if (known.has(`${problem.ruleId}:${problem.message}`)) continue;
      this.#logger.error(problem, 'scheduled rule has a schedule that cannot run; it will not fire');
    }
    this.#problems = problems;
    if (changed) this.#logger.info({ rules: this.#schedules.size }, 'schedules loaded');
  }

  #schedule(row: ScheduledRuleRow, schedule: Schedule): ActiveSchedule | undefined {
    let task: ScheduledTask;
    try {
      task = createTask(schedule.expression, (context) => this.#fire(row.id, context.date), {
        timezone: schedule.timezone,
        name: `rulebook:${row.id}`,
        logger: this.#cronLogger,
      });
    } catch (error) {
      this.#logger.error(
        { ruleId: row.id, ruleName: row.name, err: error },
        'scheduled rule could not be scheduled; it will not fire',
      );
      return undefined;
    }
    // A tick node-cron reached late (a blocked event loop) is still fired while it is recent: if
    // another daemon fired it, the table says so.
    task.on('execution:missed', (context) => {
      if (Date.now() - context.date.getTime() <= this.#catchUpMs) void this.#fire(row.id, context.date);
    });
    void task.start();
    // The latest tick that passed while this rule was not scheduled here (this daemon starting, or
    // the rule just written), if it is recent and after the rule's last change.
    const missed = latestTick(
      task,
      new Date(Math.max(Date.now() - this.#catchUpMs, row.updated_date.getTime())),
    );
    if (missed) void this.#fire(row.id, missed);
    return { ruleId: row.id, ruleName: row.name, schedule, since: row.updated_date, task };
  }

  /** Fires one tick; retries a failure while the tick is recent. Never throws. */
  #fire(ruleId: string, scheduledFor: Date): Promise<void> {
    const work = (async () => {
      for (let attempt = 0; ; attempt++) {
        try {
          const { rows } = await this.#pool.query<{ event_id: string | null }>(FIRE, [ruleId, scheduledFor]);
          const eventId = rows[0]?.event_id ?? null;
          if (eventId === null) {
            this.#alreadyFired++;
          } else {
            this.#fired++;
            this.#logger.debug({ ruleId, scheduledFor, eventId }, 'scheduled rule fired');
          }
          return;
        } catch (error) {
          const delay = Math.min(250 * 2 ** attempt, MAX_RETRY_DELAY_MS);
          const giveUp = this.#stopping || Date.now() + delay - scheduledFor.getTime() > this.#catchUpMs;
          this.#logger.warn(
            { err: error, ruleId, scheduledFor, ...(giveUp ? {} : { retryInMs: delay }) },
            giveUp ? 'could not fire scheduled rule; giving the tick up' : 'could not fire scheduled rule',
          );
          if (giveUp) return;
          await new Promise((resolve) => setTimeout(resolve, delay));
        }
      }
    })();
    this.#inFlight.add(work);
    void work.finally(() => this.#inFlight.delete(work));
    return work;
  }
}

/** The latest tick of `task` after `after` and not after now, looking at whole seconds. */
function latestTick(task: ScheduledTask, after: Date): Date | undefined {
  const now = new Date();
  now.setMilliseconds(0);
  for (let at = now.getTime(); at > after.getTime(); at -= 1_000) {
    const candidate = new Date(at);
    if (task.match(candidate)) return candidate;
  }
  return undefined;
}
