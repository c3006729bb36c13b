import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type pg from 'pg';
import type { Engine } from '../engine/engine.js';
import type { Logger } from '../logger.js';
import { Gauge, MetricsRegistry } from '../metrics/registry.js';
import { addViewPollMetrics } from '../views/view-poll-metrics.js';
import { addSlotLagMetrics, readSlotLag, type SlotLag } from '../capture/wal/slot-lag.js';
import { sendJson } from './respond.js';
import { StaffApi, type StaffApiOptions } from './staff-api.js';

export interface HttpServerOptions {
  readonly port: number;
  readonly host?: string;
  readonly pool: pg.Pool;
  readonly engine: Engine | undefined;
  readonly logger: Logger;
  /** The staff API's LISTEN connection; defaults to the pool's connectionString. */
  readonly databaseUrl?: string;
  readonly staffApi?: Pick<StaffApiOptions, 'authFailures' | 'heartbeatMs' | 'streamLimits'>;
  /**
   * /healthz answers 503 when the oldest pending event is older than this: a queue that stalls
   * (a daemon stuck on a row, no daemon claiming) is unhealthy even while the process runs.
   */
  readonly maxPendingAgeSeconds?: number;
}

/** The default of RULEBOOK_HEALTH_MAX_PENDING_AGE_SECONDS. */
export const DEFAULT_MAX_PENDING_AGE_SECONDS = 300;

/** Request URLs without the event stream's ?access_token=, for logs. */
function redactUrl(url: string | undefined): string | undefined {
  return url?.replace(/([?&]access_token=)[^&]*/g, '$1[redacted]');
}

/** rulebook's HTTP server: health and metrics; the staff API is mounted here too. */
export class HttpServer {
  readonly #server: http.Server;
  readonly #api: StaffApi;
  /** Everything GET /metrics serves: the engine's counters, then gauges read at each scrape. */
  readonly #registry = new MetricsRegistry();

  constructor(private readonly options: HttpServerOptions) {
    this.#addMetrics();
    const databaseUrl = options.databaseUrl ?? options.pool.options.connectionString;
    if (!databaseUrl) throw new Error('HttpServer: give databaseUrl, or a pool made from a connectionString');
    this.#api = new StaffApi({
      ...options.staffApi,
      pool: options.pool,
      databaseUrl,
      logger: options.logger,
    });
    this.#server = http.createServer((request, response) => {
      this.#handle(request, response).catch((error: unknown) => {
        options.logger.error({ err: error, url: redactUrl(request.url) }, 'request failed');
        if (!response.headersSent) sendJson(response, 500, { error: 'internal error' });
        else response.end();
      });
    });
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.options.port, this.options.host ?? '0.0.0.0', () => resolve());
    });
    this.options.logger.info({ port: this.port }, 'http server listening');
  }

  async stop(): Promise<void> {
    await this.#api.close();
    this.#server.closeIdleConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #handle(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://localhost');
    if (request.method === 'GET' && url.pathname === '/healthz') return this.#health(response);
    if (request.method === 'GET' && url.pathname === '/metrics') return this.#metrics(response);
    if (await this.#api.handle(request, response, url)) return;
    sendJson(response, 404, { error: `no route for ${request.method} ${url.pathname}` });
  }

  async #health(response: http.ServerResponse): Promise<void> {
    const engine = this.options.engine;
    let database: { ok: boolean; error?: string } = { ok: true };
    let backlog: { pending: number; dead: number; oldest_seconds: number | null } | undefined;
    let walSlot: SlotLag | undefined;
    try {
      const { rows } = await this.options.pool.query<{
        pending: string;
        dead: string;
        oldest: number | null;
      }>(
        `select count(*) filter (where state = 'pending') as pending, count(*) filter (where state = 'dead') as dead,
                extract(epoch from now() - min(created_at) filter (where state = 'pending'))::float8 as oldest
           from workflow.events`,
      );
      const row = rows[0]!;
      backlog = { pending: Number(row.pending), dead: Number(row.dead), oldest_seconds: row.oldest };
      walSlot = await readSlotLag(this.options.pool);
    } catch (error) {
      database = { ok: false, error: (error as Error).message };
    }
    const engineOk = engine === undefined || engine.running;
    const maxPendingAge = this.options.maxPendingAgeSeconds ?? DEFAULT_MAX_PENDING_AGE_SECONDS;
    const oldest = backlog?.oldest_seconds ?? null;
    const queueOk = oldest === null || oldest <= maxPendingAge;
    const reasons = [
      ...(database.ok ? [] : [`database: ${database.error}`]),
      ...(engineOk ? [] : ['the engine is not running']),
      ...(queueOk
        ? []
        : [
            `the oldest pending event is ${Math.round(oldest)} s old, more than ${maxPendingAge} s ` +
              '(RULEBOOK_HEALTH_MAX_PENDING_AGE_SECONDS): events are not being handled',
          ]),
    ];
    const ok = reasons.length === 0;
    sendJson(response, ok ? 200 : 503, {
      status: ok ? 'ok' : 'unhealthy',
      ...(ok ? {} : { reasons }),
      database,
      engine: engine
        ? {
            running: engine.running,
            last_batch_at: engine.lastBatchAt ?? null,
            lag_seconds: engine.metrics.lastLagSeconds,
            // Rules that could not be loaded fail alone; they are shown, not counted as unhealthy.
            rule_problems: (engine.rules?.problems ?? []).map((problem) => ({
              rule_id: problem.ruleId,
              rule_name: problem.ruleName,
              ...(problem.actionId !== undefined
                ? { action_id: problem.actionId, action_name: problem.actionName }
                : {}),
              message: problem.message,
            })),
          }
        : { running: false, disabled: true },
      events: backlog ? { ...backlog, max_pending_age_seconds: maxPendingAge } : null,
      // The slot of RULEBOOK_CAPTURE=wal (docs/capture-wal.md): WAL it holds unconfirmed, whether a
      // daemon reads it. A slot nobody reads keeps the server's WAL growing.
      ...(walSlot
        ? { wal_capture: { slot: walSlot.slot, active: walSlot.active, lag_bytes: walSlot.lagBytes } }
        : {}),
    });
  }

  #addMetrics(): void {
    const { engine, pool } = this.options;
    if (engine) this.#registry.add(engine.metrics.registry);
    const events = this.#registry.add(
      new Gauge('rulebook_outbox_events', 'Events in the outbox by state', 'state'),
    );
    const deliveries = this.#registry.add(
      new Gauge('rulebook_deliveries', 'Notification deliveries by status', 'status'),
    );
    this.#registry.collect(async () => {
      const { rows } = await pool.query<{ kind: string; label: string; count: string }>(
        `select 'events' as kind, state as label, count(*) as count from workflow.events group by state
         union all
         select 'deliveries', status, count(*) from workflow.notification_deliveries group by status`,
      );
      const counts = (kind: string) =>
        rows.filter((row) => row.kind === kind).map((row) => [row.label, Number(row.count)] as const);
      events.replace(counts('events'));
      deliveries.replace(counts('deliveries'));
    });
    addViewPollMetrics(this.#registry, pool);
    addSlotLagMetrics(this.#registry, pool);
  }

  async #metrics(response: http.ServerResponse): Promise<void> {
    const text = await this.#registry.render();
    response.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
    response.end(text);
  }
}
