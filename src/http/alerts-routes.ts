import type pg from 'pg';
import {
  ALERT_SEVERITIES,
  ALERT_STATUSES,
  acknowledgeAlerts,
  dismissAlerts,
  getAlert,
  listAlerts,
  type AcknowledgeOutcome,
  type AlertDetail,
  type DismissOutcome,
} from '../alerts/staff-alerts.js';
import type { Authenticator, Caller } from './auth.js';
import { readJsonBody } from './body.js';
import { decodeCursor, encodeCursor } from './cursor.js';
import { HttpError, sendJson } from './respond.js';
import type { RequestContext, Router } from './router.js';
import { isUuid } from '../is-uuid.js';
import { QueryParams, bodyObject, bulkTarget, optionalString } from './validate.js';

/** Notes are for a sentence or a paragraph, not a report. */
export const MAX_NOTES_LENGTH = 2000;
export const MAX_PAGE_SIZE = 200;
export const DEFAULT_PAGE_SIZE = 50;
/** Ids per bulk request; `{ "all": true }` has no such limit. */
export const MAX_BULK_IDS = 500;

function notFound(id: string): HttpError {
  return new HttpError(404, `there is no alert ${id} among yours`);
}

/** The `:id` of the route, or 404 when it cannot be an alert id: unknown and invisible look alike. */
function alertId({ params }: RequestContext): string {
  const id = params.id!;
  if (!isUuid(id)) throw notFound(id);
  return id.toLowerCase();
}

function who(alert: AlertDetail): string {
  const by = alert.acknowledged_by;
  if (!by) return '';
  const name = by.name ?? by.email ?? by.id;
  const when = alert.acknowledged_date ? ` at ${alert.acknowledged_date.toISOString()}` : '';
  return ` by ${name}${when}`;
}

async function conflict(
  pool: pg.Pool,
  caller: Caller,
  id: string,
  outcome: Exclude<AcknowledgeOutcome | DismissOutcome, 'acknowledged' | 'dismissed' | 'not_found'>,
  doing: 'acknowledged' | 'dismissed',
): Promise<HttpError> {
  const alert = await getAlert(pool, caller.userId, id);
  switch (outcome) {
    case 'already_acknowledged':
      return new HttpError(409, `this alert was already acknowledged${alert ? who(alert) : ''}`);
    case 'already_dismissed':
      return new HttpError(409, `this alert has been dismissed, so it cannot be ${doing} any more`);
    case 'already_resolved':
      return new HttpError(409, `this alert was resolved by the system, so it cannot be ${doing} any more`);
    case 'expired': {
      const when = alert?.expires_date ? ` at ${alert.expires_date.toISOString()}` : '';
      return new HttpError(409, `this alert expired${when}, so it cannot be ${doing} any more`);
    }
  }
}

export function registerAlertRoutes(router: Router, pool: pg.Pool, auth: Authenticator): void {
  router.get(
    '/api/alerts/mine',
    auth.guard(async ({ url, response }, caller) => {
      const query = new QueryParams(url, ['status', 'severity', 'limit', 'cursor']);
      const statuses = query.list('status', ALERT_STATUSES, ['active']);
      const severities = query.list('severity', ALERT_SEVERITIES, ALERT_SEVERITIES);
      const limit = query.integer('limit', { min: 1, max: MAX_PAGE_SIZE, fallback: DEFAULT_PAGE_SIZE });
      const after = decodeCursor(query.string('cursor'));
      const page = await listAlerts(pool, caller.userId, { statuses, severities, limit, after });
      sendJson(response, 200, {
        alerts: page.alerts,
        next_cursor: page.next ? encodeCursor(page.next) : null,
      });
    }),
  );

  router.get(
    '/api/alerts/:id',
    auth.guard(async (context, caller) => {
      const id = alertId(context);
      const alert = await getAlert(pool, caller.userId, id);
      if (!alert) throw notFound(id);
      sendJson(context.response, 200, { alert });
    }),
  );

  router.post(
    '/api/alerts/:id/acknowledge',
    auth.guard(async (context, caller) => {
      const id = alertId(context);
      const body = bodyObject(await readJsonBody(context.request), ['notes'], { optional: true });
      const notes = optionalString(body, 'notes', MAX_NOTES_LENGTH) ?? null;
      const [result] = await acknowledgeAlerts(pool, caller.userId, { ids: [id] }, notes);
      const outcome = result!.status;
      if (outcome === 'not_found') throw notFound(id);
      if (outcome !== 'acknowledged') throw await conflict(pool, caller, id, outcome, 'acknowledged');
      sendJson(context.response, 200, { alert: await getAlert(pool, caller.userId, id) });
    }),
  );

  router.post(
    '/api/alerts/:id/dismiss',
    auth.guard(async (context, caller) => {
      const id = alertId(context);
      bodyObject(await readJsonBody(context.request), [], { optional: true });
      const [result] = await dismissAlerts(pool, caller.userId, { ids: [id] });
      const outcome = result!.status;
      if (outcome === 'not_found') throw notFound(id);
      if (outcome !== 'dismissed') throw await conflict(pool, caller, id, outcome, 'dismissed');
      sendJson(context.response, 200, { alert: await getAlert(pool, caller.userId, id) });
    }),
  );

  router.post(
    '/api/alerts/acknowledge',
    auth.guard(async ({ request, response }, caller) => {
      const body = bodyObject(await readJsonBody(request), ['ids', 'all', 'notes']);
      const target = bulkTarget(body, MAX_BULK_IDS);
      const notes = optionalString(body, 'notes', MAX_NOTES_LENGTH) ?? null;
      const results = await acknowledgeAlerts(pool, caller.userId, target, notes);
      sendJson(response, 200, { results });
    }),
  );

  router.post(
    '/api/alerts/dismiss',
    auth.guard(async ({ request, response }, caller) => {
      const target = bulkTarget(bodyObject(await readJsonBody(request), ['ids', 'all']), MAX_BULK_IDS);
      const results = await dismissAlerts(pool, caller.userId, target);
      sendJson(response, 200, { results });
    }),
  );
}
