import { enqueueNotification } from '../delivery/enqueue.js';
import type { WebhookPayload } from '../delivery/types.js';
import { urlRecipientId } from '../delivery/uuid-v5.js';
import { renderUrlTemplate } from '../templating/render-url.js';
import { ConfigReader } from './config-reader.js';
import { ActionError, type ActionContext, type ActionHandler } from './types.js';
import { errorText } from '../error-text.js';

const TYPE = 'webhook';
const DEFAULT_TIMEOUT_MS = 10_000;
/** An upper bound for receivers' sake; the delivery worker renews its lease while a request runs. */
const MAX_TIMEOUT_MS = 120_000;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Headers rulebook sets itself on every request. */
// Besides rulebook's own headers, the ones that govern the connection and the body's framing:
// given by a rule they would contradict the Content-Length that every request carries.
const RESERVED_HEADERS = [
  'content-type',
  'content-length',
  'host',
  'idempotency-key',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'upgrade',
  'expect',
  'proxy-connection',
];

/** `scheme://host[:port]` followed by the start of a path, query or fragment. */
const LITERAL_ORIGIN = /^\s*https?:\/\/[^/?#\\{}]+[/?#]/i;
/** A '.' or '..' path segment, also percent-encoded, which URL parsing would resolve away. */
const DOT_SEGMENT = /^(?:\.|%2e){1,2}$/i;

/**
 * The rendered URL. Values are percent-encoded where they are placed (render-url.ts), and the
 * scheme, host and port must be written literally before the first `{{`: row data can choose a
 * path or query, never where the request goes.
 */
function webhookUrl(context: ActionContext, config: ConfigReader): string {
  const source = config.string('url');
  const templated = source.includes('{{');
  if (templated && !LITERAL_ORIGIN.test(source.slice(0, source.indexOf('{{')))) {
    throw new ActionError(
      `${TYPE}: config.url ${JSON.stringify(source)} must spell out its scheme, host and port before any {{…}} ` +
        `(for example https://hooks.example.com/orders/{{id}}): template values may fill in the path and query only`,
    );
  }
  let rendered: string;
  try {
    rendered = renderUrlTemplate(source, context.templateContext).trim();
  } catch (error) {
    throw new ActionError(`${TYPE}: config.url: ${errorText(error)}`);
  }
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
  if (templated) {
    const origin = new URL(LITERAL_ORIGIN.exec(source)![0].trim()).origin;
    if (url.origin !== origin) {
      throw new ActionError(
        `${TYPE}: config.url rendered to ${JSON.stringify(rendered)}, whose origin is not the template's ${origin}`,
      );
    }
    const path = rendered
      .slice(rendered.indexOf('//') + 2)
      .replace(/^[^/?#]*/, '')
      .split(/[?#]/)[0]!;
    if (path.split('/').some((segment) => DOT_SEGMENT.test(segment))) {
      throw new ActionError(
        `${TYPE}: config.url rendered to ${JSON.stringify(rendered)}, which has a "." or ".." path segment`,
      );
    }
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
    // Node refuses to send any other control character or one above U+00FF, on every attempt.
    if (/[^\t\x20-\x7e\x80-\xff]/.test(text)) {
      throw new ActionError(
        `${TYPE}: config.headers.${name} may hold only Latin-1 characters, which is all a header can carry; put other text in the body`,
      );
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
 * config: url (templated; values are percent-encoded, and the scheme, host and port must be
 * literal), body (any JSON; every string in it is rendered; default: rule, entity,
 * event, new, old and changed_fields), headers (templated), secret (default: WEBHOOK_SECRET),
 * timeout_ms (default 10000, at most 120000).
 */
export const webhook: ActionHandler = {
  type: TYPE,
  async execute(context: ActionContext) {
    const config = new ConfigReader(TYPE, context.action.config);
    const url = webhookUrl(context, config);
    const body = config.has('body') ? context.renderValue(config.raw('body')) : defaultBody(context);
    // The secret stays in the action: the delivery worker reads it from there when it signs.
    const ownSecret = config.optionalString('secret') !== undefined;
    const recipientId = urlRecipientId(url);
    const payload: WebhookPayload = {
      kind: 'webhook',
      url,
      body,
      headers: headers(context, config),
      ...(ownSecret ? { own_secret: true as const } : {}),
      timeout_ms: timeoutMs(config),
      addresses: { [recipientId]: url },
    };
    const queued = await enqueueNotification(context, payload, [{ recipientId, channel: 'webhook' }]);
    return { notification_id: queued.notification_id, url, recipient_id: recipientId };
  },
};
