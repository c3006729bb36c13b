import type http from 'node:http';
import type pg from 'pg';
import { compile, sql } from '../db/sql.js';
import { ALERT_COLUMNS, LATEST_ACKNOWLEDGMENT, visibleTo, type StaffAlert } from '../alerts/staff-alerts.js';
import { NotificationListener } from '../db/notification-listener.js';
import { AlertListenerRegistration } from './alert-listener-registration.js';
import type { Logger } from '../logger.js';
import type { Authenticator, Caller } from './auth.js';
import { HttpError } from './respond.js';
import type { RequestContext, Router } from './router.js';
import { isUuid } from '../is-uuid.js';
import { QueryParams } from './validate.js';

export interface AlertStreamOptions {
  readonly pool: pg.Pool;
  readonly databaseUrl: string;
  readonly logger: Logger;
  readonly auth: Authenticator;
  /** Comments that keep proxies from closing an idle stream; the token is checked again each time. */
  readonly heartbeatMs?: number;
  readonly limits?: Partial<AlertStreamLimits>;
}

export interface AlertStreamLimits {
  /** Open streams in this server; one more gets 503 (RULEBOOK_SSE_MAX_STREAMS). */
  readonly maxStreams: number;
  /** Open streams per person; one more gets 429 (RULEBOOK_SSE_MAX_STREAMS_PER_USER). */
  readonly maxStreamsPerUser: number;
  /**
   * Bytes a stream may have waiting to be sent (the client not reading, or reading slowly) before
   * the server drops it; without a bound every alert would pile up in memory for it.
   */
  readonly maxBufferedBytes: number;
}

interface Client {
  readonly caller: Caller;
  readonly response: http.ServerResponse;
  timer?: NodeJS.Timeout;
}

const CHANNEL = 'rulebook_alerts';

/** Open streams per person: a few tabs and devices, not a flood that a stolen token could open. */
export const MAX_STREAMS_PER_USER = 20;

export const DEFAULT_STREAM_LIMITS: AlertStreamLimits = Object.freeze({
  // Each stream holds a socket and a little memory; a thousand is far above a staff team's needs.
  maxStreams: 1_000,
  maxStreamsPerUser: MAX_STREAMS_PER_USER,
  // About a thousand typical alert events.
  maxBufferedBytes: 1024 * 1024,
});

/**
 * GET /api/alerts/stream: server-sent events for the caller's new and changed alerts.
 *
 * One LISTEN connection per server, opened with the first stream and reconnecting by itself, hears
 * every alert id that create_alert and the staff API send on rulebook_alerts. For each, one query
 * finds which of the connected people may see the alert, and each of their streams gets
 * `event: alert` with the alert as JSON. Writers NOTIFY only while a stream is registered in
 * workflow.alert_listeners: this one is from its first open stream until its last one closes (or
 * its listener's connection is gone). A NOTIFY is only a hint: after the listener reconnects,
 * streams get `event: resync`, since whatever was sent meanwhile is lost and the page should
 * reload its list. When the token behind a stream is revoked or expires, the stream gets
 * `event: signed-out` and ends.
 */
export class AlertStream {
  readonly #clients = new Set<Client>();
  readonly #logger: Logger;
  readonly #limits: AlertStreamLimits;
  /** Streams past their checks but not yet in #clients, so that concurrent opens respect the caps. */
  #opening: Caller[] = [];
  #listener: NotificationListener | undefined;
  #listening: Promise<void> | undefined;
  #listeningDone = false;
  #dispatching: Promise<void> = Promise.resolve();
  readonly #registration: AlertListenerRegistration;
  /** Registration changes, one after another. */
  #registering: Promise<void> = Promise.resolve();
  #retrying = false;
  #closed = false;

  constructor(private readonly options: AlertStreamOptions) {
    this.#logger = options.logger.child({ component: 'alert-stream' });
    this.#limits = { ...DEFAULT_STREAM_LIMITS, ...options.limits };
    this.#registration = new AlertListenerRegistration(options.pool);
  }

  register(router: Router): void {
    // EventSource cannot send an Authorization header, so this route alone also reads ?access_token=.
    router.get(
      '/api/alerts/stream',
      this.options.auth.guard((context, caller) => this.#open(context, caller), { queryToken: true }),
    );
  }

  get clientCount(): number {
    return this.#clients.size;
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const client of this.#clients) this.#drop(client, true);
    await this.#listening?.catch(() => {});
    await this.#syncRegistration();
    await this.#listener?.stop();
    await this.#dispatching;
  }

  async #open({ url, request, response }: RequestContext, caller: Caller): Promise<void> {
    new QueryParams(url, ['access_token']);
    if (this.#closed) throw new HttpError(503, 'the server is shutting down; reconnect in a moment');
    const callers = [...[...this.#clients].map((client) => client.caller), ...this.#opening];
    const open = callers.filter((other) => other.userId === caller.userId).length;
    if (open >= this.#limits.maxStreamsPerUser) {
      throw new HttpError(429, `you already have ${open} open alert streams; close some tabs first`, {
        'retry-after': '30',
      });
    }
    if (callers.length >= this.#limits.maxStreams) {
      this.#logger.warn({ streams: callers.length }, 'alert stream refused: the server has its maximum open');
      throw new HttpError(
        503,
        `this server already has ${callers.length} open alert streams, its maximum; try again later`,
        { 'retry-after': '30' },
      );
    }
    this.#opening.push(caller);
    try {
      await this.#listen();
      await this.#syncRegistration();
    } finally {
      this.#opening.splice(this.#opening.indexOf(caller), 1);
    }
    // The client may have gone while the listener connected; the last one out unregisters.
    if (response.destroyed) {
      void this.#syncRegistration();
      return;
    }
    response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
      'x-content-type-options': 'nosniff',
    });
    const client: Client = { caller, response };
    if (!this.#write(client, `retry: 3000\n: signed in as ${caller.email ?? caller.userId}\n\n`)) {
      void this.#syncRegistration();
      return;
    }
    client.timer = setInterval(() => void this.#heartbeat(client), this.options.heartbeatMs ?? 15_000);
    this.#clients.add(client);
    request.once('close', () => this.#drop(client));
    response.once('close', () => this.#drop(client));
  }

  #listen(): Promise<void> {
    this.#listening ??= (async () => {
      this.#listener = new NotificationListener({
        databaseUrl: this.options.databaseUrl,
        channels: [CHANNEL],
        applicationName: this.#registration.listenerName,
        logger: this.#logger,
        onNotification: (_channel, payload) => {
          this.#dispatching = this.#dispatching
            .then(() => this.#dispatch(payload))
            .catch((error: unknown) =>
              this.#logger.error({ err: error, alertId: payload }, 'alert event failed'),
            );
        },
        onConnected: () => {
          if (!this.#listeningDone) return;
          // Registered again first, so that the lists the pages reload miss nothing after them.
          this.#registration.forget();
          void this.#syncRegistration().then(() => this.#broadcast('resync', '{}'));
        },
      });
      await this.#listener.start();
      this.#listeningDone = true;
    })();
    return this.#listening;
  }

  /**
   * Registers while a stream is open or opening, unregisters otherwise. A failure is logged; the
   * streams stay open, without live alerts until a heartbeat registers again (#retryRegistration).
   */
  #syncRegistration(): Promise<void> {
    this.#registering = this.#registering
      .then(() =>
        this.#registration.set(
          !this.#closed && this.#listeningDone && this.#clients.size + this.#opening.length > 0,
        ),
      )
      .catch((error: unknown) =>
        this.#logger.error({ err: error }, 'could not change the alert stream registration'),
      );
    return this.#registering;
  }

  async #dispatch(alertId: string): Promise<void> {
    if (!isUuid(alertId) || this.#clients.size === 0) return;
    const viewers = [...new Set([...this.#clients].map((client) => client.caller.userId))];
    const { rows } = await this.options.pool.query<StaffAlert & { viewer: string }>(
      compile(sql`select u.user_id::text as viewer, ${ALERT_COLUMNS}
         from unnest(${viewers}::uuid[]) as u (user_id)
         join workflow.alerts a on a.id = ${alertId}
         ${LATEST_ACKNOWLEDGMENT}
        where ${visibleTo(sql.ident('u', 'user_id'))}`),
    );
    for (const { viewer, ...alert } of rows) {
      const data = JSON.stringify(alert);
      for (const client of this.#clients) {
        if (client.caller.userId === viewer) this.#send(client, 'alert', data);
      }
    }
  }

  /** Open streams left unregistered by a failure: register, then have their pages reload. */
  #retryRegistration(): void {
    if (this.#retrying || this.#registration.registered || this.#clients.size === 0) return;
    this.#retrying = true;
    void this.#syncRegistration().then(() => {
      this.#retrying = false;
      if (this.#registration.registered) this.#broadcast('resync', '{}');
    });
  }

  async #heartbeat(client: Client): Promise<void> {
    if (!this.#write(client, ': heartbeat\n\n')) return;
    this.#retryRegistration();
    const valid = await this.options.auth.stillValid(client.caller.tokenId).catch(() => true);
    if (!valid && this.#clients.has(client)) {
      this.#send(
        client,
        'signed-out',
        JSON.stringify({ error: 'this token is no longer valid; sign in again' }),
      );
      this.#drop(client, true);
    }
  }

  #broadcast(event: string, data: string): void {
    for (const client of this.#clients) this.#send(client, event, data);
  }

  #send(client: Client, event: string, data: string): void {
    this.#write(client, `event: ${event}\ndata: ${data}\n\n`);
  }

  /**
   * Writes to a stream unless its client has stopped reading: when the last write found the socket
   * full (no 'drain' since) and more than maxBufferedBytes still wait, the stream is dropped (the
   * browser's EventSource reconnects and the page reloads its list) instead of holding every later
   * alert in memory. A stream so holds at most the bound plus one event. Returns whether it is open.
   */
  #write(client: Client, text: string): boolean {
    const response = client.response;
    if (response.writableEnded || response.destroyed) return false;
    const buffered = response.writableLength;
    if (response.writableNeedDrain && buffered > this.#limits.maxBufferedBytes) {
      this.#logger.warn(
        {
          userId: client.caller.userId,
          bufferedBytes: buffered,
          maxBufferedBytes: this.#limits.maxBufferedBytes,
        },
        'alert stream dropped: its client is not reading',
      );
      this.#drop(client);
      response.destroy();
      return false;
    }
    response.write(text);
    return true;
  }

  #drop(client: Client, end = false): void {
    clearInterval(client.timer);
    const removed = this.#clients.delete(client);
    if (end && !client.response.writableEnded) client.response.end();
    if (removed && this.#clients.size === 0 && !this.#closed) void this.#syncRegistration();
  }
}
