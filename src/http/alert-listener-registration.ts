import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';

// Leftover registrations of listeners whose connection is gone (a server that died): each one
// costs every writer a look at pg_stat_activity, so the next stream to register deletes them.
const PRUNE = {
  name: 'rulebook.prune_alert_listeners',
  text: `delete from workflow.alert_listeners l
          where not exists (select from pg_catalog.pg_stat_get_activity(null) a
                             where a.application_name = l.listener)`,
};
const REGISTER = {
  name: 'rulebook.register_alert_listener',
  text: `insert into workflow.alert_listeners (listener) values ($1)
         on conflict (listener) do update set since = now()`,
};
const UNREGISTER = {
  name: 'rulebook.unregister_alert_listener',
  text: 'delete from workflow.alert_listeners where listener = $1',
};
// Every transaction holds a lock on its own virtual transaction id from its start to its end. Only
// this database's: alerts are written here, and other databases' transactions are none of its
// business (a busy neighbour would hold up every first stream).
const IN_FLIGHT = {
  name: 'rulebook.transactions_in_flight',
  text: `select coalesce(array_agg(l.virtualxid), '{}') as ids
           from pg_catalog.pg_locks l
           join pg_catalog.pg_stat_get_activity(null) a on a.pid = l.pid
          where l.locktype = 'virtualxid' and l.pid <> pg_catalog.pg_backend_pid()
            and a.datid = (select oid from pg_catalog.pg_database where datname = current_database())`,
};
const STILL_RUNNING = {
  name: 'rulebook.transactions_still_running',
  text: `select exists (select from pg_catalog.pg_locks
                         where locktype = 'virtualxid' and virtualxid = any($1::text[])) as running`,
};

/** How long a first stream waits for the transactions that may not have seen its registration. */
const IN_FLIGHT_WAIT_MS = 1_000;
const IN_FLIGHT_POLL_MS = 10;

/**
 * The alert stream's row in workflow.alert_listeners, which makes create_alert and the staff API
 * NOTIFY rulebook_alerts (sql/000019_alert_listeners.sql). The row names the LISTEN connection by
 * its application_name, `listenerName`, which the stream gives that connection.
 */
export class AlertListenerRegistration {
  /** Unique to this stream, so that a leftover row of a dead server never matches a live one. */
  readonly listenerName = `rulebook-alert-stream ${randomUUID()}`;
  #registered = false;

  constructor(private readonly pool: pg.Pool) {}

  get registered(): boolean {
    return this.#registered;
  }

  /** After the listener reconnected: the database may have restarted, which empties the table. */
  forget(): void {
    this.#registered = false;
  }

  /**
   * Registers or unregisters. A writer decides whether to NOTIFY when its statement runs, and
   * commits later: one whose snapshot was taken before the registration committed sends nothing
   * though it commits after. So registering also waits until every transaction in progress when
   * it committed has ended, and a stream answered after that hears every alert committed after it
   * was answered, as when every alert was NOTIFYed. The wait is bounded (IN_FLIGHT_WAIT_MS) so that a
   * transaction left open cannot hold a page back: an alert of a transaction that was open longer
   * than that, and checked before the registration, is not streamed; the page shows it when it next
   * loads the list.
   */
  async set(wanted: boolean): Promise<void> {
    if (wanted === this.#registered) return;
    if (!wanted) {
      await this.pool.query({ ...UNREGISTER, values: [this.listenerName] });
      this.#registered = false;
      return;
    }
    await this.pool.query(PRUNE);
    await this.pool.query({ ...REGISTER, values: [this.listenerName] });
    this.#registered = true;
    const { rows } = await this.pool.query<{ ids: string[] }>(IN_FLIGHT);
    const ids = rows[0]!.ids;
    const deadline = Date.now() + IN_FLIGHT_WAIT_MS;
    while (ids.length > 0 && Date.now() < deadline) {
      const { rows: running } = await this.pool.query<{ running: boolean }>({
        ...STILL_RUNNING,
        values: [ids],
      });
      if (!running[0]!.running) return;
      await sleep(IN_FLIGHT_POLL_MS);
    }
  }
}
