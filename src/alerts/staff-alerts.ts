import type pg from 'pg';
import { compile, sql, type SQLQuery } from '../db/sql.js';
import { inTransaction, type Queryable } from '../db/transaction.js';

/**
 * Alerts as the people they are addressed to see and handle them. A person sees an alert when a
 * workflow.alert_recipients row names them (recipient_type 'user') or one of their roles
 * (recipient_type 'role', through core.user_roles); every function here takes the person's id and
 * treats any other alert exactly as a missing one.
 */

export const ALERT_STATUSES = ['active', 'acknowledged', 'dismissed', 'resolved'] as const;
export const ALERT_SEVERITIES = ['low', 'medium', 'high', 'critical'] as const;
export type AlertStatus = (typeof ALERT_STATUSES)[number];
export type AlertSeverity = (typeof ALERT_SEVERITIES)[number];

export interface StaffAlert {
  readonly id: string;
  readonly alert_type: string;
  readonly severity: AlertSeverity;
  readonly title: string;
  readonly message: string;
  readonly context: unknown;
  readonly source_entity_name: string | null;
  readonly source_entity_id: string | null;
  readonly source_rule_id: string | null;
  readonly status: AlertStatus;
  readonly expires_date: Date | null;
  readonly created_date: Date;
  readonly updated_date: Date;
  /** Whether expires_date has passed. */
  readonly expired: boolean;
  /** The latest acknowledgment, if any. */
  readonly acknowledged_by: { id: string; name: string | null; email: string | null } | null;
  readonly acknowledged_date: Date | null;
}

export interface AlertDetail extends StaffAlert {
  readonly recipients: {
    recipient_type: 'user' | 'role';
    recipient_id: string;
    name: string | null;
    email: string | null;
  }[];
  readonly acknowledgments: {
    id: string;
    acknowledged_by: string;
    acknowledged_by_name: string | null;
    acknowledged_by_email: string | null;
    /** ISO 8601 with offset: it comes through jsonb. */
    acknowledged_date: string;
    notes: string | null;
  }[];
}

/** The condition "alert `alias` is addressed to `user`" (a value, or a column of the query). */
export function visibleTo(user: SQLQuery, alias = 'a'): SQLQuery {
  return sql`exists (
    select 1 from workflow.alert_recipients r
     where r.alert_id = ${sql.ident(alias, 'id')}
       and ((r.recipient_type = 'user' and r.recipient_id = ${user})
         or (r.recipient_type = 'role'
             and r.recipient_id in (select ur.role_id from core.user_roles ur where ur.user_id = ${user}))))`;
}

/** The person `userId` as a query value, for visibleTo. */
export function userValue(userId: string): SQLQuery {
  return sql`${userId}::uuid`;
}

// acknowledged_date is a timestamp without time zone written as now() in the session's zone; read
// back in the same zone it is an instant again.
export const ALERT_COLUMNS = sql`
  a.id, a.alert_type, a.severity, a.title, a.message, a.context, a.source_entity_name,
  a.source_entity_id, a.source_rule_id, a.status, a.expires_date, a.created_date, a.updated_date,
  coalesce(a.expires_date <= now(), false) as expired,
  case when ack.acknowledged_by is null then null
       else jsonb_build_object('id', ack.acknowledged_by, 'name', ack.name, 'email', ack.email) end as acknowledged_by,
  ack.acknowledged_date at time zone current_setting('TimeZone') as acknowledged_date`;

export const LATEST_ACKNOWLEDGMENT = sql`
  left join lateral (
    select k.acknowledged_by, k.acknowledged_date, u.name, u.email
      from workflow.alert_acknowledgments k left join core.users u on u.id = k.acknowledged_by
     where k.alert_id = a.id
     order by k.acknowledged_date desc, k.id desc
     limit 1
  ) ack on true`;

export interface ListOptions {
  readonly statuses: readonly AlertStatus[];
  readonly severities: readonly AlertSeverity[];
  readonly limit: number;
  /** Start after this position (exclusive), from an earlier page. */
  readonly after?: { time: string; id: string };
}

/**
 * The user's alerts, newest first, `limit` at most, and the position of the last one when there
 * may be more. Active alerts whose expires_date has passed are left out: nobody can act on them.
 */
export async function listAlerts(
  pool: pg.Pool,
  userId: string,
  options: ListOptions,
): Promise<{ alerts: StaffAlert[]; next: { time: string; id: string } | undefined }> {
  const after = options.after;
  const { rows } = await pool.query<StaffAlert & { sort_time: string }>(
    compile(sql`select ${ALERT_COLUMNS},
            to_char(a.created_date at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') as sort_time
       from workflow.alerts a
       ${LATEST_ACKNOWLEDGMENT}
      where ${visibleTo(userValue(userId))}
        and a.status = any(${options.statuses}::text[])
        and a.severity = any(${options.severities}::text[])
        and (a.status <> 'active' or a.expires_date is null or a.expires_date > now())
        ${after ? sql`and (a.created_date, a.id) < (${after.time}::timestamp at time zone 'UTC', ${after.id}::uuid)` : sql``}
      order by a.created_date desc, a.id desc
      limit ${options.limit + 1}`),
  );
  const more = rows.length > options.limit;
  const page = rows.slice(0, options.limit);
  const last = page[page.length - 1];
  return {
    alerts: page.map(({ sort_time: _sortTime, ...alert }) => alert),
    next: more && last ? { time: last.sort_time, id: last.id } : undefined,
  };
}

/** One alert with its recipients and acknowledgments, or undefined when the user may not see it. */
export async function getAlert(
  db: Queryable,
  userId: string,
  alertId: string,
): Promise<AlertDetail | undefined> {
  const { rows } = await db.query<AlertDetail>(
    compile(sql`select ${ALERT_COLUMNS},
            (select coalesce(jsonb_agg(jsonb_build_object(
                      'recipient_type', r.recipient_type, 'recipient_id', r.recipient_id,
                      'name', coalesce(u.name, ro.name), 'email', u.email) order by r.created_date, r.id), '[]')
               from workflow.alert_recipients r
               left join core.users u on r.recipient_type = 'user' and u.id = r.recipient_id
               left join core.roles ro on r.recipient_type = 'role' and ro.id = r.recipient_id
              where r.alert_id = a.id) as recipients,
            (select coalesce(jsonb_agg(jsonb_build_object(
                      'id', k.id, 'acknowledged_by', k.acknowledged_by, 'acknowledged_by_name', u.name,
                      'acknowledged_by_email', u.email,
                      'acknowledged_date', k.acknowledged_date at time zone current_setting('TimeZone'),
                      'notes', k.notes) order by k.acknowledged_date, k.id), '[]')
               from workflow.alert_acknowledgments k left join core.users u on u.id = k.acknowledged_by
              where k.alert_id = a.id) as acknowledgments
       from workflow.alerts a
       ${LATEST_ACKNOWLEDGMENT}
      where a.id = ${alertId} and ${visibleTo(userValue(userId))}`),
  );
  return rows[0];
}

export type AcknowledgeOutcome =
  | 'acknowledged'
  | 'already_acknowledged'
  | 'already_dismissed'
  | 'already_resolved'
  | 'expired'
  | 'not_found';
export type DismissOutcome = 'dismissed' | 'already_dismissed' | 'already_resolved' | 'not_found';

export type Target = { readonly ids: readonly string[] } | { readonly all: true };

export interface ChangeResult<O extends string> {
  readonly id: string;
  readonly status: O;
}

/**
 * Acknowledges alerts for the user: one acknowledgment row each, status 'acknowledged', and a
 * NOTIFY on rulebook_alerts, all in one transaction. The alerts are locked first (in id order, so
 * that two bulk requests cannot deadlock), which makes a second, concurrent acknowledgment see the
 * first one's result instead of writing a second row. `all` means every active, unexpired alert of
 * the user. Results come in the order of `ids`.
 */
export async function acknowledgeAlerts(
  pool: pg.Pool,
  userId: string,
  target: Target,
  notes: string | null,
): Promise<ChangeResult<AcknowledgeOutcome>[]> {
  return change(pool, userId, target, {
    all: sql`a.status = 'active' and (a.expires_date is null or a.expires_date > now())`,
    // An active alert past its expires_date is one nobody can act on any more (see listAlerts),
    // even before workflow.expire_alerts() has marked it resolved.
    decide: (status, expired) =>
      status === 'active' && expired
        ? 'expired'
        : status === 'active'
          ? 'acknowledged'
          : status === 'acknowledged'
            ? 'already_acknowledged'
            : status === 'dismissed'
              ? 'already_dismissed'
              : 'already_resolved',
    changed: 'acknowledged',
    async apply(client, ids) {
      await client.query(
        `insert into workflow.alert_acknowledgments (alert_id, acknowledged_by, acknowledged_date, notes)
         select id, $2, now(), $3 from unnest($1::uuid[]) as id`,
        [ids, userId, notes],
      );
      await client.query(`update workflow.alerts set status = 'acknowledged' where id = any($1::uuid[])`, [
        ids,
      ]);
    },
  });
}

/** Dismisses active or acknowledged alerts; `all` means every active or acknowledged alert of the user. */
export async function dismissAlerts(
  pool: pg.Pool,
  userId: string,
  target: Target,
): Promise<ChangeResult<DismissOutcome>[]> {
  return change(pool, userId, target, {
    all: sql`a.status in ('active', 'acknowledged')`,
    decide: (status) =>
      status === 'active' || status === 'acknowledged'
        ? 'dismissed'
        : status === 'dismissed'
          ? 'already_dismissed'
          : 'already_resolved',
    changed: 'dismissed',
    async apply(client, ids) {
      await client.query(`update workflow.alerts set status = 'dismissed' where id = any($1::uuid[])`, [ids]);
    },
  });
}

async function change<O extends string>(
  pool: pg.Pool,
  userId: string,
  target: Target,
  plan: {
    all: SQLQuery;
    decide: (status: AlertStatus, expired: boolean) => O;
    changed: O;
    apply: (client: pg.ClientBase, ids: string[]) => Promise<void>;
  },
): Promise<ChangeResult<O | 'not_found'>[]> {
  return inTransaction(pool, async (client) => {
    const { rows } = await client.query<{ id: string; status: AlertStatus; expired: boolean }>(
      compile(sql`select a.id, a.status, coalesce(a.expires_date <= now(), false) as expired from workflow.alerts a
          where ${visibleTo(userValue(userId))}
            and ${'ids' in target ? sql`a.id = any(${target.ids}::uuid[])` : plan.all}
          order by a.id
          for update of a`),
    );
    const found = new Map(rows.map((row) => [row.id, plan.decide(row.status, row.expired)]));
    const toChange = rows.filter((row) => found.get(row.id) === plan.changed).map((row) => row.id);
    if (toChange.length > 0) {
      await plan.apply(client, toChange);
      // One notification per alert: open pages and event streams refresh just that alert. Sent only
      // while a stream listens, like create_alert's (sql/000019_alert_listeners.sql).
      await client.query(
        `select pg_notify('rulebook_alerts', id::text) from unnest($1::uuid[]) as id
          where workflow.alert_stream_listening()`,
        [toChange],
      );
    }
    const order = 'ids' in target ? target.ids : rows.map((row) => row.id);
    return order.map((id) => ({ id, status: found.get(id) ?? 'not_found' }));
  });
}
