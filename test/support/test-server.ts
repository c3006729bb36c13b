import net from 'node:net';
import { startScratchServer } from './scratch-server.js';

export interface TestServer {
  /** A URL to a database on the server from which other databases can be created. */
  readonly adminUrl: string;
  stop(): Promise<void>;
}

async function dockerReachable(): Promise<boolean> {
  const socket = process.env.DOCKER_HOST?.replace(/^unix:\/\//, '') ?? '/var/run/docker.sock';
  if (process.env.DOCKER_HOST?.startsWith('tcp://')) return true;
  return new Promise((resolve) => {
    const connection = net.connect(socket);
    connection.once('connect', () => {
      connection.destroy();
      resolve(true);
    });
    connection.once('error', () => resolve(false));
  });
}

/**
 * One PostgreSQL server for the whole test run: the user's TEST_DATABASE_URL or DATABASE_URL when
 * set; a testcontainers container when TEST_PG_IMAGE is set and a Docker engine answers; otherwise an
 * embedded PostgreSQL in a temporary directory.
 */
export async function startTestServer(): Promise<TestServer> {
  const given = process.env.TEST_DATABASE_URL || process.env.DATABASE_URL;
  if (given) return { adminUrl: given, stop: async () => {} };

  const image = process.env.TEST_PG_IMAGE;
  if (image && (await dockerReachable())) {
    const { GenericContainer, Wait } = await import('testcontainers');
    const container = await new GenericContainer(image)
      .withEnvironment({ POSTGRES_PASSWORD: 'rulebook', POSTGRES_USER: 'rulebook', POSTGRES_DB: 'postgres' })
      .withExposedPorts(5432)
      .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
      .start();
    return {
      adminUrl: `postgres://rulebook:rulebook@${container.getHost()}:${container.getMappedPort(5432)}/postgres`,
      stop: async () => {
        await container.stop();
      },
    };
  }

  const scratch = await startScratchServer('rulebook-test-pg', {
    // Durability is not under test here; the benchmarks run with the defaults. wal_level=logical lets
    // tests read the outbox through a logical replication slot, as Debezium does.
    settings: {
      fsync: 'off',
      synchronous_commit: 'off',
      full_page_writes: 'off',
      max_connections: '300',
      wal_level: 'logical',
    },
  });
  return { adminUrl: scratch.server.url, stop: () => scratch.remove() };
}
