import type http from 'node:http';
import type pg from 'pg';
import { hashToken, looksLikeToken, TOKEN_PREFIX } from '../auth/api-tokens.js';
import type { FailureLimiter } from './rate-limit.js';
import { HttpError } from './respond.js';
import type { RequestContext } from './router.js';

/** The person behind a request, as their token says. */
export interface Caller {
  readonly userId: string;
  readonly email: string | null;
  readonly name: string | null;
  readonly tokenId: string;
}

export type AuthedHandler = (context: RequestContext, caller: Caller) => Promise<void> | void;

/** last_used_at is a hint for operators, so it is written at most once a minute per token. */
const TOUCH_INTERVAL = '1 minute';

const UNAUTHORIZED = { 'www-authenticate': 'Bearer realm="rulebook"' };
const INVALID_TOKEN = { 'www-authenticate': 'Bearer realm="rulebook", error="invalid_token"' };

/** The address failures are counted against. The socket's, not X-Forwarded-For, which anyone can set. */
export function clientAddress(request: http.IncomingMessage): string {
  return request.socket.remoteAddress ?? 'unknown';
}

/**
 * Checks `Authorization: Bearer <token>` against core.api_tokens. Unknown, expired and revoked
 * tokens answer 401; tokens of deactivated users 403; and an address with too many failures
 * answers 429 to further failures until its window has passed. A valid token is never refused:
 * behind a proxy every client shares one address, and anyone sending bad tokens would otherwise
 * lock out all staff. Guessing stays pointless, since a token holds 256 random bits.
 */
export class Authenticator {
  constructor(
    private readonly pool: pg.Pool,
    private readonly failures: FailureLimiter,
  ) {}

  /** Wraps a handler so that it runs only for a valid caller. */
  guard(
    handler: AuthedHandler,
    options: { queryToken?: boolean } = {},
  ): (context: RequestContext) => Promise<void> {
    return async (context) => {
      const caller = await this.authenticate(context.request, context.url, options);
      await handler(context, caller);
    };
  }

  async authenticate(
    request: http.IncomingMessage,
    url: URL,
    options: { queryToken?: boolean } = {},
  ): Promise<Caller> {
    const address = clientAddress(request);
    const token = this.#presentedToken(request, url, options.queryToken ?? false);
    if (token === undefined) {
      throw new HttpError(
        401,
        'sign in: send the header "Authorization: Bearer <your rulebook token>"',
        UNAUTHORIZED,
      );
    }
    const fail = (status: number, message: string): never => {
      const wait = this.failures.retryAfterMs(address);
      if (wait > 0) {
        // Blocked: this failure is not counted, so that the block ends on time.
        const seconds = Math.ceil(wait / 1000);
        throw new HttpError(429, `too many failed sign-ins from this address; try again in ${seconds} s`, {
          'retry-after': String(seconds),
        });
      }
      this.failures.recordFailure(address);
      throw new HttpError(status, message, status === 401 ? INVALID_TOKEN : {});
    };
    if (!looksLikeToken(token)) {
      // "rbk_" alone is not enough: a token cut short when pasted starts with it too.
      return fail(
        401,
        token.startsWith(TOKEN_PREFIX)
          ? `that is not a whole rulebook token: "${TOKEN_PREFIX}" and 43 letters, digits, "-" or "_" (was it cut short when pasted?)`
          : `that is not a rulebook token (they start with "${TOKEN_PREFIX}")`,
      );
    }
    const { rows } = await this.pool.query<{
      id: string;
      user_id: string;
      email: string | null;
      name: string | null;
      is_active: boolean;
      revoked: boolean;
      expired: boolean;
    }>(
      // One round trip: the token is read and, when it is good and its last use was noted more
      // than TOUCH_INTERVAL ago, its last use is noted.
      `with token as (
         select t.id, t.user_id, u.email, u.name, u.is_active, t.revoked_at is not null as revoked,
                coalesce(t.expires_at <= now(), false) as expired
           from core.api_tokens t join core.users u on u.id = t.user_id
          where t.token_hash = $1
       ), touched as (
         update core.api_tokens a set last_used_at = now()
           from token
          where a.id = token.id and not token.revoked and not token.expired and token.is_active
            and (a.last_used_at is null or a.last_used_at < now() - interval '${TOUCH_INTERVAL}')
       )
       select * from token`,
      [hashToken(token)],
    );
    const row = rows[0];
    if (row === undefined) return fail(401, 'unknown token; ask an administrator for a new one');
    if (row.revoked) return fail(401, 'this token has been revoked; ask an administrator for a new one');
    if (row.expired) return fail(401, 'this token has expired; ask an administrator for a new one');
    if (!row.is_active) return fail(403, 'this user account is deactivated');
    return { userId: row.user_id, email: row.email, name: row.name, tokenId: row.id };
  }

  /** Whether a token that signed a long-lived request (an event stream) is still good. */
  async stillValid(tokenId: string): Promise<boolean> {
    const { rows } = await this.pool.query(
      `select 1 from core.api_tokens t join core.users u on u.id = t.user_id
        where t.id = $1 and t.revoked_at is null and (t.expires_at is null or t.expires_at > now()) and u.is_active`,
      [tokenId],
    );
    return rows.length > 0;
  }

  #presentedToken(request: http.IncomingMessage, url: URL, queryToken: boolean): string | undefined {
    const header = request.headers.authorization;
    if (header !== undefined) {
      const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
      if (!match) {
        throw new HttpError(401, 'the Authorization header must be "Bearer <token>"', UNAUTHORIZED);
      }
      return match[1];
    }
    // Browsers' EventSource cannot send headers, so the event stream also takes ?access_token=.
    if (queryToken) return url.searchParams.get('access_token') ?? undefined;
    return undefined;
  }
}
