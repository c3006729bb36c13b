import type pg from 'pg';
import type { ActionRegistry } from './registry.js';

const RECORD = {
  name: 'rulebook.record_action_types',
  text: `insert into workflow.action_types (action_type, registered_by)
         select t, $2 from unnest($1::text[]) as t
         on conflict (action_type) do update
           set registered_by = excluded.registered_by, registered_at = now()
         where not workflow.action_types.built_in`,
};

/**
 * Records in workflow.action_types the types this daemon's registry runs, custom ones included,
 * so that `rules validate` can tell a misspelt action_type from a handler the daemon has
 * (sql/000019_alert_listeners.sql says why it is not refused when written).
 */
export async function recordActionTypes(
  pool: pg.Pool,
  registry: ActionRegistry,
  daemonId: string,
): Promise<void> {
  await pool.query({ ...RECORD, values: [registry.types(), daemonId] });
}
