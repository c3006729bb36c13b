import { randomUUID } from 'node:crypto';
import type { ActionContext } from '../actions/types.js';
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

/**
 * Writes a notification's payload and its delivery rows in the action's transaction; the delivery
 * worker sends them once it commits.
 */
export async function enqueueNotification(
  context: ActionContext,
  payload: DeliveryPayload,
  deliveries: readonly NewDelivery[],
): Promise<QueuedNotification> {
  const notificationId = randomUUID();
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
    failed: deliveries
      .filter((delivery) => delivery.error !== undefined)
      .map((delivery) => ({
        recipient_id: delivery.recipientId,
        channel: delivery.channel,
        error: delivery.error!,
      })),
  };
}
