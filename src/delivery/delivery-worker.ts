import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type pg from 'pg';
import { NotificationListener } from '../db/notification-listener.js';
import type { Logger } from '../logger.js';
import { EmailSender } from './email-sender.js';
import {
  claimDeliveries,
  expireDeliveries,
  nextDueMs,
  readActionSecret,
  recordOutcome,
  renewLease,
} from './delivery-queue.js';
import { DELIVERY_CHANNEL } from './enqueue.js';
import { HttpProviderSender } from './http-provider-sender.js';
import type { ChannelSender, ClaimedDelivery, DeliveryOutcome } from './types.js';
import { WebhookSender } from './webhook-sender.js';
import { DestinationGuard, WebhookAllowList } from './destination-guard.js';
import { createPool } from '../db/pool.js';
import { errorText } from '../error-text.js';
import { backoffMs } from '../backoff.js';
import { WakeSignal } from '../wake-signal.js';

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
  readonly #wakeSignal = new WakeSignal();

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
    this.#wakeSignal.wake();
  }

  /** Sleeps until woken, `ms` have passed or `also` settles. */
  async #sleep(ms: number, also?: Promise<unknown>): Promise<void> {
    if (this.#stopping) return;
    await this.#wakeSignal.wait(ms, also);
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
      const ms = await nextDueMs(this.#pool, this.#options);
      if (ms === null) return poll;
      return Math.min(Math.max(Math.ceil(ms), 20), poll);
    } catch (error) {
      this.#logger.warn({ err: error }, 'could not look up the next due delivery');
      return poll;
    }
  }

  async #expire(): Promise<void> {
    const expired = await expireDeliveries(this.#pool, this.#options);
    if (expired) this.#logger.warn({ deliveries: expired }, 'deliveries failed: no attempts left');
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
      if (!(await renewLease(this.#pool, delivery, this.workerId, this.#options.leaseMs))) {
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
        const recorded = await recordOutcome(this.#pool, delivery, {
          status,
          error,
          response: outcome.response,
          retryAfterMs,
        });
        if (!recorded) {
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
