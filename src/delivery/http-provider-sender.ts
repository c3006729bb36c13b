import type { ChannelSender, ClaimedDelivery, DeliveryOutcome } from './types.js';
import { postSignedJson } from './webhook-sender.js';

export interface HttpProviderOptions {
  /** The channel this provider serves, e.g. sms. */
  readonly channel: 'sms' | 'push';
  /** The provider's endpoint; without one every delivery of the channel fails, naming the variable. */
  readonly url: string | undefined;
  /** The environment variable that sets url, for the error message. */
  readonly variable: string;
  /** Signs requests as webhooks are signed (see webhook-sender.ts). */
  readonly secret: string | undefined;
  readonly timeoutMs: number;
}

/**
 * Hands SMS and push notifications to an HTTP provider (the application's gateway, which knows the
 * user's phone number or device tokens): a signed JSON POST of
 * { delivery_id, notification_id, channel, recipient_id, title, body, priority, rule_id, action_id,
 *   automation_execution_id, attempt }. A 2xx answer marks the delivery sent.
 */
export class HttpProviderSender implements ChannelSender {
  constructor(private readonly options: HttpProviderOptions) {}

  async send(delivery: ClaimedDelivery, signal: AbortSignal): Promise<DeliveryOutcome> {
    if (!this.options.url) {
      return {
        status: 'failed',
        error: `no ${this.options.variable} configured: ${this.options.channel} notifications cannot be sent`,
        response: null,
      };
    }
    const payload = delivery.payload;
    if (payload?.kind !== 'notification') {
      return {
        status: 'failed',
        error: `${this.options.channel} delivery has a ${payload?.kind ?? 'missing'} payload, not a notification`,
        response: null,
      };
    }
    const body = {
      delivery_id: delivery.id,
      notification_id: delivery.notificationId,
      channel: this.options.channel,
      recipient_id: delivery.recipientId,
      title: payload.title,
      body: payload.body,
      priority: payload.priority,
      rule_id: delivery.ruleId,
      action_id: delivery.actionId,
      automation_execution_id: delivery.automationExecutionId,
      attempt: delivery.attempts,
    };
    return postSignedJson({
      url: this.options.url,
      body: JSON.stringify(body),
      secret: this.options.secret,
      timeoutMs: this.options.timeoutMs,
      delivery,
      success: 'sent',
      signal,
    });
  }
}
