import { enqueueNotification } from '../delivery/enqueue.js';
import type { WebhookPayload } from '../delivery/types.js';
import { urlRecipientId } from '../delivery/uuid-v5.js';
import { ConfigReader } from './config-reader.js';
import { ActionError, type ActionContext, type ActionHandler } from './types.js';

const TYPE = 'webhook';
const DEFAULT_TIMEOUT_MS = 10_000;
/** The delivery worker's lease (5 minutes by default) must outlast the longest request. */
const MAX_TIMEOUT_MS = 120_000;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Headers rulebook sets itself on every request. */
const RESERVED_HEADERS = ['content-type', 'content-length', 'host', 'idempotency-key'];

function webhookUrl(context: ActionContext, config: ConfigReader): string {
  const rendered = context.render(config.string('url')).trim();
  let url: URL;
  try {
    url = new URL(rendered);
  } catch {
    throw new ActionError(`${TYPE}: config.url is ${JSON.stringify(rendered)}, which is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ActionError(
      `${TYPE}: config.url must be an http:// or https:// URL, got ${JSON.stringify(rendered)}`,
    );
  }
  return url.toString();
}

function headers(context: ActionContext, config: ConfigReader): Record<string, string> {
  const raw = config.object('headers');
  if (raw === undefined) return {};
  const rendered = context.renderValue(raw) as Record<string, unknown>;
  const result: Record<string, string> = {};
  for (const [name, value] of Object.entries(rendered)) {
    if (!HEADER_NAME.test(name)) {
      throw new ActionError(
        `${TYPE}: config.headers has ${JSON.stringify(name)}, which is not a header name`,
      );
    }
    const lower = name.toLowerCase();
    if (RESERVED_HEADERS.includes(lower) || lower.startsWith('x-rulebook-')) {
      throw new ActionError(`${TYPE}: config.headers.${name} is set by rulebook and cannot be given`);
    }
    if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') {
      throw new ActionError(`${TYPE}: config.headers.${name} must be a string`);
    }
    const text = String(value);
    if (/[\r\n\0]/.test(text)) {
      throw new ActionError(`${TYPE}: config.headers.${name} must not contain line breaks`);
    }
    result[name] = text;
  }
  return result;
}

function timeoutMs(config: ConfigReader): number {
  if (!config.has('timeout_ms')) return DEFAULT_TIMEOUT_MS;
  const value = config.raw('timeout_ms');
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_TIMEOUT_MS) {
    throw new ActionError(
      `${TYPE}: config.timeout_ms must be a whole number of milliseconds from 1 to ${MAX_TIMEOUT_MS}, got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

/** What a webhook without a body sends: the change and the rule that saw it. */
function defaultBody(context: ActionContext): unknown {
  const template = context.templateContext;
  return {
    rule: template.rule,
    entity: template.entity,
    event: template.event,
    new: template.new,
    old: template.old,
    changed_fields: template.changed_fields,
  };
}

/**
 * webhook: a signed JSON POST, queued for the delivery worker (see src/delivery/webhook-sender.ts
 * for the headers and the signature scheme).
 *
 * config: url (templated), body (any JSON; every string in it is rendered; default: rule, entity,
 * event, new, old and changed_fields), headers (templated), secret (default: WEBHOOK_SECRET),
 * timeout_ms (default 10000, at most 120000).
 */
export const webhook: ActionHandler = {
  type: TYPE,
  async execute(context: ActionContext) {
    const config = new ConfigReader(TYPE, context.action.config);
    const url = webhookUrl(context, config);
    const body = config.has('body') ? context.renderValue(config.raw('body')) : defaultBody(context);
    const secret = config.optionalString('secret');
    const recipientId = urlRecipientId(url);
    const payload: WebhookPayload = {
      kind: 'webhook',
      url,
      body,
      headers: headers(context, config),
      ...(secret !== undefined ? { secret } : {}),
      timeout_ms: timeoutMs(config),
      addresses: { [recipientId]: url },
    };
    const queued = await enqueueNotification(context, payload, [{ recipientId, channel: 'webhook' }]);
    return { notification_id: queued.notification_id, url, recipient_id: recipientId };
  },
};
