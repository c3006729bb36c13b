/** What every benchmark module receives from bench/run.ts. */
export interface BenchContext {
  /** `--quick`: shorter runs for smoke testing; the figures are not meant to be quoted. */
  readonly quick: boolean;
  /** URL of the `postgres` database of the one server shared by the whole run (superuser). */
  readonly serverUrl: string;
  /** Path of the pgbench binary. */
  readonly pgbench: string;
  /** A scratch directory, removed at the end of the run. */
  readonly tmpDir: string;
  /** Creates (or re-creates) a database on the server, applies rulebook's migrations and returns its URL. */
  createDatabase(name: string): Promise<string>;
  /** Progress messages; they go to stderr so that stdout holds only the result tables. */
  log(message: string): void;
}

/** One section of bench/RESULTS.md. */
export interface BenchSection {
  readonly title: string;
  readonly markdown: string;
}

/** A benchmark module: bench/<name>.ts exporting `run`. */
export interface BenchModule {
  run(ctx: BenchContext): Promise<BenchSection>;
}
