import type pg from 'pg';
import { Gauge, type MetricsRegistry } from '../metrics/registry.js';

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
export function addViewPollMetrics(registry: MetricsRegistry, pool: pg.Pool): void {
  const failing = registry.add(
    new Gauge(
      'rulebook_view_poll_failing',
      'Polled views whose last poll failed (1); workflow.view_entities.last_error says why',
      'entity',
    ),
  );
  const age = registry.add(
    new Gauge(
      'rulebook_view_last_poll_age_seconds',
      'Seconds since each polled view was last polled',
      'entity',
    ),
  );
  registry.collect(async () => {
    const { rows } = await pool.query<{ entity: string; failing: boolean; age: number | null }>(VIEW_POLLS);
    failing.replace(rows.map((row) => [row.entity, row.failing ? 1 : 0]));
    age.replace(
      rows.filter((row) => row.age !== null).map((row) => [row.entity, Number(row.age!.toFixed(3))]),
    );
  });
}
