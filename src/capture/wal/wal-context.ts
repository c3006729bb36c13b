import { createHash, timingSafeEqual } from 'node:crypto';
import type pg from 'pg';
import type { WalMessage } from './pgoutput-decoder.js';

/**
 * What the capture trigger reads from the writer's session settings (rulebook.depth,
 * workflow.actor_id) is not in the WAL. A transaction declares it for WAL capture with a
 * transactional logical decoding message, which applies to the changes after it in that
 * transaction:
 *   select pg_logical_emit_message(true, 'rulebook.actor_id', 'alice');
 *
 * The chain depth is the daemon's alone (docs/privileges.md), and any role may emit a message
 * (pg_logical_emit_message is executable by PUBLIC): a writer that declared a large depth would
 * switch every rule off for its write. So the daemon signs its depth with a secret only
 * rulebook_daemon reads (workflow.wal_context_secret, sql/000022), bound to its transaction id:
 *   'rulebook.depth' = '<depth>:<hex sha256(secret ":" xid ":" depth)>'
 * and a depth message that does not verify is ignored (the writes count as depth 0, as a
 * writer's do in trigger mode). The actor is not signed: in trigger mode any writer sets
 * workflow.actor_id too, so WAL mode trusts it as much and no more.
 */
export const DEPTH_PREFIX = 'rulebook.depth';
export const ACTOR_PREFIX = 'rulebook.actor_id';

/** Emits the signed depth message and sets rulebook.depth, in the caller's transaction. */
export const DECLARE_DEPTH_SQL = `
select set_config('rulebook.depth', $1, true),
       pg_logical_emit_message(true, 'rulebook.depth', $1 || ':' || encode(sha256(convert_to(
         (select secret from workflow.wal_context_secret) || ':' ||
         (pg_current_xact_id()::text::numeric % 4294967296)::text || ':' || $1, 'UTF8')), 'hex'))`;

export type ContextMessage = { depth: number } | { actor: string } | { rejected: string };

/** The signing secret, or undefined when this role may not read it (every depth is then rejected). */
export async function loadContextSecret(pool: pg.Pool | pg.ClientBase): Promise<string | undefined> {
  try {
    const result = await pool.query<{ secret: string }>('select secret from workflow.wal_context_secret');
    return result.rows[0]?.secret;
  } catch (error) {
    if ((error as { code?: string }).code === '42501') return undefined;
    throw error;
  }
}

export function depthSignature(secret: string, xid: number, depth: number): string {
  return createHash('sha256').update(`${secret}:${xid}:${depth}`, 'utf8').digest('hex');
}

/** A context message of the transaction `xid`; `rejected` for a depth that is not the daemon's. */
export function readContextMessage(
  message: Extract<WalMessage, { tag: 'message' }>,
  xid: number,
  secret: string | undefined,
): ContextMessage | undefined {
  if (message.prefix === DEPTH_PREFIX) {
    const match = /^([0-9]{1,9}):([0-9a-f]{64})$/.exec(message.content);
    if (!match) return { rejected: 'not <depth>:<signature>' };
    if (secret === undefined) return { rejected: 'this role may not read workflow.wal_context_secret' };
    const depth = Number(match[1]);
    const expected = Buffer.from(depthSignature(secret, xid, depth), 'hex');
    if (!timingSafeEqual(expected, Buffer.from(match[2]!, 'hex')))
      return { rejected: 'signature does not verify' };
    return { depth };
  }
  if (message.prefix === ACTOR_PREFIX) return { actor: message.content };
  return undefined;
}
