import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { BatchedWriteKind, WriteBatch } from '../db/write-batch.js';
import type { DeliveryChannel, DeliveryPayload } from './types.js';

/** The NOTIFY channel that wakes delivery workers. */
export const DELIVERY_CHANNEL = 'rulebook_deliveries';

/** One delivery row an action writes: pending, or failed at once with the reason. */
export interface NewDelivery {
  readonly recipientId: string;
  readonly channel: DeliveryChannel;
  /** Set when the delivery cannot even be attempted (a user without an e-mail address). */
  readonly error?: string;
}

export interface QueuedNotification {
  readonly notification_id: string;
  /** Deliveries waiting for the worker. */
  readonly queued: number;
  /** Deliveries that failed at once, with the reason. */
  readonly failed: { recipient_id: string; channel: string; error: string }[];
}

// One statement: the payload, the delivery rows and, when something waits to be sent, the NOTIFY
// (delivered at commit, like the rows). automation_execution_id's foreign key is checked at commit,
// after the executor has written the execution row.
const ENQUEUE = `
with payload as (
  insert into workflow.notification_payloads (id, payload) values ($1::uuid, $2::jsonb) returning id
), deliveries as (
  insert into workflow.notification_deliveries
    (notification_id, automation_execution_id, rule_id, action_id, recipient_id, channel, status, attempts,
     failed_at, error_message)
  select payload.id, $3::uuid, $4::uuid, $5::uuid, d.recipient_id, d.channel,
         case when d.error is null then 'pending' else 'failed' end, 0,
         case when d.error is null then null else now() end, d.error
    from payload, unnest($6::uuid[], $7::text[], $8::text[]) with ordinality as d (recipient_id, channel, error, ord)
   order by d.ord
  returning status
)
select (select count(*) from deliveries where status = 'pending')::int as queued,
       (select pg_notify('${DELIVERY_CHANNEL}', $1::uuid::text)
         where exists (select 1 from deliveries where status = 'pending')) as notified`;

// The notifications of a batch's events in one statement: payloads, deliveries in the order each
// action listed them, and a NOTIFY for each notification with something to send.
const ENQUEUE_BATCH: BatchedWriteKind = {
  name: 'rulebook.enqueue_notifications',
  text: `
with items as (
  select i.ord, (i.item ->> 'notification_id')::uuid as notification_id, i.item -> 'payload' as payload,
         (i.item ->> 'execution_id')::uuid as execution_id, (i.item ->> 'rule_id')::uuid as rule_id,
         (i.item ->> 'action_id')::uuid as action_id, i.item -> 'deliveries' as deliveries
    from jsonb_array_elements($1::jsonb) with ordinality as i (item, ord)
), payloads as (
  insert into workflow.notification_payloads (id, payload)
  select notification_id, payload from items order by ord
  returning id
), deliveries as (
  insert into workflow.notification_deliveries
    (notification_id, automation_execution_id, rule_id, action_id, recipient_id, channel, status, attempts,
     failed_at, error_message)
  select i.notification_id, i.execution_id, i.rule_id, i.action_id, (d.delivery ->> 'recipient_id')::uuid,
         d.delivery ->> 'channel',
         case when d.delivery ->> 'error' is null then 'pending' else 'failed' end, 0,
         case when d.delivery ->> 'error' is null then null else now() end, d.delivery ->> 'error'
    from items i
    join payloads p on p.id = i.notification_id
    cross join lateral jsonb_array_elements(i.deliveries) with ordinality as d (delivery, ord)
   order by i.ord, d.ord
  returning notification_id, status
), notified as (
  select count(pg_notify('${DELIVERY_CHANNEL}', n.notification_id::text)) as n
    from (select distinct notification_id from deliveries where status = 'pending') n
)
select i.ord, (select n from notified) as notified from items i`,
};

/**
 * What enqueueing needs to know of the action that sends: its transaction, the execution and the
 * rule and action the deliveries are recorded against (an action's context is one).
 */
export interface EnqueueContext {
  readonly client: pg.ClientBase;
  readonly executionId: string;
  readonly rule: { readonly id: string };
  readonly action: { readonly id: string };
  readonly batch?: WriteBatch | undefined;
}

/**
 * Writes a notification's payload and its delivery rows in the action's transaction; the delivery
 * worker sends them once it commits. When the engine batches the action's writes, they are handed
 * over and sent with the batch's other notifications.
 */
export async function enqueueNotification(
  context: EnqueueContext,
  payload: DeliveryPayload,
  deliveries: readonly NewDelivery[],
): Promise<QueuedNotification> {
  const notificationId = randomUUID();
  const failed = deliveries
    .filter((delivery) => delivery.error !== undefined)
    .map((delivery) => ({
      recipient_id: delivery.recipientId,
      channel: delivery.channel,
      error: delivery.error!,
    }));
  if (context.batch) {
    context.batch.add(
      ENQUEUE_BATCH,
      {
        notification_id: notificationId,
        payload,
        execution_id: context.executionId,
        rule_id: context.rule.id,
        action_id: context.action.id,
        deliveries: deliveries.map((delivery) => ({
          recipient_id: delivery.recipientId,
          channel: delivery.channel,
          error: delivery.error ?? null,
        })),
      },
      () => {},
    );
    return { notification_id: notificationId, queued: deliveries.length - failed.length, failed };
  }
  const { rows } = await context.client.query<{ queued: number }>({
    name: 'rulebook.enqueue_notification',
    text: ENQUEUE,
    values: [
      notificationId,
      JSON.stringify(payload),
      context.executionId,
      context.rule.id,
      context.action.id,
      deliveries.map((delivery) => delivery.recipientId),
      deliveries.map((delivery) => delivery.channel),
      deliveries.map((delivery) => delivery.error ?? null),
    ],
  });
  return {
    notification_id: notificationId,
    queued: rows[0]?.queued ?? 0,
    failed,
  };
}
