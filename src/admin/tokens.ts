import { generateToken, hashToken, looksLikeToken } from '../auth/api-tokens.js';
import { isUuid } from '../is-uuid.js';
import type { Queryable } from '../db/transaction.js';
import { AdminError, explainDatabaseError } from './errors.js';
import { findUserByEmail } from './users.js';
import { parseDurationMs } from '../duration.js';

export interface CreatedToken {
  readonly id: string;
  readonly userEmail: string;
  readonly name: string | null;
  readonly expiresAt: Date | null;
  /** The secret. Shown once: the database keeps only its hash. */
  readonly token: string;
}

export interface TokenListing {
  readonly id: string;
  readonly userEmail: string;
  readonly name: string | null;
  readonly createdDate: Date;
  readonly expiresAt: Date | null;
  readonly lastUsedAt: Date | null;
  readonly revokedAt: Date | null;
  readonly state: 'active' | 'expired' | 'revoked';
}

export interface RevokedToken {
  readonly id: string;
  readonly userEmail: string;
  readonly name: string | null;
  /** Set when the token had been revoked before; nothing changed then. */
  readonly alreadyRevokedAt: Date | null;
}

/** What a person types for --expires when a token should never expire. */
export const NEVER = 'never';

/** How long a token lives when --expires is not given: long enough to be no bother, not forever. */
export const DEFAULT_EXPIRY = '90d';

/** "30d", "12h", "45m", "2w" in milliseconds; null for "never"; undefined when it is not a duration. */
export function parseDuration(text: string): number | null | undefined {
  if (text === NEVER) return null;
  return parseDurationMs(text);
}

export async function createToken(
  db: Queryable,
  input: { email: string; name?: string; expiresInMs: number | null },
): Promise<CreatedToken> {
  const user = await findUserByEmail(db, input.email);
  const token = generateToken();
  try {
    const { rows } = await db.query<{ id: string; expires_at: Date | null }>(
      `insert into core.api_tokens (user_id, name, token_hash, expires_at)
       values ($1, $2, $3, now() + $4::bigint * interval '1 millisecond')
       returning id, expires_at`,
      [user.id, input.name ?? null, hashToken(token), input.expiresInMs],
    );
    const row = rows[0]!;
    return { id: row.id, userEmail: user.email, name: input.name ?? null, expiresAt: row.expires_at, token };
  } catch (error) {
    return explainDatabaseError(error);
  }
}

/** Whether `text` can name a token for revoke: its id, or the secret itself. */
export function isTokenReference(text: string): boolean {
  return isUuid(text) || looksLikeToken(text);
}

/** Revokes a token named by its id or by the secret. Revoking twice changes nothing. */
export async function revokeToken(db: Queryable, reference: string): Promise<RevokedToken> {
  if (!isTokenReference(reference)) {
    throw new AdminError(
      'name the token by its id (a uuid, see `rulebook token list`) or by the token itself',
    );
  }
  const byId = isUuid(reference);
  try {
    // The CTE reads the row as it was, so an earlier revocation shows through the update.
    const { rows } = await db.query<{
      id: string;
      email: string;
      name: string | null;
      previously_revoked: Date | null;
    }>(
      `with target as (
         select t.id, t.revoked_at from core.api_tokens t
          where ${byId ? 't.id = $1::uuid' : 't.token_hash = $1'}
          for update
       ), revoked as (
         update core.api_tokens t set revoked_at = now()
           from target where t.id = target.id and target.revoked_at is null
       )
       select t.id, u.email, t.name, target.revoked_at as previously_revoked
         from target join core.api_tokens t on t.id = target.id join core.users u on u.id = t.user_id`,
      [byId ? reference : hashToken(reference)],
    );
    const row = rows[0];
    if (row === undefined) throw new AdminError(`there is no token ${byId ? reference : 'with that secret'}`);
    return { id: row.id, userEmail: row.email, name: row.name, alreadyRevokedAt: row.previously_revoked };
  } catch (error) {
    return explainDatabaseError(error);
  }
}

/** Tokens, newest first, of one user or of everyone. Never the secrets: they are not kept. */
export async function listTokens(db: Queryable, options: { email?: string } = {}): Promise<TokenListing[]> {
  const user =
    options.email === undefined
      ? undefined
      : await findUserByEmail(db, options.email, { allowInactive: true });
  try {
    const { rows } = await db.query<{
      id: string;
      email: string;
      name: string | null;
      created_date: Date;
      expires_at: Date | null;
      last_used_at: Date | null;
      revoked_at: Date | null;
      expired: boolean;
    }>(
      `select t.id, u.email, t.name, t.created_date, t.expires_at, t.last_used_at, t.revoked_at,
              coalesce(t.expires_at <= now(), false) as expired
         from core.api_tokens t join core.users u on u.id = t.user_id
        where $1::uuid is null or t.user_id = $1
        order by t.created_date desc, t.id`,
      [user?.id ?? null],
    );
    return rows.map((row) => ({
      id: row.id,
      userEmail: row.email,
      name: row.name,
      createdDate: row.created_date,
      expiresAt: row.expires_at,
      lastUsedAt: row.last_used_at,
      revokedAt: row.revoked_at,
      state: row.revoked_at ? 'revoked' : row.expired ? 'expired' : 'active',
    }));
  } catch (error) {
    return explainDatabaseError(error);
  }
}

/** A date as operators read it in a terminal: to the minute, in UTC. */
export function formatDate(date: Date | null): string {
  return date === null ? '-' : `${date.toISOString().slice(0, 16).replace('T', ' ')}Z`;
}

/** Tokens as aligned text columns, a header first. */
export function tokenTable(tokens: readonly TokenListing[]): string[] {
  const rows = [
    ['ID', 'USER', 'NAME', 'STATE', 'CREATED', 'EXPIRES', 'LAST USED'],
    ...tokens.map((t) => [
      t.id,
      t.userEmail,
      t.name ?? '-',
      t.state,
      formatDate(t.createdDate),
      formatDate(t.expiresAt),
      formatDate(t.lastUsedAt),
    ]),
  ];
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) =>
    row
      .map((cell, column) => cell.padEnd(widths[column]!))
      .join('  ')
      .trimEnd(),
  );
}
