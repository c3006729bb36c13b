import pg from 'pg';

/**
 * A stand-in for rulebook's daemon, reduced to the part that touches the writers: it empties the
 * outbox as fast as it can on one connection, and when the outbox is empty it registers itself in
 * workflow.idle_daemons and sleeps until a NOTIFY (received on a second, LISTENing connection) or
 * a timeout. Writers NOTIFY only while a daemon is registered as idle, so while this loop is busy
 * they never touch the NOTIFY queue or its commit-time lock.
 */
export interface DrainerOptions {
  readonly url: string;
  readonly daemonId?: string;
  /** Deletes one batch of events and returns their ids. */
  readonly deleteSql?: string;
  readonly channel?: string;
  /**
   * Register in workflow.idle_daemons before sleeping (rulebook's protocol). Without it the
   * drainer simply sleeps until a NOTIFY, for outboxes whose writers always notify.
   */
  readonly registerIdle?: boolean;
  readonly idleTimeoutMs?: number;
}

export interface DrainerStats {
  /** Events deleted. */
  drained: number;
  /** Non-empty batches. */
  batches: number;
  /** Notifications received on the LISTENing connection. */
  notifications: number;
  /** Times the drainer found the outbox empty and went idle. */
  idlePeriods: number;
  /** Idle periods ended by a NOTIFY, and by the timeout. */
  wokenByNotify: number;
  wokenByTimeout: number;
}

export interface Drainer {
  stats(): DrainerStats;
  /** Stops the loop, deregisters, closes both connections and returns the final counts. */
  stop(): Promise<DrainerStats>;
}

export const RULEBOOK_DELETE_SQL = `delete from workflow.events where id in (
  select id from workflow.events where state = 'pending' order by id limit 500 for update skip locked
) returning id`;

export async function startDrainer(options: DrainerOptions): Promise<Drainer> {
  const daemonId = options.daemonId ?? `bench-drainer-${process.pid}`;
  const deleteSql = options.deleteSql ?? RULEBOOK_DELETE_SQL;
  const channel = options.channel ?? 'rulebook_events';
  const registerIdle = options.registerIdle ?? true;
  const idleTimeoutMs = options.idleTimeoutMs ?? 1000;

  const stats: DrainerStats = {
    drained: 0,
    batches: 0,
    notifications: 0,
    idlePeriods: 0,
    wokenByNotify: 0,
    wokenByTimeout: 0,
  };
  const work = new pg.Client({ connectionString: options.url, application_name: `${daemonId} (work)` });
  const listener = new pg.Client({ connectionString: options.url, application_name: `${daemonId} (listen)` });
  let stopping = false;
  let woken = false;
  let wake: (() => void) | undefined;
  listener.on('notification', () => {
    stats.notifications += 1;
    woken = true;
    wake?.();
  });

  try {
    await work.connect();
    await listener.connect();
    await listener.query(`listen ${pg.escapeIdentifier(channel)}`);
  } catch (error) {
    await Promise.allSettled([work.end(), listener.end()]);
    throw error;
  }

  const drainBatch = async (): Promise<number> => {
    const { rowCount } = await work.query(deleteSql);
    const count = rowCount ?? 0;
    if (count > 0) {
      stats.drained += count;
      stats.batches += 1;
    }
    return count;
  };

  /** Resolves on a NOTIFY received since `woken` was last cleared, or after the timeout. */
  const sleep = async (): Promise<void> => {
    if (woken || stopping) {
      if (woken) stats.wokenByNotify += 1;
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const byNotify = await new Promise<boolean>((resolve) => {
      wake = () => resolve(true);
      timer = setTimeout(() => resolve(false), idleTimeoutMs);
    });
    wake = undefined;
    clearTimeout(timer);
    if (stopping) return;
    if (byNotify) stats.wokenByNotify += 1;
    else stats.wokenByTimeout += 1;
  };

  const loop = (async () => {
    while (!stopping) {
      if ((await drainBatch()) > 0) continue;
      stats.idlePeriods += 1;
      if (registerIdle) {
        await work.query('insert into workflow.idle_daemons (daemon_id) values ($1) on conflict do nothing', [
          daemonId,
        ]);
      }
      // A NOTIFY from before this point announced events that the next poll sees anyway.
      woken = false;
      if ((await drainBatch()) === 0) await sleep();
      if (registerIdle)
        await work.query('delete from workflow.idle_daemons where daemon_id = $1', [daemonId]);
    }
  })();
  // Keep an early failure from being reported as unhandled before stop() awaits it.
  loop.catch(() => {});

  return {
    stats: () => ({ ...stats }),
    async stop() {
      stopping = true;
      wake?.();
      try {
        await loop;
      } finally {
        await Promise.allSettled([work.end(), listener.end()]);
      }
      return { ...stats };
    },
  };
}
