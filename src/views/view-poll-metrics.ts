import type pg from 'pg';
import { escapeLabel } from '../metrics/registry.js';

const VIEW_POLLS = `
select format('%s.%s', coalesce(e.schema_name, 'public'), e.name) as entity,
       v.last_error is not null as failing,
       extract(epoch from now() - v.last_polled_at)::float8 as age
  from workflow.view_entities v
  join workflow.entities e on e.id = v.entity_id
 where e.is_active is not false
 order by 1`;

/**
 * The polled views' state for GET /metrics, read from workflow.view_entities so that every daemon
 * reports the same thing whichever of them polled: a view whose last poll failed (a duplicate key,
 * a view the daemon may not read) shows as failing until a poll succeeds.
 */
export async function viewPollMetrics(pool: pg.Pool): Promise<string> {
  const { rows } = await pool.query<{ entity: string; failing: boolean; age: number | null }>(VIEW_POLLS);
  const label = (entity: string) => `{entity="${escapeLabel(entity)}"}`;
  return (
    [
      '# HELP rulebook_view_poll_failing Polled views whose last poll failed (1); workflow.view_entities.last_error says why',
      '# TYPE rulebook_view_poll_failing gauge',
      ...rows.map((row) => `rulebook_view_poll_failing${label(row.entity)} ${row.failing ? 1 : 0}`),
      '# HELP rulebook_view_last_poll_age_seconds Seconds since each polled view was last polled',
      '# TYPE rulebook_view_last_poll_age_seconds gauge',
      ...rows
        .filter((row) => row.age !== null)
        .map((row) => `rulebook_view_last_poll_age_seconds${label(row.entity)} ${row.age!.toFixed(3)}`),
    ].join('\n') + '\n'
  );
}
