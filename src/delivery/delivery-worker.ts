import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type pg from 'pg';
import { NotificationListener } from '../db/notification-listener.js';
import type { Logger } from '../logger.js';
import { EmailSender } from './email-sender.js';
import { DELIVERY_CHANNEL } from './enqueue.js';
import { HttpProviderSender } from './http-provider-sender.js';
import {
  type ChannelSender,
  type ClaimedDelivery,
  type DeliveryOutcome,
  type DeliveryPayload,
} from './types.js';
import { WebhookSender } from './webhook-sender.js';
import { DestinationGuard, WebhookAllowList } from './destination-guard.js';
import { createPool } from '../db/pool.js';
import { errorText } from '../error-text.js';
import { backoffMs } from '../backoff.js';

export interface DeliveryWorkerOptions {
  readonly databaseUrl: string;
  readonly logger: Logger;
  /** SMTP_URL; without it e-mail deliveries fail with "no SMTP_URL configured". */
  readonly smtpUrl?: string | undefined;
  /** SMTP_FROM: the From of every e-mail. */
  readonly smtpFrom?: string;
  /** SMS_PROVIDER_URL and PUSH_PROVIDER_URL: where sms and push deliveries are POSTed. */
  readonly smsProviderUrl?: string | undefined;
  readonly pushProviderUrl?: string | undefined;
  /** WEBHOOK_SECRET: signs webhooks without a secret of their own, and provider requests. */
  readonly webhookSecret?: string | undefined;
  /**
   * RULEBOOK_WEBHOOK_ALLOW: non-public webhook destinations that are allowed anyway (hosts,
   * host:port, CIDR blocks; see destination-guard.ts). Without it webhooks reach public addresses only.
   */
  readonly webhookAllow?: string | readonly string[] | undefined;
  /** DELIVERY_MAX_ATTEMPTS: attempts per delivery before it fails for good. */
  readonly maxAttempts?: number;
  /** DELIVERY_POLL_INTERVAL_MS: how often to look for due deliveries when no NOTIFY arrives. */
  readonly pollIntervalMs?: number;
  /** Backoff: attempt n that failed for a passing reason is retried 2^n × this after it. */
  readonly retryBaseMs?: number;
  /** The longest backoff. */
  readonly retryMaxMs?: number;
  /** Deliveries sent at the same time. */
  readonly concurrency?: number;
  /**
   * How long a claimed delivery belongs to its worker: if the worker dies while sending, the
   * delivery is attempted again (same Message-ID / Idempotency-Key) once this and the backoff have
   * passed. While a send runs, its worker renews the lease every third of this, so that no send,
   * however slow (an SMTP server may take each of many steps up to smtpTimeoutMs), outlives it.
   */
  readonly leaseMs?: number;
  /** Timeout of SMS and push provider requests. */
  readonly providerTimeoutMs?: number;
  /** Timeout of each SMTP step. */
  readonly smtpTimeoutMs?: number;
  /** How long stop() lets sends finish before it aborts them (they are then retried later). */
  readonly stopGraceMs?: number;
  readonly workerId?: string;
}

type OptionalOptions = 'smtpUrl' | 'smsProviderUrl' | 'pushProviderUrl' | 'webhookSecret' | 'webhookAllow';
type ResolvedOptions = Required<Omit<DeliveryWorkerOptions, OptionalOptions>> &
  Pick<DeliveryWorkerOptions, OptionalOptions>;

export interface ClaimOptions {
  readonly limit: number;
  readonly maxAttempts: number;
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
  readonly leaseMs: number;
  readonly workerId: string;
}

const DUE = `workflow.delivery_due_at(d.status, d.attempts, d.updated_date, d.provider_response, $3, $4) <= now()`;

// Claim and mark in flight in one statement (one short transaction): status retrying, the attempt
// counted, and a lease in provider_response.not_before that keeps other workers off the row while
// it is being sent, and lets them take it over if this worker dies before recording the outcome.
const CLAIM = `
with due as (
  select d.id
    from workflow.notification_deliveries d
   where d.status in ('pending', 'retrying')
     and coalesce(d.attempts, 0) < $2
     and ${DUE}
   order by d.updated_date, d.id
   limit $1
   for update skip locked
), claimed as (
  update workflow.notification_deliveries d
     set status = 'retrying',
         attempts = coalesce(d.attempts, 0) + 1,
         provider_response = case when jsonb_typeof(d.provider_response) = 'object' then d.provider_response else '{}' end
           || jsonb_build_object('not_before', now() + $5 * interval '1 millisecond',
                                 'claimed_by', $6::text, 'claimed_at', now())
    from due
   where d.id = due.id
  returning d.id, d.notification_id, d.recipient_id, d.channel, d.attempts, d.rule_id, d.action_id,
            d.automation_execution_id
)
select c.id::text, c.notification_id::text, c.recipient_id::text, c.channel, c.attempts,
       c.rule_id::text, c.action_id::text, c.automation_execution_id::text, p.payload
  from claimed c
  left join workflow.notification_payloads p on p.id = c.notification_id`;

// Deliveries that are due but have no attempt left: a worker died while sending the last one, or
// DELIVERY_MAX_ATTEMPTS was lowered.
const EXPIRE = `
update workflow.notification_deliveries d
   set status = 'failed',
       failed_at = now(),
       error_message = case
         when d.provider_response ? 'claimed_by' then
           format('attempt %s never reported back (its worker stopped while sending), so its outcome is unknown; '
                  'no attempts are left (DELIVERY_MAX_ATTEMPTS is %s)', d.attempts, $2::int)
         else concat_ws('; ', d.error_message, format('no attempts are left (DELIVERY_MAX_ATTEMPTS is %s)', $2::int))
       end
 where d.status in ('pending', 'retrying')
   and coalesce(d.attempts, 0) >= $2
   and workflow.delivery_due_at(d.status, d.attempts, d.updated_date, d.provider_response, $1, $3) <= now()`;

// How long until the next delivery is due, by the database's clock.
const NEXT_DUE = `
select extract(epoch from greatest(min(workflow.delivery_due_at(d.status, d.attempts, d.updated_date,
                                                                  d.provider_response, $1, $2)),
                                   clock_timestamp()) - clock_timestamp()) * 1000 as ms
  from workflow.notification_deliveries d
 where d.status in ('pending', 'retrying')`;

// Records an attempt's outcome, unless the row has been claimed again since (a lease that ran out).
const RECORD = `
update workflow.notification_deliveries
   set status = $3::text,
       sent_at = case when $3::text in ('sent', 'delivered') then now() else sent_at end,
       delivered_at = case when $3::text = 'delivered' then now() else delivered_at end,
       failed_at = case when $3::text in ('failed', 'bounced') then now() else failed_at end,
       error_message = $4::text,
       provider_response = nullif(coalesce($5::jsonb, '{}')
         || case when $6::double precision is null then '{}'::jsonb
                 else jsonb_build_object('not_before', now() + $6 * interval '1 millisecond') end, '{}')
 where id = $1 and attempts = $2 and status = 'retrying'`;

// Pushes the lease of a delivery this worker is still sending; nothing once its outcome is recorded
// (which drops claimed_by) or another worker has claimed it (which counts another attempt).
const RENEW = `
update workflow.notification_deliveries
   set provider_response = provider_response
         || jsonb_build_object('not_before', now() + $4 * interval '1 millisecond')
 where id = $1 and attempts = $2 and status = 'retrying' and provider_response ->> 'claimed_by' = $3`;

// A webhook action's own secret, as the action runs with it now (template defaults merged).
const ACTION_SECRET = `
select workflow.merge_action_config(t.default_config, a.action_config) ->> 'secret' as secret
  from workflow.rule_actions a
  left join workflow.action_templates t on t.id = a.template_id
 where a.id = $1`;

async function readActionSecret(
  pool: pg.Pool,
  actionId: string,
): Promise<{ found: boolean; secret?: string | undefined }> {
  const { rows } = await pool.query<{ secret: string | null }>(ACTION_SECRET, [actionId]);
  const row = rows[0];
  if (!row) return { found: false };
  return { found: true, secret: row.secret ?? undefined };
}

interface ClaimRow {
  id: string;
  notification_id: string;
  recipient_id: string;
  channel: string;
  attempts: number;
  rule_id: string | null;
  action_id: string | null;
  automation_execution_id: string | null;
  payload: unknown;
}

function asPayload(value: unknown): DeliveryPayload | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
  const kind = (value as { kind?: unknown }).kind;
  return kind === 'email' || kind === 'notification' || kind === 'webhook'
    ? (value as DeliveryPayload)
    : null;
}

/**
 * Claims due deliveries and marks them in flight, in one committed statement. Exported so that the
 * claim can be examined on its own; the worker is its only production caller.
 */
export async function claimDeliveries(
  client: pg.ClientBase | pg.Pool,
  options: ClaimOptions,
): Promise<ClaimedDelivery[]> {
  const { rows } = await client.query<ClaimRow>(CLAIM, [
    options.limit,
    options.maxAttempts,
    options.retryBaseMs,
    options.retryMaxMs,
    options.leaseMs,
    options.workerId,
  ]);
  return rows.map((row) => ({
    id: row.id,
    notificationId: row.notification_id,
    recipientId: row.recipient_id,
    channel: row.channel,
    attempts: row.attempts,
    ruleId: row.rule_id,
    actionId: row.action_id,
    automationExecutionId: row.automation_execution_id,
    payload: asPayload(row.payload),
  }));
}

/**
 * Sends what the send_email, send_notification and webhook actions queued in
 * workflow.notification_deliveries. Claims due rows (FOR UPDATE SKIP LOCKED, committed at once),
 * sends outside any transaction, then records the outcome: sent / delivered, failed / bounced, or
 * retrying with exponential backoff until maxAttempts. Wakes on NOTIFY rulebook_deliveries and polls.
 */
export class DeliveryWorker {
  readonly workerId: string;
  readonly #options: ResolvedOptions;
  readonly #logger: Logger;
  readonly #pool: pg.Pool;
  readonly #listener: NotificationListener;
  readonly #senders: Map<string, ChannelSender>;
  readonly #webhookGuard: DestinationGuard;
  #abort = new AbortController();
  #loop: Promise<void> | undefined;
  #stopping = false;
  #woken = false;
  #wakeUp: (() => void) | undefined;

  constructor(options: DeliveryWorkerOptions) {
    this.workerId = options.workerId ?? `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.#options = {
      databaseUrl: options.databaseUrl,
      logger: options.logger,
      smtpUrl: options.smtpUrl,
      smtpFrom: options.smtpFrom ?? 'rulebook@localhost',
      smsProviderUrl: options.smsProviderUrl,
      pushProviderUrl: options.pushProviderUrl,
      webhookSecret: options.webhookSecret,
      webhookAllow: options.webhookAllow,
      maxAttempts: options.maxAttempts ?? 5,
      pollIntervalMs: options.pollIntervalMs ?? 1_000,
      retryBaseMs: options.retryBaseMs ?? 1_000,
      retryMaxMs: options.retryMaxMs ?? 3_600_000,
      concurrency: options.concurrency ?? 10,
      leaseMs: options.leaseMs ?? 300_000,
      providerTimeoutMs: options.providerTimeoutMs ?? 10_000,
      smtpTimeoutMs: options.smtpTimeoutMs ?? 30_000,
      stopGraceMs: options.stopGraceMs ?? 10_000,
      workerId: this.workerId,
    };
    this.#logger = options.logger.child({ component: 'delivery', workerId: this.workerId });
    this.#pool = createPool({
      databaseUrl: options.databaseUrl,
      max: 3,
      applicationName: 'rulebook-delivery',
      logger: this.#logger,
    });
    this.#listener = new NotificationListener({
      databaseUrl: options.databaseUrl,
      channels: [DELIVERY_CHANNEL],
      logger: this.#logger,
      onNotification: () => this.#wake(),
      onConnected: () => this.#wake(),
    });
    const secret = this.#options.webhookSecret;
    this.#webhookGuard = new DestinationGuard(new WebhookAllowList(this.#options.webhookAllow));
    this.#senders = new Map<string, ChannelSender>([
      [
        'email',
        new EmailSender({
          smtpUrl: this.#options.smtpUrl,
          from: this.#options.smtpFrom,
          timeoutMs: this.#options.smtpTimeoutMs,
        }),
      ],
      [
        'sms',
        new HttpProviderSender({
          channel: 'sms',
          url: this.#options.smsProviderUrl,
          variable: 'SMS_PROVIDER_URL',
          secret,
          timeoutMs: this.#options.providerTimeoutMs,
        }),
      ],
      [
        'push',
        new HttpProviderSender({
          channel: 'push',
          url: this.#options.pushProviderUrl,
          variable: 'PUSH_PROVIDER_URL',
          secret,
          timeoutMs: this.#options.providerTimeoutMs,
        }),
      ],
      [
        'webhook',
        new WebhookSender({
          secret,
          guard: this.#webhookGuard,
          readActionSecret: (actionId) => readActionSecret(this.#pool, actionId),
        }),
      ],
    ]);
  }

  get running(): boolean {
    return this.#loop !== undefined;
  }

  async start(): Promise<void> {
    if (this.#loop) return;
    this.#stopping = false;
    this.#abort = new AbortController();
    await this.#listener.start();
    this.#loop = this.#run();
    this.#logger.info(
      {
        email: this.#options.smtpUrl ? 'smtp' : 'not configured',
        sms: this.#options.smsProviderUrl ? 'http' : 'not configured',
        push: this.#options.pushProviderUrl ? 'http' : 'not configured',
        webhookAllow: this.#webhookGuard.allow.entries,
        maxAttempts: this.#options.maxAttempts,
      },
      'delivery worker started',
    );
  }

  /**
   * Stops claiming, lets the sends in hand finish and records them; sends still running after
   * stopGraceMs are aborted and recorded as retrying (their outcome is unknown). Then closes
   * every connection.
   */
  async stop(): Promise<void> {
    const loop = this.#loop;
    if (!loop || this.#stopping) return;
    this.#stopping = true;
    this.#wake();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      loop.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), this.#options.stopGraceMs);
      }),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      this.#logger.warn('sends still running at stop; aborting them, they will be retried');
      this.#abort.abort();
      await loop;
    }
    await this.#listener.stop();
    for (const sender of this.#senders.values()) await sender.close?.().catch(() => {});
    await this.#pool.end();
    this.#loop = undefined;
    this.#logger.info('delivery worker stopped');
  }

  /** Looks for due deliveries now, instead of at the next poll. */
  poke(): void {
    this.#wake();
  }

  #wake(): void {
    this.#woken = true;
    this.#wakeUp?.();
  }

  /** Sleeps until woken, `ms` have passed or `also` settles. */
  async #sleep(ms: number, also?: Promise<unknown>): Promise<void> {
    if (!this.#woken && !this.#stopping) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.#wakeUp = undefined;
          resolve();
        };
        const timer = setTimeout(done, ms);
        this.#wakeUp = done;
        void also?.then(done, done);
      });
    }
    this.#woken = false;
  }

  async #run(): Promise<void> {
    const inFlight = new Set<Promise<void>>();
    let failures = 0;
    while (!this.#stopping) {
      const free = this.#options.concurrency - inFlight.size;
      if (free > 0) {
        let claimed: ClaimedDelivery[];
        try {
          await this.#expire();
          claimed = await claimDeliveries(this.#pool, { ...this.#options, limit: free });
          failures = 0;
        } catch (error) {
          failures++;
          const delay = backoffMs(failures);
          this.#logger.error({ err: error, retryInMs: delay }, 'could not claim deliveries; retrying');
          await this.#sleep(delay);
          continue;
        }
        for (const delivery of claimed) {
          const sending: Promise<void> = this.#deliver(delivery).finally(() => inFlight.delete(sending));
          inFlight.add(sending);
        }
        // A full claim means there may be more due at once.
        if (claimed.length > 0 && claimed.length === free) continue;
      }
      const slotFreed = inFlight.size > 0 ? Promise.race(inFlight) : undefined;
      await this.#sleep(free > 0 ? await this.#idleDelay() : this.#options.pollIntervalMs, slotFreed);
    }
    await Promise.allSettled([...inFlight]);
  }

  /** Until the next due delivery, at most the poll interval. */
  async #idleDelay(): Promise<number> {
    const poll = this.#options.pollIntervalMs;
    try {
      const { rows } = await this.#pool.query<{ ms: string | number | null }>(NEXT_DUE, [
        this.#options.retryBaseMs,
        this.#options.retryMaxMs,
      ]);
      const raw = rows[0]?.ms;
      if (raw === null || raw === undefined) return poll;
      return Math.min(Math.max(Math.ceil(Number(raw)), 20), poll);
    } catch (error) {
      this.#logger.warn({ err: error }, 'could not look up the next due delivery');
      return poll;
    }
  }

  async #expire(): Promise<void> {
    const { rowCount } = await this.#pool.query(EXPIRE, [
      this.#options.retryBaseMs,
      this.#options.maxAttempts,
      this.#options.retryMaxMs,
    ]);
    if (rowCount) this.#logger.warn({ deliveries: rowCount }, 'deliveries failed: no attempts left');
  }

  async #deliver(delivery: ClaimedDelivery): Promise<void> {
    let outcome: DeliveryOutcome;
    let renewing: Promise<void> = Promise.resolve();
    const renewal = setInterval(
      () => {
        renewing = renewing.then(() => this.#renewLease(delivery));
      },
      Math.max(Math.floor(this.#options.leaseMs / 3), 10),
    );
    try {
      outcome = await this.#attempt(delivery);
    } catch (error) {
      outcome = {
        status: 'retry',
        error: `unexpected error while sending: ${errorText(error)}`,
        response: null,
      };
      this.#logger.error({ err: error, deliveryId: delivery.id }, 'sender failed unexpectedly');
    } finally {
      clearInterval(renewal);
    }
    await renewing;
    await this.#record(delivery, outcome);
  }

  async #renewLease(delivery: ClaimedDelivery): Promise<void> {
    try {
      const { rowCount } = await this.#pool.query(RENEW, [
        delivery.id,
        delivery.attempts,
        this.workerId,
        this.#options.leaseMs,
      ]);
      if (rowCount === 0) {
        this.#logger.warn(
          { deliveryId: delivery.id, attempt: delivery.attempts },
          'could not renew the lease of a delivery being sent: another worker has claimed it',
        );
      }
    } catch (error) {
      // The next renewal tries again; the lease is three renewals long.
      this.#logger.warn({ err: error, deliveryId: delivery.id }, 'could not renew the lease of a delivery');
    }
  }

  async #attempt(delivery: ClaimedDelivery): Promise<DeliveryOutcome> {
    if (delivery.payload === null) {
      return {
        status: 'failed',
        error: `workflow.notification_payloads has no payload for notification ${delivery.notificationId}`,
        response: null,
      };
    }
    if (delivery.channel === 'in_app') {
      // The application shows in-app notifications from these rows; being recorded is delivery.
      return { status: 'delivered', response: { in_app: { available_since: new Date().toISOString() } } };
    }
    const sender = this.#senders.get(delivery.channel);
    if (!sender) {
      return {
        status: 'failed',
        error: `unknown channel "${delivery.channel}" (known: email, in_app, push, sms, webhook)`,
        response: null,
      };
    }
    return sender.send(delivery, this.#abort.signal);
  }

  async #record(delivery: ClaimedDelivery, outcome: DeliveryOutcome): Promise<void> {
    let status: string = outcome.status;
    let error: string | null = 'error' in outcome ? outcome.error : null;
    let retryAfterMs: number | null = null;
    if (outcome.status === 'retry') {
      if (delivery.attempts >= this.#options.maxAttempts) {
        status = 'failed';
        error = `${outcome.error} (gave up after ${delivery.attempts} attempts: DELIVERY_MAX_ATTEMPTS is ${this.#options.maxAttempts})`;
      } else {
        status = 'retrying';
        retryAfterMs = outcome.retryAfterMs ?? null;
      }
    }
    const log = {
      deliveryId: delivery.id,
      channel: delivery.channel,
      attempt: delivery.attempts,
      status,
      error,
    };
    for (let attempt = 1; ; attempt++) {
      try {
        const { rowCount } = await this.#pool.query(RECORD, [
          delivery.id,
          delivery.attempts,
          status,
          error,
          outcome.response === null ? null : JSON.stringify(outcome.response),
          retryAfterMs,
        ]);
        if (rowCount === 0) {
          this.#logger.warn(
            log,
            'delivery was claimed again before its outcome was recorded (lease ran out)',
          );
        } else if (status === 'sent' || status === 'delivered') {
          this.#logger.debug(log, 'delivery done');
        } else if (status === 'retrying') {
          this.#logger.info(log, 'delivery will be retried');
        } else {
          this.#logger.warn(log, 'delivery failed');
        }
        return;
      } catch (recordError) {
        if (attempt >= 3) {
          // The lease runs out and the delivery is attempted again, with the same Message-ID or
          // Idempotency-Key.
          this.#logger.error({ ...log, err: recordError }, 'could not record the outcome of a delivery');
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
      }
    }
  }
}
