import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Logger, run, runMigrations, type Runner, type TaskList } from 'graphile-worker';
import pg from 'pg';
import type { BenchContext } from './context.js';
import { cpuSnapshot, cpuUsed, type CpuUsage } from './cpu.js';
import { latencyStats, paceWrites, timeDrain, waitUntil, type LatencyStats } from './latency.js';

/**
 * graphile-worker as the reference job queue: its own database on the benchmark's server, a
 * trivial task, run in this process like rulebook's daemon.
 */

export type GraphileWorkerOptions = NonNullable<GraphileConfig.Preset['worker']>;

export interface GraphileVariant {
  readonly key: string;
  readonly label: string;
  /** What the variant sets; the rest are graphile-worker's defaults. */
  readonly settings: GraphileWorkerOptions;
  readonly describe: string;
}

/** graphile-worker's defaults: concurrentJobs 1, maxPoolSize 10, pollInterval 2000, no batching. */
export const GRAPHILE_DEFAULT: GraphileVariant = {
  key: 'graphile-default',
  label: 'graphile-worker, default settings',
  settings: {},
  describe: 'no settings: concurrentJobs 1, maxPoolSize 10, no local queue, no batched completion',
};

/** The configuration of graphile-worker's performance page (worker.graphile.org/docs/performance). */
export const GRAPHILE_BATCHED: GraphileVariant = {
  key: 'graphile-batched',
  label: 'graphile-worker, batched',
  settings: {
    concurrentJobs: 24,
    maxPoolSize: 25,
    localQueue: { size: 500 },
    completeJobBatchDelay: 0,
    failJobBatchDelay: 0,
  },
  describe:
    'its performance page: concurrentJobs 24, maxPoolSize 25, localQueue { size: 500 }, completeJobBatchDelay 0, failJobBatchDelay 0',
};

/** Ten jobs at a time, otherwise its defaults: the reference of issue 11's matched-events goal. */
export const GRAPHILE_C10: GraphileVariant = {
  key: 'graphile-c10',
  label: 'graphile-worker, concurrency 10',
  settings: { concurrentJobs: 10 },
  describe:
    'concurrentJobs 10, otherwise its defaults (maxPoolSize 10, no local queue, no batched completion)',
};

export function graphileVersion(): string {
  const require = createRequire(import.meta.url);
  return (require('graphile-worker/package.json') as { version: string }).version;
}

export interface ThroughputRun {
  /** Events or jobs handled. */
  readonly items: number;
  /** From the commit that queued them all to the moment the queue was seen empty. */
  readonly seconds: number;
  readonly rate: number;
  /** Whether the queue emptied before the timeout. */
  readonly complete: boolean;
  readonly cpu: CpuUsage;
}

const silentLogger = new Logger(() => () => {});

const BULK_ADD = `
select count(*)::int as n from graphile_worker.add_jobs(array(
  select row('bench_noop', json_build_object('i', g), null, null, null, null, null, null)::graphile_worker.job_spec
    from generate_series(1, $1::int) g))`;

const ADD_ONE = `select 1 from graphile_worker.add_job('bench_latency', json_build_object('s', $1::int))`;

const QUEUE_EMPTY = {
  name: 'bench.queue_empty',
  text: 'select not exists (select from graphile_worker._private_jobs) as empty',
};

function databaseUrl(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

export class GraphileReference {
  readonly #url: string;
  readonly #control: pg.Client;
  readonly #writer: pg.Client;
  readonly #startedAt = new Map<number, number>();

  private constructor(url: string) {
    this.#url = url;
    this.#control = new pg.Client({ connectionString: url, application_name: 'bench control' });
    this.#writer = new pg.Client({ connectionString: url, application_name: 'bench writer' });
  }

  /** A fresh database with graphile-worker's schema. */
  static async create(ctx: BenchContext, database: string): Promise<GraphileReference> {
    const admin = new pg.Client({ connectionString: ctx.serverUrl });
    await admin.connect();
    try {
      await admin.query(`drop database if exists ${pg.escapeIdentifier(database)} with (force)`);
      await admin.query(`create database ${pg.escapeIdentifier(database)}`);
    } finally {
      await admin.end();
    }
    const url = databaseUrl(ctx.serverUrl, database);
    await runMigrations({ connectionString: url, logger: silentLogger });
    const reference = new GraphileReference(url);
    await reference.#control.connect();
    await reference.#writer.connect();
    return reference;
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.#control.end(), this.#writer.end()]);
  }

  #taskList(): TaskList {
    return {
      bench_noop: async () => {},
      bench_latency: async (payload) => {
        this.#startedAt.set((payload as { s: number }).s, performance.now());
      },
    };
  }

  async #start(variant: GraphileVariant): Promise<Runner> {
    const runner = await run(
      {
        connectionString: this.#url,
        taskList: this.#taskList(),
        logger: silentLogger,
        noHandleSignals: true,
        preset: { worker: { ...variant.settings } },
      },
      undefined,
      [],
    );
    // Let every worker reach its first (empty) poll and LISTEN.
    await sleep(300);
    return runner;
  }

  async #pids(): Promise<number[]> {
    const { rows } = await this.#writer.query<{ pid: number }>('select pg_backend_pid() as pid');
    return [rows[0]!.pid];
  }

  async #prepare(): Promise<void> {
    await this.#control.query('vacuum (analyze) graphile_worker._private_jobs');
    await this.#control.query('checkpoint');
  }

  /** Queues `jobs` jobs in one transaction while the worker waits, and times until all are done. */
  async throughput(variant: GraphileVariant, jobs: number, timeoutMs: number): Promise<ThroughputRun> {
    await this.#prepare();
    const runner = await this.#start(variant);
    try {
      const exclude = await this.#pids();
      const { rows } = await this.#writer.query<{ n: number }>(BULK_ADD, [jobs]);
      const startedAt = performance.now();
      const before = await cpuSnapshot(this.#control, exclude);
      if (rows[0]?.n !== jobs)
        throw new Error(`graphile-worker: add_jobs queued ${rows[0]?.n} of ${jobs} jobs`);
      const drain = await timeDrain(
        async () => (await this.#control.query<{ empty: boolean }>(QUEUE_EMPTY)).rows[0]!.empty,
        startedAt,
        timeoutMs,
      );
      const after = await cpuSnapshot(this.#control, exclude);
      let items = jobs;
      if (!drain.complete) {
        const left = await this.#control.query<{ n: number }>(
          'select count(*)::int as n from graphile_worker._private_jobs',
        );
        items = jobs - left.rows[0]!.n;
      }
      return {
        items,
        seconds: drain.seconds,
        rate: items / drain.seconds,
        complete: drain.complete,
        cpu: cpuUsed(before, after),
      };
    } finally {
      await runner.stop();
      await this.#control.query('delete from graphile_worker._private_jobs');
    }
  }

  /** add_job at a steady rate, one job per transaction; latency from its commit to the task's start. */
  async latency(
    variant: GraphileVariant,
    rate: number,
    count: number,
    warmup: number,
  ): Promise<LatencyStats> {
    await this.#prepare();
    this.#startedAt.clear();
    const runner = await this.#start(variant);
    try {
      const { committedAt, seconds } = await paceWrites(rate, count, async (i) => {
        await this.#writer.query(ADD_ONE, [i]);
      });
      await waitUntil(() => this.#startedAt.size >= count, 10_000);
      return latencyStats(committedAt, this.#startedAt, warmup, seconds);
    } finally {
      await runner.stop();
      await this.#control.query('delete from graphile_worker._private_jobs');
    }
  }
}
