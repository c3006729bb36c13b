import type pg from 'pg';
import type { Logger } from '../../logger.js';
import { dropSlot, ensureSlot } from './capture-slot.js';

/**
 * Puts the database in WAL mode: the slot first (it keeps every change from its creation on), then,
 * in one transaction, the tables switched (REPLICA IDENTITY FULL, capture triggers disabled, in the
 * publication) and the reader's starting point recorded as the WAL position after the switch.
 * Transactions that committed before it were captured by the triggers, later ones by the reader:
 * each change by exactly one. Running it again in WAL mode changes nothing but newly registered
 * tables' settings.
 */
export async function enterWalMode(client: pg.ClientBase, slot: string, logger: Logger): Promise<void> {
  const created = await ensureSlot(client, slot);
  if (created) logger.info({ slot }, 'WAL capture: created the replication slot');
  await client.query('begin');
  try {
    const { rows } = await client.query<{ mode: string; slot_name: string | null }>(
      'select mode, slot_name from workflow.capture_settings for update',
    );
    const before = rows[0]!;
    const switched = await client.query<{ lsn: string }>('select workflow.set_capture_mode($1, $2) as lsn', [
      'wal',
      slot,
    ]);
    const startsHere = before.mode !== 'wal' || created || before.slot_name !== slot;
    if (startsHere) {
      await client.query('select workflow.start_wal_capture_at($1, $2)', [slot, switched.rows[0]!.lsn]);
    }
    await client.query('commit');
    if (before.mode !== 'wal') {
      logger.info(
        { slot, from: switched.rows[0]!.lsn },
        'WAL capture: switched from trigger capture to WAL capture',
      );
    } else if (startsHere) {
      logger.warn(
        { slot, previousSlot: before.slot_name, from: switched.rows[0]!.lsn },
        'WAL capture: the slot is new while the database was already in WAL mode; changes written while there was no slot were not captured',
      );
    }
  } catch (error) {
    await client.query('rollback').catch(() => undefined);
    throw error;
  }
}

/**
 * What a daemon in trigger mode does: when the database was in WAL mode, gives every table back to
 * its triggers, and drops the WAL capture slot, which would otherwise hold the server's WAL for as
 * long as it exists. Changes the slot still held unread at the switch are not captured; the log
 * says how much WAL that was.
 */
export async function leaveWalMode(client: pg.ClientBase, logger: Logger): Promise<void> {
  const { rows } = await client.query<{ mode: string; slot_name: string | null }>(
    'select mode, slot_name from workflow.capture_settings',
  );
  const settings = rows[0];
  if (!settings || (settings.mode !== 'wal' && settings.slot_name === null)) return;
  if (settings.mode === 'wal') {
    await client.query('select workflow.set_capture_mode($1, null)', ['triggers']);
    logger.info(
      'WAL capture is off (RULEBOOK_CAPTURE=triggers): registered tables are captured by their triggers again',
    );
  }
  if (settings.slot_name === null) return;
  const lag = await client.query<{ lag: string | null }>(
    `select pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::text as lag
       from pg_replication_slots where slot_name = $1`,
    [settings.slot_name],
  );
  const outcome = await dropSlot(client, settings.slot_name);
  if (outcome === 'dropped') {
    logger.info(
      { slot: settings.slot_name, unreadBytes: Number(lag.rows[0]?.lag ?? 0) },
      'WAL capture is off: dropped its replication slot',
    );
  } else if (outcome === 'active') {
    logger.warn(
      { slot: settings.slot_name },
      'WAL capture is off here, but another daemon still reads its slot (RULEBOOK_CAPTURE=wal there); the slot is left',
    );
    return;
  }
  await client.query('update workflow.capture_settings set slot_name = null where slot_name = $1', [
    settings.slot_name,
  ]);
}
