import { randomUUID } from 'node:crypto';
import pg from 'pg';
import os from 'node:os';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import { maskedUrl, openDatabase, type Database } from './db/database.js';
import { migrateDatabase } from './db/migrate.js';
import { waitForDatabase } from './db/wait-for-database.js';
import { createPool } from './db/pool.js';
import { DeliveryWorker } from './delivery/delivery-worker.js';
import { Engine } from './engine/engine.js';
import { Heartbeat } from './heartbeat.js';
import { HttpServer } from './http/server.js';
import type { Logger } from './logger.js';
import { MaintenanceJobs } from './scheduler/maintenance.js';
import { Scheduler } from './scheduler/scheduler.js';
import { ViewPoller } from './views/view-poller.js';
import { leaveWalMode } from './capture/wal/capture-mode.js';
import { WalCapture } from './capture/wal/wal-capture.js';

export interface DaemonOptions {
  readonly http: boolean;
  /** Aborts start-up while it waits for the database. */
  readonly signal?: AbortSignal;
  /** Where the scheduler, the maintenance job and time-relative conditions read now (tests move one). */
  readonly clock?: Clock;
}

export interface RunningDaemon {
  readonly engine: Engine;
  readonly scheduler: Scheduler;
  readonly maintenance: MaintenanceJobs;
  readonly views: ViewPoller;
  readonly http: HttpServer | undefined;
  readonly database: Database;
  /** Set in RULEBOOK_CAPTURE=wal. */
  readonly walCapture: WalCapture | undefined;
  stop(): Promise<void>;
}

/**
 * Opens the database, applies pending migrations, then runs the engine, the scheduler of scheduled
 * rules, the maintenance jobs, the delivery worker and the HTTP server.
 */
export async function startDaemon(
  config: Config,
  logger: Logger,
  options: DaemonOptions,
): Promise<RunningDaemon> {
  const cleanups: (() => Promise<void>)[] = [];
  const stop = async () => {
    // Reverse order of acquisition.
    for (const cleanup of cleanups.reverse()) {
      await cleanup().catch((error: unknown) => logger.error({ err: error }, 'error while stopping'));
    }
  };
  try {
    if (config.databaseUrl) {
      // docker-compose starts rulebook and PostgreSQL together: give the server time to come up.
      await waitForDatabase(config.databaseUrl, {
        waitSeconds: config.databaseWaitSeconds,
        logger,
        signal: options.signal,
      });
    }
    const database = await openDatabase(config, (message) => logger.info(`embedded PostgreSQL: ${message}`));
    cleanups.push(() => database.close());
    logger.info(
      database.server
        ? {
            database: maskedUrl(database.url),
            dataDir: config.dataDir,
            cluster: database.server.clusterDir,
            serverLog: database.server.logFile,
            startedHere: database.server.started,
          }
        : { database: maskedUrl(database.url) },
      database.server
        ? 'using the embedded PostgreSQL; `rulebook db url` prints its URL with the password, `rulebook psql` opens psql on it'
        : 'using DATABASE_URL',
    );
    const applied = await migrateDatabase(database.url, {
      onNotice: (message) => logger.warn({ migration: true }, message),
    });
    if (applied.length > 0) logger.info({ applied }, 'migrations applied');

    // The heartbeat's row is written first and marked stopped last, so that it spans the whole run.
    const daemonId = `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    const heartbeat = new Heartbeat({
      databaseUrl: database.url,
      logger,
      daemonId,
      intervalMs: config.heartbeatIntervalMs,
    });
    await heartbeat.start();
    cleanups.push(() => heartbeat.stop());

    // Capture: WAL mode switches the tables to the slot and reads it in one elected daemon; trigger
    // mode gives tables back to their triggers and drops the slot if WAL mode was on before.
    let walCapture: WalCapture | undefined;
    if (config.capture.mode === 'wal') {
      const capture = new WalCapture({
        databaseUrl: database.url,
        logger,
        slot: config.capture.walSlot,
        batchSize: config.capture.walBatchSize,
        batchWaitMs: config.capture.walBatchWaitMs,
        retryMs: config.capture.walRetryMs,
      });
      await capture.start();
      cleanups.push(() => capture.stop());
      walCapture = capture;
    } else {
      const client = new pg.Client({ connectionString: database.url });
      await client.connect();
      try {
        await leaveWalMode(client, logger, { batchSize: config.capture.walBatchSize });
      } finally {
        await client.end();
      }
    }

    const engine = new Engine({
      databaseUrl: database.url,
      logger,
      daemonId,
      ...config.engine,
      captureMode: config.capture.mode,
      clock: options.clock,
    });
    await engine.start();
    cleanups.push(() => engine.stop());

    const scheduler = new Scheduler({
      databaseUrl: database.url,
      logger,
      pollIntervalMs: config.engine.pollIntervalMs,
      ruleSetWatcher: engine.ruleSetWatcher,
      catchUpMs: config.scheduler.catchUpMs,
      clock: options.clock,
    });
    await scheduler.start();
    cleanups.push(() => scheduler.stop());

    const maintenance = new MaintenanceJobs({
      databaseUrl: database.url,
      logger,
      intervalMs: config.scheduler.maintenanceIntervalMs,
      retention: config.retention,
      clock: options.clock,
    });
    maintenance.start();
    cleanups.push(() => maintenance.stop());

    // Polls views registered for change rules (docs/views.md); looks for due views as often as the
    // engine looks for work.
    const views = new ViewPoller({ databaseUrl: database.url, logger, tickMs: config.engine.pollIntervalMs });
    views.start();
    cleanups.push(() => views.stop());

    const deliveries = new DeliveryWorker({ databaseUrl: database.url, logger, ...config.delivery });
    await deliveries.start();
    cleanups.push(() => deliveries.stop());

    let http: HttpServer | undefined;
    if (options.http) {
      const pool = createPool({
        databaseUrl: database.url,
        max: 5,
        applicationName: 'rulebook-http',
        logger,
      });
      cleanups.push(() => pool.end());
      http = new HttpServer({
        port: config.port,
        pool,
        engine,
        logger,
        maxPendingAgeSeconds: config.health.maxPendingAgeSeconds,
        staffApi: { streamLimits: config.alertStreams },
      });
      await http.start();
      const server = http;
      cleanups.push(() => server.stop());
    }
    return { engine, scheduler, maintenance, views, http, database, walCapture, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
