import type pg from 'pg';

/**
 * A person's in-app notifications: workflow.notification_deliveries rows on the in_app channel
 * addressed to them, with the title, body and priority of the notification's payload
 * (workflow.notification_payloads) and whether they have read it (workflow.notification_reads).
 * Not the whole payload: it also holds the other recipients' e-mail addresses.
 */

export interface InAppNotification {
  /** The delivery's id: what "mark as read" takes. */
  readonly id: string;
  readonly notification_id: string;
  readonly rule_id: string | null;
  readonly status: string;
  readonly title: string | null;
  readonly body: string | null;
  readonly priority: string | null;
  /** The rule that sent it: its id is rule_id. */
  readonly rule_name: string | null;
  readonly created_date: Date;
  readonly read_at: Date | null;
}

export interface InboxPage {
  readonly notifications: InAppNotification[];
  readonly next: { time: string; id: string } | undefined;
  readonly unreadCount: number;
}

// created_date is a timestamp without time zone written as now() in the session's zone.
export async function listInbox(
  pool: pg.Pool,
  userId: string,
  options: { limit: number; unread?: boolean; after?: { time: string; id: string } },
): Promise<InboxPage> {
  const { rows } = await pool.query<InAppNotification & { sort_time: string }>(
    `select d.id, d.notification_id, d.rule_id, d.status,
            p.payload ->> 'title' as title, p.payload ->> 'body' as body, p.payload ->> 'priority' as priority,
            p.payload -> 'rule' ->> 'name' as rule_name,
            d.created_date at time zone current_setting('TimeZone') as created_date,
            nr.read_at,
            to_char(d.created_date, 'YYYY-MM-DD"T"HH24:MI:SS.US') as sort_time
       from workflow.notification_deliveries d
       left join workflow.notification_payloads p on p.id = d.notification_id
       left join workflow.notification_reads nr on nr.delivery_id = d.id
      where d.channel = 'in_app' and d.recipient_id = $1
        and ($3::boolean is null or (nr.read_at is null) = $3)
        and ($4::text is null or (d.created_date, d.id) < ($4::timestamp, $5::uuid))
      order by d.created_date desc, d.id desc
      limit $2`,
    [
      userId,
      options.limit + 1,
      options.unread ?? null,
      options.after?.time ?? null,
      options.after?.id ?? null,
    ],
  );
  const { rows: counts } = await pool.query<{ unread: number }>(
    `select count(*)::int as unread
       from workflow.notification_deliveries d
      where d.channel = 'in_app' and d.recipient_id = $1
        and not exists (select 1 from workflow.notification_reads nr where nr.delivery_id = d.id)`,
    [userId],
  );
  const more = rows.length > options.limit;
  const page = rows.slice(0, options.limit);
  const last = page[page.length - 1];
  return {
    notifications: page.map(({ sort_time: _sortTime, ...notification }) => notification),
    next: more && last ? { time: last.sort_time, id: last.id } : undefined,
    unreadCount: counts[0]?.unread ?? 0,
  };
}

/**
 * Marks one of the user's in-app deliveries as read (reading twice keeps the first time) and
 * returns when it was read; undefined when there is no such delivery for this user.
 */
export async function markRead(pool: pg.Pool, userId: string, deliveryId: string): Promise<Date | undefined> {
  const { rows } = await pool.query<{ read_at: Date | null }>(
    `with delivery as (
       select d.id from workflow.notification_deliveries d
        where d.id = $1 and d.channel = 'in_app' and d.recipient_id = $2
     ), inserted as (
       insert into workflow.notification_reads (delivery_id, user_id)
       select id, $2 from delivery
       on conflict (delivery_id) do nothing
       returning read_at
     )
     select coalesce((select read_at from inserted),
                     (select nr.read_at from workflow.notification_reads nr join delivery on nr.delivery_id = delivery.id))
              as read_at
       from delivery`,
    [deliveryId, userId],
  );
  return rows[0]?.read_at ?? undefined;
}
