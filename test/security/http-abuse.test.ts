import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpServer } from '../../src/http/server.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { createStaffUser, startHttp, type StaffUser } from '../support/staff.js';

// Issue 9, item 10: the staff API answers forged input with 4xx, never 500; an expired alert cannot
// be acknowledged; and failed sign-ins from an address never lock out a valid token from it.

let db: TestDatabase;
let server: HttpServer;
let base: string;
let ann: StaffUser;
let eve: StaffUser;

beforeAll(async () => {
  db = await createTestDatabase();
  ann = await createStaffUser(db, 'ann@example.com', { name: 'Ann' });
  eve = await createStaffUser(db, 'eve@example.com', { name: 'Eve' });
  // The default limiter: 10 failures a minute per address.
  ({ server, base } = await startHttp(db));
});

afterAll(async () => {
  await server?.stop();
  await db?.drop();
});

async function call(method: string, path: string, token: string, body?: unknown) {
  const response = await fetch(base + path, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function alertFor(user: StaffUser, expires: string | null): Promise<string> {
  const [row] = await db.query<{ id: string }>(
    `insert into workflow.alerts (alert_type, severity, title, message, status, expires_date)
     values ('test', 'high', 'Freezer warm', 'Freezer 3 is warm', 'active', $1::timestamptz) returning id`,
    [expires],
  );
  await db.query(
    `insert into workflow.alert_recipients (alert_id, recipient_type, recipient_id) values ($1, 'user', $2)`,
    [row!.id, user.id],
  );
  return row!.id;
}

const forgedCursor = (time: string) =>
  Buffer.from(JSON.stringify([time, '00000000-0000-4000-8000-000000000000'])).toString('base64url');

describe('a forged cursor', () => {
  it('answers 400 for times that match the format but do not exist', async () => {
    for (const time of [
      '2026-13-01T00:00:00.000000',
      '2026-02-30T00:00:00.000000',
      '2025-02-29T00:00:00.000000',
      '2026-01-01T24:00:00.000000',
      '2026-01-01T00:60:00.000000',
      '0000-01-01T00:00:00.000000',
    ]) {
      const answer = await call('GET', `/api/alerts/mine?cursor=${forgedCursor(time)}`, eve.token);
      expect(answer.status, time).toBe(400);
      expect(answer.body.error, time).toMatch(/"cursor" is not a cursor this server gave out/);
    }
    const leap = await call(
      'GET',
      `/api/alerts/mine?cursor=${forgedCursor('2024-02-29T23:59:59.999999')}`,
      eve.token,
    );
    expect(leap.status).toBe(200);
  });
});

describe('an expired alert', () => {
  it('cannot be acknowledged by id, alone or in bulk', async () => {
    const expired = await alertFor(ann, new Date(Date.now() - 60_000).toISOString());
    const live = await alertFor(ann, null);
    const one = await call('POST', `/api/alerts/${expired}/acknowledge`, ann.token, { notes: 'late' });
    expect(one.status).toBe(409);
    expect(one.body.error).toMatch(/^this alert expired at \d{4}-.*, so it cannot be acknowledged any more$/);
    const bulk = await call('POST', '/api/alerts/acknowledge', ann.token, { ids: [expired, live] });
    expect(bulk).toEqual({
      status: 200,
      body: {
        results: [
          { id: expired, status: 'expired' },
          { id: live, status: 'acknowledged' },
        ],
      },
    });
    const [row] = await db.query<{ status: string; acks: string }>(
      `select status, (select count(*) from workflow.alert_acknowledgments where alert_id = a.id) as acks
         from workflow.alerts a where id = $1`,
      [expired],
    );
    expect(row).toEqual({ status: 'active', acks: '0' });
  });
});

describe('bad tokens from one address', () => {
  it('never lock out a valid token from the same address', async () => {
    // Everyone behind one proxy shares 127.0.0.1 here.
    for (let i = 0; i < 10; i++) {
      expect((await call('GET', '/api/me', `rbk_${String(i).padStart(43, 'q')}`)).status).toBe(401);
    }
    const guess = await call('GET', '/api/me', `rbk_${'w'.repeat(43)}`);
    expect(guess.status).toBe(429);
    expect(guess.body.error).toMatch(/too many failed sign-ins/);
    expect(await call('GET', '/api/me', ann.token)).toMatchObject({
      status: 200,
      body: { email: ann.email },
    });
    expect((await call('GET', '/api/me', eve.token)).status).toBe(200);
    // Still blocked for failures.
    expect((await call('GET', '/api/me', 'not-even-a-token')).status).toBe(429);
  });
});
