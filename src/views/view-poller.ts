import type pg from 'pg';
import { createPool } from '../db/pool.js';
import type { Logger } from '../logger.js';
import { PeriodicTask } from '../periodic-task.js';
import { sqlState } from '../sql-state.js';

/** What one poll of one view did (workflow.poll_view's answer, with the view named). */
export interface ViewPollResult {
  readonly entityId: string;
  readonly entityName: string;
  readonly status:
    'polled' | 'snapshot' | 'duplicate_key' | 'error' | 'busy' | 'not_due' | 'idle' | 'inactive';
  /** Rows the view held (polled, snapshot). */
  readonly rows?: number;
  readonly created?: number;
  readonly updated?: number;
  readonly deleted?: number;
  /** Events written: changes that an active rule of their kind watches. */
  readonly fired?: number;
  /** A key that appears more than once in the view (duplicate_key). */
  readonly key?: unknown;
  readonly message?: string;
  readonly sqlstate?: string;
}

export interface PollViewsOptions {
  /** Polls views whose interval has not passed yet too (tests, `rulebook` commands). */
  readonly force?: boolean;
  readonly logger?: Logger;
}

const DUE_VIEWS = 'select entity_id, entity_name from workflow.due_view_polls()';
const ALL_VIEWS = `
select v.entity_id, format('%s.%s', coalesce(e.schema_name, 'public'), e.name) as entity_name
  from workflow.view_entities v join workflow.entities e on e.id = v.entity_id
 where e.is_active is not false
 order by v.last_polled_at nulls first`;
const POLL_VIEW = 'select workflow.poll_view($1, $2) as result';
const RECORD_ERROR = `
update workflow.view_entities set last_polled_at = now(), last_error = $2, last_error_at = now()
 where entity_id = $1`;

/**
 * Polls every registered view that is due (all of them with `force`), each in a transaction of its
 * own: a slow or broken view delays the others but never undoes their polls. Safe to run from any
 * number of daemons at once: workflow.poll_view locks the view's row with SKIP LOCKED, so each
 * change is written once. Problems (a duplicate key, a view that cannot be read) are returned and
 * logged, never thrown; only a failure to reach the database is.
 */
export async function pollViews(pool: pg.Pool, options: PollViewsOptions = {}): Promise<ViewPollResult[]> {
  const force = options.force ?? false;
  const { rows: views } = await pool.query<{ entity_id: string; entity_name: string }>(
    force ? ALL_VIEWS : DUE_VIEWS,
  );
  const results: ViewPollResult[] = [];
  for (const view of views) {
    let result: ViewPollResult;
    try {
      const { rows } = await pool.query<{ result: Omit<ViewPollResult, 'entityId' | 'entityName'> }>(
        POLL_VIEW,
        [view.entity_id, force],
      );
      result = { entityId: view.entity_id, entityName: view.entity_name, ...rows[0]!.result };
    } catch (error) {
      result = await recordThrown(pool, view.entity_id, view.entity_name, error);
    }
    if (options.logger) logResult(options.logger, result);
    results.push(result);
  }
  return results;
}

/**
 * poll_view records the errors PL/pgSQL can catch; a statement_timeout (query_canceled) or a lost
 * connection escapes it and rolls back its record. Unrecorded, such a view would keep the oldest
 * last_polled_at, come first in every later tick and fail the same way, and the views after it would
 * never be polled. So it is recorded here, and the tick goes on with the next view; an error that
 * cannot be recorded either (the database is unreachable) is thrown.
 */
async function recordThrown(
  pool: pg.Pool,
  entityId: string,
  entityName: string,
  error: unknown,
): Promise<ViewPollResult> {
  // A server error is recorded; a network error (a Node code such as ECONNRESET) is rethrown.
  const code = sqlState(error);
  if (code === undefined) throw error;
  const { message } = error as { message?: string };
  await pool.query(RECORD_ERROR, [entityId, message ?? String(error)]);
  return { entityId, entityName, status: 'error', message: message ?? String(error), sqlstate: code };
}

function logResult(logger: Logger, result: ViewPollResult): void {
  const entity = { entity: result.entityName, entityId: result.entityId };
  switch (result.status) {
    case 'duplicate_key':
      logger.error({ ...entity, duplicateKey: result.key }, `view poll refused: ${result.message}`);
      break;
    case 'error':
      logger.error({ ...entity, sqlstate: result.sqlstate }, `view poll failed: ${result.message}`);
      break;
    case 'snapshot':
      logger.info({ ...entity, rows: result.rows }, 'view snapshot taken; changes from now on fire rules');
      break;
    case 'polled':
      if ((result.fired ?? 0) > 0) {
        logger.debug(
          { ...entity, created: result.created, updated: result.updated, deleted: result.deleted },
          'view changes queued',
        );
      }
      break;
    default:
      break;
  }
}

export interface ViewPollerOptions {
  readonly databaseUrl: string;
  readonly logger: Logger;
  /** How often to look for views whose poll is due; each view's own interval is in the database. */
  readonly tickMs?: number;
}

/** Counts since start, by outcome; a view that keeps failing shows in `failed` and in the logs. */
export interface ViewPollerStats {
  readonly polls: number;
  readonly eventsWritten: number;
  readonly failed: number;
}

/** The daemon's view poller: every tick, polls the views that are due (see {@link pollViews}). */
export class ViewPoller {
  readonly #logger: Logger;
  readonly #pool: pg.Pool;
  readonly #task: PeriodicTask;
  #polls = 0;
  #eventsWritten = 0;
  #failed = 0;

  constructor(options: ViewPollerOptions) {
    this.#logger = options.logger.child({ component: 'view-poller' });
    this.#pool = createPool({
      databaseUrl: options.databaseUrl,
      max: 1,
      applicationName: 'rulebook-view-poller',
      logger: this.#logger,
    });
    this.#task = new PeriodicTask(
      () => this.pollOnce(),
      options.tickMs ?? 1_000,
      (error) => this.#logger.warn({ err: error }, 'views could not be polled'),
    );
  }

  get stats(): ViewPollerStats {
    return { polls: this.#polls, eventsWritten: this.#eventsWritten, failed: this.#failed };
  }

  start(): void {
    this.#task.start();
  }

  async stop(): Promise<void> {
    await this.#task.stop();
    await this.#pool.end();
  }

  /** Polls the views that are due now. */
  async pollOnce(options: { force?: boolean } = {}): Promise<ViewPollResult[]> {
    const results = await pollViews(this.#pool, { ...options, logger: this.#logger });
    for (const result of results) {
      if (result.status === 'polled' || result.status === 'snapshot') this.#polls++;
      if (result.status === 'duplicate_key' || result.status === 'error') this.#failed++;
      this.#eventsWritten += result.fired ?? 0;
    }
    return results;
  }
}
