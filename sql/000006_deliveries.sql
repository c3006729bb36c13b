-- The delivery queue: send_email, send_notification and webhook actions write one
-- workflow.notification_deliveries row per recipient and channel, plus one payload row per
-- notification, in the event's transaction. The delivery worker (src/delivery/delivery-worker.ts)
-- sends them afterwards, outside any transaction.
--
-- The life of a delivery row (status, attempts):
--   pending, 0      written by the action; due at once.
--   retrying, n+1   claimed by a worker (FOR UPDATE SKIP LOCKED, committed before sending), with
--                   provider_response.not_before = now() + lease: a worker that dies while sending
--                   leaves the row to be claimed again once the lease and the backoff have passed.
--   sent / delivered / failed / bounced   the outcome of the attempt, recorded after sending.
--   retrying, n     a temporary failure: due again at updated_date + backoff(n), and not before
--                   provider_response.not_before (a Retry-After) when there is one.

-- The rendered message of one notification, shared by its deliveries; id = notification_id.
create table workflow.notification_payloads (
  id uuid primary key,
  payload jsonb not null,
  created_date timestamptz default now()
);

comment on table workflow.notification_payloads is
  'The rendered message of a notification (subject, text, html, body, ...) and the addresses of its recipients; id = notification_deliveries.notification_id.';

-- Only unfinished deliveries are looked at by workers, and they are few.
create index idx_notification_deliveries_due on workflow.notification_deliveries (status, updated_date)
  where status in ('pending', 'retrying');
create index idx_notification_deliveries_notification on workflow.notification_deliveries (notification_id);
create index idx_notification_deliveries_recipient on workflow.notification_deliveries (recipient_id, channel);

-- When a pending or retrying delivery may next be attempted. Backoff: 2^attempts * p_base_ms after
-- the last update, at most p_max_ms; never before provider_response.not_before. updated_date is a
-- timestamp without time zone written as now() (by workflow.touch_updated_date), so it is read
-- back in the session's time zone.
create function workflow.delivery_due_at(
  p_status text,
  p_attempts integer,
  p_updated_date timestamp,
  p_provider_response jsonb,
  p_base_ms double precision default 1000,
  p_max_ms double precision default 3600000
) returns timestamptz
language sql stable parallel safe as $$
  select greatest(
    case when p_status = 'pending' then '-infinity'::timestamptz
         else p_updated_date::timestamptz
              + least(power(2, least(greatest(coalesce(p_attempts, 0), 0), 40)) * p_base_ms, p_max_ms) * interval '1 millisecond'
    end,
    coalesce((p_provider_response ->> 'not_before')::timestamptz, '-infinity'::timestamptz))
$$;
