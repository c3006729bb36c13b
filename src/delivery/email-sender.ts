import nodemailer, { type SendMailOptions, type SMTPSentMessageInfo, type Transporter } from 'nodemailer';
import type { ChannelSender, ClaimedDelivery, DeliveryOutcome, ProviderResponse } from './types.js';
import { errorText } from '../error-text.js';

export interface EmailSenderOptions {
  /** smtp:// or smtps:// URL, with credentials if the server wants them; without one e-mail fails. */
  readonly smtpUrl: string | undefined;
  /** The From header and envelope sender. */
  readonly from: string;
  /** Per SMTP step (connect, greeting, each command); default 30 s. */
  readonly timeoutMs?: number;
}

/** Error codes of nodemailer's own that no later attempt can change. */
const PERMANENT_CODES = new Set([
  'ENOAUTH',
  'ECONFIG',
  'EENVELOPE',
  'EREQUIRETLS',
  'EFILEACCESS',
  'EURLACCESS',
  'EMAXRECIPIENTS',
]);

interface SmtpError {
  code?: string;
  responseCode?: number;
  response?: string;
  command?: string;
}

const PRIORITY: Record<string, 'high' | 'normal' | 'low'> = {
  critical: 'high',
  high: 'high',
  medium: 'normal',
  low: 'low',
};

/** The stable Message-ID of a delivery's message: every attempt carries the same one. */
export function deliveryMessageId(deliveryId: string): string {
  return `<${deliveryId}@rulebook>`;
}

/**
 * Sends e-mail deliveries over SMTP, one message per delivery with the delivery's address as the only
 * envelope recipient. The headers show every To and Cc address of the notification, as one message
 * sent to all of them would. A 2xx answer to the message marks the delivery sent; 550-553 for the
 * recipient bounces it; other 5xx fail it; 4xx and connection problems are retried.
 */
export class EmailSender implements ChannelSender {
  readonly #transport: Transporter<SMTPSentMessageInfo> | undefined;

  constructor(private readonly options: EmailSenderOptions) {
    if (options.smtpUrl) {
      const timeout = options.timeoutMs ?? 30_000;
      this.#transport = nodemailer.createTransport({
        url: options.smtpUrl,
        connectionTimeout: timeout,
        greetingTimeout: timeout,
        socketTimeout: timeout,
        disableFileAccess: true,
        disableUrlAccess: true,
      });
    }
  }

  async send(delivery: ClaimedDelivery, signal: AbortSignal): Promise<DeliveryOutcome> {
    if (!this.#transport) {
      return {
        status: 'failed',
        error: 'no SMTP_URL configured: e-mail cannot be sent',
        response: null,
      };
    }
    const payload = delivery.payload;
    if (payload?.kind !== 'email' && payload?.kind !== 'notification') {
      return {
        status: 'failed',
        error: `e-mail delivery has a ${payload?.kind ?? 'missing'} payload, not an e-mail or notification`,
        response: null,
      };
    }
    const address = payload.addresses[delivery.recipientId];
    if (!address) {
      return {
        status: 'failed',
        error: `the notification payload has no e-mail address for recipient ${delivery.recipientId}`,
        response: null,
      };
    }
    // An address in neither header (a role's member) is this message's Bcc: the headers show it to
    // nobody, and the envelope sends it to that address alone.
    const blind = payload.kind === 'email' && !payload.to.includes(address) && !payload.cc.includes(address);
    const message: SendMailOptions =
      payload.kind === 'email'
        ? {
            to: payload.to.length > 0 ? [...payload.to] : undefined,
            cc: payload.cc.length > 0 ? [...payload.cc] : undefined,
            bcc: blind ? address : undefined,
            replyTo: payload.reply_to,
            subject: payload.subject,
            text: payload.text,
            html: payload.html,
          }
        : {
            to: address,
            subject: payload.title,
            text: payload.body,
            priority: PRIORITY[payload.priority] ?? 'normal',
          };
    try {
      const info = await this.#transport.sendMail({
        ...message,
        from: this.options.from,
        envelope: { from: this.options.from, to: [address] },
        messageId: deliveryMessageId(delivery.id),
        headers: {
          'X-Rulebook-Delivery-Id': delivery.id,
          'X-Rulebook-Notification-Id': delivery.notificationId,
        },
        signal,
      });
      return {
        status: 'sent',
        response: {
          smtp: {
            message_id: info.messageId,
            response: info.response,
            accepted: info.accepted,
            rejected: info.rejected,
            envelope: info.envelope,
          },
        },
      };
    } catch (error) {
      return classify(error, signal);
    }
  }

  async close(): Promise<void> {
    this.#transport?.close();
  }
}

function classify(error: unknown, signal: AbortSignal): DeliveryOutcome {
  const smtp = (typeof error === 'object' && error !== null ? error : {}) as SmtpError;
  const response: ProviderResponse = {
    smtp: {
      code: smtp.code ?? null,
      response_code: smtp.responseCode ?? null,
      response: smtp.response ?? null,
      command: smtp.command ?? null,
    },
  };
  if (signal.aborted) {
    return {
      status: 'retry',
      error: 'SMTP: the worker stopped while sending; the outcome is unknown',
      response,
    };
  }
  const where = smtp.command ? ` at ${smtp.command}` : '';
  const message = `SMTP error${where}: ${errorText(error)}`;
  const code = smtp.responseCode;
  if (code !== undefined && code >= 500) {
    const recipientRejected = smtp.command === 'RCPT TO' || smtp.code === 'EENVELOPE';
    return {
      status: recipientRejected && code >= 550 && code <= 553 ? 'bounced' : 'failed',
      error: message,
      response,
    };
  }
  if (code !== undefined && code >= 400) return { status: 'retry', error: message, response };
  if (smtp.code && PERMANENT_CODES.has(smtp.code)) return { status: 'failed', error: message, response };
  return { status: 'retry', error: message, response };
}
