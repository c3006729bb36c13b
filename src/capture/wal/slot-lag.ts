import type pg from 'pg';
import { Gauge, type MetricsRegistry } from '../../metrics/registry.js';

export interface SlotLag {
  readonly slot: string;
  /** Whether a reader is connected to the slot. */
  readonly active: boolean;
  /** WAL the slot holds that its reader has not confirmed, in bytes. */
  readonly lagBytes: number;
}

const SLOT_LAG = `
select s.slot_name as slot, s.active,
       coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn), 0)::float8 as lag_bytes
  from workflow.capture_settings c
  join pg_replication_slots s on s.slot_name = c.slot_name`;

/**
 * The WAL capture slot's lag, read from the database so that every daemon reports the same thing
 * whichever of them reads the slot. Undefined when there is no slot. A slot that nobody reads
 * keeps all WAL written since its reader stopped: the lag says how much.
 */
export async function readSlotLag(pool: pg.Pool): Promise<SlotLag | undefined> {
  const { rows } = await pool.query<{ slot: string; active: boolean; lag_bytes: number }>(SLOT_LAG);
  const row = rows[0];
  return row && { slot: row.slot, active: row.active, lagBytes: row.lag_bytes };
}

/** GET /metrics gauges for the slot; without a slot they have no series. */
export function addSlotLagMetrics(registry: MetricsRegistry, pool: pg.Pool): void {
  const lagBytes = registry.add(
    new Gauge(
      'rulebook_wal_capture_slot_lag_bytes',
      'WAL held by the WAL capture slot that its reader has not confirmed',
    ),
  );
  const active = registry.add(
    new Gauge(
      'rulebook_wal_capture_slot_active',
      'Whether a daemon is reading the WAL capture slot (1) or not (0)',
    ),
  );
  registry.collect(async () => {
    const lag = await readSlotLag(pool);
    lagBytes.replace(lag ? [['', lag.lagBytes]] : []);
    active.replace(lag ? [['', lag.active ? 1 : 0]] : []);
  });
}
