import type pg from 'pg';
import type { Authenticator } from './auth.js';
import { sendJson } from './respond.js';
import type { Router } from './router.js';

/** GET /api/me: who the token belongs to, so that a page can greet them and check a token. */
export function registerAccountRoutes(router: Router, pool: pg.Pool, auth: Authenticator): void {
  router.get(
    '/api/me',
    auth.guard(async ({ response }, caller) => {
      const { rows } = await pool.query<{
        roles: string[];
        token_name: string | null;
        expires_at: Date | null;
      }>(
        `select coalesce((select array_agg(r.name order by r.name)
                            from core.user_roles ur join core.roles r on r.id = ur.role_id
                           where ur.user_id = $1), '{}') as roles,
                t.name as token_name, t.expires_at
           from core.api_tokens t where t.id = $2`,
        [caller.userId, caller.tokenId],
      );
      const row = rows[0];
      sendJson(response, 200, {
        id: caller.userId,
        email: caller.email,
        name: caller.name,
        roles: row?.roles ?? [],
        token: { id: caller.tokenId, name: row?.token_name ?? null, expires_at: row?.expires_at ?? null },
      });
    }),
  );
}
