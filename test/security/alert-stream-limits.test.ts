import net from 'node:net';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { HttpServer } from '../../src/http/server.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { createStaffUser, openSse, type SseStream, type StaffUser } from '../support/staff.js';
import { waitFor } from '../support/wait.js';

/*
 * Issue 9 item 12: the alert event stream had no cap on open streams across the server, and wrote
 * to every stream whatever its client read, so a client that stops reading made the server hold
 * every later alert for it in memory. Both are attacks a holder of any staff token can make.
 */

const MAX_BUFFERED = 512 * 1024;

let db: TestDatabase;
let server: HttpServer;
let base: string;
let ann: StaffUser;
let bob: StaffUser;
let carl: StaffUser;
const logs: { msg: string; bufferedBytes?: number; userId?: string }[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  ann = await createStaffUser(db, 'ann@example.com');
  bob = await createStaffUser(db, 'bob@example.com');
  carl = await createStaffUser(db, 'carl@example.com');
  const logger = pino({ level: 'warn' }, { write: (line: string) => void logs.push(JSON.parse(line)) });
  server = new HttpServer({
    port: 0,
    host: '127.0.0.1',
    pool: db.pool,
    engine: undefined,
    logger,
    staffApi: {
      heartbeatMs: 60_000,
      streamLimits: { maxStreams: 3, maxStreamsPerUser: 2, maxBufferedBytes: MAX_BUFFERED },
    },
  });
  await server.start();
  base = `http://127.0.0.1:${server.port}`;
});

afterAll(async () => {
  await server?.stop();
  await db?.drop();
});

function stream(user: StaffUser): Promise<SseStream> {
  return openSse(`${base}/api/alerts/stream?access_token=${user.token}`);
}

/** An alert for the given people, announced as create_alert announces it. */
async function alertFor(users: StaffUser[], message: string): Promise<string> {
  const [row] = await db.query<{ id: string }>(
    `insert into workflow.alerts (alert_type, severity, title, message, status)
     values ('test', 'low', 'flood', $1, 'active') returning id`,
    [message],
  );
  for (const user of users) {
    await db.query(
      `insert into workflow.alert_recipients (alert_id, recipient_type, recipient_id) values ($1, 'user', $2)`,
      [row!.id, user.id],
    );
  }
  await db.query(`select pg_notify('rulebook_alerts', $1)`, [row!.id]);
  return row!.id;
}

describe('alert stream caps', () => {
  it('answers 429 past the per-person cap and 503 past the server-wide cap, until a stream closes', async () => {
    const opened = [await stream(ann), await stream(ann)];
    try {
      const third = await stream(ann);
      expect(third.status).toBe(429);
      third.close();

      opened.push(await stream(bob));
      expect(opened.map((one) => one.status)).toEqual([200, 200, 200]);
      const response = await fetch(`${base}/api/alerts/stream?access_token=${carl.token}`);
      expect(response.status).toBe(503);
      expect(response.headers.get('retry-after')).toBe('30');
      expect(await response.json()).toEqual({
        error: 'this server already has 3 open alert streams, its maximum; try again later',
      });

      opened.pop()!.close();
      const carls = await waitFor('a free slot after bob left', async () => {
        const attempt = await stream(carl);
        if (attempt.status === 200) return attempt;
        attempt.close();
        return undefined;
      });
      opened.push(carls);
    } finally {
      for (const one of opened) one.close();
    }
  });
});

describe('alert stream caps from the environment', () => {
  it('default to 1000 streams per server and 20 per person', () => {
    expect(loadConfig({}).alertStreams).toEqual({ maxStreams: 1000, maxStreamsPerUser: 20 });
    expect(
      loadConfig({ RULEBOOK_SSE_MAX_STREAMS: '50', RULEBOOK_SSE_MAX_STREAMS_PER_USER: '3' }).alertStreams,
    ).toEqual({ maxStreams: 50, maxStreamsPerUser: 3 });
    expect(() => loadConfig({ RULEBOOK_SSE_MAX_STREAMS: '0' })).toThrow(
      'RULEBOOK_SSE_MAX_STREAMS must be a whole number of at least 1, got "0"',
    );
  });
});

describe('a client that does not read', () => {
  it('is dropped once its unsent data passes the bound; a reading client keeps its stream', async () => {
    // Wait for earlier streams to be gone, so that the caps leave room for these two.
    const reader = await waitFor('room for a stream', async () => {
      const attempt = await stream(ann);
      if (attempt.status === 200) return attempt;
      attempt.close();
      return undefined;
    });
    const stalled = net.connect(server.port, '127.0.0.1');
    let closed = false;
    stalled.on('close', () => (closed = true));
    stalled.on('error', () => {});
    await new Promise<void>((resolve) => stalled.once('connect', () => resolve()));
    stalled.write(
      `GET /api/alerts/stream?access_token=${bob.token} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`,
    );
    // Read the answer's head, then never read again.
    await new Promise<void>((resolve) => stalled.once('data', () => resolve()));
    stalled.pause();

    try {
      const big = 'x'.repeat(64 * 1024);
      let sent = 0;
      // The kernel's socket buffers take some megabytes before the server holds any itself.
      const dropped = await waitFor(
        'the stalled stream to be dropped',
        async () => {
          const found = logs.find((log) => log.msg === 'alert stream dropped: its client is not reading');
          if (found) return found;
          for (let i = 0; i < 4; i++) await alertFor([ann, bob], big);
          sent += 4;
          return undefined;
        },
        60_000,
      );
      expect(dropped.userId).toBe(bob.id);
      // It held at most the bound plus the one event that crossed it.
      expect(dropped.bufferedBytes).toBeGreaterThan(MAX_BUFFERED);
      expect(dropped.bufferedBytes).toBeLessThanOrEqual(MAX_BUFFERED + big.length + 4096);
      expect(sent).toBeGreaterThan(1);

      // The reader got every alert and still gets new ones.
      const last = await alertFor([ann, bob], 'after the drop');
      const event = await reader.next((one) => one.event === 'alert' && one.data.includes(last));
      expect(JSON.parse(event.data)).toMatchObject({ id: last, message: 'after the drop' });
      expect(reader.events.filter((one) => one.event === 'alert').length).toBe(sent + 1);

      // The dropped client finds its connection closed once it reads what had reached it.
      stalled.resume();
      await waitFor('the stalled connection to close', () => closed);
    } finally {
      reader.close();
      stalled.destroy();
    }
  });
});
