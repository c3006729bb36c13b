import type pg from 'pg';
import type { Logger } from '../../logger.js';
import { dropSlot, ensureSlot, RELEASE_READER_LOCK, slotExists, TRY_READER_LOCK } from './capture-slot.js';
import { describeError } from '../../describe-error.js';
import { drainSlot } from './drain-slot.js';

// Daemons starting together switch one at a time: a slot still being created (it waits for the
// transactions in flight) is listed before it can decode, and a second daemon switching the tables
// meanwhile would leave changes to neither path, or the first would then move the reader's start
// past changes the second's reader had not appended.
const SWITCH_LOCK = `select pg_advisory_lock(hashtextextended('rulebook.wal_mode_switch', 0))`;
const SWITCH_UNLOCK = `select pg_advisory_unlock(hashtextextended('rulebook.wal_mode_switch', 0))`;

async function oneSwitchAtATime(client: pg.ClientBase, run: () => Promise<void>): Promise<void> {
  await client.query(SWITCH_LOCK);
  try {
    await run();
  } finally {
    await client.query(SWITCH_UNLOCK).catch(() => undefined);
  }
}

/**
 * Puts the database in WAL mode: the slot first (it keeps every change from its creation on), then,
 * in one transaction, the tables switched (REPLICA IDENTITY FULL, capture triggers disabled, in the
 * publication) and the reader's starting point recorded as the WAL position after the switch.
 * Transactions that committed before it were captured by the triggers, later ones by the reader:
 * each change by exactly one. Running it again in WAL mode changes nothing but newly registered
 * tables' settings.
 */
export async function enterWalMode(client: pg.ClientBase, slot: string, logger: Logger): Promise<void> {
  await oneSwitchAtATime(client, () => switchToWal(client, slot, logger));
}

async function switchToWal(client: pg.ClientBase, slot: string, logger: Logger): Promise<void> {
  // Before the slot: changes the slot decodes must find the publication in the catalog of their time.
  await client.query('select workflow.create_capture_publication()');
  const created = await ensureSlot(client, slot);
  if (created) logger.info({ slot }, 'WAL capture: created the replication slot');
  await client.query('begin');
  try {
    const { rows } = await client.query<{
      mode: string;
      slot_name: string | null;
      drain_until: string | null;
    }>('select mode, slot_name, drain_until::text from workflow.capture_settings for update');
    const before = rows[0]!;
    const switched = await client.query<{ lsn: string }>('select workflow.set_capture_mode($1, $2) as lsn', [
      'wal',
      slot,
    ]);
    // A drain left unfinished by leaveWalMode (another daemon was still in WAL mode): the slot keeps
    // its progress row and resumes from it. It holds nothing of the trigger-mode period in between,
    // since the tables were out of the publication, so every change is still captured once.
    const resumesDrain =
      before.mode !== 'wal' && before.drain_until !== null && !created && before.slot_name === slot;
    const startsHere = !resumesDrain && (before.mode !== 'wal' || created || before.slot_name !== slot);
    await client.query('update workflow.capture_settings set drain_until = null');
    if (startsHere) {
      await client.query('select workflow.start_wal_capture_at($1, $2)', [slot, switched.rows[0]!.lsn]);
    }
    await client.query('commit');
    if (resumesDrain) {
      logger.info(
        { slot, drainUntil: before.drain_until },
        'WAL capture: switched back to WAL capture before the slot was drained; the reader appends what it still holds',
      );
    } else if (before.mode !== 'wal') {
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

/** Changes per append while draining, when the caller does not say (RULEBOOK_WAL_BATCH_SIZE's default). */
const DRAIN_BATCH_SIZE = 2000;

/**
 * What a daemon in trigger mode does when the database was in WAL mode: gives every table back to
 * its triggers, recording the WAL position after that switch (drain_until, 000021) in the same
 * transaction; appends the changes the slot still holds that committed before it (they were
 * written with the triggers disabled) with the reader's idempotent append; then drops the slot and
 * the publication. Each change is captured by one path: the slot before the switch point, the
 * triggers after it.
 *
 * The slot is read under the reader lock. When another daemon holds it, that daemon runs in WAL
 * mode (a mixed configuration): it keeps reading the slot, which after the switch holds nothing
 * newer than the switch point, so nothing is lost or doubled; the slot is left, with a warning,
 * and the next daemon started in trigger mode once none runs in WAL mode drains and drops it. A
 * crash anywhere leaves drain_until set, and the next start finishes the drain. A slot that is
 * gone (dropped by hand) is logged with what could not be read, and forgotten.
 */
export async function leaveWalMode(
  client: pg.ClientBase,
  logger: Logger,
  options: { readonly batchSize?: number } = {},
): Promise<void> {
  await oneSwitchAtATime(client, () => switchToTriggers(client, logger, options));
}

async function switchToTriggers(
  client: pg.ClientBase,
  logger: Logger,
  options: { readonly batchSize?: number },
): Promise<void> {
  const { rows } = await client.query<{ mode: string; slot_name: string | null; drain_until: string | null }>(
    'select mode, slot_name, drain_until::text from workflow.capture_settings',
  );
  const settings = rows[0];
  if (!settings || (settings.mode !== 'wal' && settings.slot_name === null)) return;
  let until = settings.drain_until;
  if (settings.mode === 'wal') {
    const switched = await client.query<{ lsn: string }>('select workflow.leave_wal_capture()::text as lsn');
    until = switched.rows[0]!.lsn;
    logger.info(
      { slot: settings.slot_name, until },
      'WAL capture is off (RULEBOOK_CAPTURE=triggers): registered tables are captured by their triggers again; the slot is read up to the switch',
    );
  }
  const slot = settings.slot_name;
  if (slot === null) {
    await client.query('select workflow.finish_leaving_wal_capture(null)');
    return;
  }
  const locked = await client.query<{ locked: boolean }>(TRY_READER_LOCK);
  if (!locked.rows[0]!.locked) {
    logger.warn(
      { slot, until },
      'WAL capture is off here, but another daemon still runs with RULEBOOK_CAPTURE=wal and reads its slot (mixed configuration): it appends what the slot holds up to the switch; the slot is left until a daemon in trigger mode starts while none runs in WAL mode',
    );
    return;
  }
  try {
    if (!(await slotExists(client, slot))) {
      logger.error(
        { slot, until },
        'WAL capture is off: its replication slot is gone (dropped by hand?), so the changes it held unread before the switch could not be appended',
      );
    } else if (until !== null) {
      try {
        const drained = await drainSlot(client, slot, until, options.batchSize ?? DRAIN_BATCH_SIZE);
        logger.info(
          { slot, until, ...drained },
          'WAL capture is off: appended what its slot held up to the switch',
        );
      } catch (error) {
        // Dropping the slot would lose what it holds: it is left, and the next start tries again.
        logger.error(
          { err: describeError(error), slot, until },
          "WAL capture is off, but its slot could not be read up to the switch; the slot is left (it holds the server's WAL) and the next daemon started in trigger mode tries again",
        );
        return;
      }
    }
    const outcome = await dropSlot(client, slot);
    if (outcome === 'active') {
      logger.warn({ slot }, 'WAL capture is off, but a session still streams its slot; the slot is left');
      return;
    }
    if (outcome === 'dropped') logger.info({ slot }, 'WAL capture is off: dropped its replication slot');
    await client.query('select workflow.finish_leaving_wal_capture($1)', [slot]);
  } finally {
    await client.query(RELEASE_READER_LOCK);
  }
}
