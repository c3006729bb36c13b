/*
 * Webhook deliveries, and the signed JSON POST that the SMS and push provider senders use too.
 *
 * Every request is `POST <url>` with these headers:
 *
 *   Content-Type: application/json
 *   Idempotency-Key: <delivery id>        the same on every attempt of one delivery: a receiver that
 *                                         has seen the key before should answer 2xx and do nothing.
 *   X-Rulebook-Delivery-Id: <delivery id>
 *   X-Rulebook-Attempt: <1, 2, ...>
 *   X-Rulebook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>
 *
 * The signature: v1 = lower-case hex of HMAC-SHA256(key = the secret as UTF-8,
 * message = "<t>.<body>"), where t is the decimal Unix time in seconds at which the attempt was
 * made and body is the request body exactly as sent (UTF-8 JSON). The secret is the webhook
 * action's `secret`, else WEBHOOK_SECRET (SMS and push providers: WEBHOOK_SECRET). Without any
 * secret the request is sent without the signature header.
 *
 * To verify, a receiver:
 *   1. reads the raw body bytes before parsing them as JSON;
 *   2. splits the header on "," into key=value pairs and takes t and v1;
 *   3. computes hex(HMAC-SHA256(secret, t + "." + raw body)) and compares it with v1 in constant time
 *      (crypto.timingSafeEqual in Node); any mismatch is a forgery;
 *   4. rejects t further than 5 minutes from its own clock, against replays.
 * t, and so the signature, changes on every attempt; the body and the Idempotency-Key do not.
 *
 * Outcomes: 2xx is success (webhook: delivered; provider: sent); 408, 429, 5xx, timeouts and
 * connection errors are retried, after Retry-After (seconds or an HTTP date) when the answer has
 * one; redirects and other 4xx fail at once.
 *
 * Webhook destinations go through the destination guard (destination-guard.ts): a refused one fails
 * at once. SMS and push provider URLs come from the operator's environment and are not guarded.
 */
import { createHmac } from 'node:crypto';
import { DestinationRefused, lookupPinnedTo, type DestinationGuard } from './destination-guard.js';
import { httpPost, type HttpAnswer } from './http-post.js';
import type { ChannelSender, ClaimedDelivery, DeliveryOutcome, ProviderResponse } from './types.js';

/** Longest Retry-After honoured; a longer one is cut to this. */
const MAX_RETRY_AFTER_MS = 24 * 60 * 60 * 1000;
/** How much of an answer's body provider_response keeps. */
const BODY_EXCERPT_BYTES = 2_000;
/** How much of it error_message quotes. */
const ERROR_EXCERPT_CHARS = 300;

/** The X-Rulebook-Signature value for a body sent at `unixSeconds`. */
export function signatureHeader(secret: string, body: string, unixSeconds: number): string {
  const digest = createHmac('sha256', secret).update(`${unixSeconds}.${body}`, 'utf8').digest('hex');
  return `t=${unixSeconds},v1=${digest}`;
}

/** Milliseconds to wait from a Retry-After value (delay-seconds or HTTP-date); undefined if absent or unreadable. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (value === null || value === undefined) return undefined;
  const text = value.trim();
  if (text === '') return undefined;
  if (/^\d+$/.test(text)) return Math.min(Number(text) * 1000, MAX_RETRY_AFTER_MS);
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.min(Math.max(at - now, 0), MAX_RETRY_AFTER_MS);
}

export interface SignedPost {
  readonly url: string;
  readonly body: string;
  /** Extra headers; Content-Type, Idempotency-Key and the rulebook headers are always rulebook's. */
  readonly headers?: Readonly<Record<string, string>>;
  readonly secret: string | undefined;
  readonly timeoutMs: number;
  readonly delivery: ClaimedDelivery;
  /** The status a 2xx answer gives the delivery. */
  readonly success: 'sent' | 'delivered';
  /** Stops the request when the worker stops. */
  readonly signal: AbortSignal;
  /** Checks the destination after DNS resolution (webhooks); provider URLs, set by the operator, have none. */
  readonly guard?: DestinationGuard | undefined;
}

function shorten(text: string, length: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > length ? `${flat.slice(0, length)}…` : flat;
}

function causeText(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'string' && !error.message.includes(code)
      ? `${code}: ${error.message}`
      : error.message;
  }
  return String(error);
}

/** `work`, or the signal's reason once it aborts first (a DNS lookup takes no signal of its own). */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** POSTs a JSON body, signed and with an Idempotency-Key, and classifies the answer. */
export async function postSignedJson(request: SignedPost): Promise<DeliveryOutcome> {
  const target = `POST ${request.url}`;
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers ?? {})) headers[name.toLowerCase()] = value;
  headers['content-type'] = 'application/json';
  headers['user-agent'] = 'rulebook';
  headers['idempotency-key'] = request.delivery.id;
  headers['x-rulebook-delivery-id'] = request.delivery.id;
  headers['x-rulebook-attempt'] = String(request.delivery.attempts);
  if (request.secret) {
    headers['x-rulebook-signature'] = signatureHeader(
      request.secret,
      request.body,
      Math.floor(Date.now() / 1000),
    );
  }
  const timeout = AbortSignal.timeout(request.timeoutMs);
  const signal = AbortSignal.any([timeout, request.signal]);
  const sentAt = new Date().toISOString();
  const base: ProviderResponse = { http: { url: request.url, sent_at: sentAt, signed: !!request.secret } };
  const url = new URL(request.url);
  let answer: HttpAnswer;
  try {
    const addresses = request.guard ? await untilAborted(request.guard.check(url), signal) : undefined;
    answer = await httpPost({
      url,
      headers,
      body: request.body,
      signal,
      lookup: addresses ? lookupPinnedTo(addresses) : undefined,
      maxBodyBytes: BODY_EXCERPT_BYTES,
    });
  } catch (error) {
    if (error instanceof DestinationRefused) {
      return {
        status: 'failed',
        error: `${target} refused: ${error.message}`,
        response: { http: { url: request.url, refused: error.message } },
      };
    }
    if (request.signal.aborted) {
      return {
        status: 'retry',
        error: `${target}: the worker stopped while waiting for the answer; the outcome is unknown`,
        response: base,
      };
    }
    if (timeout.aborted) {
      return {
        status: 'retry',
        error: `${target}: no answer within ${request.timeoutMs} ms`,
        response: base,
      };
    }
    return { status: 'retry', error: `${target} failed: ${causeText(error)}`, response: base };
  }
  const header = (name: string): string | null => {
    const value = answer.headers[name];
    return Array.isArray(value) ? (value[0] ?? null) : (value ?? null);
  };
  const retryAfterMs = parseRetryAfter(header('retry-after'));
  const http: Record<string, unknown> = {
    url: request.url,
    sent_at: sentAt,
    signed: !!request.secret,
    status: answer.status,
    status_text: answer.statusText,
    content_type: header('content-type'),
    body: answer.body,
  };
  if (answer.truncated) http.body_truncated = true;
  if (answer.bodyError !== undefined) http.body_error = answer.bodyError;
  if (retryAfterMs !== undefined) http.retry_after_ms = retryAfterMs;
  const providerResponse: ProviderResponse = { http };
  const status = answer.status;
  const answered = `${target} answered ${status}${answer.statusText ? ` ${answer.statusText}` : ''}`;
  const quoted = answer.body ? `: ${shorten(answer.body, ERROR_EXCERPT_CHARS)}` : '';
  if (status >= 200 && status < 300) return { status: request.success, response: providerResponse };
  if (status >= 300 && status < 400) {
    const location = header('location');
    return {
      status: 'failed',
      error: `${answered}; redirects are not followed${location ? ` (Location: ${location})` : ''}`,
      response: providerResponse,
    };
  }
  if (status === 408 || status === 429 || status >= 500) {
    return {
      status: 'retry',
      error: `${answered}${quoted}`,
      response: providerResponse,
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    };
  }
  return { status: 'failed', error: `${answered}${quoted}`, response: providerResponse };
}

/**
 * Reads a webhook action's own secret at send time: `found` is false when the action is gone;
 * `secret` is undefined when the action no longer has one.
 */
export type ActionSecretReader = (
  actionId: string,
) => Promise<{ readonly found: boolean; readonly secret?: string | undefined }>;

/** Sends webhook deliveries: the action's URL, body, headers and secret (else WEBHOOK_SECRET). */
export class WebhookSender implements ChannelSender {
  constructor(
    private readonly options: {
      readonly secret?: string | undefined;
      readonly guard: DestinationGuard;
      readonly readActionSecret: ActionSecretReader;
    },
  ) {}

  /**
   * The key that signs this delivery. An action with a secret of its own is signed with it, read
   * now; when that is no longer possible the delivery fails rather than go out unsigned or signed
   * with another key than the receiver expects.
   */
  async #secret(delivery: ClaimedDelivery): Promise<{ secret: string | undefined } | { error: string }> {
    if (delivery.payload?.kind !== 'webhook' || delivery.payload.own_secret !== true) {
      return { secret: this.options.secret };
    }
    const action =
      delivery.actionId === null ? { found: false } : await this.options.readActionSecret(delivery.actionId);
    if (!action.found) {
      return {
        error:
          `the webhook action ${delivery.actionId ?? '(unknown)'} that queued this delivery no longer exists, ` +
          'and its secret went with it: the request was not sent, so that it does not go out unsigned',
      };
    }
    if (action.secret) return { secret: action.secret };
    if (this.options.secret) return { secret: this.options.secret };
    return {
      error:
        `the webhook action ${delivery.actionId} no longer has a secret and WEBHOOK_SECRET is not set: ` +
        'the request was not sent, so that it does not go out unsigned',
    };
  }

  async send(delivery: ClaimedDelivery, signal: AbortSignal): Promise<DeliveryOutcome> {
    const payload = delivery.payload;
    if (payload?.kind !== 'webhook') {
      return {
        status: 'failed',
        error: `webhook delivery has a ${payload?.kind ?? 'missing'} payload, not a webhook one`,
        response: null,
      };
    }
    const key = await this.#secret(delivery);
    if ('error' in key) return { status: 'failed', error: key.error, response: null };
    return postSignedJson({
      url: payload.url,
      body: JSON.stringify(payload.body ?? null),
      headers: payload.headers,
      secret: key.secret,
      timeoutMs: payload.timeout_ms,
      delivery,
      success: 'delivered',
      signal,
      guard: this.options.guard,
    });
  }
}
