import { startScratchServer } from '../../test/support/scratch-server.js';

export interface BenchServer {
  /** URL of the `postgres` database. */
  readonly url: string;
  /** The server's recent log lines, for error messages. */
  logTail(): string;
  /** Stops the server and removes its directories. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * One embedded PostgreSQL for the whole benchmark run, in a temporary directory, with the default
 * durability settings (fsync and synchronous_commit on): the test suite's fast-and-unsafe settings
 * would flatter every variant by hiding the commit flush.
 */
export async function startBenchServer(): Promise<BenchServer> {
  const log: string[] = [];
  let scratch;
  try {
    scratch = await startScratchServer('rulebook-bench-pg', {
      settings: {
        max_connections: '200',
        shared_buffers: '256MB',
        // wal_level=logical for bench/capture-wal.ts' replication slot.
        wal_level: 'logical',
        // BENCH_PG_PRELOAD=pg_stat_statements: per-statement figures for the runs that collect them.
        ...(process.env.BENCH_PG_PRELOAD ? { shared_preload_libraries: process.env.BENCH_PG_PRELOAD } : {}),
      },
      onLog: (message) => {
        log.push(...message.trimEnd().split('\n'));
        if (log.length > 200) log.splice(0, log.length - 200);
      },
    });
  } catch (error) {
    throw new Error(
      `could not start the embedded PostgreSQL: ${String(error)}\n${log.slice(-20).join('\n')}`,
      {
        cause: error,
      },
    );
  }
  return {
    url: scratch.server.url,
    logTail: () => log.slice(-20).join('\n'),
    stop: () => scratch.remove(),
  };
}
