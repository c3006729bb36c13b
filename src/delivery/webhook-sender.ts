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
 */
import { createHmac } from 'node:crypto';
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
}

async function readExcerpt(response: Response): Promise<{ text: string; truncated: boolean }> {
  if (!response.body) return { text: '', truncated: false };
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let truncated = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
      if (size > BODY_EXCERPT_BYTES) {
        truncated = true;
        break;
      }
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  const text = Buffer.concat(chunks).subarray(0, BODY_EXCERPT_BYTES).toString('utf8');
  return { text, truncated };
}

function shorten(text: string, length: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > length ? `${flat.slice(0, length)}…` : flat;
}

function causeText(error: unknown): string {
  const cause = (error as { cause?: unknown }).cause;
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code;
    return typeof code === 'string' && !cause.message.includes(code)
      ? `${code}: ${cause.message}`
      : cause.message;
  }
  return error instanceof Error ? error.message : String(error);
}

/** POSTs a JSON body, signed and with an Idempotency-Key, and classifies the answer. */
export async function postSignedJson(request: SignedPost): Promise<DeliveryOutcome> {
  const target = `POST ${request.url}`;
  const headers = new Headers(request.headers ?? {});
  headers.set('content-type', 'application/json');
  headers.set('user-agent', 'rulebook');
  headers.set('idempotency-key', request.delivery.id);
  headers.set('x-rulebook-delivery-id', request.delivery.id);
  headers.set('x-rulebook-attempt', String(request.delivery.attempts));
  if (request.secret) {
    headers.set(
      'x-rulebook-signature',
      signatureHeader(request.secret, request.body, Math.floor(Date.now() / 1000)),
    );
  }
  const timeout = AbortSignal.timeout(request.timeoutMs);
  const signal = AbortSignal.any([timeout, request.signal]);
  const sentAt = new Date().toISOString();
  let response: Response;
  try {
    response = await fetch(request.url, {
      method: 'POST',
      headers,
      body: request.body,
      redirect: 'manual',
      signal,
    });
  } catch (error) {
    const base: ProviderResponse = { http: { url: request.url, sent_at: sentAt, signed: !!request.secret } };
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
  let excerpt: { text: string; truncated: boolean };
  let bodyError: string | undefined;
  try {
    excerpt = await readExcerpt(response);
  } catch (error) {
    excerpt = { text: '', truncated: false };
    bodyError = causeText(error);
  }
  const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'));
  const http: Record<string, unknown> = {
    url: request.url,
    sent_at: sentAt,
    signed: !!request.secret,
    status: response.status,
    status_text: response.statusText,
    content_type: response.headers.get('content-type'),
    body: excerpt.text,
  };
  if (excerpt.truncated) http.body_truncated = true;
  if (bodyError !== undefined) http.body_error = bodyError;
  if (retryAfterMs !== undefined) http.retry_after_ms = retryAfterMs;
  const providerResponse: ProviderResponse = { http };
  const status = response.status;
  const answered = `${target} answered ${status}${response.statusText ? ` ${response.statusText}` : ''}`;
  const quoted = excerpt.text ? `: ${shorten(excerpt.text, ERROR_EXCERPT_CHARS)}` : '';
  if (status >= 200 && status < 300) return { status: request.success, response: providerResponse };
  if (status >= 300 && status < 400) {
    const location = response.headers.get('location');
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

/** Sends webhook deliveries: the action's URL, body, headers and secret (else WEBHOOK_SECRET). */
export class WebhookSender implements ChannelSender {
  constructor(private readonly options: { readonly secret?: string | undefined }) {}

  async send(delivery: ClaimedDelivery, signal: AbortSignal): Promise<DeliveryOutcome> {
    const payload = delivery.payload;
    if (payload?.kind !== 'webhook') {
      return {
        status: 'failed',
        error: `webhook delivery has a ${payload?.kind ?? 'missing'} payload, not a webhook one`,
        response: null,
      };
    }
    return postSignedJson({
      url: payload.url,
      body: JSON.stringify(payload.body ?? null),
      headers: payload.headers,
      secret: payload.secret ?? this.options.secret,
      timeoutMs: payload.timeout_ms,
      delivery,
      success: 'delivered',
      signal,
    });
  }
}
