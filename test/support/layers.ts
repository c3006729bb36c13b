/**
 * The floors of src/, lowest first: the one place the layer order is written down (the import test
 * checks src/ against it, docs/architecture.md describes it). A unit is a folder of src/ or one of
 * the files directly in it. A unit imports only from units on lower floors, and from itself; two
 * units on the same floor know nothing of each other.
 */
export const FLOORS: readonly (readonly string[])[] = [
  // Foundation: small helpers that import nothing of rulebook's (they may use each other).
  [
    'backoff.ts',
    'clock.ts',
    'describe-error.ts',
    'duration.ts',
    'error-text.ts',
    'is-uuid.ts',
    'json-depth.ts',
    'logger.ts',
    'package-root.ts',
    'periodic-task.ts',
    'psql-fallback.ts',
    'psql.ts',
    'sql-state.ts',
    'wake-signal.ts',
  ],
  ['db'],
  ['model', 'auth', 'metrics', 'conditions'],
  ['capture', 'templating'],
  ['delivery'],
  ['actions', 'config.ts'],
  ['engine'],
  ['retention', 'alerts', 'inbox', 'views', 'admin'],
  ['scheduler', 'http'],
  ['operations', 'demo', 'heartbeat.ts'],
  ['daemon.ts', 'index.ts'],
  ['cli'],
  ['cli.ts'],
];

/** The files of the foundation floor count as one unit: they may import each other. */
export const FOUNDATION = 'foundation';
