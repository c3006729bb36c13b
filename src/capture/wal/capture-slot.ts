import type pg from 'pg';

/** The publication WAL capture reads (workflow.wal_capture_publication() in 000020). */
export const CAPTURE_PUBLICATION = 'rulebook_capture';

/**
 * The advisory lock (session-level) held by the one daemon that reads the slot: the WAL reader, or
 * a daemon in trigger mode draining the slot after WAL mode. Nobody reads the slot without it.
 */
export const TRY_READER_LOCK = `select pg_try_advisory_lock(hashtextextended('rulebook.wal_capture', 0)) as locked`;
export const RELEASE_READER_LOCK = `select pg_advisory_unlock(hashtextextended('rulebook.wal_capture', 0))`;

/**
 * The slot a database's WAL capture reads. Slots belong to the whole cluster, so the default
 * carries the database's name: two rulebook databases on one server get a slot each.
 */
export function defaultSlotName(database: string): string {
  const name = `rulebook_${database.toLowerCase().replace(/[^a-z0-9_]/g, '_')}`;
  return name.slice(0, 63);
}

/** Slot names are lower-case letters, digits and underscores (PostgreSQL's own rule), at most 63. */
export function checkSlotName(name: string): string {
  if (!/^[a-z0-9_]{1,63}$/.test(name)) {
    throw new Error(
      `a replication slot name is 1 to 63 lower-case letters, digits and underscores, got "${name}" (RULEBOOK_WAL_SLOT)`,
    );
  }
  return name;
}

export async function slotExists(client: pg.ClientBase, slot: string): Promise<boolean> {
  const { rows } = await client.query(`select 1 from pg_replication_slots where slot_name = $1`, [slot]);
  return rows.length > 0;
}

/** Creates the slot when it is missing; says whether it did. */
export async function ensureSlot(client: pg.ClientBase, slot: string): Promise<boolean> {
  if (await slotExists(client, slot)) return false;
  try {
    await client.query(`select pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
    return true;
  } catch (error) {
    // Another daemon created it between the check and here.
    if ((error as { code?: string }).code === '42710') return false;
    throw error;
  }
}

/** Drops the slot unless a reader holds it; says what happened. */
export async function dropSlot(
  client: pg.ClientBase,
  slot: string,
): Promise<'dropped' | 'absent' | 'active'> {
  const { rows } = await client.query<{ active: boolean }>(
    `select active from pg_replication_slots where slot_name = $1`,
    [slot],
  );
  if (rows.length === 0) return 'absent';
  if (rows[0]!.active) return 'active';
  try {
    await client.query(`select pg_drop_replication_slot($1)`, [slot]);
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === '42704') return 'absent';
    if (code === '55006') return 'active';
    throw error;
  }
  return 'dropped';
}
