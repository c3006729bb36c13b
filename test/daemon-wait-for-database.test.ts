import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { ensureCliBuilt, spawnRulebook, type DaemonProcess } from './support/daemon-process.js';
import { freePort } from './support/free-port.js';
import { waitFor } from './support/wait.js';

/*
 * docker-compose starts rulebook and PostgreSQL together, so `rulebook start` often runs before the
 * server accepts connections. Here the "server" is a TCP proxy to the test database that starts
 * listening only after rulebook has been seen waiting.
 */

let db: TestDatabase;
const running: DaemonProcess[] = [];

beforeAll(async () => {
  ensureCliBuilt();
  db = await createTestDatabase();
});

afterAll(async () => {
  for (const daemon of running) {
    if (daemon.child.exitCode === null && daemon.child.signalCode === null) {
      daemon.child.kill('SIGKILL');
      await daemon.exited();
    }
  }
  await db?.drop();
});

function start(env: Record<string, string>): DaemonProcess {
  const daemon = spawnRulebook(['start', '--no-http'], env);
  running.push(daemon);
  return daemon;
}

function stderrOf(daemon: DaemonProcess): () => string {
  let text = '';
  daemon.child.stderr!.on('data', (chunk: Buffer) => (text += chunk.toString()));
  return () => text;
}

/** The test database's URL with another port (and optionally another password). */
function urlAt(port: number, password?: string): string {
  const url = new URL(db.url);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  if (password !== undefined) url.password = password;
  return url.toString();
}

/** Forwards connections on `port` to the test database's server. */
async function startProxy(port: number): Promise<net.Server> {
  const upstream = new URL(db.url);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const server = net.connect(Number(upstream.port), upstream.hostname);
    for (const socket of [client, server]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {
        client.destroy();
        server.destroy();
      });
    }
    client.pipe(server).pipe(client);
  });
  server.on('close', () => {
    for (const socket of sockets) socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return server;
}

describe('rulebook start before the database is up', () => {
  it('waits with backoff, one log line per wait, and starts once the server accepts connections', async () => {
    const port = await freePort();
    const daemon = start({ DATABASE_URL: urlAt(port), RULEBOOK_DB_WAIT_SECONDS: '60' });
    const first = await daemon.waitForLog('database not reachable yet; waiting');
    expect(first).toMatchObject({ level: 40, attempt: 1, retryInMs: 250, waitSeconds: 60 });
    expect(String(first.reason)).toContain('ECONNREFUSED');
    // A second wait shows the backoff growing; the daemon is still waiting, not gone.
    await waitFor('a second wait', () => {
      if (daemon.child.exitCode !== null) throw new Error(`rulebook exited:\n${daemon.output()}`);
      return daemon.logs.some(
        (log) => log.msg === 'database not reachable yet; waiting' && log.attempt === 2,
      );
    });
    const second = daemon.logs.find((log) => log.attempt === 2)!;
    expect(second.retryInMs).toBe(500);

    const proxy = await startProxy(port);
    try {
      expect(await daemon.waitForLog('database reachable')).toMatchObject({ level: 30 });
      await daemon.waitForLog('engine started');
      daemon.child.kill('SIGTERM');
      expect(await daemon.exited()).toEqual({ code: 0, signal: null });
    } finally {
      await new Promise((resolve) => proxy.close(resolve));
    }
  });

  it('gives up after RULEBOOK_DB_WAIT_SECONDS with one clear line', async () => {
    const port = await freePort();
    const daemon = start({ DATABASE_URL: urlAt(port), RULEBOOK_DB_WAIT_SECONDS: '1' });
    const stderr = stderrOf(daemon);
    expect(await daemon.exited()).toEqual({ code: 1, signal: null });
    const lines = stderr().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      new RegExp(
        `^rulebook: the database at 127\\.0\\.0\\.1:${port}/${db.name} was not reachable within 1 s ` +
          `\\(RULEBOOK_DB_WAIT_SECONDS; \\d+ attempts\\), last error: .*ECONNREFUSED.*; ` +
          'start PostgreSQL there, or correct the host and port in DATABASE_URL$',
      ),
    );
    expect(
      daemon.logs.filter((log) => log.msg === 'database not reachable yet; waiting').length,
    ).toBeGreaterThan(0);
  });

  it('does not wait for a wrong password', async () => {
    const upstream = new URL(db.url);
    const daemon = start({
      DATABASE_URL: urlAt(Number(upstream.port), 'not-the-password'),
      RULEBOOK_DB_WAIT_SECONDS: '60',
    });
    const stderr = stderrOf(daemon);
    expect(await daemon.exited()).toEqual({ code: 1, signal: null });
    expect(stderr()).toContain('password authentication failed');
    expect(daemon.logs.filter((log) => log.msg === 'database not reachable yet; waiting')).toEqual([]);
  });

  it('stops waiting on SIGTERM', async () => {
    const port = await freePort();
    const daemon = start({ DATABASE_URL: urlAt(port), RULEBOOK_DB_WAIT_SECONDS: '600' });
    const stderr = stderrOf(daemon);
    await daemon.waitForLog('database not reachable yet; waiting');
    daemon.child.kill('SIGTERM');
    expect((await daemon.exited()).code).toBe(1);
    expect(stderr()).toContain(`rulebook: stopped while waiting for the database at 127.0.0.1:${port}`);
  });

  it('reads RULEBOOK_DB_WAIT_SECONDS: 60 by default, 0 to try once, nothing else', () => {
    expect(loadConfig({}).databaseWaitSeconds).toBe(60);
    expect(loadConfig({ RULEBOOK_DB_WAIT_SECONDS: '0' }).databaseWaitSeconds).toBe(0);
    expect(() => loadConfig({ RULEBOOK_DB_WAIT_SECONDS: '1.5' })).toThrow(
      new ConfigError(
        'RULEBOOK_DB_WAIT_SECONDS must be a whole number of seconds from 0 to 86400, got "1.5"',
      ),
    );
  });
});
