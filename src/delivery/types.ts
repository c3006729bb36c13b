/** The channels a delivery row can name; `webhook` rows are written by the webhook action. */
export const NOTIFICATION_CHANNELS = ['email', 'in_app', 'sms', 'push'] as const;
export type NotificationChannel = (typeof NOTIFICATION_CHANNELS)[number];
export type DeliveryChannel = NotificationChannel | 'webhook';

/** workflow.notification_payloads.payload of a send_email action. */
export interface EmailPayload {
  readonly kind: 'email';
  readonly subject: string;
  readonly text?: string;
  readonly html?: string;
  /**
   * The To and Cc headers: every address the message went to, except members of a role, who get it
   * as Bcc. Each delivery is one envelope recipient.
   */
  readonly to: readonly string[];
  readonly cc: readonly string[];
  readonly reply_to?: string;
  /** recipient_id → e-mail address, for every recipient with a pending delivery. */
  readonly addresses: Readonly<Record<string, string>>;
}

/** workflow.notification_payloads.payload of a send_notification action. */
export interface NotificationPayload {
  readonly kind: 'notification';
  readonly title: string;
  readonly body: string;
  readonly priority: string;
  /** recipient_id (a user id) → e-mail address, for the email channel. */
  readonly addresses: Readonly<Record<string, string>>;
  readonly rule: { readonly id: string; readonly name: string };
}

/** workflow.notification_payloads.payload of a webhook action. */
export interface WebhookPayload {
  readonly kind: 'webhook';
  readonly url: string;
  /** The JSON body, rendered; sent as JSON.stringify(body). */
  readonly body: unknown;
  readonly headers: Readonly<Record<string, string>>;
  /**
   * The action has a secret of its own, which the worker reads from the action when it signs (it
   * is never copied here); without one the worker signs with WEBHOOK_SECRET.
   */
  readonly own_secret?: true;
  readonly timeout_ms: number;
  /** recipient_id → URL. */
  readonly addresses: Readonly<Record<string, string>>;
}

export type DeliveryPayload = EmailPayload | NotificationPayload | WebhookPayload;

/** A delivery row as a worker claimed it: status retrying, attempts already counting this attempt. */
export interface ClaimedDelivery {
  readonly id: string;
  readonly notificationId: string;
  readonly recipientId: string;
  readonly channel: string;
  readonly attempts: number;
  readonly ruleId: string | null;
  readonly actionId: string | null;
  readonly automationExecutionId: string | null;
  /** null when workflow.notification_payloads has no row for the notification. */
  readonly payload: DeliveryPayload | null;
}

export type ProviderResponse = Record<string, unknown>;

/** How one attempt went, as recorded on the delivery row. */
export type DeliveryOutcome =
  | { readonly status: 'sent' | 'delivered'; readonly response: ProviderResponse }
  | {
      readonly status: 'failed' | 'bounced';
      readonly error: string;
      readonly response: ProviderResponse | null;
    }
  | {
      readonly status: 'retry';
      readonly error: string;
      readonly response: ProviderResponse | null;
      /** The provider asked for no new attempt before this many milliseconds (Retry-After). */
      readonly retryAfterMs?: number;
    };

/** Sends one channel's deliveries. `signal` aborts a send when the worker stops. */
export interface ChannelSender {
  send(delivery: ClaimedDelivery, signal: AbortSignal): Promise<DeliveryOutcome>;
  close?(): Promise<void>;
}
