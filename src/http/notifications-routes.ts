import type pg from 'pg';
import { listInbox, markRead } from '../inbox/in-app-inbox.js';
import type { Authenticator } from './auth.js';
import { readJsonBody } from './body.js';
import { decodeCursor, encodeCursor } from './cursor.js';
import { HttpError, sendJson } from './respond.js';
import type { Router } from './router.js';
import { isUuid } from '../is-uuid.js';
import { QueryParams, bodyObject } from './validate.js';

const MAX_PAGE_SIZE = 200;
const DEFAULT_PAGE_SIZE = 50;

export function registerNotificationRoutes(router: Router, pool: pg.Pool, auth: Authenticator): void {
  router.get(
    '/api/notifications/mine',
    auth.guard(async ({ url, response }, caller) => {
      const query = new QueryParams(url, ['unread', 'limit', 'cursor']);
      const unread = query.boolean('unread');
      const limit = query.integer('limit', { min: 1, max: MAX_PAGE_SIZE, fallback: DEFAULT_PAGE_SIZE });
      const after = decodeCursor(query.string('cursor'));
      const page = await listInbox(pool, caller.userId, { limit, unread, after });
      sendJson(response, 200, {
        notifications: page.notifications,
        unread_count: page.unreadCount,
        next_cursor: page.next ? encodeCursor(page.next) : null,
      });
    }),
  );

  router.post(
    '/api/notifications/:id/read',
    auth.guard(async ({ params, request, response }, caller) => {
      const id = params.id!;
      bodyObject(await readJsonBody(request), [], { optional: true });
      const readAt = isUuid(id) ? await markRead(pool, caller.userId, id) : undefined;
      if (readAt === undefined) throw new HttpError(404, `there is no notification ${id} among yours`);
      sendJson(response, 200, { id: id.toLowerCase(), read_at: readAt });
    }),
  );
}
