import type { WalMessage } from './pgoutput-decoder.js';

/**
 * What the capture trigger reads from the writer's session settings (rulebook.depth,
 * workflow.actor_id) is not in the WAL. A transaction declares it for WAL capture with a
 * transactional logical decoding message, which applies to the changes after it in that
 * transaction:
 *   select pg_logical_emit_message(true, 'rulebook.depth', '2');
 *   select pg_logical_emit_message(true, 'rulebook.actor_id', 'alice');
 * The engine emits the depth in WAL mode (src/engine/executor.ts), so the chain-depth limit holds
 * in both modes.
 */
export const DEPTH_PREFIX = 'rulebook.depth';
export const ACTOR_PREFIX = 'rulebook.actor_id';

export function readContextMessage(
  message: Extract<WalMessage, { tag: 'message' }>,
): { depth: number } | { actor: string } | undefined {
  if (message.prefix === DEPTH_PREFIX && /^[0-9]{1,9}$/.test(message.content)) {
    return { depth: Number(message.content) };
  }
  if (message.prefix === ACTOR_PREFIX) return { actor: message.content };
  return undefined;
}
